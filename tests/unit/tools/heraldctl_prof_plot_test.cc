// heraldctl prof plot and flame: a capture built in memory with known series (a counter with a
// known rate, gauges, a gap, a constant, an unavailable series, a name full of markup) rendered
// as SVG and HTML, checked for well-formedness by /usr/bin/python3's XML and HTML parsers and
// for what they show; flame graph layout (widths, merges, drops) and its SVG; report lines.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tools/heraldctl/flame_graph.h"
#include "tools/heraldctl/prof.h"
#include "tools/heraldctl/prof_plot.h"

namespace herald::tools {
namespace {

using profiler::Capture;
using profiler::FlameProfile;
using profiler::FoldedStack;
using profiler::SeriesKind;

constexpr char kWeird[] = "ctr.weird.<&\"'>";
constexpr size_t kSamples = 101;

// 101 samples 10 ms apart (1 s):
//   0 ctr.tcp.rx_packets     counter, +50 a sample: 5000 packets/s
//   1 os.mem.free            gauge 1000 + 10k bytes, unavailable at samples 40..42
//   2 os.tcp.inuse           gauge, always 0 (constant)
//   3 ctr.weird.<&"'>        gauge k % 7
//   4 hw.cpu0.cycles         counter, never available
//   5 proc.controlplane.rss  gauge 4096 * (1 + k % 3)
//   6 ctr.tcp.tx_bytes       counter 100 k^2: (2k - 1) * 10000 bytes/s
Capture test_capture() {
  Capture c;
  c.meta = {"node-a", "host<1>", 1'764'343'816'123, 10'000'000};
  c.series = {{"ctr.tcp.rx_packets", "packets", SeriesKind::kCounter},
              {"os.mem.free", "bytes", SeriesKind::kGauge},
              {"os.tcp.inuse", "sockets", SeriesKind::kGauge},
              {kWeird, "things", SeriesKind::kGauge},
              {"hw.cpu0.cycles", "cycles", SeriesKind::kCounter},
              {"proc.controlplane.rss", "bytes", SeriesKind::kGauge},
              {"ctr.tcp.tx_bytes", "bytes", SeriesKind::kCounter}};
  for (size_t k = 0; k < kSamples; ++k) {
    profiler::Sample s;
    s.mono_ns = 5'000'000'000 + k * 10'000'000;
    const auto ki = static_cast<int64_t>(k);
    s.values = {50 * ki,
                k >= 40 && k <= 42 ? std::nullopt : std::optional<int64_t>(1000 + 10 * ki),
                0,
                ki % 7,
                std::nullopt,
                4096 * (1 + ki % 3),
                100 * ki * ki};
    c.samples.push_back(std::move(s));
  }
  return c;
}

std::vector<FoldedStack> test_stacks() {
  // Merges: two "a;b;c" entries; "a;e" listed before "a;b" still lays out after it (names).
  return {{"a;b;c", 40}, {"a;e", 9}, {"a;b;d", 30}, {"a;b;c", 20}, {"x;y", 1}, {"a;z", 0}};
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Runs a python check on `text`; returns its exit status (0: passed) and keeps its output.
int python_check(const std::string& script, const std::string& text, const std::string& name) {
  const std::string file = write_temp(name, text);
  const std::string py = write_temp(name + ".py", script);
  const std::string cmd = "/usr/bin/python3 " + py + " " + file + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::remove(file.c_str());
  std::remove(py.c_str());
  return rc;
}

constexpr char kXmlCheck[] = R"(
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == '{http://www.w3.org/2000/svg}svg', root.tag
)";

// Tags balanced (void elements aside) and every inline <svg> a well-formed XML document.
constexpr char kHtmlCheck[] = R"(
import re, sys, xml.etree.ElementTree as ET
from html.parser import HTMLParser
text = open(sys.argv[1], encoding='utf-8').read()
assert text.startswith('<!DOCTYPE html>')
VOID = {'meta', 'br', 'hr', 'img', 'input', 'link', 'wbr'}
class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack = []
    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            sys.exit('mismatched </%s> at %s; open: %s' % (tag, self.getpos(), self.stack[-3:]))
        self.stack.pop()
p = P()
p.feed(text)
p.close()
if p.stack:
    sys.exit('unclosed: %s' % p.stack)
svgs = re.findall(r'<svg\b.*?</svg>', text, re.S)
assert svgs, 'no svg'
for s in svgs:
    ET.fromstring(s)
)";

// The Python parsers are the oracle; a machine without /usr/bin/python3 skips this part only.
void parses(const char* script, const std::string& text, const std::string& name) {
  if (access("/usr/bin/python3", X_OK) != 0) return;
  EXPECT_EQ(python_check(script, text, name), 0) << name;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The d attribute of the path drawn for `series` (the first one after its tooltip).
std::string path_of(const std::string& svg, const std::string& series) {
  const size_t tip = svg.find("<title>" + series + ": ");
  if (tip == std::string::npos) return "";
  const size_t d = svg.find(" d=\"", tip);
  const size_t end = svg.find("</g>", tip);
  if (d == std::string::npos || d > end) return "";
  return svg.substr(d + 4, svg.find('"', d + 4) - d - 4);
}

TEST(ProfPlot, CounterRateGaugeValueAndGaps) {
  const Capture c = test_capture();
  SeriesPoints rx(SeriesKind::kCounter), mem(SeriesKind::kGauge), hw(SeriesKind::kCounter);
  for (size_t k = 0; k < kSamples; ++k) {
    const profiler::Sample& s = c.samples[k];
    const std::optional<double> rate = rx.next(s.values[0], s.mono_ns);
    if (k == 0) {
      EXPECT_FALSE(rate);  // a counter's first value has no rate
    } else {
      EXPECT_NEAR(*rate, 5000.0, 1e-6);
    }
    const std::optional<double> free = mem.next(s.values[1], s.mono_ns);
    if (k >= 40 && k <= 42) {
      EXPECT_FALSE(free);
    } else {
      EXPECT_EQ(*free, 1000.0 + 10.0 * static_cast<double>(k));
    }
    EXPECT_FALSE(hw.next(s.values[4], s.mono_ns));
  }
  // A counter read every 10th sample still has a rate, over the 10 samples; the clock going
  // backwards (a hostile file) gives none.
  SeriesPoints slow(SeriesKind::kCounter);
  EXPECT_FALSE(slow.next(100, 1'000'000'000));
  EXPECT_FALSE(slow.next(std::nullopt, 1'010'000'000));
  EXPECT_DOUBLE_EQ(*slow.next(150, 1'100'000'000), 500.0);
  EXPECT_FALSE(slow.next(160, 1'000'000'000));
  EXPECT_GT(*slow.next(INT64_MIN, 2'000'000'000), 9e18);  // wraps, no signed overflow
  // csv --rates reads through the same definition.
  std::ostringstream csv;
  write_csv(c, true, csv);
  EXPECT_NE(csv.str().find("\n10,5000,1010,0,1,,8192,10000\n"), std::string::npos) << csv.str();
}

// A counter its owner publishes every 100 ms, sampled every 10 ms: per interval it reads 0 nine
// times and ten times its rate once; over a 100 ms window it reads its rate.
TEST(ProfPlot, RateWindowSpansThePublicationInterval) {
  SeriesPoints per_sample(SeriesKind::kCounter, 0), windowed(SeriesKind::kCounter, 100'000'000);
  std::vector<double> raw, smooth;
  for (uint64_t k = 0; k <= 100; ++k) {
    const int64_t published = static_cast<int64_t>(k / 10) * 1000;  // 10,000/s in 100 ms steps
    const uint64_t at_ns = 1'000'000'000 + k * 10'000'000;
    if (auto r = per_sample.next(published, at_ns)) raw.push_back(*r);
    if (auto r = windowed.next(published, at_ns)) smooth.push_back(*r);
  }
  ASSERT_EQ(raw.size(), 100u);
  EXPECT_EQ(std::count(raw.begin(), raw.end(), 0.0), 90);
  EXPECT_EQ(std::count(raw.begin(), raw.end(), 100'000.0), 10);
  ASSERT_EQ(smooth.size(), 91u);  // nothing until the series spans a window
  for (double r : smooth) EXPECT_NEAR(r, 10'000.0, 1e-6);
  // A gap longer than the window: the rate is the gap's average, as without a window.
  SeriesPoints gap(SeriesKind::kCounter, 100'000'000);
  EXPECT_FALSE(gap.next(0, 1'000'000'000));
  EXPECT_FALSE(gap.next(std::nullopt, 1'050'000'000));
  EXPECT_DOUBLE_EQ(*gap.next(500, 1'500'000'000), 1000.0);
  // The report says which window it used.
  const Capture c = test_capture();
  std::ostringstream report;
  write_report(c, 5, report, "run.hprof");
  EXPECT_NE(report.str().find("counter rates over 100 ms windows"), std::string::npos);
  std::ostringstream raw_report;
  write_report(c, 5, raw_report, "run.hprof", 0);
  EXPECT_NE(raw_report.str().find("counter rates over 0 ms windows (each sample against the "
                                  "previous)"),
            std::string::npos);
}

TEST(ProfPlot, GapBreaksTheLineAndIsNeverZero) {
  const Capture c = test_capture();
  const auto runs = plot_runs(c, 1, 10000);  // more columns than samples: every point kept
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].size(), 40u);
  EXPECT_EQ(runs[1].size(), kSamples - 43);
  EXPECT_DOUBLE_EQ(runs[0].back().value, 1390);
  EXPECT_DOUBLE_EQ(runs[1].front().value, 1430);
  EXPECT_NEAR(runs[1].front().t_s, 0.43, 1e-9);
  for (const auto& run : runs) {
    for (const PlotPoint& p : run) EXPECT_GE(p.value, 1000);
  }
  EXPECT_TRUE(plot_runs(c, 4, 100).empty());  // unavailable: nothing drawn at all
}

TEST(ProfPlot, SlowSeriesIsALineAndItsOwnGapsStillBreakIt) {
  // Values every 10th sample (a /proc file read every 100 ms), and none from 50 to 79.
  Capture c = test_capture();
  for (size_t k = 0; k < kSamples; ++k) {
    if (k % 10 != 0 || (k >= 50 && k < 80)) c.samples[k].values[6] = std::nullopt;
  }
  EXPECT_EQ(sample_spacing(c, 6), 10u);
  EXPECT_EQ(sample_spacing(c, 1), 1u);
  const auto runs = plot_runs(c, 6, 10000);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].size(), 4u);  // 10..40 (0 is the counter's first value: no rate)
  EXPECT_EQ(runs[1].size(), 3u);  // 80..100; 80 is the rate over 40..80
  EXPECT_DOUBLE_EQ(runs[0][0].value, 100.0 * 100 / 0.1);
  EXPECT_DOUBLE_EQ(runs[1][0].value, 100.0 * (80 * 80 - 40 * 40) / 0.4);
}

TEST(ProfPlot, DecimationKeepsExtremesAndBoundsPoints) {
  Capture c = test_capture();
  c.samples[57].values[5] = 1'000'000;  // one spike in the rss gauge
  const auto runs = plot_runs(c, 5, 10);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_LE(runs[0].size(), 20u);  // at most min and max per column
  double peak = 0;
  for (const PlotPoint& p : runs[0]) peak = std::max(peak, p.value);
  EXPECT_EQ(peak, 1'000'000);
  for (size_t i = 1; i < runs[0].size(); ++i) EXPECT_LE(runs[0][i - 1].t_s, runs[0][i].t_s);
}

TEST(ProfPlot, GroupsGlobsAndSiFormat) {
  EXPECT_EQ(plot_group("os.cpu0.user"), "os.cpu");
  EXPECT_EQ(plot_group("os.cpu.user"), "os.cpu");
  EXPECT_EQ(plot_group("os.context_switches"), "os.kernel");
  EXPECT_EQ(plot_group("os.hugepages.free"), "os.mem");
  EXPECT_EQ(plot_group("os.net.eth0.rx_bytes"), "os.net");
  EXPECT_EQ(plot_group("os.disk.sda.reads"), "os.disk");
  EXPECT_EQ(plot_group("os.sockets_used"), "os.tcp");
  EXPECT_EQ(plot_group("proc.controlplane.rss"), "proc.controlplane");
  EXPECT_EQ(plot_group("ctr.tcp.rx_packets"), "ctr.tcp");
  EXPECT_EQ(plot_group("ctr.uptime"), "ctr");
  EXPECT_EQ(plot_group("hw.cpu3.cycles"), "hw");
  EXPECT_EQ(plot_group("derived.cycles_per_message"), "derived");
  EXPECT_EQ(plot_group("zzz"), "zzz");
  EXPECT_EQ(plot_group(""), "other");

  EXPECT_TRUE(glob_match("os.cpu*", "os.cpu0.user"));
  EXPECT_TRUE(glob_match("*.rss", "proc.controlplane.rss"));
  EXPECT_TRUE(glob_match("os.cpu?.user", "os.cpu7.user"));
  EXPECT_FALSE(glob_match("os.cpu?.user", "os.cpu.user"));
  EXPECT_TRUE(glob_match("*a*b*", "xxaxxbxx"));
  EXPECT_FALSE(glob_match("*a*b", "xxaxxbxx"));
  EXPECT_FALSE(glob_match("", "x"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_EQ(select_series(test_capture(), {"os.*", "*.rss"}), (std::vector<size_t>{1, 2, 5}));
  EXPECT_EQ(select_series(test_capture(), {}).size(), 7u);

  EXPECT_EQ(format_si(0), "0");
  EXPECT_EQ(format_si(1500), "1.5k");
  EXPECT_EQ(format_si(-1500), "-1.5k");
  EXPECT_EQ(format_si(2e6), "2M");
  EXPECT_EQ(format_si(0.25), "250m");
  EXPECT_EQ(format_si(999.7e3), "1M");
  EXPECT_EQ(format_si(12), "12");
  EXPECT_EQ(format_si(3e-6), "3\xC2\xB5");
  EXPECT_EQ(format_si(NAN), "?");
}

TEST(ProfPlot, SvgIsWellFormedAndShowsTheGroups) {
  const Capture c = test_capture();
  PlotOptions o;
  o.source = "run<1>.hprof";
  o.rate_window_ns = 0;  // the figures below are per 10 ms interval
  const std::string svg = render_plot_svg(c, o);
  parses(kXmlCheck, svg, "plot.svg");
  EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  for (const char* group :
       {">os.mem<", ">os.tcp<", ">ctr.tcp<", ">ctr.weird<", ">hw<", ">proc.controlplane<",
        "node node-a", "host host&lt;1&gt;", "2025-11-28 15:30:16.123 UTC", "interval 10 ms",
        "samples 101", "duration 1.000 s", "packets/s"}) {
    EXPECT_NE(svg.find(group), std::string::npos) << group;
  }
  // The markup in the name is escaped, never raw.
  EXPECT_NE(svg.find("ctr.weird.&lt;&amp;&quot;&#39;&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<&\""), std::string::npos);
  // The constant series is a note, not a line; the unavailable one is named as such.
  EXPECT_NE(svg.find("1 series constant at 0 (not drawn):"), std::string::npos);
  EXPECT_NE(svg.find(">os.tcp.inuse<"), std::string::npos);
  EXPECT_EQ(path_of(svg, "os.tcp.inuse"), "");
  EXPECT_NE(svg.find("1 series unavailable (no values):"), std::string::npos);
  // The gauge with a gap is two subpaths; the counter one.
  EXPECT_EQ(count(path_of(svg, "os.mem.free"), "M"), 2u);
  EXPECT_EQ(count(path_of(svg, "ctr.tcp.tx_bytes"), "M"), 1u);
  EXPECT_NE(svg.find("<title>ctr.tcp.tx_bytes: min 10k, median 990k, p99 1.97M, max 1.99M "
                     "bytes/s</title>"),
            std::string::npos);
  // Counters are drawn at their rates: a steady 5000/s is constant, so a note.
  EXPECT_NE(svg.find("1 series constant (not drawn):"), std::string::npos);
  EXPECT_NE(svg.find("ctr.tcp.rx_packets = 5k packets/s"), std::string::npos);
}

TEST(ProfPlot, SeriesSelectionAndWidth) {
  const Capture c = test_capture();
  PlotOptions o;
  o.series_globs = {"os.mem.*"};
  o.width_px = 500;
  const std::string svg = render_plot_svg(c, o);
  EXPECT_NE(svg.find("os.mem.free"), std::string::npos);
  EXPECT_EQ(svg.find("proc.controlplane"), std::string::npos);
  EXPECT_NE(svg.find("width=\"500.0\""), std::string::npos);
  o.series_globs = {"nothing*"};
  EXPECT_NE(render_plot_svg(c, o).find("No series match"), std::string::npos);
}

TEST(ProfPlot, ExtremeAndDegenerateCapturesStillRender) {
  // Values near 2^63 moving by 1 (adding a tick step would not change them), a counter that
  // wraps, samples out of clock order: a finished, well-formed document each time.
  Capture c = test_capture();
  for (size_t k = 0; k < kSamples; ++k) {
    c.samples[k].values[1] = INT64_MAX - static_cast<int64_t>(k % 2);
    c.samples[k].values[0] = k % 2 == 0 ? INT64_MIN : INT64_MAX;
  }
  std::swap(c.samples[10].mono_ns, c.samples[60].mono_ns);
  parses(kXmlCheck, render_plot_svg(c, PlotOptions{}), "extreme.svg");
  parses(kHtmlCheck, render_plot_html(c, PlotOptions{}), "extreme.html");
  Capture one = test_capture();
  one.samples.resize(1);
  parses(kXmlCheck, render_plot_svg(one, PlotOptions{}), "one.svg");
  one.samples.clear();
  const std::string empty = render_plot_svg(one, PlotOptions{});
  parses(kXmlCheck, empty, "none.svg");
  EXPECT_NE(empty.find("0 charted, 0 constant, 7 unavailable"), std::string::npos);
}

TEST(ProfPlot, RandomCapturesRenderWellFormed) {
  // Whatever a decodable capture holds (names with any bytes, any values, gaps, clocks that
  // stall or go back, odd flame stacks), the documents are finished and well-formed.
  std::mt19937_64 rng(20261128);
  auto pick = [&](uint64_t n) { return static_cast<size_t>(rng() % n); };
  for (int round = 0; round < 8; ++round) {
    Capture c;
    c.meta = {"n", "h", rng() % 4'000'000'000'000, 1 + rng() % 100'000'000};
    const size_t series = 1 + pick(12);
    for (size_t i = 0; i < series; ++i) {
      std::string name = std::vector<std::string>{"os.cpu", "os.net.x", "ctr", "proc.p",
                                                  "hw",     "derived",  "",    "z"}[pick(8)];
      for (size_t k = pick(12); k > 0; --k) name.push_back(static_cast<char>(rng()));
      c.series.push_back(
          {name, pick(2) ? "bytes" : "<u>", pick(2) ? SeriesKind::kCounter : SeriesKind::kGauge});
    }
    uint64_t t = rng() % 1'000'000'000;
    for (size_t k = pick(300); k > 0; --k) {
      profiler::Sample s;
      t += pick(10) == 0 ? 0 : rng() % 50'000'000;
      s.mono_ns = pick(50) == 0 ? t / 2 : t;
      for (size_t i = 0; i < series; ++i) {
        switch (pick(6)) {
          case 0: s.values.push_back(std::nullopt); break;
          case 1: s.values.push_back(static_cast<int64_t>(rng())); break;
          case 2: s.values.push_back(pick(2) ? INT64_MIN : INT64_MAX); break;
          default: s.values.push_back(static_cast<int64_t>(k * (i + 1) + pick(3)));
        }
      }
      c.samples.push_back(std::move(s));
    }
    if (pick(2)) {
      c.flame = FlameProfile{"ok", 99, 1, {}};
      for (size_t k = pick(30); k > 0; --k) {
        std::string frames;
        for (size_t d = pick(20); d > 0; --d) {
          frames += pick(4) ? std::string("f") + std::to_string(pick(5)) : std::string(";&<\xff");
          frames += ';';
        }
        c.flame->stacks.push_back({frames, rng() % 1000});
      }
    }
    PlotOptions o;
    o.width_px = 400 + static_cast<int>(pick(1000));
    parses(kXmlCheck, render_plot_svg(c, o), "random.svg");
    parses(kHtmlCheck, render_plot_html(c, o), "random.html");
  }
}

TEST(ProfPlot, HtmlIsWellFormedWithTocReportAndFlameStatus) {
  Capture c = test_capture();
  PlotOptions o;
  o.source = "run.hprof";
  std::string html = render_plot_html(c, o);
  parses(kHtmlCheck, html, "plot.html");
  for (const char* part : {"<nav>", "href=\"#flame\"", "href=\"#report\"", ">os.mem</a>",
                           "<h2>Summary table</h2>", "top movers", "none was asked for",
                           "ctr.weird.&lt;&amp;&quot;&#39;&gt;", "2025-11-28 15:30:16.123 UTC"}) {
    EXPECT_NE(html.find(part), std::string::npos) << part;
  }
  EXPECT_EQ(html.find("src="), std::string::npos);  // nothing fetched
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);

  c.flame = FlameProfile{"perf not installed", 0, 0, {}};
  html = render_plot_html(c, o);
  EXPECT_NE(html.find("No CPU profile: perf not installed."), std::string::npos);

  c.flame = FlameProfile{"ok", 99, 4242, test_stacks()};
  html = render_plot_html(c, o);
  parses(kHtmlCheck, html, "flame.html");
  EXPECT_NE(html.find("pid 4242, 99 Hz, 100 samples"), std::string::npos);
  EXPECT_NE(html.find("<title>c (60 samples, 60.00%)</title>"), std::string::npos);
  EXPECT_NE(html.find("top functions by self samples"), std::string::npos);
}

TEST(FlameGraph, LayoutMergesSortsAndDrops) {
  const FlameLayout l = layout_flame(test_stacks(), 0.02);
  EXPECT_EQ(l.total_samples, 100u);
  EXPECT_EQ(l.dropped_frames, 2u);  // x (1%) and y above it
  EXPECT_EQ(l.max_depth, 3u);
  std::map<std::string, FlameFrame> by_name;
  for (const FlameFrame& f : l.frames) by_name[f.name] = f;
  ASSERT_EQ(by_name.size(), 6u);   // all a b c d e
  EXPECT_EQ(l.frames.size(), 6u);  // each merged into one frame
  EXPECT_EQ(l.frames[0].name, "all");
  EXPECT_DOUBLE_EQ(by_name["all"].width, 1.0);
  EXPECT_DOUBLE_EQ(by_name["a"].width, 0.99);
  EXPECT_EQ(by_name["c"].samples, 60u);
  EXPECT_EQ(by_name["c"].self, 60u);
  EXPECT_EQ(by_name["b"].self, 0u);
  EXPECT_EQ(by_name["c"].depth, 3u);
  // Siblings in name order: b before e under a; c before d under b.
  EXPECT_DOUBLE_EQ(by_name["b"].x, 0.0);
  EXPECT_NEAR(by_name["e"].x, 0.9, 1e-12);
  EXPECT_NEAR(by_name["d"].x, 0.6, 1e-12);
  EXPECT_NEAR(by_name["d"].width * 2, by_name["c"].width, 1e-12);
  // With no threshold nothing is dropped.
  EXPECT_EQ(layout_flame(test_stacks(), 0).dropped_frames, 0u);
}

TEST(FlameGraph, SvgWidthsAreProportional) {
  FlameOptions o;
  o.width_px = 1020;  // 1000 px for 100 samples after the 10 px margins
  o.min_fraction = 0.02;
  const std::string svg = render_flame_svg(test_stacks(), o);
  parses(kXmlCheck, svg, "flame.svg");
  auto rect_width = [&](const std::string& title) {
    const size_t at = svg.find("<title>" + title);
    EXPECT_NE(at, std::string::npos) << title;
    const size_t w = svg.find("width=\"", at);
    return std::strtod(svg.c_str() + w + 7, nullptr);
  };
  EXPECT_DOUBLE_EQ(rect_width("c (60 samples, 60.00%)"), 600.0);
  EXPECT_DOUBLE_EQ(rect_width("d (30 samples, 30.00%)"), 300.0);
  EXPECT_DOUBLE_EQ(rect_width("e (9 samples, 9.00%)"), 90.0);
  EXPECT_EQ(svg.find("<title>x "), std::string::npos);
  EXPECT_NE(svg.find("2 frames narrower than 2.00% not drawn"), std::string::npos);
  // Stable colours: the same name, the same fill, in another graph too.
  const std::string other = render_flame_svg({{"q;c", 5}}, o);
  auto fill_of = [](const std::string& s, const std::string& title) {
    const size_t f = s.find("fill=\"", s.find("<title>" + title));
    return s.substr(f, s.find('"', f + 6) - f);
  };
  EXPECT_EQ(fill_of(svg, "c ("), fill_of(other, "c ("));
}

TEST(FlameGraph, EmptyHostileAndExports) {
  const std::string empty = render_flame_svg({}, FlameOptions{});
  EXPECT_NE(empty.find("no samples"), std::string::npos);
  parses(kXmlCheck, empty, "empty.svg");
  EXPECT_EQ(layout_flame({{"a", 0}}, 0.001).frames.size(), 0u);

  // Too deep: cut and counted; markup, bad UTF-8 and control bytes still give valid XML.
  std::string deep;
  for (int i = 0; i < 2000; ++i) deep += "f;";
  const std::vector<FoldedStack> hostile = {
      {deep, 3}, {"<script>;a&b;\xff\xfe\x01;;", 2}, {"ok", UINT64_MAX}};
  const FlameLayout l = layout_flame(hostile, 0);
  EXPECT_EQ(l.truncated_stacks, 1u);
  EXPECT_EQ(l.max_depth, kMaxFlameDepth);
  EXPECT_EQ(l.total_samples, UINT64_MAX);  // saturated, not wrapped
  const std::string svg = render_flame_svg(hostile, FlameOptions{});
  parses(kXmlCheck, svg, "hostile.svg");
  EXPECT_EQ(svg.find("<script>"), std::string::npos);

  std::ostringstream folded;
  write_folded(test_stacks(), folded);
  EXPECT_EQ(folded.str(), "a;b;c 40\na;e 9\na;b;d 30\na;b;c 20\nx;y 1\n");
  const std::vector<SelfSamples> top = top_self(test_stacks(), 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].name, "c");
  EXPECT_EQ(top[0].samples, 60u);
  EXPECT_EQ(top[1].name, "d");
  EXPECT_EQ(top[2].name, "e");

  EXPECT_EQ(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
  EXPECT_EQ(xml_escape("\xC3\xA9\t\n"), "\xC3\xA9\t\n");  // é and allowed whitespace kept
  // Each byte of a broken sequence becomes one U+FFFD: a lone lead byte, an overlong E0 80 80,
  // a surrogate ED A0 80, the non-character EF BF BF; and the control byte 01.
  std::string expected;
  for (int i = 0; i < 11; ++i) expected += "\xEF\xBF\xBD";
  EXPECT_EQ(xml_escape("\x01\xC3\xE0\x80\x80\xED\xA0\x80\xEF\xBF\xBF"), expected);
}

TEST(ProfReport, NamesTheFlameAndItsHotFunctions) {
  Capture c = test_capture();
  std::ostringstream none;
  write_report(c, 5, none, "x.hprof");
  EXPECT_EQ(none.str().find("flame graph"), std::string::npos);

  c.flame = FlameProfile{"perf_event_paranoid is 3", 0, 0, {}};
  std::ostringstream refused;
  write_report(c, 5, refused, "x.hprof");
  EXPECT_NE(refused.str().find("flame graph: none (perf_event_paranoid is 3)"), std::string::npos);

  c.flame = FlameProfile{"ok", 99, 7, test_stacks()};
  std::ostringstream ok;
  write_report(c, 5, ok, "x.hprof");
  const std::string r = ok.str();
  EXPECT_NE(r.find("flame graph: 100 samples in 6 stacks of pid 7 at 99 Hz: heraldctl prof flame "
                   "x.hprof -o flame.svg"),
            std::string::npos)
      << r;
  EXPECT_NE(r.find("60%  c\n"), std::string::npos) << r;
}

}  // namespace
}  // namespace herald::tools

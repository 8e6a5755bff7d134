// heraldctl prof plot (prof_plot.h): groups, charts, axes and the SVG and HTML documents.
#include "tools/heraldctl/prof_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>

#include "tools/heraldctl/flame_graph.h"
#include "tools/heraldctl/prof.h"

namespace herald::tools {

using profiler::Capture;
using profiler::SeriesKind;

namespace {

std::string_view first_component(std::string_view name) {
  return name.substr(0, std::min(name.find('.'), name.size()));
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::string plot_group(std::string_view name) {
  if (starts_with(name, "os.")) {
    const std::string_view rest = name.substr(3);
    if (starts_with(rest, "cpu")) return "os.cpu";  // os.cpu.user and os.cpuN.user
    if (starts_with(rest, "mem.") || starts_with(rest, "hugepages.")) return "os.mem";
    if (starts_with(rest, "net.")) return "os.net";
    if (starts_with(rest, "disk.")) return "os.disk";
    if (starts_with(rest, "tcp.") || rest == "sockets_used") return "os.tcp";
    return "os.kernel";
  }
  if (starts_with(name, "proc.") || starts_with(name, "ctr.")) {
    const std::string_view kind = name.substr(0, 4 + (name[0] == 'p' ? 1 : 0));  // "proc."/"ctr."
    const std::string_view rest = name.substr(kind.size());
    if (rest.find('.') == std::string_view::npos) return std::string(first_component(name));
    return std::string(kind) + std::string(first_component(rest));
  }
  if (starts_with(name, "hw.")) return "hw";
  if (starts_with(name, "derived.")) return "derived";
  const std::string_view first = first_component(name);
  return first.empty() ? std::string("other") : std::string(first);
}

bool glob_match(std::string_view pattern, std::string_view text) {
  // Greedy with one backtrack point (the last '*'): linear in practice, O(p*t) at worst.
  size_t p = 0, t = 0;
  size_t star = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_t = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<size_t> select_series(const Capture& c, const std::vector<std::string>& globs) {
  std::vector<size_t> out;
  for (size_t i = 0; i < c.series.size(); ++i) {
    if (globs.empty() || std::any_of(globs.begin(), globs.end(), [&](const std::string& g) {
          return glob_match(g, c.series[i].name);
        })) {
      out.push_back(i);
    }
  }
  return out;
}

namespace {

// First to last sample; 0 when the clock ran backwards (only a hand-made file does that).
double capture_span_s(const Capture& c) {
  if (c.samples.size() < 2) return 0;
  const uint64_t first = c.samples.front().mono_ns, last = c.samples.back().mono_ns;
  return last > first ? static_cast<double>(last - first) / 1e9 : 0;
}

}  // namespace

size_t sample_spacing(const Capture& c, size_t series) {
  std::vector<size_t> distances;
  std::optional<size_t> last;
  for (size_t k = 0; k < c.samples.size(); ++k) {
    if (!c.samples[k].values[series]) continue;
    if (last) distances.push_back(k - *last);
    last = k;
  }
  if (distances.empty()) return 1;
  auto mid = distances.begin() + static_cast<ptrdiff_t>(distances.size() / 2);
  std::nth_element(distances.begin(), mid, distances.end());
  return *mid;
}

std::vector<std::vector<PlotPoint>> plot_runs(const Capture& c, size_t series, size_t columns,
                                              uint64_t rate_window_ns) {
  std::vector<std::vector<PlotPoint>> runs;
  if (c.samples.empty() || columns == 0) return runs;
  const uint64_t t0 = c.samples.front().mono_ns;
  const double span_s = std::max(1e-9, capture_span_s(c));
  // A series read every N samples by the clock (every 100 ms) lands N-1..N+1 apart when ticks
  // are late: half a spacing of slack, none for series with a value in every sample.
  const size_t spacing = sample_spacing(c, series);
  const size_t max_step = spacing == 1 ? 1 : spacing + spacing / 2;
  // The open column of the current run: its extremes, emitted in sample order.
  bool open = false;
  size_t column = 0;
  PlotPoint lo, hi;
  size_t lo_k = 0, hi_k = 0;
  auto flush = [&] {
    if (!open) return;
    std::vector<PlotPoint>& run = runs.back();
    if (lo_k == hi_k) {
      run.push_back(lo);
    } else if (lo_k < hi_k) {
      run.push_back(lo);
      run.push_back(hi);
    } else {
      run.push_back(hi);
      run.push_back(lo);
    }
    open = false;
  };
  SeriesPoints points(c.series[series].kind, rate_window_ns);
  std::optional<size_t> last_k;  // the last drawn sample
  for (size_t k = 0; k < c.samples.size(); ++k) {
    const std::optional<double> v = points.next(c.samples[k].values[series], c.samples[k].mono_ns);
    if (!v || !std::isfinite(*v)) continue;
    // Missing samples further apart than the series' usual spacing are a gap: the pen lifts.
    if (!last_k || k - *last_k > max_step) {
      flush();
      runs.emplace_back();
    }
    last_k = k;
    // Samples are in clock order in a capture the node wrote; a hostile file is drawn clamped.
    const uint64_t at_ns = c.samples[k].mono_ns;
    const double t = std::min(span_s, static_cast<double>(at_ns < t0 ? 0 : at_ns - t0) / 1e9);
    const auto col = static_cast<size_t>(std::clamp(t / span_s * static_cast<double>(columns), 0.0,
                                                    static_cast<double>(columns - 1)));
    if (open && col != column) flush();
    const PlotPoint p{t, *v};
    if (!open) {
      open = true;
      column = col;
      lo = hi = p;
      lo_k = hi_k = k;
    } else if (p.value < lo.value) {
      lo = p;
      lo_k = k;
    } else if (p.value > hi.value) {
      hi = p;
      hi_k = k;
    }
  }
  flush();
  return runs;
}

std::string format_si(double v) {
  if (!std::isfinite(v)) return "?";
  if (std::fabs(v) < 1e-15) return "0";
  static constexpr const char* kPrefix[] = {"p", "n", "\xC2\xB5", "m", "", "k", "M", "G", "T", "P"};
  int exp3 = static_cast<int>(std::floor(std::log10(std::fabs(v)) / 3));
  exp3 = std::clamp(exp3, -4, 5);
  double m = v / std::pow(10.0, 3 * exp3);
  // Rounding to 3 digits can reach 1000 (999.7k is "1M").
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g", m);
  if (std::fabs(std::strtod(buf, nullptr)) >= 1000 && exp3 < 5) {
    ++exp3;
    m = v / std::pow(10.0, 3 * exp3);
    std::snprintf(buf, sizeof buf, "%.3g", m);
  }
  return std::string(buf) + kPrefix[exp3 + 4];
}

namespace {

constexpr size_t kMaxLinesPerChart = 8;
constexpr double kCharWidth = 6.4;  // 11 px sans-serif, an average glyph
// Tableau 10: distinguishable, also for the common colour blindnesses.
constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f"};

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

struct Line {
  size_t index = 0;  // in the capture's directory
  const SeriesSummary* summary = nullptr;
};

struct Chart {
  std::string title;  // the shared name prefix, else the group
  std::string unit;
  std::vector<Line> lines;
};

struct Group {
  std::string name;
  std::vector<Chart> charts;
  std::vector<Line> constant;
  std::vector<Line> unavailable;
};

// Where a group goes on the page: the OS first in a fixed order, then processes, counters,
// hardware, derived figures, anything else; by name within a rank.
int group_rank(const std::string& g) {
  static constexpr const char* kOs[] = {"os.cpu", "os.kernel", "os.mem",
                                        "os.net", "os.disk",   "os.tcp"};
  for (int i = 0; i < 6; ++i) {
    if (g == kOs[i]) return i;
  }
  if (starts_with(g, "proc")) return 10;
  if (starts_with(g, "ctr")) return 11;
  if (g == "hw") return 12;
  if (g == "derived") return 13;
  return 14;
}

// The name up to its last dot ("os.cpu0" for "os.cpu0.user"): what a line is about.
std::string object_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

std::string common_prefix(const std::vector<Line>& lines, const Capture& c) {
  if (lines.empty()) return "";
  std::string prefix = c.series[lines.front().index].name;
  for (const Line& l : lines) {
    const std::string& n = c.series[l.index].name;
    size_t k = 0;
    while (k < prefix.size() && k < n.size() && prefix[k] == n[k]) ++k;
    prefix.resize(k);
  }
  // Only whole components: cut back to the last dot, which stays.
  const size_t dot = prefix.rfind('.');
  return dot == std::string::npos ? "" : prefix.substr(0, dot + 1);
}

std::vector<Group> build_groups(const Capture& c, const std::vector<size_t>& chosen,
                                const std::vector<SeriesSummary>& summaries) {
  std::map<std::string, Group> by_name;
  // Per group, per unit (in directory order), the lines to draw.
  std::map<std::string, std::vector<std::pair<std::string, std::vector<Line>>>> drawn;
  std::map<std::pair<std::string, std::string>, size_t> unit_index;  // (group, unit) -> drawn
  for (const size_t i : chosen) {
    const std::string g = plot_group(c.series[i].name);
    Group& group = by_name[g];
    group.name = g;
    const SeriesSummary& s = summaries[i];
    const Line line{i, &s};
    if (s.points == 0) {
      group.unavailable.push_back(line);
    } else if (s.min == s.max) {
      group.constant.push_back(line);
    } else {
      auto& units = drawn[g];
      const auto [at, fresh] = unit_index.try_emplace({g, s.unit}, units.size());
      if (fresh) units.emplace_back(s.unit, std::vector<Line>{});
      units[at->second].second.push_back(line);
    }
  }
  for (auto& [g, units] : drawn) {
    Group& group = by_name[g];
    for (auto& [unit, lines] : units) {
      // Too many lines for one chart: one chart per object (os.cpu0, os.cpu1), then chunks.
      std::vector<std::vector<Line>> parts;
      if (lines.size() <= kMaxLinesPerChart) {
        parts.push_back(lines);
      } else {
        std::vector<std::pair<std::string, std::vector<Line>>> objects;
        std::map<std::string, size_t> object_index;
        for (const Line& l : lines) {
          std::string o = object_of(c.series[l.index].name);
          const auto [at, fresh] = object_index.try_emplace(o, objects.size());
          if (fresh) objects.emplace_back(std::move(o), std::vector<Line>{});
          objects[at->second].second.push_back(l);
        }
        // Objects with a line or two each (hw.cpu0.cycles, hw.cpu1.cycles...) are packed
        // together rather than given a chart each.
        std::vector<Line> pack;
        for (auto& [o, ls] : objects) {
          if (ls.size() <= 2) {
            pack.insert(pack.end(), ls.begin(), ls.end());
            continue;
          }
          for (size_t k = 0; k < ls.size(); k += kMaxLinesPerChart) {
            parts.emplace_back(
                ls.begin() + static_cast<ptrdiff_t>(k),
                ls.begin() + static_cast<ptrdiff_t>(std::min(ls.size(), k + kMaxLinesPerChart)));
          }
        }
        for (size_t k = 0; k < pack.size(); k += kMaxLinesPerChart) {
          parts.emplace_back(
              pack.begin() + static_cast<ptrdiff_t>(k),
              pack.begin() + static_cast<ptrdiff_t>(std::min(pack.size(), k + kMaxLinesPerChart)));
        }
      }
      for (std::vector<Line>& part : parts) {
        Chart chart;
        // Titled by what its lines share when that says more than the group ("os.net.lo",
        // "proc.controlplane"), else by the group ("os.kernel", not "os").
        std::string prefix = common_prefix(part, c);
        if (!prefix.empty()) prefix.pop_back();
        chart.title = starts_with(prefix, g) ? prefix : g;
        chart.unit = unit;
        chart.lines = std::move(part);
        group.charts.push_back(std::move(chart));
      }
    }
  }
  std::vector<Group> out;
  for (auto& [name, g] : by_name) out.push_back(std::move(g));
  std::stable_sort(out.begin(), out.end(), [](const Group& a, const Group& b) {
    const int ra = group_rank(a.name), rb = group_rank(b.name);
    return ra != rb ? ra < rb : a.name < b.name;
  });
  return out;
}

// Tick positions: 4-8 "nice" steps (1, 2, 5 x 10^n) covering [lo, hi].
struct Axis {
  double lo = 0, hi = 1, step = 1;
};
Axis nice_axis(double lo, double hi) {
  if (!(hi > lo)) {  // one value, or nothing: a band around it
    const double pad = std::max(std::fabs(lo) * 0.1, 1.0);
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  return {std::floor(lo / step) * step, std::ceil(hi / step) * step, step};
}

std::string unit_label(const std::string& unit) {
  // /proc's jiffies are USER_HZ = 100 a second on every Linux ABI: 1 jiffy/s is 1% of a CPU.
  if (unit == "jiffies/s") return "jiffies/s (= % of a CPU)";
  return unit;
}

struct Timeline {
  double span_s = 1;
  uint64_t rate_window_ns = 0;
};

// One chart as an <svg> element of `width` px (nested in the page or inline in HTML); its
// height is returned through `height`.
std::string chart_svg(const Capture& c, const Chart& chart, double width, const Timeline& tl,
                      const std::string& position, double& height) {
  constexpr double kLeft = 64, kRight = 16, kTop = 26, kPlot = 150, kAxis = 34, kLegendRow = 16;
  const double plot_w = std::max(100.0, width - kLeft - kRight);
  const size_t columns = static_cast<size_t>(plot_w);
  const std::string prefix = common_prefix(chart.lines, c);
  // Legend layout: as many columns as the longest label allows.
  size_t longest = 1;
  std::vector<std::string> labels;
  for (const Line& l : chart.lines) {
    std::string label = c.series[l.index].name;
    if (!prefix.empty() && starts_with(label, prefix) && label.size() > prefix.size()) {
      label = label.substr(prefix.size());
    }
    longest = std::max(longest, label.size());
    labels.push_back(std::move(label));
  }
  const double col_w = std::min(plot_w, static_cast<double>(longest) * kCharWidth + 28);
  const size_t per_row = std::max<size_t>(1, static_cast<size_t>(plot_w / col_w));
  const size_t rows = (labels.size() + per_row - 1) / per_row;
  height = kTop + kPlot + kAxis + static_cast<double>(rows) * kLegendRow + 6;

  std::vector<std::vector<std::vector<PlotPoint>>> runs;
  double lo = INFINITY, hi = -INFINITY;
  for (const Line& l : chart.lines) {
    runs.push_back(plot_runs(c, l.index, columns, tl.rate_window_ns));
    lo = std::min(lo, l.summary->min);
    hi = std::max(hi, l.summary->max);
  }
  // Anchor at 0 when the data is near it: a level reads right; a far-off band is zoomed in on.
  if (lo >= 0 && lo <= hi * 0.5) lo = 0;
  if (hi <= 0 && hi >= lo * 0.5) hi = 0;
  const Axis y = nice_axis(lo, hi);
  const Axis x = nice_axis(0, tl.span_s);
  const double x_max = std::max(tl.span_s, 1e-9);
  auto px = [&](double t) { return kLeft + t / x_max * plot_w; };
  auto py = [&](double v) { return kTop + kPlot - (v - y.lo) / (y.hi - y.lo) * kPlot; };

  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" " + position + "width=\"" +
                  num(width) + "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(width) +
                  " " + num(height) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  s += "<text x=\"" + num(kLeft) + "\" y=\"16\" font-size=\"13\" font-weight=\"bold\">" +
       xml_escape(chart.title) + "</text><text x=\"" + num(width - kRight) +
       "\" y=\"16\" text-anchor=\"end\" fill=\"#555\">" + xml_escape(unit_label(chart.unit)) +
       "</text>\n";
  s += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(kTop) + "\" width=\"" + num(plot_w) +
       "\" height=\"" + num(kPlot) + "\" fill=\"#fcfcfc\" stroke=\"#ccc\"/>\n";
  // Grid and tick labels, counted by index: adding a step to a value near 2^63 may not change
  // it, and nice_axis gives 5-10 steps.
  const auto ticks = [](const Axis& a, double end) {
    return static_cast<int>(std::clamp(std::floor((end - a.lo) / a.step + 1e-6), 0.0, 20.0));
  };
  for (int i = 0; i <= ticks(y, y.hi); ++i) {
    const double v = y.lo + i * y.step;
    const double yy = py(v);
    s += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + plot_w) + "\" y1=\"" + num(yy) +
         "\" y2=\"" + num(yy) + "\" stroke=\"#e4e4e4\"/><text x=\"" + num(kLeft - 5) + "\" y=\"" +
         num(yy + 4) + "\" text-anchor=\"end\">" +
         xml_escape(format_si(std::fabs(v) < y.step * 1e-9 ? 0 : v)) + "</text>\n";
  }
  for (int i = 0; i <= ticks(x, x_max); ++i) {
    const double t = i * x.step;
    char label[32];
    std::snprintf(label, sizeof label, "%g", t);  // seconds read best without SI prefixes
    const double xx = px(t);
    s += "<line x1=\"" + num(xx) + "\" x2=\"" + num(xx) + "\" y1=\"" + num(kTop) + "\" y2=\"" +
         num(kTop + kPlot) + "\" stroke=\"#eee\"/><text x=\"" + num(xx) + "\" y=\"" +
         num(kTop + kPlot + 14) + "\" text-anchor=\"middle\">" + std::string(label) + "</text>\n";
  }
  s += "<text x=\"" + num(kLeft + plot_w) + "\" y=\"" + num(kTop + kPlot + 28) +
       "\" text-anchor=\"end\" fill=\"#555\">time (s)</text>\n";
  // The lines: one <path> per series, a subpath per run (a gap lifts the pen); a run of one
  // point is a dot, which a path cannot show.
  for (size_t i = 0; i < chart.lines.size(); ++i) {
    const Line& l = chart.lines[i];
    const char* colour = kPalette[i % std::size(kPalette)];
    const std::string tip =
        xml_escape(c.series[l.index].name + ": min " + format_si(l.summary->min) + ", median " +
                   format_si(l.summary->median) + ", p99 " + format_si(l.summary->p99) + ", max " +
                   format_si(l.summary->max) + " " + l.summary->unit);
    std::string d;
    std::string dots;
    for (const std::vector<PlotPoint>& run : runs[i]) {
      if (run.size() == 1) {
        dots += "<circle cx=\"" + num(px(run[0].t_s)) + "\" cy=\"" + num(py(run[0].value)) +
                "\" r=\"1.5\" fill=\"" + colour + "\"/>";
        continue;
      }
      for (size_t k = 0; k < run.size(); ++k) {
        // Appended piece by piece: `"M" + std::string&&` trips GCC 12's -Wrestrict false
        // positive at -O3 (the release build, tools/run-node).
        d += k == 0 ? 'M' : 'L';
        d += num(px(run[k].t_s));
        d += ' ';
        d += num(py(run[k].value));
      }
    }
    s += "<g class=\"series\"><title>" + tip + "</title>";
    if (!d.empty()) {
      s += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + colour +
           "\" stroke-width=\"1.3\" stroke-linejoin=\"round\"/>";
    }
    s += dots + "</g>\n";
  }
  // Legend.
  const double legend_y = kTop + kPlot + kAxis;
  for (size_t i = 0; i < labels.size(); ++i) {
    const double lx = kLeft + static_cast<double>(i % per_row) * col_w;
    const double ly = legend_y + static_cast<double>(i / per_row) * kLegendRow;
    s += "<g><title>" + xml_escape(c.series[chart.lines[i].index].name) + "</title><rect x=\"" +
         num(lx) + "\" y=\"" + num(ly) + "\" width=\"14\" height=\"4\" fill=\"" +
         kPalette[i % std::size(kPalette)] + "\"/><text x=\"" + num(lx + 18) + "\" y=\"" +
         num(ly + 6) + "\">" + xml_escape(labels[i]) + "</text></g>\n";
  }
  s += "</svg>\n";
  return s;
}

// What a group does not draw, as (heading, items) notes: series constant at 0 (by name: the
// common case, e.g. error counters), other constants with their value, unavailable series.
std::vector<std::pair<std::string, std::vector<std::string>>> group_notes(const Capture& c,
                                                                          const Group& g) {
  std::vector<std::string> zero, level, missing;
  for (const Line& l : g.constant) {
    if (l.summary->min == 0) {
      zero.push_back(c.series[l.index].name);
    } else {
      const std::string unit = l.summary->unit.empty() ? "" : " " + l.summary->unit;
      level.push_back(c.series[l.index].name + " = " + format_si(l.summary->min) + unit);
    }
  }
  for (const Line& l : g.unavailable) missing.push_back(c.series[l.index].name);
  std::vector<std::pair<std::string, std::vector<std::string>>> notes;
  if (!zero.empty()) {
    notes.emplace_back(std::to_string(zero.size()) + " series constant at 0 (not drawn):", zero);
  }
  if (!level.empty()) {
    notes.emplace_back(std::to_string(level.size()) + " series constant (not drawn):", level);
  }
  if (!missing.empty()) {
    notes.emplace_back(std::to_string(missing.size()) + " series unavailable (no values):",
                       missing);
  }
  return notes;
}

std::string utc_time(uint64_t unix_ms) {
  const auto secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm {};
  if (gmtime_r(&secs, &tm) == nullptr) return "?";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%03u UTC", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<unsigned>(unix_ms % 1000));
  return buf;
}

struct Page {
  std::vector<SeriesSummary> summaries;
  std::vector<Group> groups;
  size_t chosen = 0, charted = 0, constant = 0, unavailable = 0;
  Timeline timeline;
  std::vector<std::pair<std::string, std::string>> meta;  // label, value
};

Page build_page(const Capture& c, const PlotOptions& o) {
  Page p;
  p.summaries = summarize(c, o.rate_window_ns);
  const std::vector<size_t> chosen = select_series(c, o.series_globs);
  p.chosen = chosen.size();
  p.groups = build_groups(c, chosen, p.summaries);
  for (const Group& g : p.groups) {
    for (const Chart& ch : g.charts) p.charted += ch.lines.size();
    p.constant += g.constant.size();
    p.unavailable += g.unavailable.size();
  }
  const double span_s = capture_span_s(c);
  p.timeline.span_s = span_s > 0 ? span_s : 1;
  p.timeline.rate_window_ns = o.rate_window_ns;
  char span[32], interval[32];
  std::snprintf(span, sizeof span, "%.3f s", span_s);
  std::snprintf(interval, sizeof interval, "%g ms", static_cast<double>(c.meta.interval_ns) / 1e6);
  p.meta = {{"node", c.meta.node.empty() ? "-" : c.meta.node},
            {"host", c.meta.host.empty() ? "-" : c.meta.host},
            {"start", utc_time(c.meta.start_unix_ms)},
            {"interval", interval},
            {"counter rates over", o.rate_window_ns == 0
                                       ? std::string("each sample")
                                       : num(static_cast<double>(o.rate_window_ns) / 1e6) + " ms"},
            {"samples", std::to_string(c.samples.size())},
            {"duration", span},
            {"series", std::to_string(c.series.size()) + " (" + std::to_string(p.chosen) +
                           " chosen: " + std::to_string(p.charted) + " charted, " +
                           std::to_string(p.constant) + " constant, " +
                           std::to_string(p.unavailable) + " unavailable)"}};
  if (!o.source.empty()) p.meta.insert(p.meta.begin(), {"file", o.source});
  return p;
}

int clamp_width(int w) {
  return std::clamp(w, 400, 4000);
}

std::string anchor(size_t i, const std::string& name) {
  std::string a = "g" + std::to_string(i) + "-";
  for (const char ch : name) {
    a.push_back(std::isalnum(static_cast<unsigned char>(ch)) != 0 ? ch : '-');
  }
  return a;
}

std::string flame_subtitle(const Capture& c) {
  const profiler::FlameProfile& f = *c.flame;
  return "node " + (c.meta.node.empty() ? std::string("-") : c.meta.node) + ", pid " +
         std::to_string(f.pid) + ", " + std::to_string(f.frequency_hz) + " Hz, " +
         std::to_string(flame_total(f.stacks)) + " samples";
}

// Why a capture has no flame graph to show, or "" when it has one.
std::string flame_absence(const Capture& c) {
  if (!c.flame) return "No CPU profile in this capture: none was asked for.";
  if (c.flame->status != "ok") {
    return "No CPU profile: " +
           (c.flame->status.empty() ? std::string("no status given") : c.flame->status) + ".";
  }
  if (flame_total(c.flame->stacks) == 0) return "The CPU profile holds no samples.";
  return "";
}

}  // namespace

std::string render_plot_svg(const Capture& c, const PlotOptions& o) {
  const Page page = build_page(c, o);
  const double width = clamp_width(o.width_px);
  const size_t wrap_chars = static_cast<size_t>((width - 40) / kCharWidth);
  std::string body;
  double y = 0;
  auto text = [&](double x, double size, const std::string& t, const char* extra = "") {
    y += size + 6;
    body += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(size) + "\"" +
            extra + ">" + xml_escape(t) + "</text>\n";
  };
  // A note as wrapped lines of ", "-joined items, at most 10 lines.
  auto note = [&](const std::string& head, const std::vector<std::string>& items) {
    std::vector<std::string> lines;
    if (!head.empty()) lines.push_back(head);
    lines.emplace_back();
    size_t shown = 0;
    for (const std::string& item : items) {
      if (!lines.back().empty() && lines.back().size() + item.size() + 2 > wrap_chars) {
        if (lines.size() == 10) break;
        lines.emplace_back();
      }
      lines.back() += (lines.back().empty() ? "" : ", ") + item;
      ++shown;
    }
    if (shown < items.size()) {
      lines.back() += ", and " + std::to_string(items.size() - shown) + " more";
    }
    for (const std::string& l : lines) text(24, 11, l, " fill=\"#555\"");
  };
  text(16, 18, "Herald profile" + (o.source.empty() ? "" : ": " + o.source),
       " font-weight=\"bold\"");
  std::vector<std::string> meta;
  for (const auto& [k, v] : page.meta) meta.push_back(k + " " + v);
  note("", meta);
  if (page.chosen == 0) text(16, 12, "No series match the selection.");
  for (const Group& g : page.groups) {
    y += 10;
    text(16, 15, g.name, " font-weight=\"bold\"");
    for (const Chart& ch : g.charts) {
      double h = 0;
      body += chart_svg(c, ch, width, page.timeline, "x=\"0\" y=\"" + num(y + 4) + "\" ", h);
      y += h + 4;
    }
    for (const auto& [head, items] : group_notes(c, g)) note(head, items);
  }
  y += 16;
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" +
         num(width) + "\" height=\"" + num(y) + "\" viewBox=\"0 0 " + num(width) + " " + num(y) +
         "\" font-family=\"sans-serif\">\n<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" "
         "fill=\"#ffffff\"/>\n" +
         body + "</svg>\n";
}

std::string render_plot_html(const Capture& c, const PlotOptions& o) {
  const Page page = build_page(c, o);
  const double width = clamp_width(o.width_px);
  std::string h;
  const std::string title =
      "Herald profile: " + (c.meta.node.empty() ? std::string("-") : c.meta.node) + " " +
      utc_time(c.meta.start_unix_ms);
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
       xml_escape(title) +
       "</title>\n<style>\n"
       "body{font-family:sans-serif;margin:16px auto;max-width:" +
       num(width + 40) +
       "px;color:#222}\n"
       "h1{font-size:20px}h2{font-size:16px;border-bottom:1px solid #ddd;padding-top:8px}\n"
       "table.meta td{padding:1px 10px 1px 0}table.meta td:first-child{color:#666}\n"
       "svg{display:block;margin:4px 0}.note{color:#555;font-size:13px}\n"
       "details li{font-family:monospace;font-size:12px}pre{font-size:12px;overflow-x:auto}\n"
       "nav ul{columns:3}\n</style>\n</head>\n<body>\n<h1>" +
       xml_escape(title) + "</h1>\n<table class=\"meta\">\n";
  for (const auto& [k, v] : page.meta) {
    h += "<tr><td>" + xml_escape(k) + "</td><td>" + xml_escape(v) + "</td></tr>\n";
  }
  h += "</table>\n<nav>\n<h2>Contents</h2>\n<ul>\n";
  for (size_t i = 0; i < page.groups.size(); ++i) {
    const Group& g = page.groups[i];
    size_t lines = 0;
    for (const Chart& ch : g.charts) lines += ch.lines.size();
    std::string counts = std::to_string(lines) + " charted";
    if (!g.constant.empty()) counts += ", " + std::to_string(g.constant.size()) + " constant";
    if (!g.unavailable.empty()) {
      counts += ", " + std::to_string(g.unavailable.size()) + " unavailable";
    }
    h += "<li><a href=\"#" + anchor(i, g.name) + "\">" + xml_escape(g.name) + "</a> (" + counts +
         ")</li>\n";
  }
  h += "<li><a href=\"#flame\">CPU flame graph</a></li>\n"
       "<li><a href=\"#report\">Summary table</a></li>\n</ul>\n</nav>\n";
  if (page.chosen == 0) h += "<p class=\"note\">No series match the selection.</p>\n";
  auto details = [&](const std::string& head, const std::vector<std::string>& items) {
    h += "<details class=\"note\"><summary>" + xml_escape(head) + "</summary><ul>\n";
    for (const std::string& item : items) h += "<li>" + xml_escape(item) + "</li>\n";
    h += "</ul></details>\n";
  };
  for (size_t i = 0; i < page.groups.size(); ++i) {
    const Group& g = page.groups[i];
    h += "<section id=\"" + anchor(i, g.name) + "\">\n<h2>" + xml_escape(g.name) + "</h2>\n";
    for (const Chart& ch : g.charts) {
      double ignored = 0;
      h += chart_svg(c, ch, width, page.timeline, "", ignored);
    }
    for (const auto& [head, items] : group_notes(c, g)) details(head, items);
    h += "</section>\n";
  }
  h += "<section id=\"flame\">\n<h2>CPU flame graph</h2>\n";
  if (const std::string why = flame_absence(c); !why.empty()) {
    h += "<p class=\"note\">" + xml_escape(why) + "</p>\n";
  } else {
    FlameOptions fo;
    fo.width_px = static_cast<int>(width);
    fo.title = "CPU flame graph of the dataplane";
    fo.subtitle = flame_subtitle(c);
    h += render_flame_svg(c.flame->stacks, fo);
  }
  std::ostringstream report;
  write_report(c, 10, report, o.source.empty() ? "run.hprof" : o.source, o.rate_window_ns);
  h += "</section>\n<section id=\"report\">\n<h2>Summary table</h2>\n<pre>" +
       xml_escape(report.str()) + "</pre>\n</section>\n</body>\n</html>\n";
  return h;
}

}  // namespace herald::tools

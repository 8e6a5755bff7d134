// heraldctl prof: capture, report and CSV (prof.h).
#include "tools/heraldctl/prof.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tools/heraldctl/flame_graph.h"

namespace herald::tools {

using profiler::Capture;
using profiler::SeriesKind;

std::optional<uint64_t> parse_duration_ms(std::string_view text) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr == text.data()) return std::nullopt;
  const std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  uint64_t scale = 0;
  if (unit.empty() || unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60'000;
  } else {
    return std::nullopt;
  }
  if (v == 0 || v > UINT64_MAX / scale / 1000) return std::nullopt;
  return v * scale;
}

namespace {

// Nearest-rank percentile of sorted points.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::vector<double> points_of(const Capture& c, size_t i, uint64_t rate_window_ns) {
  std::vector<double> out;
  SeriesPoints points(c.series[i].kind, rate_window_ns);
  for (const profiler::Sample& s : c.samples) {
    if (const std::optional<double> p = points.next(s.values[i], s.mono_ns)) out.push_back(*p);
  }
  return out;
}

std::string number(double v) {
  std::ostringstream s;
  if (v != 0 && (std::fabs(v) >= 1e9 || std::fabs(v) < 1e-2)) {
    s << std::setprecision(3) << std::scientific << v;
  } else {
    s << std::fixed << std::setprecision(std::fabs(v - std::round(v)) < 1e-9 ? 0 : 2) << v;
  }
  return s.str();
}

std::string csv_field(std::string_view text) {
  if (text.find_first_of(",\"\n") == std::string_view::npos) return std::string(text);
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// The report's CPU profile part: why there is none, or where to see it and its hot functions.
void write_flame_summary(const Capture& c, const std::string& capture_path, std::ostream& out) {
  if (!c.flame) return;  // none was asked for: nothing to say
  const profiler::FlameProfile& f = *c.flame;
  if (f.status != "ok") {
    out << "\nflame graph: none (" << (f.status.empty() ? "no status" : f.status) << ")\n";
    return;
  }
  const uint64_t total = flame_total(f.stacks);
  out << "\nflame graph: " << total << " samples in " << f.stacks.size() << " stacks of pid "
      << f.pid << " at " << f.frequency_hz << " Hz: heraldctl prof flame " << capture_path
      << " -o flame.svg (also in prof plot -o run.html)\n";
  if (total == 0) return;
  const std::vector<SelfSamples> top = top_self(f.stacks, 10);
  out << "top functions by self samples:\n";
  for (const SelfSamples& s : top) {
    out << "  " << std::right << std::setw(10) << s.samples << std::setw(9)
        << number(100.0 * static_cast<double>(s.samples) / static_cast<double>(total)) << "%  "
        << s.name << "\n";
  }
}

}  // namespace

std::optional<double> SeriesPoints::next(const std::optional<int64_t>& value, uint64_t mono_ns) {
  if (!value) return std::nullopt;
  if (kind_ != SeriesKind::kCounter) return static_cast<double>(*value);
  if (!readings_.empty() && mono_ns <= readings_.back().second) {
    readings_.clear();  // the clock went backwards (a hostile file): start over from here
    readings_.emplace_back(*value, mono_ns);
    return std::nullopt;
  }
  // The base: the newest earlier reading at least a window old (the previous one for 0).
  while (readings_.size() >= 2 && mono_ns - readings_[1].second >= rate_window_ns_) {
    readings_.pop_front();
  }
  const bool have_base =
      !readings_.empty() && mono_ns - readings_.front().second >= rate_window_ns_;
  const std::optional<int64_t> prev =
      have_base ? std::optional<int64_t>(readings_.front().first) : std::nullopt;
  const uint64_t prev_ns = have_base ? readings_.front().second : 0;
  readings_.emplace_back(*value, mono_ns);
  if (!prev) return std::nullopt;
  // The wrapping difference, as the format stores it: a hostile capture cannot make this
  // overflow (undefined in signed arithmetic), only produce a large rate.
  const auto delta =
      static_cast<int64_t>(static_cast<uint64_t>(*value) - static_cast<uint64_t>(*prev));
  return static_cast<double>(delta) * 1e9 / static_cast<double>(mono_ns - prev_ns);
}

std::vector<SeriesSummary> summarize(const Capture& c, uint64_t rate_window_ns) {
  std::vector<SeriesSummary> out;
  for (size_t i = 0; i < c.series.size(); ++i) {
    std::vector<double> pts = points_of(c, i, rate_window_ns);
    SeriesSummary s;
    s.name = c.series[i].name;
    s.kind = c.series[i].kind;
    s.unit = s.kind == SeriesKind::kCounter ? c.series[i].unit + "/s" : c.series[i].unit;
    s.points = pts.size();
    if (!pts.empty()) {
      std::sort(pts.begin(), pts.end());
      s.min = pts.front();
      s.max = pts.back();
      s.median = percentile(pts, 0.5);
      s.p99 = percentile(pts, 0.99);
      s.movement = (s.max - s.min) / std::max(std::fabs(s.median), 1.0);
    }
    out.push_back(std::move(s));
  }
  return out;
}

void write_report(const Capture& c, size_t top_movers, std::ostream& out,
                  const std::string& capture_path, uint64_t rate_window_ns) {
  const double span_s =
      c.samples.size() < 2
          ? 0
          : static_cast<double>(c.samples.back().mono_ns - c.samples.front().mono_ns) / 1e9;
  out << "capture: node " << (c.meta.node.empty() ? "-" : c.meta.node) << ", host "
      << (c.meta.host.empty() ? "-" : c.meta.host) << ", start_unix_ms " << c.meta.start_unix_ms
      << ", interval " << number(static_cast<double>(c.meta.interval_ns) / 1e6) << " ms, "
      << c.samples.size() << " samples over " << number(span_s) << " s, " << c.series.size()
      << " series\n";
  out << "counter rates over " << number(static_cast<double>(rate_window_ns) / 1e6) << " ms windows"
      << (rate_window_ns == 0 ? " (each sample against the previous)" : "") << "\n\n";
  const std::vector<SeriesSummary> all = summarize(c, rate_window_ns);
  size_t width = 6;
  for (const SeriesSummary& s : all) width = std::max(width, s.name.size());
  auto row = [&](std::string_view a, std::string_view b, std::string_view n, std::string_view c1,
                 std::string_view c2, std::string_view c3, std::string_view c4) {
    out << std::left << std::setw(static_cast<int>(width) + 2) << a << std::setw(16) << b
        << std::right << std::setw(7) << n << std::setw(14) << c1 << std::setw(14) << c2
        << std::setw(14) << c3 << std::setw(14) << c4 << "\n";
  };
  row("series", "unit", "points", "min", "median", "p99", "max");
  size_t unavailable = 0;
  for (const SeriesSummary& s : all) {
    if (s.points == 0) {
      ++unavailable;
      continue;
    }
    row(s.name, s.unit, std::to_string(s.points), number(s.min), number(s.median), number(s.p99),
        number(s.max));
  }
  if (unavailable != 0) {
    out << "\nunavailable (no values in this capture):";
    for (const SeriesSummary& s : all) {
      if (s.points == 0) out << " " << s.name;
    }
    out << "\n";
  }
  std::vector<const SeriesSummary*> movers;
  for (const SeriesSummary& s : all) {
    if (s.points >= 2 && s.movement > 0) movers.push_back(&s);
  }
  std::sort(movers.begin(), movers.end(), [](const SeriesSummary* a, const SeriesSummary* b) {
    return a->movement != b->movement ? a->movement > b->movement : a->name < b->name;
  });
  movers.resize(std::min(movers.size(), top_movers));
  out << "\ntop movers ((max - min) / |median|):\n";
  for (const SeriesSummary* s : movers) {
    out << "  " << std::left << std::setw(static_cast<int>(width) + 2) << s->name << std::right
        << std::setw(12) << number(s->movement) << "  " << number(s->min) << " .. "
        << number(s->max) << " " << s->unit << "\n";
  }
  write_flame_summary(c, capture_path, out);
}

void write_csv(const Capture& c, bool rates, std::ostream& out, uint64_t rate_window_ns) {
  out << "t_ms";
  for (const profiler::SeriesInfo& s : c.series) out << "," << csv_field(s.name);
  out << "\n";
  const uint64_t t0 = c.samples.empty() ? 0 : c.samples.front().mono_ns;
  std::vector<SeriesPoints> points;
  for (const profiler::SeriesInfo& s : c.series) points.emplace_back(s.kind, rate_window_ns);
  for (size_t k = 0; k < c.samples.size(); ++k) {
    const profiler::Sample& s = c.samples[k];
    out << number(static_cast<double>(s.mono_ns - t0) / 1e6);
    for (size_t i = 0; i < c.series.size(); ++i) {
      out << ",";
      const std::optional<double> point = points[i].next(s.values[i], s.mono_ns);
      if (!s.values[i]) continue;
      if (rates && c.series[i].kind == SeriesKind::kCounter) {
        if (point) out << number(*point);
      } else {
        out << *s.values[i];
      }
    }
    out << "\n";
  }
}

absl::StatusOr<Capture> read_capture_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  absl::StatusOr<Capture> c = profiler::decode_capture(bytes.str());
  if (!c.ok()) {
    return absl::Status(c.status().code(),
                        absl::StrCat(path, ": ", std::string(c.status().message())));
  }
  return c;
}

namespace {

absl::Status answer_error(const AdminResponse& r) {
  return absl::FailedPreconditionError(absl::StrCat("the node answered ", r.status, ": ", r.body));
}

}  // namespace

absl::Status capture_to_file(const AdminEndpoint& endpoint, uint64_t interval_ms,
                             uint64_t duration_ms, const std::string& out_path,
                             std::ostream& progress, std::optional<uint32_t> flame_hz) {
  std::string target =
      absl::StrCat("/v1/profiler/capture?interval_ms=", interval_ms, "&duration_ms=", duration_ms);
  if (flame_hz) {
    absl::StrAppend(&target, *flame_hz == 0 ? "&flame=1" : absl::StrCat("&flame_hz=", *flame_hz));
  }
  auto started = admin_request(endpoint, "POST", target);
  if (!started.ok()) return started.status();
  if (started->status != 202) return answer_error(*started);
  progress << "capturing for " << duration_ms << " ms at " << interval_ms << " ms...\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(duration_ms));
  // The node ends the capture on its next tick after the duration: poll a bounded while (longer
  // with a flame graph: perf stops, then perf script symbolizes, up to a minute on the node).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(flame_hz ? 90 : 30);
  while (true) {
    auto r = admin_request(endpoint, "GET", "/v1/profiler/capture");
    if (!r.ok()) return r.status();
    if (r->status == 200) {
      absl::StatusOr<Capture> c = profiler::decode_capture(r->body);
      if (!c.ok()) return c.status();
      std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
      out.write(r->body.data(), static_cast<std::streamsize>(r->body.size()));
      out.close();
      if (!out) return absl::InternalError(absl::StrCat("cannot write ", out_path));
      progress << out_path << ": " << c->samples.size() << " samples, " << c->series.size()
               << " series, " << r->body.size() << " bytes\n";
      if (c->flame) {
        progress << "flame graph: " << c->flame->status << " (" << c->flame->stacks.size()
                 << " stacks at " << c->flame->frequency_hz << " Hz)\n";
      }
      return absl::OkStatus();
    }
    if (r->status != 409) return answer_error(*r);
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError("the capture did not finish in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace herald::tools

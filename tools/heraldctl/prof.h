// heraldctl prof: take a profiler capture from a node (admin API) and read .hprof files offline
// (summary report with top movers, CSV export). Separate from main.cc so tests call it.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/profiler/capture.h"
#include "tools/heraldctl/admin_client.h"

namespace herald::tools {

// "10ms", "30s", "2m", "1500" (milliseconds); nullopt for anything else or 0.
std::optional<uint64_t> parse_duration_ms(std::string_view text);

// One series' points (SeriesPoints): per-second rates for counters, values for gauges.
struct SeriesSummary {
  std::string name;
  std::string unit;  // counters: "<unit>/s"
  profiler::SeriesKind kind = profiler::SeriesKind::kGauge;
  size_t points = 0;
  double min = 0, median = 0, p99 = 0, max = 0;
  double movement = 0;  // (max - min) / max(|median|, 1): how much it moved
};
// Counter rates in the report and the plots span at least this long by default: jiffies move in
// 10 ms steps and the planes publish their counters every 100 ms, so a rate over one 10 ms
// interval reads 0 or ten times the truth. Over 100 ms it is what happened.
inline constexpr uint64_t kDefaultRateWindowNs = 100'000'000;

std::vector<SeriesSummary> summarize(const profiler::Capture& capture, uint64_t rate_window_ns = 0);

// Turns one series' samples, fed in order, into the points readers show: a gauge's values, a
// counter's per-second rate since its previous value. That value need not be in the previous
// sample (the sampler reads slow /proc files every 100 ms even in a 10 ms capture); across a
// gap the rate is the gap's average. nullopt where the series has no value, at a counter's
// first value and when the clock did not advance. summarize, `csv --rates` and `plot` all read
// a capture through this one definition.
// With `rate_window_ns` > 0 a counter's rate is taken against its newest earlier value at least
// that much older (a sliding window: no rate until the series spans one); 0: against its
// previous value.
class SeriesPoints {
 public:
  explicit SeriesPoints(profiler::SeriesKind kind, uint64_t rate_window_ns = 0)
      : kind_(kind), rate_window_ns_(rate_window_ns) {}
  std::optional<double> next(const std::optional<int64_t>& value, uint64_t mono_ns);

 private:
  profiler::SeriesKind kind_;
  uint64_t rate_window_ns_;
  // A counter's earlier readings, oldest first: exactly one at least a window old is kept.
  std::deque<std::pair<int64_t, uint64_t>> readings_;
};

// The report: metadata, a table of every series with points, the top `top_movers` movers, and
// the CPU profile when the capture carries one (its status, or how to draw it, named after
// `capture_path`, and the top functions by self samples).
// Counter rates over `rate_window_ns` (said in the header).
void write_report(const profiler::Capture& capture, size_t top_movers, std::ostream& out,
                  const std::string& capture_path = "run.hprof",
                  uint64_t rate_window_ns = kDefaultRateWindowNs);
// CSV: "t_ms,<series...>", one row per sample, t from the first sample; empty cells where a
// value is missing. With `rates`, counters become per-second rates (the first row empty).
// `rate_window_ns` as SeriesPoints (0, the default: each value against the previous one).
void write_csv(const profiler::Capture& capture, bool rates, std::ostream& out,
               uint64_t rate_window_ns = 0);

// Reads and decodes a capture file; the decoder's error (truncated, corrupt) names the file.
absl::StatusOr<profiler::Capture> read_capture_file(const std::string& path);

// Starts a capture on the node, waits for it to finish (duration + a margin), downloads it,
// checks it decodes and writes it to `out_path`. Errors carry the node's error code/message.
// `flame_hz`: also a perf CPU profile of the dataplane (0: the node's default frequency).
absl::Status capture_to_file(const AdminEndpoint& endpoint, uint64_t interval_ms,
                             uint64_t duration_ms, const std::string& out_path,
                             std::ostream& progress,
                             std::optional<uint32_t> flame_hz = std::nullopt);

}  // namespace herald::tools

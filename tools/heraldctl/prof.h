// heraldctl prof: take a profiler capture from a node (admin API) and read .hprof files offline
// (summary report with top movers, CSV export). Separate from main.cc so tests call it.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/profiler/capture.h"
#include "tools/heraldctl/admin_client.h"

namespace herald::tools {

// "10ms", "30s", "2m", "1500" (milliseconds); nullopt for anything else or 0.
std::optional<uint64_t> parse_duration_ms(std::string_view text);

// One series' points: per-second rates between consecutive samples for counters (a sample
// missing either side gives no point), values for gauges.
struct SeriesSummary {
  std::string name;
  std::string unit;  // counters: "<unit>/s"
  profiler::SeriesKind kind = profiler::SeriesKind::kGauge;
  size_t points = 0;
  double min = 0, median = 0, p99 = 0, max = 0;
  double movement = 0;  // (max - min) / max(|median|, 1): how much it moved
};
std::vector<SeriesSummary> summarize(const profiler::Capture& capture);

// The report: metadata, a table of every series with points, the top `top_movers` movers.
void write_report(const profiler::Capture& capture, size_t top_movers, std::ostream& out);
// CSV: "t_ms,<series...>", one row per sample, t from the first sample; empty cells where a
// value is missing. With `rates`, counters become per-second rates (the first row empty).
void write_csv(const profiler::Capture& capture, bool rates, std::ostream& out);

// Reads and decodes a capture file; the decoder's error (truncated, corrupt) names the file.
absl::StatusOr<profiler::Capture> read_capture_file(const std::string& path);

// Starts a capture on the node, waits for it to finish (duration + a margin), downloads it,
// checks it decodes and writes it to `out_path`. Errors carry the node's error code/message.
absl::Status capture_to_file(const AdminEndpoint& endpoint, uint64_t interval_ms,
                             uint64_t duration_ms, const std::string& out_path,
                             std::ostream& progress);

}  // namespace herald::tools

// Renders a counters-segment snapshot for the admin API: Prometheus text exposition format
// (GET /metrics) and a JSON document (GET /v1/stats).
#pragma once

#include <string>
#include <string_view>

#include "platform/counters/reader.h"

namespace herald::api {

// Prometheus text format 0.0.4. Names become `herald_<name>` with every character outside
// [a-zA-Z0-9_] replaced by '_'; counters get the conventional `_total` suffix. Histograms are
// exposed with power-of-two `le` bounds (2^j - 1, exact for log-linear buckets, which start on
// powers of two) plus `_sum` and `_count`, so a series keeps one bucket set for its lifetime.
std::string render_prometheus(const counters::Snapshot& snapshot);

// {"epoch": E, "threads": T, "counters": {...}, "gauges": {...},
//  "histograms": {"name": {"count", "sum", "max", "mean", "p50", "p90", "p99", "p999"}}}
std::string render_stats_json(const counters::Snapshot& snapshot);

// The Prometheus form of a counters-segment name (exposed for tests and the docs).
std::string prometheus_name(std::string_view name);

}  // namespace herald::api

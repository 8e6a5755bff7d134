// Prometheus and JSON renderings of a counters snapshot.
#include "controlplane/api/metrics_text.h"

#include <charconv>
#include <cstdint>

namespace herald::api {

namespace {

void append_uint(std::string& out, uint64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

void append_int(std::string& out, int64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

void append_double(std::string& out, double value) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

// Counter-segment names are validated at registration (printable, no quotes), but the JSON
// writer escapes anyway: the segment is written by another process.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void render_histogram(std::string& out, const std::string& name, const counters::HistogramData& h) {
  out += "# TYPE " + name + " histogram\n";
  const counters::HistogramSpec spec = h.spec();
  const auto buckets = h.buckets();
  uint64_t cumulative = 0;
  uint32_t index = 0;
  // Bound j covers every bucket whose inclusive upper end is below 2^j. Log-linear buckets
  // never straddle a power of two, so each bound is exact.
  for (uint32_t j = 0; j <= spec.max_value_bits; ++j) {
    const uint64_t bound = (uint64_t{1} << j) - 1;
    while (index < buckets.size() && counters::bucket_bounds(spec, index).upper <= bound) {
      cumulative += buckets[index];
      ++index;
    }
    out += name + "_bucket{le=\"";
    append_uint(out, bound);
    out += "\"} ";
    append_uint(out, cumulative);
    out.push_back('\n');
  }
  out += name + "_bucket{le=\"+Inf\"} ";
  append_uint(out, h.count());
  out += "\n" + name + "_sum ";
  append_uint(out, h.sum());
  out += "\n" + name + "_count ";
  append_uint(out, h.count());
  out.push_back('\n');
}

}  // namespace

std::string prometheus_name(std::string_view name) {
  std::string out = "herald_";
  out.reserve(out.size() + name.size());
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out.push_back(ok ? c : '_');
  }
  return out;
}

std::string render_prometheus(const counters::Snapshot& snapshot) {
  std::string out;
  out.reserve(snapshot.metrics.size() * 96);
  for (const counters::Metric& m : snapshot.metrics) {
    std::string name = prometheus_name(m.name);
    switch (m.kind) {
      case counters::Kind::kCounter:
        if (!ends_with(name, "_total")) name += "_total";
        out += "# TYPE " + name + " counter\n" + name + " ";
        append_uint(out, m.counter);
        out.push_back('\n');
        break;
      case counters::Kind::kGauge:
        out += "# TYPE " + name + " gauge\n" + name + " ";
        append_int(out, m.gauge);
        out.push_back('\n');
        break;
      case counters::Kind::kHistogram: render_histogram(out, name, m.histogram); break;
    }
  }
  return out;
}

std::string render_stats_json(const counters::Snapshot& snapshot) {
  std::string counters_json, gauges_json, histograms_json;
  for (const counters::Metric& m : snapshot.metrics) {
    switch (m.kind) {
      case counters::Kind::kCounter:
        counters_json += counters_json.empty() ? "" : ",";
        append_json_string(counters_json, m.name);
        counters_json.push_back(':');
        append_uint(counters_json, m.counter);
        break;
      case counters::Kind::kGauge:
        gauges_json += gauges_json.empty() ? "" : ",";
        append_json_string(gauges_json, m.name);
        gauges_json.push_back(':');
        append_int(gauges_json, m.gauge);
        break;
      case counters::Kind::kHistogram: {
        const counters::HistogramData& h = m.histogram;
        histograms_json += histograms_json.empty() ? "" : ",";
        append_json_string(histograms_json, m.name);
        histograms_json += ":{\"count\":";
        append_uint(histograms_json, h.count());
        histograms_json += ",\"sum\":";
        append_uint(histograms_json, h.sum());
        histograms_json += ",\"max\":";
        append_uint(histograms_json, h.max());
        histograms_json += ",\"mean\":";
        append_double(histograms_json, h.mean());
        for (auto [label, q] : {std::pair{"p50", 0.5}, std::pair{"p90", 0.9},
                                std::pair{"p99", 0.99}, std::pair{"p999", 0.999}}) {
          histograms_json += ",\"";
          histograms_json += label;
          histograms_json += "\":";
          append_uint(histograms_json, h.percentile(q));
        }
        histograms_json.push_back('}');
        break;
      }
    }
  }
  std::string out = "{\"epoch\":";
  append_uint(out, snapshot.epoch);
  out += ",\"threads\":";
  append_uint(out, snapshot.threads);
  out += ",\"counters\":{" + counters_json + "},\"gauges\":{" + gauges_json + "},\"histograms\":{" +
         histograms_json + "}}";
  return out;
}

}  // namespace herald::api

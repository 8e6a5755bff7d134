// /metrics and /v1/stats renderings of a real counters segment, checked line by line.
#include "controlplane/api/metrics_text.h"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "platform/counters/segment.h"

namespace herald::api {
namespace {

struct Fixture {
  Fixture() {
    counters::Capacity capacity;
    capacity.max_entries = 64;
    capacity.max_threads = 2;
    capacity.slots_per_thread = 4096;
    auto created = counters::CountersSegment::create("metrics-test", capacity);
    EXPECT_TRUE(created.ok()) << created.status();
    segment.emplace(std::move(*created));
  }
  counters::CounterRegistry& registry() { return segment->registry(); }
  counters::Snapshot snapshot() {
    auto reader = counters::CounterReader::attach(segment->segment().bytes());
    EXPECT_TRUE(reader.ok()) << reader.status();
    counters::Snapshot snap;
    EXPECT_TRUE(reader->read(&snap).ok());
    return snap;
  }
  std::optional<counters::CountersSegment> segment;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(MetricsTextTest, PrometheusNames) {
  EXPECT_EQ(prometheus_name("tcp.rx_packets"), "herald_tcp_rx_packets");
  EXPECT_EQ(prometheus_name("drop/bad-csum"), "herald_drop_bad_csum");
}

TEST(MetricsTextTest, CountersAndGaugesSumOverThreads) {
  Fixture f;
  auto rx = *f.registry().counter("tcp.rx_packets");
  auto sessions = *f.registry().gauge("sessions.active");
  auto t0 = *f.registry().thread(0);
  auto t1 = *f.registry().thread(1);
  t0.add(rx, 40);
  t1.add(rx, 2);
  t0.set(sessions, 10);
  t1.set(sessions, -3);

  const std::string text = render_prometheus(f.snapshot());
  EXPECT_EQ(text,
            "# TYPE herald_tcp_rx_packets_total counter\n"
            "herald_tcp_rx_packets_total 42\n"
            "# TYPE herald_sessions_active gauge\n"
            "herald_sessions_active 7\n");
}

TEST(MetricsTextTest, HistogramBucketsAreCumulativeWithExactPowerOfTwoBounds) {
  Fixture f;
  auto latency = *f.registry().histogram("store.commit_ns");
  auto t0 = *f.registry().thread(0);
  for (uint64_t v : {0ull, 1ull, 2ull, 3ull, 4ull, 1000ull, 1023ull, 1024ull})
    t0.record(latency, v);
  t0.record(latency, uint64_t{1} << 40);  // beyond max_value_bits: only in +Inf

  const std::string text = render_prometheus(f.snapshot());
  const auto lines = lines_of(text);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "# TYPE herald_store_commit_ns histogram");
  auto value_of = [&](const std::string& series) -> std::string {
    for (const auto& line : lines) {
      if (line.rfind(series + " ", 0) == 0) return line.substr(series.size() + 1);
    }
    return "<missing>";
  };
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"0\"}"), "1");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"1\"}"), "2");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"3\"}"), "4");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"7\"}"), "5");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"511\"}"), "5");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"1023\"}"), "7");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"2047\"}"), "8");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"68719476735\"}"), "8");
  EXPECT_EQ(value_of("herald_store_commit_ns_bucket{le=\"+Inf\"}"), "9");
  EXPECT_EQ(value_of("herald_store_commit_ns_count"), "9");
  EXPECT_EQ(value_of("herald_store_commit_ns_sum"),
            std::to_string(0 + 1 + 2 + 3 + 4 + 1000 + 1023 + 1024 + (uint64_t{1} << 40)));

  // Every line is a comment or `name{labels} integer` (text format 0.0.4), buckets
  // non-decreasing.
  const std::regex sample(R"re(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{le="(\+Inf|[0-9]+)"\})? -?[0-9]+$)re");
  uint64_t previous = 0;
  for (const auto& line : lines) {
    if (line.rfind("# ", 0) == 0) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    if (line.find("_bucket{") != std::string::npos) {
      const uint64_t v = std::stoull(line.substr(line.rfind(' ') + 1));
      EXPECT_GE(v, previous) << line;
      previous = v;
    }
  }
}

TEST(MetricsTextTest, StatsJson) {
  Fixture f;
  auto rx = *f.registry().counter("tcp.rx_packets");
  auto sessions = *f.registry().gauge("sessions.active");
  auto latency = *f.registry().histogram("store.commit_ns");
  auto t0 = *f.registry().thread(0);
  t0.add(rx, 5);
  t0.set(sessions, -2);
  for (uint64_t v = 1; v <= 100; ++v) t0.record(latency, v);

  const std::string json = render_stats_json(f.snapshot());
  EXPECT_NE(json.find("\"counters\":{\"tcp.rx_packets\":5}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"gauges\":{\"sessions.active\":-2}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"store.commit_ns\":{\"count\":100,\"sum\":5050,\"max\":100,\"mean\":50.5,"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"p999\":100}"), std::string::npos) << json;
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
}

TEST(MetricsTextTest, EmptySnapshot) {
  counters::Snapshot empty;
  EXPECT_EQ(render_prometheus(empty), "");
  EXPECT_EQ(render_stats_json(empty),
            "{\"epoch\":0,\"threads\":0,\"counters\":{},\"gauges\":{},\"histograms\":{}}");
}

}  // namespace
}  // namespace herald::api

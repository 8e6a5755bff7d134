// Tests for the writer side of the counters segment: registration and lookup, limits, thread
// blocks, sums across threads, gauge semantics and histograms, read back through the reader.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "platform/counters/counters.h"
#include "platform/counters/reader.h"
#include "tests/unit/platform/counters/test_region.h"

namespace herald::counters {
namespace {

using testing::AlignedRegion;

constexpr Capacity kSmall{.max_entries = 64, .max_threads = 8, .slots_per_thread = 4096};

struct Fixture {
  explicit Fixture(const Capacity& capacity = kSmall)
      : region(region_size_bytes(capacity)),
        registry(*CounterRegistry::format(region.span(), capacity)),
        reader(*CounterReader::attach(region.span())) {}

  Snapshot read() {
    Snapshot s;
    absl::Status st = reader.read(&s);
    EXPECT_TRUE(st.ok()) << st;
    return s;
  }

  AlignedRegion region;
  CounterRegistry registry;
  CounterReader reader;
};

TEST(CounterRegistry, RegistersAndLooksUpByName) {
  Fixture f;
  const uint64_t epoch0 = f.registry.epoch();
  auto rx = f.registry.counter("tcp.rx_packets");
  ASSERT_TRUE(rx.ok()) << rx.status();
  auto tx = f.registry.counter("tcp.tx_packets");
  ASSERT_TRUE(tx.ok());
  EXPECT_NE(rx->slot(), tx->slot());
  EXPECT_GE(rx->slot(), kReservedSlots);
  EXPECT_EQ(f.registry.epoch(), epoch0 + 2);

  // Same name, same kind: the same slot, and no layout change.
  auto again = f.registry.counter("tcp.rx_packets");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->slot(), rx->slot());
  EXPECT_EQ(f.registry.epoch(), epoch0 + 2);
  EXPECT_EQ(f.registry.entry_count(), 2u);

  ASSERT_TRUE(f.registry.gauge("sessions.open").ok());
  ASSERT_TRUE(f.registry.histogram("store.append_ns").ok());
  auto list = f.reader.list();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 4u);
  EXPECT_EQ((*list)[0].name, "tcp.rx_packets");
  EXPECT_EQ((*list)[0].kind, Kind::kCounter);
  EXPECT_EQ((*list)[2].name, "sessions.open");
  EXPECT_EQ((*list)[2].kind, Kind::kGauge);
  EXPECT_EQ((*list)[3].kind, Kind::kHistogram);
  EXPECT_EQ((*list)[3].spec, HistogramSpec{});
  EXPECT_EQ((*list)[3].slot_count, 2 + bucket_count(HistogramSpec{}));
  EXPECT_EQ((*list)[3].first_slot % (kCacheLineBytes / 8), 0u) << "histograms start a line";
}

TEST(CounterRegistry, SameNameOtherKindOrSpecIsRejected) {
  Fixture f;
  ASSERT_TRUE(f.registry.counter("x").ok());
  EXPECT_EQ(f.registry.gauge("x").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(f.registry.histogram("x").status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(f.registry.histogram("h", {3, 30}).ok());
  EXPECT_EQ(f.registry.histogram("h", {4, 30}).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(f.registry.histogram("h", {3, 30}).ok());
}

TEST(CounterRegistry, ValidatesNamesAndSpecs) {
  Fixture f;
  const std::string longest(kMaxNameLength, 'n');
  EXPECT_TRUE(f.registry.counter(longest).ok());
  for (const std::string& bad :
       {std::string(), longest + "n", std::string("has space"), std::string("tab\there"),
        std::string("nul\0in", 6), std::string("caf\xc3\xa9")}) {
    EXPECT_EQ(f.registry.counter(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << "'" << bad << "'";
  }
  EXPECT_EQ(f.registry.histogram("h", {0, 30}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.registry.histogram("h", {8, 30}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.registry.histogram("h", {4, 64}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CounterRegistry, DirectoryAndSlotLimitsAreEnforced) {
  Fixture f(Capacity{.max_entries = 3, .max_threads = 2, .slots_per_thread = 64});
  ASSERT_TRUE(f.registry.counter("a").ok());
  // A default histogram needs 531 slots: no room in 64, and nothing is published.
  EXPECT_EQ(f.registry.histogram("h").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.registry.entry_count(), 1u);
  ASSERT_TRUE(f.registry.histogram("small", {1, 10}).ok());  // 2 + 21 slots
  ASSERT_TRUE(f.registry.counter("b").ok());
  EXPECT_EQ(f.registry.counter("c").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(f.registry.counter("a").ok()) << "lookups still work when full";
  EXPECT_EQ(f.read().metrics.size(), 3u);
}

TEST(CounterRegistry, FormatValidatesCapacityAndRegion) {
  EXPECT_EQ(region_size_bytes(Capacity{.max_entries = 0}), 0u);
  EXPECT_EQ(geometry_for(Capacity{.max_threads = kMaxThreadsLimit + 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(geometry_for(Capacity{.slots_per_thread = kReservedSlots}).ok());
  AlignedRegion region(region_size_bytes(kSmall));
  EXPECT_EQ(CounterRegistry::format(region.span().first(region.size() - 1), kSmall).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CounterRegistry::format(region.span().subspan(8), kSmall).status().code(),
            absl::StatusCode::kInvalidArgument)
      << "misaligned region";
  // Geometry: blocks 128-byte apart, values page aligned, everything inside the region.
  auto g = geometry_for(kSmall);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->thread_stride_bytes % kThreadAlignBytes, 0u);
  EXPECT_EQ(g->values_offset % kPageBytes, 0u);
  EXPECT_LE(g->values_offset + uint64_t{kSmall.max_threads} * g->thread_stride_bytes,
            g->region_bytes);
}

TEST(CounterRegistry, ThreadBlocksHaveOneWriterEach) {
  Fixture f;
  EXPECT_EQ(f.registry.thread(kSmall.max_threads).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto t0 = f.registry.thread(0);
  ASSERT_TRUE(t0.ok());
  EXPECT_EQ(f.registry.thread(0).status().code(), absl::StatusCode::kAlreadyExists);
  auto t5 = f.registry.thread(5);
  ASSERT_TRUE(t5.ok());
  EXPECT_EQ(t5->thread_index(), 5u);
  EXPECT_EQ(f.read().threads, 6u) << "reader sums blocks up to the highest index handed out";
}

TEST(CounterRegistry, SumsAcrossThreads) {
  Fixture f;
  const CounterHandle a = *f.registry.counter("a");
  const CounterHandle b = *f.registry.counter("b");
  constexpr uint32_t kThreads = 4;
  constexpr uint64_t kIterations = 50'000;
  std::vector<ThreadCounters> blocks;
  for (uint32_t t = 0; t < kThreads; ++t) blocks.push_back(*f.registry.thread(t));
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ThreadCounters& tc = blocks[t];
      for (uint64_t i = 0; i < kIterations; ++i) {
        tc.add(a);
        tc.add(b, t + 1);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (uint32_t t = 0; t < kThreads; ++t) {
    EXPECT_EQ(blocks[t].value(a), kIterations);
    EXPECT_EQ(blocks[t].value(b), kIterations * (t + 1));
  }
  const Snapshot s = f.read();
  EXPECT_EQ(s.find("a")->counter, kThreads * kIterations);
  EXPECT_EQ(s.find("b")->counter, kIterations * (1 + 2 + 3 + 4));
  EXPECT_EQ(s.find("missing"), nullptr);
}

TEST(CounterRegistry, GaugesSumPerThreadContributions) {
  Fixture f;
  const GaugeHandle open = *f.registry.gauge("sessions.open");
  const GaugeHandle revision = *f.registry.gauge("config.revision");
  ThreadCounters w0 = *f.registry.thread(0);
  ThreadCounters w1 = *f.registry.thread(1);
  w0.set(open, 5);
  w1.set(open, 3);
  EXPECT_EQ(f.read().find("sessions.open")->gauge, 8);
  w0.add(open, -7);  // a thread's own contribution may go negative
  EXPECT_EQ(w0.value(open), -2);
  EXPECT_EQ(f.read().find("sessions.open")->gauge, 1);
  w1.set(open, 0);
  EXPECT_EQ(f.read().find("sessions.open")->gauge, -2);

  // A global gauge: one owner thread sets it; set replaces, it does not accumulate.
  w1.set(revision, 41);
  w1.set(revision, 42);
  EXPECT_EQ(f.read().find("config.revision")->gauge, 42);
}

TEST(CounterRegistry, DefaultHandlesCountNothing) {
  Fixture f;
  const CounterHandle real = *f.registry.counter("real");
  const HistogramHandle real_h = *f.registry.histogram("real_h", {2, 10});
  ThreadCounters tc = *f.registry.thread(0);
  tc.add(CounterHandle{}, 100);
  tc.set(GaugeHandle{}, -5);
  tc.record(HistogramHandle{}, 123456789);
  tc.record(HistogramHandle{}, 0);
  const Snapshot s = f.read();
  EXPECT_EQ(s.find("real")->counter, 0u);
  EXPECT_EQ(s.find("real_h")->histogram.count(), 0u);
  tc.add(real, 2);
  tc.record(real_h, 3);
  EXPECT_EQ(f.read().find("real")->counter, 2u);
}

TEST(CounterRegistry, HistogramsMergeAcrossThreads) {
  Fixture f;
  const HistogramSpec spec{3, 30};
  const HistogramHandle lat = *f.registry.histogram("rpc.latency_ns", spec);
  ThreadCounters w0 = *f.registry.thread(0);
  ThreadCounters w2 = *f.registry.thread(2);
  HistogramData expected(spec);
  for (uint64_t v = 1; v <= 1000; ++v) {
    (v % 2 ? w0 : w2).record(lat, v * 997);
    expected.record(v * 997);
  }
  w2.record(lat, uint64_t{1} << 40);  // overflow
  expected.record(uint64_t{1} << 40);
  const Snapshot s = f.read();
  const Metric* m = s.find("rpc.latency_ns");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->kind, Kind::kHistogram);
  EXPECT_EQ(m->histogram.spec(), spec);
  EXPECT_EQ(m->histogram.count(), expected.count());
  EXPECT_EQ(m->histogram.sum(), expected.sum());
  EXPECT_EQ(m->histogram.max(), uint64_t{1} << 40);
  EXPECT_TRUE(std::equal(m->histogram.buckets().begin(), m->histogram.buckets().end(),
                         expected.buckets().begin(), expected.buckets().end()));
  for (double q : {0.5, 0.9, 0.99}) EXPECT_EQ(m->histogram.percentile(q), expected.percentile(q));
}

TEST(CounterRegistry, AttachJoinsAnExistingRegion) {
  Fixture f;
  const CounterHandle a = *f.registry.counter("a");
  ThreadCounters tc = *f.registry.thread(0);
  tc.add(a, 7);
  // A second writer (think: the dataplane restarted) joins without reformatting.
  auto joined = CounterRegistry::attach(f.region.span());
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->counter("a")->slot(), a.slot());
  const CounterHandle b = *joined->counter("b");
  ThreadCounters tc1 = *joined->thread(1);
  tc1.add(a, 1);
  tc1.add(b, 2);
  const Snapshot s = f.read();
  EXPECT_EQ(s.find("a")->counter, 8u);
  EXPECT_EQ(s.find("b")->counter, 2u);
  EXPECT_EQ(f.registry.entry_count(), 2u);

  AlignedRegion blank(4096);
  EXPECT_EQ(CounterRegistry::attach(blank.span()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CounterRegistry, SnapshotReuseKeepsNamesAndTracksNewEntries) {
  Fixture f;
  const CounterHandle a = *f.registry.counter("a");
  ThreadCounters tc = *f.registry.thread(0);
  Snapshot s;
  ASSERT_TRUE(f.reader.read(&s).ok());
  tc.add(a, 3);
  ASSERT_TRUE(f.reader.read(&s).ok());
  EXPECT_EQ(s.metrics.size(), 1u);
  EXPECT_EQ(s.metrics[0].counter, 3u);
  ASSERT_TRUE(f.registry.gauge("g").ok());
  ASSERT_TRUE(f.reader.read(&s).ok());
  ASSERT_EQ(s.metrics.size(), 2u);
  EXPECT_EQ(s.metrics[1].name, "g");
  EXPECT_EQ(s.epoch, f.registry.epoch());
}

}  // namespace
}  // namespace herald::counters

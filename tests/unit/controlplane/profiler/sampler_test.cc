// The sampler on a synthetic counters segment with known rates and a fixture /proc directory,
// on a fake clock: rates, histogram interval percentiles, sources that fail or disappear, the
// ring and series bounds, and unavailable hardware counters reported as missing.
#include "controlplane/profiler/sampler.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "platform/counters/counters.h"

namespace herald::profiler {
namespace {

// A counters region on the heap (64-byte aligned), formatted for `max_threads` writer threads.
class SyntheticSegment {
 public:
  explicit SyntheticSegment(uint32_t max_threads = 2) {
    counters::Capacity cap;
    cap.max_entries = 16;
    cap.max_threads = max_threads;
    cap.slots_per_thread = 1024;
    size_ = counters::region_size_bytes(cap);
    memory_ = static_cast<std::byte*>(std::aligned_alloc(4096, size_));
    auto reg = counters::CounterRegistry::format({memory_, size_}, cap);
    HERALD_CHECK(reg.ok(), "format");
    registry_ = std::make_unique<counters::CounterRegistry>(std::move(*reg));
    auto reader = counters::CounterReader::attach({memory_, size_});
    HERALD_CHECK(reader.ok(), "attach");
    reader_ = std::make_unique<counters::CounterReader>(std::move(*reader));
  }
  ~SyntheticSegment() {
    reader_.reset();
    registry_.reset();
    std::free(memory_);
  }
  counters::CounterRegistry& registry() { return *registry_; }
  std::function<absl::Status(counters::Snapshot*)> source() {
    return [this](counters::Snapshot* out) { return reader_->read(out); };
  }

 private:
  size_t size_ = 0;
  std::byte* memory_ = nullptr;
  std::unique_ptr<counters::CounterRegistry> registry_;
  std::unique_ptr<counters::CounterReader> reader_;
};

SamplerOptions counters_only() {
  SamplerOptions o;
  o.read_os = false;
  o.ring_samples = 8;
  return o;
}

TEST(Sampler, CountersSummedOverThreadsWithKnownRates) {
  SyntheticSegment seg;
  auto rx = *seg.registry().counter("tcp.rx_packets");
  auto conns = *seg.registry().gauge("tcp.connections");
  auto lat = *seg.registry().histogram("store.commit_ns");
  auto t0 = *seg.registry().thread(0);
  auto t1 = *seg.registry().thread(1);

  clock::FakeClock fake(1'000'000'000);
  Sampler s(counters_only(), clock::Clock::fake(&fake));
  s.set_counters_source(seg.source());
  // 10 intervals of 100 ms: thread 0 adds 500, thread 1 adds 300 per interval = 8000/s; the
  // histogram gets 99 values of 1000 and one of 100000 per interval.
  for (int i = 0; i < 10; ++i) {
    t0.add(rx, 500);
    t1.add(rx, 300);
    t0.set(conns, 40 + i);
    t1.set(conns, 2);
    for (int k = 0; k < 99; ++k) t0.record(lat, 1000);
    t1.record(lat, 100000);
    s.sample();
    if (i > 0) {
      ASSERT_TRUE(s.rate("ctr.tcp.rx_packets").has_value());
      EXPECT_NEAR(*s.rate("ctr.tcp.rx_packets"), 8000.0, 1e-6);
      EXPECT_NEAR(*s.rate("ctr.store.commit_ns.count"), 1000.0, 1e-6);
      // The interval's percentiles, within the histogram's relative error.
      EXPECT_NEAR(double(*s.latest("ctr.store.commit_ns.p50")), 1000.0, 1000.0 / 16);
      EXPECT_NEAR(double(*s.latest("ctr.store.commit_ns.p99")), 1000.0, 1000.0 / 16);
      EXPECT_EQ(*s.latest("ctr.store.commit_ns.max"), 100000);
    }
    EXPECT_EQ(*s.latest("ctr.tcp.connections"), 42 + i);
    fake.advance_ns(100'000'000);
  }
  EXPECT_EQ(*s.latest("ctr.tcp.rx_packets"), 8000);
  EXPECT_EQ(s.stats().samples, 10u);
  EXPECT_EQ(s.ring_size(), 8u);  // bounded
  // The ring's window as a capture: 8 samples, times 100 ms apart.
  const Capture c = s.capture_since(0, CaptureMeta{});
  ASSERT_EQ(c.samples.size(), 8u);
  EXPECT_EQ(c.samples[1].mono_ns - c.samples[0].mono_ns, 100'000'000u);
  EXPECT_EQ(c.series.size(), s.series().size());
}

TEST(Sampler, IrregularIntervalsUseTheClockNotTheSchedule) {
  SyntheticSegment seg;
  auto rx = *seg.registry().counter("rx");
  auto t0 = *seg.registry().thread(0);
  clock::FakeClock fake(0);
  Sampler s(counters_only(), clock::Clock::fake(&fake));
  s.set_counters_source(seg.source());
  s.sample();
  t0.add(rx, 300);
  fake.advance_ns(30'000'000);  // a late tick: 30 ms instead of 10
  s.sample();
  EXPECT_NEAR(*s.rate("ctr.rx"), 10000.0, 1e-6);
}

TEST(Sampler, FailingCountersSourceLeavesSeriesMissing) {
  SyntheticSegment seg;
  auto rx = *seg.registry().counter("rx");
  (void)rx;
  clock::FakeClock fake(0);
  Sampler s(counters_only(), clock::Clock::fake(&fake));
  bool fail = false;
  auto inner = seg.source();
  s.set_counters_source(
      [&](counters::Snapshot* out) { return fail ? absl::DataLossError("corrupt") : inner(out); });
  s.sample();
  fail = true;
  fake.advance_ns(10'000'000);
  s.sample();
  EXPECT_EQ(s.stats().counters_errors, 1u);
  EXPECT_FALSE(s.latest("ctr.rx").has_value());
  EXPECT_FALSE(s.rate("ctr.rx").has_value());
}

TEST(Sampler, SeriesBeyondTheLimitAreDroppedAndCounted) {
  SyntheticSegment seg;
  for (int i = 0; i < 6; ++i) (void)*seg.registry().counter("c" + std::to_string(i));
  SamplerOptions o = counters_only();
  clock::FakeClock fake(0);
  // The derived.* series are listed from the start; room for 4 counters after them.
  const size_t base = Sampler(o, clock::Clock::fake(&fake)).series().size();
  o.max_series = static_cast<uint32_t>(base + 4);
  Sampler s(o, clock::Clock::fake(&fake));
  s.set_counters_source(seg.source());
  s.sample();
  EXPECT_EQ(s.series().size(), base + 4);
  EXPECT_EQ(s.stats().series_dropped, 2u);
}

TEST(Sampler, HardwareCountersAreListedAndMissingWhenUnavailable) {
  SamplerOptions o = counters_only();
  o.perf_cpus = {0};
  clock::FakeClock fake(0);
  Sampler s(o, clock::Clock::fake(&fake));
  s.sample();
  ASSERT_GE(s.series().size(), 4u);
  EXPECT_EQ(s.series()[0].name, "hw.cpu0.cycles");
  if (s.perf().open_count() == 0) {
    // Refused here (paranoid level, a VM without a PMU): named, without values, and why.
    EXPECT_FALSE(s.latest("hw.cpu0.cycles").has_value());
    EXPECT_FALSE(s.perf().unavailable_reason().empty());
  }
}

// A fixture /proc: the OS files and one process's stat/status, then the process vanishes.
TEST(Sampler, ReadsAFixtureProcTreeAndSurvivesAVanishedProcess) {
  char tmpl[] = "/tmp/profiler_proc_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directories(root / "net");
  std::filesystem::create_directories(root / "77");
  auto write = [&](const std::string& rel, const std::string& text) {
    std::ofstream(root / rel) << text;
  };
  write("stat", "cpu  10 0 20 30 0 0 5 0 0 0\ncpu0 10 0 20 30 0 0 5 0 0 0\nctxt 100\n");
  write("meminfo", "MemTotal: 1000 kB\nHugePages_Total: 4\n");
  write("net/dev", "Inter-|\n face |\n  lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n");
  write("diskstats", "");
  write("net/sockstat", "TCP: inuse 5 orphan 0 tw 1 alloc 6 mem 1\n");
  write("77/stat", "77 (dp) R 1 1 1 0 -1 0 11 0 2 0 30 40 0 0 20 0 4 0 1 1 1\n");
  write("77/status", "VmRSS:\t 512 kB\n");

  SamplerOptions o;
  o.proc_root = root.string();
  clock::FakeClock fake(0);
  Sampler s(o, clock::Clock::fake(&fake));
  int pid = 77;
  s.set_processes([&pid] { return std::vector<ProcessRef>{{"dataplane", pid}}; });
  s.sample();
  EXPECT_EQ(*s.latest("os.cpu.system"), 20);
  EXPECT_EQ(*s.latest("os.context_switches"), 100);
  EXPECT_EQ(*s.latest("os.mem.total"), 1000 * 1024);
  EXPECT_EQ(*s.latest("os.hugepages.total"), 4);
  EXPECT_EQ(*s.latest("os.net.lo.tx_bytes"), 9);
  EXPECT_EQ(*s.latest("os.tcp.inuse"), 5);
  EXPECT_EQ(*s.latest("proc.dataplane.threads"), 4);
  EXPECT_EQ(*s.latest("proc.dataplane.rss"), 512 * 1024);
  EXPECT_EQ(s.stats().source_errors, 0u);

  // The file changes between samples (procfs regenerates on each read; a kept fd must see it).
  write("stat", "cpu  10 0 70 30 0 0 5 0 0 0\nctxt 600\n");
  pid = 78;  // the dataplane restarted; 78's files do not exist
  fake.advance_ns(500'000'000);
  s.sample();
  EXPECT_NEAR(*s.rate("os.context_switches"), 1000.0, 1e-6);
  EXPECT_FALSE(s.latest("proc.dataplane.threads").has_value());
  EXPECT_EQ(s.stats().source_errors, 2u);
  std::filesystem::remove_all(root);
}

// The slow /proc files (meminfo, diskstats, sockstat, PID/stat and status) are read every
// slow_period_ns only: in a 10 ms capture their series are present every tenth sample and
// missing (not a repeated value) in between; their rate divides by their own readings' times.
TEST(Sampler, SlowFilesAreReadEverySlowPeriodAndMissingBetween) {
  char tmpl[] = "/tmp/profiler_slow_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directories(root / "net");
  std::filesystem::create_directories(root / "77");
  auto write = [&](const std::string& rel, const std::string& text) {
    std::ofstream(root / rel) << text;
  };
  write("stat", "ctxt 100\n");
  write("meminfo", "MemTotal: 1000 kB\n");
  write("net/dev", "");
  write("diskstats", "");
  write("net/sockstat", "TCP: inuse 5 orphan 0 tw 1 alloc 6 mem 1\n");
  write("77/stat", "77 (dp) R 1 1 1 0 -1 0 11 0 2 0 30 40 0 0 20 0 4 0 1 1 1\n");
  write("77/status", "VmRSS:\t 512 kB\nvoluntary_ctxt_switches:\t100\n");
  SamplerOptions o;
  o.proc_root = root.string();
  clock::FakeClock fake(0);
  Sampler s(o, clock::Clock::fake(&fake));
  s.set_processes([] { return std::vector<ProcessRef>{{"dataplane", 77}}; });
  std::vector<bool> present;
  for (int i = 0; i < 21; ++i) {
    if (i == 10) write("77/status", "VmRSS:\t 512 kB\nvoluntary_ctxt_switches:\t300\n");
    s.sample();
    present.push_back(s.latest("os.mem.total").has_value());
    // The fast files are in every sample; the process files are slow ones.
    EXPECT_TRUE(s.latest("os.context_switches").has_value()) << i;
    EXPECT_EQ(s.latest("proc.dataplane.threads").has_value(), present.back()) << i;
    EXPECT_EQ(s.latest("proc.dataplane.rss").has_value(), present.back()) << i;
    EXPECT_EQ(s.latest("os.tcp.inuse").has_value(), present.back()) << i;
    fake.advance_ns(10'000'000);
  }
  const std::vector<bool> want = {true,  false, false, false, false, false, false,
                                  false, false, false, true,  false, false, false,
                                  false, false, false, false, false, false, true};
  EXPECT_EQ(present, want);
  EXPECT_EQ(s.stats().slow_reads, 3u);
  // 200 switches between the readings at 100 ms and 200 ms: 2000/s, though the newest sample
  // (200 ms) is the only one since with the series.
  EXPECT_NEAR(*s.rate("proc.dataplane.ctx_switches_voluntary"), 0.0, 1e-9);
  // A capture marks the gaps as unavailable.
  const Capture c = s.capture_since(0, CaptureMeta{});
  size_t mem = 0;
  while (c.series[mem].name != "os.mem.total") ++mem;
  EXPECT_TRUE(c.samples[0].values[mem].has_value());
  EXPECT_FALSE(c.samples[1].values[mem].has_value());
  std::filesystem::remove_all(root);
}

TEST(Sampler, SlowFileRateUsesItsOwnReadings) {
  char tmpl[] = "/tmp/profiler_slowrate_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directories(root / "77");
  std::ofstream(root / "77/stat") << "77 (dp) R 1 1 1 0 -1 0 11 0 2 0 30 40 0 0 20 0 4 0 1 1 1\n";
  SamplerOptions o;
  o.proc_root = root.string();
  clock::FakeClock fake(0);
  Sampler s(o, clock::Clock::fake(&fake));
  s.set_processes([] { return std::vector<ProcessRef>{{"dataplane", 77}}; });
  for (int i = 0; i <= 10; ++i) {
    std::ofstream(root / "77/status") << "voluntary_ctxt_switches:\t" << 100 + 20 * i << "\n";
    s.sample();
    fake.advance_ns(10'000'000);
  }
  // Read at 0 (100) and 100 ms (300): 2000/s over the series' own readings.
  ASSERT_TRUE(s.rate("proc.dataplane.ctx_switches_voluntary").has_value());
  EXPECT_NEAR(*s.rate("proc.dataplane.ctx_switches_voluntary"), 2000.0, 1e-6);
  std::filesystem::remove_all(root);
}

// derived.* from a synthetic dataplane: the stats mirror's counters in a segment and the
// dataplane process's CPU time in a fixture /proc, over the 1 s window.
TEST(Sampler, DerivedFiguresOverTheWindow) {
  SyntheticSegment seg;
  auto messages = *seg.registry().counter("dp.router.messages");
  auto turns = *seg.registry().counter("dp.worker.loop_turns");
  auto empty_turns = *seg.registry().counter("dp.worker.empty_turns");
  auto polls = *seg.registry().counter("dp.dpdk.polls");
  auto empty_polls = *seg.registry().counter("dp.dpdk.empty_polls");
  auto commit = *seg.registry().histogram("dp.store.append_latency_ns");
  auto t0 = *seg.registry().thread(0);
  auto t1 = *seg.registry().thread(1);

  char tmpl[] = "/tmp/profiler_derived_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directories(root / "77");
  SamplerOptions o;
  o.proc_root = root.string();
  o.read_os = true;
  o.ring_samples = 64;
  o.perf_cpus = {0};  // refused in most VMs: cycles per message is then missing
  clock::FakeClock fake(1'000'000'000);
  Sampler s(o, clock::Clock::fake(&fake));
  s.set_counters_source(seg.source());
  s.set_processes([] { return std::vector<ProcessRef>{{"dataplane", 77}}; });
  const long tick = sysconf(_SC_CLK_TCK);
  for (int i = 0; i <= 12; ++i) {
    // Per 100 ms: 100 messages (two workers), 2 jiffies of dataplane CPU, 1000 turns of which
    // 250 empty, 4000 polls of which 1000 empty, 99 commits of 1 us and one of 100 us.
    std::ofstream(root / "77/stat")
        << "77 (dp) R 1 1 1 0 -1 0 11 0 2 0 " << 30 + i << " " << 40 + i << " 0 0 20 0 4 0 1 1 1\n";
    t0.add(messages, 60);
    t1.add(messages, 40);
    t0.add(turns, 1000);
    t0.add(empty_turns, 250);
    t1.add(polls, 4000);
    t1.add(empty_polls, 1000);
    for (int k = 0; k < 99; ++k) t0.record(commit, 1000);
    t1.record(commit, 100000);
    s.sample();
    if (i < 10) {
      // The ring is younger than the window.
      EXPECT_FALSE(s.latest("derived.cpu_ns_per_message").has_value()) << i;
    } else {
      // 10 intervals: 20 jiffies over 1000 messages.
      EXPECT_EQ(*s.latest("derived.cpu_ns_per_message"), 20 * (1'000'000'000 / tick) / 1000);
      EXPECT_EQ(*s.latest("derived.worker.useful_turns"), 7500);
      EXPECT_EQ(*s.latest("derived.worker.empty_turns"), 2500);
      EXPECT_EQ(*s.latest("derived.worker.empty_turn_permille"), 250);
      EXPECT_EQ(*s.latest("derived.dpdk.useful_polls"), 30000);
      EXPECT_EQ(*s.latest("derived.dpdk.empty_polls"), 10000);
      EXPECT_EQ(*s.latest("derived.dpdk.empty_poll_permille"), 250);
    }
    // The store's commit percentiles of each interval (from the second sample: a bucket delta).
    EXPECT_EQ(s.latest("derived.store.commit_ns.p50").has_value(), i > 0);
    if (i > 0) {
      EXPECT_NEAR(double(*s.latest("derived.store.commit_ns.p50")), 1000.0, 1000.0 / 16);
      EXPECT_NEAR(double(*s.latest("derived.store.commit_ns.p99")), 1000.0, 1000.0 / 16);
      EXPECT_NEAR(double(*s.latest("derived.store.commit_ns.p999")), 100000.0, 100000.0 / 16);
      EXPECT_EQ(s.latest("ctr.dp.store.append_latency_ns.p999"),
                s.latest("derived.store.commit_ns.p999"));
    }
    if (s.perf().open_count() == 0) {
      EXPECT_FALSE(s.latest("derived.cycles_per_message").has_value());
    }
    fake.advance_ns(100'000'000);
  }
  // No messages in the window: per-message figures are missing, never 0 or infinite.
  for (int i = 0; i < 11; ++i) {
    s.sample();
    fake.advance_ns(100'000'000);
  }
  EXPECT_FALSE(s.latest("derived.cpu_ns_per_message").has_value());
  EXPECT_EQ(*s.latest("derived.worker.useful_turns"), 0);
  // No store commits in the interval: percentiles missing, not 0.
  EXPECT_FALSE(s.latest("derived.store.commit_ns.p50").has_value());
  std::filesystem::remove_all(root);
}

// derived.worker<N>.* from each worker's own block: block 0 the control plane's, blocks 1 and 2
// two workers with different known rates (and a kernel-backend worker without polls).
TEST(Sampler, PerWorkerDerivedFiguresFromEachBlock) {
  SyntheticSegment seg(3);
  auto messages = *seg.registry().counter("dp.router.messages");
  auto turns = *seg.registry().counter("dp.worker.loop_turns");
  auto empty_turns = *seg.registry().counter("dp.worker.empty_turns");
  auto polls = *seg.registry().counter("dp.dpdk.polls");
  auto empty_polls = *seg.registry().counter("dp.dpdk.empty_polls");
  auto cp = *seg.registry().thread(0);
  auto w0 = *seg.registry().thread(1);
  auto w1 = *seg.registry().thread(2);
  SamplerOptions o = counters_only();
  o.ring_samples = 64;
  o.perf_cpus = {0, 1};  // one core per worker: derived.cpuC.cycles_per_message is listed
  clock::FakeClock fake(1'000'000'000);
  Sampler s(o, clock::Clock::fake(&fake));
  s.set_counters_source(seg.source());
  for (int i = 0; i <= 12; ++i) {
    // Per 100 ms: worker 0 takes 70 messages in 1000 turns (100 empty) and 4000 polls (400
    // empty); worker 1 takes 30 messages in 500 turns (400 empty) and polls nothing. The
    // control plane's block has turns too, which no worker must see.
    cp.add(turns, 12345);
    w0.add(messages, 70);
    w0.add(turns, 1000);
    w0.add(empty_turns, 100);
    w0.add(polls, 4000);
    w0.add(empty_polls, 400);
    w1.add(messages, 30);
    w1.add(turns, 500);
    w1.add(empty_turns, 400);
    s.sample();
    EXPECT_EQ(s.latest("ctr.worker0.dp.router.messages"), 70 * (i + 1)) << i;
    EXPECT_EQ(s.latest("ctr.worker1.dp.worker.loop_turns"), 500 * (i + 1)) << i;
    EXPECT_EQ(s.latest("ctr.dp.router.messages"), 100 * (i + 1)) << "the sum is unchanged";
    if (i < 10) {
      // The ring is younger than the window.
      EXPECT_FALSE(s.latest("derived.worker0.messages_per_s").has_value()) << i;
      EXPECT_FALSE(s.latest("derived.worker1.useful_turns").has_value()) << i;
    } else {
      EXPECT_NEAR(double(*s.latest("derived.worker0.messages_per_s")), 700.0, 1.0);
      EXPECT_NEAR(double(*s.latest("derived.worker1.messages_per_s")), 300.0, 1.0);
      EXPECT_NEAR(double(*s.latest("derived.worker0.useful_turns")), 9000.0, 1.0);
      EXPECT_NEAR(double(*s.latest("derived.worker0.empty_turns")), 1000.0, 1.0);
      EXPECT_EQ(*s.latest("derived.worker0.empty_turn_permille"), 100);
      EXPECT_NEAR(double(*s.latest("derived.worker1.useful_turns")), 1000.0, 1.0);
      EXPECT_NEAR(double(*s.latest("derived.worker1.empty_turns")), 4000.0, 1.0);
      EXPECT_EQ(*s.latest("derived.worker1.empty_turn_permille"), 800);
      EXPECT_NEAR(double(*s.latest("derived.worker0.useful_polls")), 36000.0, 1.0);
      EXPECT_NEAR(double(*s.latest("derived.worker0.empty_polls")), 4000.0, 1.0);
      EXPECT_EQ(*s.latest("derived.worker0.empty_poll_permille"), 100);
      // No polls on worker 1: 0 per second, and the permille of nothing is 0 as for the sum.
      EXPECT_EQ(*s.latest("derived.worker1.useful_polls"), 0);
      EXPECT_EQ(*s.latest("derived.worker1.empty_poll_permille"), 0);
      // The whole dataplane's turns include the control plane's block (summed).
      EXPECT_EQ(*s.latest("derived.worker.empty_turn_permille"), 500 * 1000 / (1500 + 12345));
    }
    if (s.perf().open_count() == 0) {
      // Hardware counters refused here: listed per core, never a value.
      EXPECT_FALSE(s.latest("derived.cpu0.cycles_per_message").has_value());
      EXPECT_FALSE(s.latest("derived.cpu1.cycles_per_message").has_value());
    }
    fake.advance_ns(100'000'000);
  }
  bool listed0 = false, listed1 = false, listed2 = false;
  for (const SeriesInfo& info : s.series()) {
    listed0 = listed0 || info.name == "derived.cpu0.cycles_per_message";
    listed1 = listed1 || info.name == "derived.cpu1.cycles_per_message";
    listed2 = listed2 || info.name.rfind("derived.worker2.", 0) == 0;
  }
  EXPECT_TRUE(listed0);
  EXPECT_TRUE(listed1);
  EXPECT_FALSE(listed2) << "only blocks in use are workers";
  // A worker that stops taking messages: 0 per second, not missing.
  for (int i = 0; i < 11; ++i) {
    w0.add(turns, 1000);
    w0.add(empty_turns, 1000);
    s.sample();
    fake.advance_ns(100'000'000);
  }
  EXPECT_EQ(*s.latest("derived.worker0.messages_per_s"), 0);
  EXPECT_EQ(*s.latest("derived.worker0.empty_turn_permille"), 1000);
  EXPECT_EQ(*s.latest("derived.worker1.messages_per_s"), 0);
}

// Without the dataplane's counters in the segment there are no per-worker series at all.
TEST(Sampler, NoWorkerSeriesWithoutDataplaneCounters) {
  SyntheticSegment seg(3);
  auto other = *seg.registry().counter("cp.requests");
  auto t0 = *seg.registry().thread(0);
  auto t1 = *seg.registry().thread(1);
  t0.add(other, 1);
  t1.add(other, 2);
  clock::FakeClock fake(0);
  Sampler s(counters_only(), clock::Clock::fake(&fake));
  s.set_counters_source(seg.source());
  s.sample();
  EXPECT_EQ(s.latest("ctr.cp.requests"), 3);
  for (const SeriesInfo& info : s.series()) {
    EXPECT_EQ(info.name.find("worker0"), std::string::npos) << info.name;
  }
}

// At 10 ms the dataplane's CPU time (PID/stat) comes every 100 ms: cpu_ns_per_message is in the
// samples that read it, over the span between two such readings at least the window apart, with
// the messages of that same span.
TEST(Sampler, CpuPerMessageAtTenMillisecondsUsesTheSlowReadings) {
  SyntheticSegment seg;
  auto messages = *seg.registry().counter("dp.router.messages");
  auto t0 = *seg.registry().thread(0);
  char tmpl[] = "/tmp/profiler_cpu10_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directories(root / "77");
  SamplerOptions o;
  o.proc_root = root.string();
  o.ring_samples = 400;
  clock::FakeClock fake(1'000'000'000);
  Sampler s(o, clock::Clock::fake(&fake));
  s.set_counters_source(seg.source());
  s.set_processes([] { return std::vector<ProcessRef>{{"dataplane", 77}}; });
  const long tick = sysconf(_SC_CLK_TCK);
  for (int i = 0; i <= 120; ++i) {
    std::ofstream(root / "77/stat")
        << "77 (dp) R 1 1 1 0 -1 0 11 0 2 0 " << 30 + i << " " << 40 + i << " 0 0 20 0 4 0 1 1 1\n";
    t0.add(messages, 10);
    s.sample();
    const auto v = s.latest("derived.cpu_ns_per_message");
    if (i >= 100 && i % 10 == 0) {
      // 100 samples apart: 200 jiffies over 1000 messages.
      ASSERT_TRUE(v.has_value()) << i;
      EXPECT_EQ(*v, 200 * (1'000'000'000 / tick) / 1000) << i;
    } else {
      EXPECT_FALSE(v.has_value()) << i;
    }
    fake.advance_ns(10'000'000);
  }
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace herald::profiler

// Benchmarks for the counters segment: the hot-path increment (one thread; two threads on
// their own blocks, against two threads sharing a cache line), histogram record, and the
// reader summing N entries over T thread blocks. Figures go to docs/PERFORMANCE.md.
//
// Cycles: core cycles from perf_event_open when the kernel/VM allows it ("cycles_per_op"),
// otherwise this thread's CPU time times the measured core clock ("est_cycles_per_op").
// On a loaded machine read the CPU column: wall time includes time we were descheduled.
#include <benchmark/benchmark.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "platform/counters/counters.h"
#include "platform/counters/reader.h"

namespace herald::counters {
namespace {

// Core clock of this machine, measured once: a chain of dependent 64-bit imuls (3 cycles
// each on every x86 core since Core 2 / Zen) timed by this thread's CPU clock. CPU time, not
// wall time or the TSC, because a shared VM deschedules us (steal time) and boosts the clock
// above the TSC rate; both would skew cycles taken from wall time.
double core_ghz() {
  static const double ghz = [] {
    constexpr long kIterations = 200'000'000;
    timespec t0, t1;
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    uint64_t x = 3;
    for (long i = 0; i < kIterations; ++i) asm volatile("imul %0, %0" : "+r"(x));
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    const double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    return 3.0 * kIterations / ns;
  }();
  return ghz;
}

// Cycles per iteration for the calling thread: core cycles from perf_event_open when the
// kernel/VM allows it, else this thread's CPU time times core_ghz(). Both exclude the time
// the thread was not running.
class CycleCounter {
 public:
  CycleCounter() {
    perf_event_attr attr{};
    attr.type = PERF_TYPE_HARDWARE;
    attr.size = sizeof(attr);
    attr.config = PERF_COUNT_HW_CPU_CYCLES;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    fd_ = static_cast<int>(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    if (fd_ < 0) ghz_ = core_ghz();
    start_ = now();
  }
  ~CycleCounter() {
    if (fd_ >= 0) ::close(fd_);
  }
  CycleCounter(const CycleCounter&) = delete;
  CycleCounter& operator=(const CycleCounter&) = delete;

  void report(benchmark::State& state) const {
    const double cycles = now() - start_;
    // Per thread, averaged over threads (user counters are summed across threads otherwise).
    state.counters[fd_ >= 0 ? "cycles_per_op" : "est_cycles_per_op"] = benchmark::Counter(
        cycles / static_cast<double>(state.iterations()), benchmark::Counter::kAvgThreads);
  }

 private:
  double now() const {
    if (fd_ >= 0) {
      uint64_t v = 0;
      if (::read(fd_, &v, sizeof(v)) != sizeof(v)) return 0;
      return static_cast<double>(v);
    }
    timespec t;
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec)) * ghz_;
  }

  int fd_ = -1;
  double ghz_ = 0;
  double start_ = 0;
};

struct Region {
  explicit Region(size_t size_bytes)
      : size(size_bytes),
        data(static_cast<std::byte*>(::operator new (size_bytes, std::align_val_t{4096}))) {}
  ~Region() { ::operator delete (data, std::align_val_t{4096}); }
  std::span<std::byte> span() const { return {data, size}; }
  size_t size;
  std::byte* data;
};

// Built with append, not `"c" + std::to_string(i)`: GCC 12 at -O3 reports a false -Wrestrict
// on the latter (GCC bug 105329).
std::string numbered(const char* prefix, uint32_t i) {
  std::string name(prefix);
  name.append(std::to_string(i));
  return name;
}

constexpr Capacity kCapacity{.max_entries = 4096, .max_threads = 64, .slots_per_thread = 32768};

// One registry shared by the hot-path benchmarks; each thread index's block is claimed once
// and reused by whichever benchmark thread has that index (runs are sequential).
struct Shared {
  Shared() : region(region_size_bytes(kCapacity)) {
    registry =
        std::make_unique<CounterRegistry>(*CounterRegistry::format(region.span(), kCapacity));
    for (uint32_t i = 0; i < 8; ++i) counters[i] = *registry->counter(numbered("bench.c", i));
    histogram = *registry->histogram("bench.latency_ns");
  }
  ThreadCounters& block(int thread_index) {
    std::lock_guard<std::mutex> lock(mu);
    auto& slot = blocks[thread_index];
    if (!slot) slot = std::make_unique<ThreadCounters>(*registry->thread(thread_index));
    return *slot;
  }
  Region region;
  std::unique_ptr<CounterRegistry> registry;
  std::array<CounterHandle, 8> counters;
  HistogramHandle histogram;
  std::mutex mu;
  std::array<std::unique_ptr<ThreadCounters>, 64> blocks;
};

Shared& shared() {
  static Shared s;
  return s;
}

// The same counter every iteration: a dependency chain through memory (store-to-load
// forwarding), the worst case for one counter.
void BM_CounterAddSame(benchmark::State& state) {
  ThreadCounters& tc = shared().block(state.thread_index());
  const CounterHandle c = shared().counters[0];
  CycleCounter cycles;
  for (auto _ : state) tc.add(c, 1);
  cycles.report(state);
  benchmark::DoNotOptimize(tc.value(c));
}
BENCHMARK(BM_CounterAddSame);
// Two threads, each on its own block: should cost what one thread does (no false sharing).
BENCHMARK(BM_CounterAddSame)->Threads(2)->UseRealTime();

// Eight different counters in turn, as a packet path bumps several per burst.
void BM_CounterAddEight(benchmark::State& state) {
  ThreadCounters& tc = shared().block(state.thread_index());
  const auto& c = shared().counters;
  CycleCounter cycles;
  for (auto _ : state) {
    for (int i = 0; i < 8; ++i) tc.add(c[i], 1);
  }
  cycles.report(state);
  state.SetItemsProcessed(state.iterations() * 8);  // items_per_second = increments
}
BENCHMARK(BM_CounterAddEight);
BENCHMARK(BM_CounterAddEight)->Threads(2)->UseRealTime();

// Contrast, not our layout: two threads bumping adjacent words of ONE cache line with the
// same load/store, which is what per-thread blocks 128 bytes apart avoid.
alignas(128) uint64_t g_shared_line[16];
void BM_FalseSharingBaseline(benchmark::State& state) {
  uint64_t* slot = &g_shared_line[state.thread_index()];
  CycleCounter cycles;
  for (auto _ : state) layout::store_relaxed(slot, layout::load_relaxed(slot) + 1);
  cycles.report(state);
}
BENCHMARK(BM_FalseSharingBaseline)->Threads(2)->UseRealTime();

// Contrast: a shared atomic counter (lock add), what a single-writer slot avoids.
std::atomic<uint64_t> g_atomic_counter{0};
void BM_SharedFetchAddBaseline(benchmark::State& state) {
  CycleCounter cycles;
  for (auto _ : state) g_atomic_counter.fetch_add(1, std::memory_order_relaxed);
  cycles.report(state);
}
BENCHMARK(BM_SharedFetchAddBaseline);
BENCHMARK(BM_SharedFetchAddBaseline)->Threads(2)->UseRealTime();

// Latency-like values (log-uniform 100 ns .. 100 ms), precomputed so the benchmark measures
// record() and not the random generator.
std::vector<uint64_t> latency_values() {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> log2_ns(6.6, 26.6);
  std::vector<uint64_t> v(4096);
  for (auto& x : v) x = static_cast<uint64_t>(std::exp2(log2_ns(rng)));
  return v;
}

void BM_HistogramRecord(benchmark::State& state) {
  ThreadCounters& tc = shared().block(state.thread_index());
  const HistogramHandle h = shared().histogram;
  const std::vector<uint64_t> values = latency_values();
  size_t i = 0;
  CycleCounter cycles;
  for (auto _ : state) {
    tc.record(h, values[i]);
    i = (i + 1) & (values.size() - 1);
  }
  cycles.report(state);
}
BENCHMARK(BM_HistogramRecord);
BENCHMARK(BM_HistogramRecord)->Threads(2)->UseRealTime();

// Reader: one consistent read of N counters over T thread blocks (directory cached, as in a
// profiler polling loop).
void BM_ReaderSum(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto threads = static_cast<uint32_t>(state.range(1));
  const Capacity capacity{.max_entries = n, .max_threads = threads, .slots_per_thread = n + 64};
  Region region(region_size_bytes(capacity));
  CounterRegistry reg = *CounterRegistry::format(region.span(), capacity);
  std::vector<CounterHandle> handles;
  for (uint32_t i = 0; i < n; ++i) handles.push_back(*reg.counter(numbered("c", i)));
  for (uint32_t t = 0; t < threads; ++t) {
    ThreadCounters tc = *reg.thread(t);
    for (const CounterHandle& h : handles) tc.add(h, t + 1);
  }
  CounterReader reader = *CounterReader::attach(region.span());
  Snapshot s;
  if (!reader.read(&s).ok()) state.SkipWithError("read failed");
  CycleCounter cycles;
  for (auto _ : state) {
    if (!reader.read(&s).ok()) state.SkipWithError("read failed");
    benchmark::DoNotOptimize(s.metrics.data());
  }
  cycles.report(state);
  state.counters["ns_per_slot"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * n * threads,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ReaderSum)
    ->ArgsProduct({{16, 256, 2048}, {1, 4, 16}})
    ->ArgNames({"counters", "threads"})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace herald::counters

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  char ghz[32];
  std::snprintf(ghz, sizeof(ghz), "%.2f", herald::counters::core_ghz());
  benchmark::AddCustomContext("core_ghz_measured", ghz);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

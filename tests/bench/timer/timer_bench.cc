// TSC cycles per schedule, cancel, reset (reschedule) and expiry with a million live timers:
// Herald's timer wheel beside DPDK's rte_timer (skip list), measured in the same process.
// DPDK publishes about 3,400 cycles per rte_timer_reset() at 1M timers; this prints the figure
// on this machine next to ours. Run (release build):
//   build-rel/tests/bench/timer/timer_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_timer.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "platform/clock/tsc.h"
#include "platform/timer/timer_wheel.h"

namespace herald::timer {
namespace {

constexpr uint32_t kLiveTimers = 1'000'000;
constexpr uint32_t kBatch = 1024;        // ops timed together, so the fences cost < 1 cycle per op
constexpr uint64_t kTickNs = 1'000'000;  // 1 ms, as the TCP stack uses
constexpr uint64_t kMinDelayNs = 200'000'000;                  // 200 ms (RTO, delayed ACK)...
constexpr uint64_t kMaxDelayNs = 2ull * 3600 * 1'000'000'000;  // ...to 2 h (keepalive)

bool g_dpdk_ready = false;
double g_tsc_ns_per_cycle = 0;

// Random operands, drawn before timing so the RNG is not measured.
struct Operands {
  std::vector<uint32_t> ids;
  std::vector<uint64_t> delays_ns;
  explicit Operands(size_t n, uint32_t id_range, uint64_t seed) : ids(n), delays_ns(n) {
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i < n; ++i) {
      ids[i] = static_cast<uint32_t>(rng() % id_range);
      delays_ns[i] = kMinDelayNs + rng() % (kMaxDelayNs - kMinDelayNs);
    }
  }
};

uint64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

// Accumulates the cost of timed regions two ways: TSC cycles (wall time: what the brief asks
// for, but it includes any time another process had the core), and this thread's CPU time
// converted to cycles at the TSC rate (excludes preemption; the two agree on a quiet machine).
struct Meter {
  uint64_t tsc_cycles = 0;
  uint64_t cpu_ns = 0;
  uint64_t ops = 0;

  template <typename Fn>
  void time(benchmark::State& state, Fn&& region) {
    uint64_t cpu_start = thread_cpu_ns();
    uint64_t start = clock::read_tsc_start();
    ops += region();
    uint64_t spent = clock::read_tsc_end() - start;
    cpu_ns += thread_cpu_ns() - cpu_start;
    tsc_cycles += spent;
    state.SetIterationTime(static_cast<double>(spent) * g_tsc_ns_per_cycle * 1e-9);
  }

  void report(benchmark::State& state) const {
    double n = static_cast<double>(ops);
    state.counters["cycles_per_op"] = static_cast<double>(tsc_cycles) / n;
    state.counters["cpu_cycles_per_op"] = static_cast<double>(cpu_ns) / g_tsc_ns_per_cycle / n;
    state.counters["ops"] = n;
    state.SetItemsProcessed(static_cast<int64_t>(ops));
  }
};

void count_fire(TimerWheel&, TimerId, uint64_t arg) {
  ++*reinterpret_cast<uint64_t*>(arg);
}

// A wheel with kLiveTimers armed (ids 0..kLiveTimers-1, deadlines 200 ms..2 h ahead) and
// `idle` more allocated but idle.
std::unique_ptr<TimerWheel> make_loaded_wheel(uint32_t idle, uint64_t* fired) {
  TimerWheelConfig config;
  config.capacity = kLiveTimers + idle;
  config.tick_ns = kTickNs;
  auto wheel = std::make_unique<TimerWheel>(config);
  Operands ops(kLiveTimers, 1, 1);
  for (uint32_t i = 0; i < kLiveTimers + idle; ++i) {
    TimerId id = wheel->alloc(count_fire, reinterpret_cast<uint64_t>(fired));
    if (i < kLiveTimers) wheel->schedule_after(id, ops.delays_ns[i]);
  }
  return wheel;
}

// Idle ids kLiveTimers..kLiveTimers+n-1 in random order, so arming walks cold memory.
std::vector<uint32_t> shuffled_idle_ids(uint32_t n) {
  std::vector<uint32_t> ids(n);
  for (uint32_t i = 0; i < n; ++i) ids[i] = kLiveTimers + i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(6));
  return ids;
}

constexpr size_t kOperands = size_t{1} << 22;
constexpr size_t kOperandMask = kOperands - 1;

// Schedule: arm an idle timer (chosen at random from a million idle ones) while a million are
// live; the batch is disarmed again untimed.
void BM_WheelSchedule(benchmark::State& state) {
  uint64_t fired = 0;
  auto wheel = make_loaded_wheel(kLiveTimers, &fired);
  std::vector<uint32_t> idle = shuffled_idle_ids(kLiveTimers);
  Operands ops(kOperands, 1, 3);
  Meter meter;
  size_t at = 0;
  for (auto _ : state) {
    size_t first = at;
    meter.time(state, [&] {
      for (uint32_t i = 0; i < kBatch; ++i, ++at) {
        wheel->schedule_after(idle[at % idle.size()], ops.delays_ns[at & kOperandMask]);
      }
      return kBatch;
    });
    for (size_t j = first; j < at; ++j) (void)wheel->cancel(idle[j % idle.size()]);
  }
  meter.report(state);
}

// Cancel: disarm random armed timers; the batch is re-armed untimed, so ~1M stay live.
void BM_WheelCancel(benchmark::State& state) {
  uint64_t fired = 0;
  auto wheel = make_loaded_wheel(0, &fired);
  Operands ops(kOperands, kLiveTimers, 4);
  Meter meter;
  size_t at = 0;
  for (auto _ : state) {
    size_t first = at;
    meter.time(state, [&] {
      uint64_t cancelled = 0;
      for (uint32_t i = 0; i < kBatch; ++i, ++at) {
        cancelled += wheel->cancel(ops.ids[at & kOperandMask]) ? 1 : 0;
      }
      return cancelled;  // only real cancels count (an id may repeat within a batch)
    });
    for (size_t j = first; j < at; ++j) {
      wheel->schedule_after(ops.ids[j & kOperandMask], ops.delays_ns[j & kOperandMask]);
    }
  }
  meter.report(state);
}

// Reset: move an armed timer to a new deadline (TCP re-arming its retransmit timer per ACK).
void BM_WheelReset(benchmark::State& state) {
  uint64_t fired = 0;
  auto wheel = make_loaded_wheel(0, &fired);
  Operands ops(kOperands, kLiveTimers, 2);
  Meter meter;
  size_t at = 0;
  for (auto _ : state) {
    meter.time(state, [&] {
      for (uint32_t i = 0; i < kBatch; ++i, ++at) {
        wheel->schedule_after(ops.ids[at & kOperandMask], ops.delays_ns[at & kOperandMask]);
      }
      return kBatch;
    });
  }
  benchmark::DoNotOptimize(wheel->armed_count());
  meter.report(state);
}

// Expiry: a million timers due within `spread` ms, time advanced 1 ms at a time (as a worker
// loop calls advance()); all advance() cycles / timers fired. Includes the moves down the
// levels for timers far enough out to need them, and the empty ticks.
void BM_WheelExpiry(benchmark::State& state) {
  const uint64_t spread_ns = static_cast<uint64_t>(state.range(0)) * 1'000'000;
  Meter meter;
  for (auto _ : state) {
    uint64_t fired = 0;
    TimerWheelConfig config;
    config.capacity = kLiveTimers;
    config.tick_ns = kTickNs;
    TimerWheel wheel(config);
    std::mt19937_64 rng(5);
    for (uint32_t i = 0; i < kLiveTimers; ++i) {
      TimerId id = wheel.alloc(count_fire, reinterpret_cast<uint64_t>(&fired));
      wheel.schedule(id, 1 + rng() % spread_ns);
    }
    meter.time(state, [&] {
      uint64_t n = 0;
      for (uint64_t now = kTickNs; now <= spread_ns; now += kTickNs) n += wheel.advance(now);
      return n;
    });
    if (fired != kLiveTimers) state.SkipWithError("not every timer fired");
  }
  meter.report(state);
}

// advance() on a worker loop turn where nothing is due: the per-turn cost of having timers.
void BM_WheelAdvanceIdle(benchmark::State& state) {
  uint64_t fired = 0;
  auto wheel = make_loaded_wheel(0, &fired);
  uint64_t now = wheel->now_ns();
  Meter meter;
  for (auto _ : state) {
    meter.time(state, [&] {
      for (uint32_t i = 0; i < kBatch; ++i) benchmark::DoNotOptimize(wheel->advance(now + i));
      return kBatch;
    });
  }
  meter.report(state);
}

// --- DPDK rte_timer ------------------------------------------------------------------------

void rte_count_fire(rte_timer*, void* arg) {
  ++*static_cast<uint64_t*>(arg);
}

struct RteTimers {
  std::unique_ptr<rte_timer[]> timers;
  uint64_t hz = rte_get_timer_hz();
  uint64_t fired = 0;
  explicit RteTimers(uint32_t n) : timers(new rte_timer[n]) {
    for (uint32_t i = 0; i < n; ++i) rte_timer_init(&timers[i]);
  }
  ~RteTimers() = default;
  uint64_t cycles_for(uint64_t ns) const {
    return static_cast<uint64_t>(static_cast<double>(ns) * static_cast<double>(hz) * 1e-9);
  }
  int reset(uint32_t i, uint64_t delay_ns) {
    return rte_timer_reset(&timers[i], cycles_for(delay_ns), SINGLE, rte_lcore_id(), rte_count_fire,
                           &fired);
  }
  void stop_all(uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) rte_timer_stop(&timers[i]);
  }
};

// The same million live timers as make_loaded_wheel, plus `idle` stopped ones.
std::unique_ptr<RteTimers> make_loaded_rte(uint32_t idle) {
  auto t = std::make_unique<RteTimers>(kLiveTimers + idle);
  Operands ops(kLiveTimers, 1, 1);
  for (uint32_t i = 0; i < kLiveTimers; ++i) (void)t->reset(i, ops.delays_ns[i]);
  return t;
}

bool need_dpdk(benchmark::State& state) {
  if (!g_dpdk_ready) state.SkipWithError("rte_eal_init failed; DPDK figures unavailable");
  return g_dpdk_ready;
}

void BM_RteTimerSchedule(benchmark::State& state) {
  if (!need_dpdk(state)) return;
  auto t = make_loaded_rte(kLiveTimers);
  std::vector<uint32_t> idle = shuffled_idle_ids(kLiveTimers);
  Operands ops(kOperands, 1, 3);
  Meter meter;
  size_t at = 0;
  for (auto _ : state) {
    size_t first = at;
    meter.time(state, [&] {
      for (uint32_t i = 0; i < kBatch; ++i, ++at) {
        (void)t->reset(idle[at % idle.size()], ops.delays_ns[at & kOperandMask]);
      }
      return kBatch;
    });
    for (size_t j = first; j < at; ++j) rte_timer_stop(&t->timers[idle[j % idle.size()]]);
  }
  t->stop_all(2 * kLiveTimers);
  meter.report(state);
}

void BM_RteTimerCancel(benchmark::State& state) {
  if (!need_dpdk(state)) return;
  auto t = make_loaded_rte(0);
  Operands ops(kOperands, kLiveTimers, 4);
  Meter meter;
  size_t at = 0;
  for (auto _ : state) {
    size_t first = at;
    meter.time(state, [&] {
      uint64_t cancelled = 0;
      for (uint32_t i = 0; i < kBatch; ++i, ++at) {
        rte_timer* tim = &t->timers[ops.ids[at & kOperandMask]];
        // Count only real cancels, as the wheel's figure does.
        if (rte_timer_pending(tim)) cancelled += rte_timer_stop(tim) == 0 ? 1 : 0;
      }
      return cancelled;
    });
    for (size_t j = first; j < at; ++j) {
      (void)t->reset(ops.ids[j & kOperandMask], ops.delays_ns[j & kOperandMask]);
    }
  }
  t->stop_all(kLiveTimers);
  meter.report(state);
}

void BM_RteTimerReset(benchmark::State& state) {
  if (!need_dpdk(state)) return;
  auto t = make_loaded_rte(0);
  Operands ops(kOperands, kLiveTimers, 2);
  Meter meter;
  size_t at = 0;
  for (auto _ : state) {
    meter.time(state, [&] {
      for (uint32_t i = 0; i < kBatch; ++i, ++at) {
        (void)t->reset(ops.ids[at & kOperandMask], ops.delays_ns[at & kOperandMask]);
      }
      return kBatch;
    });
  }
  t->stop_all(kLiveTimers);
  meter.report(state);
}

// rte_timer runs on the real TSC, so the million timers are armed to expire over the next
// seconds and rte_timer_manage() is called once per elapsed millisecond (the wait between calls
// is not counted), mirroring BM_WheelExpiry.
void BM_RteTimerExpiry(benchmark::State& state) {
  if (!need_dpdk(state)) return;
  const uint64_t spread_ns = static_cast<uint64_t>(state.range(0)) * 1'000'000;
  Meter meter;
  for (auto _ : state) {
    auto t = std::make_unique<RteTimers>(kLiveTimers);
    std::mt19937_64 rng(5);
    // Arming a million takes seconds, and rte_timer deadlines count from each arming, so the
    // deadlines are fixed in absolute TSC time: base + offset, with base far enough ahead that
    // arming finishes first (twice the time a 1% sample took, plus a second).
    const uint64_t spread_cycles = t->cycles_for(spread_ns);
    std::vector<uint64_t> offsets(kLiveTimers);
    for (uint64_t& o : offsets) o = 1 + rng() % spread_cycles;
    uint64_t probe_start = rte_get_timer_cycles();
    for (uint32_t i = 0; i < kLiveTimers / 100; ++i) (void)t->reset(i, 60'000'000'000);
    uint64_t lead = (rte_get_timer_cycles() - probe_start) * 200 + t->cycles_for(1'000'000'000);
    const uint64_t base = rte_get_timer_cycles() + lead;
    for (uint32_t i = 0; i < kLiveTimers; ++i) {
      uint64_t now = rte_get_timer_cycles();
      uint64_t at = base + offsets[i];
      (void)rte_timer_reset(&t->timers[i], at > now ? at - now : 0, SINGLE, rte_lcore_id(),
                            rte_count_fire, &t->fired);
    }
    const uint64_t ms_cycles = t->cycles_for(kTickNs);
    uint64_t next = rte_get_timer_cycles();
    while (t->fired < kLiveTimers) {
      while (rte_get_timer_cycles() < next) {
      }
      next += ms_cycles;
      uint64_t before = t->fired;
      meter.time(state, [&] {
        rte_timer_manage();
        return t->fired - before;
      });
    }
  }
  meter.report(state);
}

constexpr int64_t kResetIterations = 2000;  // x kBatch = 2M operations

BENCHMARK(BM_WheelSchedule)->Iterations(kResetIterations)->UseManualTime();
BENCHMARK(BM_WheelCancel)->Iterations(kResetIterations)->UseManualTime();
BENCHMARK(BM_WheelReset)->Iterations(kResetIterations)->UseManualTime();
BENCHMARK(BM_WheelExpiry)
    ->Arg(1000)
    ->Arg(7'200'000)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WheelAdvanceIdle)->Iterations(kResetIterations)->UseManualTime();
BENCHMARK(BM_RteTimerSchedule)->Iterations(kResetIterations)->UseManualTime();
BENCHMARK(BM_RteTimerCancel)->Iterations(kResetIterations)->UseManualTime();
BENCHMARK(BM_RteTimerReset)->Iterations(kResetIterations)->UseManualTime();
BENCHMARK(BM_RteTimerExpiry)
    ->Arg(1000)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace herald::timer

int main(int argc, char** argv) {
  // EAL in its smallest form: no hugepages, no PCI scan, one lcore, a private file prefix so
  // it cannot collide with a running dataplane.
  const char* eal_args[] = {
      "timer_bench", "--no-huge",     "-m",           "512",         "--no-pci",     "-l",
      "0",           "--file-prefix", "herald-bench", "--log-level", "lib.eal:error"};
  int eal_argc = static_cast<int>(std::size(eal_args));
  if (rte_eal_init(eal_argc, const_cast<char**>(eal_args)) >= 0 &&
      rte_timer_subsystem_init() == 0) {
    herald::timer::g_dpdk_ready = true;
  } else {
    std::fprintf(stderr, "timer_bench: DPDK EAL unavailable; rte_timer benchmarks will skip\n");
  }
  std::optional<herald::clock::TscClock> tsc = herald::clock::TscClock::calibrate();
  if (!tsc) {
    std::fprintf(stderr, "timer_bench: no usable TSC\n");
    return 1;
  }
  herald::timer::g_tsc_ns_per_cycle = 1e9 / static_cast<double>(tsc->hz());
  std::printf("tsc_hz=%llu (%s)\n", static_cast<unsigned long long>(tsc->hz()),
              std::string(herald::clock::tsc_frequency_source_name(tsc->source())).c_str());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (herald::timer::g_dpdk_ready) rte_eal_cleanup();
  return 0;
}

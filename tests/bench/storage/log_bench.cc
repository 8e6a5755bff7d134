// Durable 256-byte appends per second and commit latency (append to durable callback, p50/p99)
// of the log with group commit, on the real disk through io_uring, for each durability mode
// (write + fdatasync, O_DIRECT + O_DSYNC writes) and preallocation (zero-filled, fallocate).
// Files go to $HERALD_BENCH_DIR or /var/tmp (not tmpfs: the figure is about the disk).
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/storage/log.h"
#include "controlplane/storage/uring_device.h"
#include "platform/clock/clock.h"

namespace herald::storage {
namespace {

constexpr size_t kPayloadBytes = 256;

struct Context {
  uint64_t in_flight = 0;
  uint64_t failures = 0;
  std::vector<uint64_t> latencies_ns;
};

void BM_DurableAppends(benchmark::State& state) {
  const auto durability = static_cast<UringDeviceOptions::Durability>(state.range(0));
  const auto preallocation = static_cast<UringDeviceOptions::Preallocation>(state.range(1));
  const uint64_t window = static_cast<uint64_t>(state.range(2));

  const char* parent = std::getenv("HERALD_BENCH_DIR");
  std::string dir =
      std::string(parent != nullptr ? parent : "/var/tmp") + "/herald-log-bench-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  auto loop = uring::EventLoop::create();
  UringDeviceOptions dopts;
  dopts.directory = dir;
  dopts.durability = durability;
  dopts.preallocation = preallocation;
  auto device = UringDevice::create(**loop, dopts);
  if (!loop.ok() || !device.ok()) {
    state.SkipWithError("no loop or device");
    return;
  }
  LogOptions options;  // the defaults: 64 MiB segments, 256 KiB / 200 us group commit
  std::optional<absl::StatusOr<std::unique_ptr<Log>>> opened;
  Log::open(
      **device, options, [](const RecoveredRecord&) { return absl::OkStatus(); },
      [&](absl::StatusOr<std::unique_ptr<Log>> l) { opened.emplace(std::move(l)); });
  while (!opened.has_value()) (void)(**loop).run_once(-1);
  if (!opened->ok()) {
    state.SkipWithError("open failed");
    return;
  }
  std::unique_ptr<Log> log = std::move(**opened);
  while (!log->idle()) (void)(**loop).run_once(-1);  // first segment preallocated

  Context ctx;
  ctx.latencies_ns.reserve(static_cast<size_t>(state.max_iterations));
  std::vector<uint8_t> payload(kPayloadBytes, 0x5a);
  const uint64_t start_ns = clock::monotonic_ns();
  uint64_t appended = 0;
  for (auto _ : state) {
    while (ctx.in_flight >= window) (void)(**loop).run_once(-1);
    const uint64_t t = clock::monotonic_ns();
    payload[0] = static_cast<uint8_t>(appended);
    auto seq =
        log->append(20, payload, [c = &ctx, t](const absl::Status& s, const RecordLocation&) {
          --c->in_flight;
          if (!s.ok()) ++c->failures;
          c->latencies_ns.push_back(clock::monotonic_ns() - t);
        });
    if (!seq.ok()) {
      state.SkipWithError("append refused");
      break;
    }
    ++ctx.in_flight;
    ++appended;
    if (appended % 64 == 0) (void)(**loop).run_once(0);
  }
  while (ctx.in_flight > 0) (void)(**loop).run_once(-1);
  const uint64_t elapsed_ns = clock::monotonic_ns() - start_ns;
  while (!log->idle()) (void)(**loop).run_once(-1);

  std::vector<uint64_t>& l = ctx.latencies_ns;
  std::sort(l.begin(), l.end());
  auto pct = [&l](double p) {
    return l.empty() ? 0.0 : static_cast<double>(l[static_cast<size_t>(p * (l.size() - 1))]) / 1e3;
  };
  state.counters["appends_per_s"] = static_cast<double>(appended) * 1e9 / elapsed_ns;
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["max_us"] = pct(1.0);
  state.counters["batches"] = static_cast<double>(log->stats().batches);
  state.counters["records_per_batch"] =
      static_cast<double>(appended) /
      static_cast<double>(std::max<uint64_t>(1, log->stats().batches));
  state.counters["direct"] = (**device).direct() ? 1 : 0;
  state.counters["failures"] = static_cast<double>(ctx.failures);
  log.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// Args: durability (0 fdatasync, 1 O_DSYNC), preallocation (0 zero-fill, 1 fallocate), the
// number of appends kept waiting for durability (concurrent writers).
BENCHMARK(BM_DurableAppends)
    ->ArgNames({"dsync", "fallocate", "window"})
    ->Args({0, 0, 256})
    ->Args({1, 0, 256})
    ->Args({0, 0, 1024})
    ->Args({1, 0, 1024})
    ->Args({0, 1, 1024})
    ->Args({1, 1, 1024})
    ->Args({0, 0, 8192})
    ->Args({1, 0, 8192})
    ->Iterations(1'000'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Restart: the time Log::open takes to read and validate every segment of a log holding
// `records` 256-byte records (the scan only: the index that will sit above it is not built).
void BM_Recovery(benchmark::State& state) {
  const uint64_t records = static_cast<uint64_t>(state.range(0));
  const char* parent = std::getenv("HERALD_BENCH_DIR");
  std::string dir =
      std::string(parent != nullptr ? parent : "/var/tmp") + "/herald-log-bench-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  auto loop = uring::EventLoop::create();
  UringDeviceOptions dopts;
  dopts.directory = dir;
  dopts.preallocation = UringDeviceOptions::Preallocation::kFallocate;  // quicker to fill
  auto device = UringDevice::create(**loop, dopts);
  if (!loop.ok() || !device.ok()) {
    state.SkipWithError("no loop or device");
    return;
  }
  auto open = [&](uint64_t* seen) {
    std::optional<absl::StatusOr<std::unique_ptr<Log>>> opened;
    Log::open(
        **device, LogOptions{},
        [seen](const RecoveredRecord&) {
          ++*seen;
          return absl::OkStatus();
        },
        [&](absl::StatusOr<std::unique_ptr<Log>> l) { opened.emplace(std::move(l)); });
    while (!opened.has_value()) (void)(**loop).run_once(-1);
    std::unique_ptr<Log> log = opened->ok() ? std::move(**opened) : nullptr;
    while (log != nullptr && !log->idle()) (void)(**loop).run_once(-1);
    return log;
  };
  uint64_t seen = 0;
  {
    std::unique_ptr<Log> log = open(&seen);
    std::vector<uint8_t> payload(kPayloadBytes, 0x5a);
    uint64_t in_flight = 0;
    for (uint64_t i = 0; i < records && log != nullptr; ++i) {
      while (in_flight >= 8192) (void)(**loop).run_once(-1);
      auto seq = log->append(
          20, payload, [&in_flight](const absl::Status&, const RecordLocation&) { --in_flight; });
      if (!seq.ok()) break;
      ++in_flight;
    }
    while (log != nullptr && !log->idle()) (void)(**loop).run_once(-1);
  }
  for (auto _ : state) {
    seen = 0;
    const uint64_t start_ns = clock::monotonic_ns();
    std::unique_ptr<Log> log = open(&seen);
    state.counters["open_ms"] = static_cast<double>(clock::monotonic_ns() - start_ns) / 1e6;
    if (log == nullptr || seen != records) state.SkipWithError("recovery lost records");
  }
  state.counters["records"] = static_cast<double>(seen);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
// Reads come from the page cache when the file was written buffered; with O_DIRECT (the
// default) every run reads the disk.
BENCHMARK(BM_Recovery)
    ->Arg(1'000'000)
    ->Arg(10'000'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace herald::storage

BENCHMARK_MAIN();

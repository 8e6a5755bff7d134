// Restart time of the queue table (docs/PERFORMANCE.md): writes N messages of 256 B (10 M by
// default) into a queue log on a real disk (UringDevice, O_DIRECT), then times what a restart
// does: Log::open (each segment's summary, or the segment itself) feeding QueueTable::recover,
// then start().
// Files go to $HERALD_BENCH_DIR or /var/tmp. $HERALD_RESTART_BENCH_MESSAGES overrides N;
// $HERALD_RESTART_BENCH_KEEP=<dir> writes the log there once and reuses it on later runs (the
// directory is kept), so recovery can be timed repeatedly without rewriting gigabytes.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "controlplane/storage/log.h"
#include "controlplane/storage/queue_table.h"
#include "controlplane/storage/uring_device.h"
#include "platform/clock/clock.h"

namespace herald::storage {
namespace {

constexpr size_t kBodyBytes = 256;
constexpr uint32_t kDevices = 10'000;
constexpr uint64_t kWindow = 1024;

DeviceKey device_of(uint64_t i) {
  return DeviceKey{.account_hi = 7, .account_lo = 1 + i % kDevices, .device = 1};
}
MessageId id_of(uint64_t i) {
  return MessageId{.hi = 1, .lo = i + 1};
}

QueueTableOptions table_options(uint64_t messages) {
  QueueTableOptions o;
  o.max_queued_messages_per_device = static_cast<uint32_t>(messages / kDevices + 1);
  return o;
}

// The node's queue log: segment summaries on (README.md), unless $HERALD_RESTART_BENCH_NO_SUMMARIES
// is set, which times the full scan of every segment instead.
LogOptions log_options() {
  LogOptions o;
  if (std::getenv("HERALD_RESTART_BENCH_NO_SUMMARIES") == nullptr) {
    o.summary_payload_bytes = &QueueTable::summary_payload_bytes;
  }
  return o;
}

// Opens the log on `directory`, recovering into `table`; nullptr (and a message) on failure.
std::unique_ptr<Log> open_log(uring::EventLoop& loop, Device& device, QueueTable& table,
                              std::string* error) {
  std::optional<absl::StatusOr<std::unique_ptr<Log>>> opened;
  Log::open_batched(
      device, log_options(),
      [&](std::span<const RecoveredRecord> records) { return table.recover(records); },
      [&](absl::StatusOr<std::unique_ptr<Log>> l) { opened.emplace(std::move(l)); },
      [&](uint64_t records) { table.expect_records(records); });
  while (!opened.has_value()) (void)loop.run_once(-1);
  if (!opened->ok()) {
    *error = opened->status().ToString();
    return nullptr;
  }
  return std::move(**opened);
}

// Appends `messages` messages (window appends in flight), waits until all are durable.
bool write_messages(const std::string& directory, uint64_t messages, std::string* error) {
  auto loop = uring::EventLoop::create();
  if (!loop.ok()) return *error = "no event loop", false;
  UringDeviceOptions dopts;
  dopts.directory = directory;
  auto device = UringDevice::create(**loop, dopts);
  if (!device.ok()) return *error = "no device: " + device.status().ToString(), false;
  QueueTable table(table_options(messages));
  std::unique_ptr<Log> log = open_log(**loop, **device, table, error);
  if (log == nullptr) return false;
  table.start(*log);
  uint64_t in_flight = 0;
  uint64_t failures = 0;
  std::vector<uint8_t> body(kBodyBytes, 0x5a);
  for (uint64_t i = 0; i < messages; ++i) {
    while (in_flight >= kWindow) (void)(**loop).run_once(-1);
    std::memcpy(body.data(), &i, sizeof(i));
    const DeviceKey to = device_of(i);
    auto outcome = table.append(id_of(i), body, std::span<const DeviceKey>(&to, 1),
                                [&](const absl::Status& s) {
                                  --in_flight;
                                  if (!s.ok()) ++failures;
                                });
    if (!outcome.ok() && absl::IsResourceExhausted(outcome.status())) {
      --i;  // backpressure: let some complete, then retry
      (void)(**loop).run_once(-1);
      continue;
    }
    if (!outcome.ok() || !outcome->written) return *error = "append refused", false;
    ++in_flight;
    if (i % 64 == 63) (void)(**loop).run_once(0);
  }
  while (in_flight > 0 || !log->idle()) (void)(**loop).run_once(-1);
  if (failures > 0) return *error = "appends failed", false;
  return true;
}

void BM_QueueRestart(benchmark::State& state) {
  const char* n = std::getenv("HERALD_RESTART_BENCH_MESSAGES");
  const uint64_t messages =
      n != nullptr ? std::strtoull(n, nullptr, 10) : static_cast<uint64_t>(state.range(0));
  const char* keep = std::getenv("HERALD_RESTART_BENCH_KEEP");
  std::string directory;
  if (keep != nullptr) {
    directory = keep;
  } else {
    const char* parent = std::getenv("HERALD_BENCH_DIR");
    directory = std::string(parent != nullptr ? parent : "/var/tmp") + "/herald-restart-XXXXXX";
    if (::mkdtemp(directory.data()) == nullptr) {
      state.SkipWithError("mkdtemp failed");
      return;
    }
  }
  std::error_code ec;
  const bool reuse = keep != nullptr && std::filesystem::exists(directory + "/written", ec);
  std::string error;
  const uint64_t write_start_ns = clock::monotonic_ns();
  if (!reuse) {
    std::filesystem::create_directories(directory, ec);
    if (!write_messages(directory, messages, &error)) {
      state.SkipWithError(("write: " + error).c_str());
      return;
    }
    if (keep != nullptr) std::filesystem::create_directory(directory + "/written", ec);
  }
  const uint64_t write_ns = clock::monotonic_ns() - write_start_ns;

  for (auto _ : state) {
    // A fresh loop, device and table: what a restarted process builds.
    auto loop = uring::EventLoop::create();
    if (!loop.ok()) {
      state.SkipWithError("no event loop");
      break;
    }
    UringDeviceOptions dopts;
    dopts.directory = directory;
    auto device = UringDevice::create(**loop, dopts);
    if (!device.ok()) {
      state.SkipWithError("no device");
      break;
    }
    const uint64_t start_ns = clock::monotonic_ns();
    auto table = std::make_unique<QueueTable>(table_options(messages));
    std::unique_ptr<Log> log = open_log(**loop, **device, *table, &error);
    if (log == nullptr) {
      state.SkipWithError(("open: " + error).c_str());
      break;
    }
    const uint64_t opened_ns = clock::monotonic_ns();
    table->start(*log);
    const uint64_t started_ns = clock::monotonic_ns();
    state.counters["restart_s"] = static_cast<double>(started_ns - start_ns) / 1e9;
    state.counters["open_recover_s"] = static_cast<double>(opened_ns - start_ns) / 1e9;
    state.counters["start_s"] = static_cast<double>(started_ns - opened_ns) / 1e9;
    state.counters["records"] = static_cast<double>(log->stats().recovered_records);
    state.counters["segments"] = static_cast<double>(log->stats().recovered_segments);
    state.counters["from_summaries"] = static_cast<double>(log->stats().segments_from_summaries);
    state.counters["summary_fallbacks"] = static_cast<double>(log->stats().summary_fallbacks);
    state.counters["bodies"] = static_cast<double>(table->bodies());
    state.counters["direct"] = (**device).direct() ? 1 : 0;
    // Segments scanned (those read through a summary are not counted here).
    const double log_bytes = static_cast<double>(log->stats().recovered_segments -
                                                 log->stats().segments_from_summaries) *
                             static_cast<double>(log->options().segment_size_bytes);
    state.counters["read_GB_per_s"] =
        log_bytes / static_cast<double>(std::max<uint64_t>(1, opened_ns - start_ns));
    while (!log->idle()) (void)(**loop).run_once(-1);  // the fresh segment's preallocation
    log.reset();  // before the table (its callbacks point at the table); not timed
    const uint64_t free_start_ns = clock::monotonic_ns();
    table.reset();
    state.counters["free_s"] = static_cast<double>(clock::monotonic_ns() - free_start_ns) / 1e9;
  }
  state.counters["messages"] = static_cast<double>(messages);
  state.counters["write_s"] = static_cast<double>(write_ns) / 1e9;
  if (keep == nullptr) std::filesystem::remove_all(directory, ec);
}
// Arg: messages written before the timed restart.
BENCHMARK(BM_QueueRestart)
    ->ArgNames({"messages"})
    ->Arg(10'000'000)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace herald::storage

BENCHMARK_MAIN();

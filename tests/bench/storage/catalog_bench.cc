// Restart time of the catalog with a million account-like entries on a real disk: replaying the
// whole log against loading a snapshot (plus the few records after it). Also how long one
// snapshot step holds the loop (the longest callback run while the snapshot is written).
// Files go to $HERALD_BENCH_DIR or /var/tmp; $HERALD_BENCH_ENTRIES changes the count.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/storage/catalog.h"
#include "controlplane/storage/uring_device.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {

constexpr size_t kBatch = 64;
constexpr size_t kValueBytes = 120;

uint64_t entries_wanted() {
  const char* v = std::getenv("HERALD_BENCH_ENTRIES");
  return v == nullptr ? 1'000'000 : std::strtoull(v, nullptr, 10);
}

std::unique_ptr<Catalog> open_catalog(uring::EventLoop& loop, Device& device,
                                      const CatalogOptions& options) {
  std::optional<absl::StatusOr<std::unique_ptr<Catalog>>> result;
  Catalog::open(device, options,
                [&](absl::StatusOr<std::unique_ptr<Catalog>> c) { result.emplace(std::move(c)); });
  while (!result.has_value()) (void)loop.run_once(-1);
  if (!result->ok()) {
    std::fprintf(stderr, "open: %s\n", result->status().ToString().c_str());
    return nullptr;
  }
  return std::move(**result);
}

// range(0): 0 = restart by replaying the log, 1 = restart from a snapshot.
void BM_CatalogRestart(benchmark::State& state) {
  log::set_min_level(log::Level::kWarn);
  const bool snapshot = state.range(0) == 1;
  const uint64_t entries = entries_wanted();
  const char* parent = std::getenv("HERALD_BENCH_DIR");
  std::string dir =
      std::string(parent != nullptr ? parent : "/var/tmp") + "/herald-catalog-bench-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  auto loop = uring::EventLoop::create();
  UringDeviceOptions dopts;
  dopts.directory = dir;
  auto device = UringDevice::create(**loop, dopts);
  if (!loop.ok() || !device.ok()) {
    state.SkipWithError("no loop or device");
    return;
  }
  CatalogOptions options;                     // defaults: 64 MiB segments, 256 KiB snapshot chunks
  options.snapshot_after_bytes = 1ull << 40;  // by hand below
  options.snapshots_enabled = snapshot;

  uint64_t max_step_ns = 0;
  uint64_t snapshot_ns = 0;
  {
    std::unique_ptr<Catalog> catalog = open_catalog(**loop, **device, options);
    if (catalog == nullptr) {
      state.SkipWithError("open failed");
      return;
    }
    std::vector<Mutation> batch;
    std::string value(kValueBytes, 'v');
    for (uint64_t i = 0; i < entries;) {
      batch.clear();
      for (size_t k = 0; k < kBatch && i < entries; ++k, ++i) {
        char key[32];
        std::snprintf(key, sizeof(key), "acct%010llu", static_cast<unsigned long long>(i));
        value[0] = static_cast<char>('a' + i % 26);
        batch.push_back(Mutation::put(TableId::kAccounts, key, value));
      }
      absl::Status s;
      while ((s = catalog->apply(batch)).code() == absl::StatusCode::kResourceExhausted) {
        (void)(**loop).run_once(-1);
      }
      if (!s.ok()) {
        state.SkipWithError("apply failed");
        return;
      }
    }
    bool synced = false;
    catalog->barrier([&](const absl::Status& s) { synced = s.ok(); });
    while (!synced) (void)(**loop).run_once(-1);
    if (snapshot) {
      // Busy-poll so each run_once measures only the callbacks it ran (a snapshot step among
      // them), not time spent waiting for the disk.
      const uint64_t start = clock::monotonic_ns();
      catalog->snapshot_now();
      while (catalog->snapshot_in_progress()) {
        const uint64_t t0 = clock::monotonic_ns();
        (void)(**loop).run_once(0);
        max_step_ns = std::max(max_step_ns, clock::monotonic_ns() - t0);
      }
      snapshot_ns = clock::monotonic_ns() - start;
      // A few batches after the snapshot, as a running node has.
      for (int i = 0; i < 100; ++i) {
        (void)catalog->put(TableId::kAccounts, "late" + std::to_string(i), value);
      }
      synced = false;
      catalog->barrier([&](const absl::Status& s) { synced = s.ok(); });
      while (!synced) (void)(**loop).run_once(-1);
    }
    while (!catalog->idle()) (void)(**loop).run_once(-1);
  }

  CatalogStats stats;
  size_t loaded = 0;
  for (auto _ : state) {
    const uint64_t t0 = clock::monotonic_ns();
    std::unique_ptr<Catalog> catalog = open_catalog(**loop, **device, options);
    const uint64_t t1 = clock::monotonic_ns();
    if (catalog == nullptr) {
      state.SkipWithError("reopen failed");
      break;
    }
    state.SetIterationTime(static_cast<double>(t1 - t0) / 1e9);
    stats = catalog->stats();
    loaded = catalog->size(TableId::kAccounts);
    while (!catalog->idle()) (void)(**loop).run_once(-1);
  }
  state.counters["entries"] = static_cast<double>(loaded);
  state.counters["records_replayed"] = static_cast<double>(stats.records_replayed);
  state.counters["snapshot_entries"] = static_cast<double>(stats.snapshot_entries_loaded);
  state.counters["recovery_ms"] = static_cast<double>(stats.recovery_ns) / 1e6;
  if (snapshot) {
    state.counters["snapshot_write_ms"] = static_cast<double>(snapshot_ns) / 1e6;
    state.counters["max_loop_step_ms"] = static_cast<double>(max_step_ns) / 1e6;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

BENCHMARK(BM_CatalogRestart)
    ->ArgName("from_snapshot")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace herald::storage

BENCHMARK_MAIN();

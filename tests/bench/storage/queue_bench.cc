// The offline-queue workload (append a 256-byte message to one of K device queues, durable before
// it completes; then delete it as delivered) on the QueueTable over the log on io_uring, and the
// same logical workload on RocksDB with a synced WAL, in one run (docs/PERFORMANCE.md figure).
// Files go to $HERALD_BENCH_DIR or /var/tmp (not tmpfs: the figure is about the disk).
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/storage/log.h"
#include "controlplane/storage/queue_table.h"
#include "controlplane/storage/uring_device.h"
#include "platform/clock/clock.h"

#ifdef HERALD_HAVE_ROCKSDB
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#endif

namespace herald::storage {
namespace {

constexpr size_t kBodyBytes = 256;
constexpr uint32_t kDevices = 1000;

// Messages per case: the benchmark's argument, or $HERALD_QUEUE_BENCH_MESSAGES (a quick run).
uint64_t message_count(const benchmark::State& state) {
  const char* n = std::getenv("HERALD_QUEUE_BENCH_MESSAGES");
  return n != nullptr ? std::strtoull(n, nullptr, 10) : static_cast<uint64_t>(state.range(1));
}

std::optional<std::string> make_temp_dir(const char* prefix) {
  const char* parent = std::getenv("HERALD_BENCH_DIR");
  std::string dir = std::string(parent != nullptr ? parent : "/var/tmp") + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return std::nullopt;
  return dir;
}

DeviceKey device_of(uint64_t i) {
  return DeviceKey{.account_hi = 0, .account_lo = 1 + i % kDevices, .device = 1};
}
MessageId id_of(uint64_t i) {
  return MessageId{.hi = 1, .lo = i + 1};
}

// Percentile of sorted latencies, in microseconds.
double percentile_us(const std::vector<uint64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0.0;
  return static_cast<double>(sorted_ns[static_cast<size_t>(p * (sorted_ns.size() - 1))]) / 1e3;
}

void report(benchmark::State& state, const char* name, uint64_t ops, uint64_t elapsed_ns,
            std::vector<uint64_t>& latencies_ns) {
  std::sort(latencies_ns.begin(), latencies_ns.end());
  const std::string n(name);
  state.counters[n + "_per_s"] =
      static_cast<double>(ops) * 1e9 / static_cast<double>(std::max<uint64_t>(1, elapsed_ns));
  state.counters[n + "_p50_us"] = percentile_us(latencies_ns, 0.50);
  state.counters[n + "_p99_us"] = percentile_us(latencies_ns, 0.99);
}

struct Completions {
  uint64_t in_flight = 0;
  uint64_t failures = 0;
  std::vector<uint64_t> latencies_ns;  // submit to durable callback
};

// Herald: one thread drives the io_uring loop; `window` appends (then deletes) wait for
// durability at once, which is what gives group commit its batches (a busy node has that many
// senders waiting for their ServerAck).
void BM_HeraldQueue(benchmark::State& state) {
  const uint64_t window = static_cast<uint64_t>(state.range(0));
  const uint64_t messages = message_count(state);
  const std::optional<std::string> dir = make_temp_dir("herald-queue-bench");
  if (!dir.has_value()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  for (auto _ : state) {
    auto loop = uring::EventLoop::create();
    if (!loop.ok()) {
      state.SkipWithError("no event loop");
      break;
    }
    UringDeviceOptions dopts;
    dopts.directory = *dir + "/run";
    // dsync:1 opens segments O_DSYNC (each write durable on completion, no separate
    // fdatasync); dsync:0 writes then fdatasyncs. The issue asks for both to be measured.
    if (state.range(2) != 0) dopts.durability = UringDeviceOptions::Durability::kDsyncWrites;
    auto device = UringDevice::create(**loop, dopts);
    if (!device.ok()) {
      state.SkipWithError("no device");
      break;
    }
    QueueTable table(QueueTableOptions{});
    std::optional<absl::StatusOr<std::unique_ptr<Log>>> opened;
    Log::open(
        **device, LogOptions{}, [&](const RecoveredRecord& r) { return table.recover(r); },
        [&](absl::StatusOr<std::unique_ptr<Log>> l) { opened.emplace(std::move(l)); });
    while (!opened.has_value()) (void)(**loop).run_once(-1);
    if (!opened->ok()) {
      state.SkipWithError("log open failed");
      break;
    }
    std::unique_ptr<Log> log = std::move(**opened);
    while (!log->idle()) (void)(**loop).run_once(-1);  // first segment preallocated
    table.start(*log);

    Completions c;
    uint64_t& in_flight = c.in_flight;
    std::vector<uint64_t>& latencies_ns = c.latencies_ns;
    latencies_ns.reserve(messages);
    auto on_done = [&c](uint64_t submitted_ns) {
      return [c = &c, submitted_ns](const absl::Status& s) {
        --c->in_flight;
        if (!s.ok()) ++c->failures;
        c->latencies_ns.push_back(clock::monotonic_ns() - submitted_ns);
      };
    };
    std::vector<uint8_t> body(kBodyBytes, 0x5a);

    // Appends.
    const uint64_t append_start_ns = clock::monotonic_ns();
    for (uint64_t i = 0; i < messages; ++i) {
      while (in_flight >= window) (void)(**loop).run_once(-1);
      std::memcpy(body.data(), &i, sizeof(i));
      const DeviceKey to = device_of(i);
      auto outcome = table.append(id_of(i), body, std::span<const DeviceKey>(&to, 1),
                                  on_done(clock::monotonic_ns()));
      if (!outcome.ok() || !outcome->written) {
        state.SkipWithError("append refused");
        break;
      }
      ++in_flight;
      if (i % 64 == 63) (void)(**loop).run_once(0);
    }
    while (in_flight > 0) (void)(**loop).run_once(-1);
    const uint64_t append_ns = clock::monotonic_ns() - append_start_ns;
    const uint64_t batches = log->stats().batches;
    report(state, "appends", messages, append_ns, latencies_ns);

    // Deletes, one ack per message (the worst case: a device acks a whole drain batch at once).
    latencies_ns.clear();
    const uint64_t delete_start_ns = clock::monotonic_ns();
    for (uint64_t i = 0; i < messages; ++i) {
      while (in_flight >= window) (void)(**loop).run_once(-1);
      const MessageId id = id_of(i);
      auto removed = table.remove(device_of(i), std::span<const MessageId>(&id, 1),
                                  on_done(clock::monotonic_ns()));
      if (!removed.ok() || *removed != 1) {
        state.SkipWithError("remove failed");
        break;
      }
      ++in_flight;
      if (i % 64 == 63) (void)(**loop).run_once(0);
    }
    while (in_flight > 0) (void)(**loop).run_once(-1);
    const uint64_t delete_ns = clock::monotonic_ns() - delete_start_ns;
    report(state, "deletes", messages, delete_ns, latencies_ns);
    while (!log->idle()) (void)(**loop).run_once(-1);

    state.counters["ops_per_s"] =
        static_cast<double>(2 * messages) * 1e9 / static_cast<double>(append_ns + delete_ns);
    state.counters["append_batches"] = static_cast<double>(batches);
    state.counters["records_per_batch"] =
        static_cast<double>(log->stats().appends) /
        static_cast<double>(std::max<uint64_t>(1, log->stats().batches));
    state.counters["failures"] = static_cast<double>(c.failures);
    state.counters["queued_after"] = static_cast<double>(table.bodies());
    state.counters["direct"] = (**device).direct() ? 1 : 0;
    log.reset();  // before the table: its pending callbacks point at the table
  }
  state.counters["devices"] = kDevices;
  std::error_code ec;
  std::filesystem::remove_all(*dir, ec);
}
// Args: appends (then deletes) waiting for durability at once (16 matches RocksDB's writers;
// 1024 is a busy node), messages (200k as RocksDB; 2M so the fast case runs for seconds).
BENCHMARK(BM_HeraldQueue)
    ->ArgNames({"window", "messages", "dsync"})
    ->Args({16, 200'000, 0})
    ->Args({1024, 200'000, 0})
    ->Args({1024, 2'000'000, 0})
    ->Args({512, 2'000'000, 0})
    ->Args({256, 2'000'000, 0})
    ->Args({1024, 2'000'000, 1})
    ->Args({512, 2'000'000, 1})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

#ifdef HERALD_HAVE_ROCKSDB
// RocksDB: `threads` writers each issue synced Puts (then synced Deletes) one at a time; the
// concurrent writers are how RocksDB groups WAL writes and syncs (its write-group leader syncs
// for all waiting writers), so this is its group commit at that concurrency.
// Key: device (16 B: account hi/lo, big-endian so one device's queue is contiguous) + seq (8 B).
void BM_RocksDbQueue(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const uint64_t messages = message_count(state);
  const std::optional<std::string> dir = make_temp_dir("herald-rocksdb-bench");
  if (!dir.has_value()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  auto key_of = [](uint64_t i) {
    const DeviceKey d = device_of(i);
    const uint64_t words[3] = {d.account_hi, d.account_lo, i / kDevices};
    std::string key(24, '\0');
    for (size_t w = 0; w < 3; ++w) {
      for (size_t b = 0; b < 8; ++b) key[w * 8 + b] = static_cast<char>(words[w] >> (56 - 8 * b));
    }
    return key;
  };
  for (auto _ : state) {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    const std::string path = *dir + "/db";
    rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
    if (!s.ok()) {
      state.SkipWithError(("rocksdb open: " + s.ToString()).c_str());
      break;
    }
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteOptions wopts;
    wopts.sync = true;  // fsync the WAL before the write returns: the durability Herald gives

    // Runs `op(i)` for every message, spread over the threads; returns elapsed ns.
    std::vector<std::vector<uint64_t>> per_thread(static_cast<size_t>(threads));
    std::atomic<uint64_t> failures{0};
    auto run = [&](auto op) {
      const uint64_t start_ns = clock::monotonic_ns();
      std::vector<std::thread> workers;
      for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
          std::vector<uint64_t>& lat = per_thread[static_cast<size_t>(t)];
          lat.clear();
          lat.reserve(messages / static_cast<uint64_t>(threads) + 1);
          for (uint64_t i = static_cast<uint64_t>(t); i < messages;
               i += static_cast<uint64_t>(threads)) {
            const uint64_t t0 = clock::monotonic_ns();
            if (!op(i).ok()) failures.fetch_add(1, std::memory_order_relaxed);
            lat.push_back(clock::monotonic_ns() - t0);
          }
        });
      }
      for (std::thread& w : workers) w.join();
      return clock::monotonic_ns() - start_ns;
    };
    auto merged = [&] {
      std::vector<uint64_t> all;
      all.reserve(messages);
      for (const auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
      return all;
    };

    const uint64_t put_ns = run([&](uint64_t i) {
      std::string value(kBodyBytes, '\x5a');
      std::memcpy(value.data(), &i, sizeof(i));
      return db->Put(wopts, key_of(i), value);
    });
    std::vector<uint64_t> put_lat = merged();
    report(state, "puts", messages, put_ns, put_lat);
    const uint64_t delete_ns = run([&](uint64_t i) { return db->Delete(wopts, key_of(i)); });
    std::vector<uint64_t> delete_lat = merged();
    report(state, "deletes", messages, delete_ns, delete_lat);
    state.counters["ops_per_s"] =
        static_cast<double>(2 * messages) * 1e9 / static_cast<double>(put_ns + delete_ns);
    state.counters["failures"] = static_cast<double>(failures.load());
    s = db->Close();
    db.reset();
    (void)rocksdb::DestroyDB(path, options);
  }
  state.counters["threads"] = threads;
  std::error_code ec;
  std::filesystem::remove_all(*dir, ec);
}
// Args: writer threads (16: the brief's fair setting on 2 cores; 64: a bigger write group),
// messages.
BENCHMARK(BM_RocksDbQueue)
    ->ArgNames({"threads", "messages"})
    ->Args({16, 200'000})
    ->Args({64, 200'000})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#endif  // HERALD_HAVE_ROCKSDB

}  // namespace
}  // namespace herald::storage

BENCHMARK_MAIN();

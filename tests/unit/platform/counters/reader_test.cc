// Tests for the reader: consistent reads while writers increment and while the layout changes,
// a stuck or abandoned layout lock, and rejection of corrupt segments (never an out-of-bounds
// read: the regions are exact-size heap blocks, so ASan would flag one).
#include "platform/counters/reader.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "platform/counters/counters.h"
#include "tests/unit/platform/counters/test_region.h"

namespace herald::counters {
namespace {

using testing::AlignedRegion;

constexpr Capacity kCapacity{.max_entries = 1024, .max_threads = 8, .slots_per_thread = 8192};

layout::Header* header_of(const AlignedRegion& r) {
  return reinterpret_cast<layout::Header*>(r.data());
}

// Writers run until the reader has read kMinReads times (and for at least kMinIterations),
// so reads overlap the writes however fast or slow the machine is. Checks inside threads
// record a failure and stop instead of asserting, so no thread is left running.
TEST(CounterReader, ReadsAreMonotonicWhileWritersRun) {
  AlignedRegion region(region_size_bytes(kCapacity));
  CounterRegistry reg = *CounterRegistry::format(region.span(), kCapacity);
  const CounterHandle ops = *reg.counter("ops");
  const CounterHandle bytes = *reg.counter("bytes");
  const HistogramHandle lat = *reg.histogram("lat_ns", {3, 24});
  constexpr uint32_t kWriters = 3;
  constexpr uint64_t kMinIterations = 100'000;
  constexpr uint64_t kMinReads = 200;

  std::vector<ThreadCounters> blocks;
  for (uint32_t t = 0; t < kWriters; ++t) blocks.push_back(*reg.thread(t));
  std::atomic<uint64_t> reads{0};
  std::atomic<uint32_t> running{kWriters};
  std::vector<uint64_t> iterations(kWriters, 0);
  std::vector<std::thread> writers;
  for (uint32_t t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      uint64_t i = 0;
      for (;; ++i) {
        if (i % 1024 == 0 && i >= kMinIterations &&
            reads.load(std::memory_order_relaxed) >= kMinReads) {
          break;
        }
        blocks[t].add(ops);
        blocks[t].add(bytes, 10 * (t + 1));
        if (i % 16 == 0) blocks[t].record(lat, i);
      }
      iterations[t] = i;
      running.fetch_sub(1, std::memory_order_release);
    });
  }

  CounterReader reader = *CounterReader::attach(region.span());
  Snapshot s;
  std::string failure;
  uint64_t last_ops = 0, last_bytes = 0, last_count = 0;
  for (;;) {
    const bool finished = running.load(std::memory_order_acquire) == 0;
    if (absl::Status st = reader.read(&s); !st.ok()) {
      failure = st.ToString();
    } else {
      const uint64_t o = s.find("ops")->counter;
      const uint64_t b = s.find("bytes")->counter;
      const uint64_t c = s.find("lat_ns")->histogram.count();
      if (o < last_ops || b < last_bytes || c < last_count) {
        failure = "a read went backwards: ops " + std::to_string(last_ops) + " -> " +
                  std::to_string(o) + ", bytes " + std::to_string(last_bytes) + " -> " +
                  std::to_string(b);
      }
      last_ops = o;
      last_bytes = b;
      last_count = c;
    }
    if (!failure.empty()) {
      reads.store(kMinReads);  // release the writers
      break;
    }
    reads.fetch_add(1, std::memory_order_relaxed);
    if (finished) break;  // this read started after every writer had stopped
  }
  for (auto& w : writers) w.join();
  ASSERT_EQ(failure, "");

  uint64_t final_ops = 0, final_bytes = 0, final_count = 0, final_max = 0;
  for (uint32_t t = 0; t < kWriters; ++t) {
    final_ops += iterations[t];
    final_bytes += iterations[t] * 10 * (t + 1);
    final_count += iterations[t] / 16;  // iterations[t] is a multiple of 1024
    final_max = std::max(final_max, iterations[t] - 16);
  }
  // Reads only grew, so the last one bounds them all: none exceeded the final value.
  EXPECT_LE(last_ops, final_ops);
  EXPECT_LE(last_bytes, final_bytes);
  EXPECT_GE(reads.load(), kMinReads);
  ASSERT_TRUE(reader.read(&s).ok());
  EXPECT_EQ(s.find("ops")->counter, final_ops);
  EXPECT_EQ(s.find("bytes")->counter, final_bytes);
  EXPECT_EQ(s.find("lat_ns")->histogram.count(), final_count);
  EXPECT_EQ(s.find("lat_ns")->histogram.max(), final_max);
}

// Each registration adds exactly one entry and bumps the epoch by exactly one, so in a
// consistent read the directory size is a function of the epoch, and the names are a prefix
// of the registration order. A torn directory breaks one or the other. After every other
// registration the registrar waits until a read has returned it, so reads interleave with
// layout changes on any machine.
TEST(CounterReader, LayoutChangesAreSeenWholeAndRetried) {
  AlignedRegion region(region_size_bytes(kCapacity));
  CounterRegistry reg = *CounterRegistry::format(region.span(), kCapacity);
  const CounterHandle base = *reg.counter("base");
  const uint64_t epoch0 = reg.epoch();
  constexpr uint32_t kNew = 400;
  auto dyn_name = [](size_t i) { return "dyn." + std::to_string(i); };

  std::atomic<bool> stop{false};
  std::atomic<bool> reader_gone{false};
  std::atomic<uint64_t> seen_epoch{0};
  std::string registrar_failure;
  std::thread registrar([&] {
    ThreadCounters tc = *reg.thread(0);
    for (uint32_t i = 0; i < kNew && registrar_failure.empty(); ++i) {
      absl::Status st = (i % 7 == 0) ? reg.histogram(dyn_name(i), {2, 12}).status()
                                     : reg.counter(dyn_name(i)).status();
      if (!st.ok()) registrar_failure = st.ToString();
      tc.add(base);
      // Registration i made epoch epoch0 + i + 1; wait until a read has returned it.
      while (i % 2 == 0 && seen_epoch.load() < epoch0 + i + 1 && !reader_gone.load()) {
        std::this_thread::yield();
      }
    }
    stop.store(true);
  });

  CounterReader reader = *CounterReader::attach(region.span());
  Snapshot s;
  std::string failure;
  uint64_t last_epoch = 0, last_base = 0;
  std::set<uint64_t> epochs;
  for (;;) {
    const bool finished = stop.load();
    if (absl::Status st = reader.read(&s); !st.ok()) {
      failure = st.ToString();
      break;
    }
    epochs.insert(s.epoch);
    if (s.epoch < last_epoch) failure = "epoch went backwards";
    if (s.metrics.size() != 1 + (s.epoch - epoch0)) failure = "directory torn against the epoch";
    if (s.metrics.empty() || s.metrics[0].name != "base") failure = "first entry lost";
    for (size_t i = 1; failure.empty() && i < s.metrics.size(); ++i) {
      if (s.metrics[i].name != dyn_name(i - 1) ||
          s.metrics[i].kind != ((i - 1) % 7 == 0 ? Kind::kHistogram : Kind::kCounter)) {
        failure = "entry " + std::to_string(i) + " is '" + s.metrics[i].name + "'";
      }
    }
    if (!failure.empty() || s.metrics[0].counter < last_base) {
      if (failure.empty()) failure = "base counter went backwards";
      break;
    }
    last_epoch = s.epoch;
    last_base = s.metrics[0].counter;
    auto list = reader.list();
    if (!list.ok()) {
      failure = list.status().ToString();
      break;
    }
    for (size_t i = 1; failure.empty() && i < list->size(); ++i) {
      if ((*list)[i].name != dyn_name(i - 1)) failure = "list() torn at " + std::to_string(i);
    }
    if (!failure.empty()) break;
    seen_epoch.store(s.epoch);
    if (finished) break;
  }
  reader_gone.store(true);
  registrar.join();
  ASSERT_EQ(failure, "");
  ASSERT_EQ(registrar_failure, "");
  ASSERT_TRUE(reader.read(&s).ok());
  EXPECT_EQ(s.metrics.size(), 1u + kNew);
  EXPECT_EQ(s.epoch, epoch0 + kNew);
  EXPECT_EQ(s.find("base")->counter, kNew);
  // Every other registration waited for a read of its own epoch (or a later one), and no
  // read satisfies two of those waits.
  EXPECT_GE(epochs.size(), kNew / 2);
  std::printf("layout test: %zu distinct epochs read, %llu retries\n", epochs.size(),
              static_cast<unsigned long long>(reader.retries()));
}

TEST(CounterReader, StuckLayoutLockTimesOutAndDeadHolderIsTakenOver) {
  AlignedRegion region(region_size_bytes(kCapacity));
  CounterRegistry reg = *CounterRegistry::format(region.span(), kCapacity,
                                                 RegistryOptions{.layout_lock_timeout_ms = 20});
  ASSERT_TRUE(reg.counter("a").ok());
  CounterReader reader =
      *CounterReader::attach(region.span(), ReaderOptions{.layout_wait_timeout_ms = 20});

  // A live holder (this process, standing in for a registrant that hangs).
  layout::store_release(&header_of(region)->in_progress, static_cast<uint64_t>(::getpid()));
  Snapshot s;
  EXPECT_EQ(reader.read(&s).code(), absl::StatusCode::kUnavailable);
  EXPECT_GT(reader.retries(), 0u);
  EXPECT_EQ(reg.counter("b").status().code(), absl::StatusCode::kDeadlineExceeded);

  // A dead holder: a child that has exited (and been reaped) cannot finish its change.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  layout::store_release(&header_of(region)->in_progress, static_cast<uint64_t>(child));
  auto b = reg.counter("b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(layout::load_acquire(&header_of(region)->in_progress), 0u);
  ASSERT_TRUE(reader.read(&s).ok());
  EXPECT_NE(s.find("b"), nullptr);
}

// --- Corrupt segments --------------------------------------------------------------------

struct Corruption {
  const char* what;
  std::function<void(std::byte* base, const Geometry& g)> apply;
  absl::StatusCode attach_code;  // kOk: attach succeeds, then read() must fail with read_code
  absl::StatusCode read_code;
};

layout::DirEntry* entry(std::byte* base, const Geometry& g, uint32_t i) {
  return reinterpret_cast<layout::DirEntry*>(base + g.directory_offset +
                                             i * sizeof(layout::DirEntry));
}
layout::Header* hdr(std::byte* base) {
  return reinterpret_cast<layout::Header*>(base);
}

// A populated region: counter, gauge, histogram, two thread blocks with values.
void populate(const AlignedRegion& region) {
  CounterRegistry reg = *CounterRegistry::format(region.span(), kCapacity);
  const CounterHandle c = *reg.counter("c");
  const GaugeHandle g = *reg.gauge("g");
  const HistogramHandle h = *reg.histogram("h", {2, 16});
  for (uint32_t t = 0; t < 2; ++t) {
    ThreadCounters tc = *reg.thread(t);
    tc.add(c, 5);
    tc.set(g, 1);
    tc.record(h, 1000);
  }
}

TEST(CounterReader, RejectsCorruptSegments) {
  using Code = absl::StatusCode;
  const std::vector<Corruption> cases = {
      {"bad magic", [](std::byte* b, const Geometry&) { hdr(b)->magic ^= 1; },
       Code::kInvalidArgument, Code::kOk},
      {"other version", [](std::byte* b, const Geometry&) { hdr(b)->version = 2; },
       Code::kFailedPrecondition, Code::kOk},
      {"entry size", [](std::byte* b, const Geometry&) { hdr(b)->entry_bytes = 64; },
       Code::kDataLoss, Code::kOk},
      {"huge max_threads", [](std::byte* b, const Geometry&) { hdr(b)->max_threads = ~0u; },
       Code::kDataLoss, Code::kOk},
      {"max_threads beyond the mapping",
       [](std::byte* b, const Geometry&) { hdr(b)->max_threads *= 2; }, Code::kDataLoss, Code::kOk},
      {"values offset moved", [](std::byte* b, const Geometry&) { hdr(b)->values_offset += 64; },
       Code::kDataLoss, Code::kOk},
      {"stride shrunk", [](std::byte* b, const Geometry&) { hdr(b)->thread_stride_bytes -= 128; },
       Code::kDataLoss, Code::kOk},
      {"directory overlaps header",
       [](std::byte* b, const Geometry&) { hdr(b)->directory_offset = 0; }, Code::kDataLoss,
       Code::kOk},
      {"entry_count past directory",
       [](std::byte* b, const Geometry& g) { hdr(b)->entry_count = g.max_entries + 1ull; },
       Code::kOk, Code::kDataLoss},
      {"threads_in_use past max",
       [](std::byte* b, const Geometry& g) { hdr(b)->threads_in_use = g.max_threads + 1ull; },
       Code::kOk, Code::kDataLoss},
      {"slots_used past block",
       [](std::byte* b, const Geometry& g) { hdr(b)->slots_used = g.slots_per_thread + 1ull; },
       Code::kOk, Code::kDataLoss},
      {"slots_used below reserved", [](std::byte* b, const Geometry&) { hdr(b)->slots_used = 0; },
       Code::kOk, Code::kDataLoss},
      {"entry slots past slots_used",
       [](std::byte* b, const Geometry& g) {
         entry(b, g, 0)->first_slot = static_cast<uint32_t>(hdr(b)->slots_used);
       },
       Code::kOk, Code::kDataLoss},
      {"entry slot count overflows 32 bits",
       [](std::byte* b, const Geometry& g) { entry(b, g, 0)->slot_count = ~0u; }, Code::kOk,
       Code::kDataLoss},
      {"entry in the reserved line",
       [](std::byte* b, const Geometry& g) { entry(b, g, 0)->first_slot = 0; }, Code::kOk,
       Code::kDataLoss},
      {"counter with two slots",
       [](std::byte* b, const Geometry& g) { entry(b, g, 0)->slot_count = 2; }, Code::kOk,
       Code::kDataLoss},
      {"kind zero", [](std::byte* b, const Geometry& g) { entry(b, g, 1)->kind = 0; }, Code::kOk,
       Code::kDataLoss},
      {"kind unknown", [](std::byte* b, const Geometry& g) { entry(b, g, 1)->kind = 9; }, Code::kOk,
       Code::kDataLoss},
      {"name not terminated",
       [](std::byte* b, const Geometry& g) { std::memset(entry(b, g, 1)->name, 'x', kNameBytes); },
       Code::kOk, Code::kDataLoss},
      {"empty name", [](std::byte* b, const Geometry& g) { entry(b, g, 1)->name[0] = '\0'; },
       Code::kOk, Code::kDataLoss},
      {"control character in name",
       [](std::byte* b, const Geometry& g) { entry(b, g, 1)->name[0] = '\n'; }, Code::kOk,
       Code::kDataLoss},
      {"duplicate name", [](std::byte* b, const Geometry& g) { entry(b, g, 1)->name[0] = 'c'; },
       Code::kOk, Code::kDataLoss},
      {"histogram spec out of range",
       [](std::byte* b, const Geometry& g) { entry(b, g, 2)->sub_bucket_bits = 30; }, Code::kOk,
       Code::kDataLoss},
      {"histogram slot count disagrees with spec",
       [](std::byte* b, const Geometry& g) { entry(b, g, 2)->max_value_bits = 17; }, Code::kOk,
       Code::kDataLoss},
  };
  for (const Corruption& c : cases) {
    SCOPED_TRACE(c.what);
    AlignedRegion region(region_size_bytes(kCapacity));
    populate(region);
    const Geometry g = *geometry_for(kCapacity);
    c.apply(region.data(), g);
    auto reader = CounterReader::attach(region.span());
    ASSERT_EQ(reader.status().code(), c.attach_code) << reader.status();
    if (!reader.ok()) continue;
    Snapshot s;
    EXPECT_EQ(reader->read(&s).code(), c.read_code);
    EXPECT_EQ(reader->list().status().code(), c.read_code);
  }
}

// Each block alone, unsummed, beside the summed read of the same segment; per-thread values of
// a few names from read(); a block not in use refused.
TEST(CounterReader, ReadsOneThreadBlockUnsummed) {
  AlignedRegion region(region_size_bytes(kCapacity));
  CounterRegistry reg = *CounterRegistry::format(region.span(), kCapacity);
  const CounterHandle ops = *reg.counter("ops");
  const GaugeHandle depth = *reg.gauge("depth");
  const HistogramHandle lat = *reg.histogram("lat_ns", {3, 24});
  ThreadCounters t0 = *reg.thread(0);
  ThreadCounters t1 = *reg.thread(1);
  t0.add(ops, 7);
  t1.add(ops, 1000);
  t0.set(depth, -3);
  t1.set(depth, 40);
  t0.record(lat, 10);
  t1.record(lat, 5000);
  t1.record(lat, 6000);

  CounterReader reader = *CounterReader::attach(region.span());
  Snapshot s;
  ASSERT_TRUE(reader.read_thread(0, &s).ok());
  EXPECT_EQ(s.threads, 2u);
  EXPECT_EQ(s.find("ops")->counter, 7u);
  EXPECT_EQ(s.find("depth")->gauge, -3);
  EXPECT_EQ(s.find("lat_ns")->histogram.count(), 1u);
  EXPECT_EQ(s.find("lat_ns")->histogram.max(), 10u);
  ASSERT_TRUE(reader.read_thread(1, &s).ok());
  EXPECT_EQ(s.find("ops")->counter, 1000u);
  EXPECT_EQ(s.find("depth")->gauge, 40);
  EXPECT_EQ(s.find("lat_ns")->histogram.count(), 2u);
  EXPECT_EQ(s.find("lat_ns")->histogram.max(), 6000u);
  EXPECT_TRUE(s.per_thread.empty());

  const absl::Status out_of_range = reader.read_thread(2, &s);
  EXPECT_EQ(out_of_range.code(), absl::StatusCode::kOutOfRange) << out_of_range;
  EXPECT_NE(out_of_range.message().find("thread block 2 not in use"), std::string::npos)
      << out_of_range;
  EXPECT_EQ(reader.read_thread(UINT32_MAX, &s).code(), absl::StatusCode::kOutOfRange);

  // The summed read is unchanged, and carries the requested names per block.
  s.per_thread_names = {"ops", "nope", "depth", "lat_ns"};
  ASSERT_TRUE(reader.read(&s).ok());
  EXPECT_EQ(s.find("ops")->counter, 1007u);
  EXPECT_EQ(s.find("depth")->gauge, 37);
  EXPECT_EQ(s.find("lat_ns")->histogram.count(), 3u);
  ASSERT_EQ(s.per_thread.size(), 2u * 4u);
  EXPECT_EQ(s.per_thread_present, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(s.thread_value(0, 0), 7u);
  EXPECT_EQ(s.thread_value(1, 0), 1000u);
  EXPECT_EQ(s.thread_value(0, 1), std::nullopt) << "unknown name";
  EXPECT_EQ(static_cast<int64_t>(*s.thread_value(0, 2)), -3);
  EXPECT_EQ(s.thread_value(1, 2), 40u);
  EXPECT_EQ(s.thread_value(0, 3), std::nullopt) << "a histogram has no single value";
  EXPECT_EQ(s.thread_value(2, 0), std::nullopt) << "no third block";

  // Values move, names stay resolved; a third block and a new name (layout change) are seen.
  t1.add(ops, 5);
  ThreadCounters t2 = *reg.thread(2);
  const CounterHandle late = *reg.counter("late");
  t2.add(late, 9);
  s.per_thread_names = {"late", "ops"};
  ASSERT_TRUE(reader.read(&s).ok());
  ASSERT_EQ(s.threads, 3u);
  EXPECT_EQ(s.thread_value(2, 0), 9u);
  EXPECT_EQ(s.thread_value(1, 1), 1005u);
  EXPECT_EQ(s.thread_value(2, 1), 0u);
  ASSERT_TRUE(reader.read_thread(2, &s).ok());
  EXPECT_EQ(s.find("late")->counter, 9u);
  EXPECT_EQ(s.find("ops")->counter, 0u);
}

TEST(CounterReader, RejectsRegionsTooSmallOrMisaligned) {
  AlignedRegion region(region_size_bytes(kCapacity));
  populate(region);
  EXPECT_EQ(CounterReader::attach(region.span().first(64)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CounterReader::attach(region.span().first(region.size() - kPageBytes)).status().code(),
            absl::StatusCode::kDataLoss)
      << "a header claiming more than the mapping";
  EXPECT_EQ(CounterReader::attach(region.span().subspan(8)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CounterReader::attach({}).status().code(), absl::StatusCode::kInvalidArgument);
}

// The writer also distrusts a directory it did not write (attach after another process).
TEST(CounterReader, WriterRejectsCorruptEntryOnLookup) {
  AlignedRegion region(region_size_bytes(kCapacity));
  populate(region);
  const Geometry g = *geometry_for(kCapacity);
  entry(region.data(), g, 0)->first_slot = g.slots_per_thread - 1;
  CounterRegistry reg = *CounterRegistry::attach(region.span());
  EXPECT_EQ(reg.counter("c").status().code(), absl::StatusCode::kDataLoss);
}

// Random damage to the header's mutable line and the directory: every read either succeeds
// or fails cleanly; ASan turns any out-of-bounds read into a test failure.
TEST(CounterReader, RandomCorruptionNeverReadsOutOfBounds) {
  AlignedRegion pristine(region_size_bytes(kCapacity));
  populate(pristine);
  const Geometry g = *geometry_for(kCapacity);
  const size_t damage_end = g.directory_offset + 4 * sizeof(layout::DirEntry);
  std::mt19937_64 rng(7);
  int ok = 0, failed = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    AlignedRegion region(pristine.size());
    std::memcpy(region.data(), pristine.data(), pristine.size());
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      // Bytes 0..63 are geometry (checked at attach); damage the rest most of the time.
      const size_t at = (rng() % 8 == 0) ? rng() % 64 : 64 + rng() % (damage_end - 64);
      region.data()[at] = static_cast<std::byte>(rng());
    }
    auto reader = CounterReader::attach(region.span(), ReaderOptions{.layout_wait_timeout_ms = 1});
    if (!reader.ok()) {
      ++failed;
      continue;
    }
    Snapshot s;
    s.per_thread_names = {"c", "g", "h"};  // the per-block loads are bounds-checked too
    if (reader->read(&s).ok()) {
      ++ok;
      for (const Metric& m : s.metrics) EXPECT_TRUE(validate_name(m.name).ok());
      EXPECT_EQ(s.per_thread.size(), size_t{s.threads} * 3);
    } else {
      ++failed;
    }
    // One block alone: in range or refused, never a read outside the region.
    (void)reader->read_thread(static_cast<uint32_t>(rng() % 10), &s);
  }
  EXPECT_GT(failed, 0);
  EXPECT_EQ(ok + failed, 2000);
}

}  // namespace
}  // namespace herald::counters

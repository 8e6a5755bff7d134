// The dataplane's process memory reading (process_memory.h): heap in use follows what is
// allocated and freed (so a leak shows there and not only in RSS), free bytes are what the
// arenas keep, RSS follows touched pages, and ProcessMemory hands the supervisor's reading to
// the publishing worker.
#include "dataplane/process_memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "tests/unit/asan.h"

namespace herald::dataplane {
namespace {

constexpr size_t kBlocks = 20'000;
constexpr size_t kBlockBytes = 1000;  // below the mmap threshold: arena chunks, as sessions'
constexpr uint64_t kAllocated = kBlocks * kBlockBytes;

TEST(ProcessMemory, HeapInUseFollowsAllocationsAndFrees) {
#ifdef HERALD_TEST_ASAN
  GTEST_SKIP() << "mallinfo2 does not see the AddressSanitizer allocator";
#endif
  const ProcessMemoryGauges before = sample_process_memory();
  ASSERT_GT(before.rss_bytes, 0u);
  std::vector<std::unique_ptr<char[]>> blocks;
  blocks.reserve(kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) {
    blocks.emplace_back(new char[kBlockBytes]);
    std::memset(blocks.back().get(), static_cast<int>(i), kBlockBytes);  // resident
  }
  const ProcessMemoryGauges held = sample_process_memory();
  // In use grew by what was allocated (plus chunk headers, less than 2%).
  EXPECT_GE(held.heap_in_use_bytes, before.heap_in_use_bytes + kAllocated);
  EXPECT_LE(held.heap_in_use_bytes, before.heap_in_use_bytes + kAllocated * 102 / 100 + 65536);
  EXPECT_GE(held.rss_bytes, before.rss_bytes + kAllocated * 9 / 10);

  // Every other block freed: the arena cannot give back interleaved holes, so they show as
  // free bytes kept, and in use falls by what was freed.
  for (size_t i = 0; i < kBlocks; i += 2) blocks[i].reset();
  const ProcessMemoryGauges holes = sample_process_memory();
  EXPECT_LE(holes.heap_in_use_bytes, held.heap_in_use_bytes - kAllocated / 2 + 65536);
  EXPECT_GE(holes.heap_free_bytes, kAllocated / 2 * 9 / 10);

  blocks.clear();
  const ProcessMemoryGauges after = sample_process_memory();
  // Back to where it started, to within the vector and the thread cache's chunks.
  EXPECT_LE(after.heap_in_use_bytes, before.heap_in_use_bytes + kBlocks * sizeof(void*) + 65536);
}

TEST(ProcessMemory, ReadReturnsTheLastSample) {
  ProcessMemory memory;
  EXPECT_EQ(memory.read().rss_bytes, 0u);  // nothing sampled yet
  memory.sample(0);
  const ProcessMemoryGauges g = memory.read();
  EXPECT_GT(g.rss_bytes, 0u);
  EXPECT_EQ(g.heap_trims, 0u);  // no policy: never trims
#ifndef HERALD_TEST_ASAN
  EXPECT_GT(g.heap_in_use_bytes, 0u);
#endif
}

// Freed chunks below a live one stay in the arena (free() gives back only the top): a trim
// past the threshold, once the free heap stopped growing, returns their pages, once per
// interval, again only when they are resident again, and counts what it released.
TEST(ProcessMemory, TrimReturnsFreePagesPastTheThreshold) {
#ifdef HERALD_TEST_ASAN
  GTEST_SKIP() << "mallinfo2 and malloc_trim do not see the AddressSanitizer allocator";
#endif
  constexpr uint64_t kThreshold = 16u << 20;
  ProcessMemory memory({.free_bytes_threshold = kThreshold, .min_interval_ms = 30'000});
  memory.sample(1'000);  // below the threshold: no trim
  ASSERT_EQ(memory.read().heap_trims, 0u);

  std::vector<std::unique_ptr<char[]>> blocks;
  blocks.reserve(2 * kBlocks);
  for (size_t i = 0; i < 2 * kBlocks; ++i) {
    blocks.emplace_back(new char[kBlockBytes]);
    std::memset(blocks.back().get(), 1, kBlockBytes);
  }
  // A live block above them keeps the freed run from being the arena's top.
  std::unique_ptr<char[]> guard(new char[kBlockBytes]);
  std::memset(guard.get(), 1, kBlockBytes);
  blocks.clear();  // 40 MB free, in one coalesced run below the guard

  memory.sample(2'000);  // the free heap just grew by 40 MB: departures still going, wait
  EXPECT_EQ(memory.read().heap_trims, 0u);
  memory.sample(2'500);  // no longer growing: trim
  const ProcessMemoryGauges trimmed = memory.read();
  EXPECT_EQ(trimmed.heap_trims, 1u);
  // Most of the run's pages went back (the run less its edges and the chunk headers).
  EXPECT_GE(trimmed.heap_trim_released_bytes, 2 * kAllocated / 2);
  EXPECT_GE(trimmed.heap_free_bytes, kThreshold);  // still free (and reusable), not resident

  memory.sample(3'000);  // within the interval: no second trim
  EXPECT_EQ(memory.read().heap_trims, 1u);
  // Due again and still past the threshold, but nothing of it is resident again: no trim.
  memory.sample(33'000);
  EXPECT_EQ(memory.read().heap_trims, 1u);

  // The run reused (resident again) and freed once more: the next due reading trims.
  for (size_t i = 0; i < 2 * kBlocks; ++i) {
    blocks.emplace_back(new char[kBlockBytes]);
    std::memset(blocks.back().get(), 1, kBlockBytes);
  }
  blocks.clear();
  memory.sample(34'000);  // the free heap is the same run again: settled
  EXPECT_EQ(memory.read().heap_trims, 2u);
  EXPECT_GE(memory.read().heap_trim_released_bytes, 2 * kAllocated);
}

}  // namespace
}  // namespace herald::dataplane

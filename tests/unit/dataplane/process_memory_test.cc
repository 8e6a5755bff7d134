// The dataplane's process memory reading (process_memory.h): heap in use follows what is
// allocated and freed (so a leak shows there and not only in RSS), free bytes are what the
// arenas keep, RSS follows touched pages, and ProcessMemory hands the supervisor's reading to
// the publishing worker.
#include "dataplane/process_memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define HERALD_DP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HERALD_DP_ASAN 1
#endif
#endif

namespace herald::dataplane {
namespace {

constexpr size_t kBlocks = 20'000;
constexpr size_t kBlockBytes = 1000;  // below the mmap threshold: arena chunks, as sessions'
constexpr uint64_t kAllocated = kBlocks * kBlockBytes;

TEST(ProcessMemory, HeapInUseFollowsAllocationsAndFrees) {
#ifdef HERALD_DP_ASAN
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
  memory.sample();
  const ProcessMemoryGauges g = memory.read();
  EXPECT_GT(g.rss_bytes, 0u);
#ifndef HERALD_DP_ASAN
  EXPECT_GT(g.heap_in_use_bytes, 0u);
#endif
}

}  // namespace
}  // namespace herald::dataplane

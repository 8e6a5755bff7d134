// The dataplane process's memory, as an operator and the soak test read it: what the heap
// (glibc malloc: sessions, TLS, TCP blocks and rings) holds for live objects, what it keeps
// free for reuse, and the resident set. The heap figures tell a leak (in-use grows round
// after round) from allocator retention (free grows, in-use comes back), which RSS alone
// cannot: RSS counts both.
//
//   ProcessMemory memory({.free_bytes_threshold = 128 << 20});  // outlives the workers
//   memory.sample(now_ms);                       // the supervisor thread, about once a second
//   const ProcessMemoryGauges g = memory.read(); // worker 0, at each stats publish
//
// After mass departures glibc keeps the freed chunks: free pages inside an arena go back to
// the kernel only on malloc_trim. sample() calls it when the free heap passes the policy's
// threshold (dataplane.heap_trim_free_mb) and has stopped growing (the departures are over:
// trimming halfway returned 68 KiB of 107 MB in the soak), and again only once half a
// threshold of free heap is resident again; at most once per interval. It counts what it gave
// back.
//
// mallinfo2 and malloc_trim walk every arena under that arena's lock, so neither is called on
// a worker's thread: a worker's malloc waits for a walk only if it misses its thread cache
// while the walk holds its arena. A reading costs microseconds to a millisecond; a trim after
// a few hundred thousand sessions left, tens of milliseconds (logged with its duration,
// dataplane.heap_trimmed), once.
#pragma once

#include <atomic>
#include <cstdint>

namespace herald::dataplane {

// Published as dp.process.* (stats_mirror.h): gauges, and the trims as counters.
struct ProcessMemoryGauges {
  uint64_t heap_in_use_bytes = 0;         // malloc'd and not freed (arenas + mmapped chunks)
  uint64_t heap_free_bytes = 0;           // free inside the arenas, kept for reuse
  uint64_t rss_bytes = 0;                 // resident pages (/proc/self/statm), heap and DPDK alike
  uint64_t heap_trims = 0;                // malloc_trim calls (a counter)
  uint64_t heap_trim_released_bytes = 0;  // RSS they gave back (a counter)
};

struct HeapTrimPolicy {
  uint64_t free_bytes_threshold = 0;  // trim once heap_free_bytes reaches this; 0: never
  uint64_t min_interval_ms = 30'000;  // between two trims
};

// One reading now (the caller's thread; see above for the cost); trims are left 0.
ProcessMemoryGauges sample_process_memory();

class ProcessMemory {
 public:
  explicit ProcessMemory(HeapTrimPolicy policy = {}) : policy_(policy) {}
  // One thread (the supervisor): takes a reading, trims when the policy says so, and makes
  // the reading the one read() returns.
  void sample(uint64_t now_ms);
  // Any thread: the last reading (zeros before the first).
  ProcessMemoryGauges read() const;

 private:
  const HeapTrimPolicy policy_;
  uint64_t next_trim_ms_ = 0;      // the sampling thread's
  uint64_t last_free_bytes_ = 0;   // idem: the previous reading's heap_free_bytes
  bool trimmed_ = false;           // idem
  uint64_t slack_after_trim_ = 0;  // idem: RSS less the heap in use after the last trim
  std::atomic<uint64_t> heap_in_use_bytes_{0};
  std::atomic<uint64_t> heap_free_bytes_{0};
  std::atomic<uint64_t> rss_bytes_{0};
  std::atomic<uint64_t> heap_trims_{0};
  std::atomic<uint64_t> heap_trim_released_bytes_{0};
};

}  // namespace herald::dataplane

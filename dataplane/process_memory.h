// The dataplane process's memory, as an operator and the soak test read it: what the heap
// (glibc malloc: sessions, TLS, TCP blocks and rings) holds for live objects, what it keeps
// free for reuse, and the resident set. The heap figures tell a leak (in-use grows round
// after round) from allocator retention (free grows, in-use comes back), which RSS alone
// cannot: RSS counts both.
//
//   ProcessMemory memory;                        // owned by the process, outlives the workers
//   memory.sample();                             // the supervisor thread, about once a second
//   const ProcessMemoryGauges g = memory.read(); // worker 0, at each stats publish
//
// mallinfo2 walks every arena's free lists under that arena's lock, so it is never called on a
// worker's thread: a worker's malloc waits for the walk only if it misses its thread cache
// while the walk holds its arena (microseconds to a millisecond after mass departures), once
// per sample interval.
#pragma once

#include <atomic>
#include <cstdint>

namespace herald::dataplane {

// Published as gauges dp.process.* (stats_mirror.h).
struct ProcessMemoryGauges {
  uint64_t heap_in_use_bytes = 0;  // malloc'd and not freed (arenas + mmapped chunks)
  uint64_t heap_free_bytes = 0;    // free inside the arenas, kept for reuse
  uint64_t rss_bytes = 0;          // resident pages (/proc/self/statm), heap and DPDK alike
};

// One reading now (the caller's thread; see above for the cost).
ProcessMemoryGauges sample_process_memory();

class ProcessMemory {
 public:
  // One thread (the supervisor): takes a reading and makes it the one read() returns.
  void sample();
  // Any thread: the last reading (zeros before the first).
  ProcessMemoryGauges read() const;

 private:
  std::atomic<uint64_t> heap_in_use_bytes_{0};
  std::atomic<uint64_t> heap_free_bytes_{0};
  std::atomic<uint64_t> rss_bytes_{0};
};

}  // namespace herald::dataplane

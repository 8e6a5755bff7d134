// The process's heap and resident set (process_memory.h).
#include "dataplane/process_memory.h"

#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

#include "platform/log/log.h"

namespace herald::dataplane {
namespace {

// Resident pages from /proc/self/statm (its second field), in bytes; 0 when unreadable.
uint64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size_pages = 0, resident_pages = 0;
  const int fields = std::fscanf(f, "%llu %llu", &size_pages, &resident_pages);
  std::fclose(f);
  if (fields != 2) return 0;
  return resident_pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

uint64_t monotonic_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace

ProcessMemoryGauges sample_process_memory() {
  const struct mallinfo2 m = mallinfo2();
  // uordblks: chunks in use inside the arenas; hblkhd: chunks mmapped on their own (large
  // allocations), always in use; fordblks: free chunks the arenas keep (bins, fast bins, top).
  ProcessMemoryGauges g;
  g.heap_in_use_bytes = m.uordblks + m.hblkhd;
  g.heap_free_bytes = m.fordblks;
  g.rss_bytes = resident_bytes();
  return g;
}

void ProcessMemory::sample(uint64_t now_ms) {
  ProcessMemoryGauges g = sample_process_memory();
  // Departures in progress free more every second: a trim then returns what is free so far
  // and waits out its interval while the rest comes free. Trim once the free heap stopped
  // growing (by more than an eighth of the threshold since the last reading).
  const bool settled = g.heap_free_bytes <= last_free_bytes_ + policy_.free_bytes_threshold / 8;
  last_free_bytes_ = g.heap_free_bytes;
  // A trim leaves the chunks free but their pages given back: the free heap stays past the
  // threshold. Trim again only once about half a threshold of it is resident again (RSS less
  // the heap in use grew by that since the last trim: reused and freed once more).
  const uint64_t slack = g.rss_bytes > g.heap_in_use_bytes ? g.rss_bytes - g.heap_in_use_bytes : 0;
  const bool regrown = !trimmed_ || slack >= slack_after_trim_ + policy_.free_bytes_threshold / 2;
  if (policy_.free_bytes_threshold != 0 && g.heap_free_bytes >= policy_.free_bytes_threshold &&
      settled && regrown && now_ms >= next_trim_ms_) {
    next_trim_ms_ = now_ms + policy_.min_interval_ms;
    const uint64_t started_us = monotonic_us();
    malloc_trim(0);
    const uint64_t took_us = monotonic_us() - started_us;
    const ProcessMemoryGauges after = sample_process_memory();
    const uint64_t released = g.rss_bytes > after.rss_bytes ? g.rss_bytes - after.rss_bytes : 0;
    heap_trims_.fetch_add(1, std::memory_order_relaxed);
    heap_trim_released_bytes_.fetch_add(released, std::memory_order_relaxed);
    HLOG_INFO("dataplane.heap_trimmed")
        .kv("heap_free_bytes", g.heap_free_bytes)
        .kv("heap_in_use_bytes", g.heap_in_use_bytes)
        .kv("rss_before_bytes", g.rss_bytes)
        .kv("rss_after_bytes", after.rss_bytes)
        .kv("took_us", took_us);
    g = after;
    trimmed_ = true;
    slack_after_trim_ = g.rss_bytes > g.heap_in_use_bytes ? g.rss_bytes - g.heap_in_use_bytes : 0;
  }
  heap_in_use_bytes_.store(g.heap_in_use_bytes, std::memory_order_relaxed);
  heap_free_bytes_.store(g.heap_free_bytes, std::memory_order_relaxed);
  rss_bytes_.store(g.rss_bytes, std::memory_order_relaxed);
}

ProcessMemoryGauges ProcessMemory::read() const {
  ProcessMemoryGauges g;
  g.heap_in_use_bytes = heap_in_use_bytes_.load(std::memory_order_relaxed);
  g.heap_free_bytes = heap_free_bytes_.load(std::memory_order_relaxed);
  g.rss_bytes = rss_bytes_.load(std::memory_order_relaxed);
  g.heap_trims = heap_trims_.load(std::memory_order_relaxed);
  g.heap_trim_released_bytes = heap_trim_released_bytes_.load(std::memory_order_relaxed);
  return g;
}

}  // namespace herald::dataplane

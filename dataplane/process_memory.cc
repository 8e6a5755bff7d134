// The process's heap and resident set (process_memory.h).
#include "dataplane/process_memory.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>

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

}  // namespace

ProcessMemoryGauges sample_process_memory() {
  const struct mallinfo2 m = mallinfo2();
  // uordblks: chunks in use inside the arenas; hblkhd: chunks mmapped on their own (large
  // allocations), always in use; fordblks: free chunks the arenas keep (bins, fast bins, top).
  return ProcessMemoryGauges{.heap_in_use_bytes = m.uordblks + m.hblkhd,
                             .heap_free_bytes = m.fordblks,
                             .rss_bytes = resident_bytes()};
}

void ProcessMemory::sample() {
  const ProcessMemoryGauges g = sample_process_memory();
  heap_in_use_bytes_.store(g.heap_in_use_bytes, std::memory_order_relaxed);
  heap_free_bytes_.store(g.heap_free_bytes, std::memory_order_relaxed);
  rss_bytes_.store(g.rss_bytes, std::memory_order_relaxed);
}

ProcessMemoryGauges ProcessMemory::read() const {
  return ProcessMemoryGauges{
      .heap_in_use_bytes = heap_in_use_bytes_.load(std::memory_order_relaxed),
      .heap_free_bytes = heap_free_bytes_.load(std::memory_order_relaxed),
      .rss_bytes = rss_bytes_.load(std::memory_order_relaxed)};
}

}  // namespace herald::dataplane

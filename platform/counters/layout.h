// On-segment format of the counters segment, after VPP's stats segment (src/vlib/stats): a
// header, a named directory and one block of uint64 slots per writer thread. Shared by the
// writer (CounterRegistry) and the reader (CounterReader); neighbours include counters.h.
//
//   offset 0                 Header (128 B): geometry (immutable) + epoch/in_progress line
//   directory_offset         max_entries x DirEntry (128 B each)
//   values_offset            max_threads x thread block (thread_stride_bytes each, 128-aligned)
//                            block = slots_per_thread x uint64; slots [0, kReservedSlots) are a
//                            discard line that default-constructed handles write into.
//
// Everything is addressed by offset/index, never by pointer (VPP stores the writer's base
// address and rebases; offsets make that unnecessary), so each process maps it anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace herald::counters {

enum class Kind : uint8_t { kCounter = 1, kGauge = 2, kHistogram = 3 };
std::string_view kind_name(Kind kind);

// How big a segment is, fixed at creation (CONVENTIONS: size everything at start-up).
struct Capacity {
  uint32_t max_entries = 2048;        // directory entries (counters + gauges + histograms)
  uint32_t max_threads = 64;          // writer blocks: one per dataplane worker / CP thread
  uint32_t slots_per_thread = 32768;  // uint64 values per block: 1 per counter/gauge,
                                      // 2 + bucket_count per histogram (531 by default)
};

inline constexpr uint64_t kMagic = 0x3152544e43444c48ull;  // "HLDCNTR1" read little-endian
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kNameBytes = 112;  // with the terminating NUL
inline constexpr size_t kMaxNameLength = kNameBytes - 1;
inline constexpr uint32_t kReservedSlots = 8;  // one cache line of discard slots per block
inline constexpr size_t kCacheLineBytes = 64;
// Thread blocks start 128 B apart, not 64: Intel's spatial prefetcher fetches cache lines in
// 128 B-aligned pairs, so 64 B spacing still lets two writers' lines ping-pong.
inline constexpr size_t kThreadAlignBytes = 128;
inline constexpr size_t kPageBytes = 4096;

// Upper bounds on a Capacity, so size arithmetic can never overflow and a reader never trusts
// a header asking for more.
inline constexpr uint32_t kMaxEntriesLimit = 1u << 20;
inline constexpr uint32_t kMaxThreadsLimit = 4096;
inline constexpr uint32_t kMaxSlotsPerThreadLimit = 1u << 24;  // 128 MiB per thread

namespace layout {

// Fields are plain integers so the struct is trivially copyable and has the same layout in
// every process; the mutable ones are accessed only through the atomic helpers below.
struct alignas(kCacheLineBytes) Header {
  // Geometry: written once by format(), before the magic is published with a release store.
  uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;
  uint64_t region_bytes;
  uint32_t max_entries;
  uint32_t max_threads;
  uint32_t entry_bytes;
  uint32_t slots_per_thread;
  uint64_t directory_offset;
  uint64_t values_offset;
  uint64_t thread_stride_bytes;
  // Mutable, on their own cache line so readers polling them do not share it with geometry.
  alignas(kCacheLineBytes) uint64_t epoch;  // bumped once per layout change
  uint64_t in_progress;                     // 0, or pid of the process changing the layout
  uint64_t entry_count;                     // published directory entries
  uint64_t slots_used;                      // slots handed out per block (same in every block)
  uint64_t threads_in_use;                  // 1 + highest thread index handed out
  uint64_t reserved[3];
};
static_assert(sizeof(Header) == 128);
static_assert(offsetof(Header, epoch) == 64);

struct DirEntry {
  char name[kNameBytes];    // NUL-terminated, NUL-padded
  uint8_t kind;             // Kind
  uint8_t sub_bucket_bits;  // histograms only
  uint8_t max_value_bits;   // histograms only
  uint8_t reserved0;
  uint32_t first_slot;  // index into every thread block
  uint32_t slot_count;  // 1 for counters and gauges; 2 + buckets for histograms
  uint32_t reserved1;
};
static_assert(sizeof(DirEntry) == 128);
inline constexpr size_t kEntryWords = sizeof(DirEntry) / sizeof(uint64_t);

// Histogram slot layout inside its [first_slot, first_slot + slot_count) range.
inline constexpr uint32_t kHistSumSlot = 0;
inline constexpr uint32_t kHistMaxSlot = 1;
inline constexpr uint32_t kHistFirstBucketSlot = 2;

// Relaxed/acquire/release word access to shared memory. The GCC builtins take a const pointer
// for loads (std::atomic_ref<const T> does not exist in C++20), which a PROT_READ mapping needs.
inline uint64_t load_relaxed(const uint64_t* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
inline uint64_t load_acquire(const uint64_t* p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
inline void store_relaxed(uint64_t* p, uint64_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
inline void store_release(uint64_t* p, uint64_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

// Copies an entry word by word with relaxed atomic accesses, so a reader racing a writer reads
// a possibly torn entry (rejected by the epoch check) but never has a data race.
void store_entry(uint64_t* dst_words, const DirEntry& entry);
DirEntry load_entry(const uint64_t* src_words);

}  // namespace layout

// Names are 1..kMaxNameLength printable ASCII characters without spaces ('!'..'~'); the
// /metrics exporter maps them to Prometheus names. kInvalidArgument otherwise. The reader
// applies the same rule to names it finds in a segment.
absl::Status validate_name(std::string_view name);

// Where things are in a region, computed from a Capacity or validated from a header. Readers
// keep their own validated copy and never re-read geometry from the (untrusted) segment.
struct Geometry {
  size_t region_bytes = 0;
  uint32_t max_entries = 0;
  uint32_t max_threads = 0;
  uint32_t slots_per_thread = 0;
  uint64_t directory_offset = 0;
  uint64_t values_offset = 0;
  uint64_t thread_stride_bytes = 0;
};

// kInvalidArgument if a field is 0 or above its limit, or there is no room for one slot past
// the reserved line.
absl::StatusOr<Geometry> geometry_for(const Capacity& capacity);

// Bytes a region for `capacity` needs (a whole number of 4 KiB pages); 0 if invalid.
size_t region_size_bytes(const Capacity& capacity);

// Writes an empty directory and zeroed thread blocks into `region` (64-byte aligned, at least
// region_size_bytes(capacity) long) and publishes the magic last.
absl::Status format_region(std::span<std::byte> region, const Capacity& capacity);

// Validates a header found in a region of `size_bytes` bytes. Errors:
//   kInvalidArgument     not a counters segment (magic), region too small or misaligned
//   kFailedPrecondition  another format version
//   kDataLoss            geometry out of bounds or inconsistent (a buggy or hostile writer)
absl::StatusOr<Geometry> read_geometry(const std::byte* data, size_t size_bytes);

}  // namespace herald::counters

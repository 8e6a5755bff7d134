// Single-producer/single-consumer ring of variable-size records inside a shared segment, so the
// control plane and a dataplane worker (two processes) can pass FlatBuffers records without
// locks or system calls on the fast path; an eventfd doorbell wakes a consumer that sleeps.
//
// Layout of a ring region (64-byte aligned, ring_region_bytes(capacity) long):
//
//   0    RingHeader line 0  magic, version, capacity, limits    written once by ring_init
//   64   RingHeader line 1  tail (bytes ever committed)         written by the producer only
//   128  RingHeader line 2  head (bytes ever released)          written by the consumer only
//   192  RingHeader line 3  consumer_waiting                    written by the consumer only
//   256  data: capacity_bytes (a power of two) of records
//
// A record is an 8-byte header word (low 32 bits: payload length; high 32 bits: type) followed
// by the payload padded to 8 bytes. A record is never split: when it does not fit before the
// end of the data area, the producer writes a wrap marker (type kRingWrapType, length = the
// bytes left to the end minus its header) and the record starts again at offset 0.
//
// head and tail are 64-bit byte positions that only grow (offset = position & (capacity - 1));
// at 100 GB/s they wrap after ~5 years, so no ABA handling. Each side keeps its own position in
// private memory and only publishes it, so what the peer scribbles on our line cannot move us.
// Whatever is read from the peer's lines and the data area is validated before use: a corrupt
// or hostile peer yields RingStatus::kCorrupt and a counter, never an out-of-bounds access.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/assert/assert.h"

namespace herald::shm {

inline constexpr uint64_t kRingMagic = 0x31474e4952444c48;  // "HLDRING1" little-endian
inline constexpr uint32_t kRingVersion = 1;
inline constexpr size_t kRingCacheLineBytes = 64;
inline constexpr size_t kRingRecordHeaderBytes = 8;
inline constexpr size_t kRingRecordAlignBytes = 8;
inline constexpr uint64_t kRingMinCapacityBytes = 128;
inline constexpr uint64_t kRingMaxCapacityBytes = uint64_t{1} << 30;
// The record type reserved for the wrap marker; producers may use every other value.
inline constexpr uint32_t kRingWrapType = 0xffffffff;

// The shared header. Plain integers, accessed through std::atomic_ref: the same bytes are
// mapped by two processes, so there is no C++ object to construct in both. Each writer has its
// own 64-byte line. Intel's adjacent-line prefetcher fetches 128-byte aligned pairs of lines
// (0+1, 2+3): the order below pairs the producer's line with the read-only one and the
// consumer's two lines with each other, so even that prefetcher causes no false sharing.
struct RingHeader {
  alignas(kRingCacheLineBytes) uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;  // sizeof(RingHeader) of the creator
  uint64_t capacity_bytes;
  uint32_t max_payload_bytes;
  uint32_t reserved0;
  alignas(kRingCacheLineBytes) uint64_t tail;
  alignas(kRingCacheLineBytes) uint64_t head;
  alignas(kRingCacheLineBytes) uint32_t consumer_waiting;
};
static_assert(sizeof(RingHeader) == 4 * kRingCacheLineBytes);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free &&
                  std::atomic_ref<uint32_t>::is_always_lock_free,
              "cross-process atomics must be lock-free (address-free)");

struct RingConfig {
  uint64_t capacity_bytes = 0;     // a power of two in [kRingMinCapacityBytes, kRingMax...]
  uint32_t max_payload_bytes = 0;  // 0 = the largest allowed: capacity / 2 - record header
};

// Bytes a ring region needs: header + data area. A multiple of 64.
constexpr size_t ring_region_bytes(uint64_t capacity_bytes) {
  return sizeof(RingHeader) + capacity_bytes;
}
// The largest payload a ring of this capacity accepts. A record (header + padded payload) is at
// most half the capacity, which guarantees that an empty ring always has room for any record
// wherever the wrap point falls (worst case: wrap marker + record <= capacity), so a large record
// can never wedge the ring.
constexpr uint32_t ring_max_payload_bytes(uint64_t capacity_bytes) {
  return static_cast<uint32_t>(capacity_bytes / 2 - kRingRecordHeaderBytes);
}

// Lays out a new ring in `region` (the creator, before it hands the segment to the peer; never
// on a ring that a peer already uses). The magic is stored last, with release order, so a peer
// that sees it sees the rest.
absl::Status ring_init(std::span<std::byte> region, const RingConfig& config);

enum class RingStatus : uint8_t {
  kOk,
  kFull,      // normal: no room now; retry after the consumer releases. Nothing was written.
  kEmpty,     // normal: nothing to read.
  kTooLarge,  // the record exceeds max_payload_bytes (a limit, not a transient condition).
  kInvalid,   // caller error: the reserved wrap type.
  kCorrupt,   // the shared state is inconsistent; the ring is unusable until re-created.
};
const char* ring_status_name(RingStatus status);

// Why a ring was declared corrupt: one counter per reason (VPP's error-table style).
#define HERALD_RING_FAULTS(X)                                                                 \
  X(kHeadOutOfRange, "head_out_of_range", "consumer's head moved backwards or past tail")     \
  X(kTailOutOfRange, "tail_out_of_range", "producer's tail moved backwards or over capacity") \
  X(kLengthTooLarge, "length_too_large", "record length exceeds max_payload_bytes")           \
  X(kRecordPastEnd, "record_past_end", "record would cross the end of the data area")         \
  X(kRecordPastTail, "record_past_tail", "record extends beyond the published tail")          \
  X(kBadWrapMarker, "bad_wrap_marker", "wrap marker length does not reach the end")

enum class RingFault : uint8_t {
#define HERALD_RING_FAULT_ENUM(name, text, doc) name,
  HERALD_RING_FAULTS(HERALD_RING_FAULT_ENUM)
#undef HERALD_RING_FAULT_ENUM
      kCount
};
const char* ring_fault_name(RingFault fault);
inline constexpr size_t kRingFaultCount = static_cast<size_t>(RingFault::kCount);

struct RingProducerStats {
  uint64_t records = 0;  // committed
  uint64_t commits = 0;  // tail publications (one per batch)
  uint64_t full = 0;     // reserve() found no room
  uint64_t too_large = 0;
  uint64_t doorbell_rings = 0;  // eventfd writes: the only system call a producer makes
  uint64_t doorbell_errors = 0;
  uint64_t faults[kRingFaultCount] = {};
};

struct RingConsumerStats {
  uint64_t records = 0;   // returned by read_batch
  uint64_t releases = 0;  // head publications (one per batch)
  uint64_t sleeps = 0;    // wait() calls that blocked in poll()
  uint64_t wakeups = 0;   // of those, woken by the doorbell
  uint64_t timeouts = 0;
  uint64_t faults[kRingFaultCount] = {};
};

struct Reservation {
  RingStatus status = RingStatus::kFull;
  std::span<std::byte> payload;  // write the record here, then commit()
};

struct OutRecord {
  uint32_t type = 0;
  std::span<const std::byte> payload;
};

struct RecordView {
  uint32_t type = 0;
  std::span<const std::byte> payload;  // points into the ring: valid until release()
};

struct ReadResult {
  size_t count = 0;  // records written to the output span (valid even when status is kCorrupt)
  RingStatus status = RingStatus::kEmpty;  // kOk if count > 0, kEmpty, or kCorrupt
};

enum class WaitResult : uint8_t {
  kReady,     // the ring has records
  kTimeout,   // nothing arrived within the timeout
  kWoken,     // woken (doorbell, signal) but the ring is still empty: call wait() again
  kPeerGone,  // the watched peer descriptor hung up and the ring is empty
  kError,     // poll() failed (bad descriptor)
};

namespace ring_detail {
constexpr uint64_t align_up(uint64_t n) {
  return (n + kRingRecordAlignBytes - 1) & ~uint64_t{kRingRecordAlignBytes - 1};
}
constexpr uint64_t record_word(uint32_t length_bytes, uint32_t type) {
  return uint64_t{length_bytes} | (uint64_t{type} << 32);
}
inline uint64_t load_acquire(const uint64_t& v) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(v)).load(std::memory_order_acquire);
}
inline void store_release(uint64_t& v, uint64_t x) {
  std::atomic_ref<uint64_t>(v).store(x, std::memory_order_release);
}
// Validated header fields, copied into the process so the peer cannot change them later.
struct Geometry {
  RingHeader* header = nullptr;
  std::byte* data = nullptr;
  uint64_t capacity_bytes = 0;
  uint64_t mask = 0;
  uint32_t max_payload_bytes = 0;
};
absl::StatusOr<Geometry> attach_geometry(std::span<std::byte> region, const RingConfig& expected);
}  // namespace ring_detail

// The producing side. One per ring, in one thread of one process. Not thread-safe.
class RingProducer {
 public:
  // Attaches to a ring that ring_init laid out. `expected` fields that are non-zero must match
  // the header (a peer built with a different layout fails here with a clear message). Resumes
  // at the published tail, so a restarted producer continues where the old one committed.
  static absl::StatusOr<RingProducer> attach(std::span<std::byte> region,
                                             const RingConfig& expected = {});

  // The eventfd to ring when the consumer sleeps (not owned; -1: the consumer only polls and
  // commit() skips the sleeping check and its fence).
  void set_doorbell(int eventfd) { doorbell_fd_ = eventfd; }

  // Reserves room for one record of payload_bytes and writes its header; the caller fills the
  // payload. Nothing is visible to the consumer until commit(). Reservations accumulate: a
  // batch is reserve() x N, then one commit().
  [[nodiscard]] Reservation reserve(uint32_t type, size_t payload_bytes) {
    if (broken_) [[unlikely]]
      return {RingStatus::kCorrupt, {}};
    if (payload_bytes > g_.max_payload_bytes) [[unlikely]] {
      ++stats_.too_large;
      return {RingStatus::kTooLarge, {}};
    }
    if (type == kRingWrapType) [[unlikely]]
      return {RingStatus::kInvalid, {}};
    const uint64_t need = kRingRecordHeaderBytes + ring_detail::align_up(payload_bytes);
    uint64_t offset = tail_ & g_.mask;
    const uint64_t to_end = g_.capacity_bytes - offset;
    const uint64_t total = need <= to_end ? need : to_end + need;
    if (tail_ + total - head_cache_ > g_.capacity_bytes) {
      // Only now look at the consumer's line: while there is known room the producer never
      // touches it, which keeps that cache line in the consumer's core.
      if (!refresh_head()) [[unlikely]]
        return {RingStatus::kCorrupt, {}};
      if (tail_ + total - head_cache_ > g_.capacity_bytes) {
        ++stats_.full;
        return {RingStatus::kFull, {}};
      }
    }
    if (total != need) {
      write_word(offset,
                 ring_detail::record_word(static_cast<uint32_t>(to_end - kRingRecordHeaderBytes),
                                          kRingWrapType));
      tail_ += to_end;
      offset = 0;
    }
    write_word(offset, ring_detail::record_word(static_cast<uint32_t>(payload_bytes), type));
    tail_ += need;
    ++pending_records_;
    return {RingStatus::kOk, {g_.data + offset + kRingRecordHeaderBytes, payload_bytes}};
  }

  // Publishes every record reserved since the last commit with one release store, then rings
  // the doorbell if (and only if) the consumer said it is going to sleep. Returns the number of
  // records published.
  //
  // Lost-wakeup freedom (Dekker's pattern): the producer does  store tail; fence(seq_cst);
  // load waiting  and the consumer does  store waiting=1; fence(seq_cst); load tail. The two
  // seq_cst fences are ordered one before the other, so at least one side sees the other's
  // store: either the consumer sees the new tail and does not sleep, or the producer sees
  // waiting=1 and rings. Without the fences both loads could be satisfied before the stores
  // drain from the store buffers (x86 allows store->load reordering) and both miss.
  [[nodiscard]] size_t commit() {
    if (tail_ == published_tail_) return 0;
    ring_detail::store_release(g_.header->tail, tail_);
    published_tail_ = tail_;
    const size_t n = pending_records_;
    pending_records_ = 0;
    stats_.records += n;
    ++stats_.commits;
    if (doorbell_fd_ >= 0) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (std::atomic_ref<uint32_t>(g_.header->consumer_waiting).load(std::memory_order_relaxed))
        ring_doorbell();
    }
    return n;
  }

  // reserve + copy + commit for one record.
  [[nodiscard]] RingStatus try_enqueue(uint32_t type, std::span<const std::byte> payload) {
    const Reservation r = reserve(type, payload.size());
    if (r.status != RingStatus::kOk) return r.status;
    if (!payload.empty()) std::memcpy(r.payload.data(), payload.data(), payload.size());
    (void)commit();
    return RingStatus::kOk;
  }

  // Enqueues records in order until one does not fit, then publishes them all at once.
  // Returns how many were enqueued (0 when the ring is full); *status (optional) says why the
  // batch stopped early (kOk when all went in).
  [[nodiscard]] size_t enqueue_batch(std::span<const OutRecord> records,
                                     RingStatus* status = nullptr) {
    size_t n = 0;
    RingStatus last = RingStatus::kOk;
    for (const OutRecord& rec : records) {
      const Reservation r = reserve(rec.type, rec.payload.size());
      if (r.status != RingStatus::kOk) {
        last = r.status;
        break;
      }
      if (!rec.payload.empty())
        std::memcpy(r.payload.data(), rec.payload.data(), rec.payload.size());
      ++n;
    }
    (void)commit();
    if (status != nullptr) *status = last;
    return n;
  }

  // Bytes free as of the last look at the consumer's head (a lower bound).
  uint64_t free_bytes_hint() const { return g_.capacity_bytes - (tail_ - head_cache_); }
  uint64_t capacity_bytes() const { return g_.capacity_bytes; }
  uint32_t max_payload_bytes() const { return g_.max_payload_bytes; }
  bool broken() const { return broken_; }
  const RingProducerStats& stats() const { return stats_; }

 private:
  explicit RingProducer(const ring_detail::Geometry& g, uint64_t tail, uint64_t head)
      : g_(g), tail_(tail), published_tail_(tail), head_cache_(head) {}

  void write_word(uint64_t offset, uint64_t word) {
    std::memcpy(g_.data + offset, &word, sizeof(word));
  }
  // Re-reads the consumer's head and checks it: it may only grow, and never past what we
  // published. False (and the ring marked broken) if the consumer wrote nonsense.
  bool refresh_head() {
    const uint64_t head = ring_detail::load_acquire(g_.header->head);
    if (head < head_cache_ || head > published_tail_ || (head % kRingRecordAlignBytes) != 0)
        [[unlikely]] {
      fault(RingFault::kHeadOutOfRange);
      return false;
    }
    head_cache_ = head;
    return true;
  }
  void ring_doorbell();
  void fault(RingFault reason);

  ring_detail::Geometry g_;
  uint64_t tail_;            // next write position (includes reserved, unpublished records)
  uint64_t published_tail_;  // last value stored to the header
  uint64_t head_cache_;      // consumer's head as last read
  size_t pending_records_ = 0;
  int doorbell_fd_ = -1;
  bool broken_ = false;
  RingProducerStats stats_;
};

// The consuming side. One per ring, in one thread of one process. Not thread-safe.
class RingConsumer {
 public:
  // Attaches to a ring that ring_init laid out (see RingProducer::attach). Resumes at the
  // published head: records read but not released by a previous consumer are delivered again.
  static absl::StatusOr<RingConsumer> attach(std::span<std::byte> region,
                                             const RingConfig& expected = {});

  // Reads up to out.size() records without copying; they stay in the ring (and the views stay
  // valid) until release(). Looks at the producer's tail at most once per call. Every length
  // and marker is checked against the ring geometry and the published tail before use.
  [[nodiscard]] ReadResult read_batch(std::span<RecordView> out) {
    if (broken_) [[unlikely]]
      return {0, RingStatus::kCorrupt};
    size_t n = 0;
    bool refreshed = false;
    while (n < out.size()) {
      if (pos_ == tail_cache_) {
        if (refreshed) break;
        refreshed = true;
        if (!refresh_tail()) [[unlikely]]
          return finish(n, RingStatus::kCorrupt);
        if (pos_ == tail_cache_) break;
      }
      const uint64_t offset = pos_ & g_.mask;
      const uint64_t to_end = g_.capacity_bytes - offset;
      const uint64_t available = tail_cache_ - pos_;
      // One load of the header word: the length we check is the length we use.
      const uint64_t word =
          std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(g_.data + offset))
              .load(std::memory_order_relaxed);
      const auto length = static_cast<uint32_t>(word);
      const auto type = static_cast<uint32_t>(word >> 32);
      if (type == kRingWrapType) {
        if (offset == 0 || length != to_end - kRingRecordHeaderBytes || to_end > available)
            [[unlikely]] {
          fault(RingFault::kBadWrapMarker);
          return finish(n, RingStatus::kCorrupt);
        }
        pos_ += to_end;
        continue;
      }
      if (length > g_.max_payload_bytes) [[unlikely]] {
        fault(RingFault::kLengthTooLarge);
        return finish(n, RingStatus::kCorrupt);
      }
      const uint64_t need = kRingRecordHeaderBytes + ring_detail::align_up(length);
      if (need > to_end) [[unlikely]] {
        fault(RingFault::kRecordPastEnd);
        return finish(n, RingStatus::kCorrupt);
      }
      if (need > available) [[unlikely]] {
        fault(RingFault::kRecordPastTail);
        return finish(n, RingStatus::kCorrupt);
      }
      out[n++] = {type, {g_.data + offset + kRingRecordHeaderBytes, length}};
      pos_ += need;
    }
    return finish(n, n > 0 ? RingStatus::kOk : RingStatus::kEmpty);
  }

  // Gives every record read so far back to the producer with one release store.
  void release() {
    if (pos_ == head_) return;
    ring_detail::store_release(g_.header->head, pos_);
    head_ = pos_;
    ++stats_.releases;
  }

  // Whether the producer has published records not yet read (one acquire load).
  [[nodiscard]] bool has_data() const { return ring_detail::load_acquire(g_.header->tail) != pos_; }

  // Sleeps until the producer rings `doorbell_fd`, `timeout_ms` passes (-1: no limit), or
  // `hangup_fd` (optional: a socket to the producer's process) reports a hang-up. Releases
  // everything read first (a sleeping consumer holds no space). Announces the sleep in the
  // header and re-checks the ring after a seq_cst fence (see RingProducer::commit), so a record
  // committed concurrently is never missed. A system call, so not for the busy-poll path: poll
  // with has_data()/read_batch() and call wait() when idle.
  [[nodiscard]] WaitResult wait(int doorbell_fd, int timeout_ms, int hangup_fd = -1);

  uint64_t capacity_bytes() const { return g_.capacity_bytes; }
  uint32_t max_payload_bytes() const { return g_.max_payload_bytes; }
  bool broken() const { return broken_; }
  const RingConsumerStats& stats() const { return stats_; }

 private:
  explicit RingConsumer(const ring_detail::Geometry& g, uint64_t head, uint64_t tail)
      : g_(g), head_(head), pos_(head), tail_cache_(tail) {}

  // Re-reads the producer's tail and checks it: it may only grow, stays 8-aligned, and never
  // gets more than a capacity ahead of our head.
  bool refresh_tail() {
    const uint64_t tail = ring_detail::load_acquire(g_.header->tail);
    if (tail < tail_cache_ || tail - head_ > g_.capacity_bytes ||
        (tail % kRingRecordAlignBytes) != 0) [[unlikely]] {
      fault(RingFault::kTailOutOfRange);
      return false;
    }
    tail_cache_ = tail;
    return true;
  }
  ReadResult finish(size_t n, RingStatus status) {
    stats_.records += n;
    return {n, status};
  }
  void fault(RingFault reason);

  ring_detail::Geometry g_;
  uint64_t head_;        // last released position (what the header says)
  uint64_t pos_;         // next read position (head_ + records read, not released)
  uint64_t tail_cache_;  // producer's tail as last read and validated
  bool broken_ = false;
  RingConsumerStats stats_;
};

}  // namespace herald::shm

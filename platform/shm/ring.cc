// SPSC ring: layout/initialisation, attach-time validation, and the cold paths (doorbell
// system calls, fault accounting, the consumer's sleep protocol). The fast path is in ring.h.
#include "platform/shm/ring.h"

#include <poll.h>

#include <bit>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "platform/log/log.h"
#include "platform/shm/doorbell.h"

namespace herald::shm {

const char* ring_status_name(RingStatus status) {
  switch (status) {
    case RingStatus::kOk: return "ok";
    case RingStatus::kFull: return "full";
    case RingStatus::kEmpty: return "empty";
    case RingStatus::kTooLarge: return "too_large";
    case RingStatus::kInvalid: return "invalid";
    case RingStatus::kCorrupt: return "corrupt";
  }
  return "unknown";
}

const char* ring_fault_name(RingFault fault) {
  switch (fault) {
#define HERALD_RING_FAULT_NAME(name, text, doc) \
  case RingFault::name: return text;
    HERALD_RING_FAULTS(HERALD_RING_FAULT_NAME)
#undef HERALD_RING_FAULT_NAME
    case RingFault::kCount: break;
  }
  return "unknown";
}

namespace {

absl::Status check_config(uint64_t capacity_bytes, uint32_t max_payload_bytes) {
  if (!std::has_single_bit(capacity_bytes) || capacity_bytes < kRingMinCapacityBytes ||
      capacity_bytes > kRingMaxCapacityBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm ring: capacity ", capacity_bytes, " bytes is not a power of two in [",
                     kRingMinCapacityBytes, ", ", kRingMaxCapacityBytes, "]"));
  }
  if (max_payload_bytes == 0 || max_payload_bytes > ring_max_payload_bytes(capacity_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm ring: max_payload_bytes ", max_payload_bytes, " must be in [1, ",
                     ring_max_payload_bytes(capacity_bytes), "] for capacity ", capacity_bytes));
  }
  return absl::OkStatus();
}

absl::Status check_region(std::span<std::byte> region) {
  if (region.data() == nullptr ||
      reinterpret_cast<uintptr_t>(region.data()) % kRingCacheLineBytes != 0) {
    return absl::InvalidArgumentError("shm ring: region must be 64-byte aligned");
  }
  if (region.size() < ring_region_bytes(kRingMinCapacityBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm ring: region of ", region.size(), " bytes is too small"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ring_init(std::span<std::byte> region, const RingConfig& config) {
  if (auto s = check_region(region); !s.ok()) return s;
  const uint32_t max_payload = config.max_payload_bytes != 0
                                   ? config.max_payload_bytes
                                   : (std::has_single_bit(config.capacity_bytes) &&
                                              config.capacity_bytes >= kRingMinCapacityBytes
                                          ? ring_max_payload_bytes(config.capacity_bytes)
                                          : 0);
  if (auto s = check_config(config.capacity_bytes, max_payload); !s.ok()) return s;
  if (region.size() < ring_region_bytes(config.capacity_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm ring: region of ", region.size(), " bytes cannot hold a ring of ",
        config.capacity_bytes, " bytes (needs ", ring_region_bytes(config.capacity_bytes), ")"));
  }
  auto* h = reinterpret_cast<RingHeader*>(region.data());
  // Clear the magic first: a peer attaching mid-init must not see a half-written header as
  // valid.
  std::atomic_ref<uint64_t>(h->magic).store(0, std::memory_order_relaxed);
  h->version = kRingVersion;
  h->header_bytes = sizeof(RingHeader);
  h->capacity_bytes = config.capacity_bytes;
  h->max_payload_bytes = max_payload;
  h->reserved0 = 0;
  std::atomic_ref<uint64_t>(h->tail).store(0, std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(h->head).store(0, std::memory_order_relaxed);
  std::atomic_ref<uint32_t>(h->consumer_waiting).store(0, std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(h->magic).store(kRingMagic, std::memory_order_release);
  return absl::OkStatus();
}

namespace ring_detail {

absl::StatusOr<Geometry> attach_geometry(std::span<std::byte> region, const RingConfig& expected) {
  if (auto s = check_region(region); !s.ok()) return s;
  auto* h = reinterpret_cast<RingHeader*>(region.data());
  const uint64_t magic = std::atomic_ref<uint64_t>(h->magic).load(std::memory_order_acquire);
  if (magic != kRingMagic) {
    return absl::FailedPreconditionError(absl::StrCat("shm ring: bad magic 0x", absl::Hex(magic),
                                                      " (expected 0x", absl::Hex(kRingMagic),
                                                      "): not a ring, or not initialised yet"));
  }
  // Copy the immutable fields once; everything later uses these copies.
  const uint32_t version = h->version;
  const uint32_t header_bytes = h->header_bytes;
  const uint64_t capacity = h->capacity_bytes;
  const uint32_t max_payload = h->max_payload_bytes;
  if (version != kRingVersion || header_bytes != sizeof(RingHeader)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shm ring: layout version ", version, " with a ", header_bytes,
        "-byte header; this build speaks version ", kRingVersion, " with ", sizeof(RingHeader)));
  }
  if (auto s = check_config(capacity, max_payload); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("shm ring: header: ", s.message()));
  }
  if (expected.capacity_bytes != 0 && expected.capacity_bytes != capacity) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shm ring: capacity is ", capacity, " bytes, this side expects ", expected.capacity_bytes));
  }
  if (expected.max_payload_bytes != 0 && expected.max_payload_bytes != max_payload) {
    return absl::FailedPreconditionError(absl::StrCat("shm ring: max_payload_bytes is ",
                                                      max_payload, ", this side expects ",
                                                      expected.max_payload_bytes));
  }
  if (region.size() < ring_region_bytes(capacity)) {
    return absl::FailedPreconditionError(absl::StrCat("shm ring: header says ", capacity,
                                                      " bytes but the region holds only ",
                                                      region.size() - sizeof(RingHeader)));
  }
  Geometry g;
  g.header = h;
  g.data = region.data() + sizeof(RingHeader);
  g.capacity_bytes = capacity;
  g.mask = capacity - 1;
  g.max_payload_bytes = max_payload;
  return g;
}

namespace {
// The indices a side resumes from, checked like any other value from the peer.
absl::Status check_indices(uint64_t head, uint64_t tail, uint64_t capacity) {
  if (tail < head || tail - head > capacity || head % kRingRecordAlignBytes != 0 ||
      tail % kRingRecordAlignBytes != 0) {
    return absl::DataLossError(absl::StrCat("shm ring: inconsistent indices head=", head,
                                            " tail=", tail, " capacity=", capacity));
  }
  return absl::OkStatus();
}
}  // namespace

}  // namespace ring_detail

absl::StatusOr<RingProducer> RingProducer::attach(std::span<std::byte> region,
                                                  const RingConfig& expected) {
  auto g = ring_detail::attach_geometry(region, expected);
  if (!g.ok()) return g.status();
  const uint64_t tail = ring_detail::load_acquire(g->header->tail);
  const uint64_t head = ring_detail::load_acquire(g->header->head);
  if (auto s = ring_detail::check_indices(head, tail, g->capacity_bytes); !s.ok()) return s;
  return RingProducer(*g, tail, head);
}

absl::StatusOr<RingConsumer> RingConsumer::attach(std::span<std::byte> region,
                                                  const RingConfig& expected) {
  auto g = ring_detail::attach_geometry(region, expected);
  if (!g.ok()) return g.status();
  const uint64_t head = ring_detail::load_acquire(g->header->head);
  const uint64_t tail = ring_detail::load_acquire(g->header->tail);
  if (auto s = ring_detail::check_indices(head, tail, g->capacity_bytes); !s.ok()) return s;
  // Any stale "sleeping" flag belongs to a consumer that is gone.
  std::atomic_ref<uint32_t>(g->header->consumer_waiting).store(0, std::memory_order_relaxed);
  // Start with tail_cache_ == head: the first read_batch() re-reads and validates the tail.
  return RingConsumer(*g, head, head);
}

void RingProducer::ring_doorbell() {
  if (Doorbell::ring_eventfd(doorbell_fd_)) {
    ++stats_.doorbell_rings;
  } else {
    ++stats_.doorbell_errors;
    HLOG_RATE_LIMITED(kWarn, "shm.ring.doorbell_failed", 1).kv("errno", errno);
  }
}

void RingProducer::fault(RingFault reason) {
  broken_ = true;
  ++stats_.faults[static_cast<size_t>(reason)];
  HLOG_RATE_LIMITED(kError, "shm.ring.corrupt", 1)
      .kv("side", "producer")
      .kv("reason", ring_fault_name(reason))
      .kv("tail", tail_)
      .kv("head_cache", head_cache_);
}

void RingConsumer::fault(RingFault reason) {
  broken_ = true;
  ++stats_.faults[static_cast<size_t>(reason)];
  HLOG_RATE_LIMITED(kError, "shm.ring.corrupt", 1)
      .kv("side", "consumer")
      .kv("reason", ring_fault_name(reason))
      .kv("pos", pos_)
      .kv("tail_cache", tail_cache_);
}

WaitResult RingConsumer::wait(int doorbell_fd, int timeout_ms, int hangup_fd) {
  release();
  if (has_data()) return WaitResult::kReady;
  auto waiting = std::atomic_ref<uint32_t>(g_.header->consumer_waiting);
  waiting.store(1, std::memory_order_relaxed);
  // Pairs with the fence in RingProducer::commit() (Dekker): after it, either we see the
  // producer's new tail below, or the producer sees waiting == 1 and rings the doorbell.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (has_data()) {
    waiting.store(0, std::memory_order_relaxed);
    return WaitResult::kReady;
  }
  ++stats_.sleeps;
  struct pollfd fds[2] = {{doorbell_fd, POLLIN, 0}, {hangup_fd, POLLRDHUP, 0}};
  int n;
  do {
    n = ::poll(fds, hangup_fd >= 0 ? 2 : 1, timeout_ms);
  } while (n < 0 && errno == EINTR && timeout_ms < 0);
  // A stale 1 only costs the producer one needless ring; clearing it late is harmless.
  waiting.store(0, std::memory_order_relaxed);
  if (n < 0) return errno == EINTR ? WaitResult::kWoken : WaitResult::kError;
  if (fds[0].revents & POLLIN) {
    (void)Doorbell::drain_eventfd(doorbell_fd);
    ++stats_.wakeups;
  }
  if (fds[0].revents & (POLLERR | POLLNVAL)) return WaitResult::kError;
  // Records first: whatever the producer committed before it died is still worth delivering.
  if (has_data()) return WaitResult::kReady;
  if (hangup_fd >= 0 && (fds[1].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) != 0) {
    return WaitResult::kPeerGone;
  }
  if (n == 0) {
    ++stats_.timeouts;
    return WaitResult::kTimeout;
  }
  return WaitResult::kWoken;
}

}  // namespace herald::shm

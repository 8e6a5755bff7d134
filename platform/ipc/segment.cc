// The IPC segment: layout computation, creation (every ring initialised) and attach-time
// validation of a segment that came from another process.
#include "platform/ipc/segment.h"

#include <sys/random.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::ipc {
namespace {

constexpr uint64_t align_up(uint64_t n, uint64_t align) {
  return (n + align - 1) / align * align;
}

IpcSegmentHeader* header_of(const shm::Segment& segment) {
  return reinterpret_cast<IpcSegmentHeader*>(segment.data());
}

}  // namespace

uint64_t random_u64() {
  uint64_t value = 0;
  size_t got = 0;
  while (got < sizeof(value)) {
    const ssize_t n = ::getrandom(reinterpret_cast<char*>(&value) + got, sizeof(value) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    HERALD_CHECK(n > 0, "getrandom failed");
    got += static_cast<size_t>(n);
  }
  // Zero means "unknown" in Hello and the segment header.
  return value == 0 ? 1 : value;
}

absl::StatusOr<IpcLayout> compute_layout(uint16_t workers, uint64_t ring_capacity_bytes) {
  if (workers == 0 || workers > kIpcMaxWorkers) {
    return absl::InvalidArgumentError(
        absl::StrCat("ipc: workers = ", workers, " is not in [1, ", kIpcMaxWorkers, "]"));
  }
  if (!std::has_single_bit(ring_capacity_bytes) ||
      ring_capacity_bytes < shm::kRingMinCapacityBytes ||
      ring_capacity_bytes > shm::kRingMaxCapacityBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ipc: ring capacity ", ring_capacity_bytes, " bytes is not a power of two in [",
        shm::kRingMinCapacityBytes, ", ", shm::kRingMaxCapacityBytes, "]"));
  }
  IpcLayout layout;
  layout.workers = workers;
  layout.ring_capacity_bytes = ring_capacity_bytes;
  layout.ring_stride_bytes =
      align_up(shm::ring_region_bytes(ring_capacity_bytes), kIpcRingAlignBytes);
  layout.rings_offset_bytes = kIpcRingsOffsetBytes;
  layout.min_segment_bytes =
      layout.rings_offset_bytes + uint64_t{2} * workers * layout.ring_stride_bytes;
  return layout;
}

absl::StatusOr<IpcSegment> IpcSegment::create(uint16_t workers, uint64_t ring_capacity_bytes,
                                              uint32_t max_payload_bytes) {
  auto layout = compute_layout(workers, ring_capacity_bytes);
  if (!layout.ok()) return layout.status();
  const uint32_t max_payload =
      max_payload_bytes != 0 ? max_payload_bytes : shm::ring_max_payload_bytes(ring_capacity_bytes);
  auto segment = shm::Segment::create("herald-ipc", layout->min_segment_bytes);
  if (!segment.ok()) return segment.status();
  IpcSegment ipc(std::move(*segment), *layout, max_payload, random_u64());
  for (uint16_t w = 0; w < workers; ++w) {
    for (Direction d : {Direction::kDpToCp, Direction::kCpToDp}) {
      if (absl::Status s =
              shm::ring_init(ipc.ring_region(w, d), {ring_capacity_bytes, max_payload});
          !s.ok()) {
        return s;
      }
    }
  }
  IpcSegmentHeader* h = header_of(ipc.segment_);
  h->layout_version = kIpcLayoutVersion;
  h->header_bytes = sizeof(IpcSegmentHeader);
  h->generation = ipc.generation_;
  h->segment_bytes = ipc.segment_.size();
  h->ring_capacity_bytes = ring_capacity_bytes;
  h->ring_stride_bytes = layout->ring_stride_bytes;
  h->rings_offset_bytes = layout->rings_offset_bytes;
  h->workers = workers;
  h->reserved0 = 0;
  h->max_payload_bytes = max_payload;
  // Magic last, with release order: a reader that sees it sees a complete header (ring.h does
  // the same for each ring).
  std::atomic_ref<uint64_t>(h->magic).store(kIpcSegmentMagic, std::memory_order_release);
  HLOG_INFO("ipc.segment_created")
      .kv("workers", workers)
      .kv("ring_bytes", ring_capacity_bytes)
      .kv("segment_bytes", ipc.segment_.size())
      .kv("generation", ipc.generation_);
  return ipc;
}

absl::StatusOr<IpcSegment> IpcSegment::attach(shm::UniqueFd fd, const Expected& expected) {
  auto segment = shm::Segment::attach(std::move(fd));
  if (!segment.ok()) return segment.status();
  if (segment->size() < kIpcRingsOffsetBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("ipc: segment of ", segment->size(), " bytes is too small for the header"));
  }
  // Copy the header once; only the copy is used, so the peer cannot change it under us.
  IpcSegmentHeader h;
  auto* shared = header_of(*segment);
  const uint64_t magic = std::atomic_ref<uint64_t>(shared->magic).load(std::memory_order_acquire);
  std::memcpy(&h, shared, sizeof(h));
  if (magic != kIpcSegmentMagic) {
    return absl::FailedPreconditionError(absl::StrCat("ipc: segment magic 0x", absl::Hex(magic),
                                                      " is not 0x", absl::Hex(kIpcSegmentMagic),
                                                      ": not an IPC segment"));
  }
  if (h.layout_version != kIpcLayoutVersion || h.header_bytes != sizeof(IpcSegmentHeader)) {
    return absl::FailedPreconditionError(
        absl::StrCat("ipc: segment layout version ", h.layout_version, " with a ", h.header_bytes,
                     "-byte header; this build speaks version ", kIpcLayoutVersion, " with ",
                     sizeof(IpcSegmentHeader)));
  }
  auto layout = compute_layout(h.workers, h.ring_capacity_bytes);
  if (!layout.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ipc: segment header: ", layout.status().message()));
  }
  if (h.ring_stride_bytes != layout->ring_stride_bytes ||
      h.rings_offset_bytes != layout->rings_offset_bytes || h.segment_bytes != segment->size() ||
      segment->size() < layout->min_segment_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("ipc: segment geometry (stride ", h.ring_stride_bytes, ", rings at ",
                     h.rings_offset_bytes, ", ", h.segment_bytes, " bytes, mapped ",
                     segment->size(), ") differs from this build's layout for ", h.workers,
                     " workers of ", h.ring_capacity_bytes, "-byte rings (stride ",
                     layout->ring_stride_bytes, ", needs ", layout->min_segment_bytes, " bytes)"));
  }
  if (h.max_payload_bytes == 0 ||
      h.max_payload_bytes > shm::ring_max_payload_bytes(h.ring_capacity_bytes)) {
    return absl::FailedPreconditionError(
        absl::StrCat("ipc: segment max_payload_bytes ", h.max_payload_bytes, " is out of range"));
  }
  if (expected.workers != 0 && expected.workers != h.workers) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ipc: segment is laid out for ", h.workers, " workers, this side runs ", expected.workers));
  }
  if (expected.ring_capacity_bytes != 0 && expected.ring_capacity_bytes != h.ring_capacity_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("ipc: segment rings hold ", h.ring_capacity_bytes,
                     " bytes, this side expects ", expected.ring_capacity_bytes));
  }
  IpcSegment ipc(std::move(*segment), *layout, h.max_payload_bytes, h.generation);
  // Every ring header must match the segment header; checked without attaching a side (which
  // would touch the consumer's sleeping flag).
  const shm::RingConfig ring_config{h.ring_capacity_bytes, h.max_payload_bytes};
  for (uint16_t w = 0; w < h.workers; ++w) {
    for (Direction d : {Direction::kDpToCp, Direction::kCpToDp}) {
      auto g = shm::ring_detail::attach_geometry(ipc.ring_region(w, d), ring_config);
      if (!g.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("ipc: worker ", w, d == Direction::kDpToCp ? " dp_to_cp" : " cp_to_dp",
                         " ring: ", g.status().message()));
      }
    }
  }
  return ipc;
}

std::span<std::byte> IpcSegment::ring_region(uint16_t worker, Direction direction) const {
  HERALD_CHECK(worker < layout_.workers, "ipc: worker index out of range");
  const uint64_t index = uint64_t{2} * worker + static_cast<uint64_t>(direction);
  const uint64_t offset = layout_.rings_offset_bytes + index * layout_.ring_stride_bytes;
  return {segment_.data() + offset, shm::ring_region_bytes(layout_.ring_capacity_bytes)};
}

absl::StatusOr<shm::RingProducer> IpcSegment::producer(uint16_t worker, Direction direction) const {
  return shm::RingProducer::attach(ring_region(worker, direction),
                                   {layout_.ring_capacity_bytes, max_payload_bytes_});
}

absl::StatusOr<shm::RingConsumer> IpcSegment::consumer(uint16_t worker, Direction direction) const {
  return shm::RingConsumer::attach(ring_region(worker, direction),
                                   {layout_.ring_capacity_bytes, max_payload_bytes_});
}

absl::Status IpcSegment::reinit_ring(uint16_t worker, Direction direction) {
  return shm::ring_init(ring_region(worker, direction),
                        {layout_.ring_capacity_bytes, max_payload_bytes_});
}

void set_consumer_waiting(std::span<std::byte> ring_region, bool waiting) {
  auto* h = reinterpret_cast<shm::RingHeader*>(ring_region.data());
  std::atomic_ref<uint32_t>(h->consumer_waiting).store(waiting ? 1 : 0, std::memory_order_relaxed);
}

bool announce_sleep(std::span<std::byte> ring_region, const shm::RingConsumer& consumer) {
  set_consumer_waiting(ring_region, true);
  // Pairs with the fence in RingProducer::commit() (ring.h): either we see its new tail here,
  // or it sees the flag and rings the doorbell.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return consumer.has_data();
}

}  // namespace herald::ipc

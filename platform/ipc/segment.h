// The IPC segment between herald-controlplane (creator) and herald-dataplane: one shared memfd
// holding a header and one pair of SPSC rings per dataplane worker (dp_to_cp, cp_to_dp).
//
// Layout (all offsets in the header, and all a pure function of workers + ring capacity):
//
//   0      IpcSegmentHeader (64 B): magic, layout version, generation, workers, ring geometry
//   4096   worker 0 dp_to_cp ring region (ring.h layout), stride ring_stride_bytes
//          worker 0 cp_to_dp
//          worker 1 dp_to_cp ...
//
// Rings start on a page so a future header can grow without moving them; the stride rounds
// ring_region_bytes() up to 128 B, so two rings never share an adjacent-line prefetch pair.
// Control-plane code (absl::Status); the dataplane calls attach() only at start-up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/shm/ring.h"
#include "platform/shm/segment.h"
#include "platform/shm/unique_fd.h"

namespace herald::ipc {

inline constexpr uint64_t kIpcSegmentMagic = 0x3147455343504948;  // "HIPCSEG1" little-endian
inline constexpr uint32_t kIpcLayoutVersion = 1;
// The schemas/ipc.fbs version both sides announce in Hello.
inline constexpr uint16_t kIpcVersion = 1;
// config.fbs Dataplane.workers herald_max.
inline constexpr uint16_t kIpcMaxWorkers = 128;
inline constexpr size_t kIpcRingsOffsetBytes = 4096;
inline constexpr size_t kIpcRingAlignBytes = 128;

// Shared header, written once by create() before the segment is handed over.
struct IpcSegmentHeader {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_bytes;  // sizeof(IpcSegmentHeader) of the creator
  uint64_t generation;    // random per create(): a re-created segment is a new one
  uint64_t segment_bytes;
  uint64_t ring_capacity_bytes;
  uint64_t ring_stride_bytes;
  uint64_t rings_offset_bytes;
  uint16_t workers;
  uint16_t reserved0;
  uint32_t max_payload_bytes;
};
static_assert(sizeof(IpcSegmentHeader) == 64);

enum class Direction : uint8_t {
  kDpToCp = 0,  // produced by dataplane worker i, consumed by the control plane
  kCpToDp = 1,  // produced by the control plane, consumed by dataplane worker i
};

struct IpcLayout {
  uint16_t workers = 0;
  uint64_t ring_capacity_bytes = 0;
  uint64_t ring_stride_bytes = 0;
  uint64_t rings_offset_bytes = 0;
  uint64_t min_segment_bytes = 0;  // before rounding to pages
};
// Checks workers (1..kIpcMaxWorkers) and capacity (ring.h rules) and computes the layout.
absl::StatusOr<IpcLayout> compute_layout(uint16_t workers, uint64_t ring_capacity_bytes);

// What an attaching side expects; zero fields are not checked.
struct SegmentExpectation {
  uint16_t workers = 0;
  uint64_t ring_capacity_bytes = 0;
};

class IpcSegment {
 public:
  using Expected = SegmentExpectation;

  // Control plane: a new zero-filled memfd segment with every ring initialised.
  // max_payload_bytes 0 = the largest the ring allows (ring_max_payload_bytes).
  static absl::StatusOr<IpcSegment> create(uint16_t workers, uint64_t ring_capacity_bytes,
                                           uint32_t max_payload_bytes = 0);
  // Dataplane: maps a segment received over the IPC socket and validates everything in it
  // (header, geometry, every ring header) before any ring is used. Takes ownership of fd.
  static absl::StatusOr<IpcSegment> attach(shm::UniqueFd fd, const Expected& expected = {});

  IpcSegment(IpcSegment&&) noexcept = default;
  IpcSegment& operator=(IpcSegment&&) noexcept = default;

  uint16_t workers() const { return layout_.workers; }
  uint64_t ring_capacity_bytes() const { return layout_.ring_capacity_bytes; }
  uint32_t max_payload_bytes() const { return max_payload_bytes_; }
  uint64_t generation() const { return generation_; }
  int fd() const { return segment_.fd(); }
  const shm::Segment& segment() const { return segment_; }

  // The ring region of one worker in one direction. worker < workers() (checked).
  std::span<std::byte> ring_region(uint16_t worker, Direction direction) const;
  absl::StatusOr<shm::RingProducer> producer(uint16_t worker, Direction direction) const;
  absl::StatusOr<shm::RingConsumer> consumer(uint16_t worker, Direction direction) const;

  // Lays one ring out again (empty), after it was found corrupt. Only while no peer uses it:
  // the control plane calls it between a dataplane's disconnect and the next handshake.
  absl::Status reinit_ring(uint16_t worker, Direction direction);

 private:
  IpcSegment(shm::Segment segment, const IpcLayout& layout, uint32_t max_payload_bytes,
             uint64_t generation)
      : segment_(std::move(segment)),
        layout_(layout),
        max_payload_bytes_(max_payload_bytes),
        generation_(generation) {}

  shm::Segment segment_;
  IpcLayout layout_;
  uint32_t max_payload_bytes_ = 0;
  uint64_t generation_ = 0;
};

// For a consumer that sleeps in an event loop (the control plane polls its doorbell on
// io_uring) instead of in RingConsumer::wait(): sets or clears the ring header's
// consumer_waiting flag. The Dekker protocol of ring.h still applies: after setting it, fence
// (seq_cst) and check has_data() before sleeping; announce_sleep() does exactly that and returns
// true when records arrived meanwhile (then do not sleep).
void set_consumer_waiting(std::span<std::byte> ring_region, bool waiting);
[[nodiscard]] bool announce_sleep(std::span<std::byte> ring_region,
                                  const shm::RingConsumer& consumer);

// 64 random bits from getrandom(2): segment generations and process instance ids.
uint64_t random_u64();

}  // namespace herald::ipc

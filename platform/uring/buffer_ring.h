// A provided-buffer ring (io_uring_register_buf_ring, kernel 5.19+): the kernel picks a receive
// buffer only when data arrives, so idle connections hold no buffer. Memory for up to millions
// of connections is then `count` buffers per loop, not one per connection.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "platform/uring/event_loop.h"

struct io_uring_buf_ring;

namespace herald::uring {

class BufferRing {
 public:
  // `count` is a power of two up to 32768 (the kernel's limit); buffers are `buffer_size_bytes`
  // each, in one mapping made here. Fails when the kernel lacks buffer rings.
  static absl::StatusOr<std::unique_ptr<BufferRing>> create(EventLoop& loop, uint32_t count,
                                                            uint32_t buffer_size_bytes);
  // Unregisters the ring. Receives using it must have finished (cancel them first).
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group_id() const { return group_id_; }
  uint32_t count() const { return count_; }
  uint32_t buffer_size_bytes() const { return buffer_size_bytes_; }
  uint8_t* buffer(uint16_t id) const {
    return buffers_ + static_cast<size_t>(id) * buffer_size_bytes_;
  }
  // Gives buffer `id` back to the kernel once the consumer is done with its bytes (which may
  // be later than the callback: a zero-copy echo recycles after its send completes). Receives
  // parked on ENOBUFS are re-armed at the start of the next loop iteration.
  void recycle(uint16_t id);
  // Buffers delivered to consumers and not yet recycled.
  uint32_t outstanding() const { return outstanding_; }

 private:
  friend class EventLoop;
  BufferRing(EventLoop& loop, uint16_t group_id, uint32_t count, uint32_t buffer_size_bytes,
             io_uring_buf_ring* ring, size_t ring_bytes, uint8_t* buffers, size_t buffers_bytes);
  void publish(uint16_t id);
  // The kernel handed buffer `id` to a consumer.
  void take(uint16_t id);

  EventLoop& loop_;
  const uint16_t group_id_;
  const uint32_t count_;
  const uint32_t buffer_size_bytes_;
  io_uring_buf_ring* const ring_;
  const size_t ring_bytes_;
  uint8_t* const buffers_;
  const size_t buffers_bytes_;
  uint32_t outstanding_ = 0;
  // One bit per buffer held by a consumer: a double recycle would hand one buffer to two
  // receives at once, so it is caught, not trusted.
  std::unique_ptr<uint64_t[]> held_;
  bool recycled_since_rearm_ = false;
  detail::OpList starved_;  // receives that got ENOBUFS, FIFO
};

}  // namespace herald::uring

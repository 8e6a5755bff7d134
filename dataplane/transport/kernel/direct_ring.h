// One socket shard's io_uring: a ring of its own with a sparse registered file table that
// accepted sockets live in as direct descriptors (no process fd each), a provided-buffer ring
// for receives, and an eventfd the worker's loop watches so a sleeping worker wakes for it.
//
// Why not the worker's uring::EventLoop: a registered file table is capped at RLIMIT_NOFILE
// entries per ring, so holding more connections than the rlimit takes several rings in one
// process, and the loop has no direct-descriptor operations. This is the small part of a loop
// the transport needs (SQEs, CQE reaping, the buffer ring), not a second event loop: it has no
// timers or callbacks of its own and is only ever driven from KernelTransport.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

struct io_uring;
struct io_uring_sqe;
struct io_uring_buf_ring;

namespace herald::dataplane {

struct DirectRingOptions {
  uint32_t sq_entries = 256;
  uint32_t cq_entries = 4096;
  uint32_t table_slots = 1024;   // registered file table size (<= RLIMIT_NOFILE)
  uint32_t buffer_count = 1024;  // power of two, <= 32768
  uint32_t buffer_size_bytes = 16 * 1024;
  int event_fd = -1;  // signalled when CQEs are posted (while enabled); -1: none
};

// A CQE, copied out of the CQ before it is handled (handlers may queue SQEs).
struct DirectCqe {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
};

class DirectRing {
 public:
  // Fails with a message naming what the kernel lacks: the file table (EMFILE past the
  // rlimit), buffer rings (5.19), or direct-descriptor sockets with setsockopt by uring_cmd
  // (6.7): probed by creating a socket straight into the table, setting SO_LINGER on it and
  // closing it, all through the ring.
  static absl::StatusOr<std::unique_ptr<DirectRing>> create(const DirectRingOptions& options);
  ~DirectRing();
  DirectRing(const DirectRing&) = delete;
  DirectRing& operator=(const DirectRing&) = delete;

  // An SQE to fill; never null (submits to make room when the SQ is full).
  io_uring_sqe* sqe();
  // Hands queued SQEs to the kernel (a syscall only when there are some).
  void submit();
  bool has_sqes() const;
  // The kernel holds completions for us (IORING_SQ_TASKRUN): reap() enters to run them.
  bool has_task_work() const;
  bool has_cqes() const;
  // Copies up to `max` CQEs (moving overflowed ones in first when the CQ is empty) into
  // `out` and consumes them. Returns how many.
  uint32_t reap(DirectCqe* out, uint32_t max);
  // While disabled the kernel does not signal the eventfd (the worker is busy-polling us).
  void set_eventfd_enabled(bool enabled);

  uint32_t table_slots() const { return table_slots_; }
  uint16_t buffer_group() const { return 0; }
  uint32_t buffer_size_bytes() const { return buffer_size_bytes_; }
  const uint8_t* buffer(uint16_t id) const {
    return buffers_ + static_cast<size_t>(id) * buffer_size_bytes_;
  }
  // The kernel handed buffer `id` to us (a CQE carried it).
  void take(uint16_t id);
  // Gives buffer `id` back to the kernel; true when it was held (a double recycle is refused).
  bool recycle(uint16_t id);
  // Bytes of user memory this ring maps (SQ/CQ rings, buffer ring, buffers).
  size_t mapped_bytes() const;

 private:
  DirectRing() = default;

  std::unique_ptr<io_uring> ring_;
  bool ring_ready_ = false;
  uint32_t table_slots_ = 0;
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  uint8_t* buffers_ = nullptr;
  size_t buffers_bytes_ = 0;
  uint32_t buffer_count_ = 0;
  uint32_t buffer_size_bytes_ = 0;
  std::unique_ptr<uint64_t[]> held_;  // one bit per buffer handed to the transport
};

// The kernel's setsockopt-by-uring_cmd (Linux 6.7, include/uapi/linux/io_uring.h); liburing
// 2.3's headers predate it, so the opcode and the SQE fields it reads are written by hand.
void prep_direct_setsockopt(io_uring_sqe* sqe, uint32_t file_index, int level, int optname,
                            const void* optval, uint32_t optlen);

}  // namespace herald::dataplane

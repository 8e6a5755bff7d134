// DirectRing: a shard's ring set up with a sparse file table, a provided-buffer ring and an
// eventfd, the start-up probe for direct-descriptor sockets, and SQE / CQE plumbing.
#include "dataplane/transport/kernel/direct_ring.h"

#include <errno.h>
#include <liburing.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"

namespace herald::dataplane {
namespace {

// include/uapi/linux/io_uring.h (6.7): enum { SOCKET_URING_OP_SIOCINQ, SOCKET_URING_OP_SIOCOUTQ,
// SOCKET_URING_OP_GETSOCKOPT, SOCKET_URING_OP_SETSOCKOPT }.
constexpr uint32_t kSocketUringOpSetsockopt = 3;

// Where the 6.7 SQE keeps setsockopt's arguments; liburing 2.3 names these bytes otherwise
// (addr, file_index, addr3), so the offsets are pinned here against its layout.
static_assert(offsetof(io_uring_sqe, addr) == 16, "level/optname live at byte 16");
static_assert(offsetof(io_uring_sqe, file_index) == 44, "optlen lives at byte 44");
static_assert(offsetof(io_uring_sqe, addr3) == 48, "optval lives at byte 48");

size_t round_to_pages(size_t bytes) {
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

void prep_direct_setsockopt(io_uring_sqe* sqe, uint32_t file_index, int level, int optname,
                            const void* optval, uint32_t optlen) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, static_cast<int>(file_index), nullptr, 0, 0);
  sqe->cmd_op = kSocketUringOpSetsockopt;
  sqe->__pad1 = 0;
  const uint32_t level_optname[2] = {static_cast<uint32_t>(level), static_cast<uint32_t>(optname)};
  std::memcpy(&sqe->addr, level_optname, sizeof(level_optname));
  sqe->file_index = optlen;
  sqe->addr3 = reinterpret_cast<uint64_t>(optval);
  sqe->flags |= IOSQE_FIXED_FILE;
}

absl::StatusOr<std::unique_ptr<DirectRing>> DirectRing::create(const DirectRingOptions& options) {
  const uint32_t count = options.buffer_count;
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    return absl::InvalidArgumentError("recv_buffer_count must be a power of two up to 32768");
  }
  if (options.buffer_size_bytes == 0 || options.table_slots == 0) {
    return absl::InvalidArgumentError("recv_buffer_size_bytes and table slots must be positive");
  }
  std::unique_ptr<DirectRing> r(new DirectRing());
  r->ring_ = std::make_unique<io_uring>();
  io_uring_params params{};
  // DEFER_TASKRUN: completions are run only when we enter this ring for them, never by
  // interrupting the worker thread (a plain ring's TWA_SIGNAL, and even COOP_TASKRUN's, make a
  // blocking syscall on that thread fail with EINTR). With DEFER_TASKRUN the kernel signals the
  // registered eventfd when such work arrives, which is what wakes a worker sleeping in its own
  // loop's ring, and TASKRUN_FLAG tells a busy poller when to enter. Older kernels fall back.
  const uint32_t wanted[] = {
      IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
          IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
          IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_CQSIZE,
  };
  int rc = -EINVAL;
  for (uint32_t flags : wanted) {
    params = io_uring_params{};
    params.cq_entries = options.cq_entries;
    params.flags = flags;
    rc = io_uring_queue_init_params(options.sq_entries, r->ring_.get(), &params);
    if (rc != -EINVAL) break;
  }
  if (rc < 0) return absl::InternalError("shard io_uring_queue_init: " + errno_text(-rc));
  r->ring_ready_ = true;
  if ((params.features & IORING_FEAT_NODROP) == 0) {
    return absl::FailedPreconditionError("shard ring: the kernel lacks IORING_FEAT_NODROP");
  }

  rc = io_uring_register_files_sparse(r->ring_.get(), options.table_slots);
  if (rc < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("registering a ", options.table_slots, "-entry file table failed (",
                     errno_text(-rc), "); a table may not exceed RLIMIT_NOFILE entries"));
  }
  r->table_slots_ = options.table_slots;

  // Buffer ring entries must be page aligned for the kernel to pin them; mmap gives that.
  r->buf_ring_bytes_ = round_to_pages(count * sizeof(io_uring_buf));
  r->buffers_bytes_ = round_to_pages(static_cast<size_t>(count) * options.buffer_size_bytes);
  void* ring_mem = ::mmap(nullptr, r->buf_ring_bytes_, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* buf_mem = ::mmap(nullptr, r->buffers_bytes_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring_mem != MAP_FAILED) r->buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
  if (buf_mem != MAP_FAILED) r->buffers_ = static_cast<uint8_t*>(buf_mem);
  if (r->buf_ring_ == nullptr || r->buffers_ == nullptr) {
    return absl::ResourceExhaustedError("mmap for a shard's buffer ring failed");
  }
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(r->buf_ring_);
  reg.ring_entries = count;
  reg.bgid = r->buffer_group();
  rc = io_uring_register_buf_ring(r->ring_.get(), &reg, 0);
  if (rc < 0) {
    return absl::FailedPreconditionError("provided buffer rings need Linux 5.19 or later: " +
                                         errno_text(-rc));
  }
  r->buffer_count_ = count;
  r->buffer_size_bytes_ = options.buffer_size_bytes;
  io_uring_buf_ring_init(r->buf_ring_);
  const int mask = io_uring_buf_ring_mask(count);
  for (uint32_t i = 0; i < count; ++i) {
    io_uring_buf_ring_add(
        r->buf_ring_, r->buffers_ + static_cast<size_t>(i) * r->buffer_size_bytes_,
        r->buffer_size_bytes_, static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(r->buf_ring_, static_cast<int>(count));
  r->held_ = std::make_unique<uint64_t[]>((count + 63) / 64);

  // The probe: socket straight into the table, SO_LINGER by uring_cmd, close_direct. Nothing
  // else is on the ring yet, so the three CQEs are these.
  io_uring* ring = r->ring_.get();
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  io_uring_prep_socket_direct_alloc(sqe, AF_INET, SOCK_STREAM, 0, 0);
  sqe->user_data = 1;
  io_uring_cqe* cqe = nullptr;
  rc = io_uring_submit_and_wait(ring, 1);
  if (rc >= 0) rc = io_uring_peek_cqe(ring, &cqe);
  const int32_t index = (rc == 0 && cqe != nullptr) ? cqe->res : -EINVAL;
  if (cqe != nullptr) io_uring_cqe_seen(ring, cqe);
  if (index < 0) {
    return absl::FailedPreconditionError(
        "the kernel cannot create sockets as direct descriptors (IORING_FILE_INDEX_ALLOC, "
        "Linux 5.19+): " +
        errno_text(-index));
  }
  static const linger kProbeLinger{.l_onoff = 1, .l_linger = 0};
  sqe = io_uring_get_sqe(ring);
  prep_direct_setsockopt(sqe, static_cast<uint32_t>(index), SOL_SOCKET, SO_LINGER, &kProbeLinger,
                         sizeof(kProbeLinger));
  sqe->user_data = 2;
  sqe = io_uring_get_sqe(ring);
  io_uring_prep_close_direct(sqe, static_cast<uint32_t>(index));
  sqe->user_data = 3;
  rc = io_uring_submit_and_wait(ring, 2);
  int32_t sockopt_result = -EINVAL;
  for (int i = 0; i < 2 && rc >= 0; ++i) {
    cqe = nullptr;
    if (io_uring_wait_cqe(ring, &cqe) != 0 || cqe == nullptr) break;
    if (cqe->user_data == 2) sockopt_result = cqe->res;
    io_uring_cqe_seen(ring, cqe);
  }
  if (sockopt_result < 0) {
    return absl::FailedPreconditionError(
        "the kernel cannot setsockopt on direct descriptors (IORING_OP_URING_CMD "
        "SOCKET_URING_OP_SETSOCKOPT, Linux 6.7+): " +
        errno_text(-sockopt_result));
  }

  if (options.event_fd >= 0) {
    rc = io_uring_register_eventfd(ring, options.event_fd);
    if (rc < 0) return absl::InternalError("io_uring_register_eventfd: " + errno_text(-rc));
  }
  return r;
}

DirectRing::~DirectRing() {
  if (ring_ready_) io_uring_queue_exit(ring_.get());
  if (buf_ring_ != nullptr) ::munmap(buf_ring_, buf_ring_bytes_);
  if (buffers_ != nullptr) ::munmap(buffers_, buffers_bytes_);
}

io_uring_sqe* DirectRing::sqe() {
  io_uring* ring = ring_.get();
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe != nullptr) return sqe;
  submit();
  sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) {
    // The kernel refused the batch (EBUSY while its CQ overflow list is long): move the
    // overflow over and try once more.
    (void)io_uring_get_events(ring);
    submit();
    sqe = io_uring_get_sqe(ring);
  }
  HERALD_CHECK(sqe != nullptr, "shard ring: no SQE after submitting");
  return sqe;
}

void DirectRing::submit() {
  if (io_uring_sq_ready(ring_.get()) == 0) return;
  int rc;
  do {
    rc = io_uring_submit(ring_.get());
  } while (rc == -EINTR);
  // EBUSY / EAGAIN: the SQEs stay queued and go with the next submit.
  HERALD_CHECK(rc >= 0 || rc == -EBUSY || rc == -EAGAIN, "shard ring: io_uring_submit failed");
}

bool DirectRing::has_task_work() const {
  return (IO_URING_READ_ONCE(*ring_->sq.kflags) & IORING_SQ_TASKRUN) != 0;
}

bool DirectRing::has_sqes() const {
  return io_uring_sq_ready(ring_.get()) > 0;
}

bool DirectRing::has_cqes() const {
  return io_uring_cq_ready(ring_.get()) > 0 || io_uring_cq_has_overflow(ring_.get()) ||
         has_task_work();
}

uint32_t DirectRing::reap(DirectCqe* out, uint32_t max) {
  io_uring* ring = ring_.get();
  uint32_t n = 0;
  // DEFER_TASKRUN / COOP_TASKRUN: completions the kernel holds until we enter. One entry
  // runs a bounded number of them (20 on 6.13+) and sets the flag again if more are left;
  // those may post no CQE, and the eventfd only fires when the kernel's list was empty, so we
  // must not stop at an empty CQ while the flag is up.
  for (int i = 0; i < 64 && has_task_work(); ++i) {
    (void)io_uring_get_events(ring);
    if (io_uring_cq_ready(ring) > 0) break;
  }
  for (int attempt = 0; attempt < 2 && n == 0; ++attempt) {
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
      out[n++] = DirectCqe{cqe->user_data, cqe->res, cqe->flags};
      if (n == max) break;
    }
    // NODROP kept CQEs the CQ had no room for on an overflow list; entering moves them over.
    if (n == 0 && attempt == 0 && io_uring_cq_has_overflow(ring)) {
      (void)io_uring_get_events(ring);
      continue;
    }
    break;
  }
  io_uring_cq_advance(ring, n);
  return n;
}

void DirectRing::set_eventfd_enabled(bool enabled) {
  io_uring* ring = ring_.get();
  const uint32_t flags = IO_URING_READ_ONCE(*ring->cq.kflags);
  const uint32_t wanted =
      enabled ? (flags & ~IORING_CQ_EVENTFD_DISABLED) : (flags | IORING_CQ_EVENTFD_DISABLED);
  if (wanted != flags) IO_URING_WRITE_ONCE(*ring->cq.kflags, wanted);
}

void DirectRing::take(uint16_t id) {
  if (id < buffer_count_) held_[id / 64] |= uint64_t{1} << (id % 64);
}

bool DirectRing::recycle(uint16_t id) {
  if (id >= buffer_count_) return false;
  uint64_t& word = held_[id / 64];
  const uint64_t bit = uint64_t{1} << (id % 64);
  // A double recycle would hand one buffer to two receives at once: refused, not trusted.
  if ((word & bit) == 0) return false;
  word &= ~bit;
  io_uring_buf_ring_add(buf_ring_, buffers_ + static_cast<size_t>(id) * buffer_size_bytes_,
                        buffer_size_bytes_, id, io_uring_buf_ring_mask(buffer_count_), 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
  return true;
}

size_t DirectRing::mapped_bytes() const {
  const io_uring* ring = ring_.get();
  return buf_ring_bytes_ + buffers_bytes_ + ring->sq.ring_sz + ring->cq.ring_sz +
         ring->sq.ring_entries * sizeof(io_uring_sqe);
}

}  // namespace herald::dataplane

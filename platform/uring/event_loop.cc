// The io_uring event loop: one batched submit per iteration, CQE dispatch to caller-owned
// Operations, re-arming of persistent operations, the SQ-full backlog, run modes, and the
// eventfd that lets other threads wake or stop the loop.
#include "platform/uring/event_loop.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"
#include "platform/uring/buffer_ring.h"
#include "platform/uring/probe.h"

namespace herald::uring {
namespace {

// user_data of the loop's own cancel requests. Their results are not needed: the target's own
// CQE says how it ended. Every value below kMaxInternalUserData is reserved (never an address).
constexpr uint64_t kCancelUserData = 3;
constexpr uint64_t kMaxInternalUserData = 4096;
// CQEs copied out per batch before the CQ head moves: freeing CQ slots before running callbacks
// keeps the CQ from overflowing while callbacks submit more work.
constexpr uint32_t kReapBatch = 64;
// Shutdown waits for cancelled requests to end, but not forever.
constexpr int kShutdownWaits = 50;
constexpr long long kShutdownWaitNs = 100'000'000;

constexpr uint64_t kNsPerSecond = 1'000'000'000;

uint64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kNsPerSecond + static_cast<uint64_t>(ts.tv_nsec);
}

// accept(2), "Error handling": Linux passes errors already pending on the new socket to
// accept(), and a reliable server treats them like EAGAIN and retries. ECONNABORTED: the peer
// gave up while queued. None of these says anything about the listener.
bool accept_error_is_transient(int32_t res) {
  switch (-res) {
    case EAGAIN:
    case EINTR:
    case ECONNABORTED:
    case ENETDOWN:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH: return true;
    default: return false;
  }
}

}  // namespace

// --- OpList --------------------------------------------------------------------------------

namespace detail {

void OpList::push_back(Operation& op) {
  HERALD_DCHECK(op.prev_ == nullptr && op.next_ == nullptr && head_ != &op,
                "operation already on a list");
  op.prev_ = tail_;
  op.next_ = nullptr;
  if (tail_ != nullptr) {
    tail_->next_ = &op;
  } else {
    head_ = &op;
  }
  tail_ = &op;
}

void OpList::remove(Operation& op) {
  if (op.prev_ != nullptr) {
    op.prev_->next_ = op.next_;
  } else {
    head_ = op.next_;
  }
  if (op.next_ != nullptr) {
    op.next_->prev_ = op.prev_;
  } else {
    tail_ = op.prev_;
  }
  op.prev_ = nullptr;
  op.next_ = nullptr;
}

Operation* OpList::pop_front() {
  Operation* op = head_;
  if (op != nullptr) remove(*op);
  return op;
}

}  // namespace detail

Operation::~Operation() {
  // The kernel holds this address as user_data and may still write through buffers it names.
  HERALD_CHECK(state_ == State::kIdle, "Operation destroyed while in flight");
}

// --- Creation and shutdown -----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::create(const Options& options) {
  if (options.sq_entries == 0 || options.sq_entries > 32768) {
    return absl::InvalidArgumentError("sq_entries must be in [1, 32768]");
  }
  if (options.cq_entries != 0 && options.cq_entries < options.sq_entries) {
    return absl::InvalidArgumentError("cq_entries must be 0 or at least sq_entries");
  }
  auto ring = std::make_unique<io_uring>();
  Features features;
  absl::Status status = detail::create_ring(options, ring.get(), &features);
  if (!status.ok()) return status;
  status = detail::probe_features(options, ring.get(), &features);
  if (!status.ok()) {
    io_uring_queue_exit(ring.get());
    return status;
  }
  const int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int err = errno;
    io_uring_queue_exit(ring.get());
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(err)));
  }
  HLOG_INFO("uring.loop.started").kv("name", options.name).kv("features", features.summary());
  return std::unique_ptr<EventLoop>(new EventLoop(options, std::move(ring), features, wake_fd));
}

EventLoop::EventLoop(const Options& options, std::unique_ptr<io_uring> ring,
                     const Features& features, int wake_fd)
    : options_(options),
      ring_(std::move(ring)),
      features_(features),
      owner_(std::this_thread::get_id()),
      wake_fd_(wake_fd) {
  wake_op_.internal_ = true;
  wake_op_.set_callback(&EventLoop::on_wake, this);
  poll(wake_op_, wake_fd_, POLLIN, /*persistent=*/true);
}

EventLoop::~EventLoop() {
  // A BufferRing unregisters itself through its loop when destroyed.
  HERALD_CHECK(buffer_rings_.empty(), "BufferRings must be destroyed before their EventLoop");
  drain_at_shutdown();
  io_uring_queue_exit(ring_.get());
  // The ring is gone and with it the kernel's hold on the wake-up poll (a poll never writes to
  // user memory), so its Operation may be destroyed even if the drain timed out.
  wake_op_.state_ = Operation::State::kIdle;
  ::close(wake_fd_);
}

void EventLoop::drain_at_shutdown() {
  HERALD_CHECK(!dispatching_, "EventLoop destroyed from inside one of its callbacks");
  shutting_down_ = true;
  // Whatever never reached the kernel is simply released.
  auto release = [this](Operation& op) {
    op.state_ = Operation::State::kIdle;
    if (!op.internal_) --stats_.ops_in_flight;
  };
  while (Operation* op = backlog_.pop_front()) {
    if (op->cancel_queued_) {
      op->cancel_queued_ = false;  // still with the kernel: reaped below
    } else {
      release(*op);
    }
  }
  while (Operation* op = local_done_.pop_front()) release(*op);
  for (BufferRing* br : buffer_rings_) {
    while (Operation* op = br->starved_.pop_front()) release(*op);
  }
  io_uring* ring = ring_.get();
  if (features_.cancel_any) {
    if (io_uring_sqe* sqe = acquire_sqe()) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, kCancelUserData);
    }
  } else {
    // Without CANCEL_ANY the loop only knows its own request; callers cancel theirs first.
    (void)cancel(wake_op_);
    if (stats_.ops_in_flight > 0) {
      HLOG_WARN("uring.loop.shutdown_with_ops_in_flight").kv("ops", stats_.ops_in_flight);
    }
  }
  for (int i = 0; i < kShutdownWaits && (stats_.ops_in_flight > 0 || wake_op_.in_flight()); ++i) {
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{.tv_sec = 0, .tv_nsec = kShutdownWaitNs};
    (void)io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
    (void)reap();
  }
  if (stats_.ops_in_flight > 0 || wake_op_.in_flight()) {
    HLOG_ERROR("uring.loop.shutdown_timeout").kv("ops", stats_.ops_in_flight);
  }
}

// --- Submission --------------------------------------------------------------------------

void EventLoop::start(Operation& op, Operation::Kind kind) {
  HERALD_CHECK(op.state_ == Operation::State::kIdle, "operation submitted while in flight");
  HERALD_CHECK(op.callback_ != nullptr, "operation has no callback");
  HERALD_DCHECK(std::this_thread::get_id() == owner_, "event loop used from a foreign thread");
  op.kind_ = kind;
  op.persistent_ = false;
  op.multishot_ = false;
  op.cancel_requested_ = false;
  op.cancel_queued_ = false;
  if (!op.internal_) ++stats_.ops_in_flight;
}

void EventLoop::arm(Operation& op) {
  // Once anything waits on the backlog, newer requests wait behind it: two sends on one
  // connection must reach the kernel in the order they were made.
  if (backlog_.empty()) {
    if (io_uring_sqe* sqe = acquire_sqe()) {
      prep(op, sqe);
      op.state_ = Operation::State::kInKernel;
      return;
    }
  }
  op.state_ = Operation::State::kQueued;
  backlog_.push_back(op);
  ++stats_.backlogged;
}

io_uring_sqe* EventLoop::acquire_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe != nullptr) return sqe;
  // SQ full: hand what is queued to the kernel now, then retry. The kernel copies SQEs out as
  // it takes them, so a successful submit frees every slot. If the submit fails (EAGAIN,
  // EBUSY) the caller backlogs the operation instead of dropping it.
  ++stats_.sq_full_flushes;
  check_enter(io_uring_submit(ring_.get()));
  return io_uring_get_sqe(ring_.get());
}

void EventLoop::prep(Operation& op, io_uring_sqe* sqe) {
  static_assert(
      sizeof(Operation::KernelTimespec) == sizeof(__kernel_timespec) &&
          offsetof(Operation::KernelTimespec, tv_nsec) == offsetof(__kernel_timespec, tv_nsec),
      "KernelTimespec must match __kernel_timespec");
  auto* ts = reinterpret_cast<__kernel_timespec*>(&op.ts_);
  void* addr = reinterpret_cast<void*>(static_cast<uintptr_t>(op.addr_));
  switch (op.kind_) {
    case Operation::Kind::kAccept:
      if (op.multishot_) {
        io_uring_prep_multishot_accept(sqe, op.fd_, nullptr, nullptr, op.op_flags_);
      } else {
        io_uring_prep_accept(sqe, op.fd_, nullptr, nullptr, op.op_flags_);
      }
      break;
    case Operation::Kind::kConnect:
      io_uring_prep_connect(sqe, op.fd_, static_cast<const sockaddr*>(addr), op.len_);
      break;
    case Operation::Kind::kRecv:
      io_uring_prep_recv(sqe, op.fd_, addr, op.len_, static_cast<int>(op.op_flags_));
      break;
    case Operation::Kind::kRecvBuffered: {
      auto* br = static_cast<BufferRing*>(addr);
      // Length 0: the kernel uses the whole of whichever buffer it picks.
      if (op.multishot_) {
        io_uring_prep_recv_multishot(sqe, op.fd_, nullptr, 0, 0);
      } else {
        io_uring_prep_recv(sqe, op.fd_, nullptr, 0, 0);
      }
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = br->group_id();
      break;
    }
    case Operation::Kind::kSend:
      io_uring_prep_send(sqe, op.fd_, addr, op.len_, static_cast<int>(op.op_flags_));
      break;
    case Operation::Kind::kClose: io_uring_prep_close(sqe, op.fd_); break;
    case Operation::Kind::kTimeout: io_uring_prep_timeout(sqe, ts, 0, 0); break;
    case Operation::Kind::kTick:
      io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ABS);  // CLOCK_MONOTONIC
      break;
    case Operation::Kind::kPoll:
      if (op.multishot_) {
        io_uring_prep_poll_multishot(sqe, op.fd_, op.op_flags_);
      } else {
        io_uring_prep_poll_add(sqe, op.fd_, op.op_flags_);
      }
      break;
    case Operation::Kind::kOpenAt:
      io_uring_prep_openat(sqe, op.fd_, static_cast<const char*>(addr),
                           static_cast<int>(op.op_flags_), op.len_);
      break;
    case Operation::Kind::kRead: io_uring_prep_read(sqe, op.fd_, addr, op.len_, op.offset_); break;
    case Operation::Kind::kWrite:
      io_uring_prep_write(sqe, op.fd_, addr, op.len_, op.offset_);
      break;
    case Operation::Kind::kFsync: io_uring_prep_fsync(sqe, op.fd_, op.op_flags_); break;
    case Operation::Kind::kFallocate:
      io_uring_prep_fallocate(sqe, op.fd_, static_cast<int>(op.op_flags_),
                              static_cast<off_t>(op.offset_), static_cast<off_t>(op.addr_));
      break;
    case Operation::Kind::kNop:
    case Operation::Kind::kNone: io_uring_prep_nop(sqe); break;
  }
  io_uring_sqe_set_data(sqe, &op);
  ++stats_.sqes_submitted;
}

void EventLoop::prep_cancel(Operation& op, io_uring_sqe* sqe) {
  io_uring_prep_cancel(sqe, &op, 0);
  io_uring_sqe_set_data64(sqe, kCancelUserData);
  ++stats_.sqes_submitted;
}

void EventLoop::flush_backlog() {
  while (Operation* op = backlog_.front()) {
    io_uring_sqe* sqe = acquire_sqe();
    if (sqe == nullptr) return;
    backlog_.remove(*op);
    if (op->cancel_queued_) {
      // The operation is with the kernel; only its cancel request was waiting.
      op->cancel_queued_ = false;
      prep_cancel(*op, sqe);
    } else {
      prep(*op, sqe);
      op->state_ = Operation::State::kInKernel;
    }
  }
}

void EventLoop::rearm_starved() {
  for (BufferRing* br : buffer_rings_) {
    if (!br->recycled_since_rearm_) continue;
    br->recycled_since_rearm_ = false;
    // Every parked receive goes back: re-arming only some could leave a socket with data
    // parked behind one that has none, with no further recycle to wake it. One that still
    // finds the ring empty parks again.
    while (Operation* op = br->starved_.pop_front()) rearm(*op);
  }
}

void EventLoop::rearm(Operation& op) {
  ++stats_.rearms;
  arm(op);
}

void EventLoop::finish_locally(Operation& op, int32_t result) {
  op.state_ = Operation::State::kLocalDone;
  op.local_result_ = result;
  local_done_.push_back(op);
}

// --- Operations ----------------------------------------------------------------------------

void EventLoop::accept(Operation& op, int listen_fd, int flags) {
  start(op, Operation::Kind::kAccept);
  op.fd_ = listen_fd;
  op.op_flags_ = static_cast<uint32_t>(flags);
  op.persistent_ = true;
  op.multishot_ = features_.use_multishot_accept;
  arm(op);
}

void EventLoop::connect(Operation& op, int fd, const sockaddr* addr, socklen_t addr_len) {
  start(op, Operation::Kind::kConnect);
  op.fd_ = fd;
  op.addr_ = reinterpret_cast<uintptr_t>(addr);
  op.len_ = addr_len;
  arm(op);
}

void EventLoop::recv(Operation& op, int fd, void* buf, uint32_t len, int flags) {
  start(op, Operation::Kind::kRecv);
  op.fd_ = fd;
  op.addr_ = reinterpret_cast<uintptr_t>(buf);
  op.len_ = len;
  op.op_flags_ = static_cast<uint32_t>(flags);
  arm(op);
}

void EventLoop::recv_multishot(Operation& op, int fd, BufferRing& ring) {
  HERALD_CHECK(&ring.loop_ == this, "BufferRing belongs to another loop");
  start(op, Operation::Kind::kRecvBuffered);
  op.fd_ = fd;
  op.addr_ = reinterpret_cast<uintptr_t>(&ring);
  op.persistent_ = true;
  op.multishot_ = features_.use_multishot_recv;
  arm(op);
}

void EventLoop::send(Operation& op, int fd, const void* buf, uint32_t len, int flags) {
  start(op, Operation::Kind::kSend);
  op.fd_ = fd;
  op.addr_ = reinterpret_cast<uintptr_t>(buf);
  op.len_ = len;
  op.op_flags_ = static_cast<uint32_t>(flags | MSG_NOSIGNAL);
  arm(op);
}

void EventLoop::close(Operation& op, int fd) {
  start(op, Operation::Kind::kClose);
  op.fd_ = fd;
  arm(op);
}

void EventLoop::timeout(Operation& op, uint64_t duration_ns) {
  start(op, Operation::Kind::kTimeout);
  op.ts_.tv_sec = static_cast<int64_t>(duration_ns / kNsPerSecond);
  op.ts_.tv_nsec = static_cast<long long>(duration_ns % kNsPerSecond);
  arm(op);
}

void EventLoop::tick(Operation& op, uint64_t period_ns) {
  HERALD_CHECK(period_ns > 0, "tick period must be positive");
  start(op, Operation::Kind::kTick);
  op.persistent_ = true;
  op.offset_ = period_ns;
  const uint64_t deadline_ns = monotonic_ns() + period_ns;
  op.ts_.tv_sec = static_cast<int64_t>(deadline_ns / kNsPerSecond);
  op.ts_.tv_nsec = static_cast<long long>(deadline_ns % kNsPerSecond);
  arm(op);
}

void EventLoop::poll(Operation& op, int fd, uint32_t events, bool persistent) {
  start(op, Operation::Kind::kPoll);
  op.fd_ = fd;
  op.op_flags_ = events;
  op.persistent_ = persistent;
  op.multishot_ = persistent && features_.use_multishot_poll;
  arm(op);
}

void EventLoop::openat(Operation& op, int dir_fd, const char* path, int flags, mode_t mode) {
  start(op, Operation::Kind::kOpenAt);
  op.fd_ = dir_fd;
  op.addr_ = reinterpret_cast<uintptr_t>(path);
  op.op_flags_ = static_cast<uint32_t>(flags);
  op.len_ = mode;
  arm(op);
}

void EventLoop::read(Operation& op, int fd, void* buf, uint32_t len, uint64_t offset) {
  start(op, Operation::Kind::kRead);
  op.fd_ = fd;
  op.addr_ = reinterpret_cast<uintptr_t>(buf);
  op.len_ = len;
  op.offset_ = offset;
  arm(op);
}

void EventLoop::write(Operation& op, int fd, const void* buf, uint32_t len, uint64_t offset) {
  start(op, Operation::Kind::kWrite);
  op.fd_ = fd;
  op.addr_ = reinterpret_cast<uintptr_t>(buf);
  op.len_ = len;
  op.offset_ = offset;
  arm(op);
}

void EventLoop::fsync(Operation& op, int fd, bool data_only) {
  start(op, Operation::Kind::kFsync);
  op.fd_ = fd;
  op.op_flags_ = data_only ? IORING_FSYNC_DATASYNC : 0;
  arm(op);
}

void EventLoop::fallocate(Operation& op, int fd, int mode, uint64_t offset, uint64_t len) {
  start(op, Operation::Kind::kFallocate);
  op.fd_ = fd;
  op.op_flags_ = static_cast<uint32_t>(mode);
  op.offset_ = offset;
  op.addr_ = len;
  arm(op);
}

void EventLoop::nop(Operation& op) {
  start(op, Operation::Kind::kNop);
  arm(op);
}

bool EventLoop::cancel(Operation& op) {
  HERALD_DCHECK(std::this_thread::get_id() == owner_, "event loop used from a foreign thread");
  switch (op.state_) {
    case Operation::State::kIdle: return false;
    case Operation::State::kLocalDone:
      return true;  // already finishing; its callback is on its way
    case Operation::State::kQueued:
      ++stats_.cancels;
      backlog_.remove(op);
      finish_locally(op, -ECANCELED);
      return true;
    case Operation::State::kStarved:
      ++stats_.cancels;
      static_cast<BufferRing*>(reinterpret_cast<void*>(static_cast<uintptr_t>(op.addr_)))
          ->starved_.remove(op);
      finish_locally(op, -ECANCELED);
      return true;
    case Operation::State::kInKernel: break;
  }
  if (op.cancel_requested_) return true;  // one request to the kernel is enough
  op.cancel_requested_ = true;
  ++stats_.cancels;
  // The cancel SQE lands after the operation's own SQE (same SQ, or the backlog behind it),
  // and the kernel takes SQEs in order, so it always finds the request it names.
  if (backlog_.empty()) {
    if (io_uring_sqe* sqe = acquire_sqe()) {
      prep_cancel(op, sqe);
      return true;
    }
  }
  op.cancel_queued_ = true;
  backlog_.push_back(op);
  ++stats_.backlogged;
  return true;
}

// --- Completion ----------------------------------------------------------------------------

uint32_t EventLoop::handle_cqe(uint64_t user_data, int32_t res, uint32_t flags) {
  // Our cancel requests, and liburing's own timeout SQE on kernels without EXT_ARG.
  if (user_data < kMaxInternalUserData || user_data == LIBURING_UDATA_TIMEOUT) return 0;
  Operation& op = *reinterpret_cast<Operation*>(static_cast<uintptr_t>(user_data));
  HERALD_DCHECK(op.state_ == Operation::State::kInKernel, "CQE for an operation not in flight");
  const bool kernel_more = (flags & IORING_CQE_F_MORE) != 0;

  Completion c;
  c.result = res;
  c.cqe_flags = flags;
  c.more = kernel_more;
  if ((flags & IORING_CQE_F_BUFFER) != 0) {
    HERALD_CHECK(op.kind_ == Operation::Kind::kRecvBuffered, "buffer on a non-buffered op");
    auto* br = static_cast<BufferRing*>(reinterpret_cast<void*>(static_cast<uintptr_t>(op.addr_)));
    const auto id = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    if (!shutting_down_) {
      br->take(id);
      if (res > 0) {
        c.buffer_ring = br;
        c.buffer_id = id;
        c.data = br->buffer(id);
      } else {
        br->recycle(id);  // nothing in it for the consumer
      }
    }
  }

  if (kernel_more && !shutting_down_) return deliver(op, c);
  if (shutting_down_) {
    if (!kernel_more) {
      op.state_ = Operation::State::kIdle;
      op.cancel_queued_ = false;
      if (!op.internal_) --stats_.ops_in_flight;
    }
    return 0;
  }

  // The kernel request is over. Persistent operations go on unless cancelled or failed.
  const bool go_on = !op.cancel_requested_;
  switch (op.kind_) {
    case Operation::Kind::kAccept:
      if (go_on && (res >= 0 || accept_error_is_transient(res))) {
        rearm(op);
        if (res < 0) return 0;
        c.more = true;
      }
      break;
    case Operation::Kind::kRecvBuffered:
      if (res == -ENOBUFS) {
        ++stats_.enobufs;
        if (!go_on) {
          c.result = -ECANCELED;
          break;
        }
        auto* br =
            static_cast<BufferRing*>(reinterpret_cast<void*>(static_cast<uintptr_t>(op.addr_)));
        if (br->outstanding_ < br->count_) {
          rearm(op);  // buffers came back since the kernel looked
        } else {
          op.state_ = Operation::State::kStarved;
          br->starved_.push_back(op);
        }
        return 0;
      }
      if (res > 0 && go_on) {
        rearm(op);  // single-shot fallback, or the kernel ended the multishot (CQ pressure)
        c.more = true;
      }
      break;
    case Operation::Kind::kPoll:
      if (op.persistent_ && res > 0 && go_on) {
        rearm(op);
        c.more = true;
      }
      break;
    case Operation::Kind::kTick:
      if (res == -ETIME) {
        // Next deadline on the period grid; periods missed while the loop was busy are
        // reported in the result rather than fired back to back.
        const uint64_t period_ns = op.offset_;
        uint64_t deadline_ns = static_cast<uint64_t>(op.ts_.tv_sec) * kNsPerSecond +
                               static_cast<uint64_t>(op.ts_.tv_nsec);
        deadline_ns += period_ns;
        uint64_t periods = 1;
        const uint64_t now_ns = monotonic_ns();
        if (deadline_ns <= now_ns) {
          const uint64_t behind = (now_ns - deadline_ns) / period_ns + 1;
          deadline_ns += behind * period_ns;
          periods += behind;
        }
        op.ts_.tv_sec = static_cast<int64_t>(deadline_ns / kNsPerSecond);
        op.ts_.tv_nsec = static_cast<long long>(deadline_ns % kNsPerSecond);
        c.result = static_cast<int32_t>(periods);
        if (go_on) {
          rearm(op);
          c.more = true;
        }
      }
      break;
    case Operation::Kind::kTimeout:
      if (res == -ETIME) c.result = 0;
      break;
    default: break;
  }
  if (!c.more) {
    if (op.cancel_queued_) {
      backlog_.remove(op);  // its cancel request is moot now
      op.cancel_queued_ = false;
    }
    op.state_ = Operation::State::kIdle;
    if (!op.internal_) --stats_.ops_in_flight;
  }
  return deliver(op, c);
}

uint32_t EventLoop::deliver(Operation& op, Completion& completion) {
  const bool internal = op.internal_;
  // The callback may reuse or destroy `op` when `more` is false: it is the last use of it.
  op.callback_(op, completion);
  if (internal) return 0;
  ++stats_.completions;
  return 1;
}

uint32_t EventLoop::reap() {
  HERALD_CHECK(!dispatching_, "run_once/poll_once called from inside a callback");
  dispatching_ = true;
  io_uring* ring = ring_.get();
  struct Entry {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };
  Entry batch[kReapBatch];
  uint32_t ran = 0;
  // Bounded so a flood of completions cannot keep the loop from submitting.
  uint32_t budget = features_.cq_entries;
  bool flushed_overflow = false;
  while (budget > 0) {
    uint32_t n = 0;
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
      batch[n++] = Entry{cqe->user_data, cqe->res, cqe->flags};
      if (n == kReapBatch || n == budget) break;
    }
    if (n == 0) {
      // NODROP kept CQEs the CQ had no room for on an overflow list; entering moves them over.
      if (!flushed_overflow && io_uring_cq_has_overflow(ring)) {
        flushed_overflow = true;
        ++stats_.cq_overflow_flushes;
        (void)io_uring_get_events(ring);
        continue;
      }
      break;
    }
    io_uring_cq_advance(ring, n);
    stats_.cqes_reaped += n;
    budget -= n;
    for (uint32_t i = 0; i < n; ++i)
      ran += handle_cqe(batch[i].user_data, batch[i].res, batch[i].flags);
  }
  while (Operation* op = local_done_.pop_front()) {
    op->state_ = Operation::State::kIdle;
    if (!op->internal_) --stats_.ops_in_flight;
    if (shutting_down_) continue;
    Completion c;
    c.result = op->local_result_;
    ran += deliver(*op, c);
  }
  dispatching_ = false;
  return ran;
}

// --- Running -------------------------------------------------------------------------------

void EventLoop::enter_and_wait(int64_t timeout_ns) {
  io_uring* ring = ring_.get();
  if (timeout_ns == 0) {
    // Enter only when there is work for the kernel or the kernel has work for us: SQEs to
    // submit, completions it holds until we enter (TASKRUN flag, DEFER_TASKRUN), or an overflow
    // to flush. Otherwise a busy poll reads the CQ from memory without a syscall.
    const unsigned sq_flags = IO_URING_READ_ONCE(*ring->sq.kflags);
    if (io_uring_sq_ready(ring) > 0 || features_.defer_taskrun ||
        (sq_flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0) {
      check_enter(io_uring_submit_and_get_events(ring));
    }
    return;
  }
  ++stats_.sleeps;
  if (timeout_ns < 0) {
    check_enter(io_uring_submit_and_wait(ring, 1));
  } else {
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{.tv_sec = static_cast<int64_t>(timeout_ns / kNsPerSecond),
                         .tv_nsec = static_cast<long long>(timeout_ns % kNsPerSecond)};
    check_enter(io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr));
  }
}

void EventLoop::check_enter(int rc) {
  // A timeout, a signal, or a kernel short of resources for the moment: reap what is there
  // and go round; SQEs not taken stay queued for the next enter.
  if (rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) return;
  // SINGLE_ISSUER/DEFER_TASKRUN: the kernel refuses every thread but the creator's. Going on
  // would spin without ever completing anything.
  HERALD_CHECK(rc != -EEXIST, "io_uring entered from a thread other than the loop's creator");
  HLOG_RATE_LIMITED(kError, "uring.enter_failed", 1).kv("error", std::strerror(-rc));
}

uint32_t EventLoop::run_once(int64_t timeout_ns) {
  HERALD_DCHECK(std::this_thread::get_id() == owner_, "event loop run from a foreign thread");
  ++stats_.iterations;
  rearm_starved();
  flush_backlog();
  // Do not sleep with work already in hand.
  if (!local_done_.empty() || !backlog_.empty() || io_uring_cq_ready(ring_.get()) > 0 ||
      stop_requested_.load(std::memory_order_relaxed)) {
    timeout_ns = 0;
  }
  enter_and_wait(timeout_ns);
  return reap();
}

uint32_t EventLoop::poll_once() {
  HERALD_DCHECK(std::this_thread::get_id() == owner_, "event loop run from a foreign thread");
  ++stats_.iterations;
  rearm_starved();
  flush_backlog();
  enter_and_wait(0);
  const uint32_t ran = reap();
  if (ran == 0) ++stats_.empty_polls;
  return ran;
}

void EventLoop::run() {
  while (!stop_requested_.load(std::memory_order_acquire)) {
    switch (options_.mode) {
      case RunMode::kBlocking: (void)run_once(-1); break;
      case RunMode::kBusyPoll: (void)poll_once(); break;
      case RunMode::kAdaptive:
        if (poll_once() != 0) {
          empty_rounds_ = 0;
        } else if (++empty_rounds_ >= options_.adaptive_empty_polls) {
          empty_rounds_ = 0;
          (void)run_once(static_cast<int64_t>(options_.adaptive_sleep_ns));
        }
        break;
    }
  }
  stop_requested_.store(false, std::memory_order_relaxed);
}

void EventLoop::stop() {
  stop_requested_.store(true, std::memory_order_release);
  wake();
}

void EventLoop::wake() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;  // one is on its way
  const uint64_t one = 1;
  // Cannot fail short of a closed fd: the counter would need 2^64-2 unread wake-ups.
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void EventLoop::on_wake(Operation& op, const Completion& completion) {
  auto* loop = op.context_as<EventLoop>();
  if (completion.result < 0) {
    // Only cancellation at shutdown ends this poll; anything else is a bug, and without the
    // poll stop() and wake() would go unheard, so arm it again.
    if (completion.result != -ECANCELED && HERALD_BUG_IF(!completion.more, "wake-up poll failed")) {
      loop->poll(loop->wake_op_, loop->wake_fd_, POLLIN, /*persistent=*/true);
    }
    return;
  }
  // Drain first, then clear the flag: a wake() landing in between finds the flag still set
  // and skips its write, but this iteration is still running and will see its effect.
  uint64_t value;
  (void)!::read(loop->wake_fd_, &value, sizeof(value));
  loop->wake_pending_.store(false, std::memory_order_release);
  ++loop->stats_.wakeups;
}

// --- Buffer-ring bookkeeping ---------------------------------------------------------------

uint16_t EventLoop::allocate_group_id() {
  // 65535 is never handed out: it is the "none left" answer.
  for (uint32_t id = 0; id < UINT16_MAX; ++id) {
    if (!group_ids_.test(id)) {
      group_ids_.set(id);
      return static_cast<uint16_t>(id);
    }
  }
  return UINT16_MAX;  // all in use; caller reports it
}

void EventLoop::register_ring(BufferRing* ring) {
  buffer_rings_.push_back(ring);
}

void EventLoop::unregister_ring(BufferRing* ring) {
  group_ids_.reset(ring->group_id());
  std::erase(buffer_rings_, ring);
}

}  // namespace herald::uring

// The io_uring event loop: completion-based operations on sockets, files, timers and fds, for
// the control plane (one loop) and the dataplane's kernel-socket backend (one loop per worker).
//
//   Operation recv_op(&Conn::on_recv, conn);   // caller-owned, often a member of a connection
//   loop->recv_multishot(recv_op, fd, *buffers);
//   loop->run();                                // until stop()
//
// Threading: a loop is created on, and only used from, one thread (the ring is set up
// SINGLE_ISSUER, so the kernel holds us to it). stop() and wake() are the only calls that may
// come from other threads.
//
// Operation lifetime: the caller owns each Operation; its address is the SQE's user_data, so it
// must stay put and alive until its callback has run with `more == false`. No allocation happens
// per operation: submitting writes an SQE, and if the SQ is full even after a flush the
// Operation itself is queued (intrusively) until room appears. Nothing is ever dropped.
//
// Closing: close a connection's fd only once its operations have ended (cancel them, then close
// in the last final callback). A persistent receive is re-armed by the loop, and an fd number
// closed under it could be reused by the next accepted connection.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <bitset>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "platform/uring/features.h"

struct io_uring;
struct io_uring_sqe;

namespace herald::uring {

class BufferRing;
class EventLoop;
class Operation;

// What an operation's callback receives, decoded from the CQE.
struct Completion {
  // >= 0: the operation's value (bytes moved, a new fd, poll revents, ticks elapsed; see each
  // submit call). < 0: -errno. A timer that fires reports 0 (the kernel's -ETIME is not an
  // error for us); a cancelled operation reports -ECANCELED.
  int32_t result = 0;
  // Raw CQE flags, for diagnostics (IORING_CQE_F_SOCK_NONEMPTY and the like).
  uint32_t cqe_flags = 0;
  // True while the operation stays armed and more completions will follow; when false the
  // Operation is idle again and the caller may reuse or destroy it from inside the callback.
  bool more = false;
  // Set when received bytes sit in a provided buffer: the consumer owns buffer `buffer_id` of
  // `buffer_ring` until it calls buffer_ring->recycle(buffer_id). Zero-length and failed
  // receives never carry a buffer (the loop recycles it itself).
  BufferRing* buffer_ring = nullptr;
  uint16_t buffer_id = 0;
  uint8_t* data = nullptr;

  std::span<uint8_t> bytes() const {
    return data == nullptr ? std::span<uint8_t>() : std::span<uint8_t>(data, result);
  }
};

// A function pointer, not std::function: no allocation and no type erasure per operation. The
// context rides on the Operation (op.context()).
using CompletionFn = void (*)(Operation& op, const Completion& completion);

namespace detail {
// Intrusive FIFO of Operations (the SQ-full backlog, buffer-starved receives, local
// completions). An Operation is on at most one list at a time.
class OpList {
 public:
  bool empty() const { return head_ == nullptr; }
  Operation* front() const { return head_; }
  void push_back(Operation& op);
  void remove(Operation& op);
  Operation* pop_front();

 private:
  Operation* head_ = nullptr;
  Operation* tail_ = nullptr;
};
}  // namespace detail

class Operation {
 public:
  Operation() = default;
  Operation(CompletionFn callback, void* context) : callback_(callback), context_(context) {}
  // Destroying an operation the kernel still holds would let it write into freed memory.
  ~Operation();
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  void set_callback(CompletionFn callback, void* context) {
    callback_ = callback;
    context_ = context;
  }
  void* context() const { return context_; }
  template <typename T>
  T* context_as() const {
    return static_cast<T*>(context_);
  }
  // True from submission until the callback that reports `more == false`.
  bool in_flight() const { return state_ != State::kIdle; }
  int fd() const { return fd_; }

 private:
  friend class EventLoop;
  friend class BufferRing;
  friend class detail::OpList;

  enum class Kind : uint8_t {
    kNone,
    kAccept,
    kConnect,
    kRecv,
    kRecvBuffered,
    kSend,
    kClose,
    kTimeout,
    kTick,
    kPoll,
    kOpenAt,
    kRead,
    kWrite,
    kFsync,
    kFallocate,
    kNop,
  };
  enum class State : uint8_t {
    kIdle,
    kQueued,     // waiting on the loop's backlog for an SQE
    kInKernel,   // an SQE for it is in the SQ or with the kernel
    kStarved,    // a buffered receive parked until its BufferRing gets buffers back
    kLocalDone,  // completed without the kernel (cancelled while queued or starved)
  };
  // Layout-compatible with struct __kernel_timespec (checked in event_loop.cc), so this header
  // does not pull in liburing.
  struct KernelTimespec {
    int64_t tv_sec;
    long long tv_nsec;
  };

  CompletionFn callback_ = nullptr;
  void* context_ = nullptr;
  Operation* prev_ = nullptr;  // OpList links
  Operation* next_ = nullptr;
  uint64_t addr_ = 0;    // buffer, path, sockaddr or BufferRing*, by kind
  uint64_t offset_ = 0;  // file offset; fallocate length; tick period
  KernelTimespec ts_{};  // timeout duration or tick deadline: must live until submitted
  int32_t fd_ = -1;
  uint32_t len_ = 0;
  uint32_t op_flags_ = 0;  // msg flags, open flags, poll mask, fsync/fallocate mode
  int32_t local_result_ = 0;
  Kind kind_ = Kind::kNone;
  State state_ = State::kIdle;
  bool persistent_ = false;        // the loop re-arms it until cancelled or failed
  bool multishot_ = false;         // the kernel request is multishot
  bool cancel_requested_ = false;  // cancel() was called: never re-arm again
  bool cancel_queued_ = false;     // on the backlog waiting for an SQE for its cancel request
  bool internal_ = false;          // the loop's own (wake-up poll): not in user stats
};

enum class RunMode : uint8_t {
  kBlocking,  // sleep in the kernel until a completion arrives (control plane)
  kBusyPoll,  // never sleep: reap CQEs from memory, enter the kernel only when needed
  kAdaptive,  // busy-poll, then sleep after `adaptive_empty_polls` empty rounds (dataplane on
              // shared cores)
};

struct Options {
  uint32_t sq_entries = 256;
  // 0 picks 4 x sq_entries: multishot requests post many CQEs per SQE.
  uint32_t cq_entries = 0;
  RunMode mode = RunMode::kBlocking;
  uint32_t adaptive_empty_polls = 64;
  uint64_t adaptive_sleep_ns = 1'000'000;
  // Setup flags to try; each is dropped again when the kernel answers EINVAL. DEFER_TASKRUN is
  // only tried in kBlocking mode: it runs completions only when we enter the kernel with
  // GETEVENTS, which would cost a busy-poll loop one syscall per round.
  bool try_single_issuer = true;
  bool try_defer_taskrun = true;
  bool try_coop_taskrun = true;
  // Setting these false forces the single-shot fallbacks (re-armed by the loop) that older
  // kernels get; tests use them to exercise those paths on new kernels.
  bool allow_multishot_accept = true;
  bool allow_multishot_recv = true;
  bool allow_multishot_poll = true;
  // Names the loop in its start-up log line.
  const char* name = "uring";
};

// Plain members, written by the loop's thread only; the counters segment copies them out.
struct LoopStats {
  uint64_t sqes_submitted = 0;   // SQEs written to the SQ (the next enter hands them over)
  uint64_t cqes_reaped = 0;      // CQEs taken off the CQ, the loop's own included
  uint64_t completions = 0;      // callbacks run
  uint64_t iterations = 0;       // run_once() / poll_once() calls
  uint64_t empty_polls = 0;      // poll_once() rounds that found nothing
  uint64_t sleeps = 0;           // waits that may block in the kernel
  uint64_t wakeups = 0;          // cross-thread wake-ups consumed
  uint64_t sq_full_flushes = 0;  // SQ was full, so it was submitted mid-iteration
  uint64_t backlogged = 0;       // operations queued because the SQ stayed full
  uint64_t rearms = 0;           // persistent operations re-submitted after a final CQE
  uint64_t enobufs = 0;          // buffered receives that found their BufferRing empty
  uint64_t cancels = 0;          // cancel() calls that had something to cancel
  uint64_t cq_overflow_flushes = 0;
  uint64_t ops_in_flight = 0;  // gauge: caller operations not yet finished
};

class EventLoop {
 public:
  // Creates the ring (falling back past setup flags the kernel refuses), probes features and
  // logs them. Fails when the kernel lacks what the loop cannot do without (NODROP,
  // FAST_POLL, the opcodes below), naming what is missing.
  static absl::StatusOr<std::unique_ptr<EventLoop>> create(const Options& options = {});
  // Cancels whatever is still in flight and reaps it without running callbacks, so the kernel
  // never writes into caller memory after this returns (on kernels with cancel_any; on older
  // ones callers must cancel their own operations first).
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  const Features& features() const { return features_; }
  const LoopStats& stats() const { return stats_; }
  const Options& options() const { return options_; }

  // --- Running ---------------------------------------------------------------------------
  // Runs in options().mode until stop(); returns then, and may be called again.
  void run();
  // One iteration: submits everything queued, waits up to `timeout_ns` (< 0: no limit, 0: no
  // wait) for a completion, and runs the callbacks of all that arrived. Returns how many ran.
  uint32_t run_once(int64_t timeout_ns);
  // One busy-poll round: submits, then reaps what is there without sleeping. Counts an empty
  // poll when nothing ran.
  uint32_t poll_once();
  // Any thread. run() returns after the iteration in progress.
  void stop();
  // Any thread. A wait in progress (or the next one) returns early.
  void wake();

  // --- Operations: each completes once, with `more == false`, unless it says otherwise ----
  // Accepts until cancelled: one completion per connection with the new fd as result (flags
  // apply to it), `more == true`. Multishot where the kernel has it; re-armed by the loop when
  // the kernel ends it or lacks it. Per-connection errors accept(2) says to retry are swallowed
  // and re-armed; others (EMFILE, ENFILE, ENOMEM, a closed listener) end it with `more ==
  // false`, so the caller re-arms when it sees fit rather than the loop spinning. The peer's
  // address is not captured (a multishot accept would overwrite it): use getpeername(2).
  void accept(Operation& op, int listen_fd, int flags = SOCK_NONBLOCK | SOCK_CLOEXEC);
  // `addr` must stay valid until the completion.
  void connect(Operation& op, int fd, const sockaddr* addr, socklen_t addr_len);
  // One receive into the caller's buffer. 0 means the peer closed.
  void recv(Operation& op, int fd, void* buf, uint32_t len, int flags = 0);
  // Receives until EOF, error or cancel into buffers picked by the kernel from `ring`: each
  // completion with data carries a buffer the consumer must recycle. When the ring runs dry
  // (ENOBUFS) the receive is parked, not failed, and re-armed once buffers come back. EOF is
  // result 0 with `more == false`.
  void recv_multishot(Operation& op, int fd, BufferRing& ring);
  // One send. The result may be short: a stream socket may take part of the buffer, and the
  // caller sends the rest after it. SendStream (send_stream.h) does that and keeps order when
  // several buffers are queued on one connection. MSG_NOSIGNAL is always added: a reset peer
  // returns EPIPE rather than killing the process with SIGPIPE.
  void send(Operation& op, int fd, const void* buf, uint32_t len, int flags = 0);
  void close(Operation& op, int fd);
  // Fires once after `duration_ns` with result 0 (CLOCK_MONOTONIC).
  void timeout(Operation& op, uint64_t duration_ns);
  // Fires every `period_ns` until cancelled, `more == true`, result = periods elapsed since the
  // last callback (> 1 when the loop fell behind). Deadlines are absolute, so ticks do not
  // drift by the time spent handling each one.
  void tick(Operation& op, uint64_t period_ns);
  // Waits for `events` (POLLIN...) on fd; result is the revents mask. `persistent` keeps it
  // armed (multishot where available), for eventfd doorbells and signalfds.
  void poll(Operation& op, int fd, uint32_t events, bool persistent);
  // `path` must stay valid until the completion. Result: the new fd.
  void openat(Operation& op, int dir_fd, const char* path, int flags, mode_t mode);
  void read(Operation& op, int fd, void* buf, uint32_t len, uint64_t offset);
  void write(Operation& op, int fd, const void* buf, uint32_t len, uint64_t offset);
  void fsync(Operation& op, int fd, bool data_only);
  void fallocate(Operation& op, int fd, int mode, uint64_t offset, uint64_t len);
  void nop(Operation& op);

  // Cancels `op`: its final callback reports -ECANCELED (or the result it had already reached
  // if the kernel finished first), and persistent operations are not re-armed. Returns false
  // when `op` was not in flight.
  bool cancel(Operation& op);

 private:
  friend class BufferRing;
  EventLoop(const Options& options, std::unique_ptr<io_uring> ring, const Features& features,
            int wake_fd);

  void start(Operation& op, Operation::Kind kind);
  void arm(Operation& op);
  io_uring_sqe* acquire_sqe();
  void prep(Operation& op, io_uring_sqe* sqe);
  void prep_cancel(Operation& op, io_uring_sqe* sqe);
  void flush_backlog();
  void rearm_starved();
  uint32_t reap();
  uint32_t handle_cqe(uint64_t user_data, int32_t res, uint32_t flags);
  uint32_t deliver(Operation& op, Completion& completion);
  void finish_locally(Operation& op, int32_t result);
  void rearm(Operation& op);
  void enter_and_wait(int64_t timeout_ns);
  void check_enter(int rc);
  void drain_at_shutdown();
  static void on_wake(Operation& op, const Completion& completion);

  uint16_t allocate_group_id();
  void register_ring(BufferRing* ring);
  void unregister_ring(BufferRing* ring);

  Options options_;
  std::unique_ptr<io_uring> ring_;
  Features features_;
  LoopStats stats_;
  const std::thread::id owner_;
  detail::OpList backlog_;     // waiting for SQEs, FIFO so order per connection holds
  detail::OpList local_done_;  // finished without the kernel; delivered by the next reap
  std::vector<BufferRing*> buffer_rings_;
  std::bitset<65536> group_ids_;  // provided-buffer group ids in use (the kernel's id is u16)
  bool dispatching_ = false;
  bool shutting_down_ = false;
  uint32_t empty_rounds_ = 0;

  // Cross-thread wake-up: an eventfd the loop keeps a poll armed on. wake_pending_ spares the
  // write(2) when a wake-up is already on its way.
  int wake_fd_ = -1;
  Operation wake_op_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stop_requested_{false};
};

}  // namespace herald::uring

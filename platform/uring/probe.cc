// Ring creation with setup-flag fallback, and the feature probe: which opcodes the kernel has
// (io_uring_get_probe_ring) and which request flags it accepts (found by trying them).
#include "platform/uring/probe.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace herald::uring::detail {
namespace {

// user_data values of the probe's own requests; real Operations are pointers, never this small.
constexpr uint64_t kProbeUserData = 1;
constexpr uint64_t kProbeCancelUserData = 2;
// Each wait in the probe is bounded so a kernel that misbehaves fails creation instead of
// hanging it.
constexpr long long kProbeWaitNs = 1'000'000'000;
constexpr int kProbeMaxWaits = 4;

struct ProbeResult {
  bool ok = false;          // the probe's final CQE arrived
  int32_t first_res = 0;    // result of its first CQE
  bool first_more = false;  // IORING_CQE_F_MORE on its first CQE
  uint32_t first_flags = 0;
};

// Submits one request prepared by `prep` (followed by a cancel of it when `cancel_after`), and
// reaps until the request's final CQE and the cancel's CQE have been seen.
template <typename Prep>
ProbeResult probe_request(io_uring* ring, Prep prep, bool cancel_after) {
  ProbeResult out;
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) return out;  // the ring is empty at creation; cannot happen
  prep(sqe);
  io_uring_sqe_set_data64(sqe, kProbeUserData);
  bool cancel_pending = false;
  if (cancel_after) {
    io_uring_sqe* cancel = io_uring_get_sqe(ring);
    if (cancel != nullptr) {
      io_uring_prep_cancel64(cancel, kProbeUserData, 0);
      io_uring_sqe_set_data64(cancel, kProbeCancelUserData);
      cancel_pending = true;
    }
  }
  if (io_uring_submit(ring) < 0) return out;
  bool seen_first = false;
  bool request_done = false;
  for (int waits = 0; waits < kProbeMaxWaits && (!request_done || cancel_pending);) {
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{.tv_sec = 0, .tv_nsec = kProbeWaitNs};
    const int rc = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
    if (rc == -ETIME || rc == -EINTR) {
      ++waits;
      continue;
    }
    if (rc < 0) break;
    const uint64_t user_data = cqe->user_data;
    const int32_t res = cqe->res;
    const uint32_t flags = cqe->flags;
    io_uring_cqe_seen(ring, cqe);
    if (user_data == kProbeCancelUserData) {
      cancel_pending = false;
    } else if (user_data == kProbeUserData) {
      if (!seen_first) {
        seen_first = true;
        out.first_res = res;
        out.first_more = (flags & IORING_CQE_F_MORE) != 0;
        out.first_flags = flags;
      }
      if ((flags & IORING_CQE_F_MORE) == 0) request_done = true;
    }
  }
  out.ok = request_done && !cancel_pending;
  return out;
}

class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// IORING_ASYNC_CANCEL_ANY | ALL (the combination shutdown uses) on an empty ring: kernels
// that know the flags answer with the number cancelled (0) or -ENOENT; older ones -EINVAL.
bool probe_cancel_any(io_uring* ring) {
  const ProbeResult r = probe_request(
      ring,
      [](io_uring_sqe* sqe) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
      },
      false);
  return r.ok && (r.first_res == 0 || r.first_res == -ENOENT);
}

bool probe_multishot_accept(io_uring* ring) {
  ScopedFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)) != 0 ||
      ::listen(listener.get(), 1) != 0) {
    return false;
  }
  const int fd = listener.get();
  const ProbeResult r = probe_request(
      ring,
      [fd](io_uring_sqe* sqe) {
        io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
      },
      true);
  return r.ok && r.first_res == -ECANCELED;
}

// A multishot poll on an idle eventfd: -EINVAL before 5.13, armed (then cancelled) after.
bool probe_multishot_poll(io_uring* ring) {
  ScopedFd efd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (efd.get() < 0) return false;
  const int fd = efd.get();
  const ProbeResult r = probe_request(
      ring, [fd](io_uring_sqe* sqe) { io_uring_prep_poll_multishot(sqe, fd, POLLIN); }, true);
  return r.ok && r.first_res == -ECANCELED;
}

// Registers a one-buffer ring (group `kProbeGroup`), then, if that worked, tries a multishot
// receive on a socketpair with a byte waiting: a kernel with multishot recv (6.0) posts the byte
// with IORING_CQE_F_MORE; 5.19 rejects the flag with -EINVAL.
constexpr uint16_t kProbeGroup = 0;
void probe_buffers(io_uring* ring, Features* features) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* mem = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  auto* br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(mem);
  reg.ring_entries = 1;
  reg.bgid = kProbeGroup;
  if (io_uring_register_buf_ring(ring, &reg, 0) != 0) {
    ::munmap(mem, page);
    return;
  }
  features->buf_ring = true;
  // The one buffer lives in the second half of the page, away from the ring's entry.
  uint8_t* buf = static_cast<uint8_t*>(mem) + page / 2;
  io_uring_buf_ring_init(br);
  io_uring_buf_ring_add(br, buf, 64, 0, io_uring_buf_ring_mask(1), 0);
  io_uring_buf_ring_advance(br, 1);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0) {
    ScopedFd a(sv[0]);
    ScopedFd b(sv[1]);
    const char byte = 'p';
    if (::write(b.get(), &byte, 1) == 1) {
      const int fd = a.get();
      const ProbeResult r = probe_request(
          ring,
          [fd](io_uring_sqe* sqe) {
            io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = kProbeGroup;
          },
          true);
      features->multishot_recv = r.ok && r.first_res == 1 && r.first_more;
    }
  }
  (void)io_uring_unregister_buf_ring(ring, kProbeGroup);
  ::munmap(mem, page);
}

}  // namespace

absl::Status create_ring(const Options& options, io_uring* ring, Features* features) {
  const uint32_t cq_entries = options.cq_entries != 0 ? options.cq_entries : 4 * options.sq_entries;
  const uint32_t base = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  uint32_t candidates[6];
  int n = 0;
  if (options.try_single_issuer && options.try_defer_taskrun &&
      options.mode == RunMode::kBlocking) {
    candidates[n++] = base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  }
  // COOP_TASKRUN stops the kernel from interrupting us with an IPI to run completion work;
  // TASKRUN_FLAG then tells a busy-polling loop (through the SQ flags) when to enter.
  const uint32_t coop =
      options.try_coop_taskrun ? IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG : 0;
  if (options.try_single_issuer) candidates[n++] = base | IORING_SETUP_SINGLE_ISSUER | coop;
  candidates[n++] = base | coop;
  candidates[n++] = base;
  candidates[n++] = IORING_SETUP_CQSIZE;  // 5.5
  candidates[n++] = 0;

  int rc = -EINVAL;
  for (int i = 0; i < n; ++i) {
    io_uring_params params{};
    params.flags = candidates[i];
    params.cq_entries = cq_entries;
    rc = io_uring_queue_init_params(options.sq_entries, ring, &params);
    if (rc == 0) {
      features->setup_flags = params.flags;
      features->kernel_features = params.features;
      features->sq_entries = params.sq_entries;
      features->cq_entries = params.cq_entries;
      break;
    }
    if (rc != -EINVAL) break;
  }
  if (rc == -EPERM) {
    return absl::PermissionDeniedError(
        "io_uring_setup: EPERM (io_uring disabled by sysctl kernel.io_uring_disabled or a "
        "seccomp filter)");
  }
  if (rc == -ENOSYS) return absl::UnimplementedError("io_uring_setup: kernel has no io_uring");
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("io_uring_setup failed: ", std::strerror(-rc)));
  }

  const uint32_t kf = features->kernel_features;
  features->single_mmap = (kf & IORING_FEAT_SINGLE_MMAP) != 0;
  features->nodrop = (kf & IORING_FEAT_NODROP) != 0;
  features->submit_stable = (kf & IORING_FEAT_SUBMIT_STABLE) != 0;
  features->fast_poll = (kf & IORING_FEAT_FAST_POLL) != 0;
  features->ext_arg = (kf & IORING_FEAT_EXT_ARG) != 0;
  features->cqe_skip = (kf & IORING_FEAT_CQE_SKIP) != 0;
  const uint32_t sf = features->setup_flags;
  features->single_issuer = (sf & IORING_SETUP_SINGLE_ISSUER) != 0;
  features->coop_taskrun = (sf & IORING_SETUP_COOP_TASKRUN) != 0;
  features->taskrun_flag = (sf & IORING_SETUP_TASKRUN_FLAG) != 0;
  features->defer_taskrun = (sf & IORING_SETUP_DEFER_TASKRUN) != 0;
  features->submit_all = (sf & IORING_SETUP_SUBMIT_ALL) != 0;
  return absl::OkStatus();
}

absl::Status probe_features(const Options& options, io_uring* ring, Features* features) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (probe == nullptr) {
    return absl::UnimplementedError("io_uring opcode probe unsupported (kernel older than 5.6)");
  }
  features->last_opcode = probe->last_op;
  for (uint32_t i = 0; i < probe->ops_len && i < 256; ++i) {
    if ((probe->ops[i].flags & IO_URING_OP_SUPPORTED) != 0) {
      features->opcodes[i / 64] |= uint64_t{1} << (i % 64);
    }
  }
  io_uring_free_probe(probe);
  features->send_zc = features->opcode_supported(IORING_OP_SEND_ZC);

  // Without NODROP a full CQ silently loses completions, and with them operations; without
  // FAST_POLL every idle socket read parks an io-wq thread. Neither is survivable at scale.
  std::string missing;
  if (!features->nodrop) absl::StrAppend(&missing, " IORING_FEAT_NODROP");
  if (!features->fast_poll) absl::StrAppend(&missing, " IORING_FEAT_FAST_POLL");
  struct Required {
    uint32_t opcode;
    const char* name;
  };
  static constexpr Required kRequired[] = {
      {IORING_OP_NOP, "NOP"},           {IORING_OP_ACCEPT, "ACCEPT"},
      {IORING_OP_CONNECT, "CONNECT"},   {IORING_OP_RECV, "RECV"},
      {IORING_OP_SEND, "SEND"},         {IORING_OP_CLOSE, "CLOSE"},
      {IORING_OP_TIMEOUT, "TIMEOUT"},   {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
      {IORING_OP_POLL_ADD, "POLL_ADD"}, {IORING_OP_OPENAT, "OPENAT"},
      {IORING_OP_READ, "READ"},         {IORING_OP_WRITE, "WRITE"},
      {IORING_OP_FSYNC, "FSYNC"},       {IORING_OP_FALLOCATE, "FALLOCATE"},
  };
  for (const Required& r : kRequired) {
    if (!features->opcode_supported(r.opcode)) absl::StrAppend(&missing, " IORING_OP_", r.name);
  }
  if (!missing.empty()) {
    return absl::UnimplementedError(
        absl::StrCat("io_uring on this kernel lacks what the event loop needs:", missing,
                     " (Linux 5.7 or later required; 6.1 recommended)"));
  }

  // cancel_any first: it must run while nothing else is in flight.
  features->cancel_any = probe_cancel_any(ring);
  features->multishot_accept = probe_multishot_accept(ring);
  features->multishot_poll = probe_multishot_poll(ring);
  probe_buffers(ring, features);

  features->use_multishot_accept = features->multishot_accept && options.allow_multishot_accept;
  features->use_multishot_recv = features->multishot_recv && options.allow_multishot_recv;
  features->use_multishot_poll = features->multishot_poll && options.allow_multishot_poll;
  return absl::OkStatus();
}

}  // namespace herald::uring::detail

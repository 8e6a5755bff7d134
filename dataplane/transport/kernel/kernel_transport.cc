// KernelTransport: socket shards (a ring, file table and buffer ring each), accepts straight
// into the tables as direct descriptors, connection slots with generations, multishot receive,
// pooled send chunks sent in order, graceful / abortive close, pause and resume of reading, and
// stop. Every socket operation names its direct descriptor (IOSQE_FIXED_FILE).
#include "dataplane/transport/kernel/kernel_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "dataplane/transport/kernel/direct_ring.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::dataplane {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr uint32_t kMaxShards = 255;              // 8 bits of the connection id
constexpr uint32_t kMaxSlotsPerShard = 1u << 24;  // 24 bits of the connection id
constexpr uint32_t kMinShardCapacity = 8;
constexpr uint32_t kReapBatch = 64;

enum class State : uint8_t {
  kFree,     // slot unused
  kOpen,     // events flow
  kClosing,  // graceful close: flushing the send queue, then FIN
  kFinSent,  // our FIN is out; waiting for the peer's (or the linger bound)
  kDead,     // torn down: waiting for our operations to end, then close_direct and on_closed
};

// What a shard CQE is for: the kind in the top byte of user_data, a connection slot or an
// accept slot in the low 32 bits. A slot's operations all end before the slot is reused, so
// no generation is needed here.
enum Kind : uint8_t {
  kAccept = 1,
  kRecv,
  kSend,
  kTimer,
  kShutdown,
  kClose,
  kSockopt,
  kCancel,
  kAcceptRetry,
  kTestSocket,
  kTestClose,
};

uint64_t user_data(Kind kind, uint32_t index) {
  return (uint64_t{kind} << 56) | index;
}

// A reset peer shows up as ECONNRESET on receive, EPIPE or ECONNRESET on send, and ENOTCONN
// on shutdown(2).
CloseReason reason_for_error(int32_t result) {
  return (result == -ECONNRESET || result == -EPIPE || result == -ENOTCONN)
             ? CloseReason::kPeerReset
             : CloseReason::kIoError;
}

// accept(2) errors about one connection (it went away before we took it): take the next.
bool accept_error_is_transient(int32_t result) {
  switch (-result) {
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EAGAIN:
    case EINTR:
    case EPERM: return true;
    default: return false;
  }
}

// SO_LINGER 0: close sends an RST and drops whatever the socket still holds. Static: the
// kernel reads it when the SQE is issued.
const linger kResetLinger{.l_onoff = 1, .l_linger = 0};

__kernel_timespec to_timespec(uint64_t ns) {
  return __kernel_timespec{.tv_sec = static_cast<int64_t>(ns / kNsPerSecond),
                           .tv_nsec = static_cast<long long>(ns % kNsPerSecond)};
}

}  // namespace

struct KernelTransport::Chunk {
  Chunk* next = nullptr;
  uint32_t begin = 0;  // first byte not yet taken by the kernel
  uint32_t end = 0;    // one past the last byte queued
  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
};

struct KernelTransport::Connection {
  Connection(Shard* s, uint32_t slot) : shard(s), index(slot) {}

  ConnectionId id() const;
  bool wants_recv() const {
    if (peer_eof) return false;
    return (state == State::kOpen && reading) || state == State::kClosing ||
           state == State::kFinSent;
  }
  bool busy() const {
    return recv_in_flight || send_in_flight || timer_in_flight || shutdown_in_flight || scheduled;
  }

  Shard* const shard;
  const uint32_t index;
  uint32_t generation = 0;
  uint32_t file_index = 0;  // the direct descriptor
  State state = State::kFree;
  CloseReason reason = CloseReason::kLocalClose;
  bool reading = true;
  bool recv_cancelled = false;  // a cancel of the receive is on its way (pause)
  bool peer_eof = false;
  bool above_low_water = false;
  bool reset = false;  // close with an RST
  bool scheduled = false;
  bool recv_in_flight = false;  // armed, or parked waiting for buffers (recv_starved)
  bool recv_starved = false;
  bool recv_local_end = false;  // a parked receive was cancelled: end it from the loop
  bool send_in_flight = false;
  bool timer_in_flight = false;
  bool shutdown_in_flight = false;
  uint32_t queued = 0;           // bytes queued and not yet taken by the kernel
  uint32_t in_flight_bytes = 0;  // length of the send request in flight
  Chunk* head = nullptr;
  Chunk* tail = nullptr;
  __kernel_timespec timer_ts{};  // read by the kernel when the timeout is submitted
  // Bytes received while reading was paused (before the receive's cancel landed), or after a
  // resume and before they were delivered: delivered first, in order, on resume. Only the
  // pause path ever allocates here.
  std::vector<uint8_t> held;
};

struct KernelTransport::Shard {
  struct AcceptSlot {
    sockaddr_storage address{};  // the peer, written by the kernel with the accept
    socklen_t length = 0;
    bool in_flight = false;
  };

  uint32_t index = 0;
  std::unique_ptr<DirectRing> ring;
  uint32_t capacity = 0;    // file table entries
  uint32_t table_used = 0;  // entries holding a socket of ours, until its close completes
  uint32_t closes_in_flight = 0;
  std::vector<AcceptSlot> accepts;
  uint32_t accepts_in_flight = 0;
  bool accept_paused = false;  // after an accept error, until the retry timer fires
  bool retry_in_flight = false;
  __kernel_timespec retry_ts{};
  // Slots never move (the transport keeps pointers); freed slots are reused with the next
  // generation, so steady state allocates nothing per connection.
  std::vector<std::unique_ptr<Connection>> slots;
  std::vector<uint32_t> free_slots;
  uint32_t open = 0;
  std::vector<Connection*> starved;  // receives parked on an empty buffer ring
  bool recycled = false;             // buffers went back since the starved were last re-armed
  std::vector<uint32_t> test_slots;  // occupy_table_for_testing()
  uint32_t test_pending = 0;
};

ConnectionId KernelTransport::Connection::id() const {
  return (static_cast<uint64_t>(generation) << 32) | (uint64_t{shard->index} << 24) | index;
}

size_t KernelTransport::connection_bytes() {
  // The slot object, its owning pointer, and its entry on the free list when it is free.
  return sizeof(Connection) + sizeof(std::unique_ptr<Connection>) + sizeof(uint32_t);
}

// --- Creation and teardown -------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<KernelTransport>> KernelTransport::create(
    uring::EventLoop& loop, const KernelTransportOptions& options) {
  const TransportLimits& limits = options.limits;
  if (limits.send_queue_bytes == 0 || limits.send_low_water_bytes > limits.send_queue_bytes) {
    return absl::InvalidArgumentError(
        "transport limits: send_queue_bytes must be positive and at least send_low_water_bytes");
  }
  if (limits.max_connections == 0 || limits.max_connections > (1u << 31)) {
    return absl::InvalidArgumentError("transport limits: max_connections must be in [1, 2^31]");
  }
  if (options.send_chunk_bytes < 256 || options.send_chunk_bytes > (64u << 20)) {
    return absl::InvalidArgumentError("transport: send_chunk_bytes must be in [256, 64 MiB]");
  }
  if (options.close_linger_ms == 0 || options.accept_retry_ms == 0) {
    return absl::InvalidArgumentError("transport: close_linger_ms and accept_retry_ms must be > 0");
  }
  if (options.listen_backlog == 0) {
    return absl::InvalidArgumentError("transport: listen_backlog must be positive");
  }
  if (options.accept_batch == 0 || options.accept_batch > 4096) {
    return absl::InvalidArgumentError("transport: accept_batch must be in [1, 4096]");
  }
  const uint32_t count = options.recv_buffer_count;
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0 ||
      options.recv_buffer_size_bytes == 0) {
    return absl::InvalidArgumentError(
        "transport: recv_buffer_count must be a power of two up to 32768, buffers non-empty");
  }
  if (options.shard_sq_entries == 0 || options.shard_cq_entries < options.shard_sq_entries) {
    return absl::InvalidArgumentError("transport: shard ring sizes must be positive, CQ >= SQ");
  }

  // Shards: a table may hold at most RLIMIT_NOFILE entries (the kernel's per-ring cap), less
  // what the process keeps for its other descriptors.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return absl::ErrnoToStatus(errno, "getrlimit");
  const uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : rl.rlim_cur;
  if (nofile < uint64_t{options.fd_reserve} + kMinShardCapacity) {
    return absl::FailedPreconditionError(
        absl::StrCat("transport: RLIMIT_NOFILE (", nofile,
                     ") leaves no room for a socket shard's file table "
                     "after fd_reserve (",
                     options.fd_reserve, ")"));
  }
  uint64_t capacity = nofile - options.fd_reserve;
  if (options.shard_capacity != 0) capacity = std::min<uint64_t>(capacity, options.shard_capacity);
  capacity = std::min<uint64_t>(capacity, kMaxSlotsPerShard - 1);
  if (capacity < kMinShardCapacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("transport: shard_capacity must be at least ", kMinShardCapacity));
  }
  // Room for max_connections plus accept_batch more: accepts in flight and over-limit
  // connections being refused each hold a slot, and at the limit they must still find one.
  const uint64_t wanted = uint64_t{limits.max_connections} + options.accept_batch;
  const uint64_t shard_count = (wanted + capacity - 1) / capacity;
  if (shard_count > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "transport: max_connections ", limits.max_connections, " needs ", shard_count,
        " socket shards of ", capacity, " (RLIMIT_NOFILE ", nofile, "); at most ", kMaxShards));
  }

  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, options.listen_address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(options.port);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, options.listen_address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(options.port);
    len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError("transport: not an IPv4 or IPv6 address: " +
                                      options.listen_address);
  }

  const int event_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd < 0) return absl::ErrnoToStatus(errno, "transport eventfd");
  std::vector<std::unique_ptr<Shard>> shards;
  uint64_t left = wanted;
  for (uint32_t i = 0; i < shard_count; ++i) {
    auto shard = std::make_unique<Shard>();
    shard->index = i;
    shard->capacity = static_cast<uint32_t>(std::min(left, capacity));
    left -= shard->capacity;
    DirectRingOptions ro;
    ro.sq_entries = options.shard_sq_entries;
    ro.cq_entries = options.shard_cq_entries;
    ro.table_slots = shard->capacity;
    ro.buffer_count = options.recv_buffer_count;
    ro.buffer_size_bytes = options.recv_buffer_size_bytes;
    ro.event_fd = event_fd;
    auto ring = DirectRing::create(ro);
    if (!ring.ok()) {
      shards.clear();
      ::close(event_fd);
      return absl::Status(ring.status().code(), absl::StrCat("transport socket shard ", i, ": ",
                                                             ring.status().message()));
    }
    shard->ring = std::move(*ring);
    shard->accepts.resize(options.accept_batch);
    shards.push_back(std::move(shard));
  }

  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    shards.clear();
    ::close(event_fd);
    return absl::ErrnoToStatus(err, "transport listen socket");
  }
  const int one = 1;
  // SO_REUSEPORT: every worker binds its own listener to the same port and the kernel spreads
  // incoming connections across them, so no accept lock and no hand-off between workers.
  // TCP_NODELAY on the listener: accepted sockets inherit it, which spares a setsockopt per
  // connection on a direct descriptor.
  bool ok = ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0 &&
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0;
  if (ok && ss.ss_family == AF_INET6) {
    ok = ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0;
  }
  const std::string where = options.listen_address + ":" + std::to_string(options.port);
  if (!ok || ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(fd, static_cast<int>(std::min<uint32_t>(options.listen_backlog, 1u << 30))) != 0) {
    const int err = errno;
    ::close(fd);
    shards.clear();
    ::close(event_fd);
    return absl::ErrnoToStatus(err, "transport bind/listen " + where);
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  const uint16_t port =
      ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  HLOG_INFO("transport.listening")
      .kv("address", options.listen_address)
      .kv("port", port)
      .kv("shards", shard_count)
      .kv("shard_capacity", capacity)
      .kv("rlimit_nofile", nofile)
      .kv("recv_buffers", options.recv_buffer_count)
      .kv("recv_buffer_bytes", options.recv_buffer_size_bytes);
  std::unique_ptr<KernelTransport> t(new KernelTransport(loop, options, fd, port, event_fd));
  t->shards_ = std::move(shards);
  t->stats_.shards = static_cast<uint32_t>(t->shards_.size());
  for (const auto& shard : t->shards_) t->stats_.table_slots += shard->capacity;
  return t;
}

KernelTransport::KernelTransport(uring::EventLoop& loop, const KernelTransportOptions& options,
                                 int listen_fd, uint16_t port, int event_fd)
    : loop_(loop),
      options_(options),
      listen_fd_(listen_fd),
      port_(port),
      event_fd_(event_fd),
      multishot_recv_(loop.features().use_multishot_recv),
      doorbell_op_(&KernelTransport::on_doorbell, this),
      kick_op_(&KernelTransport::on_kick, this) {}

KernelTransport::~KernelTransport() {
  if (!stopping_) stop();
  // Bounded: cancels complete promptly; a stuck kernel is the loop's shutdown's business.
  for (int i = 0; i < 1000 && !idle(); ++i) (void)loop_.run_once(10 * kNsPerMs);
  if (!idle()) {
    HLOG_ERROR("transport.destroyed_busy").kv("connections", open_connections_);
  }
  if (doorbell_op_.in_flight()) (void)loop_.cancel(doorbell_op_);
  for (int i = 0; i < 1000 && (doorbell_op_.in_flight() || kick_op_.in_flight()); ++i) {
    (void)loop_.run_once(10 * kNsPerMs);
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  // Destroying a ring cancels what the kernel still holds; receives have ended (idle()).
  shards_.clear();
  ::close(event_fd_);
  while (free_chunks_ != nullptr) {
    Chunk* next = free_chunks_->next;
    free_chunks_->~Chunk();
    ::operator delete(free_chunks_);
    free_chunks_ = next;
  }
}

void KernelTransport::start(TransportEvents& events) {
  HERALD_CHECK(events_ == nullptr, "KernelTransport started twice");
  HERALD_CHECK(!stopping_, "KernelTransport started after stop");
  events_ = &events;
  loop_.poll(doorbell_op_, event_fd_, POLLIN, /*persistent=*/true);
  arm_accepts();
  want_pump();
}

void KernelTransport::stop() {
  if (stopping_) return;
  stopping_ = true;
  // From here the worker drives only its loop (run_once until idle()): the eventfd wakes it.
  driven_ = false;
  for (auto& shard : shards_) {
    shard->ring->set_eventfd_enabled(true);
    for (uint32_t i = 0; i < shard->accepts.size(); ++i) {
      if (!shard->accepts[i].in_flight) continue;
      io_uring_sqe* sqe = shard->ring->sqe();
      io_uring_prep_cancel64(sqe, user_data(kAccept, i), 0);
      sqe->user_data = user_data(kCancel, 0);
    }
    if (shard->retry_in_flight) {
      io_uring_sqe* sqe = shard->ring->sqe();
      io_uring_prep_cancel64(sqe, user_data(kAcceptRetry, 0), 0);
      sqe->user_data = user_data(kCancel, 0);
    }
  }
  // A stopping worker does not wait on slow peers: whatever the layer above wanted delivered it
  // closed gracefully before stopping.
  for (auto& shard : shards_) {
    for (auto& conn : shard->slots) {
      if (conn->state != State::kFree) teardown(*conn, CloseReason::kShutdown, /*reset=*/true);
    }
  }
  maybe_close_listener();
  want_pump();
}

bool KernelTransport::idle() const {
  if (listen_fd_ >= 0 || accepts_in_flight_ != 0 || open_connections_ != 0) return false;
  for (const auto& shard : shards_) {
    if (shard->closes_in_flight != 0 || shard->retry_in_flight || shard->test_pending != 0) {
      return false;
    }
  }
  return true;
}

const KernelTransportStats& KernelTransport::stats() const {
  return stats_;
}

void KernelTransport::maybe_close_listener() {
  if (!stopping_ || accepts_in_flight_ != 0 || listen_fd_ < 0) return;
  for (const auto& shard : shards_) {
    if (shard->retry_in_flight) return;
  }
  ::close(listen_fd_);
  listen_fd_ = -1;
}

// --- Driving the shards ------------------------------------------------------------------------

void KernelTransport::on_doorbell(uring::Operation& op, const uring::Completion& c) {
  auto* t = op.context_as<KernelTransport>();
  if (c.result < 0) return;  // cancelled (destruction)
  uint64_t value;
  (void)!::read(t->event_fd_, &value, sizeof(value));
  (void)t->pump();
}

void KernelTransport::on_kick(uring::Operation& op, const uring::Completion& c) {
  (void)c;
  (void)op.context_as<KernelTransport>()->pump();
}

void KernelTransport::want_pump() {
  // A worker that polls us submits at its next turn; otherwise the loop runs pump() for us.
  if (pumping_ || driven_ || events_ == nullptr || kick_op_.in_flight()) return;
  loop_.nop(kick_op_);
}

uint32_t KernelTransport::poll() {
  if (!driven_ && !stopping_) {
    driven_ = true;
    for (auto& shard : shards_) shard->ring->set_eventfd_enabled(false);
  }
  return pump();
}

bool KernelTransport::prepare_to_sleep() {
  for (auto& shard : shards_) shard->ring->submit();
  if (!scheduled_.empty()) return false;
  for (auto& shard : shards_) shard->ring->set_eventfd_enabled(true);
  // The kernel posts a CQE, then looks at the flag; we set the flag, then look at the CQ: one
  // of the two sees the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool work = false;
  for (auto& shard : shards_) work = work || shard->ring->has_cqes();
  if (work) return false;
  driven_ = false;  // asleep: calls made from the loop's callbacks need the kick again
  return true;
}

uint32_t KernelTransport::pump() {
  if (pumping_) return 0;
  pumping_ = true;
  uint32_t work = 0;
  auto rearm_starved = [this](Shard& shard) {
    if (!shard.recycled || shard.starved.empty()) return;
    shard.recycled = false;
    std::vector<Connection*> starved;
    starved.swap(shard.starved);
    for (Connection* conn : starved) {
      if (!conn->recv_starved) continue;  // cancelled while parked
      conn->recv_starved = false;
      conn->recv_in_flight = false;
      arm_recv(*conn);
    }
  };
  for (auto& shard : shards_) {
    rearm_starved(*shard);
    shard->ring->submit();
  }
  for (auto& shard : shards_) work += reap_shard(*shard);
  if (!scheduled_.empty()) {
    work += static_cast<uint32_t>(scheduled_.size());
    run_scheduled();
  }
  arm_accepts();
  for (auto& shard : shards_) {
    rearm_starved(*shard);
    shard->ring->submit();
  }
  pumping_ = false;
  // Work left for the next round: what the layer above scheduled, completions the kernel
  // still holds (the eventfd will not fire for those again), and completions posted inline by
  // the submits just above (the eventfd does not reliably fire for those either).
  bool more = !scheduled_.empty();
  for (auto& shard : shards_) more = more || shard->ring->has_cqes();
  if (more) want_pump();
  return work;
}

uint32_t KernelTransport::reap_shard(Shard& shard) {
  DirectCqe batch[kReapBatch];
  uint32_t total = 0;
  // Bounded so a flood of completions on one shard cannot starve the others of a turn.
  while (total < options_.shard_cq_entries) {
    const uint32_t n = shard.ring->reap(batch, kReapBatch);
    if (n == 0) break;
    total += n;
    for (uint32_t i = 0; i < n; ++i)
      handle(shard, batch[i].user_data, batch[i].res, batch[i].flags);
  }
  return total;
}

void KernelTransport::handle(Shard& shard, uint64_t data, int32_t res, uint32_t flags) {
  const auto kind = static_cast<Kind>(data >> 56);
  const auto index = static_cast<uint32_t>(data);
  auto conn_at = [&shard, index]() -> Connection* {
    HERALD_CHECK(index < shard.slots.size(), "shard CQE names no connection slot");
    return shard.slots[index].get();
  };
  switch (kind) {
    case kAccept: on_accept(shard, index, res); break;
    case kRecv: on_recv(*conn_at(), res, flags); break;
    case kSend: on_send(*conn_at(), res); break;
    case kTimer: on_timer(*conn_at(), res); break;
    case kShutdown: on_shutdown(*conn_at(), res); break;
    case kClose:
      --shard.closes_in_flight;
      --shard.table_used;
      if (res < 0) {
        ++stats_.close_errors;
        HLOG_RATE_LIMITED(kWarn, "transport.close_direct_failed", 1).kv("errno", -res);
      }
      arm_accepts();
      break;
    case kSockopt:
      if (res < 0) {
        ++stats_.close_errors;
        HLOG_RATE_LIMITED(kWarn, "transport.linger_failed", 1).kv("errno", -res);
      }
      break;
    case kAcceptRetry: on_accept_retry(shard, res); break;
    case kTestSocket:
      --shard.test_pending;
      if (res >= 0) shard.test_slots.push_back(static_cast<uint32_t>(res));
      break;
    case kCancel:
    case kTestClose: break;
  }
}

// --- Accepting -------------------------------------------------------------------------------

// Fill-first: accepts go to the lowest shard with room, so a small load stays on shard 0 and a
// full shard simply stops taking connections while the next one does (one listener shared by
// all shards: a full shard never has to refuse what another could hold). Every accept in flight
// holds a table slot in the accounting, so the kernel never meets a full table.
void KernelTransport::arm_accepts() {
  if (events_ == nullptr || stopping_ || listen_fd_ < 0) return;
  for (auto& shard_ptr : shards_) {
    Shard& shard = *shard_ptr;
    if (accepts_in_flight_ >= options_.accept_batch) break;
    if (shard.accept_paused) continue;
    uint32_t slot = 0;
    while (accepts_in_flight_ < options_.accept_batch &&
           shard.table_used + shard.accepts_in_flight < shard.capacity) {
      while (shard.accepts[slot].in_flight) ++slot;
      Shard::AcceptSlot& a = shard.accepts[slot];
      a.length = sizeof(a.address);
      io_uring_sqe* sqe = shard.ring->sqe();
      // No SOCK_CLOEXEC: the kernel refuses it for direct descriptors (they are never
      // inherited anyway).
      io_uring_prep_accept_direct(sqe, listen_fd_, reinterpret_cast<sockaddr*>(&a.address),
                                  &a.length, SOCK_NONBLOCK, IORING_FILE_INDEX_ALLOC - 1);
      sqe->user_data = user_data(kAccept, slot);
      a.in_flight = true;
      ++shard.accepts_in_flight;
      ++accepts_in_flight_;
    }
  }
  want_pump();
}

void KernelTransport::on_accept(Shard& shard, uint32_t slot, int32_t res) {
  Shard::AcceptSlot& a = shard.accepts[slot];
  a.in_flight = false;
  --shard.accepts_in_flight;
  --accepts_in_flight_;
  if (res >= 0) {
    ++shard.table_used;
    PeerAddress peer;
    peer.length = std::min<socklen_t>(a.length, sizeof(peer.address));
    std::memcpy(&peer.address, &a.address, peer.length);
    accept_one(shard, static_cast<uint32_t>(res), peer);
  } else if (res != -ECANCELED && !accept_error_is_transient(res)) {
    // ENFILE: the table was full, so the kernel accepted the connection and dropped it. The
    // accounting above makes that impossible unless something else filled the table.
    if (res == -ENFILE) ++stats_.table_full;
    ++stats_.accept_errors;
    HLOG_RATE_LIMITED(kWarn, "transport.accept_failed", 1)
        .kv("errno", -res)
        .kv("shard", shard.index);
    // Pause this shard instead of spinning on the same error; the others go on.
    if (!shard.accept_paused && !stopping_) {
      shard.accept_paused = true;
      shard.retry_in_flight = true;
      shard.retry_ts = to_timespec(options_.accept_retry_ms * kNsPerMs);
      io_uring_sqe* sqe = shard.ring->sqe();
      io_uring_prep_timeout(sqe, &shard.retry_ts, 0, 0);
      sqe->user_data = user_data(kAcceptRetry, 0);
    }
  }
  if (stopping_) {
    maybe_close_listener();
  } else {
    arm_accepts();
  }
}

void KernelTransport::on_accept_retry(Shard& shard, int32_t res) {
  (void)res;
  shard.retry_in_flight = false;
  shard.accept_paused = false;
  if (stopping_) {
    maybe_close_listener();
  } else {
    arm_accepts();
  }
}

void KernelTransport::close_direct(Shard& shard, uint32_t file_index, bool reset) {
  if (reset) {
    io_uring_sqe* sqe = shard.ring->sqe();
    prep_direct_setsockopt(sqe, file_index, SOL_SOCKET, SO_LINGER, &kResetLinger,
                           sizeof(kResetLinger));
    // Not linked to the close: a linked request is issued from task work, which this ring
    // (DEFER_TASKRUN) runs only at the next pump, so the RST would wait for it. Unlinked, both
    // are issued inline at submit and in SQ order (a setsockopt never goes async), and the
    // close runs even if the setsockopt failed (the slot must come back).
    sqe->user_data = user_data(kSockopt, file_index);
  }
  io_uring_sqe* sqe = shard.ring->sqe();
  io_uring_prep_close_direct(sqe, file_index);
  sqe->user_data = user_data(kClose, file_index);
  ++shard.closes_in_flight;
  want_pump();
}

void KernelTransport::accept_one(Shard& shard, uint32_t file_index, const PeerAddress& peer) {
  if (stopping_) {
    close_direct(shard, file_index, /*reset=*/false);
    return;
  }
  if (open_connections_ >= options_.limits.max_connections) {
    ++stats_.refused_over_limit;
    // RST rather than FIN: the client learns at once and the server keeps no TIME_WAIT.
    close_direct(shard, file_index, /*reset=*/true);
    return;
  }
  Connection* conn;
  if (!shard.free_slots.empty()) {
    conn = shard.slots[shard.free_slots.back()].get();
    shard.free_slots.pop_back();
  } else {
    shard.slots.push_back(
        std::make_unique<Connection>(&shard, static_cast<uint32_t>(shard.slots.size())));
    conn = shard.slots.back().get();
  }
  if (++conn->generation == 0) conn->generation = 1;  // id 0 is kNoConnection
  conn->file_index = file_index;
  conn->state = State::kOpen;
  conn->reason = CloseReason::kLocalClose;
  conn->reading = true;
  conn->recv_cancelled = false;
  conn->peer_eof = false;
  conn->above_low_water = false;
  conn->reset = false;
  conn->queued = 0;
  conn->in_flight_bytes = 0;
  ++shard.open;
  ++open_connections_;
  ++stats_.accepts;
  events_->on_accepted(conn->id(), peer);
  // on_accepted may have paused, closed or sent already.
  if (conn->state == State::kOpen && conn->reading && !conn->recv_in_flight) arm_recv(*conn);
}

// --- Lookup ------------------------------------------------------------------------------------

KernelTransport::Connection* KernelTransport::find(ConnectionId id) const {
  const auto slot = static_cast<uint32_t>(id & 0xffffffu);
  const uint32_t shard = shard_of(id);
  const auto generation = static_cast<uint32_t>(id >> 32);
  if (shard < shards_.size() && slot < shards_[shard]->slots.size()) {
    Connection* conn = shards_[shard]->slots[slot].get();
    if (conn->generation == generation && conn->state != State::kFree) return conn;
  }
  ++stats_.unknown_id_calls;
  return nullptr;
}

uint32_t KernelTransport::queued_bytes(ConnectionId id) const {
  const Connection* conn = find(id);
  return conn == nullptr ? 0 : conn->queued;
}

// --- Receiving ---------------------------------------------------------------------------------

void KernelTransport::arm_recv(Connection& conn) {
  conn.recv_cancelled = false;
  conn.recv_in_flight = true;
  ++stats_.recv_rearms;
  io_uring_sqe* sqe = conn.shard->ring->sqe();
  if (multishot_recv_) {
    io_uring_prep_recv_multishot(sqe, static_cast<int>(conn.file_index), nullptr, 0, 0);
  } else {
    io_uring_prep_recv(sqe, static_cast<int>(conn.file_index), nullptr, 0, 0);
  }
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = conn.shard->ring->buffer_group();
  sqe->user_data = user_data(kRecv, conn.index);
  want_pump();
}

void KernelTransport::on_recv(Connection& conn, int32_t res, uint32_t flags) {
  DirectRing& ring = *conn.shard->ring;
  if ((flags & IORING_CQE_F_BUFFER) != 0) {
    const auto buffer_id = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    ring.take(buffer_id);
    if (res > 0) {
      const auto n = static_cast<size_t>(res);
      const uint8_t* data = ring.buffer(buffer_id);
      stats_.bytes_in += n;
      if (conn.state == State::kOpen) {
        if (conn.reading && conn.held.empty()) {
          events_->on_data(conn.id(), std::span<const uint8_t>(data, n));
        } else {
          // Paused (the cancel has not landed yet) or a resume has not delivered the earlier
          // held bytes yet: keep order by holding these too.
          conn.held.insert(conn.held.end(), data, data + n);
          stats_.paused_bytes += n;
        }
      }
    }
    // Closing connections keep draining what the peer sends (unread data at close would turn
    // our FIN into an RST) but nobody wants it any more.
    (void)ring.recycle(buffer_id);
    conn.shard->recycled = true;
  }
  if ((flags & IORING_CQE_F_MORE) != 0) return;
  conn.recv_in_flight = false;
  if (res == -ENOBUFS && conn.state != State::kDead && !conn.recv_cancelled) {
    // The buffer ring ran dry: park the receive until buffers come back (pump re-arms it).
    ++stats_.recv_buffers_exhausted;
    conn.recv_in_flight = true;
    conn.recv_starved = true;
    conn.shard->starved.push_back(&conn);
    return;
  }
  recv_ended(conn, res);
}

void KernelTransport::recv_ended(Connection& conn, int32_t res) {
  conn.recv_cancelled = false;
  if (conn.state != State::kDead) {
    if (res == 0) {
      conn.peer_eof = true;
      if (conn.state == State::kOpen) {
        // Delivered bytes first: a paused connection or one with held bytes sees the FIN on
        // resume.
        if (conn.reading && conn.held.empty()) begin_close(conn, CloseReason::kPeerClosed);
      } else if (conn.state == State::kFinSent) {
        teardown(conn, conn.reason, /*reset=*/false);
      }
      // kClosing: the FIN goes out once the queue is flushed, and then we are done.
    } else if (res < 0 && res != -ECANCELED) {
      teardown(conn, reason_for_error(res), /*reset=*/false);
    }
  }
  if (conn.wants_recv() && !conn.recv_in_flight) arm_recv(conn);
  maybe_finish(conn);
}

void KernelTransport::cancel_op(Connection& conn, uint8_t kind) {
  io_uring_sqe* sqe = conn.shard->ring->sqe();
  io_uring_prep_cancel64(sqe, user_data(static_cast<Kind>(kind), conn.index), 0);
  sqe->user_data = user_data(kCancel, 0);
  want_pump();
}

void KernelTransport::cancel_recv(Connection& conn) {
  if (!conn.recv_in_flight || conn.recv_cancelled) return;
  conn.recv_cancelled = true;
  if (conn.recv_starved) {
    // Parked in user space: nothing to cancel in the kernel; end it from the loop.
    conn.recv_starved = false;
    conn.recv_local_end = true;
    schedule(conn);
    return;
  }
  cancel_op(conn, kRecv);
}

void KernelTransport::set_reading(ConnectionId id, bool reading) {
  Connection* conn = find(id);
  if (conn == nullptr || conn->state != State::kOpen) return;
  if (conn->reading == reading) return;
  conn->reading = reading;
  if (!reading) {
    cancel_recv(*conn);
    return;
  }
  // Held bytes and a held FIN are delivered from the loop, never from inside this call.
  schedule(*conn);
}

void KernelTransport::resume(Connection& conn) {
  if (!conn.reading) return;
  if (!conn.held.empty()) {
    events_->on_data(conn.id(), std::span<const uint8_t>(conn.held.data(), conn.held.size()));
    conn.held.clear();
    if (conn.state != State::kOpen || !conn.reading) return;
  }
  if (conn.peer_eof) {
    begin_close(conn, CloseReason::kPeerClosed);
    return;
  }
  if (!conn.recv_in_flight) arm_recv(conn);
  // In flight with its cancel pending: its final completion re-arms it (wants_recv()).
}

// --- Sending -----------------------------------------------------------------------------------

SendResult KernelTransport::send(ConnectionId id, std::span<const uint8_t> bytes) {
  const std::span<const uint8_t> parts[1] = {bytes};
  return send_gather(id, parts);
}

SendResult KernelTransport::send_gather(ConnectionId id,
                                        std::span<const std::span<const uint8_t>> parts) {
  Connection* conn = find(id);
  if (conn == nullptr || conn->state != State::kOpen) return SendResult::kClosed;
  return enqueue(*conn, parts);
}

SendResult KernelTransport::enqueue(Connection& conn,
                                    std::span<const std::span<const uint8_t>> parts) {
  uint64_t total = 0;
  for (const auto& part : parts) total += part.size();
  if (total == 0) return SendResult::kOk;
  if (conn.queued + total > options_.limits.send_queue_bytes) {
    ++stats_.queue_full;
    // The queue will not drain soon: waiting for it would let one reader that stopped hold
    // memory for everyone. Its messages stay in the store.
    teardown(conn, CloseReason::kSendQueueFull, /*reset=*/true);
    return SendResult::kQueueFull;
  }
  const uint32_t chunk_bytes = options_.send_chunk_bytes;
  for (const auto& part : parts) {
    const uint8_t* src = part.data();
    size_t left = part.size();
    while (left > 0) {
      if (conn.tail == nullptr || conn.tail->end == chunk_bytes) {
        Chunk* chunk = take_chunk();
        if (conn.tail != nullptr) {
          conn.tail->next = chunk;
        } else {
          conn.head = chunk;
        }
        conn.tail = chunk;
      }
      // Appending behind a send in flight on the same chunk is safe: the kernel reads only the
      // range it was given, and the next request covers the rest.
      const size_t n = std::min<size_t>(left, chunk_bytes - conn.tail->end);
      std::memcpy(conn.tail->data() + conn.tail->end, src, n);
      conn.tail->end += static_cast<uint32_t>(n);
      src += n;
      left -= n;
    }
  }
  conn.queued += static_cast<uint32_t>(total);
  ++stats_.sends;
  if (conn.queued > options_.limits.send_low_water_bytes) conn.above_low_water = true;
  if (!conn.send_in_flight) send_head(conn);
  return SendResult::kOk;
}

void KernelTransport::send_head(Connection& conn) {
  Chunk* chunk = conn.head;
  conn.in_flight_bytes = chunk->end - chunk->begin;
  conn.send_in_flight = true;
  ++stats_.send_requests;
  io_uring_sqe* sqe = conn.shard->ring->sqe();
  // MSG_NOSIGNAL: a reset peer returns EPIPE rather than killing the process with SIGPIPE.
  io_uring_prep_send(sqe, static_cast<int>(conn.file_index), chunk->data() + chunk->begin,
                     conn.in_flight_bytes, MSG_NOSIGNAL);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->user_data = user_data(kSend, conn.index);
  want_pump();
}

void KernelTransport::on_send(Connection& conn, int32_t res) {
  conn.send_in_flight = false;
  if (res > 0) {
    const auto n = static_cast<uint32_t>(res);
    stats_.bytes_out += n;
    conn.queued -= n;
    if (n < conn.in_flight_bytes) ++stats_.partial_sends;
    Chunk* chunk = conn.head;
    chunk->begin += n;
    if (chunk->begin == chunk->end) {
      conn.head = chunk->next;
      if (conn.head == nullptr) conn.tail = nullptr;
      release_chunk(chunk);
    }
  } else if (conn.state != State::kDead) {
    // 0 bytes for a non-empty send: the socket takes nothing more; a broken pipe in effect.
    teardown(conn, res == 0 ? CloseReason::kPeerReset : reason_for_error(res), /*reset=*/false);
  }
  if (conn.state == State::kDead) {
    maybe_finish(conn);
    return;
  }
  if (conn.queued > 0) {
    send_head(conn);
  } else if (conn.state == State::kClosing) {
    send_fin(conn);
  }
  if (conn.state == State::kOpen && conn.above_low_water &&
      conn.queued <= options_.limits.send_low_water_bytes) {
    conn.above_low_water = false;
    ++stats_.writable_events;
    events_->on_writable(conn.id());
  }
  maybe_finish(conn);
}

KernelTransport::Chunk* KernelTransport::take_chunk() {
  Chunk* chunk = free_chunks_;
  if (chunk != nullptr) {
    free_chunks_ = chunk->next;
    --free_chunk_count_;
  } else {
    ++stats_.send_chunks_allocated;
    chunk = new (::operator new(sizeof(Chunk) + options_.send_chunk_bytes)) Chunk();
  }
  chunk->next = nullptr;
  chunk->begin = 0;
  chunk->end = 0;
  return chunk;
}

void KernelTransport::release_chunk(Chunk* chunk) {
  if (free_chunk_count_ < options_.send_chunk_cache) {
    chunk->next = free_chunks_;
    free_chunks_ = chunk;
    ++free_chunk_count_;
    return;
  }
  chunk->~Chunk();
  ::operator delete(chunk);
}

void KernelTransport::release_chunks(Connection& conn) {
  while (Chunk* chunk = conn.head) {
    conn.head = chunk->next;
    release_chunk(chunk);
  }
  conn.tail = nullptr;
  conn.queued = 0;
}

// --- Closing -----------------------------------------------------------------------------------

void KernelTransport::close(ConnectionId id, CloseMode mode) {
  Connection* conn = find(id);
  if (conn == nullptr || conn->state == State::kDead) return;
  if (mode == CloseMode::kAbort) {
    teardown(*conn, CloseReason::kLocalClose, /*reset=*/true);
  } else if (conn->state == State::kOpen) {
    begin_close(*conn, CloseReason::kLocalClose);
  }
}

void KernelTransport::begin_close(Connection& conn, CloseReason reason) {
  conn.state = State::kClosing;
  conn.reason = reason;
  conn.held.clear();
  // One bound for the whole graceful close, flushing included: a peer that stops reading must
  // not hold the connection (and its queue) forever.
  conn.timer_ts = to_timespec(options_.close_linger_ms * kNsPerMs);
  conn.timer_in_flight = true;
  io_uring_sqe* sqe = conn.shard->ring->sqe();
  io_uring_prep_timeout(sqe, &conn.timer_ts, 0, 0);
  sqe->user_data = user_data(kTimer, conn.index);
  want_pump();
  if (conn.wants_recv() && !conn.recv_in_flight) arm_recv(conn);
  if (conn.queued == 0) send_fin(conn);
}

void KernelTransport::send_fin(Connection& conn) {
  conn.state = State::kFinSent;
  conn.shutdown_in_flight = true;
  io_uring_sqe* sqe = conn.shard->ring->sqe();
  io_uring_prep_shutdown(sqe, static_cast<int>(conn.file_index), SHUT_WR);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->user_data = user_data(kShutdown, conn.index);
  want_pump();
}

void KernelTransport::on_shutdown(Connection& conn, int32_t res) {
  conn.shutdown_in_flight = false;
  if (conn.state != State::kDead) {
    if (res < 0) {
      teardown(conn, reason_for_error(res), /*reset=*/false);
    } else if (conn.peer_eof) {
      teardown(conn, conn.reason, /*reset=*/false);
    }
  }
  maybe_finish(conn);
}

void KernelTransport::on_timer(Connection& conn, int32_t res) {
  conn.timer_in_flight = false;
  // A timeout that fires reports -ETIME; a cancelled one -ECANCELED.
  if (res == -ETIME && (conn.state == State::kClosing || conn.state == State::kFinSent)) {
    ++stats_.linger_timeouts;
    // Still flushing: what is queued cannot be delivered in time, so reset; FIN already out:
    // an ordinary close.
    teardown(conn, conn.reason, /*reset=*/conn.state == State::kClosing);
  }
  maybe_finish(conn);
}

void KernelTransport::teardown(Connection& conn, CloseReason reason, bool reset) {
  if (conn.state == State::kDead || conn.state == State::kFree) return;
  conn.state = State::kDead;
  conn.reason = reason;
  conn.reset = reset;
  // The descriptor is closed only once every operation on it has ended; the schedule makes the
  // end asynchronous even when nothing is in flight, so on_closed never runs inside a
  // Transport call.
  cancel_recv(conn);
  if (conn.send_in_flight) cancel_op(conn, kSend);
  if (conn.timer_in_flight) cancel_op(conn, kTimer);
  schedule(conn);
}

void KernelTransport::schedule(Connection& conn) {
  if (conn.scheduled) return;
  conn.scheduled = true;
  scheduled_.push_back(&conn);
  want_pump();
}

void KernelTransport::run_scheduled() {
  running_.swap(scheduled_);
  for (Connection* conn : running_) {
    conn->scheduled = false;
    if (conn->recv_local_end) {
      conn->recv_local_end = false;
      conn->recv_in_flight = false;
      recv_ended(*conn, -ECANCELED);
      continue;
    }
    if (conn->state == State::kOpen) resume(*conn);
    maybe_finish(*conn);
  }
  running_.clear();
}

void KernelTransport::maybe_finish(Connection& conn) {
  if (conn.state != State::kDead || conn.busy()) return;
  Shard& shard = *conn.shard;
  // The table slot stays taken (in the accounting) until the close completes.
  close_direct(shard, conn.file_index, conn.reset);
  release_chunks(conn);
  conn.held.clear();
  const ConnectionId id = conn.id();
  const CloseReason reason = conn.reason;
  conn.state = State::kFree;
  shard.free_slots.push_back(conn.index);
  --shard.open;
  --open_connections_;
  ++stats_.closes[static_cast<size_t>(reason)];
  events_->on_closed(id, reason);
}

// --- Testing -----------------------------------------------------------------------------------

void KernelTransport::occupy_table_for_testing(uint32_t shard_index, uint32_t count) {
  HERALD_CHECK(shard_index < shards_.size(), "no such shard");
  Shard& shard = *shards_[shard_index];
  for (uint32_t i = 0; i < count; ++i) {
    io_uring_sqe* sqe = shard.ring->sqe();
    io_uring_prep_socket_direct_alloc(sqe, AF_INET, SOCK_STREAM, 0, 0);
    sqe->user_data = user_data(kTestSocket, 0);
    ++shard.test_pending;
  }
  // Sockets are created inline at submission; bounded in case the kernel defers them.
  for (int i = 0; i < 1000 && shard.test_pending > 0; ++i) {
    (void)pump();
    if (shard.test_pending > 0) ::usleep(1000);
  }
}

void KernelTransport::release_table_for_testing() {
  for (auto& shard : shards_) {
    for (uint32_t index : shard->test_slots) {
      io_uring_sqe* sqe = shard->ring->sqe();
      io_uring_prep_close_direct(sqe, index);
      sqe->user_data = user_data(kTestClose, 0);
    }
    shard->test_slots.clear();
    shard->ring->submit();
  }
}

}  // namespace herald::dataplane

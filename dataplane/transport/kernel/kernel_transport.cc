// KernelTransport: connection slots with generations, multishot accept and receive on the
// worker's io_uring loop, pooled send chunks sent in order, graceful / abortive close, pause and
// resume of reading, and stop.
#include "dataplane/transport/kernel/kernel_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::dataplane {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;

enum class State : uint8_t {
  kFree,     // slot unused
  kOpen,     // events flow
  kClosing,  // graceful close: flushing the send queue, then FIN
  kFinSent,  // our FIN is out; waiting for the peer's (or the linger bound)
  kDead,     // torn down: waiting for our operations to end, then close(2) and on_closed
};

// A reset peer shows up as ECONNRESET on receive, EPIPE or ECONNRESET on send, and ENOTCONN
// on shutdown(2).
CloseReason reason_for_error(int32_t result) {
  return (result == -ECONNRESET || result == -EPIPE || result == -ENOTCONN)
             ? CloseReason::kPeerReset
             : CloseReason::kIoError;
}

}  // namespace

struct KernelTransport::Chunk {
  Chunk* next = nullptr;
  uint32_t begin = 0;  // first byte not yet taken by the kernel
  uint32_t end = 0;    // one past the last byte queued
  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
};

struct KernelTransport::Connection {
  Connection(KernelTransport* t, uint32_t slot)
      : transport(t),
        index(slot),
        recv_op(&KernelTransport::on_recv, this),
        send_op(&KernelTransport::on_send, this),
        timer_op(&KernelTransport::on_timer, this),
        nop_op(&KernelTransport::on_nop, this) {}

  ConnectionId id() const { return (static_cast<uint64_t>(generation) << 32) | index; }
  bool wants_recv() const {
    if (peer_eof) return false;
    return (state == State::kOpen && reading) || state == State::kClosing ||
           state == State::kFinSent;
  }

  KernelTransport* const transport;
  const uint32_t index;
  uint32_t generation = 0;
  int fd = -1;
  State state = State::kFree;
  CloseReason reason = CloseReason::kLocalClose;
  bool reading = true;
  bool recv_cancelled = false;  // a cancel of recv_op is on its way (pause)
  bool peer_eof = false;
  bool above_low_water = false;
  uint32_t queued = 0;           // bytes queued and not yet taken by the kernel
  uint32_t in_flight_bytes = 0;  // length of the send request in flight
  Chunk* head = nullptr;
  Chunk* tail = nullptr;
  // Bytes received while reading was paused (before the receive's cancel landed), or after a
  // resume and before they were delivered: delivered first, in order, on resume. Only the
  // pause path ever allocates here.
  std::vector<uint8_t> held;
  uring::Operation recv_op;
  uring::Operation send_op;
  uring::Operation timer_op;
  uring::Operation nop_op;
};

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
  auto buffers =
      uring::BufferRing::create(loop, options.recv_buffer_count, options.recv_buffer_size_bytes);
  if (!buffers.ok()) return buffers.status();

  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "transport listen socket");
  const int one = 1;
  // SO_REUSEPORT: every worker binds its own listener to the same port and the kernel spreads
  // incoming connections across them, so no accept lock and no hand-off between workers.
  bool ok = ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
  if (ok && ss.ss_family == AF_INET6) {
    ok = ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0;
  }
  const std::string where = options.listen_address + ":" + std::to_string(options.port);
  if (!ok || ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(fd, static_cast<int>(std::min<uint32_t>(options.listen_backlog, 1u << 30))) != 0) {
    const int err = errno;
    ::close(fd);
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
      .kv("recv_buffers", options.recv_buffer_count)
      .kv("recv_buffer_bytes", options.recv_buffer_size_bytes);
  return std::unique_ptr<KernelTransport>(
      new KernelTransport(loop, options, fd, port, std::move(*buffers)));
}

KernelTransport::KernelTransport(uring::EventLoop& loop, const KernelTransportOptions& options,
                                 int listen_fd, uint16_t port,
                                 std::unique_ptr<uring::BufferRing> buffers)
    : loop_(loop),
      options_(options),
      listen_fd_(listen_fd),
      port_(port),
      buffers_(std::move(buffers)),
      accept_op_(&KernelTransport::on_accept, this),
      accept_retry_op_(&KernelTransport::on_accept_retry, this) {}

KernelTransport::~KernelTransport() {
  if (!stopping_) stop();
  // Bounded: cancels complete promptly; a stuck kernel is the loop's shutdown's business.
  for (int i = 0; i < 1000 && !idle(); ++i) (void)loop_.run_once(10 * kNsPerMs);
  if (!idle()) {
    HLOG_ERROR("transport.destroyed_busy").kv("connections", open_connections_);
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  buffers_.reset();  // receives have ended: they are what idle() waited for
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
  loop_.accept(accept_op_, listen_fd_);
}

void KernelTransport::stop() {
  if (stopping_) return;
  stopping_ = true;
  if (accept_op_.in_flight()) (void)loop_.cancel(accept_op_);
  if (accept_retry_op_.in_flight()) (void)loop_.cancel(accept_retry_op_);
  // A stopping worker does not wait on slow peers: whatever the layer above wanted delivered it
  // closed gracefully before stopping.
  for (auto& conn : slots_) {
    if (conn->state != State::kFree) teardown(*conn, CloseReason::kShutdown, /*reset=*/true);
  }
  maybe_close_listener();
}

bool KernelTransport::idle() const {
  return listen_fd_ < 0 && !accept_op_.in_flight() && !accept_retry_op_.in_flight() &&
         open_connections_ == 0;
}

const KernelTransportStats& KernelTransport::stats() const {
  // Counted by the loop per buffer ring owner; this transport is the ring's only user.
  stats_.recv_buffers_exhausted = loop_.stats().enobufs;
  return stats_;
}

void KernelTransport::maybe_close_listener() {
  if (!stopping_ || accept_op_.in_flight() || accept_retry_op_.in_flight()) return;
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
}

// --- Accepting -------------------------------------------------------------------------------

void KernelTransport::on_accept(uring::Operation& op, const uring::Completion& c) {
  auto* t = op.context_as<KernelTransport>();
  if (c.result >= 0) {
    t->accept_one(c.result);
  } else if (c.result != -ECANCELED) {
    ++t->stats_.accept_errors;
    HLOG_RATE_LIMITED(kWarn, "transport.accept_failed", 1).kv("errno", -c.result);
  }
  if (c.more) return;
  if (t->stopping_) {
    t->maybe_close_listener();
    return;
  }
  // EMFILE, ENFILE, ENOMEM end the accept: pause instead of spinning on the same error while
  // the connections waiting in the backlog keep it coming.
  t->loop_.timeout(t->accept_retry_op_, t->options_.accept_retry_ms * kNsPerMs);
}

void KernelTransport::on_accept_retry(uring::Operation& op, const uring::Completion& c) {
  auto* t = op.context_as<KernelTransport>();
  if (t->stopping_ || c.result < 0) {
    t->maybe_close_listener();
    return;
  }
  t->loop_.accept(t->accept_op_, t->listen_fd_);
}

void KernelTransport::accept_one(int fd) {
  if (stopping_) {
    ::close(fd);
    return;
  }
  if (open_connections_ >= options_.limits.max_connections) {
    ++stats_.refused_over_limit;
    // RST rather than FIN: the client learns at once and the server keeps no TIME_WAIT.
    const linger lg{.l_onoff = 1, .l_linger = 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    ::close(fd);
    return;
  }
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  PeerAddress peer;
  peer.length = sizeof(peer.address);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer.address), &peer.length) != 0) {
    peer.length = 0;
  }

  Connection* conn;
  if (!free_slots_.empty()) {
    conn = slots_[free_slots_.back()].get();
    free_slots_.pop_back();
  } else {
    slots_.push_back(std::make_unique<Connection>(this, static_cast<uint32_t>(slots_.size())));
    conn = slots_.back().get();
  }
  if (++conn->generation == 0) conn->generation = 1;  // id 0 is kNoConnection
  conn->fd = fd;
  conn->state = State::kOpen;
  conn->reason = CloseReason::kLocalClose;
  conn->reading = true;
  conn->recv_cancelled = false;
  conn->peer_eof = false;
  conn->above_low_water = false;
  conn->queued = 0;
  conn->in_flight_bytes = 0;
  ++open_connections_;
  ++stats_.accepts;
  events_->on_accepted(conn->id(), peer);
  // on_accepted may have paused, closed or sent already.
  if (conn->state == State::kOpen && conn->reading && !conn->recv_op.in_flight()) {
    arm_recv(*conn);
  }
}

// --- Lookup ------------------------------------------------------------------------------------

KernelTransport::Connection* KernelTransport::find(ConnectionId id) const {
  const auto index = static_cast<uint32_t>(id & 0xffffffffu);
  const auto generation = static_cast<uint32_t>(id >> 32);
  if (index < slots_.size()) {
    Connection* conn = slots_[index].get();
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
  ++stats_.recv_rearms;
  loop_.recv_multishot(conn.recv_op, conn.fd, *buffers_);
}

void KernelTransport::on_recv(uring::Operation& op, const uring::Completion& c) {
  auto* conn = op.context_as<Connection>();
  KernelTransport* t = conn->transport;
  if (c.result > 0 && c.buffer_ring != nullptr) {
    const auto n = static_cast<size_t>(c.result);
    t->stats_.bytes_in += n;
    if (conn->state == State::kOpen) {
      if (conn->reading && conn->held.empty()) {
        t->events_->on_data(conn->id(), std::span<const uint8_t>(c.data, n));
      } else {
        // Paused (the cancel has not landed yet) or a resume has not delivered the earlier
        // held bytes yet: keep order by holding these too.
        conn->held.insert(conn->held.end(), c.data, c.data + n);
        t->stats_.paused_bytes += n;
      }
    }
    // Closing connections keep draining what the peer sends (unread data at close(2) would
    // turn our FIN into an RST) but nobody wants it any more.
    c.buffer_ring->recycle(c.buffer_id);
  }
  if (c.more) return;
  conn->recv_cancelled = false;
  if (conn->state != State::kDead) {
    if (c.result == 0) {
      conn->peer_eof = true;
      if (conn->state == State::kOpen) {
        // Delivered bytes first: a paused connection or one with held bytes sees the FIN on
        // resume.
        if (conn->reading && conn->held.empty()) t->begin_close(*conn, CloseReason::kPeerClosed);
      } else if (conn->state == State::kFinSent) {
        t->teardown(*conn, conn->reason, /*reset=*/false);
      }
      // kClosing: the FIN goes out once the queue is flushed, and then we are done.
    } else if (c.result < 0 && c.result != -ECANCELED) {
      t->teardown(*conn, reason_for_error(c.result), /*reset=*/false);
    }
  }
  if (conn->wants_recv() && !conn->recv_op.in_flight()) t->arm_recv(*conn);
  t->maybe_finish(*conn);
}

void KernelTransport::set_reading(ConnectionId id, bool reading) {
  Connection* conn = find(id);
  if (conn == nullptr || conn->state != State::kOpen) return;
  if (conn->reading == reading) return;
  conn->reading = reading;
  if (!reading) {
    if (conn->recv_op.in_flight() && !conn->recv_cancelled) {
      conn->recv_cancelled = true;
      (void)loop_.cancel(conn->recv_op);
    }
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
  if (!conn.recv_op.in_flight()) arm_recv(conn);
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
  if (!conn.send_op.in_flight()) send_head(conn);
  return SendResult::kOk;
}

void KernelTransport::send_head(Connection& conn) {
  Chunk* chunk = conn.head;
  conn.in_flight_bytes = chunk->end - chunk->begin;
  ++stats_.send_requests;
  loop_.send(conn.send_op, conn.fd, chunk->data() + chunk->begin, conn.in_flight_bytes);
}

void KernelTransport::on_send(uring::Operation& op, const uring::Completion& c) {
  auto* conn = op.context_as<Connection>();
  KernelTransport* t = conn->transport;
  if (c.result > 0) {
    const auto n = static_cast<uint32_t>(c.result);
    t->stats_.bytes_out += n;
    conn->queued -= n;
    if (n < conn->in_flight_bytes) ++t->stats_.partial_sends;
    Chunk* chunk = conn->head;
    chunk->begin += n;
    if (chunk->begin == chunk->end) {
      conn->head = chunk->next;
      if (conn->head == nullptr) conn->tail = nullptr;
      t->release_chunk(chunk);
    }
  } else if (conn->state != State::kDead) {
    // 0 bytes for a non-empty send: the socket takes nothing more; a broken pipe in effect.
    t->teardown(*conn, c.result == 0 ? CloseReason::kPeerReset : reason_for_error(c.result),
                /*reset=*/false);
  }
  if (conn->state == State::kDead) {
    t->maybe_finish(*conn);
    return;
  }
  if (conn->queued > 0) {
    t->send_head(*conn);
  } else if (conn->state == State::kClosing) {
    t->send_fin(*conn);
  }
  if (conn->state == State::kOpen && conn->above_low_water &&
      conn->queued <= t->options_.limits.send_low_water_bytes) {
    conn->above_low_water = false;
    ++t->stats_.writable_events;
    t->events_->on_writable(conn->id());
  }
  t->maybe_finish(*conn);
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
  loop_.timeout(conn.timer_op, options_.close_linger_ms * kNsPerMs);
  if (conn.wants_recv() && !conn.recv_op.in_flight()) arm_recv(conn);
  if (conn.queued == 0) send_fin(conn);
}

void KernelTransport::send_fin(Connection& conn) {
  conn.state = State::kFinSent;
  if (::shutdown(conn.fd, SHUT_WR) != 0) {
    teardown(conn, reason_for_error(-errno), /*reset=*/false);
    return;
  }
  if (conn.peer_eof) teardown(conn, conn.reason, /*reset=*/false);
}

void KernelTransport::on_timer(uring::Operation& op, const uring::Completion& c) {
  auto* conn = op.context_as<Connection>();
  KernelTransport* t = conn->transport;
  if (c.result == 0 && (conn->state == State::kClosing || conn->state == State::kFinSent)) {
    ++t->stats_.linger_timeouts;
    // Still flushing: what is queued cannot be delivered in time, so reset; FIN already out:
    // an ordinary close.
    t->teardown(*conn, conn->reason, /*reset=*/conn->state == State::kClosing);
  }
  t->maybe_finish(*conn);
}

void KernelTransport::teardown(Connection& conn, CloseReason reason, bool reset) {
  if (conn.state == State::kDead || conn.state == State::kFree) return;
  conn.state = State::kDead;
  conn.reason = reason;
  if (reset) {
    // SO_LINGER 0: close(2) sends an RST and drops whatever the socket still holds.
    const linger lg{.l_onoff = 1, .l_linger = 0};
    (void)::setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  // The fd is closed only once every operation on it has ended (a re-armed receive must never
  // meet a reused fd number); the nop makes the end asynchronous even when nothing is in
  // flight, so on_closed never runs inside a Transport call.
  if (conn.recv_op.in_flight()) (void)loop_.cancel(conn.recv_op);
  if (conn.send_op.in_flight()) (void)loop_.cancel(conn.send_op);
  if (conn.timer_op.in_flight()) (void)loop_.cancel(conn.timer_op);
  schedule(conn);
}

void KernelTransport::schedule(Connection& conn) {
  if (!conn.nop_op.in_flight()) loop_.nop(conn.nop_op);
}

void KernelTransport::on_nop(uring::Operation& op, const uring::Completion& c) {
  (void)c;
  auto* conn = op.context_as<Connection>();
  KernelTransport* t = conn->transport;
  if (conn->state == State::kOpen) t->resume(*conn);
  t->maybe_finish(*conn);
}

void KernelTransport::maybe_finish(Connection& conn) {
  if (conn.state != State::kDead) return;
  if (conn.recv_op.in_flight() || conn.send_op.in_flight() || conn.timer_op.in_flight() ||
      conn.nop_op.in_flight()) {
    return;
  }
  ::close(conn.fd);
  conn.fd = -1;
  release_chunks(conn);
  conn.held.clear();
  const ConnectionId id = conn.id();
  const CloseReason reason = conn.reason;
  conn.state = State::kFree;
  free_slots_.push_back(conn.index);
  --open_connections_;
  ++stats_.closes[static_cast<size_t>(reason)];
  events_->on_closed(id, reason);
}

}  // namespace herald::dataplane

// The control plane's IPC server: handshake and connection state on the event loop, draining
// the dataplane's rings into the handler, and sends with a bounded per-worker backlog.
#include "controlplane/ipc/ipc_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::controlplane {

namespace {

constexpr uint64_t kAcceptRetryNs = 100'000'000;
constexpr size_t kReadChunkRecords = 64;

const char* direction_name(ipc::Direction d) {
  return d == ipc::Direction::kDpToCp ? "dp_to_cp" : "cp_to_dp";
}

}  // namespace

const char* send_result_name(SendResult result) {
  switch (result) {
    case SendResult::kSent: return "sent";
    case SendResult::kQueued: return "queued";
    case SendResult::kFull: return "full";
    case SendResult::kTooLarge: return "too_large";
    case SendResult::kBroken: return "broken";
  }
  return "unknown";
}

IpcServerOptions IpcServerOptions::from_config(const config::Config& config) {
  IpcServerOptions options;
  options.socket_path = config.controlplane().ipc_socket_path()->str();
  options.workers = config.dataplane().workers();
  options.ring_capacity_bytes = config.shm().ring_bytes_per_worker();
  options.node_id = config.node().id();
  return options;
}

absl::StatusOr<std::unique_ptr<IpcServer>> IpcServer::start(uring::EventLoop& loop,
                                                            IpcServerOptions options,
                                                            IpcHandler* handler) {
  HERALD_CHECK(handler != nullptr, "IpcServer needs a handler");
  if (options.drain_batch_records == 0) {
    return absl::InvalidArgumentError("ipc: drain_batch_records must be positive");
  }
  auto segment = ipc::IpcSegment::create(options.workers, options.ring_capacity_bytes,
                                         options.max_record_bytes);
  if (!segment.ok()) return segment.status();
  auto cp_doorbell = shm::Doorbell::create();
  if (!cp_doorbell.ok()) return cp_doorbell.status();
  std::vector<shm::Doorbell> dp_doorbells;
  dp_doorbells.reserve(options.workers);
  for (uint16_t w = 0; w < options.workers; ++w) {
    auto doorbell = shm::Doorbell::create();
    if (!doorbell.ok()) return doorbell.status();
    dp_doorbells.push_back(std::move(*doorbell));
  }
  auto listen_fd = ipc::listen_ipc_socket(options.socket_path);
  if (!listen_fd.ok()) return listen_fd.status();

  std::unique_ptr<IpcServer> server(new IpcServer(loop, std::move(options), handler,
                                                  std::move(*segment), std::move(*cp_doorbell),
                                                  std::move(*listen_fd)));
  if (absl::Status s = server->init_workers(std::move(dp_doorbells)); !s.ok()) return s;
  server->arm();
  HLOG_INFO("ipc.server_started")
      .kv("path", server->options_.socket_path)
      .kv("workers", server->options_.workers)
      .kv("ring_bytes", server->options_.ring_capacity_bytes)
      .kv("instance_id", server->instance_id_);
  return server;
}

IpcServer::IpcServer(uring::EventLoop& loop, IpcServerOptions options, IpcHandler* handler,
                     ipc::IpcSegment segment, shm::Doorbell cp_doorbell, shm::UniqueFd listen_fd)
    : loop_(loop),
      options_(std::move(options)),
      handler_(handler),
      segment_(std::move(segment)),
      cp_doorbell_(std::move(cp_doorbell)),
      listen_fd_(std::move(listen_fd)),
      instance_id_(ipc::random_u64()),
      accept_op_(&IpcServer::on_accept, this),
      accept_retry_op_(&IpcServer::on_accept_retry, this),
      conn_recv_op_(&IpcServer::on_conn_recv, this),
      doorbell_op_(&IpcServer::on_doorbell, this),
      tick_op_(&IpcServer::on_tick, this),
      retry_op_(&IpcServer::on_retry, this) {}

absl::Status IpcServer::init_workers(std::vector<shm::Doorbell> dp_doorbells) {
  workers_.reserve(options_.workers);
  for (uint16_t w = 0; w < options_.workers; ++w) {
    auto in = segment_.consumer(w, ipc::Direction::kDpToCp);
    if (!in.ok()) return in.status();
    auto out = segment_.producer(w, ipc::Direction::kCpToDp);
    if (!out.ok()) return out.status();
    workers_.emplace_back(std::move(*in), std::move(*out), std::move(dp_doorbells[w]));
    Worker& worker = workers_.back();
    worker.out.set_doorbell(worker.dp_doorbell.fd());
    // ipc.fbs: Hello is the first record a side writes on a ring after it starts.
    ipc::HelloFields hello;
    hello.plane = ipc::Plane::Controlplane;
    hello.ipc_version = ipc::kIpcVersion;
    hello.instance_id = instance_id_;
    hello.pid = static_cast<uint32_t>(::getpid());
    hello.node_id = options_.node_id;
    hello.worker = w;
    hello.workers = options_.workers;
    ipc::build_hello(builder_, worker.next_out_seq, hello, options_.build);
    if (enqueue(w, ipc::Record::Hello, ipc::finished_bytes(builder_)) != SendResult::kSent) {
      return absl::InternalError("ipc: cannot write Hello on a new ring");
    }
    ++worker.next_out_seq;
    // Until the loop's first drain, the dataplane must ring us for its first commit.
    ipc::set_consumer_waiting(segment_.ring_region(w, ipc::Direction::kDpToCp), true);
  }
  return absl::OkStatus();
}

void IpcServer::arm() {
  loop_.accept(accept_op_, listen_fd_.get());
  loop_.poll(doorbell_op_, cp_doorbell_.fd(), POLLIN, /*persistent=*/true);
  loop_.tick(tick_op_, options_.tick_ns);
}

IpcServer::~IpcServer() {
  stopping_ = true;
  for (uring::Operation* op :
       {&accept_op_, &accept_retry_op_, &conn_recv_op_, &doorbell_op_, &tick_op_, &retry_op_}) {
    if (op->in_flight()) loop_.cancel(*op);
  }
  while (accept_op_.in_flight() || accept_retry_op_.in_flight() || conn_recv_op_.in_flight() ||
         doorbell_op_.in_flight() || tick_op_.in_flight() || retry_op_.in_flight()) {
    loop_.run_once(10'000'000);
  }
  if (conn_fd_ >= 0) ::close(conn_fd_);
  ::unlink(options_.socket_path.c_str());
}

// --- Connections -------------------------------------------------------------------------

void IpcServer::on_accept(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<IpcServer>();
  if (c.result == -ECANCELED) return;
  if (c.result < 0) {
    ++self->stats_.accept_errors;
    HLOG_RATE_LIMITED(kWarn, "ipc.accept_failed", 1).kv("error", std::strerror(-c.result));
    // The loop re-arms accept unless the error ended it (EMFILE and the like): then try again
    // a little later rather than spin.
    if (!c.more && !self->stopping_ && !self->accept_retry_op_.in_flight()) {
      self->loop_.timeout(self->accept_retry_op_, kAcceptRetryNs);
    }
    return;
  }
  const int fd = c.result;
  if (self->stopping_) {
    ::close(fd);
    return;
  }
  if (self->state_ != ConnState::kNone || self->conn_recv_op_.in_flight()) {
    ++self->stats_.rejected_busy;
    self->reject(fd, ipc::RejectCode::kBusy,
                 absl::StrCat("another dataplane (instance ", self->dp_instance_id_,
                              ") is connected; only one at a time"));
    ::close(fd);
    return;
  }
  self->state_ = ConnState::kHandshaking;
  self->conn_fd_ = fd;
  // The peer's pid, for the profiler; 0 when the kernel does not say (never trusted for more).
  ucred cred{};
  socklen_t cred_len = sizeof(cred);
  self->peer_pid_ = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0 ? cred.pid : 0;
  self->handshake_deadline_ns_ =
      clock::monotonic_ns() + uint64_t{self->options_.handshake_timeout_ms} * 1'000'000;
  self->loop_.recv(self->conn_recv_op_, fd, self->recv_buf_, sizeof(self->recv_buf_));
}

void IpcServer::on_accept_retry(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<IpcServer>();
  if (c.result == -ECANCELED || self->stopping_) return;
  if (!self->accept_op_.in_flight()) self->loop_.accept(self->accept_op_, self->listen_fd_.get());
}

void IpcServer::on_conn_recv(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<IpcServer>();
  if (c.result <= 0 || self->stopping_) {
    // EOF, reset, or cancelled: the dataplane is gone (or we dropped it).
    self->end_connection();
    return;
  }
  if (self->state_ == ConnState::kHandshaking) {
    self->handle_hello(static_cast<size_t>(c.result));
    return;
  }
  // Nothing is defined after the handshake; a newer dataplane may say more. Ignore it.
  ++self->stats_.unexpected_messages;
  self->loop_.recv(self->conn_recv_op_, self->conn_fd_, self->recv_buf_, sizeof(self->recv_buf_));
}

void IpcServer::end_connection() {
  const bool was_live = state_ == ConnState::kLive;
  if (conn_fd_ >= 0) ::close(conn_fd_);
  conn_fd_ = -1;
  peer_pid_ = 0;
  state_ = ConnState::kNone;
  if (!was_live) return;
  ++stats_.disconnects;
  HLOG_INFO("ipc.dataplane_disconnected").kv("instance_id", dp_instance_id_);
  if (!stopping_) handler_->on_dataplane_disconnected();
}

void IpcServer::drop_connection(const char* why) {
  if (conn_fd_ < 0) return;
  HLOG_WARN("ipc.dropping_dataplane").kv("reason", why).kv("instance_id", dp_instance_id_);
  // shutdown, not close: the pending receive completes with EOF and closes the descriptor
  // in its callback, so the fd number is never reused under an armed operation.
  ::shutdown(conn_fd_, SHUT_RDWR);
}

void IpcServer::reject(int fd, ipc::RejectCode code, const std::string& reason) {
  HLOG_WARN("ipc.dataplane_rejected").kv("code", ipc::reject_code_name(code)).kv("reason", reason);
  const std::string message = ipc::encode_reject(code, reason);
  // A fresh socket's send buffer is empty, so this small send does not block the loop (the
  // socket is non-blocking anyway; a failure only loses the reason).
  (void)::send(fd, message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void IpcServer::handle_hello(size_t bytes) {
  const ipc::CheckedEnvelope checked = ipc::verify_envelope(
      static_cast<uint32_t>(ipc::Record::Hello),
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(recv_buf_), bytes));
  const ipc::Hello* hello =
      checked.error == ipc::EnvelopeError::kNone ? checked.envelope->record_as_Hello() : nullptr;
  auto refuse = [&](ipc::RejectCode code, uint64_t& counter, const std::string& reason) {
    ++counter;
    reject(conn_fd_, code, reason);
    end_connection();
  };
  if (hello == nullptr || hello->plane() != ipc::Plane::Dataplane) {
    refuse(ipc::RejectCode::kBadHello, stats_.rejected_bad_hello,
           hello == nullptr ? absl::StrCat("first message is not a valid Hello Envelope (",
                                           ipc::envelope_error_name(checked.error), ")")
                            : std::string("Hello is not from a dataplane"));
    return;
  }
  if (hello->ipc_version() != ipc::kIpcVersion) {
    refuse(ipc::RejectCode::kVersionMismatch, stats_.rejected_version,
           absl::StrCat("version mismatch: dataplane speaks ipc_version ", hello->ipc_version(),
                        ", control plane speaks ", ipc::kIpcVersion));
    return;
  }
  if (hello->workers() != options_.workers) {
    refuse(ipc::RejectCode::kWorkerMismatch, stats_.rejected_workers,
           absl::StrCat(
               "worker count mismatch: dataplane runs ", hello->workers(),
               " workers, the control plane's config says dataplane.workers = ", options_.workers));
    return;
  }
  if (absl::Status s = repair_broken_rings(); !s.ok()) {
    refuse(ipc::RejectCode::kInternal, stats_.rejected_internal,
           absl::StrCat("cannot re-create a corrupt ring: ", s.message()));
    return;
  }
  if (absl::Status s = hand_over(conn_fd_); !s.ok()) {
    refuse(ipc::RejectCode::kInternal, stats_.rejected_internal,
           absl::StrCat("segment hand-over failed: ", s.message()));
    return;
  }
  const uint64_t instance = hello->instance_id();
  const bool restarted = dp_instance_id_ != 0 && dp_instance_id_ != instance;
  if (restarted) ++stats_.dataplane_restarts;
  dp_instance_id_ = instance;
  state_ = ConnState::kLive;
  ++stats_.connects;
  HLOG_INFO("ipc.dataplane_connected")
      .kv("instance_id", instance)
      .kv("pid", hello->pid())
      .kv("workers", hello->workers())
      .kv("restarted", restarted);
  // Watch the socket: EOF means the dataplane died or closed it.
  loop_.recv(conn_recv_op_, conn_fd_, recv_buf_, sizeof(recv_buf_));
  handler_->on_dataplane_connected(instance, restarted);
  // Whatever it committed before connecting (a restarted worker) is read now.
  drain();
}

absl::Status IpcServer::hand_over(int fd) {
  flatbuffers::FlatBufferBuilder hello_builder(256);
  ipc::HelloFields hello;
  hello.plane = ipc::Plane::Controlplane;
  hello.ipc_version = ipc::kIpcVersion;
  hello.instance_id = instance_id_;
  hello.pid = static_cast<uint32_t>(::getpid());
  hello.node_id = options_.node_id;
  hello.workers = options_.workers;
  hello.server_msg_time_floor_ms = server_msg_time_floor_ms_;
  ipc::build_hello(hello_builder, 0, hello, options_.build);

  std::vector<int> fds = {segment_.fd(), cp_doorbell_.fd()};
  if (options_.counters_fd >= 0) fds.push_back(options_.counters_fd);
  const size_t chunks =
      (options_.workers + ipc::kDoorbellsPerMessage - 1) / ipc::kDoorbellsPerMessage;
  const ipc::AcceptHeader header{ipc::kAcceptMagic, options_.workers, static_cast<uint16_t>(chunks),
                                 static_cast<uint32_t>(fds.size()), hello_builder.GetSize()};
  std::vector<std::byte> payload(sizeof(header) + hello_builder.GetSize());
  std::memcpy(payload.data(), &header, sizeof(header));
  std::memcpy(payload.data() + sizeof(header), hello_builder.GetBufferPointer(),
              hello_builder.GetSize());
  if (absl::Status s = shm::send_fds(fd, fds, payload); !s.ok()) return s;
  for (size_t chunk = 0; chunk < chunks; ++chunk) {
    const size_t first = chunk * ipc::kDoorbellsPerMessage;
    const size_t count = std::min(ipc::kDoorbellsPerMessage, workers_.size() - first);
    std::vector<int> doorbells;
    for (size_t w = first; w < first + count; ++w)
      doorbells.push_back(workers_[w].dp_doorbell.fd());
    const ipc::DoorbellChunkHeader ch{ipc::kDoorbellChunkMagic, static_cast<uint16_t>(first),
                                      static_cast<uint16_t>(count)};
    if (absl::Status s = shm::send_fds(
            fd, doorbells,
            std::span<const std::byte>(reinterpret_cast<const std::byte*>(&ch), sizeof(ch)));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status IpcServer::repair_broken_rings() {
  for (uint16_t w = 0; w < workers_.size(); ++w) {
    Worker& worker = workers_[w];
    if (worker.in_broken) {
      if (absl::Status s = segment_.reinit_ring(w, ipc::Direction::kDpToCp); !s.ok()) return s;
      auto in = segment_.consumer(w, ipc::Direction::kDpToCp);
      if (!in.ok()) return in.status();
      worker.in = std::move(*in);
      worker.in_broken = false;
      worker.next_in_seq = 0;
      ipc::set_consumer_waiting(segment_.ring_region(w, ipc::Direction::kDpToCp), true);
      HLOG_WARN("ipc.ring_recreated")
          .kv("worker", w)
          .kv("ring", direction_name(ipc::Direction::kDpToCp));
    }
    if (worker.out_broken) {
      if (absl::Status s = segment_.reinit_ring(w, ipc::Direction::kCpToDp); !s.ok()) return s;
      auto out = segment_.producer(w, ipc::Direction::kCpToDp);
      if (!out.ok()) return out.status();
      worker.out = std::move(*out);
      worker.out.set_doorbell(worker.dp_doorbell.fd());
      worker.out_broken = false;
      HLOG_WARN("ipc.ring_recreated")
          .kv("worker", w)
          .kv("ring", direction_name(ipc::Direction::kCpToDp));
    }
  }
  return absl::OkStatus();
}

// --- Records from the dataplane -----------------------------------------------------------

void IpcServer::on_doorbell(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<IpcServer>();
  if (c.result == -ECANCELED || self->stopping_) return;
  if (c.result < 0) {
    HLOG_RATE_LIMITED(kError, "ipc.doorbell_poll_failed", 1).kv("error", std::strerror(-c.result));
    return;
  }
  (void)self->cp_doorbell_.drain();
  ++self->stats_.doorbell_wakeups;
  self->drain();
}

void IpcServer::drain() {
  ++stats_.drain_passes;
  bool more = false;
  for (uint16_t w = 0; w < workers_.size(); ++w) {
    if (workers_[w].in_broken) continue;
    // Awake: spare the dataplane its doorbell writes while we read.
    ipc::set_consumer_waiting(segment_.ring_region(w, ipc::Direction::kDpToCp), false);
    if (drain_worker(w)) more = true;
  }
  flush_backlogs();
  if (!more) {
    for (uint16_t w = 0; w < workers_.size(); ++w) {
      if (workers_[w].in_broken) continue;
      if (ipc::announce_sleep(segment_.ring_region(w, ipc::Direction::kDpToCp), workers_[w].in)) {
        more = true;
      }
    }
  }
  // Records left (a batch limit hit, or a commit raced the sleep announcement): ring our own
  // doorbell, so the loop serves its other completions first and then comes back here.
  if (more) (void)cp_doorbell_.ring();
}

bool IpcServer::drain_worker(uint16_t w) {
  Worker& worker = workers_[w];
  shm::RecordView views[kReadChunkRecords];
  uint32_t taken = 0;
  while (taken < options_.drain_batch_records) {
    const size_t want = std::min<size_t>(kReadChunkRecords, options_.drain_batch_records - taken);
    const shm::ReadResult r = worker.in.read_batch(std::span<shm::RecordView>(views, want));
    for (size_t i = 0; i < r.count; ++i) {
      const ipc::CheckedEnvelope checked = ipc::verify_envelope(views[i].type, views[i].payload);
      if (checked.error != ipc::EnvelopeError::kNone) {
        // From another process: skipped and counted, never trusted. The ring framing around it
        // is intact (ring.h checked it), so the records after it are still good.
        ++stats_.bad_records[static_cast<size_t>(checked.error)];
        HLOG_RATE_LIMITED(kWarn, "ipc.bad_record", 1)
            .kv("worker", w)
            .kv("reason", ipc::envelope_error_name(checked.error))
            .kv("type", views[i].type)
            .kv("bytes", views[i].payload.size());
        continue;
      }
      note_record(w, *checked.envelope);
      handler_->on_record(w, *checked.envelope);
    }
    // Released only after the handler saw them: a control plane that dies mid-batch leaves
    // them in the ring (at-least-once).
    worker.in.release();
    taken += static_cast<uint32_t>(r.count);
    if (r.status == shm::RingStatus::kCorrupt) {
      worker.in_broken = true;
      ++stats_.ring_corrupt;
      HLOG_ERROR("ipc.ring_corrupt").kv("worker", w).kv("ring", "dp_to_cp");
      drop_connection("dp_to_cp ring corrupt");
      return false;
    }
    if (r.count < want) return false;
  }
  return worker.in.has_data();
}

void IpcServer::note_record(uint16_t w, const ipc::Envelope& envelope) {
  Worker& worker = workers_[w];
  const ipc::Record type = envelope.record_type();
  ++stats_.records_in[static_cast<size_t>(type)];
  const uint64_t seq = envelope.seq();
  // A Hello starts a new writer instance's numbering (ipc.fbs); anything else must follow on.
  if (type != ipc::Record::Hello && worker.next_in_seq != 0 && seq != worker.next_in_seq) {
    ++stats_.seq_gaps;
    HLOG_RATE_LIMITED(kError, "ipc.seq_gap", 1)
        .kv("worker", w)
        .kv("expected", worker.next_in_seq)
        .kv("got", seq);
  }
  worker.next_in_seq = seq + 1;
  if (type == ipc::Record::Heartbeat) {
    ++stats_.heartbeats_in;
    stats_.last_heartbeat_ns = clock::monotonic_ns();
    stats_.dataplane_held_appends = envelope.record_as_Heartbeat()->held_appends();
  }
}

// --- Records to the dataplane -------------------------------------------------------------

SendResult IpcServer::send_record(uint16_t worker, ipc::Record type,
                                  flatbuffers::Offset<void> record) {
  HERALD_CHECK(worker < workers_.size(), "ipc: send to a worker that does not exist");
  Worker& w = workers_[worker];
  ipc::finish_envelope(builder_, w.next_out_seq, type, record);
  const SendResult result = enqueue(worker, type, ipc::finished_bytes(builder_));
  if (result == SendResult::kSent || result == SendResult::kQueued) ++w.next_out_seq;
  return result;
}

SendResult IpcServer::enqueue(uint16_t w, ipc::Record type, std::span<const std::byte> envelope) {
  Worker& worker = workers_[w];
  if (worker.out_broken) {
    ++stats_.broken_sends;
    return SendResult::kBroken;
  }
  if (envelope.size() > worker.out.max_payload_bytes()) {
    ++stats_.too_large;
    return SendResult::kTooLarge;
  }
  if (worker.backlog.empty()) {
    const shm::RingStatus status = ipc::enqueue_envelope(worker.out, type, envelope);
    if (status == shm::RingStatus::kOk) {
      ++stats_.records_out[static_cast<size_t>(type)];
      return SendResult::kSent;
    }
    if (status == shm::RingStatus::kCorrupt) {
      worker.out_broken = true;
      ++stats_.ring_corrupt;
      ++stats_.broken_sends;
      HLOG_ERROR("ipc.ring_corrupt").kv("worker", w).kv("ring", "cp_to_dp");
      drop_connection("cp_to_dp ring corrupt");
      return SendResult::kBroken;
    }
    ++stats_.ring_full;  // kFull: fall through to the backlog
  }
  if (worker.backlog.size() >= options_.backlog_max_records ||
      worker.backlog_bytes + envelope.size() > options_.backlog_max_bytes) {
    ++stats_.backlog_full;
    return SendResult::kFull;
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(envelope.data());
  worker.backlog.push_back(Held{type, std::vector<uint8_t>(bytes, bytes + envelope.size())});
  worker.backlog_bytes += envelope.size();
  ++stats_.backlogged;
  schedule_retry();
  return SendResult::kQueued;
}

bool IpcServer::flush_backlog(Worker& worker) {
  size_t moved = 0;
  while (!worker.backlog.empty() && !worker.out_broken) {
    const Held& held = worker.backlog.front();
    const shm::RingStatus status = ipc::put_envelope(
        worker.out, held.type,
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(held.bytes.data()),
                                   held.bytes.size()));
    if (status == shm::RingStatus::kFull) {
      ++stats_.ring_full;
      break;
    }
    if (status != shm::RingStatus::kOk) {
      // Sizes were checked on the way in, so only corruption gets here.
      worker.out_broken = true;
      ++stats_.ring_corrupt;
      drop_connection("cp_to_dp ring corrupt");
      break;
    }
    ++stats_.records_out[static_cast<size_t>(held.type)];
    worker.backlog_bytes -= held.bytes.size();
    worker.backlog.pop_front();
    ++moved;
  }
  if (moved > 0) (void)worker.out.commit();
  return worker.backlog.empty();
}

void IpcServer::flush_backlogs() {
  bool pending = false;
  for (Worker& worker : workers_) {
    if (!worker.backlog.empty() && !flush_backlog(worker)) pending = true;
  }
  if (pending) schedule_retry();
}

void IpcServer::schedule_retry() {
  if (stopping_ || retry_op_.in_flight()) return;
  loop_.timeout(retry_op_, options_.backlog_retry_ns);
}

void IpcServer::on_retry(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<IpcServer>();
  if (c.result == -ECANCELED || self->stopping_) return;
  self->flush_backlogs();
}

void IpcServer::on_tick(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<IpcServer>();
  if (c.result == -ECANCELED || self->stopping_) return;
  const uint64_t now = clock::monotonic_ns();
  if (self->state_ == ConnState::kHandshaking && now >= self->handshake_deadline_ns_) {
    ++self->stats_.handshake_timeouts;
    self->reject(self->conn_fd_, ipc::RejectCode::kTimeout,
                 "no Hello within the handshake timeout");
    ::shutdown(self->conn_fd_, SHUT_RDWR);  // the pending receive ends and closes it
    self->handshake_deadline_ns_ = UINT64_MAX;
  }
  if (self->state_ == ConnState::kLive && self->options_.heartbeat_interval_ms != 0 &&
      now - self->last_heartbeat_sent_ns_ >=
          uint64_t{self->options_.heartbeat_interval_ms} * 1'000'000) {
    self->last_heartbeat_sent_ns_ = now;
    self->send_heartbeats();
  }
}

void IpcServer::send_heartbeats() {
  const uint64_t now = clock::monotonic_ns();
  for (uint16_t w = 0; w < workers_.size(); ++w) {
    Worker& worker = workers_[w];
    // A heartbeat is only worth sending now: never backlogged behind records, never counted
    // against the backlog's limits.
    if (worker.out_broken || !worker.backlog.empty()) continue;
    builder_.Clear();
    const auto heartbeat = ipc::CreateHeartbeat(builder_, instance_id_, now);
    ipc::finish_envelope(builder_, worker.next_out_seq, heartbeat);
    if (ipc::enqueue_envelope(worker.out, ipc::Record::Heartbeat, ipc::finished_bytes(builder_)) ==
        shm::RingStatus::kOk) {
      ++worker.next_out_seq;
      ++stats_.heartbeats_out;
      ++stats_.records_out[static_cast<size_t>(ipc::Record::Heartbeat)];
    }
  }
}

}  // namespace herald::controlplane

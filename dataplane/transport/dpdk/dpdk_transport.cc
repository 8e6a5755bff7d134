// The DPDK backend's Transport: port frames → NetStack → TcpEngine → TransportEvents, and back.
#include "dataplane/transport/dpdk/dpdk_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::dataplane::dpdk {
namespace {

constexpr uint32_t kEthernetHeaderBytes = 14;

}  // namespace

// The stack transmits into slots of this pool; at the end of every on_frames / on_turn the
// queued ones are copied into the port loop's TxBatch (one copy per frame out). Zero copy is not
// possible across the two designs: TxBatch::append wants the frame's final length up front and
// sends every appended frame when the turn ends, while FramePort::alloc learns the length at
// queue() and may hold a frame across turns (waiting on ARP). Frames built outside a port turn
// (a send from the router or a session timer) need a home until the next turn too.
class DpdkTransport::SlotPort final : public net::FramePort {
 public:
  SlotPort(uint32_t slots, uint32_t slot_bytes, bool port_fills_checksums,
           DpdkTransportStats& stats)
      : slot_bytes_(slot_bytes),
        port_fills_checksums_(port_fills_checksums),
        storage_(size_t{slots} * slot_bytes),
        stats_(stats) {
    free_.reserve(slots);
    for (uint32_t i = slots; i > 0; --i) free_.push_back(i - 1);
    pending_.reserve(slots);
  }

  net::PortCapabilities capabilities() const override {
    return net::PortCapabilities{.tx_ipv4_checksum = port_fills_checksums_,
                                 .tx_l4_checksum = port_fills_checksums_};
  }
  bool alloc(uint32_t length_bytes, net::TxFrame* frame) override {
    if (length_bytes > slot_bytes_) return false;  // the stack counts tx_alloc_failed
    if (free_.empty()) {
      ++stats_.tx_slots_exhausted;
      return false;
    }
    const uint32_t slot = free_.back();
    free_.pop_back();
    frame->data = storage_.data() + size_t{slot} * slot_bytes_;
    frame->capacity_bytes = slot_bytes_;
    frame->handle = slot;
    return true;
  }
  void queue(const net::TxFrame& frame, uint32_t length_bytes,
             const net::TxOffload& offload) override {
    TxOffload out;
    out.l2_len = offload.l2_bytes;
    out.l3_len = offload.l3_bytes;
    out.ipv4_checksum = offload.ipv4_checksum;
    out.tcp_checksum = offload.l4_checksum && offload.l4_protocol == 6;
    out.udp_checksum = offload.l4_checksum && offload.l4_protocol == 17;
    pending_.push_back(Pending{static_cast<uint32_t>(frame.handle), length_bytes, out});
  }
  void release(const net::TxFrame& frame) override {
    free_.push_back(static_cast<uint32_t>(frame.handle));
  }

  // Copies the queued frames into `tx` in order and frees their slots. Returns frames moved.
  uint32_t flush(uint16_t port, TxBatch& tx) {
    uint32_t n = 0;
    for (const Pending& p : pending_) {
      std::span<uint8_t> out = tx.append(port, static_cast<uint16_t>(p.length_bytes), p.offload);
      if (out.empty()) {
        ++stats_.tx_batch_refused;
      } else {
        std::memcpy(out.data(), storage_.data() + size_t{p.slot} * slot_bytes_, p.length_bytes);
        ++stats_.tx_frames;
        ++n;
      }
      free_.push_back(p.slot);
    }
    pending_.clear();
    return n;
  }
  uint32_t pending() const { return static_cast<uint32_t>(pending_.size()); }

 private:
  struct Pending {
    uint32_t slot;
    uint32_t length_bytes;
    TxOffload offload;
  };
  const uint32_t slot_bytes_;
  const bool port_fills_checksums_;
  std::vector<uint8_t> storage_;
  std::vector<uint32_t> free_;
  std::vector<Pending> pending_;
  DpdkTransportStats& stats_;
};

// The engine's events, translated for the layer above. Delivered from TcpEngine::input (inside
// on_frames), its timers (the worker's wheel.advance) and poll(): never from inside a Transport
// call, as TransportEvents requires.
class DpdkTransport::EngineEvents final : public net::tcp::TcpEvents {
 public:
  explicit EngineEvents(DpdkTransport& t) : t_(t) {}

  void on_accepted(ConnectionId id, const net::tcp::FourTuple& tuple) override {
    if (t_.stopping_ || t_.events_ == nullptr) {
      t_.tcp_->close(id, CloseMode::kAbort);
      return;
    }
    if (t_.conns_.size() >= t_.options_.limits.max_connections) {
      ++t_.stats_.rejected_max_connections;
      t_.tcp_->close(id, CloseMode::kAbort);
      return;
    }
    t_.conns_.try_emplace(id);
    ++t_.stats_.accepted;
    PeerAddress peer;
    auto* sin = reinterpret_cast<sockaddr_in*>(&peer.address);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(tuple.remote_port);
    std::memcpy(&sin->sin_addr, tuple.remote.bytes, 4);  // network order already
    peer.length = sizeof(sockaddr_in);
    t_.events_->on_accepted(id, peer);
  }
  void on_connected(ConnectionId id) override {
    // An id connect() did not hand out (or one already given up) is ended.
    if (!t_.conns_.contains(id) || t_.events_ == nullptr) {
      t_.tcp_->close(id, CloseMode::kAbort);
      return;
    }
    t_.events_->on_connected(id);
  }
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    if (t_.conns_.contains(id)) t_.events_->on_data(id, bytes);
  }
  void on_peer_closed(ConnectionId id) override {
    // Herald's sessions do not half-close (the kernel backend ends the connection on FIN too):
    // flush what is queued, then our FIN; the end is the peer's doing.
    if (t_.conns_.contains(id)) t_.tcp_->close(id, CloseMode::kGraceful);
  }
  void on_writable(ConnectionId id) override {
    if (t_.conns_.contains(id)) t_.events_->on_writable(id);
  }
  void on_closed(ConnectionId id, net::tcp::TcpCloseReason reason) override {
    const ConnState* found = t_.conns_.find(id);
    if (found == nullptr) return;  // refused at accept, never handed up
    const ConnState state = *found;
    t_.conns_.erase(id);
    t_.conns_.shrink_when_sparse();
    CloseReason out = net::tcp::to_transport_reason(reason);
    if (state.queue_full) {
      out = CloseReason::kSendQueueFull;
    } else if (reason == net::tcp::TcpCloseReason::kNormal) {
      out = state.local_close ? CloseReason::kLocalClose : CloseReason::kPeerClosed;
    } else if (reason == net::tcp::TcpCloseReason::kLocalAbort) {
      out = CloseReason::kLocalClose;
    }
    ++t_.stats_.closed[static_cast<size_t>(out)];
    t_.events_->on_closed(id, out);
  }

 private:
  DpdkTransport& t_;
};

namespace {

// From the kernel's CSPRNG (getrandom blocks only until it is seeded, at boot). Without it the
// stack cannot be safe against blind attacks, so a failure stops the process.
void fill_random(void* out, size_t bytes) {
  auto* p = static_cast<uint8_t*>(out);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = getrandom(p + done, bytes - done, 0);
    if (n < 0 && errno == EINTR) continue;
    HERALD_CHECK(n > 0, "getrandom failed: no secret for TCP's sequence numbers and cookies");
    done += static_cast<size_t>(n);
  }
}

}  // namespace

DpdkTransport::DpdkTransport(const DpdkTransportOptions& options, clock::Clock clock,
                             timer::TimerWheel& wheel)
    : options_(options), clock_(clock), wheel_(wheel) {
  const std::string problem = net::validate(options_.net);
  HERALD_CHECK(problem.empty(), problem.c_str());
  HERALD_CHECK(options_.tx_slots > 0, "tx_slots must be positive");
  const uint32_t frame_bytes = options_.net.mtu_bytes + kEthernetHeaderBytes;
  port_ = std::make_unique<SlotPort>(options_.tx_slots, frame_bytes, options_.port_fills_checksums,
                                     stats_);
  // Impairment sits between the port and the stack on both sides, as a wire's faults would.
  net::PortImpairmentOptions impair = options_.impairment;
  impair.rx.max_frame_bytes = std::max<uint32_t>(impair.rx.max_frame_bytes, frame_bytes);
  impair.tx.max_frame_bytes = std::max<uint32_t>(impair.tx.max_frame_bytes, frame_bytes);
  for (const net::ImpairmentOptions* o : {&impair.rx, &impair.tx}) {
    const std::string bad = net::validate(*o);
    HERALD_CHECK(bad.empty(), bad.c_str());
  }
  if (impair.rx.enabled() || impair.tx.enabled()) {
    // Never wanted in production by accident: say so loudly at start.
    HLOG_WARN("dpdk.impairment.on")
        .kv("rx_drop_ppm", uint64_t{impair.rx.drop_ppm})
        .kv("rx_corrupt_ppm", uint64_t{impair.rx.corrupt_ppm})
        .kv("tx_drop_ppm", uint64_t{impair.tx.drop_ppm})
        .kv("tx_corrupt_ppm", uint64_t{impair.tx.corrupt_ppm})
        .kv("seed", impair.rx.seed);
  }
  rx_impair_ = std::make_unique<net::ImpairedRx>(impair.rx);
  tx_impair_ = std::make_unique<net::ImpairedPort>(impair.tx, *port_);
  net::FramePort& stack_port =
      impair.tx.enabled() ? static_cast<net::FramePort&>(*tx_impair_) : *port_;
  stack_ = std::make_unique<net::NetStack>(options_.net, stack_port);
  binding_ = std::make_unique<net::tcp::TcpL4Binding>(*stack_, clock_);
  engine_events_ = std::make_unique<EngineEvents>(*this);

  net::tcp::TcpConfig tcp = options_.tcp;
  tcp.mss = std::min<uint16_t>(tcp.mss, binding_->path_mss());
  tcp.send_buffer_bytes = options_.limits.send_queue_bytes;
  tcp.send_low_water_bytes = options_.limits.send_low_water_bytes;
  // Blocks: the connections handed up (each keeps its block until its on_closed) plus the
  // listener's half-open SYN queue and accept backlog. TIME-WAIT holds no block (56-byte
  // entries in the engine's TIME-WAIT table): room for as many as connections, so a full house
  // closing keeps its TIME-WAIT (past it the oldest end early: tcp.time_wait_overflow).
  tcp.max_connections = static_cast<uint32_t>(std::min<uint64_t>(
      UINT32_MAX,
      uint64_t{options_.limits.max_connections} + tcp.syn_queue + tcp.accept_backlog + 16));
  tcp.max_time_wait = options_.limits.max_connections;
  tcp.checksum_offload_tx = false;  // NetStack owns checksums (l4.h), never the engine
  if (options_.random_secrets) {
    fill_random(tcp.isn_key, sizeof(tcp.isn_key));
    fill_random(tcp.syn_cookie_key, sizeof(tcp.syn_cookie_key));
  }
  tcp_ = std::make_unique<net::tcp::TcpEngine>(tcp, clock_, wheel_, *binding_, *engine_events_);
  binding_->attach(tcp_.get());
  stack_->set_receiver(net::kIpProtocolTcp, binding_.get());
  if (options_.steering != nullptr && options_.steering->queues() > 1) {
    HERALD_CHECK(options_.queue < options_.steering->queues(), "a transport's queue is a loop's");
    // The peer's segments, as the port receives them, must hash to this loop's queue.
    tcp_->set_local_port_filter([steering = options_.steering,
                                 queue = options_.queue](const net::tcp::FourTuple& t) {
      auto v4 = [](const net::tcp::IpAddr& a) {
        return uint32_t{a.bytes[0]} << 24 | uint32_t{a.bytes[1]} << 16 | uint32_t{a.bytes[2]} << 8 |
               a.bytes[3];
      };
      return steering->queue_for(v4(t.remote), v4(t.local), t.remote_port, t.local_port) == queue;
    });
  }
}

DpdkTransport::~DpdkTransport() {
  // The engine's timers live on the worker's wheel: cancel them before the wheel sees a stale
  // pointer. stop() with nobody listening delivers nothing up.
  events_ = nullptr;
  conns_.clear();
  stopping_ = true;
  tcp_->stop();
}

void DpdkTransport::start(TransportEvents& events) {
  HERALD_CHECK(!started_, "DpdkTransport::start called twice");
  started_ = true;
  events_ = &events;
  const net::IpAddress listen = options_.listen.is_none() || options_.listen.v4_host_order() == 0
                                    ? net::IpAddress()
                                    : options_.listen;
  net::tcp::IpAddr addr;  // family 4, all zero: any address of ours
  if (!listen.is_none()) addr = net::tcp::to_tcp_address(listen);
  if (options_.port != 0) {
    HERALD_CHECK(tcp_->listen(addr, options_.port), "DpdkTransport: listen refused");
  }
  stack_->start(clock_.now_ns());  // gratuitous ARP: the neighbours learn our MAC
}

SendResult DpdkTransport::send(ConnectionId id, std::span<const uint8_t> bytes) {
  if (!sendable(id)) {
    ++stats_.unknown_id_calls;
    return SendResult::kClosed;
  }
  const SendResult r = tcp_->send(id, bytes);
  if (r == SendResult::kQueueFull) {
    ++stats_.send_queue_full;
    // Found again: a call into the stack may erase connections, which moves others in conns_.
    if (ConnState* state = conns_.find(id)) state->queue_full = true;
  }
  return r;
}

SendResult DpdkTransport::send_gather(ConnectionId id,
                                      std::span<const std::span<const uint8_t>> parts) {
  ConnState* state = conns_.find(id);
  if (state == nullptr || state->local_close || state->queue_full) {
    ++stats_.unknown_id_calls;
    return SendResult::kClosed;
  }
  uint64_t total = 0;
  for (const auto& p : parts) total += p.size();
  // All or nothing, like the kernel backend: a batch that does not fit queues nothing and the
  // connection is cut off (reset) as a slow consumer.
  if (total > tcp_->send_space(id)) {
    ++stats_.send_queue_full;
    state->queue_full = true;
    tcp_->close(id, CloseMode::kAbort);
    return SendResult::kQueueFull;
  }
  for (const auto& p : parts) {
    if (p.empty()) continue;
    const SendResult r = tcp_->send(id, p);
    if (r != SendResult::kOk) return r;  // cannot happen after the space check
  }
  return SendResult::kOk;
}

void DpdkTransport::close(ConnectionId id, CloseMode mode) {
  ConnState* state = conns_.find(id);
  if (state == nullptr) {
    ++stats_.unknown_id_calls;
    return;
  }
  if (state->local_close && mode == CloseMode::kGraceful) return;
  state->local_close = true;
  tcp_->close(id, mode);
}

void DpdkTransport::set_reading(ConnectionId id, bool reading) {
  if (!conns_.contains(id)) {
    ++stats_.unknown_id_calls;
    return;
  }
  tcp_->set_reading(id, reading);
}

uint32_t DpdkTransport::queued_bytes(ConnectionId id) const {
  if (!conns_.contains(id)) return 0;
  return tcp_->queued_bytes(id);
}

ConnectionId DpdkTransport::connect(const net::IpAddress& remote, uint16_t remote_port) {
  HERALD_CHECK(started_, "DpdkTransport::connect before start");
  if (stopping_ || conns_.size() >= options_.limits.max_connections) {
    ++stats_.connect_refused_local;
    return kNoConnection;
  }
  // Our addresses in turn (NetOptions::address_count): each brings its own ephemeral ports.
  const net::IpAddress local = net::IpAddress::v4(options_.net.address.v4_host_order() +
                                                  next_local_++ % options_.net.address_count);
  const ConnectionId id = tcp_->connect(net::tcp::to_tcp_address(local), 0,
                                        net::tcp::to_tcp_address(remote), remote_port);
  if (id == kNoConnection) {
    ++stats_.connect_refused_local;
    return kNoConnection;
  }
  ++stats_.connects;
  conns_.try_emplace(id);
  return id;
}

uint32_t DpdkTransport::send_space(ConnectionId id) const {
  if (!sendable(id)) return 0;
  return tcp_->send_space(id);
}

void DpdkTransport::stop() {
  if (stopping_) return;
  stopping_ = true;
  // Every connection ends with kShutdown, delivered from the engine's queue.
  tcp_->stop();
  tcp_->poll();
}

void DpdkTransport::on_frames(std::span<const RxFrame> frames, TxBatch& tx) {
  const uint64_t now = clock_.now_ns();
  release_impaired(now);
  for (const RxFrame& f : frames) {
    if (f.port != options_.port_index) {
      ++stats_.rx_other_port;
      continue;
    }
    net::RxMeta meta;
    meta.ipv4_checksum = static_cast<net::ChecksumHint>(f.ip_checksum);
    meta.l4_checksum = static_cast<net::ChecksumHint>(f.l4_checksum);
    meta.replica = f.replica;
    // Zero copy: the mbuf's bytes as they are (impairment copies only what it holds or flips).
    rx_impair_->receive(
        f.bytes, meta, now,
        [&](std::span<const uint8_t> frame, const net::RxMeta& m) { deliver(frame, m, now); });
  }
  tcp_->poll();
  flush(tx);
}

bool DpdkTransport::on_turn(uint64_t /*now_tsc*/, TxBatch& tx) {
  const uint64_t now = clock_.now_ns();
  release_impaired(now);
  stack_->poll(now);  // ARP retries and failures
  tcp_->poll();       // events deferred by sends/closes made outside a port turn
  // Frames held by the impairment layer are due soon: the loop stays awake to release them.
  return flush(tx) > 0 || impairment_holds();
}

void DpdkTransport::release_impaired(uint64_t now_ns) {
  rx_impair_->release_due(now_ns, [&](std::span<const uint8_t> frame, const net::RxMeta& meta) {
    deliver(frame, meta, now_ns);
  });
  // Also the time tx frames queued from here on are held from (FramePort::queue has none).
  if (options_.impairment.tx.enabled()) tx_impair_->release_due(now_ns);
}

void DpdkTransport::deliver(std::span<const uint8_t> frame, const net::RxMeta& meta,
                            uint64_t now_ns) {
  (void)stack_->receive(frame, meta, now_ns);
}

bool DpdkTransport::impairment_holds() const {
  return rx_impair_->next_due_ns() != UINT64_MAX || tx_impair_->next_due_ns() != UINT64_MAX;
}

uint32_t DpdkTransport::pending_tx_frames() const {
  return port_->pending();
}

uint32_t DpdkTransport::flush(TxBatch& tx) {
  if (options_.impairment.tx.enabled()) tx_impair_->release_due(clock_.now_ns());
  return port_->flush(options_.port_index, tx);
}

static_assert(static_cast<int>(net::ChecksumHint::kUnknown) ==
                  static_cast<int>(RxChecksum::kUnknown) &&
              static_cast<int>(net::ChecksumHint::kGood) == static_cast<int>(RxChecksum::kGood) &&
              static_cast<int>(net::ChecksumHint::kBad) == static_cast<int>(RxChecksum::kBad));

}  // namespace herald::dataplane::dpdk

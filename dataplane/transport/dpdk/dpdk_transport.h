// The DPDK backend's Transport: one per worker, composed of the port loop's FrameHandler →
// NetStack (Ethernet/ARP/IPv4/ICMP) → TcpEngine (via TcpL4Binding) → dataplane::Transport.
// No DPDK type here: the worker drives it through a PortLoop (port_loop.h), tests through a fake
// TxBatch, so it is tested without an EAL.
//
//   DpdkTransport t(options, clock, wheel);   // on the worker's thread
//   t.start(tls_layer);                       // listening
//   PortLoop loop(config, ports, pool, t);    // worker: loop.poll_once() each turn
//   worker turn: loop.poll_once(); wheel.advance(now); ...;
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/net/frame_io.h"
#include "dataplane/net/impairment.h"
#include "dataplane/net/stack.h"
#include "dataplane/net/tcp/l4_binding.h"
#include "dataplane/net/tcp/tcp.h"
#include "dataplane/transport/dpdk/flow_steering.h"
#include "dataplane/transport/dpdk/frame.h"
#include "dataplane/transport/transport.h"
#include "platform/clock/clock.h"
#include "platform/containers/hash_maps.h"
#include "platform/timer/timer_wheel.h"

namespace herald::dataplane::dpdk {

// Counters of the Transport layer itself (the stack's and the engine's have their own tables).
#define HERALD_DPDK_TRANSPORT_COUNTERS(X)                                                    \
  X(accepted, "connections handed to the layer above")                                       \
  X(rejected_max_connections, "accepted by TCP over limits.max_connections: reset at once")  \
  X(unknown_id_calls, "send/close/set_reading with an unknown or closed connection id")      \
  X(send_queue_full, "send()/send_gather() past the connection's queue limit")               \
  X(rx_other_port, "frames from a port this transport is not bound to (ignored)")            \
  X(tx_slots_exhausted, "the stack asked for a frame while every tx slot was in use")        \
  X(tx_frames, "frames copied from tx slots into the port's batch")                          \
  X(tx_batch_refused, "the port's batch had no mbuf for a frame (dropped; TCP retransmits)") \
  X(connects, "active opens started (connect(); herald-loadgen's dpdk mode)")                \
  X(connect_refused_local, "connect() refused: table full or no free ephemeral port")

struct DpdkTransportStats {
#define HERALD_DPDK_TRANSPORT_FIELD(name, doc) uint64_t name = 0;
  HERALD_DPDK_TRANSPORT_COUNTERS(HERALD_DPDK_TRANSPORT_FIELD)
#undef HERALD_DPDK_TRANSPORT_FIELD
  uint64_t closed[static_cast<size_t>(CloseReason::kCount)] = {};
};

struct DpdkTransportOptions {
  net::NetOptions net;      // our MAC, IPv4 address, prefix, gateway, MTU, ARP/ICMP limits
  net::IpAddress listen;    // none (0.0.0.0 in the config): any address of ours
  uint16_t port = 5222;     // the chat port; 0: no listener (a client: herald-loadgen's dpdk mode)
  uint16_t port_index = 0;  // the DPDK port (RxFrame::port / TxBatch) this stack is bound to
  TransportLimits limits;
  net::tcp::TcpConfig tcp;  // mss is lowered to the path's if larger; buffers from `limits`
  // Frames the stack may hold between being built and the port's next batch, and while waiting
  // on ARP (a slot each). Sized for the ARP queue plus a few windows' worth of segments.
  uint32_t tx_slots = 4096;
  // True: the port (PortLoop) fills every IPv4/TCP/UDP checksum, in hardware or software, so the
  // stack leaves them (one sum per frame, not two). False: the stack sums in software (tests
  // whose fake port sums nothing).
  bool port_fills_checksums = true;
  // Seeded drop / duplicate / reorder / delay / corrupt between the port and the stack
  // (dataplane.dpdk.impairment); off (all zero) by default. max_frame_bytes is set from the MTU.
  net::PortImpairmentOptions impairment;
  // The TCP engine's secrets (RFC 6528 ISN key, which also keys its connection table, and the
  // RFC 4987 SYN-cookie key) drawn from the kernel's CSPRNG at construction, replacing the
  // fixed defaults in `tcp`: with known keys anyone could predict sequence numbers, forge
  // cookies or aim hash collisions at the table. Only tests needing reproducible sequence
  // numbers turn it off.
  bool random_secrets = true;
  // Several loops on the port (DpdkRuntime::flow_steering()): this transport is `queue`'s, and
  // its active opens take only source ports whose flow hashes to that queue, so the replies
  // arrive at (or are handed to) this loop. Null with one loop.
  std::shared_ptr<const FlowSteering> steering;
  uint16_t queue = 0;
};

class DpdkTransport final : public Transport, public FrameHandler {
 public:
  // `wheel` is the worker's (TCP's timers); `clock` its clock. Both outlive the transport.
  DpdkTransport(const DpdkTransportOptions& options, clock::Clock clock, timer::TimerWheel& wheel);
  ~DpdkTransport() override;
  DpdkTransport(const DpdkTransport&) = delete;
  DpdkTransport& operator=(const DpdkTransport&) = delete;

  // Transport
  void start(TransportEvents& events) override;
  SendResult send(ConnectionId id, std::span<const uint8_t> bytes) override;
  SendResult send_gather(ConnectionId id, std::span<const std::span<const uint8_t>> parts) override;
  void close(ConnectionId id, CloseMode mode) override;
  void set_reading(ConnectionId id, bool reading) override;
  uint32_t queued_bytes(ConnectionId id) const override;
  uint32_t connections() const override { return static_cast<uint32_t>(conns_.size()); }
  void stop() override;

  // Active open from one of this stack's addresses (in turn) and an ephemeral port to
  // remote:remote_port (after
  // start()). The connection's events go to start()'s TransportEvents: on_connected once
  // established, or on_closed (kPeerReset when refused, kTimeout when never answered).
  // kNoConnection when the engine's table is full or every ephemeral port to that destination
  // is taken (counted as connect_refused_local).
  ConnectionId connect(const net::IpAddress& remote, uint16_t remote_port);
  // Bytes send() takes now without overflowing the connection's queue (0 for an unknown id):
  // a client that must never be cut off sends at most this much.
  uint32_t send_space(ConnectionId id) const;
  // ARP requests for `remote` from each of the stack's addresses (NetStack::introduce_to):
  // a client owning several addresses calls it before its first connects.
  uint32_t introduce_to(const net::IpAddress& remote) { return stack_->introduce_to(remote); }

  // FrameHandler (the port loop's side)
  void on_frames(std::span<const RxFrame> frames, TxBatch& tx) override;
  bool on_turn(uint64_t now_tsc, TxBatch& tx) override;

  // Frames built since the last batch (the worker stays awake while there are some).
  uint32_t pending_tx_frames() const;
  // False once stop() was called and every connection's on_closed was delivered.
  bool idle() const { return conns_.empty(); }

  const DpdkTransportStats& stats() const { return stats_; }
  const net::NetStats& net_stats() const { return stack_->stats(); }
  const net::tcp::TcpStats& tcp_stats() const { return tcp_->stats(); }
  const net::tcp::TcpConfig& tcp_config() const { return tcp_->config(); }
  const net::NetStack& stack() const { return *stack_; }
  const DpdkTransportOptions& options() const { return options_; }
  // The impairment layer's counters per direction (all zero when that direction is off).
  const net::ImpairmentStats& rx_impairment_stats() const { return rx_impair_->stats(); }
  const net::ImpairmentStats& tx_impairment_stats() const { return tx_impair_->stats(); }

 private:
  class SlotPort;      // net::FramePort over a pool of tx slots, flushed into the TxBatch
  class EngineEvents;  // net::tcp::TcpEvents → TransportEvents

  struct ConnState {
    bool local_close = false;  // close() called: a normal end is kLocalClose
    bool queue_full = false;   // aborted because a send overflowed: kSendQueueFull
  };

  // Handed up, and neither closed by us nor cut off for a full send queue.
  bool sendable(ConnectionId id) const {
    const ConnState* state = conns_.find(id);
    return state != nullptr && !state->local_close && !state->queue_full;
  }
  uint32_t flush(TxBatch& tx);
  void release_impaired(uint64_t now_ns);
  void deliver(std::span<const uint8_t> frame, const net::RxMeta& meta, uint64_t now_ns);
  bool impairment_holds() const;

  DpdkTransportOptions options_;
  clock::Clock clock_;
  timer::TimerWheel& wheel_;
  TransportEvents* events_ = nullptr;
  bool started_ = false;
  bool stopping_ = false;
  std::unique_ptr<SlotPort> port_;
  // Always present (an ImpairmentEngine that is off holds no memory and passes frames through);
  // the stack sends through tx_impair_ only when tx impairment is on.
  std::unique_ptr<net::ImpairedRx> rx_impair_;
  std::unique_ptr<net::ImpairedPort> tx_impair_;
  std::unique_ptr<net::NetStack> stack_;
  std::unique_ptr<net::tcp::TcpL4Binding> binding_;
  std::unique_ptr<EngineEvents> engine_events_;
  std::unique_ptr<net::tcp::TcpEngine> tcp_;
  // Connections the layer above holds (accepted, on_closed not yet delivered).
  FlatMap<ConnectionId, ConnState, U64Hash> conns_;
  DpdkTransportStats stats_;
  uint32_t next_local_ = 0;  // connect(): the next of our addresses to open from
};

}  // namespace herald::dataplane::dpdk

// The run-to-completion loop of one lcore: for every port, an rx burst on this loop's queue
// handed to the stack (FrameHandler::on_frames); then the stack's turn (timers, application
// work); then the frames the stack built go out in tx bursts, retried while the ring is full and
// counted as dropped after that. Busy, adaptive (pause, then short sleeps after N empty turns)
// or blocking polling. Nothing here allocates or locks once constructed.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "dataplane/transport/dpdk/flow_steering.h"
#include "dataplane/transport/dpdk/frame.h"
#include "dataplane/transport/dpdk/loop_stats.h"
#include "dataplane/transport/dpdk/unmap_guard.h"

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

namespace herald::dataplane::dpdk {

// A port as one loop sees it: the ethdev, and what the port can offload.
struct LoopPort {
  uint16_t index = 0;    // position in dataplane.dpdk.ports (RxFrame::port, TxBatch's port)
  uint16_t port_id = 0;  // DPDK's ethdev id
  PortOffloads offloads;
};

struct LoopConfig {
  uint16_t queue = 0;  // this loop's rx and tx queue on every port
  uint16_t burst_size = 32;
  LoopPollMode poll_mode = LoopPollMode::kAdaptive;
  uint32_t idle_polls = 1000;
  uint32_t idle_sleep_us = 100;
};

// Several loops sharing a port's traffic (DpdkRuntime makes it when rx_queues > 1): who owns a
// frame, and every loop's hand-off ring (multi-producer: any loop hands over; single-consumer:
// its owner drains it). A frame a loop receives for another loop's flow goes through the ring,
// so a connection is only ever touched by one lcore whatever queue the port put it on: a NIC
// whose RSS uses our key and table never needs the ring (except for ARP); af_packet's kernel
// fanout, memif and anything without RSS do.
struct LoopSteering {
  const FlowSteering* steering = nullptr;
  std::vector<rte_ring*> rings;  // rings[q]: loop q's
};

// Attempts of a tx burst on a full ring before the rest of the batch is dropped: enough to ride
// out a NIC that is a few descriptors behind, short enough not to stall the loop's rx.
inline constexpr int kTxBurstAttempts = 4;

class PortLoop final : private TxBatch {
 public:
  // `ports`: the ports this loop polls and sends on (any subset, each once), addressed by
  // LoopPort::index. `pool` gives tx mbufs. `steering` (outlives the loop): null for a loop
  // alone on its ports; else config.queue is this loop's ring in it.
  PortLoop(const LoopConfig& config, std::vector<LoopPort> ports, rte_mempool* pool,
           FrameHandler& handler, const LoopSteering* steering = nullptr);
  ~PortLoop() override;
  PortLoop(const PortLoop&) = delete;
  PortLoop& operator=(const PortLoop&) = delete;

  // Turns until `stop` is set, then sends what is pending. On the loop's own lcore.
  void run(const std::atomic<bool>& stop);
  // One turn: rx bursts, the handler's turn, tx bursts. True when it did any work.
  bool poll_once();
  // What poll mode does after an idle turn: nothing, a pause, or a sleep (counted; `poller`
  // offline meanwhile).
  void idle(PmdPoller& poller);

  const LoopStats& stats() const { return stats_; }
  const LoopConfig& config() const { return config_; }

 private:
  struct PendingTx {
    rte_mbuf* mbuf;
    TxOffload offload;
  };
  struct PortState {
    LoopPort port;
    std::vector<PendingTx> pending;  // capacity burst_size, reserved at construction
  };

  std::span<uint8_t> append(uint16_t port, uint16_t length, const TxOffload& offload) override;
  // Frames from the port: this loop's own to the handler, others' staged for their rings.
  void receive(const PortState& state, uint16_t count);
  // The staged frames into their owners' rings (what does not fit is dropped and counted).
  void hand_over();
  // Frames other loops handed to this one; true when there were some.
  bool receive_handed_over();
  // The handler's turn on rx_frames_[0, frames), then the mbufs freed.
  void deliver(uint16_t frames, rte_mbuf** mbufs, uint16_t mbuf_count);
  // Sends `state`'s batch; returns frames the port took.
  uint32_t flush(PortState& state);
  // Fills in the checksums `pending.offload` asks for, by the port or in software. False when
  // the frame's headers do not match the request (the frame is then dropped and counted).
  bool apply_offload(const PortState& state, PendingTx& pending);

  LoopConfig config_;
  std::vector<PortState> ports_;
  static constexpr uint16_t kNoSlot = UINT16_MAX;
  std::vector<uint16_t> slot_of_index_;  // LoopPort::index -> position in ports_
  rte_mempool* pool_;
  FrameHandler& handler_;
  uint16_t tx_data_room_bytes_;
  std::vector<rte_mbuf*> rx_mbufs_;
  std::vector<RxFrame> rx_frames_;
  std::vector<rte_mbuf*> tx_mbufs_;
  const LoopSteering* steering_;
  std::vector<std::vector<rte_mbuf*>> staged_;  // [queue]: frames for that loop, this turn
  uint32_t idle_turns_ = 0;
  LoopStats stats_;
};

}  // namespace herald::dataplane::dpdk

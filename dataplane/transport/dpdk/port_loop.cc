// The per-lcore run-to-completion loop (port_loop.h).
#include "dataplane/transport/dpdk/port_loop.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pause.h>
#include <rte_ring.h>
#include <rte_tcp.h>
#include <rte_udp.h>
#include <time.h>

#include <cstddef>
#include <cstring>

#include "platform/assert/assert.h"

namespace herald::dataplane::dpdk {
namespace {

RxChecksum ip_verdict(uint64_t flags) {
  switch (flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
    case RTE_MBUF_F_RX_IP_CKSUM_GOOD: return RxChecksum::kGood;
    case RTE_MBUF_F_RX_IP_CKSUM_BAD: return RxChecksum::kBad;
    // NONE: the header's integrity was checked though the field is not the sum (rte_mbuf_core.h).
    case RTE_MBUF_F_RX_IP_CKSUM_NONE: return RxChecksum::kGood;
    default: return RxChecksum::kUnknown;
  }
}

RxChecksum l4_verdict(uint64_t flags) {
  switch (flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) {
    case RTE_MBUF_F_RX_L4_CKSUM_GOOD: return RxChecksum::kGood;
    case RTE_MBUF_F_RX_L4_CKSUM_BAD: return RxChecksum::kBad;
    case RTE_MBUF_F_RX_L4_CKSUM_NONE: return RxChecksum::kGood;
    default: return RxChecksum::kUnknown;
  }
}

constexpr uint8_t kEthernetHeaderBytes = 14;
constexpr uint8_t kIpv4HeaderBytes = 20;
constexpr uint8_t kTcpHeaderBytes = 20;
constexpr uint8_t kUdpHeaderBytes = 8;

}  // namespace

PortLoop::PortLoop(const LoopConfig& config, std::vector<LoopPort> ports, rte_mempool* pool,
                   FrameHandler& handler, const LoopSteering* steering)
    : config_(config), pool_(pool), handler_(handler), steering_(steering) {
  HERALD_CHECK(config_.burst_size > 0, "a port loop needs a burst size");
  HERALD_CHECK(pool_ != nullptr, "a port loop needs a mempool");
  const uint32_t room = rte_pktmbuf_data_room_size(pool_);
  HERALD_CHECK(room > RTE_PKTMBUF_HEADROOM, "mbufs without data room");
  tx_data_room_bytes_ = static_cast<uint16_t>(room - RTE_PKTMBUF_HEADROOM);
  ports_.reserve(ports.size());
  for (const LoopPort& port : ports) {
    if (port.index >= slot_of_index_.size()) slot_of_index_.resize(port.index + 1, kNoSlot);
    HERALD_CHECK(slot_of_index_[port.index] == kNoSlot, "a port listed twice in one loop");
    slot_of_index_[port.index] = static_cast<uint16_t>(ports_.size());
    PortState state{port, {}};
    state.pending.reserve(config_.burst_size);
    ports_.push_back(std::move(state));
  }
  rx_mbufs_.resize(config_.burst_size);
  rx_frames_.resize(config_.burst_size);
  tx_mbufs_.resize(config_.burst_size);
  if (steering_ != nullptr) {
    HERALD_CHECK(steering_->steering != nullptr &&
                     steering_->rings.size() == steering_->steering->queues() &&
                     config_.queue < steering_->rings.size(),
                 "loop steering: one ring per queue, this loop's queue among them");
    // A port's burst stages at most burst_size frames per loop before hand_over() empties them.
    staged_.resize(steering_->rings.size());
    for (auto& staged : staged_) staged.reserve(config_.burst_size);
  }
}

PortLoop::~PortLoop() {
  // Frames built and never sent go back to the pool (the pool outlives its loops).
  for (PortState& state : ports_) {
    for (PendingTx& pending : state.pending) rte_pktmbuf_free(pending.mbuf);
    state.pending.clear();
  }
}

void PortLoop::run(const std::atomic<bool>& stop) {
  PmdPoller poller;  // the port's shared memory stays mapped while this thread may read it
  while (!stop.load(std::memory_order_relaxed)) {
    poller.quiescent();
    if (poll_once()) {
      idle_turns_ = 0;
    } else {
      idle(poller);
    }
  }
  for (PortState& state : ports_) flush(state);
}

void PortLoop::idle(PmdPoller& poller) {
  if (idle_turns_ != UINT32_MAX) ++idle_turns_;  // saturates: a long idle stays asleep
  const bool sleep =
      config_.poll_mode == LoopPollMode::kBlocking ||
      (config_.poll_mode == LoopPollMode::kAdaptive && idle_turns_ >= config_.idle_polls);
  if (!sleep) {
    rte_pause();
    return;
  }
  // No rx interrupts here (virtual ports often have none), so idling is a short timed sleep:
  // idle_sleep_us bounds the latency it adds to the first packet of a burst.
  timespec ts{0, static_cast<long>(config_.idle_sleep_us) * 1000};
  {
    PmdPollerAsleep asleep(poller);
    nanosleep(&ts, nullptr);
  }
  stats_.sleeps.add(1);
}

bool PortLoop::poll_once() {
  stats_.polls.add(1);
  bool work = false;
  for (PortState& state : ports_) {
    const uint16_t n =
        rte_eth_rx_burst(state.port.port_id, config_.queue, rx_mbufs_.data(), config_.burst_size);
    if (n == 0) continue;
    work = true;
    receive(state, n);
  }
  if (steering_ != nullptr && receive_handed_over()) work = true;
  if (handler_.on_turn(rte_rdtsc(), *this)) work = true;
  for (PortState& state : ports_) {
    if (!state.pending.empty()) {
      work = true;
      flush(state);
    }
  }
  if (!work) stats_.empty_polls.add(1);
  return work;
}

void PortLoop::receive(const PortState& state, uint16_t count) {
  uint16_t frames = 0;
  uint16_t kept = 0;  // mbufs this loop frees after its handler: its own frames and the drops
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < count; ++i) {
    rte_mbuf* m = rx_mbufs_[i];
    bytes += m->pkt_len;
    // Frames up to the MTU fit one mbuf; a chained one means a driver or MTU setting the
    // stack does not expect: dropped and counted rather than half-read.
    if (m->nb_segs != 1) {
      stats_.rx_multi_segment_drops.add(1);
      rx_mbufs_[kept++] = m;
      continue;
    }
    const std::span<const uint8_t> frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len);
    if (steering_ != nullptr) {
      const FlowSteering::Owner owner = steering_->steering->owner(frame);
      if (owner.kind == FlowSteering::Owner::Kind::kQueue && owner.queue != config_.queue) {
        staged_[owner.queue].push_back(m);  // the owner frees it
        continue;
      }
      if (owner.kind == FlowSteering::Owner::Kind::kEvery) {
        // One mbuf, one reference per loop: each frees its own.
        for (uint16_t q = 0; q < staged_.size(); ++q) {
          if (q == config_.queue) continue;
          rte_mbuf_refcnt_update(m, 1);
          staged_[q].push_back(m);
          stats_.steered_copies.add(1);
        }
      }
    }
    rx_frames_[frames++] =
        RxFrame{frame, state.port.index, ip_verdict(m->ol_flags), l4_verdict(m->ol_flags)};
    rx_mbufs_[kept++] = m;
  }
  stats_.rx_packets.add(count);
  stats_.rx_bytes.add(bytes);
  // Handed over before this loop's own work, so the owner sees them on its next turn.
  if (steering_ != nullptr) hand_over();
  deliver(frames, rx_mbufs_.data(), kept);
}

void PortLoop::hand_over() {
  for (uint16_t q = 0; q < staged_.size(); ++q) {
    std::vector<rte_mbuf*>& staged = staged_[q];
    if (staged.empty()) continue;
    const auto count = static_cast<unsigned>(staged.size());
    const unsigned taken = rte_ring_mp_enqueue_burst(
        steering_->rings[q], reinterpret_cast<void* const*>(staged.data()), count, nullptr);
    stats_.steered_out.add(taken);
    if (taken < count) {
      // The owner is that far behind: dropping here is what a full rx ring would have done
      // (TCP retransmits), and this loop never waits on another.
      stats_.steer_ring_full_drops.add(count - taken);
      rte_pktmbuf_free_bulk(staged.data() + taken, count - taken);
    }
    staged.clear();
  }
}

bool PortLoop::receive_handed_over() {
  const unsigned n = rte_ring_sc_dequeue_burst(steering_->rings[config_.queue],
                                               reinterpret_cast<void**>(rx_mbufs_.data()),
                                               config_.burst_size, nullptr);
  if (n == 0) return false;
  stats_.steered_in.add(n);
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = rx_mbufs_[i];
    // The driver stamped the ethdev it came from; the stack wants its index in the config.
    uint16_t index = UINT16_MAX;  // not one of ours: the stack counts it (rx_other_port)
    for (const PortState& state : ports_) {
      if (state.port.port_id == m->port) index = state.port.index;
    }
    const std::span<const uint8_t> frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len);
    const bool replica =
        steering_->steering->owner(frame).kind == FlowSteering::Owner::Kind::kEvery;
    rx_frames_[i] =
        RxFrame{frame, index, ip_verdict(m->ol_flags), l4_verdict(m->ol_flags), replica};
  }
  deliver(static_cast<uint16_t>(n), rx_mbufs_.data(), static_cast<uint16_t>(n));
  return true;
}

void PortLoop::deliver(uint16_t frames, rte_mbuf** mbufs, uint16_t mbuf_count) {
  if (frames != 0) handler_.on_frames(std::span<const RxFrame>(rx_frames_.data(), frames), *this);
  if (mbuf_count != 0) rte_pktmbuf_free_bulk(mbufs, mbuf_count);
}

std::span<uint8_t> PortLoop::append(uint16_t port, uint16_t length, const TxOffload& offload) {
  if (port >= slot_of_index_.size() || slot_of_index_[port] == kNoSlot) return {};
  if (length > tx_data_room_bytes_ || length == 0) {
    stats_.tx_oversize_drops.add(1);
    return {};
  }
  if (offload.ipv4_checksum || offload.tcp_checksum || offload.udp_checksum) {
    const uint32_t l4_min =
        offload.tcp_checksum ? kTcpHeaderBytes : (offload.udp_checksum ? kUdpHeaderBytes : 0);
    if ((offload.tcp_checksum && offload.udp_checksum) || offload.l2_len < kEthernetHeaderBytes ||
        offload.l3_len < kIpv4HeaderBytes ||
        uint32_t{offload.l2_len} + offload.l3_len + l4_min > length) {
      stats_.tx_bad_offload_drops.add(1);
      return {};
    }
  }
  PortState& state = ports_[slot_of_index_[port]];
  if (state.pending.size() == config_.burst_size) flush(state);
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (m == nullptr) {
    stats_.alloc_failures.add(1);
    return {};
  }
  char* data = rte_pktmbuf_append(m, length);
  HERALD_CHECK(data != nullptr, "length was checked against the data room");
  state.pending.push_back(PendingTx{m, offload});
  return std::span<uint8_t>(reinterpret_cast<uint8_t*>(data), length);
}

bool PortLoop::apply_offload(const PortState& state, PendingTx& pending) {
  const TxOffload& off = pending.offload;
  if (!off.ipv4_checksum && !off.tcp_checksum && !off.udp_checksum) return true;
  rte_mbuf* m = pending.mbuf;
  auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, off.l2_len);
  // The stack wrote the headers after append(): check what the software sum would read.
  const uint32_t total = rte_be_to_cpu_16(ip->total_length);
  const uint32_t l4_min =
      off.tcp_checksum ? kTcpHeaderBytes : (off.udp_checksum ? kUdpHeaderBytes : 0);
  if ((ip->version_ihl >> 4) != 4 || rte_ipv4_hdr_len(ip) != off.l3_len ||
      total < uint32_t{off.l3_len} + l4_min || total > m->data_len - uint32_t{off.l2_len}) {
    return false;
  }
  const PortOffloads& caps = state.port.offloads;
  const bool hw_ip = off.ipv4_checksum && caps.tx_ipv4_checksum;
  const bool hw_l4 =
      (off.tcp_checksum && caps.tx_tcp_checksum) || (off.udp_checksum && caps.tx_udp_checksum);
  m->l2_len = off.l2_len;
  m->l3_len = off.l3_len;
  uint64_t flags = 0;
  if (hw_ip || hw_l4) flags |= RTE_MBUF_F_TX_IPV4;
  if (hw_ip) flags |= RTE_MBUF_F_TX_IP_CKSUM;
  if (off.tcp_checksum && hw_l4) flags |= RTE_MBUF_F_TX_TCP_CKSUM;
  if (off.udp_checksum && hw_l4) flags |= RTE_MBUF_F_TX_UDP_CKSUM;
  m->ol_flags |= flags;
  if (off.ipv4_checksum) {
    ip->hdr_checksum = 0;
    if (!hw_ip) ip->hdr_checksum = rte_ipv4_cksum(ip);
  }
  uint8_t* l4 = reinterpret_cast<uint8_t*>(ip) + off.l3_len;
  const bool l4_sum = off.tcp_checksum || off.udp_checksum;
  if (l4_sum) {
    // The field's offset in the TCP / UDP header; written through memcpy (packed headers).
    const size_t at =
        off.tcp_checksum ? offsetof(rte_tcp_hdr, cksum) : offsetof(rte_udp_hdr, dgram_cksum);
    uint16_t sum = 0;
    std::memcpy(l4 + at, &sum, sizeof(sum));
    // A port summing TCP/UDP wants the pseudo-header's sum in the field (rte_mbuf_core.h).
    sum = hw_l4 ? rte_ipv4_phdr_cksum(ip, flags) : rte_ipv4_udptcp_cksum(ip, l4);
    std::memcpy(l4 + at, &sum, sizeof(sum));
  }
  if (hw_ip || hw_l4) stats_.tx_hw_checksums.add(1);
  if ((off.ipv4_checksum && !hw_ip) || (l4_sum && !hw_l4)) {
    stats_.tx_sw_checksums.add(1);
  }
  return true;
}

uint32_t PortLoop::flush(PortState& state) {
  uint16_t n = 0;
  for (PendingTx& pending : state.pending) {
    if (apply_offload(state, pending)) {
      tx_mbufs_[n++] = pending.mbuf;
    } else {
      stats_.tx_bad_offload_drops.add(1);
      rte_pktmbuf_free(pending.mbuf);
    }
  }
  state.pending.clear();
  // Lengths are read before the burst: a sent mbuf belongs to the port (and may be freed).
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < n; ++i) bytes += tx_mbufs_[i]->pkt_len;
  uint16_t sent = 0;
  for (int attempt = 0; attempt < kTxBurstAttempts && sent < n; ++attempt) {
    if (attempt > 0) {
      stats_.tx_retries.add(1);
      rte_pause();
    }
    sent += rte_eth_tx_burst(state.port.port_id, config_.queue, tx_mbufs_.data() + sent,
                             static_cast<uint16_t>(n - sent));
  }
  if (sent < n) {
    for (uint16_t i = sent; i < n; ++i) bytes -= tx_mbufs_[i]->pkt_len;
    stats_.tx_ring_full_drops.add(n - sent);
    rte_pktmbuf_free_bulk(tx_mbufs_.data() + sent, n - sent);
  }
  stats_.tx_packets.add(sent);
  stats_.tx_bytes.add(bytes);
  return sent;
}

}  // namespace herald::dataplane::dpdk

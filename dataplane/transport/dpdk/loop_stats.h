// Counters of one port loop (port_loop.h), written by its lcore alone and read by anyone (the
// stats mirror, tests): single-writer relaxed atomics, so a reader on another thread is not a
// data race and the writer pays no locked instruction.
#pragma once

#include <atomic>
#include <cstdint>

namespace herald::dataplane::dpdk {

// name, what it counts. Stable names: the counters segment publishes them as dp.dpdk.<name>.
#define HERALD_DPDK_LOOP_COUNTERS(X)                                                          \
  X(rx_packets, "frames received (all ports of this loop)")                                   \
  X(rx_bytes, "bytes of the frames received")                                                 \
  X(tx_packets, "frames the port took for sending")                                           \
  X(tx_bytes, "bytes of the frames the port took")                                            \
  X(polls, "loop turns")                                                                      \
  X(empty_polls, "turns that received nothing and had nothing to do")                         \
  X(tx_retries, "tx_burst calls again after a partial one (ring full)")                       \
  X(tx_ring_full_drops, "frames dropped because the tx ring stayed full through the retries") \
  X(alloc_failures, "tx frames not built: the mempool was empty")                             \
  X(rx_multi_segment_drops, "received frames in more than one mbuf (not expected: dropped)")  \
  X(tx_oversize_drops, "tx frames longer than an mbuf's data room (refused)")                 \
  X(tx_bad_offload_drops, "tx frames whose checksum request did not fit the frame (refused)") \
  X(tx_hw_checksums, "tx frames checksummed by the port")                                     \
  X(tx_sw_checksums, "tx frames checksummed in software (the port lacks the offload)")        \
  X(sleeps, "idle sleeps (adaptive / blocking poll mode)")                                    \
  X(steered_out, "frames received here but owned by another loop's lcore: handed over")       \
  X(steered_in, "frames another loop received and handed to this one (its own flows)")        \
  X(steered_copies, "ARP frames copied to every other loop (each learns; this one answers)")  \
  X(steer_ring_full_drops, "frames for another loop dropped: its hand-off ring was full")

class RelaxedCounter {
 public:
  void add(uint64_t n) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

struct LoopStats {
#define HERALD_DPDK_LOOP_COUNTER_FIELD(name, doc) RelaxedCounter name;
  HERALD_DPDK_LOOP_COUNTERS(HERALD_DPDK_LOOP_COUNTER_FIELD)
#undef HERALD_DPDK_LOOP_COUNTER_FIELD
};

// A plain copy, for printing and comparing.
struct LoopStatsSnapshot {
#define HERALD_DPDK_LOOP_SNAPSHOT_FIELD(name, doc) uint64_t name = 0;
  HERALD_DPDK_LOOP_COUNTERS(HERALD_DPDK_LOOP_SNAPSHOT_FIELD)
#undef HERALD_DPDK_LOOP_SNAPSHOT_FIELD
};

inline LoopStatsSnapshot snapshot(const LoopStats& stats) {
  LoopStatsSnapshot out;
#define HERALD_DPDK_LOOP_SNAPSHOT_COPY(name, doc) out.name = stats.name.get();
  HERALD_DPDK_LOOP_COUNTERS(HERALD_DPDK_LOOP_SNAPSHOT_COPY)
#undef HERALD_DPDK_LOOP_SNAPSHOT_COPY
  return out;
}

}  // namespace herald::dataplane::dpdk

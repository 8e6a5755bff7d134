// The DPDK port layer of one dataplane process: EAL init from the config, the mbuf pool sized by
// mempool_sizing.h, the ports, and one PortLoop per rx queue on the worker lcores; then a clean
// shutdown (loops stopped, ports stopped and closed, pool freed, rte_eal_cleanup).
//
//   absl::StatusOr<std::unique_ptr<DpdkRuntime>> dpdk = DpdkRuntime::start(settings);
//   (*dpdk)->launch({&stack0, &stack1});   // loop i on worker lcore i, queue i of every port
//   ...
//   (*dpdk)->shutdown();                   // or the destructor
//
// DPDK allows one rte_eal_init per process (and none again after rte_eal_cleanup), so start()
// succeeds at most once per process; tests run each EAL scenario in its own executable.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "dataplane/transport/dpdk/flow_steering.h"
#include "dataplane/transport/dpdk/frame.h"
#include "dataplane/transport/dpdk/mempool_sizing.h"
#include "dataplane/transport/dpdk/port.h"
#include "dataplane/transport/dpdk/port_loop.h"

struct rte_mempool;

namespace herald::dataplane::dpdk {

class DpdkRuntime {
 public:
  // EAL, mempool, ports (started). Errors say which step and why; after an error past the EAL
  // init the EAL is cleaned up again (and start() cannot be called again in this process).
  static absl::StatusOr<std::unique_ptr<DpdkRuntime>> start(const DpdkSettings& settings);

  ~DpdkRuntime();
  DpdkRuntime(const DpdkRuntime&) = delete;
  DpdkRuntime& operator=(const DpdkRuntime&) = delete;

  // Port loops: loop i (queue i) runs handlers[i] on the i-th worker lcore. handlers.size() must
  // be rx_queues; each handler must outlive stop_loops(). Fails when already launched or when an
  // lcore is busy.
  absl::Status launch(std::span<FrameHandler* const> handlers);
  // Sets the loops' stop flag and waits for their lcores (idempotent).
  void stop_loops();
  // stop_loops, ports stopped and closed, the pool freed, rte_eal_cleanup (idempotent).
  void shutdown();

  const DpdkSettings& settings() const { return settings_; }
  const MempoolSize& mempool_size() const { return mempool_size_; }
  rte_mempool* mempool() const { return pool_; }
  // Mbufs in the pool now (not lent to rings, loops or caches' owners): a leak check for tests.
  uint32_t mempool_available() const;
  // Mbufs out of the pool now (rx/tx rings, loops, the stack): the dp.dpdk.mempool gauge.
  uint32_t mempool_in_use() const;
  size_t port_count() const { return ports_.size(); }
  const Port& port(size_t index) const { return ports_[index]; }
  // The ports as a loop sees them, for a PortLoop built by hand (tests, benchmarks).
  std::vector<LoopPort> loop_ports() const;
  size_t loop_count() const { return loops_.size(); }
  // Several rx queues: who owns a frame and each loop's hand-off ring (the same for every
  // PortLoop of this runtime, and what a DpdkTransport's active opens consult); null with one.
  const LoopSteering* steering() const { return steering_.rings.empty() ? nullptr : &steering_; }
  std::shared_ptr<const FlowSteering> flow_steering() const { return flow_steering_; }
  // Frames waiting in the hand-off rings now (0 with one queue).
  uint32_t handoff_frames() const;
  const PortLoop& loop(size_t i) const { return *loops_[i]; }

 private:
  explicit DpdkRuntime(const DpdkSettings& settings) : settings_(settings) {}
  LoopConfig loop_config(uint16_t queue) const;

  DpdkSettings settings_;
  MempoolSize mempool_size_;
  rte_mempool* pool_ = nullptr;
  std::vector<Port> ports_;
  std::shared_ptr<const FlowSteering> flow_steering_;
  LoopSteering steering_;  // rings owned here (freed at shutdown, their frames with them)
  std::vector<std::unique_ptr<PortLoop>> loops_;
  std::vector<unsigned> loop_lcores_;
  std::atomic<bool> stop_{false};
  bool eal_up_ = false;
};

}  // namespace herald::dataplane::dpdk

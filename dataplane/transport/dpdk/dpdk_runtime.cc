// EAL, mempool, ports and port loops of one process (dpdk_runtime.h).
#include "dataplane/transport/dpdk/dpdk_runtime.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "platform/log/log.h"

namespace herald::dataplane::dpdk {
namespace {

// rte_eal_init may run once per process; a second call (even after rte_eal_cleanup) fails inside
// DPDK with EALREADY, so the runtime refuses it first with a clearer message.
std::atomic<bool> g_eal_initialised{false};

struct LaunchArg {
  PortLoop* loop;
  const std::atomic<bool>* stop;
};

int run_loop(void* arg) {
  auto* launch = static_cast<LaunchArg*>(arg);
  launch->loop->run(*launch->stop);
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DpdkRuntime>> DpdkRuntime::start(const DpdkSettings& settings) {
  if (settings.ports.empty()) {
    return absl::InvalidArgumentError("dpdk: no port configured (dataplane.dpdk.ports)");
  }
  if (g_eal_initialised.exchange(true)) {
    return absl::FailedPreconditionError(
        "dpdk: the EAL was already initialised in this process (DPDK allows one rte_eal_init "
        "per process)");
  }
  std::unique_ptr<DpdkRuntime> rt(new DpdkRuntime(settings));

  // EAL. It may keep pointers into argv (and permutes it), so the strings live in a static.
  static std::vector<std::string> args;
  args = eal_arguments(settings, std::thread::hardware_concurrency());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  HLOG_INFO("dpdk.eal.init").kv("args", absl::StrJoin(args, " "));
  if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0) {
    return absl::InternalError(absl::StrCat("dpdk: rte_eal_init failed: ", rte_strerror(rte_errno),
                                            " (EAL arguments: ", absl::StrJoin(args, " "), ")"));
  }
  rt->eal_up_ = true;
  const unsigned workers = rte_lcore_count() - 1;
  if (workers < settings.rx_queues) {
    return absl::InvalidArgumentError(
        absl::StrCat("dpdk: ", workers, " worker lcores for ", settings.rx_queues,
                     " rx queues: each port loop needs its own lcore"));
  }

  // Mempool, sized by the formula (mempool_sizing.h) with the element size DPDK will lay out.
  rte_mempool_objsz objsz;
  const uint32_t element_bytes = rte_mempool_calc_obj_size(
      static_cast<uint32_t>(sizeof(rte_mbuf)) + RTE_MBUF_DEFAULT_BUF_SIZE, 0, &objsz);
  MempoolInputs inputs;
  inputs.ports = static_cast<uint32_t>(settings.ports.size());
  inputs.rx_queues = settings.rx_queues;
  inputs.rx_descriptors = settings.rx_descriptors;
  inputs.tx_queues = settings.tx_queues;
  inputs.tx_descriptors = settings.tx_descriptors;
  inputs.burst_size = settings.burst_size;
  inputs.lcores = settings.rx_queues;
  inputs.cache_size = settings.mempool_cache_size;
  inputs.connections = settings.max_connections;
  inputs.mbufs_per_connection = settings.mbufs_per_connection;
  inputs.element_bytes = element_bytes;
  inputs.handoff_ring_slots =
      handoff_ring_slots(inputs.ports, settings.rx_descriptors, settings.rx_queues);
  absl::StatusOr<MempoolSize> size = dpdk::mempool_size(inputs);
  if (!size.ok()) return size.status();
  rt->mempool_size_ = *size;
  HLOG_INFO("dpdk.mempool.sized")
      .kv("rings", size->rings)
      .kv("bursts", size->bursts)
      .kv("caches", size->caches)
      .kv("connections", size->connections)
      .kv("handoffs", size->handoffs)
      .kv("needed", size->needed)
      .kv("mbufs", size->mbufs)
      .kv("element_bytes", element_bytes)
      .kv("bytes", size->bytes);
  rt->pool_ = rte_pktmbuf_pool_create("herald_mbufs", size->mbufs, settings.mempool_cache_size, 0,
                                      RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
  if (rt->pool_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "dpdk: the mbuf pool of ", size->mbufs, " mbufs (", size->bytes >> 20,
        " MiB) could not be made: ", rte_strerror(rte_errno),
        "; lower limits.max_connections or dataplane.dpdk.mbufs_per_connection, or give the "
        "EAL more memory (huge pages, dataplane.dpdk.memory_mb)"));
  }

  // Several queues: a flow's frames go to one loop whatever queue they arrive on
  // (flow_steering.h), through each loop's hand-off ring.
  if (settings.rx_queues > 1) {
    rt->flow_steering_ = std::make_shared<const FlowSteering>(settings.rx_queues);
    rt->steering_.steering = rt->flow_steering_.get();
    for (uint16_t q = 0; q < settings.rx_queues; ++q) {
      const std::string name = absl::StrCat("herald_handoff_", q);
      rte_ring* ring = rte_ring_create(name.c_str(), inputs.handoff_ring_slots,
                                       static_cast<int>(rte_socket_id()), RING_F_SC_DEQ);
      if (ring == nullptr) {
        return absl::ResourceExhaustedError(
            absl::StrCat("dpdk: the hand-off ring of loop ", q, " (", inputs.handoff_ring_slots,
                         " slots) could not be made: ", rte_strerror(rte_errno)));
      }
      rt->steering_.rings.push_back(ring);
    }
    HLOG_INFO("dpdk.steering.ready")
        .kv("queues", settings.rx_queues)
        .kv("table_size", rt->flow_steering_->table_size())
        .kv("handoff_ring_slots", inputs.handoff_ring_slots);
  }

  rt->ports_.reserve(settings.ports.size());
  for (size_t i = 0; i < settings.ports.size(); ++i) {
    PortConfig pc;
    pc.device = settings.ports[i];
    pc.index = static_cast<uint16_t>(i);
    pc.rx_queues = settings.rx_queues;
    pc.tx_queues = settings.tx_queues;
    pc.rx_descriptors = settings.rx_descriptors;
    pc.tx_descriptors = settings.tx_descriptors;
    pc.promiscuous = settings.promiscuous;
    pc.steering = rt->flow_steering_.get();
    absl::StatusOr<Port> port = Port::open(pc, rt->pool_);
    if (!port.ok()) return port.status();
    rt->ports_.push_back(std::move(*port));
  }
  return rt;
}

DpdkRuntime::~DpdkRuntime() {
  shutdown();
}

std::vector<LoopPort> DpdkRuntime::loop_ports() const {
  std::vector<LoopPort> out;
  for (const Port& port : ports_)
    out.push_back(LoopPort{port.index(), port.port_id(), port.offloads()});
  return out;
}

LoopConfig DpdkRuntime::loop_config(uint16_t queue) const {
  LoopConfig config;
  config.queue = queue;
  config.burst_size = settings_.burst_size;
  config.poll_mode = settings_.poll_mode;
  config.idle_polls = settings_.idle_polls;
  config.idle_sleep_us = settings_.idle_sleep_us;
  return config;
}

absl::Status DpdkRuntime::launch(std::span<FrameHandler* const> handlers) {
  if (!eal_up_ || !loops_.empty()) {
    return absl::FailedPreconditionError("dpdk: loops already launched (or runtime shut down)");
  }
  if (handlers.size() != settings_.rx_queues) {
    return absl::InvalidArgumentError(absl::StrCat("dpdk: ", handlers.size(), " handlers for ",
                                                   settings_.rx_queues,
                                                   " port loops (one per rx queue)"));
  }
  static std::vector<LaunchArg> launch_args;  // read by the lcores while they run
  launch_args.clear();
  launch_args.reserve(handlers.size());
  stop_.store(false);
  unsigned lcore = 0;
  uint16_t queue = 0;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (queue == handlers.size()) break;
    if (handlers[queue] == nullptr) {
      stop_loops();
      return absl::InvalidArgumentError(absl::StrCat("dpdk: handler ", queue, " is null"));
    }
    loops_.push_back(std::make_unique<PortLoop>(loop_config(queue), loop_ports(), pool_,
                                                *handlers[queue], steering()));
    launch_args.push_back(LaunchArg{loops_.back().get(), &stop_});
    if (int rc = rte_eal_remote_launch(run_loop, &launch_args.back(), lcore); rc != 0) {
      loops_.pop_back();
      stop_loops();
      return absl::InternalError(absl::StrCat("dpdk: rte_eal_remote_launch on lcore ", lcore,
                                              " failed: ", rte_strerror(-rc)));
    }
    loop_lcores_.push_back(lcore);
    HLOG_INFO("dpdk.loop.launched").kv("queue", queue).kv("lcore", lcore);
    ++queue;
  }
  return absl::OkStatus();
}

void DpdkRuntime::stop_loops() {
  stop_.store(true);
  for (unsigned lcore : loop_lcores_) rte_eal_wait_lcore(lcore);
  loop_lcores_.clear();
}

uint32_t DpdkRuntime::handoff_frames() const {
  uint32_t frames = 0;
  for (rte_ring* ring : steering_.rings) frames += rte_ring_count(ring);
  return frames;
}

uint32_t DpdkRuntime::mempool_available() const {
  return pool_ != nullptr ? rte_mempool_avail_count(pool_) : 0;
}

uint32_t DpdkRuntime::mempool_in_use() const {
  return pool_ != nullptr ? rte_mempool_in_use_count(pool_) : 0;
}

void DpdkRuntime::shutdown() {
  if (!eal_up_) return;
  stop_loops();
  for (size_t i = 0; i < loops_.size(); ++i) {
    const LoopStatsSnapshot s = snapshot(loops_[i]->stats());
    HLOG_INFO("dpdk.loop.stopped")
        .kv("queue", i)
        .kv("rx_packets", s.rx_packets)
        .kv("tx_packets", s.tx_packets)
        .kv("tx_ring_full_drops", s.tx_ring_full_drops)
        .kv("alloc_failures", s.alloc_failures)
        .kv("sleeps", s.sleeps);
  }
  loops_.clear();  // frames still pending go back to the pool
  // Frames handed to a loop that stopped before taking them.
  for (rte_ring* ring : steering_.rings) {
    void* frame = nullptr;
    while (rte_ring_sc_dequeue(ring, &frame) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(frame));
    rte_ring_free(ring);
  }
  steering_.rings.clear();
  ports_.clear();  // stop + close: the drivers return their rings' mbufs
  if (pool_ != nullptr) {
    rte_mempool_free(pool_);
    pool_ = nullptr;
  }
  // EAL leaves its runtime directory (/var/run/dpdk/<file prefix>: config and memzone
  // arrays, ~3 MB) for secondary processes; Herald runs none, so a clean exit removes it
  // rather than leave one per prefix behind (tests use a prefix per run).
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  eal_up_ = false;
  std::error_code ignored;
  if (!runtime_dir.empty()) std::filesystem::remove_all(runtime_dir, ignored);
  HLOG_INFO("dpdk.shutdown").kv("removed_runtime_dir", runtime_dir);
}

}  // namespace herald::dataplane::dpdk

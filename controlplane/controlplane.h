// herald-controlplane's process: owns the node's data directory, the counters segment shared
// with the dataplane and the io_uring event loop every control-plane service runs on.
// The services (storage, APIs, IPC store service) live in NodeServices, run on this loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/ipc/ipc_server.h"
#include "controlplane/node_services.h"
#include "platform/config/config.h"
#include "platform/counters/segment.h"
#include "platform/shm/unique_fd.h"
#include "platform/uring/event_loop.h"

namespace herald::controlplane {

struct StartOptions {
  std::string data_dir;           // effective data directory (--data-dir, else the config's)
  bool config_from_file = false;  // --config was given: the file seeds a config revision
};

class ControlPlane {
 public:
  // Takes the data directory (creating it, then an exclusive lock on it, so two control planes
  // never own the same durable bytes), creates the counters segment and the event loop, and
  // starts listening for SIGINT/SIGTERM on the loop.
  static absl::StatusOr<std::unique_ptr<ControlPlane>> start(config::Config config,
                                                             const StartOptions& options);
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Runs the event loop until a stop signal arrives or stop() is called.
  void run();
  void stop() { loop_->stop(); }

  const config::Config& config() const { return config_; }
  const std::string& data_dir() const { return data_dir_; }
  uint64_t uptime_ms() const;
  const IpcServer& ipc() const { return *ipc_; }
  NodeServices& services() { return *services_; }

 private:
  ControlPlane(config::Config config, std::string data_dir, shm::UniqueFd lock_fd,
               counters::CountersSegment counters, std::unique_ptr<uring::EventLoop> loop,
               shm::UniqueFd signal_fd);
  absl::Status register_counters();
  static void on_signal(uring::Operation& op, const uring::Completion& completion);
  static void on_tick(uring::Operation& op, const uring::Completion& completion);
  void publish_stats();

  // A monotonic source (loop or IPC stats) mirrored into a counter by deltas.
  struct MirroredCounter {
    counters::CounterHandle handle;
    uint64_t published = 0;
  };
  void mirror(MirroredCounter& counter, uint64_t now_value);

  config::Config config_;
  std::string data_dir_;
  shm::UniqueFd lock_fd_;
  counters::CountersSegment counters_;
  std::unique_ptr<uring::EventLoop> loop_;
  shm::UniqueFd signal_fd_;
  uring::Operation signal_op_;
  uring::Operation tick_op_;
  uint64_t started_ns_;
  // After loop_, so both are destroyed while the loop still runs; ipc_ after services_, so the
  // IPC server (which calls the store service) goes first.
  std::unique_ptr<NodeServices> services_;
  std::unique_ptr<IpcServer> ipc_;
  std::vector<std::pair<counters::CounterHandle, uint64_t>> service_counters_;
  std::vector<counters::GaugeHandle> service_gauges_;  // NodeServices::gauges(), in order

  // This thread's block in the counters segment and what the control plane itself reports.
  std::optional<counters::ThreadCounters> thread_counters_;
  counters::GaugeHandle uptime_seconds_;
  counters::GaugeHandle config_node_id_;
  MirroredCounter loop_iterations_;
  MirroredCounter loop_completions_;
  MirroredCounter ipc_connects_;
  MirroredCounter ipc_disconnects_;
  MirroredCounter ipc_rejections_;
  MirroredCounter ipc_records_in_;
  MirroredCounter ipc_records_out_;
  MirroredCounter ipc_bad_records_;
  // Sends to the dataplane that found its ring full: held in the backlog, or refused.
  MirroredCounter ipc_ring_full_;
  MirroredCounter ipc_backlogged_;
  MirroredCounter ipc_backlog_full_;
  MirroredCounter ipc_send_failures_;  // too large for a ring, or the connection broke
  // Records (and bytes) waiting in the backlogs for room in a full cp_to_dp ring.
  counters::GaugeHandle ipc_backlog_records_;
  counters::GaugeHandle ipc_backlog_bytes_;
  counters::GaugeHandle ipc_dataplane_connected_;
};

}  // namespace herald::controlplane

// herald-controlplane's process: owns the node's data directory, the counters segment shared
// with the dataplane and the io_uring event loop every control-plane service runs on.
// Services (HTTP APIs, storage, IPC, profiler) attach to it as their issues land.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/config/config.h"
#include "platform/counters/segment.h"
#include "platform/shm/unique_fd.h"
#include "platform/uring/event_loop.h"

namespace herald::controlplane {

struct StartOptions {
  std::string data_dir;  // effective data directory (--data-dir, else the config's)
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

 private:
  ControlPlane(config::Config config, std::string data_dir, shm::UniqueFd lock_fd,
               counters::CountersSegment counters, std::unique_ptr<uring::EventLoop> loop,
               shm::UniqueFd signal_fd);
  absl::Status register_counters();
  static void on_signal(uring::Operation& op, const uring::Completion& completion);
  static void on_tick(uring::Operation& op, const uring::Completion& completion);
  void publish_loop_stats();

  config::Config config_;
  std::string data_dir_;
  shm::UniqueFd lock_fd_;
  counters::CountersSegment counters_;
  std::unique_ptr<uring::EventLoop> loop_;
  shm::UniqueFd signal_fd_;
  uring::Operation signal_op_;
  uring::Operation tick_op_;
  uint64_t started_ns_;

  // This thread's block in the counters segment and what the control plane itself reports.
  std::optional<counters::ThreadCounters> thread_counters_;
  counters::GaugeHandle uptime_seconds_;
  counters::GaugeHandle config_node_id_;
  counters::CounterHandle loop_iterations_;
  counters::CounterHandle loop_completions_;
  uring::LoopStats published_stats_{};
};

}  // namespace herald::controlplane

// The herald-dataplane process: the chat TLS setup shared by the workers, the directory and the
// mesh, one Worker thread per configured core, and the supervision of the control plane's link
// (either plane may start first; the link is re-made whenever the control plane restarts).
//
//   auto dp = Dataplane::start(config, {.data_dir = "/var/lib/herald"});
//   ... (*dp)->stop();  (*dp)->wait();
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/process_memory.h"
#include "dataplane/routing/directory.h"
#include "dataplane/routing/worker_mesh.h"
#include "dataplane/tls/chat_tls.h"
#include "dataplane/worker.h"
#include "platform/config/config.h"

namespace herald::dataplane {

struct DataplaneOptions {
  std::string data_dir;  // overrides node.data_dir when not empty
  // How long start() waits for every worker to listen.
  uint32_t start_timeout_ms = 10'000;
};

class Dataplane {
 public:
  // Loads or generates the chat certificate, starts the workers (listening when this
  // returns) and the control-plane supervisor.
  static absl::StatusOr<std::unique_ptr<Dataplane>> start(config::Config config,
                                                          const DataplaneOptions& options);
  ~Dataplane();
  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;

  // Any thread; wait() returns after.
  void stop();
  void wait();

  // The chat port (the same for every worker: SO_REUSEPORT).
  uint16_t port() const;
  bool controlplane_connected() const { return connected_.load(); }
  size_t workers() const { return workers_.size(); }
  const WorkerStatus& worker_status(size_t i) const { return workers_[i]->status(); }

 private:
  Dataplane() = default;
  void supervise();  // the control plane's link, on its own thread

  std::shared_ptr<const config::Config> config_;
  std::string data_dir_;
  uint64_t instance_id_ = 0;
  std::unique_ptr<ChatTls> tls_;
  std::unique_ptr<routing::Directory> directory_;
  std::unique_ptr<WorkerMesh> mesh_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::thread supervisor_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> ticket_rotations_{0};
  std::unique_ptr<ProcessMemory> memory_;  // sampled by the supervisor, published by worker 0
};

}  // namespace herald::dataplane

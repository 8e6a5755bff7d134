// One dataplane worker: a thread that owns an io_uring loop, its transport (kernel backend),
// the TLS layer, its sessions, its router and its store client, and runs them to completion in
// one loop (DESIGN.md: a worker per core, nothing shared on the hot path but the directory and
// the mesh rings). The process (dataplane.h) starts the workers and hands them the control
// plane's link as it comes and goes.
//
//   Worker w(setup);                         // nothing runs yet
//   std::thread t([&] { w.run(); });         // builds everything on its own thread, then loops
//   w.set_link(link);  w.set_link(nullptr);  // any thread: the control plane came or went
//   w.stop(); t.join();
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "dataplane/process_memory.h"
#include "dataplane/routing/directory.h"
#include "dataplane/routing/worker_mesh.h"
#include "platform/config/config.h"
#include "platform/ipc/client.h"
#include "platform/tls/context.h"

namespace herald::dataplane {

namespace dpdk {
class DpdkRuntime;
}

struct WorkerSetup {
  uint16_t index = 0;
  uint16_t workers = 1;
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<tls::ServerContext> tls_context;
  routing::Directory* directory = nullptr;  // shared by the workers, outlives them
  WorkerMesh* mesh = nullptr;               // idem
  uint64_t instance_id = 0;                 // this process start (ipc Hello)
  int pin_core = -1;                        // dataplane.cores[index], -1: not pinned
  // backend dpdk: the process's DPDK runtime (EAL, pool, ports started, loops not launched);
  // the worker drives queue `index` of its port itself (a PortLoop polled from its loop).
  std::shared_ptr<dpdk::DpdkRuntime> dpdk;
  // The process's memory readings (sampled by the supervisor): worker 0 publishes them.
  const ProcessMemory* memory = nullptr;  // outlives the workers; null: not published
  // The chat port to listen on (0: the config's chat_port; tests pass an ephemeral one through
  // the config instead).
};

// What a worker reports to the process (its counters are mirrored from these, a snapshot
// taken on the worker's thread every loop second).
struct WorkerStatus {
  std::atomic<bool> listening{false};
  std::atomic<bool> failed{false};
  std::atomic<uint16_t> port{0};
  std::atomic<uint32_t> sessions{0};
  std::atomic<uint64_t> loop_turns{0};
  std::atomic<uint64_t> sleeps{0};
  std::atomic<uint64_t> empty_turns{0};  // turns that found no work (the profiler's empty polls)
};

class Worker {
 public:
  explicit Worker(WorkerSetup setup);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The worker's thread: builds the loop, transport, TLS, sessions, router and store client,
  // then loops until stop(). Returns the reason it could not start (listen failed, ...).
  absl::Status run();
  // Any thread: the control plane's link (null: it went away). The worker attaches its store
  // client to its ring pair at its next loop turn; `link` must stay alive until replaced.
  void set_link(std::shared_ptr<const ipc::ControlPlaneLink> link);
  // Any thread.
  void stop();

  const WorkerStatus& status() const { return status_; }

 private:
  struct Parts;  // worker.cc: everything the thread owns
  absl::Status run_loop();

  WorkerSetup setup_;
  WorkerStatus status_;
  std::atomic<bool> stop_{false};
  std::mutex link_mu_;
  std::shared_ptr<const ipc::ControlPlaneLink> pending_link_;
  std::atomic<uint64_t> link_generation_{0};
  int wake_fd_ = -1;  // eventfd: stop() and set_link() wake a sleeping worker
};

}  // namespace herald::dataplane

// herald-dataplane's process: workers, the shared parts, and the control plane's link.
#include "dataplane/dataplane.h"

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "platform/auth/crypto.h"
#include "platform/ipc/client.h"
#include "platform/log/log.h"

namespace herald::dataplane {
namespace {

// The control plane is retried this often while it is away (either plane may start first).
constexpr int kReconnectIntervalMs = 250;
// How often the supervisor checks the link socket and the ticket-rotation clock.
constexpr int kSupervisePollMs = 200;
// How often the supervisor reads the process's heap and RSS (process_memory.h: a heap walk,
// kept off the workers' threads and rare).
constexpr uint64_t kMemorySampleIntervalMs = 1000;

uint64_t monotonic_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec);
}

uint64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Dataplane>> Dataplane::start(config::Config config,
                                                            const DataplaneOptions& options) {
  std::unique_ptr<Dataplane> dp(new Dataplane());
  dp->data_dir_ = options.data_dir.empty() ? config.node().data_dir()->str() : options.data_dir;
  // Either plane may start first: the data directory may not exist yet.
  std::error_code mkdir_error;
  std::filesystem::create_directories(dp->data_dir_, mkdir_error);
  if (mkdir_error) {
    return absl::PermissionDeniedError("cannot create " + dp->data_dir_ + ": " +
                                       mkdir_error.message());
  }
  dp->instance_id_ = auth::random_u64() | 1;  // never 0 (0 means "random" to the IPC client)
  ChatTlsSettings tls_settings = chat_tls_settings(config);
  tls_settings.data_dir = dp->data_dir_;
  auto tls = ChatTls::create(tls_settings);
  if (!tls.ok()) return tls.status();
  dp->tls_ = std::move(*tls);

  const auto& dataplane = config.dataplane();
  const uint16_t workers = dataplane.workers();
  dp->directory_ = std::make_unique<routing::Directory>(
      routing::DirectoryOptions{.max_devices = config.limits().max_connections()});
  auto mesh = WorkerMesh::create({.workers = workers});
  if (!mesh.ok()) return mesh.status();
  dp->mesh_ = std::move(*mesh);
  dp->config_ = std::make_shared<const config::Config>(std::move(config));

  // backend dpdk: the EAL, the pool and the ports, once per process; worker i drives queue i
  // of the port from its own loop (the runtime's own lcore loops are not launched).
  std::shared_ptr<dpdk::DpdkRuntime> dpdk_runtime;
  if (dp->config_->dataplane().backend() == config::Backend::dpdk) {
    const dpdk::DpdkSettings settings = dpdk::settings_from_config(*dp->config_);
    if (settings.rx_queues != workers) {
      return absl::InvalidArgumentError(
          "backend dpdk: dataplane.dpdk.rx_queues must equal dataplane.workers (worker i owns "
          "queue i)");
    }
    // rte_eal_init pins the calling thread to the main lcore; the workers (created from this
    // thread) and the supervisor keep the process's own affinity instead.
    cpu_set_t affinity;
    CPU_ZERO(&affinity);
    const bool saved = sched_getaffinity(0, sizeof(affinity), &affinity) == 0;
    auto runtime = dpdk::DpdkRuntime::start(settings);
    if (saved) (void)sched_setaffinity(0, sizeof(affinity), &affinity);
    if (!runtime.ok()) return runtime.status();
    dpdk_runtime = std::shared_ptr<dpdk::DpdkRuntime>(std::move(*runtime));
  }

  HeapTrimPolicy trim;
  trim.free_bytes_threshold = uint64_t{dp->config_->dataplane().heap_trim_free_mb()} << 20;
  dp->memory_ = std::make_unique<ProcessMemory>(trim);
  for (uint16_t i = 0; i < workers; ++i) {
    WorkerSetup setup;
    setup.index = i;
    setup.workers = workers;
    setup.config = dp->config_;
    setup.tls_context = dp->tls_->context();
    setup.directory = dp->directory_.get();
    setup.mesh = dp->mesh_.get();
    setup.instance_id = dp->instance_id_;
    setup.dpdk = dpdk_runtime;  // the last worker to go shuts the ports and the EAL down
    setup.memory = dp->memory_.get();
    const auto* cores = dp->config_->dataplane().cores();
    setup.pin_core = cores != nullptr && cores->size() == workers ? cores->Get(i) : -1;
    dp->workers_.push_back(std::make_unique<Worker>(std::move(setup)));
  }
  dp->memory_->sample(monotonic_ms());  // the first publish carries a reading
  for (auto& worker : dp->workers_) {
    Worker* w = worker.get();
    dp->threads_.emplace_back([w] {
      absl::Status s = w->run();
      if (!s.ok()) {
        HLOG_ERROR("dataplane.worker.failed").kv("error", s.ToString());
      }
    });
  }
  // Listening everywhere, or the reason one worker could not.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.start_timeout_ms);
  for (auto& worker : dp->workers_) {
    while (!worker->status().listening.load() && !worker->status().failed.load() &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!worker->status().listening.load()) {
      dp->stop();
      dp->wait();
      return absl::UnavailableError("a dataplane worker did not start listening (see the log)");
    }
  }
  dp->supervisor_ = std::thread([d = dp.get()] { d->supervise(); });
  HLOG_INFO("dataplane.started")
      .kv("workers", uint64_t{workers})
      .kv("port", uint64_t{dp->port()})
      .kv("certificate", dp->tls_->files().cert_path)
      .kv("controlplane_socket", dp->config_->controlplane().ipc_socket_path()->str());
  return dp;
}

Dataplane::~Dataplane() {
  stop();
  wait();
}

uint16_t Dataplane::port() const {
  return workers_.empty() ? 0 : workers_.front()->status().port.load();
}

void Dataplane::stop() {
  stopping_.store(true);
  for (auto& worker : workers_) worker->stop();
}

void Dataplane::wait() {
  if (supervisor_.joinable()) supervisor_.join();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Dataplane::supervise() {
  ipc::ClientOptions client;
  client.socket_path = config_->controlplane().ipc_socket_path()->str();
  client.workers = static_cast<uint16_t>(workers_.size());
  client.ring_capacity_bytes = config_->shm().ring_bytes_per_worker();
  client.instance_id = instance_id_;
  client.node_id = config_->node().id();
  client.build = HERALD_VERSION;
  client.timeout_ms = 2000;
  uint64_t failures = 0;
  uint64_t next_rotation_s = monotonic_s() + tls_->ticket_rotation_s();
  uint64_t next_memory_sample_ms = monotonic_ms() + kMemorySampleIntervalMs;
  auto sample_memory_when_due = [&] {
    if (monotonic_ms() < next_memory_sample_ms) return;
    memory_->sample(monotonic_ms());
    next_memory_sample_ms = monotonic_ms() + kMemorySampleIntervalMs;
  };
  while (!stopping_.load()) {
    auto link = ipc::connect_to_controlplane(client);
    if (!link.ok()) {
      if (failures++ % 40 == 0) {
        HLOG_WARN("dataplane.controlplane_unreachable")
            .kv("socket", client.socket_path)
            .kv("error", link.status().ToString());
      }
      for (int waited = 0; waited < kReconnectIntervalMs && !stopping_.load(); waited += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      sample_memory_when_due();
      continue;
    }
    failures = 0;
    auto shared = std::make_shared<const ipc::ControlPlaneLink>(std::move(*link));
    for (auto& worker : workers_) worker->set_link(shared);
    connected_.store(true);
    HLOG_INFO("dataplane.controlplane_connected")
        .kv("controlplane_instance", shared->controlplane.instance_id);
    // Watch the socket: its end is how a control plane's exit shows.
    while (!stopping_.load()) {
      pollfd p{shared->socket.get(), POLLIN | POLLRDHUP, 0};
      const int ready = poll(&p, 1, kSupervisePollMs);
      if (ready > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLIN)) != 0) {
        char byte;
        const ssize_t n = recv(shared->socket.get(), &byte, 1, MSG_DONTWAIT | MSG_PEEK);
        if (n <= 0) break;  // closed (or an error): the control plane is gone
      }
      sample_memory_when_due();
      if (monotonic_s() >= next_rotation_s) {
        tls_->rotate_ticket_keys();
        ticket_rotations_.fetch_add(1);
        next_rotation_s = monotonic_s() + tls_->ticket_rotation_s();
      }
    }
    connected_.store(false);
    for (auto& worker : workers_) worker->set_link(nullptr);
    if (!stopping_.load()) {
      HLOG_WARN("dataplane.controlplane_lost");
    }
  }
}

}  // namespace herald::dataplane

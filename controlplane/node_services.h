// Everything herald-controlplane serves, wired together on its event loop: the durable catalog
// and the offline queues (controlplane/storage), config revisions, API keys, registration,
// accounts, groups, the system endpoints, the store service on the IPC rings, and the two HTTP
// listeners (admin: plain or mTLS; public: HTTPS). ControlPlane (controlplane.h) owns the
// process around it: data-dir lock, counters segment, loop, signals, IPC server.
//
// Start-up order matters and is the order of create(): storage first (nothing is served before
// recovery finished), then the services over it, then the listeners. Shutdown reverses it: the
// listeners drain, then the logs go idle, so every acknowledged write is already durable and
// nothing in flight is cut.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/api/accounts_api.h"
#include "controlplane/api/api_keys.h"
#include "controlplane/api/devices_api.h"
#include "controlplane/api/groups.h"
#include "controlplane/api/provisioning_api.h"
#include "controlplane/api/registration_api.h"
#include "controlplane/api/router.h"
#include "controlplane/api/system_api.h"
#include "controlplane/config/config_api.h"
#include "controlplane/config/revisions.h"
#include "controlplane/http/server.h"
#include "controlplane/ipc/ipc_server.h"
#include "controlplane/ipc/store_service.h"
#include "controlplane/profiler/profiler_service.h"
#include "controlplane/push/push_service.h"
#include "controlplane/registration/code_gateway.h"
#include "controlplane/registration/gateway_switch.h"
#include "controlplane/storage/catalog.h"
#include "controlplane/storage/log.h"
#include "controlplane/storage/queue_table.h"
#include "controlplane/storage/uring_device.h"
#include "platform/config/config.h"
#include "platform/counters/reader.h"
#include "platform/counters/segment.h"
#include "platform/tls/context.h"
#include "platform/tls/node_certificate.h"
#include "platform/uring/event_loop.h"

namespace herald::controlplane {

struct NodeServicesOptions {
  std::string data_dir;
  bool config_from_file = false;  // --config was given (the file seeds a config revision)
  std::string version;
  uint64_t started_unix_ms = 0;
  std::function<uint64_t()> uptime_ms;
  std::function<bool()> dataplane_connected;
  // The connected dataplane's pid, 0 when none (sampled by the profiler as "dataplane").
  std::function<int()> dataplane_pid;
  // Writes the process's own counters into the counters segment now (it does so once a second
  // otherwise): the profiler calls it before each sample, so a 10 ms capture sees 10 ms moves.
  std::function<void()> publish_own_counters;
};

class NodeServices {
 public:
  // Opens the storage (running the loop until recovery is done), creates every service and
  // starts both listeners. `boot_config` is the config the process was started with.
  static absl::StatusOr<std::unique_ptr<NodeServices>> create(uring::EventLoop& loop,
                                                              const config::Config& boot_config,
                                                              counters::CountersSegment& counters,
                                                              const NodeServicesOptions& options);
  ~NodeServices();
  NodeServices(const NodeServices&) = delete;
  NodeServices& operator=(const NodeServices&) = delete;

  // The IPC handler serving the dataplane's store records; attach() once the server runs.
  StoreService& store_service() { return *store_service_; }
  void attach_ipc(IpcServer& ipc) { store_service_->attach(ipc); }

  // Once a second: confirm deadlines, key rotation, TLS ticket keys, queue compaction.
  void tick();
  // SIGHUP: reads the public certificate files again; new handshakes present the new one.
  void reload_certificate();
  // Graceful stop: listeners drain (bounded), then the logs are flushed and go idle.
  void shutdown();

  // The config the process started with (the active revision at start): restart fields.
  const config::Config& running_config() const { return revisions_->running(); }
  // The config whose hot fields the services run with: the active revision, once its apply
  // finished (or failed: see apply_config).
  const config::Config& applied_config() const { return *applied_config_; }
  uint16_t admin_port() const { return admin_http_->port(); }
  uint16_t public_port() const { return public_http_->port(); }

  // Plain counters for the counters segment, read by ControlPlane::publish_stats(); gauges
  // are levels (backlogs, work in flight), set rather than added.
  struct Counter {
    std::string name;
    std::function<uint64_t()> value;
  };
  const std::vector<Counter>& counters() const { return counters_; }
  const std::vector<Counter>& gauges() const { return gauges_; }

  struct ApplyStats {
    uint64_t applied = 0;   // revisions applied to the running services
    uint64_t failures = 0;  // revisions a service refused part of (logged; the rest applied)
  };
  const ApplyStats& apply_stats() const { return apply_stats_; }

 private:
  NodeServices(uring::EventLoop& loop, const NodeServicesOptions& options)
      : loop_(loop), options_(options) {}
  absl::Status open_storage(const config::Config& boot_config);
  absl::Status create_services();
  absl::Status start_listeners();
  void resync_dataplane(Pusher& pusher);
  uint64_t next_group_version();
  // The revisions' apply hook: every service takes the hot fields of `config`, then the
  // dataplane gets it (push_config).
  void apply_config(const config::Config& config, uint64_t revision,
                    const std::vector<std::string>& restart_required);
  // The services' side of apply_config; false when a part was refused (the rest applied).
  bool apply_to_services(const config::Config& from, const config::Config& to,
                         std::vector<std::string>& errors);
  absl::StatusOr<std::unique_ptr<registration::CodeGateway>> make_gateway(
      const config::Config& config);
  void push_config(const config::Config& config, uint64_t revision,
                   const std::vector<std::string>& restart_required);
  void on_revocation(const registration::AccountId& account, std::optional<uint32_t> device,
                     uint64_t issued_before_ms);
  void push_keys(const registration::KeyRing& ring);
  void register_counters();

  uring::EventLoop& loop_;
  NodeServicesOptions options_;

  // Storage: the catalog (small tables) and the offline queues each own a log and a directory.
  std::unique_ptr<storage::UringDevice> catalog_device_;
  std::unique_ptr<storage::Catalog> catalog_;
  std::unique_ptr<storage::UringDevice> queue_device_;
  std::unique_ptr<storage::QueueTable> queues_;
  std::unique_ptr<storage::Log> queue_log_;

  std::unique_ptr<config_revisions::Revisions> revisions_;
  std::unique_ptr<api::ApiKeys> api_keys_;
  std::unique_ptr<config::Config> applied_config_;
  ApplyStats apply_stats_;
  std::unique_ptr<registration::GatewaySwitch> gateway_;
  bool gateway_stale_ = false;  // the last apply could not build the configured gateway
  std::unique_ptr<api::RegistrationApi> registration_;
  std::unique_ptr<api::AccountsApi> accounts_;
  std::unique_ptr<api::ProvisioningApi> provisioning_;  // POST /v1/accounts/provision
  std::unique_ptr<api::DevicesApi> devices_;            // POST /v1/devices/link-code, link
  std::unique_ptr<api::Groups> groups_;
  std::unique_ptr<api::SystemApi> system_;
  std::unique_ptr<profiler::ProfilerService> profiler_;  // /v1/profiler...
  std::unique_ptr<config_revisions::ConfigApi> config_api_;
  std::unique_ptr<StoreService> store_service_;
  std::unique_ptr<push::PushService> push_;  // PUT /v1/devices/push-token, push webhook

  // Revocations still relevant to the dataplane (issued within a token's lifetime), replayed
  // to a dataplane that (re)connects.
  struct RecentRevocation {
    registration::AccountId account;
    std::optional<uint32_t> device;
    uint64_t issued_before_ms;
  };
  std::vector<RecentRevocation> recent_revocations_;
  uint64_t token_ttl_ms_ = 0;
  uint64_t last_group_version_ = 0;  // next_group_version()

  std::unique_ptr<api::Router> admin_router_;
  std::unique_ptr<api::Router> public_router_;
  tls::CertificateFiles certificate_files_;
  std::shared_ptr<tls::ServerContext> public_tls_;
  std::shared_ptr<tls::ServerContext> admin_tls_;  // mTLS, when a client CA is configured
  std::unique_ptr<http::Server> admin_http_;
  std::unique_ptr<http::Server> public_http_;
  uint64_t last_ticket_rotation_ms_ = 0;
  uint64_t codes_swept_ = 0;

  std::unique_ptr<counters::CounterReader> counter_reader_;
  std::vector<Counter> counters_;
  std::vector<Counter> gauges_;
  bool shut_down_ = false;
};

}  // namespace herald::controlplane

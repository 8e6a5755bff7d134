// The control plane's services wired together (node_services.h).
#include "controlplane/node_services.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/config/service_options.h"
#include "controlplane/registration/webhook_gateway.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::controlplane {
namespace {

// Runs the loop until `done` turns true (start-up only: recovery before serving anything).
template <typename Pred>
void run_until(uring::EventLoop& loop, Pred done) {
  while (!done()) loop.run_once(100'000'000);
}

// Segment sizes: the catalog holds small records (accounts, keys, revisions) and is compacted
// by snapshots; the queues hold message bodies and are compacted segment by segment.
constexpr uint64_t kCatalogSegmentBytes = 16ull << 20;
constexpr uint64_t kQueueSegmentBytes = 64ull << 20;
// Queue compaction: bounded steps per one-second tick, so it never holds the loop for long.
constexpr int kCompactionStepsPerTick = 64;
// Expired verification codes: at most this many looked at per tick (a full pass over a
// million pending codes takes a few minutes; each code is dead once its TTL passed anyway).
constexpr size_t kCodeSweepKeysPerTick = 4096;

// "StoreAppend" -> "store_append", for counter names.
std::string snake_case(std::string_view camel) {
  std::string out;
  for (const char c : camel) {
    if (c >= 'A' && c <= 'Z') {
      if (!out.empty()) out.push_back('_');
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out.push_back(',');
    out += name;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NodeServices>> NodeServices::create(
    uring::EventLoop& loop, const config::Config& boot_config, counters::CountersSegment& counters,
    const NodeServicesOptions& options) {
  std::unique_ptr<NodeServices> services(new NodeServices(loop, options));
  if (absl::Status s = services->open_storage(boot_config); !s.ok()) return s;
  if (absl::Status s = services->create_services(); !s.ok()) return s;
  auto reader = counters::CounterReader::attach(counters.segment().bytes());
  if (reader.ok()) services->counter_reader_ = std::make_unique<counters::CounterReader>(*reader);
  services->register_counters();
  if (absl::Status s = services->start_listeners(); !s.ok()) return s;
  return services;
}

NodeServices::~NodeServices() {
  shutdown();
}

absl::Status NodeServices::open_storage(const config::Config& boot_config) {
  const uint64_t started_ns = clock::monotonic_ns();
  // O_DSYNC writes (a write's completion is its durability) measured faster than write +
  // fdatasync here at every window, and with a lower p99 (docs/PERFORMANCE.md, queue workload).
  storage::UringDeviceOptions catalog_device;
  catalog_device.directory = options_.data_dir + "/catalog";
  catalog_device.durability = storage::UringDeviceOptions::Durability::kDsyncWrites;
  auto catalog_dev = storage::UringDevice::create(loop_, catalog_device);
  if (!catalog_dev.ok()) return catalog_dev.status();
  catalog_device_ = std::move(*catalog_dev);

  storage::CatalogOptions catalog_options;
  catalog_options.log.segment_size_bytes = kCatalogSegmentBytes;
  catalog_options.log.group_commit_delay_us =
      boot_config->controlplane()->group_commit_max_delay_us();
  catalog_options.snapshot_after_bytes = boot_config->catalog()->snapshot_after_bytes();
  bool catalog_done = false;
  absl::Status catalog_status;
  storage::Catalog::open(*catalog_device_, catalog_options,
                         [&](absl::StatusOr<std::unique_ptr<storage::Catalog>> catalog) {
                           if (catalog.ok()) {
                             catalog_ = std::move(*catalog);
                           } else {
                             catalog_status = catalog.status();
                           }
                           catalog_done = true;
                         });
  run_until(loop_, [&] { return catalog_done; });
  if (!catalog_status.ok()) {
    return absl::Status(catalog_status.code(), absl::StrCat("catalog (", catalog_device.directory,
                                                            "): ", catalog_status.message()));
  }

  // Config revisions live in the catalog; the queues below are sized from the active one.
  config_revisions::Revisions::Options revision_options;
  revision_options.now_unix_ms = api::system_unix_ms;
  revision_options.apply = [this](const config::Config& config, uint64_t revision,
                                  const std::vector<std::string>& restart_required) {
    apply_config(config, revision, restart_required);
  };
  auto revisions = config_revisions::Revisions::open(
      *catalog_, boot_config,
      options_.config_from_file ? config_revisions::Revisions::Source::kConfigFile
                                : config_revisions::Revisions::Source::kDefaults,
      std::move(revision_options));
  if (!revisions.ok()) return revisions.status();
  revisions_ = std::move(*revisions);
  applied_config_ = std::make_unique<config::Config>(revisions_->running());
  const config::Config& config = revisions_->running();
  // The catalog had to open before revisions could be read: it takes the active revision's
  // value now (a value committed through the API, not only the file's).
  catalog_->set_snapshot_after_bytes(config->catalog()->snapshot_after_bytes());

  storage::UringDeviceOptions queue_device;
  queue_device.directory = options_.data_dir + "/queues";
  queue_device.durability = storage::UringDeviceOptions::Durability::kDsyncWrites;
  auto queue_dev = storage::UringDevice::create(loop_, queue_device);
  if (!queue_dev.ok()) return queue_dev.status();
  queue_device_ = std::move(*queue_dev);
  storage::QueueTableOptions queue_options;
  queue_options.max_queued_messages_per_device = config->limits()->max_queued_messages_per_device();
  queues_ = std::make_unique<storage::QueueTable>(queue_options);
  storage::LogOptions queue_log_options;
  queue_log_options.segment_size_bytes = kQueueSegmentBytes;
  queue_log_options.group_commit_delay_us = config->controlplane()->group_commit_max_delay_us();
  // Segment summaries: a restart reads each sealed segment's summary (ids and entries, no
  // bodies) instead of the segment (storage/README.md, "Segment summaries").
  queue_log_options.summary_payload_bytes = &storage::QueueTable::summary_payload_bytes;
  bool queues_done = false;
  absl::Status queue_status;
  storage::Log::open_batched(
      *queue_device_, queue_log_options,
      [this](std::span<const storage::RecoveredRecord> records) {
        return queues_->recover(records);
      },
      [&](absl::StatusOr<std::unique_ptr<storage::Log>> log) {
        if (log.ok()) {
          queue_log_ = std::move(*log);
        } else {
          queue_status = log.status();
        }
        queues_done = true;
      },
      [this](uint64_t records) { queues_->expect_records(records); });
  run_until(loop_, [&] { return queues_done; });
  if (!queue_status.ok()) {
    return absl::Status(
        queue_status.code(),
        absl::StrCat("offline queues (", queue_device.directory, "): ", queue_status.message()));
  }
  queues_->start(*queue_log_);
  HLOG_INFO("storage.opened")
      .kv("catalog_replayed", catalog_->stats().records_replayed)
      .kv("catalog_snapshot_entries", catalog_->stats().snapshot_entries_loaded)
      .kv("queue_records", queue_log_->stats().recovered_records)
      .kv("ms", (clock::monotonic_ns() - started_ns) / 1'000'000);
  return absl::OkStatus();
}

absl::Status NodeServices::create_services() {
  // The services run with the active revision (opened with the catalog).
  const config::Config& config = revisions_->running();
  config::apply_log_settings(config);

  api_keys_ = std::make_unique<api::ApiKeys>(*catalog_, api::system_unix_ms);
  if (absl::Status s = api_keys_->ensure_bootstrap_key(options_.data_dir); !s.ok()) return s;

  auto gateway = make_gateway(config);
  if (!gateway.ok()) return gateway.status();
  gateway_ = std::make_unique<registration::GatewaySwitch>(std::move(*gateway));

  api::RegistrationApiOptions registration_options;
  registration_options.registrar = config_revisions::registrar_options(*config->registration());
  registration_options.keys = config_revisions::key_ring_options(*config->session_tokens());
  registration_options.key_rotation_interval_ms =
      config_revisions::key_rotation_period_ms(*config->session_tokens());
  token_ttl_ms_ = uint64_t{config->session_tokens()->token_ttl_s()} * 1000;
  auto registration = api::RegistrationApi::create(registration_options, *catalog_, *gateway_);
  if (!registration.ok()) return registration.status();
  registration_ = std::move(*registration);
  // The connection's peer, for the per-address rate limits (registration, linking).
  const api::RegistrationApi::PeerAddressFn peer_address =
      [](const http::Request&,
         const http::Responder& responder) -> std::optional<registration::SourceAddress> {
    socklen_t length = 0;
    const sockaddr* peer = responder.peer_address(&length);
    if (peer == nullptr) return std::nullopt;
    return registration::SourceAddress::from_sockaddr(peer, length);
  };
  registration_->set_peer_address_fn(peer_address);
  auto revocation_hook = [this](const registration::AccountId& account,
                                std::optional<uint32_t> device, uint64_t issued_before_ms) {
    on_revocation(account, device, issued_before_ms);
  };
  registration_->set_revocation_hook(revocation_hook);
  registration_->set_keys_hook([this](const registration::KeyRing& ring) { push_keys(ring); });

  accounts_ = std::make_unique<api::AccountsApi>(*catalog_, registration_->store());
  accounts_->set_revocation_hook(revocation_hook);
  provisioning_ = std::make_unique<api::ProvisioningApi>(*catalog_, *registration_);
  provisioning_->set_revocation_hook(revocation_hook);
  registration::DeviceLinkerOptions linker_options;
  linker_options.max_linked_devices = config->limits()->max_linked_devices();
  // A link code lives as long as a registration code.
  linker_options.link_code_ttl_ms = registration_options.registrar.code_ttl_ms;
  devices_ = std::make_unique<api::DevicesApi>(linker_options, *catalog_, registration_->store());
  devices_->set_peer_address_fn(peer_address);

  // Revocations of the last token lifetime: a dataplane that connects needs them, since tokens
  // issued before them may still be presented.
  const uint64_t now_ms = api::system_unix_ms();
  catalog_->scan(storage::TableId::kDevices, "", [&](std::string_view key, std::string_view value) {
    if (key.size() != 20) return true;
    registration::AccountId account;
    uint32_t device_id = 0;
    for (int i = 0; i < 8; ++i) account.hi = account.hi << 8 | static_cast<uint8_t>(key[i]);
    for (int i = 8; i < 16; ++i) account.lo = account.lo << 8 | static_cast<uint8_t>(key[i]);
    for (int i = 16; i < 20; ++i) device_id = device_id << 8 | static_cast<uint8_t>(key[i]);
    auto device = registration::CatalogStore::decode_device(account, device_id, value);
    if (device && device->revoked_ms != 0 && device->revoked_ms + token_ttl_ms_ > now_ms) {
      recent_revocations_.push_back({account, device_id, device->revoked_ms});
    }
    return true;
  });

  api::GroupsOptions group_options;
  group_options.max_group_members = config->limits()->max_group_members();
  group_options.account_exists = [this](const registration::AccountId& id) {
    return registration_->store().find_account(id).has_value();
  };
  group_options.on_membership_change = [this](uint64_t group_id,
                                              const std::vector<registration::AccountId>& members) {
    std::vector<std::pair<uint64_t, uint64_t>> ids;
    ids.reserve(members.size());
    for (const auto& m : members) ids.emplace_back(m.hi, m.lo);
    (void)store_service_->pusher().push_group_membership(0, group_id, next_group_version(), ids,
                                                         members.empty());
  };
  groups_ = std::make_unique<api::Groups>(*catalog_, std::move(group_options));
  if (auto swept = groups_->sweep_orphans(); !swept.ok()) return swept.status();

  api::SystemSources sources;
  sources.version = options_.version;
  sources.node_id = config->node()->id();
  sources.node_name = config->node()->name()->str();
  sources.backend = config::EnumNameBackend(config->dataplane()->backend());
  sources.workers = config->dataplane()->workers();
  sources.started_unix_ms = options_.started_unix_ms;
  sources.roles = {"controlplane"};
  sources.listeners = {{"admin", config->controlplane()->admin_address()->str(),
                        config->controlplane()->admin_port()},
                       {"public", config->controlplane()->public_address()->str(),
                        config->controlplane()->public_port()}};
  sources.uptime_ms = options_.uptime_ms;
  sources.config_revision = [this] { return revisions_->active_revision(); };
  sources.dataplane_connected = options_.dataplane_connected;
  sources.read_counters = [this](counters::Snapshot* out) {
    if (!counter_reader_) return absl::UnavailableError("counters segment not readable");
    return counter_reader_->read(out);
  };
  system_ = std::make_unique<api::SystemApi>(*catalog_, std::move(sources));
  // The profiler samples on this loop: the OS, this process and the counters segment, and the
  // hardware counters of the dataplane's cores where the host allows.
  profiler::ProfilerOptions profiler_options;
  profiler_options.sampler.node_name = config->node()->name()->str();
  profiler_options.interval_ms = config->profiler()->sample_interval_ms();
  profiler_options.sampler.ring_samples = config->profiler()->history_samples();
  if (const auto* cores = config->dataplane()->cores()) {
    for (const uint16_t core : *cores) profiler_options.sampler.perf_cpus.push_back(core);
  }
  profiler_ = std::make_unique<profiler::ProfilerService>(loop_, std::move(profiler_options),
                                                          clock::Clock::monotonic());
  profiler_->sampler().set_processes([dataplane_pid = options_.dataplane_pid] {
    std::vector<profiler::ProcessRef> processes{{"controlplane", static_cast<int>(::getpid())}};
    // The dataplane while it is connected: its files close when it leaves, and a restarted
    // one (a new pid) is sampled under the same label.
    if (const int pid = dataplane_pid ? dataplane_pid() : 0; pid > 0) {
      processes.push_back({"dataplane", pid});
    }
    return processes;
  });
  // A capture's flame graph profiles the connected dataplane.
  profiler_->set_flame_target(
      [dataplane_pid = options_.dataplane_pid] { return dataplane_pid ? dataplane_pid() : 0; });
  profiler_->sampler().set_counters_source([this](counters::Snapshot* out) {
    if (!counter_reader_) return absl::UnavailableError("counters segment not readable");
    if (options_.publish_own_counters) options_.publish_own_counters();
    return counter_reader_->read(out);
  });
  profiler_->start();
  config_api_ = std::make_unique<config_revisions::ConfigApi>(*revisions_, *catalog_);

  store_service_ =
      std::make_unique<StoreService>(loop_, *queues_, queue_log_.get(), StoreServiceOptions{});
  store_service_->set_resync([this](Pusher& pusher) { resync_dataplane(pusher); });
  // Account device lists for routing: answered from the registration store, and pushed to
  // every worker once a change is durable (registration, revoke).
  store_service_->set_device_list_source(
      [this](uint64_t hi, uint64_t lo) -> std::optional<StoreService::DeviceList> {
        auto list = registration_->store().device_list(registration::AccountId{hi, lo});
        if (!list) return std::nullopt;
        return StoreService::DeviceList{std::move(list->devices), list->version};
      });
  registration_->store().set_devices_changed_hook([this](const registration::AccountId& id) {
    const auto list = registration_->store().device_list(id);
    if (!list) return;
    (void)store_service_->pusher().push_device_list(id.hi, id.lo, list->devices, list->version);
  });
  // Push hints for stored messages: batched to the push webhook with the device's token.
  auto push =
      push::PushService::create(loop_, *catalog_, registration_->store(),
                                push::notifier_options_from_config(config), api::system_unix_ms);
  if (!push.ok()) return push.status();
  push_ = std::move(*push);
  store_service_->set_push_hint_handler([this](uint16_t, const ipc::PushHint& hint) {
    if (hint.device() == nullptr) return;
    push_->on_push_hint({hint.device()->account().hi(), hint.device()->account().lo()},
                        hint.device()->device());
  });

  admin_router_ = std::make_unique<api::Router>(api_keys_.get());
  system_->add_routes(*admin_router_);
  profiler_->add_routes(*admin_router_);
  api_keys_->add_routes(*admin_router_);
  accounts_->add_routes(*admin_router_);
  provisioning_->add_routes(*admin_router_);
  groups_->add_routes(*admin_router_);
  config_api_->add_routes(*admin_router_);
  public_router_ = std::make_unique<api::Router>(nullptr);
  registration_->add_routes(*public_router_);
  devices_->add_routes(*public_router_);
  push_->add_routes(*public_router_);
  return absl::OkStatus();
}

absl::Status NodeServices::start_listeners() {
  const config::Config& config = revisions_->running();
  const auto* cp = config->controlplane();
  const auto* tls_config = config->tls();
  tls::NodeCertificateRequest cert_request;
  cert_request.data_dir = options_.data_dir;
  cert_request.configured_cert = tls_config->public_cert_path()->str();
  cert_request.configured_key = tls_config->public_key_path()->str();
  cert_request.common_name = config->node()->name()->str();
  auto files = tls::ensure_node_certificate(cert_request);
  if (!files.ok()) return files.status();
  certificate_files_ = *files;
  auto certificate = tls::load_node_certificate(certificate_files_);
  if (!certificate.ok()) return certificate.status();

  tls::ServerOptions public_tls_options;
  public_tls_options.alpn_protocols = {"http/1.1"};
  auto public_tls = tls::ServerContext::create(public_tls_options, *certificate);
  if (!public_tls.ok()) return public_tls.status();
  public_tls_ = *public_tls;

  auto admin = http::Server::create(loop_, *admin_router_,
                                    config_revisions::server_limits(*config->admin_http()));
  if (!admin.ok()) return admin.status();
  admin_http_ = std::move(*admin);
  if (!tls_config->admin_client_ca_path()->str().empty()) {
    // mTLS on the admin listener: a client certificate from the operator's CA, and still an
    // API key (the certificate says which machine, the key which operator and scope).
    tls::ServerOptions admin_tls_options;
    admin_tls_options.alpn_protocols = {"http/1.1"};
    admin_tls_options.client_auth = tls::ClientAuth::kRequire;
    admin_tls_options.client_ca_file = tls_config->admin_client_ca_path()->str();
    auto admin_tls = tls::ServerContext::create(admin_tls_options, *certificate);
    if (!admin_tls.ok()) return admin_tls.status();
    admin_tls_ = *admin_tls;
  }
  if (absl::Status s =
          admin_http_->listen(cp->admin_address()->str(), cp->admin_port(), admin_tls_);
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("admin listener: ", s.message()));
  }

  auto public_server = http::Server::create(
      loop_, *public_router_, config_revisions::server_limits(*config->public_http()));
  if (!public_server.ok()) return public_server.status();
  public_http_ = std::move(*public_server);
  if (absl::Status s =
          public_http_->listen(cp->public_address()->str(), cp->public_port(), public_tls_);
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("public listener: ", s.message()));
  }
  last_ticket_rotation_ms_ = api::system_unix_ms();
  HLOG_INFO("http.listening")
      .kv("admin", absl::StrCat(cp->admin_address()->str(), ":", admin_http_->port()))
      .kv("admin_mtls", admin_tls_ != nullptr)
      .kv("public", absl::StrCat(cp->public_address()->str(), ":", public_http_->port()))
      .kv("certificate", certificate_files_.cert_path);
  return absl::OkStatus();
}

void NodeServices::tick() {
  if (shut_down_) return;
  const uint64_t now_ms = api::system_unix_ms();
  revisions_->tick(now_ms);
  if (absl::Status s = registration_->rotate_keys_if_due(now_ms); !s.ok()) {
    HLOG_RATE_LIMITED(kWarn, "registration.key_rotation_failed", 1).kv("error", s.ToString());
  }
  if (now_ms - last_ticket_rotation_ms_ >=
      uint64_t{public_tls_->options().ticket_lifetime_s} * 1000) {
    public_tls_->rotate_ticket_keys();
    if (admin_tls_) admin_tls_->rotate_ticket_keys();
    last_ticket_rotation_ms_ = now_ms;
  }
  for (int i = 0; i < kCompactionStepsPerTick && queues_->compact_step(); ++i) {
  }
  if (auto swept = registration_->store().sweep_expired_codes(now_ms, kCodeSweepKeysPerTick);
      swept.ok()) {
    codes_swept_ += *swept;
  }
  // Revocations older than a token's lifetime concern no token any more.
  std::erase_if(recent_revocations_, [&](const RecentRevocation& r) {
    return r.issued_before_ms + token_ttl_ms_ <= now_ms;
  });
  // Code gateways replaced by a config commit go once they delivered what they accepted.
  gateway_->reap();
}

void NodeServices::reload_certificate() {
  auto certificate = tls::load_node_certificate(certificate_files_);
  if (!certificate.ok()) {
    HLOG_ERROR("tls.reload_failed")
        .kv("cert", certificate_files_.cert_path)
        .kv("error", certificate.status().ToString());
    return;
  }
  public_tls_->set_certificate(*certificate);
  if (admin_tls_) admin_tls_->set_certificate(*certificate);
  HLOG_INFO("tls.reloaded").kv("cert", certificate_files_.cert_path);
}

void NodeServices::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (profiler_) profiler_->shutdown();
  const uint64_t deadline_ns = clock::monotonic_ns() + 5'000'000'000ull;
  if (admin_http_) admin_http_->shutdown();
  if (public_http_) public_http_->shutdown();
  run_until(loop_, [&] {
    const bool drained =
        (!admin_http_ || admin_http_->finished()) && (!public_http_ || public_http_->finished());
    return drained || clock::monotonic_ns() > deadline_ns;
  });
  admin_http_.reset();
  public_http_.reset();
  // Whatever is staged becomes durable (or fails) before the process lets go of the files.
  if (queue_log_) {
    queue_log_->flush();
    run_until(loop_, [&] {
      return (queue_log_->idle() && queues_->compaction_idle()) ||
             clock::monotonic_ns() > deadline_ns + 5'000'000'000ull;
    });
  }
  if (catalog_) {
    run_until(loop_, [&] {
      return catalog_->idle() || clock::monotonic_ns() > deadline_ns + 5'000'000'000ull;
    });
  }
}

// The dataplane's group cache keeps a push only if its version is newer than the one it holds:
// two changes within one millisecond (or after the clock stepped back) must still get distinct,
// increasing versions. Wall-clock based so a restarted control plane starts above its
// predecessor's versions.
uint64_t NodeServices::next_group_version() {
  last_group_version_ = std::max(last_group_version_ + 1, api::system_unix_ms());
  return last_group_version_;
}

void NodeServices::resync_dataplane(Pusher& pusher) {
  push_keys(registration_->key_ring());
  for (const RecentRevocation& r : recent_revocations_) {
    (void)pusher.push_revocation(r.account.hi, r.account.lo, r.device, r.issued_before_ms);
  }
  catalog_->scan(storage::TableId::kGroups, "", [&](std::string_view key, std::string_view) {
    const auto group =
        api::decode_group_record(key, *catalog_->find(storage::TableId::kGroups, key));
    if (!group) return true;
    std::vector<std::pair<uint64_t, uint64_t>> ids;
    for (const auto& m : groups_->members(group->id)) ids.emplace_back(m.hi, m.lo);
    (void)pusher.push_group_membership(0, group->id, next_group_version(), ids);
    return true;
  });
  const config::Config& active = revisions_->active();
  const std::vector<std::string> restart =
      config::restart_required_changes(revisions_->running(), active);
  (void)pusher.push_config(revisions_->active_revision(), active.bytes(), restart);
}

absl::StatusOr<std::unique_ptr<registration::CodeGateway>> NodeServices::make_gateway(
    const config::Config& config) {
  if (config.code_gateway().kind() == config::CodeGatewayKind::webhook) {
    // Resolves the URL's host (blocking DNS): at start-up, or at a commit that changed it.
    auto webhook = registration::WebhookGateway::create(
        loop_, config_revisions::webhook_options(config.code_gateway(), config.registration()));
    if (!webhook.ok()) return webhook.status();
    return std::unique_ptr<registration::CodeGateway>(std::move(*webhook));
  }
  auto log_gateway = registration::LogGateway::open(options_.data_dir + "/sms.log");
  if (!log_gateway.ok()) return log_gateway.status();
  return std::unique_ptr<registration::CodeGateway>(std::move(*log_gateway));
}

void NodeServices::apply_config(const config::Config& config, uint64_t revision,
                                const std::vector<std::string>& restart_required) {
  const std::vector<std::string> changed = config::changed_fields(*applied_config_, config);
  std::vector<std::string> errors;
  const bool ok = apply_to_services(*applied_config_, config, errors);
  // Even after a partial failure the revision is the one in force: what a service refused
  // keeps its previous value and is named in the log. Every setter but the gateway's runs at
  // each apply; a gateway that failed to build is retried at the next one (gateway_stale_).
  *applied_config_ = config;
  ++apply_stats_.applied;
  if (!ok) {
    ++apply_stats_.failures;
    HLOG_ERROR("config.apply_failed").kv("revision", revision).kv("errors", join(errors));
  }
  HLOG_INFO("config.applied")
      .kv("revision", revision)
      .kv("changed", join(changed))
      .kv("restart_required", join(restart_required));
  push_config(config, revision, restart_required);
}

bool NodeServices::apply_to_services(const config::Config& from, const config::Config& to,
                                     std::vector<std::string>& errors) {
  config::apply_log_settings(to);

  // Registration: code TTL, attempts, both limiters' rules; token lifetime; key rotation.
  const auto& tokens = to.session_tokens();
  if (absl::Status s =
          registration_->update_options(config_revisions::registrar_options(to.registration()),
                                        config_revisions::key_ring_options(tokens).token_ttl_ms,
                                        config_revisions::key_rotation_period_ms(tokens));
      !s.ok()) {
    errors.push_back(absl::StrCat("registration: ", s.ToString()));
  }
  // Revocations are replayed while a token issued before them may live: the longest lifetime
  // tokens were issued with since start (a shorter new TTL does not shorten older tokens).
  token_ttl_ms_ = std::max<uint64_t>(token_ttl_ms_, uint64_t{tokens.token_ttl_s()} * 1000);

  groups_->set_max_group_members(to.limits().max_group_members());
  (void)devices_->linker().set_max_linked_devices(to.limits().max_linked_devices());
  queues_->set_max_queued_messages_per_device(to.limits().max_queued_messages_per_device());
  catalog_->set_snapshot_after_bytes(to.catalog().snapshot_after_bytes());
  profiler_->set_interval_ms(to.profiler().sample_interval_ms());

  // New connections, requests and timers; open connections keep their parser limits.
  if (admin_http_) admin_http_->set_limits(config_revisions::server_limits(to.admin_http()));
  if (public_http_) public_http_->set_limits(config_revisions::server_limits(to.public_http()));

  // The code gateway is rebuilt when anything it is made from changed (its kind, URL, CA,
  // timeouts, retries, or the code TTL a webhook's expires_at carries). The old one finishes
  // the codes it accepted (GatewaySwitch); a failure to build keeps it.
  bool gateway_changed = gateway_stale_;
  for (const std::string& field : config::changed_fields(from, to)) {
    if (starts_with(field, "code_gateway.") ||
        (field == "registration.code_ttl_s" &&
         to.code_gateway().kind() == config::CodeGatewayKind::webhook)) {
      gateway_changed = true;
    }
  }
  if (gateway_changed) {
    auto gateway = make_gateway(to);
    gateway_stale_ = !gateway.ok();
    if (gateway.ok()) {
      gateway_->install(std::move(*gateway));
    } else {
      errors.push_back(absl::StrCat("code_gateway: ", gateway.status().ToString()));
    }
  }
  return errors.empty();
}

void NodeServices::push_config(const config::Config& config, uint64_t revision,
                               const std::vector<std::string>& restart_required) {
  if (store_service_) {
    (void)store_service_->pusher().push_config(revision, config.bytes(), restart_required);
  }
}

void NodeServices::on_revocation(const registration::AccountId& account,
                                 std::optional<uint32_t> device, uint64_t issued_before_ms) {
  recent_revocations_.push_back({account, device, issued_before_ms});
  (void)store_service_->pusher().push_revocation(account.hi, account.lo, device, issued_before_ms);
}

void NodeServices::push_keys(const registration::KeyRing& ring) {
  for (const registration::SessionKey& key : ring.keys()) {
    (void)store_service_->pusher().push_session_key(
        {key.key_id, key.key, key.not_before_ms, key.not_after_ms});
  }
}

void NodeServices::register_counters() {
  auto add = [this](std::string name, std::function<uint64_t()> value) {
    counters_.push_back({std::move(name), std::move(value)});
  };
  for (const auto& listener :
       {std::pair{"admin", &admin_http_}, std::pair{"public", &public_http_}}) {
    // A plain variable, not a structured binding: lambdas capture it (clang 14 refuses those).
    std::unique_ptr<http::Server>* const server = listener.second;
    const std::string prefix = absl::StrCat("http.", listener.first, ".");
    add(prefix + "accepted", [server] { return *server ? (*server)->stats().accepted : 0; });
    add(prefix + "requests", [server] { return *server ? (*server)->stats().requests : 0; });
    add(prefix + "responses", [server] { return *server ? (*server)->stats().responses : 0; });
    add(prefix + "rejected_connections", [server] {
      return *server ? (*server)->stats().rejected_max_connections +
                           (*server)->stats().rejected_per_address
                     : 0;
    });
    add(prefix + "timeouts", [server] {
      if (!*server) return uint64_t{0};
      const auto& s = (*server)->stats();
      return s.header_timeouts + s.body_timeouts + s.idle_timeouts + s.send_timeouts;
    });
    add(prefix + "parse_errors", [server] {
      uint64_t n = 0;
      if (*server) {
        for (uint64_t e : (*server)->stats().parse_errors) n += e;
      }
      return n;
    });
    add(prefix + "tls_handshakes",
        [server] { return *server ? (*server)->stats().tls_handshakes : 0; });
  }
  add("api.auth.allowed", [this] { return api_keys_->stats().allowed; });
  add("api.auth.refused", [this] {
    const auto& s = api_keys_->stats();
    return s.missing + s.malformed + s.unknown + s.bad_secret + s.revoked;
  });
  add("api.auth.forbidden", [this] { return api_keys_->stats().forbidden; });
  for (size_t i = 0; i < static_cast<size_t>(registration::RegistrationError::kCount); ++i) {
    add(absl::StrCat(
            "registration.outcome.",
            std::string(registration::error_name(static_cast<registration::RegistrationError>(i)))),
        [this, i] { return registration_->registrar().outcomes()[i]; });
  }
  add("registration.store_unavailable",
      [this] { return registration_->stats().store_unavailable; });
  add("registration.key_rotations", [this] { return registration_->stats().key_rotations; });
  add("registration.expired_codes_swept", [this] { return codes_swept_; });
  for (size_t i = 0; i < static_cast<size_t>(registration::LinkError::kCount); ++i) {
    add(absl::StrCat("registration.link_outcome.", std::string(registration::link_error_name(
                                                       static_cast<registration::LinkError>(i)))),
        [this, i] { return devices_->linker().outcomes()[i]; });
  }
  add("provisioning.requests", [this] { return provisioning_->stats().requests; });
  add("provisioning.accounts_created", [this] { return provisioning_->stats().accounts_created; });
  add("provisioning.accounts_reregistered",
      [this] { return provisioning_->stats().accounts_reregistered; });
  add("provisioning.refused", [this] { return provisioning_->stats().refused; });
  add("catalog.batches", [this] { return catalog_->stats().batches_applied; });
  add("catalog.batches_refused", [this] { return catalog_->stats().batches_refused; });
  add("catalog.snapshots", [this] { return catalog_->stats().snapshots_written; });
  add("catalog.segments_retired", [this] { return catalog_->stats().segments_retired; });
  add("catalog.log_syncs", [this] { return catalog_->log().stats().syncs; });
  add("queues.entries_appended", [this] { return queues_->stats().entries_appended; });
  add("queues.entries_deleted", [this] { return queues_->stats().entries_deleted; });
  add("queues.refused_queue_full", [this] { return queues_->stats().refused_queue_full; });
  add("queues.segments_retired", [this] { return queues_->stats().segments_retired; });
  add("queues.records_copied", [this] { return queues_->stats().records_copied; });
  add("queues.log_syncs", [this] { return queue_log_->stats().syncs; });
  add("queues.summaries_written", [this] { return queue_log_->stats().summaries_written; });
  add("queues.summary_write_errors", [this] { return queue_log_->stats().summary_write_errors; });
  add("queues.segments_from_summaries",
      [this] { return queue_log_->stats().segments_from_summaries; });
  add("queues.summary_fallbacks", [this] { return queue_log_->stats().summary_fallbacks; });
  add("store.outcome_records", [this] { return store_service_->stats().outcome_records; });
  add("store.drain_messages", [this] { return store_service_->stats().drain_messages; });
  add("store.acked_entries", [this] { return store_service_->stats().acked_entries; });
  add("store.outcomes_orphaned", [this] { return store_service_->stats().outcomes_orphaned; });
  add("store.drain_kicks", [this] { return store_service_->stats().drain_kicks; });
  add("store.drain_kicks_failed", [this] { return store_service_->stats().drain_kicks_failed; });
  for (auto [name, router] :
       {std::pair{"admin", &admin_router_}, std::pair{"public", &public_router_}}) {
    api::Router* const r = router->get();
    const std::string prefix = absl::StrCat("http.", name, ".");
    add(prefix + "not_found", [r] { return r->stats().not_found; });
    add(prefix + "method_not_allowed", [r] { return r->stats().method_not_allowed; });
    add(prefix + "unauthenticated", [r] { return r->stats().unauthenticated; });
    add(prefix + "forbidden", [r] { return r->stats().forbidden; });
  }
  // Always registered: a commit may switch the gateway to the webhook at any time, and the
  // sums over every webhook gateway never go back when one is replaced.
  registration::GatewaySwitch* const g = gateway_.get();
  add("webhook.accepted", [g] { return g->webhook_stats().accepted; });
  add("webhook.delivered", [g] { return g->webhook_stats().delivered; });
  add("webhook.retries", [g] { return g->webhook_stats().retries; });
  add("webhook.queue_full", [g] { return g->webhook_stats().queue_full; });
  add("webhook.tls_failures", [g] { return g->webhook_stats().tls_failures; });
  add("webhook.tls_handshakes", [g] { return g->webhook_stats().tls_handshakes; });
  add("webhook.tls_resumed", [g] { return g->webhook_stats().tls_resumed; });
  add("webhook.gave_up", [g] {
    const registration::WebhookStats s = g->webhook_stats();
    return s.gave_up + s.rejected;
  });
  add("accounts.disabled", [this] { return accounts_->stats().disabled; });
  add("accounts.devices_revoked", [this] { return accounts_->stats().devices_revoked; });
  add("accounts.pages_listed", [this] { return accounts_->stats().pages_listed; });
  add("accounts.bad_list_requests", [this] { return accounts_->stats().bad_list_requests; });
  add("accounts.corrupt_records_skipped",
      [this] { return accounts_->stats().corrupt_records_skipped; });
  add("groups.created", [this] { return groups_->stats().created; });
  add("groups.deleted", [this] { return groups_->stats().deleted; });
  add("groups.members_added", [this] { return groups_->stats().members_added; });
  add("groups.members_removed", [this] { return groups_->stats().members_removed; });
  add("groups.refused_full", [this] { return groups_->stats().refused_full; });
  add("groups.pages_listed", [this] { return groups_->stats().pages_listed; });
  add("groups.corrupt_records_skipped",
      [this] { return groups_->stats().corrupt_records_skipped; });
  add("api_keys.created", [this] { return api_keys_->stats().created; });
  add("api_keys.revoked", [this] { return api_keys_->stats().revocations; });
  for (size_t t = 1; t < ipc::kRecordTypeCount; ++t) {
    add(absl::StrCat("store.records.",
                     snake_case(ipc::EnumNameRecord(static_cast<ipc::Record>(t)))),
        [this, t] { return store_service_->stats().records[t]; });
  }
  // Store outcomes: appends by the status the dataplane was told, drains by status.
  for (size_t i = 0; i < kAppendStatusCount; ++i) {
    add(absl::StrCat("store.appends.",
                     snake_case(ipc::EnumNameAppendStatus(static_cast<ipc::AppendStatus>(i)))),
        [this, i] { return store_service_->stats().outcomes[i]; });
  }
  for (size_t i = 0; i < kDrainStatusCount; ++i) {
    add(absl::StrCat("store.drains.",
                     snake_case(ipc::EnumNameDrainStatus(static_cast<ipc::DrainStatus>(i)))),
        [this, i] { return store_service_->stats().drains[i]; });
  }
  for (size_t i = 0; i < kDeviceListStatusCount; ++i) {
    add(absl::StrCat("store.device_lists.", snake_case(ipc::EnumNameDeviceListStatus(
                                                static_cast<ipc::DeviceListStatus>(i)))),
        [this, i] { return store_service_->stats().device_lists[i]; });
  }
  add("store.device_list_send_failed",
      [this] { return store_service_->stats().device_list_send_failed; });
  add("store.duplicate_appends", [this] { return store_service_->stats().duplicate_appends; });
  add("store.cancels", [this] {
    return store_service_->stats().cancels_pending + store_service_->stats().cancels_late;
  });
  add("store.cancels_unknown", [this] { return store_service_->stats().cancels_unknown; });
  add("store.acks_unknown", [this] { return store_service_->stats().acks_unknown; });
  add("store.remove_errors", [this] { return store_service_->stats().remove_errors; });
  add("store.drain_responses", [this] { return store_service_->stats().drain_responses; });
  add("store.drain_bytes", [this] { return store_service_->stats().drain_bytes; });
  // A drain answer that never reached the dataplane (it re-asks; nothing is lost).
  add("store.drain_errors", [this] {
    return store_service_->stats().drain_send_failed + store_service_->stats().drains_orphaned;
  });
  add("store.outcomes_held", [this] { return store_service_->stats().outcomes_held; });
  add("store.pushes", [this] {
    uint64_t n = 0;
    for (uint64_t p : store_service_->stats().pushes) n += p;
    return n;
  });
  add("store.push_failures", [this] {
    uint64_t n = 0;
    for (uint64_t p : store_service_->stats().push_failures) n += p;
    return n;
  });
  add("store.resyncs", [this] { return store_service_->stats().resyncs; });
  auto gauge = [this](std::string name, std::function<uint64_t()> value) {
    gauges_.push_back({std::move(name), std::move(value)});
  };
  gauge("store.appends_pending", [this] { return store_service_->backlog().appends_pending; });
  gauge("store.outcomes_waiting", [this] { return store_service_->backlog().outcomes_held; });
  gauge("store.drains_in_flight", [this] { return store_service_->backlog().drains_in_flight; });
  gauge("webhook.queued", [g] { return g->webhook_stats().queued; });
  gauge("webhook.gateways_retiring", [g] { return uint64_t{g->retiring()}; });
  add("store.record_errors", [this] {
    uint64_t n = 0;
    for (uint64_t e : store_service_->stats().record_errors) n += e;
    return n;
  });
  add("queues.compaction_errors", [this] { return queues_->stats().compaction_errors; });
  add("config.commits", [this] { return revisions_->stats().commits; });
  add("config.applied", [this] { return apply_stats_.applied; });
  add("config.apply_failures", [this] { return apply_stats_.failures; });
  add("config.reverts", [this] { return revisions_->stats().reverts; });
  for (auto& [name, value] : push_->counters()) add(name, value);
  for (auto& [name, value] : push_->gauges()) gauge(name, value);
}

}  // namespace herald::controlplane

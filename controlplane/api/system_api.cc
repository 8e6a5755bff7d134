// The admin API's health, node, /metrics and /v1/stats endpoints (system_api.h).
#include "controlplane/api/system_api.h"

#include <utility>

#include "controlplane/api/metrics_text.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"

namespace herald::api {

SystemApi::SystemApi(const storage::Tables& tables, SystemSources sources)
    : tables_(tables), sources_(std::move(sources)), codec_(schemas::kAdminFbs, "admin.fbs") {}

void SystemApi::add_routes(Router& router) {
  router.add(http::Method::kGet, "/v1/health", Scope::kRead, [this](Call& call) {
    int status = 200;
    std::string body = health_json(&status);
    call.respond_json(status, body);
  });
  router.add(http::Method::kGet, "/v1/node", Scope::kRead,
             [this](Call& call) { call.respond_json(200, node_json()); });
  router.add(http::Method::kGet, "/metrics", Scope::kRead,
             [this](Call& call) { handle_metrics(call, /*prometheus=*/true); });
  router.add(http::Method::kGet, "/v1/stats", Scope::kRead,
             [this](Call& call) { handle_metrics(call, /*prometheus=*/false); });
}

std::string SystemApi::health_json(int* http_status) {
  ++stats_.health;
  using admin::HealthStatus;
  flatbuffers::FlatBufferBuilder b;
  std::vector<flatbuffers::Offset<admin::ComponentHealth>> components;
  HealthStatus overall = HealthStatus::ok;
  auto add = [&](std::string_view name, HealthStatus status, std::string_view detail) {
    components.push_back(
        admin::CreateComponentHealth(b, b.CreateString(name.data(), name.size()), status,
                                     b.CreateString(detail.data(), detail.size())));
    if (static_cast<uint8_t>(status) > static_cast<uint8_t>(overall)) overall = status;
  };
  // This code runs, so the control plane's loop is serving.
  add("controlplane", HealthStatus::ok, "serving");
  const absl::Status& store = tables_.status();
  if (store.ok()) {
    add("store", HealthStatus::ok, "writable");
  } else {
    // Fail-stop: nothing more can be made durable, so no write can be acknowledged.
    add("store", HealthStatus::failing, store.ToString());
  }
  const bool dataplane = sources_.dataplane_connected && sources_.dataplane_connected();
  add("dataplane", dataplane ? HealthStatus::ok : HealthStatus::degraded,
      dataplane ? "connected" : "away: clients cannot connect");
  b.Finish(admin::CreateHealth(b, overall, b.CreateVector(components)));
  // A load balancer or the boot check reads the status code; degraded still serves the API.
  *http_status = overall == HealthStatus::failing ? 503 : 200;
  return codec_.to_json("herald.admin.Health", b);
}

std::string SystemApi::node_json() {
  ++stats_.node;
  flatbuffers::FlatBufferBuilder b;
  auto name = b.CreateString(sources_.node_name);
  auto version = b.CreateString(sources_.version);
  auto boot_slot = b.CreateString(sources_.boot_slot);
  auto backend = b.CreateString(sources_.backend);
  auto roles = b.CreateVectorOfStrings(sources_.roles);
  std::vector<flatbuffers::Offset<admin::Listener>> listeners;
  for (const ListenerInfo& l : sources_.listeners) {
    listeners.push_back(
        admin::CreateListener(b, b.CreateString(l.name), b.CreateString(l.address), l.port));
  }
  auto listeners_vec = b.CreateVector(listeners);
  const uint64_t uptime_ms = sources_.uptime_ms ? sources_.uptime_ms() : 0;
  const uint64_t revision = sources_.config_revision ? sources_.config_revision() : 0;
  b.Finish(admin::CreateNodeInfo(b, sources_.node_id, name, version, boot_slot, uptime_ms / 1000,
                                 sources_.started_unix_ms, sources_.workers, backend, revision,
                                 roles, listeners_vec));
  return codec_.to_json("herald.admin.NodeInfo", b);
}

void SystemApi::handle_metrics(Call& call, bool prometheus) {
  ++(prometheus ? stats_.metrics : stats_.stats);
  absl::Status read = sources_.read_counters
                          ? sources_.read_counters(&snapshot_)
                          : absl::UnavailableError("no counters segment is attached");
  if (!read.ok()) {
    ++stats_.counters_unavailable;
    call.respond_error(503, "counters_unavailable", std::string(read.message()));
    return;
  }
  if (prometheus) {
    call.responder.respond(200, kPrometheusContentType, render_prometheus(snapshot_));
  } else {
    call.respond_json(200, render_stats_json(snapshot_));
  }
}

}  // namespace herald::api

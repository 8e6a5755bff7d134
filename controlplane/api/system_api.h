// The admin API's system endpoints: GET /v1/health, GET /v1/node, GET /metrics (Prometheus text)
// and GET /v1/stats (JSON), all of scope read. What they report comes through SystemSources, so
// the lead wires them to the ControlPlane without this file depending on it.
//
//   SystemSources sources;
//   sources.version = HERALD_VERSION;
//   sources.uptime_ms = [&] { return cp.uptime_ms(); };
//   sources.dataplane_connected = [&] { return cp.ipc().connected(); };
//   sources.read_counters = [&](counters::Snapshot* out) { return reader.read(out); };
//   SystemApi system(tables, std::move(sources));
//   system.add_routes(router);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/api/json_codec.h"
#include "controlplane/api/router.h"
#include "controlplane/storage/tables.h"
#include "platform/counters/reader.h"

namespace herald::api {

struct ListenerInfo {
  std::string name;  // "admin", "public"
  std::string address;
  uint16_t port = 0;
};

struct SystemSources {
  std::string version;
  uint16_t node_id = 0;
  std::string node_name;
  std::string boot_slot;  // "a" or "b"; empty off the appliance
  std::string backend;    // "kernel" or "dpdk"
  uint16_t workers = 0;
  uint64_t started_unix_ms = 0;
  std::vector<std::string> roles;
  std::vector<ListenerInfo> listeners;
  std::function<uint64_t()> uptime_ms;
  std::function<uint64_t()> config_revision;  // may be empty: reported as 0
  // Whether a dataplane is attached over IPC; away makes the node degraded (it serves the admin
  // API, but clients cannot connect). Empty: reported as away.
  std::function<bool()> dataplane_connected;
  // One consistent read of the counters segment (a CounterReader::read over the lead's
  // mapping). Empty or failing: /metrics and /v1/stats answer 503 counters_unavailable.
  std::function<absl::Status(counters::Snapshot* out)> read_counters;
};

struct SystemApiStats {
  uint64_t health = 0;
  uint64_t node = 0;
  uint64_t metrics = 0;
  uint64_t stats = 0;
  uint64_t counters_unavailable = 0;
};

class SystemApi {
 public:
  SystemApi(const storage::Tables& tables, SystemSources sources);

  // GET /v1/health, /v1/node, /metrics, /v1/stats: scope read.
  void add_routes(Router& router);

  // The bodies, exposed for tests and for the CLI's local status. Health is "failing" when the
  // store has failed (nothing can be made durable), "degraded" when the dataplane is away.
  std::string health_json(int* http_status);
  std::string node_json();

  const SystemApiStats& stats() const { return stats_; }

 private:
  void handle_metrics(Call& call, bool prometheus);

  const storage::Tables& tables_;
  SystemSources sources_;
  JsonCodec codec_;
  counters::Snapshot snapshot_;  // reused: a read keeps names and buckets when the layout holds
  SystemApiStats stats_;
};

// Content type of the Prometheus text exposition format 0.0.4.
inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4";

}  // namespace herald::api

// The public device-linking API (Scope::kPublic, beside the registration API):
//   POST /v1/devices/link-code  {"credential"}                  -> {"link_code","expires_in"}
//   POST /v1/devices/link       {"link_code","device_name"}     -> {"account_id","device_id",
//                                                                   "credential"}
// The first takes the primary device's credential; the second makes a linked device, which
// then asks POST /v1/sessions for tokens as any device does. Bodies are public_api.fbs
// LinkCodeRequest / LinkCodeResponse / LinkRequest / LinkResponse; errors carry
// registration::link_error_name() (429 with retry_after and Retry-After). Every answer goes out
// after Tables::barrier(): the new device is durable, and pushed to the dataplane's routing as
// a DeviceListPush by the CatalogStore's devices-changed hook, before the client hears of it.
// Single-threaded (the control plane's loop).
#pragma once

#include <memory>

#include "controlplane/api/json_codec.h"
#include "controlplane/api/registration_api.h"
#include "controlplane/api/router.h"
#include "controlplane/registration/catalog_store.h"
#include "controlplane/registration/device_linker.h"
#include "controlplane/storage/tables.h"

namespace herald::api {

struct DevicesApiStats {
  uint64_t bad_request = 0;        // JSON the schema refused
  uint64_t store_unavailable = 0;  // a barrier failed: 503
  uint64_t unknown_peer = 0;       // no peer address: the shared fallback rate key
};

class DevicesApi {
 public:
  // `tables` and `store` (RegistrationApi::store()) must outlive the API.
  DevicesApi(const registration::DeviceLinkerOptions& options, storage::Tables& tables,
             registration::CatalogStore& store, UnixClock clock = system_unix_ms);
  DevicesApi(const DevicesApi&) = delete;
  DevicesApi& operator=(const DevicesApi&) = delete;

  // As RegistrationApi's: the connection's peer address for the per-address limit.
  void set_peer_address_fn(RegistrationApi::PeerAddressFn fn) { peer_address_ = std::move(fn); }
  void add_routes(Router& router);

  registration::DeviceLinker& linker() { return linker_; }
  const DevicesApiStats& stats() const { return *stats_; }

 private:
  void handle_link_code(Call& call);
  void handle_link(Call& call);
  registration::SourceAddress peer_of(const Call& call);
  void answer_after_barrier(const http::Responder& responder, int status, std::string body,
                            uint64_t retry_after_s = 0);
  void answer_error(const http::Responder& responder, registration::LinkError error,
                    uint64_t retry_after_s, std::string_view field = {});

  storage::Tables& tables_;
  registration::DeviceLinker linker_;
  UnixClock clock_;
  JsonCodec codec_;  // public_api.fbs
  RegistrationApi::PeerAddressFn peer_address_;
  std::shared_ptr<DevicesApiStats> stats_ = std::make_shared<DevicesApiStats>();
};

}  // namespace herald::api

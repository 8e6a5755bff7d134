// The admin API's bulk provisioning (admin scope), for load generators and tests:
//   POST /v1/accounts/provision  {"phones": [...], "device_name": "..."}
//     -> {"accounts": [{"phone","account_id","device_id","credential","token",
//                       "token_expires_at_ms"}]}
// Each phone is a successful verify without a code (Registrar::provision: a phone that has an
// account is re-registered, its old primary revoked and pushed to the dataplane) followed by
// a session token exactly as POST /v1/sessions signs it. Bodies are admin.fbs
// ProvisionRequest / ProvisionResponse. The whole request is checked first (count, every
// phone, duplicates, disabled accounts, the device name): a 400 names the index and changes
// nothing. The answer goes out after Tables::barrier(). Single-threaded (the control plane's
// loop).
#pragma once

#include <cstdint>
#include <memory>

#include "controlplane/api/json_codec.h"
#include "controlplane/api/registration_api.h"
#include "controlplane/api/router.h"
#include "controlplane/storage/tables.h"

namespace herald::api {

// Phones one request may provision: a 1000-account response is about 300 KB of JSON, and the
// request's commits run on the control plane's loop before anything else is served.
inline constexpr size_t kMaxProvisionPhones = 1000;

struct ProvisioningApiStats {
  uint64_t requests = 0;          // answered 200
  uint64_t accounts_created = 0;  // phones that had no account
  uint64_t accounts_reregistered = 0;
  uint64_t refused = 0;            // 400/409: nothing changed
  uint64_t store_unavailable = 0;  // an apply or the barrier failed: 503
};

class ProvisioningApi {
 public:
  // `registration` (registrar, key ring) and `tables` must outlive the API.
  ProvisioningApi(storage::Tables& tables, RegistrationApi& registration,
                  UnixClock clock = system_unix_ms);
  ProvisioningApi(const ProvisioningApi&) = delete;
  ProvisioningApi& operator=(const ProvisioningApi&) = delete;

  // Fired for every re-registered phone's old primary (as a verify does): -> IPC
  // RevocationPush.
  void set_revocation_hook(RevocationHook hook) { revocation_hook_ = std::move(hook); }
  void add_routes(Router& router);
  const ProvisioningApiStats& stats() const { return *stats_; }

 private:
  void handle_provision(Call& call);

  storage::Tables& tables_;
  RegistrationApi& registration_;
  UnixClock clock_;
  JsonCodec codec_;  // admin.fbs
  RevocationHook revocation_hook_;
  std::shared_ptr<ProvisioningApiStats> stats_ = std::make_shared<ProvisioningApiStats>();
};

}  // namespace herald::api

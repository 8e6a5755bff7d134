// The admin API's account endpoints (admin listener, API key scopes):
//   GET    /v1/accounts?phone=+15551234567          (read)   -> AccountInfo
//   GET    /v1/accounts[?limit=N&after=<id>]        (read)   -> admin.fbs AccountList, id order
//   GET    /v1/accounts/{id}                        (read)   -> AccountInfo
//   POST   /v1/accounts/{id}/disable                (admin)  -> AccountInfo; revokes all tokens
//   GET    /v1/accounts/{id}/devices                (read)   -> DeviceList
//   DELETE /v1/accounts/{id}/devices/{device_id}    (admin)  -> DeviceInfo; revokes its tokens
// Bodies are schemas/public_api.fbs AccountInfo / DeviceInfo / DeviceList and admin.fbs
// AccountList. Every answer goes out after Tables::barrier(). Single-threaded (the control
// plane's loop).
#pragma once

#include <memory>

#include "controlplane/api/json_codec.h"
#include "controlplane/api/registration_api.h"
#include "controlplane/api/router.h"
#include "controlplane/registration/catalog_store.h"
#include "controlplane/storage/tables.h"

namespace herald::api {

// Page size of GET /v1/accounts: default and largest (a full page is about 150 KB of JSON).
inline constexpr size_t kDefaultAccountsPage = 100;
inline constexpr size_t kMaxAccountsPage = 1000;

struct AccountsApiStats {
  uint64_t disabled = 0;
  uint64_t devices_revoked = 0;
  uint64_t store_unavailable = 0;
  uint64_t pages_listed = 0;
  uint64_t bad_list_requests = 0;        // limit, cursor or parameters refused (400)
  uint64_t corrupt_records_skipped = 0;  // kAccounts records a listing could not decode
};

class AccountsApi {
 public:
  // `store` is RegistrationApi::store() (the same tables); both must outlive the API.
  AccountsApi(storage::Tables& tables, registration::CatalogStore& store,
              UnixClock clock = system_unix_ms);
  AccountsApi(const AccountsApi&) = delete;
  AccountsApi& operator=(const AccountsApi&) = delete;

  // Fired (before the answer) when a device is revoked (device set) or an account disabled
  // (device nullopt: every device): -> IPC RevocationPush.
  void set_revocation_hook(RevocationHook hook) { revocation_hook_ = std::move(hook); }

  void add_routes(Router& router);

  const AccountsApiStats& stats() const { return *stats_; }

 private:
  // GET /v1/accounts: the phone lookup with ?phone=, else the paged listing.
  void handle_lookup(Call& call);
  void handle_list(Call& call);
  std::optional<registration::AccountId> account_param(Call& call);
  void handle_get(Call& call);
  void handle_disable(Call& call);
  void handle_devices(Call& call);
  void handle_revoke(Call& call);
  std::string account_json(const registration::Account& account);
  std::string device_json(const registration::Device& device, bool primary);
  void answer_after_barrier(const http::Responder& responder, int status, std::string body);

  storage::Tables& tables_;
  registration::CatalogStore& store_;
  UnixClock clock_;
  JsonCodec codec_;        // public_api.fbs
  JsonCodec admin_codec_;  // admin.fbs (AccountList)
  RevocationHook revocation_hook_;
  std::shared_ptr<AccountsApiStats> stats_ = std::make_shared<AccountsApiStats>();
};

}  // namespace herald::api

// The public registration API (Scope::kPublic, served over HTTPS on the public listener):
//   POST /v1/accounts/code    {"phone","method"}               -> {"expires_in"} | 429 retry_after
//   POST /v1/accounts/verify  {"phone","code","device_name"}   -> {"account_id","device_id",...}
//   POST /v1/sessions         {"credential"}                   ->
//   {"token","key_id","expires_at_ms"}
// JSON bodies are parsed against schemas/public_api.fbs (unknown fields and wrong types: 400
// bad_request); errors carry the registrar's stable error codes (registrar.h error_name).
// Every answer that depends on the tables goes out only after Tables::barrier(), so a code, an
// attempt count or a device is durable before the client hears about it.
//
//   auto api = RegistrationApi::create(options, tables, gateway);
//   api->set_peer_address_fn(...);         // the connection's peer, for the per-address limit
//   api->set_revocation_hook(...);         // -> IPC RevocationPush
//   api->set_keys_hook(...);               // -> IPC SessionKeyPush, one per key
//   api->add_routes(public_router);
//   every second: (void)api->rotate_keys_if_due(unix_now_ms());
//
// Single-threaded (the control plane's loop).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/api/json_codec.h"
#include "controlplane/api/router.h"
#include "controlplane/http/server.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/catalog_store.h"
#include "controlplane/registration/code_gateway.h"
#include "controlplane/registration/registrar.h"
#include "controlplane/registration/source_address.h"
#include "controlplane/storage/tables.h"

namespace herald::api {

// Unix time in milliseconds.
using UnixClock = std::function<uint64_t()>;
uint64_t system_unix_ms();

// "Tokens of `device` (nullopt: every device) of `account` issued before `issued_before_ms`
// are revoked": the lead turns it into an IPC RevocationPush to the dataplane.
using RevocationHook =
    std::function<void(const registration::AccountId& account, std::optional<uint32_t> device,
                       uint64_t issued_before_ms)>;

struct RegistrationApiOptions {
  registration::RegistrarOptions registrar;
  registration::KeyRingOptions keys;
  // How often the session-token signing key rotates. The key ring holds at most
  // kMaxSessionKeys keys, so this must be at least (token_ttl + skew) / 6.
  uint64_t key_rotation_interval_ms = 24 * 3'600'000ULL;
  UnixClock clock = system_unix_ms;
};

struct RegistrationApiStats {
  uint64_t bad_request = 0;        // JSON the schema refused
  uint64_t store_unavailable = 0;  // a barrier failed: 503
  uint64_t key_rotations = 0;
  uint64_t key_rotation_failures = 0;
  uint64_t revocations_pushed = 0;  // revocation hook calls
  uint64_t unknown_peer = 0;        // no peer address: counted under the shared fallback key
};

class RegistrationApi {
 public:
  // The connection's peer address. The HTTP server does not expose it on Request or Responder
  // yet; the lead wires this from the accepted socket (getpeername, or the address the server
  // already keys its per-address connection limit with). Without it, or when it returns
  // nullopt, every request shares one rate-limit key (0.0.0.0): fail closed, never unlimited.
  using PeerAddressFn = std::function<std::optional<registration::SourceAddress>(
      const http::Request& request, const http::Responder& responder)>;
  // Called after a rotation (or an expiry drop) is durable, with the whole ring: push one
  // SessionKeyPush per key in ring.keys().
  using KeysHook = std::function<void(const registration::KeyRing& ring)>;

  // Loads (or on first start creates and stores) the node secret and the key ring from the
  // tables. `tables` and `gateway` must outlive the API.
  static absl::StatusOr<std::unique_ptr<RegistrationApi>> create(
      const RegistrationApiOptions& options, storage::Tables& tables,
      registration::CodeGateway& gateway);
  RegistrationApi(const RegistrationApi&) = delete;
  RegistrationApi& operator=(const RegistrationApi&) = delete;

  void add_routes(Router& router);

  void set_peer_address_fn(PeerAddressFn fn) { peer_address_ = std::move(fn); }
  void set_revocation_hook(RevocationHook hook) { revocation_hook_ = std::move(hook); }
  void set_keys_hook(KeysHook hook) { keys_hook_ = std::move(hook); }

  // From the 1 s tick: rotates when key_rotation_interval_ms has passed since the last
  // rotation, and drops retired keys whose tokens have all expired. The new ring is stored
  // before anything is signed with it, and the keys hook runs once that is durable. An error
  // (store refused, ring full) leaves the current ring in use; the next tick retries.
  absl::Status rotate_keys_if_due(uint64_t now_ms);

  // A committed config revision (NodeServices' apply hook): the registrar's code TTL, attempts
  // and rate rules, the token lifetime of tokens issued from now on, and the rotation period
  // (measured from the last rotation). InvalidArgument, changing nothing, for values the
  // registrar refuses or a zero rotation period.
  absl::Status update_options(const registration::RegistrarOptions& registrar,
                              uint64_t token_ttl_ms, uint64_t key_rotation_interval_ms);

  const registration::KeyRing& key_ring() const { return ring_; }
  registration::CatalogStore& store() { return *store_; }
  registration::Registrar& registrar() { return *registrar_; }
  const RegistrationApiStats& stats() const { return *stats_; }

 private:
  RegistrationApi(const RegistrationApiOptions& options, storage::Tables& tables,
                  registration::CodeGateway& gateway,
                  std::unique_ptr<registration::CatalogStore> store,
                  std::span<const uint8_t> node_secret, registration::StoredKeyRing ring);

  void handle_code(Call& call);
  void handle_verify(Call& call);
  void handle_session(Call& call);
  registration::SourceAddress peer_of(const Call& call);
  // Answers after a barrier over everything applied so far: `status`/`body` when it is OK,
  // 503 store_unavailable when it is not.
  void answer_after_barrier(const http::Responder& responder, int status, std::string body,
                            uint64_t retry_after_s = 0);
  void answer_error(const http::Responder& responder, registration::RegistrationError error,
                    std::string_view detail = {}, std::string_view field = {});

  RegistrationApiOptions options_;
  storage::Tables& tables_;
  std::unique_ptr<registration::CatalogStore> store_;
  std::unique_ptr<registration::Registrar> registrar_;
  registration::KeyRing ring_;
  uint64_t rotated_at_ms_ = 0;
  JsonCodec codec_;
  PeerAddressFn peer_address_;
  RevocationHook revocation_hook_;
  KeysHook keys_hook_;
  // Shared with barrier callbacks, which may run after a request's handler returned.
  std::shared_ptr<RegistrationApiStats> stats_ = std::make_shared<RegistrationApiStats>();
};

}  // namespace herald::api

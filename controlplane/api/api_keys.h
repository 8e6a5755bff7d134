// The admin API's keys: 256-bit random secrets, stored only as their SHA-256 in the kApiKeys
// table, with a scope (read or admin); the Router's Authenticator, the bootstrap admin key a new
// node writes to <data-dir>/admin.key, and the /v1/api-keys routes.
//
//   ApiKeys keys(tables, wall_clock_ms);
//   if (absl::Status s = keys.ensure_bootstrap_key(data_dir); !s.ok()) return s;  // start-up
//   Router router(&keys);
//   keys.add_routes(router);
//
// A key's text is "hk_<id>_<secret>": <id> is 16 lower-case hex digits (the table key, public:
// it is listed and named in DELETE), <secret> the 32 random bytes in base64url (43 characters).
// Single-threaded: the control plane's loop.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/api/json_codec.h"
#include "controlplane/api/router.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/storage/tables.h"

namespace herald::api {

inline constexpr size_t kApiKeySecretBytes = 32;  // 256 bits
inline constexpr size_t kApiKeyIdHexDigits = 16;
inline constexpr size_t kMaxApiKeyNameBytes = 64;
// Where ensure_bootstrap_key() writes the bootstrap key, under the data directory.
inline constexpr std::string_view kAdminKeyFileName = "admin.key";
inline constexpr std::string_view kBootstrapKeyName = "bootstrap";

// Plain counters the lead mirrors into the counters segment.
struct ApiKeyStats {
  uint64_t allowed = 0;
  uint64_t missing = 0;     // no Authorization field
  uint64_t malformed = 0;   // not "Bearer hk_<id>_<secret>"
  uint64_t unknown = 0;     // no such id
  uint64_t bad_secret = 0;  // id known, secret wrong
  uint64_t revoked = 0;
  uint64_t forbidden = 0;  // valid read key on an admin route
  uint64_t created = 0;
  uint64_t revocations = 0;
  uint64_t bootstrap_created = 0;
};

// One stored key (kApiKeys value), without the hash.
struct ApiKeyRecord {
  std::string id;
  std::string name;
  Scope scope = Scope::kRead;
  uint64_t created_unix_ms = 0;
  uint64_t revoked_unix_ms = 0;  // 0: active
  registration::Digest secret_sha256{};
};

struct CreatedApiKey {
  ApiKeyRecord record;
  std::string key;  // hk_<id>_<secret>: shown once, never stored
};

class ApiKeys final : public Authenticator {
 public:
  using NowMs = std::function<uint64_t()>;  // Unix ms (created/revoked); empty: system clock

  ApiKeys(storage::Tables& tables, NowMs now_unix_ms);

  // Authorization: Bearer <key> (RFC 6750 §2.1; the scheme is case-insensitive, RFC 9110
  // §11.1). Anything else, an unknown, wrong or revoked key: kUnauthenticated. A read key on an
  // admin route: kForbidden.
  AuthOutcome authenticate(const http::Request& request, Scope needed) override;
  // The name of the request's key (what a config revision records as its author), or
  // "key:<id>" for a key without one; empty when the request carries no known key.
  std::string principal(const http::Request& request) const override;

  // Mints a key and applies it to the tables (durable after the next barrier). InvalidArgument
  // for a bad name or scope (kPublic), Unavailable when the store refused it.
  absl::StatusOr<CreatedApiKey> create(std::string_view name, Scope scope);
  // NotFound, AlreadyExists (already revoked), FailedPrecondition (the last active admin key:
  // revoking it would leave the node unmanageable, whoever asks), or Unavailable (the store
  // refused the change).
  absl::Status revoke(std::string_view id);

  std::optional<ApiKeyRecord> find(std::string_view id) const;
  // Whether `key` (hk_...) is an active key of at least `needed`.
  bool verify(std::string_view key, Scope needed) const;
  size_t active_admin_keys() const;

  // Start-up, before the admin listener opens (blocking file I/O). When no active admin key
  // exists, creates one named "bootstrap" and writes it to <data_dir>/admin.key (mode 0600,
  // through a temporary file, fsync and rename, then fsync of the directory), logging the path,
  // never the key. The file is written before the key is applied to the store: a crash between
  // the two leaves a file whose key is not stored, which the next start replaces; the opposite
  // order could leave a stored admin key nobody knows. A file whose key is stored is kept.
  absl::Status ensure_bootstrap_key(const std::string& data_dir);

  // GET /v1/api-keys (read), POST /v1/api-keys (admin), DELETE /v1/api-keys/{id} (admin).
  void add_routes(Router& router);

  const ApiKeyStats& stats() const { return stats_; }

 private:
  enum class Check : uint8_t { kAllowed, kMalformed, kUnknown, kBadSecret, kRevoked, kForbidden };
  Check check(std::string_view key, Scope needed) const;
  void handle_list(Call& call);
  void handle_create(Call& call);
  void handle_revoke(Call& call);

  storage::Tables& tables_;
  NowMs now_unix_ms_;
  JsonCodec codec_;
  ApiKeyStats stats_;
};

// "hk_<id>_<secret>" split into its id and secret; nullopt for anything else (strict: exact
// lengths, lower-case hex id, canonical base64url secret).
struct ParsedApiKey {
  std::string_view id;
  std::array<uint8_t, kApiKeySecretBytes> secret{};
};
std::optional<ParsedApiKey> parse_api_key(std::string_view key);

// The key of "Authorization: Bearer <key>"; nullopt when the field is absent or not of that
// form.
std::optional<std::string_view> bearer_token(std::string_view authorization);

// Stored-value codec, exposed for tests.
std::string encode_api_key_record(const ApiKeyRecord& record);
std::optional<ApiKeyRecord> decode_api_key_record(std::string_view id, std::string_view value);

}  // namespace herald::api

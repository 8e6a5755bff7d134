// Accounts and groups for a run, made before the workers fork: POST /v1/accounts/provision on
// the admin API (1000 phones a call), or the public registration flow (code from the log
// gateway's sms.log, verify, session) where the admin API is not available; groups through
// POST /v1/groups and /v1/groups/{id}/members.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "platform/auth/account_id.h"
#include "tools/client/tls_stream.h"
#include "tools/heraldctl/admin_client.h"

namespace herald::tools::loadgen {

struct ProvisionedAccount {
  std::string phone;
  auth::AccountId account;
  uint32_t device_id = 0;
  std::vector<uint8_t> token;  // the bytes Auth carries
  uint64_t token_expires_at_ms = 0;
};

// Phones one provision call carries at most (the endpoint's limit).
inline constexpr size_t kProvisionBatch = 1000;

// A 200 body of POST /v1/accounts/provision (admin.fbs ProvisionResponse), checked: every entry
// has a parseable account id, a device and a token. `expected` phones, in request order.
absl::StatusOr<std::vector<ProvisionedAccount>> parse_provision_response(
    std::string_view body, const std::vector<std::string>& expected);

// All of `phones`, kProvisionBatch per request. `progress` is called after each batch.
absl::StatusOr<std::vector<ProvisionedAccount>> provision_admin(
    const AdminEndpoint& admin, const std::vector<std::string>& phones,
    const std::string& device_name, const std::function<void(size_t done)>& progress = {});

// One phone through the public API, as an app registers (slow: four TLS requests; the node's
// registration rate limits apply).
absl::StatusOr<ProvisionedAccount> provision_public(const TlsStreamOptions& api,
                                                    const std::string& sms_log_path,
                                                    const std::string& phone,
                                                    const std::string& device_name);

// Creates one group with `members` (adding past the first 1024 in further calls); its id as
// the admin API prints it, parsed.
absl::StatusOr<uint64_t> create_group(const AdminEndpoint& admin, const std::string& name,
                                      const std::vector<auth::AccountId>& members);

}  // namespace herald::tools::loadgen

// Linking a device to an existing account (multi-device): the primary device asks for a one-time
// link code; a new device presents it and becomes a linked device with its own credential. Pure
// logic over the CatalogStore, time passed in by the caller. Single-threaded (the control
// plane's event loop).
//
// Link codes live in memory only, bounded: a code is a short-lived bearer secret, so losing the
// pending ones on a restart costs a user one more request and never lets a stale code be
// replayed; what a link creates (the device) is durable in one store batch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/status.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/catalog_store.h"
#include "controlplane/registration/rate_limiter.h"
#include "controlplane/registration/source_address.h"

namespace herald::registration {

// Stable error codes: link_error_name() is the API's `error` field and a counter name.
enum class LinkError : uint8_t {
  kOk = 0,
  kInvalidCredential,  // 401: not a credential of an active device
  kNotPrimaryDevice,   // 403: only the primary device hands out link codes
  kAccountDisabled,    // 403
  kRateLimited,        // 429
  kInvalidDeviceName,  // 400
  kUnknownLinkCode,    // 404: never issued, malformed, or forgotten (restart, replaced)
  kLinkCodeExpired,    // 410
  kLinkCodeUsed,       // 409: already linked a device
  kTooManyDevices,     // 409: the account has max_linked_devices linked devices
  kLinkCodesFull,      // 503: the pending-code table is full of live codes
  kStoreFailed,        // 503
  kCount,
};
std::string_view link_error_name(LinkError error);
std::string_view link_error_message(LinkError error);
int link_http_status(LinkError error);

// 16 random bytes as base64url: 22 characters.
inline constexpr size_t kLinkCodeBytes = 16;
inline constexpr size_t kLinkCodeTextBytes = base64url_encoded_size(kLinkCodeBytes);

// Link-code requests per account: 3 at once, then one a minute; 20 a day.
RateLimiterOptions default_link_account_limits();
// Per source address: the registration endpoints' rules, in a smaller table (65536 addresses,
// about 4 MB): linking is rarer than registering.
RateLimiterOptions default_link_address_limits();

struct DeviceLinkerOptions {
  uint64_t link_code_ttl_ms = 300'000;  // a code links within [issued, issued + ttl)
  uint32_t max_linked_devices = 4;      // active devices besides the primary (config limits.)
  uint32_t max_pending_link_codes = 65'536;
  RateLimiterOptions account_limits = default_link_account_limits();  // link-code requests
  // Per source address, both requests and links.
  RateLimiterOptions address_limits = default_link_address_limits();
};

struct LinkCodeResult {
  LinkError error = LinkError::kOk;
  std::string link_code;       // kOk: shown once, only its hash is kept
  uint64_t expires_in_s = 0;   // kOk
  uint64_t retry_after_s = 0;  // kRateLimited
};

struct LinkResult {
  LinkError error = LinkError::kOk;
  AccountId account;           // kOk
  uint32_t device_id = 0;      // kOk
  std::string credential;      // kOk: shown once, never stored
  uint64_t retry_after_s = 0;  // kRateLimited
};

class DeviceLinker {
 public:
  // `store` must outlive the linker.
  DeviceLinker(const DeviceLinkerOptions& options, CatalogStore& store);

  // `credential` must be the primary device's. A new code replaces the account's pending one.
  LinkCodeResult request_link_code(std::string_view credential, const SourceAddress& source,
                                   uint64_t now_ms);
  // Links a new device with a code; the code is spent only by a link that was committed.
  LinkResult link(std::string_view link_code, std::string_view device_name,
                  const SourceAddress& source, uint64_t now_ms);

  // A committed config revision (limits.max_linked_devices is hot). Applies to the next link;
  // devices already linked above a lowered limit stay linked. InvalidArgument for 0.
  absl::Status set_max_linked_devices(uint32_t max_linked_devices);
  const DeviceLinkerOptions& options() const { return options_; }

  // Forgets expired codes; returns how many (the control plane's tick, and a full table).
  size_t sweep_expired(uint64_t now_ms);
  size_t pending_link_codes() const { return codes_.size(); }

  // Outcomes of both calls by error code since construction (index = LinkError).
  const std::array<uint64_t, static_cast<size_t>(LinkError::kCount)>& outcomes() const {
    return outcomes_;
  }

 private:
  struct PendingLink {
    AccountId account;
    uint32_t issuer_device_id = 0;  // the primary that asked: it must still be active
    uint64_t expires_ms = 0;
    bool used = false;  // kept until it expires, so a second use is told "used"
  };
  struct AccountHash {
    size_t operator()(const AccountId& id) const { return id.hi * 31 + id.lo; }
  };
  LinkError count(LinkError error) {
    ++outcomes_[static_cast<size_t>(error)];
    return error;
  }
  static std::string code_key(const Digest& hash) {
    return std::string(reinterpret_cast<const char*>(hash.data()), hash.size());
  }

  DeviceLinkerOptions options_;
  CatalogStore& store_;
  RateLimiter account_limiter_;
  RateLimiter address_limiter_;
  std::unordered_map<std::string, PendingLink> codes_;  // SHA-256 of the code -> pending link
  // The account's newest code (its key in codes_): a new request replaces it.
  std::unordered_map<AccountId, std::string, AccountHash> by_account_;
  std::array<uint64_t, static_cast<size_t>(LinkError::kCount)> outcomes_{};
};

}  // namespace herald::registration

// Linking a device to an account with a one-time code (see device_linker.h).
#include "controlplane/registration/device_linker.h"

#include <openssl/mem.h>

#include <algorithm>
#include <optional>

#include "controlplane/registration/credential.h"
#include "controlplane/registration/registrar.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::registration {

std::string_view link_error_name(LinkError error) {
  switch (error) {
    case LinkError::kOk: return "ok";
    case LinkError::kInvalidCredential: return "invalid_credential";
    case LinkError::kNotPrimaryDevice: return "not_primary_device";
    case LinkError::kAccountDisabled: return "account_disabled";
    case LinkError::kRateLimited: return "rate_limited";
    case LinkError::kInvalidDeviceName: return "invalid_device_name";
    case LinkError::kUnknownLinkCode: return "unknown_link_code";
    case LinkError::kLinkCodeExpired: return "link_code_expired";
    case LinkError::kLinkCodeUsed: return "link_code_used";
    case LinkError::kTooManyDevices: return "too_many_devices";
    case LinkError::kLinkCodesFull: return "link_codes_full";
    case LinkError::kStoreFailed: return "store_failed";
    case LinkError::kCount: break;
  }
  return "unknown";
}

std::string_view link_error_message(LinkError error) {
  switch (error) {
    case LinkError::kOk: return "ok";
    case LinkError::kInvalidCredential: return "the device credential is not valid";
    case LinkError::kNotPrimaryDevice: return "only the account's primary device can link devices";
    case LinkError::kAccountDisabled: return "this account has been disabled";
    case LinkError::kRateLimited: return "too many requests; retry after retry_after seconds";
    case LinkError::kInvalidDeviceName:
      return "device_name must be 1 to 64 bytes of UTF-8 without control characters";
    case LinkError::kUnknownLinkCode:
      return "no such link code; ask the primary device for a new one";
    case LinkError::kLinkCodeExpired:
      return "the link code has expired; ask the primary device for a new one";
    case LinkError::kLinkCodeUsed: return "the link code has already linked a device";
    case LinkError::kTooManyDevices:
      return "the account already has the most linked devices allowed; revoke one first";
    case LinkError::kLinkCodesFull: return "too many pending link codes; try again later";
    case LinkError::kStoreFailed: return "internal storage error; try again later";
    case LinkError::kCount: break;
  }
  return "unknown error";
}

int link_http_status(LinkError error) {
  switch (error) {
    case LinkError::kOk: return 200;
    case LinkError::kInvalidDeviceName: return 400;
    case LinkError::kInvalidCredential: return 401;
    case LinkError::kNotPrimaryDevice:
    case LinkError::kAccountDisabled: return 403;
    case LinkError::kUnknownLinkCode: return 404;
    case LinkError::kLinkCodeUsed:
    case LinkError::kTooManyDevices: return 409;
    // RFC 9110 §15.5.11: the code existed and is gone for good.
    case LinkError::kLinkCodeExpired: return 410;
    case LinkError::kRateLimited: return 429;
    case LinkError::kLinkCodesFull:
    case LinkError::kStoreFailed: return 503;
    case LinkError::kCount: break;
  }
  return 500;
}

RateLimiterOptions default_link_account_limits() {
  RateLimiterOptions o;
  o.rules[0] = {60'000, 3};
  o.rules[1] = {4'320'000, 20};
  o.rule_count = 2;
  o.capacity = 1u << 16;
  return o;
}

RateLimiterOptions default_link_address_limits() {
  RateLimiterOptions o = default_address_limits();
  o.capacity = 1u << 16;
  return o;
}

namespace {

uint64_t ceil_seconds(uint64_t ms) {
  return std::max<uint64_t>(1, (ms + 999) / 1000);
}

// The hash a link code is kept under; nullopt when the text cannot be a code.
std::optional<Digest> link_code_hash(std::string_view text) {
  std::array<uint8_t, kLinkCodeBytes> secret;
  if (text.size() != kLinkCodeTextBytes || !base64url_decode(text, secret)) return std::nullopt;
  Digest hash = sha256(std::span<const uint8_t>(secret));
  OPENSSL_cleanse(secret.data(), secret.size());
  return hash;
}

}  // namespace

DeviceLinker::DeviceLinker(const DeviceLinkerOptions& options, CatalogStore& store)
    : options_(options),
      store_(store),
      account_limiter_(options.account_limits),
      address_limiter_(options.address_limits) {
  HERALD_CHECK(options.link_code_ttl_ms > 0 && options.max_linked_devices > 0 &&
                   options.max_pending_link_codes > 0,
               "device linker options");
  codes_.reserve(std::min<size_t>(options.max_pending_link_codes, 1024));
}

absl::Status DeviceLinker::set_max_linked_devices(uint32_t max_linked_devices) {
  if (max_linked_devices == 0) return absl::InvalidArgumentError("max_linked_devices must be > 0");
  options_.max_linked_devices = max_linked_devices;
  return absl::OkStatus();
}

size_t DeviceLinker::sweep_expired(uint64_t now_ms) {
  size_t erased = 0;
  for (auto it = codes_.begin(); it != codes_.end();) {
    if (now_ms < it->second.expires_ms) {
      ++it;
      continue;
    }
    auto owner = by_account_.find(it->second.account);
    if (owner != by_account_.end() && owner->second == it->first) by_account_.erase(owner);
    it = codes_.erase(it);
    ++erased;
  }
  return erased;
}

LinkCodeResult DeviceLinker::request_link_code(std::string_view credential,
                                               const SourceAddress& source, uint64_t now_ms) {
  LinkCodeResult result;
  // The address is limited before anything is looked up, so the endpoint is no faster an
  // oracle for credentials than the session endpoint.
  RateDecision by_address = address_limiter_.check(source.rate_key(), now_ms);
  if (!by_address.allowed()) {
    result.error = count(LinkError::kRateLimited);
    result.retry_after_s = ceil_seconds(by_address.retry_after_ms);
    return result;
  }
  std::optional<Digest> hash = credential_hash(credential);
  std::optional<Device> device;
  if (hash) device = store_.find_device_by_credential(*hash);
  if (!device || device->revoked_ms != 0 || !constant_time_equal(device->credential_hash, *hash)) {
    (void)address_limiter_.acquire(source.rate_key(), now_ms);
    result.error = count(LinkError::kInvalidCredential);
    return result;
  }
  std::optional<Account> account = store_.find_account(device->account);
  if (!account) {
    result.error = count(LinkError::kInvalidCredential);
    return result;
  }
  if (account->disabled_ms != 0) {
    result.error = count(LinkError::kAccountDisabled);
    return result;
  }
  if (account->primary_device_id != device->device_id) {
    result.error = count(LinkError::kNotPrimaryDevice);
    return result;
  }
  const RateKey account_key{account->id.hi, account->id.lo};
  RateDecision by_account = account_limiter_.check(account_key, now_ms);
  if (!by_account.allowed()) {
    result.error = count(LinkError::kRateLimited);
    result.retry_after_s = ceil_seconds(by_account.retry_after_ms);
    return result;
  }
  // The account's previous code goes first: it never counts against the table.
  if (auto previous = by_account_.find(account->id); previous != by_account_.end()) {
    codes_.erase(previous->second);
    by_account_.erase(previous);
  }
  if (codes_.size() >= options_.max_pending_link_codes && sweep_expired(now_ms) == 0) {
    HLOG_RATE_LIMITED(kWarn, "registration.link_codes_full", 1).kv("pending", codes_.size());
    result.error = count(LinkError::kLinkCodesFull);
    return result;
  }
  std::array<uint8_t, kLinkCodeBytes> secret;
  random_bytes(secret);
  result.link_code = base64url_encode(secret);
  const std::string key = code_key(sha256(std::span<const uint8_t>(secret)));
  OPENSSL_cleanse(secret.data(), secret.size());
  codes_[key] =
      PendingLink{account->id, device->device_id, now_ms + options_.link_code_ttl_ms, false};
  by_account_[account->id] = key;
  (void)account_limiter_.acquire(account_key, now_ms);
  (void)address_limiter_.acquire(source.rate_key(), now_ms);
  result.expires_in_s = options_.link_code_ttl_ms / 1000;
  count(LinkError::kOk);
  return result;
}

LinkResult DeviceLinker::link(std::string_view link_code, std::string_view device_name,
                              const SourceAddress& source, uint64_t now_ms) {
  LinkResult result;
  RateDecision by_address = address_limiter_.check(source.rate_key(), now_ms);
  if (!by_address.allowed()) {
    result.error = count(LinkError::kRateLimited);
    result.retry_after_s = ceil_seconds(by_address.retry_after_ms);
    return result;
  }
  // Every attempt counts against the address: 128-bit codes leave nothing to guess, and this
  // keeps a scanner's cost the same as the code endpoint's.
  (void)address_limiter_.acquire(source.rate_key(), now_ms);
  if (!is_valid_device_name(device_name)) {
    result.error = count(LinkError::kInvalidDeviceName);
    return result;
  }
  std::optional<Digest> hash = link_code_hash(link_code);
  auto it = hash ? codes_.find(code_key(*hash)) : codes_.end();
  if (it == codes_.end()) {
    result.error = count(LinkError::kUnknownLinkCode);
    return result;
  }
  PendingLink& pending = it->second;
  if (pending.used) {
    result.error = count(LinkError::kLinkCodeUsed);
    return result;
  }
  if (now_ms >= pending.expires_ms) {
    result.error = count(LinkError::kLinkCodeExpired);
    return result;
  }
  std::optional<Account> account = store_.find_account(pending.account);
  std::optional<Device> issuer =
      account ? store_.find_device(pending.account, pending.issuer_device_id) : std::nullopt;
  // The primary that asked was replaced or revoked since: its codes die with it.
  if (!account || !issuer || issuer->revoked_ms != 0 ||
      account->primary_device_id != pending.issuer_device_id) {
    result.error = count(LinkError::kUnknownLinkCode);
    return result;
  }
  if (account->disabled_ms != 0) {
    result.error = count(LinkError::kAccountDisabled);
    return result;
  }
  uint32_t linked = 0;
  for (const Device& d : store_.list_devices(account->id)) {
    if (d.revoked_ms == 0 && d.device_id != account->primary_device_id) ++linked;
  }
  if (linked >= options_.max_linked_devices) {
    result.error = count(LinkError::kTooManyDevices);
    return result;
  }
  const uint32_t device_id = account->next_device_id;
  // 0 means "no device" and UINT32_MAX is RevocationSet::kAllDevices: neither is handed out.
  if (HERALD_BUG_IF(device_id == 0 || device_id == UINT32_MAX,
                    "device id space of an account exhausted")) {
    result.error = count(LinkError::kStoreFailed);
    return result;
  }
  IssuedCredential credential = issue_credential();
  Device device;
  device.account = account->id;
  device.device_id = device_id;
  device.name = std::string(device_name);
  device.credential_hash = credential.hash;
  device.created_ms = now_ms;
  account->next_device_id = device_id + 1;
  if (absl::Status s = store_.commit_linked_device(*account, device); !s.ok()) {
    HLOG_RATE_LIMITED(kError, "registration.store_failed", 1)
        .kv("op", "link_device")
        .kv("status", s.ToString());
    result.error = count(LinkError::kStoreFailed);
    return result;
  }
  pending.used = true;
  result.account = account->id;
  result.device_id = device_id;
  result.credential = std::move(credential.text);
  count(LinkError::kOk);
  return result;
}

}  // namespace herald::registration

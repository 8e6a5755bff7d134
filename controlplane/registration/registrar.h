// The registration state machine: request a code for a phone number, verify it (creating or
// re-binding the account and its primary device), and exchange a device credential for a
// session token. Pure logic over a RegistrationStore and a CodeGateway; every call takes the
// current unix time in milliseconds, so tests drive time by hand. Single-threaded (the control
// plane's event loop).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/code_gateway.h"
#include "controlplane/registration/phone_number.h"
#include "controlplane/registration/rate_limiter.h"
#include "controlplane/registration/source_address.h"
#include "controlplane/registration/store.h"
#include "controlplane/registration/verification_code.h"

namespace herald::registration {

// Stable error codes: error_name() is the API's `error` field, and a counter name.
enum class RegistrationError : uint8_t {
  kOk = 0,
  kInvalidPhone,
  kInvalidMethod,  // for the HTTP layer: `method` is neither "sms" nor "voice"
  kInvalidDeviceName,
  kRateLimited,
  kInvalidCode,  // wrong code, or not six digits (the latter costs no attempt)
  kCodeExpired,
  kTooManyAttempts,
  kNoCodePending,
  kInvalidCredential,
  kGatewayFailed,
  kStoreFailed,
  kAccountDisabled,  // an admin disabled the account: no verify, no session
  kCount,
};
std::string_view error_name(RegistrationError error);
std::string_view error_message(RegistrationError error);  // for the API's `message`
int http_status(RegistrationError error);

inline constexpr size_t kMaxDeviceNameBytes = 64;
// 1..64 bytes of valid UTF-8 with no control characters.
bool is_valid_device_name(std::string_view name);

struct RegistrarOptions {
  uint64_t code_ttl_ms = 600'000;  // a code is valid for [issued, issued + ttl)
  uint32_t max_verify_attempts = 5;
  RateLimiterOptions phone_limits = default_phone_limits();
  RateLimiterOptions address_limits = default_address_limits();
};

struct RequestCodeResult {
  RegistrationError error = RegistrationError::kOk;
  uint64_t expires_in_s = 0;                 // kOk
  uint64_t retry_after_s = 0;                // kRateLimited (rounded up, at least 1)
  PhoneError phone_error = PhoneError::kOk;  // kInvalidPhone
  // Which limit refused: the phone's or the source address's (for counters and logs only; the
  // client is told just rate_limited).
  bool limited_by_phone = false;
  bool limited_by_address = false;
};

struct VerifyResult {
  RegistrationError error = RegistrationError::kOk;
  AccountId account;         // kOk
  uint32_t device_id = 0;    // kOk
  std::string credential;    // kOk: shown once, never stored
  bool new_account = false;  // kOk
  // kOk on a re-registration: every device the account had (the old primary and its linked
  // devices), revoked now; the caller pushes a Revocation(account, device, issued_before =
  // now) for each to the dataplane.
  std::vector<uint32_t> revoked_device_ids;
  uint32_t attempts_left = 0;  // kInvalidCode
  PhoneError phone_error = PhoneError::kOk;
};

struct SessionResult {
  RegistrationError error = RegistrationError::kOk;
  TokenBytes token{};  // kOk; token_text() for JSON
  TokenClaims claims;  // kOk
};

class Registrar {
 public:
  // `node_secret` keys the code HMAC (verification_code.h): at least 32 random bytes kept
  // outside the store. `store` and `gateway` must outlive the Registrar.
  Registrar(const RegistrarOptions& options, RegistrationStore& store, CodeGateway& gateway,
            std::span<const uint8_t> node_secret);

  RequestCodeResult request_code(std::string_view phone, CodeMethod method,
                                 const SourceAddress& source, uint64_t now_ms);
  VerifyResult verify(std::string_view phone, std::string_view code, std::string_view device_name,
                      uint64_t now_ms);
  SessionResult create_session(std::string_view credential, const KeyRing& ring, uint64_t now_ms);
  // A verify without a code, for the admin's provisioning (accounts for load generators and
  // tests): the same commit as a successful verify (a new account, or a re-registration that
  // revokes the old primary), the same errors save the code's, and no rate limit (the caller
  // holds the admin scope). A pending code of the phone is consumed like a verify's.
  VerifyResult provision(std::string_view phone, std::string_view device_name, uint64_t now_ms);

  // A committed config revision: the code TTL and verify attempts apply to codes issued from
  // now on (a pending code keeps the expiry it was stored with; a code past the new attempt
  // limit is burnt at its next guess), and both limiters take the new rules at once. The rate
  // tables' capacities are restart fields and stay as built. InvalidArgument, changing
  // nothing, for rules a limiter refuses.
  absl::Status update_options(const RegistrarOptions& options);
  const RegistrarOptions& options() const { return options_; }

  // Outcomes by error code since construction (index = RegistrationError), for the counters.
  const std::array<uint64_t, static_cast<size_t>(RegistrationError::kCount)>& outcomes() const {
    return outcomes_;
  }
  uint64_t table_full_refusals() const { return table_full_refusals_; }

  // Test hook: replaces the CSPRNG for codes (nullptr restores it).
  void set_code_source_for_test(CodeText (*source)()) { code_source_ = source; }

 private:
  RegistrationError count(RegistrationError error) {
    ++outcomes_[static_cast<size_t>(error)];
    return error;
  }

  VerifyResult commit_primary_device(PhoneNumber phone, std::string_view device_name,
                                     uint64_t now_ms);

  RegistrarOptions options_;
  RegistrationStore& store_;
  CodeGateway& gateway_;
  CodeHasher hasher_;
  RateLimiter phone_limiter_;
  RateLimiter address_limiter_;
  CodeText (*code_source_)() = nullptr;
  std::array<uint64_t, static_cast<size_t>(RegistrationError::kCount)> outcomes_{};
  uint64_t table_full_refusals_ = 0;
};

}  // namespace herald::registration

// What the dataplane runs on every login: checks a session token's format, key, MAC, times and
// revocation. No heap, no exceptions, no locks: one verifier per worker, fed by IPC pushes.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "platform/auth/crypto.h"
#include "platform/auth/key_ring.h"
#include "platform/auth/revocation_set.h"
#include "platform/auth/session_token.h"

namespace herald::auth {

// Stable reasons (token_error_name); the wire's AuthErrorCode is coarser: kUnknownKey ->
// UnknownKey, kExpired -> Expired, kRevoked -> Revoked, everything else -> InvalidToken.
enum class TokenError : uint8_t {
  kOk = 0,
  kMalformed,  // wrong size
  kBadVersion,
  kUnknownKey,  // key id not held, or past its not_after
  kBadMac,
  kBadLifetime,  // expires_at <= issued_at, or longer than max_token_ttl_ms
  kNotYetValid,  // issued_at beyond now + skew
  kExpired,
  kRevoked,
};
std::string_view token_error_name(TokenError error);

struct TokenCheck {
  TokenError error = TokenError::kOk;
  TokenClaims claims;  // meaningful only when error == kOk
  bool ok() const { return error == TokenError::kOk; }
};

struct TokenVerifierOptions {
  // Leeway for clocks that disagree (today both planes share one clock; a cluster will not).
  uint64_t max_clock_skew_ms = 30'000;
  // No token may live longer, whatever its MAC says: bounds the damage of a signing bug and
  // sets how long revocations are kept. At least the issuer's KeyRingOptions::token_ttl_ms.
  uint64_t max_token_ttl_ms = 3'600'000;
  uint32_t revocation_capacity = 65'536;
};

class TokenVerifier {
 public:
  explicit TokenVerifier(const TokenVerifierOptions& options);
  TokenVerifier(const TokenVerifierOptions& options, std::array<uint64_t, 2> hash_key);

  // From a SessionKeyPush: adds the key, or replaces the one with the same id (a retirement
  // sets its not_after). Drops keys past not_after first. False if kMaxSessionKeys live keys
  // are already held (the control plane never pushes more).
  [[nodiscard]] bool install_key(const SessionKey& key, uint64_t now_ms);
  size_t forget_expired_keys(uint64_t now_ms);
  size_t key_count() const;

  // From a RevocationPush entry (device = RevocationSet::kAllDevices for the whole account).
  RevocationSet::Added revoke(const AccountId& account, uint32_t device, uint64_t issued_before_ms,
                              uint64_t now_ms) {
    return revocations_.revoke(account, device, issued_before_ms, now_ms);
  }
  RevocationSet& revocations() { return revocations_; }

  // Checks in this order, so nothing unauthenticated is acted upon: size, version, key id,
  // MAC (constant time), lifetime, issued_at <= now + skew, now < expires_at + skew, revoked.
  [[nodiscard]] TokenCheck verify(std::span<const uint8_t> token, uint64_t now_ms) const;

 private:
  struct HeldKey {
    uint32_t key_id = 0;
    bool used = false;
    uint64_t not_after_ms = 0;
    HmacSha256 hmac;
  };
  TokenVerifierOptions options_;
  std::array<HeldKey, kMaxSessionKeys> keys_{};
  RevocationSet revocations_;
};

}  // namespace herald::auth

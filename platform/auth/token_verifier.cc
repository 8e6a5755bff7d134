// Session token verification (see token_verifier.h).
#include "platform/auth/token_verifier.h"

namespace herald::auth {

std::string_view token_error_name(TokenError error) {
  switch (error) {
    case TokenError::kOk: return "ok";
    case TokenError::kMalformed: return "malformed";
    case TokenError::kBadVersion: return "bad_version";
    case TokenError::kUnknownKey: return "unknown_key";
    case TokenError::kBadMac: return "bad_mac";
    case TokenError::kBadLifetime: return "bad_lifetime";
    case TokenError::kNotYetValid: return "not_yet_valid";
    case TokenError::kExpired: return "expired";
    case TokenError::kRevoked: return "revoked";
  }
  return "unknown";
}

TokenVerifier::TokenVerifier(const TokenVerifierOptions& options)
    : TokenVerifier(options, {random_u64(), random_u64()}) {}

TokenVerifier::TokenVerifier(const TokenVerifierOptions& options, std::array<uint64_t, 2> hash_key)
    : options_(options),
      revocations_(options.revocation_capacity,
                   options.max_token_ttl_ms + options.max_clock_skew_ms, hash_key) {}

size_t TokenVerifier::forget_expired_keys(uint64_t now_ms) {
  size_t n = 0;
  for (HeldKey& k : keys_) {
    if (k.used && k.not_after_ms < now_ms) {
      k = HeldKey{};
      ++n;
    }
  }
  return n;
}

size_t TokenVerifier::key_count() const {
  size_t n = 0;
  for (const HeldKey& k : keys_) n += k.used ? 1 : 0;
  return n;
}

bool TokenVerifier::install_key(const SessionKey& key, uint64_t now_ms) {
  forget_expired_keys(now_ms);
  HeldKey* slot = nullptr;
  for (HeldKey& k : keys_) {
    if (k.used && k.key_id == key.key_id) {
      slot = &k;
      break;
    }
    if (!k.used && slot == nullptr) slot = &k;
  }
  if (slot == nullptr) return false;
  slot->key_id = key.key_id;
  slot->used = true;
  slot->not_after_ms = key.not_after_ms;
  slot->hmac = HmacSha256(key.key);
  return true;
}

TokenCheck TokenVerifier::verify(std::span<const uint8_t> token, uint64_t now_ms) const {
  TokenCheck result;
  if (token.size() != kTokenBytes) {
    result.error = TokenError::kMalformed;
    return result;
  }
  if (token[0] != kTokenVersion) {
    result.error = TokenError::kBadVersion;
    return result;
  }
  std::span<const uint8_t, kTokenBytes> fixed(token.data(), kTokenBytes);
  TokenClaims claims = read_claims(fixed);
  const HeldKey* key = nullptr;
  for (const HeldKey& k : keys_) {
    if (k.used && k.key_id == claims.key_id) key = &k;
  }
  if (key == nullptr || key->not_after_ms < now_ms) {
    result.error = TokenError::kUnknownKey;
    return result;
  }
  Digest mac = key->hmac.mac(token.first(kTokenClaimsBytes));
  if (!constant_time_equal(mac, token.subspan(kTokenClaimsBytes))) {
    result.error = TokenError::kBadMac;
    return result;
  }
  if (claims.expires_at_ms <= claims.issued_at_ms ||
      claims.expires_at_ms - claims.issued_at_ms > options_.max_token_ttl_ms) {
    result.error = TokenError::kBadLifetime;
    return result;
  }
  // Written as differences so no field value can overflow a sum.
  if (claims.issued_at_ms > now_ms && claims.issued_at_ms - now_ms > options_.max_clock_skew_ms) {
    result.error = TokenError::kNotYetValid;
    return result;
  }
  if (now_ms >= claims.expires_at_ms &&
      now_ms - claims.expires_at_ms >= options_.max_clock_skew_ms) {
    result.error = TokenError::kExpired;
    return result;
  }
  if (revocations_.is_revoked(claims.account, claims.device_id, claims.issued_at_ms)) {
    result.error = TokenError::kRevoked;
    return result;
  }
  result.claims = claims;
  return result;
}

}  // namespace herald::auth

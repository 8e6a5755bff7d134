// Session tokens for the dataplane: a fixed 73-byte binary token (base64url in the HTTP API),
// HMAC-SHA256 over its claims with a key from the rotating key ring.
//
// Layout (little-endian):
//   0  u8   version (1)
//   1  u32  key_id
//   5  u64  account.hi       13 u64 account.lo
//   21 u32  device_id
//   25 u64  issued_at_ms     (unix time)
//   33 u64  expires_at_ms    (unix time)
//   41 [32] HMAC-SHA256(key[key_id], bytes 0..40)
// No nonce: a token is a bearer capability, nothing is keyed by token identity, and two tokens
// for one device minted in the same millisecond being equal is harmless.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "platform/auth/account_id.h"

namespace herald::auth {

class KeyRing;

inline constexpr uint8_t kTokenVersion = 1;
inline constexpr size_t kTokenClaimsBytes = 41;
inline constexpr size_t kTokenBytes = kTokenClaimsBytes + 32;
using TokenBytes = std::array<uint8_t, kTokenBytes>;

struct TokenClaims {
  uint32_t key_id = 0;
  AccountId account;
  uint32_t device_id = 0;
  uint64_t issued_at_ms = 0;
  uint64_t expires_at_ms = 0;
};

// Signs a token for `device_id` of `account` with the ring's signing key, valid for the ring's
// token_ttl_ms from `now_ms`.
TokenBytes issue_token(const KeyRing& ring, const AccountId& account, uint32_t device_id,
                       uint64_t now_ms);

// Unauthenticated field access for the verifier and tests: reads the claims of a token of the
// right size, without checking anything.
TokenClaims read_claims(std::span<const uint8_t, kTokenBytes> token);

std::string token_text(const TokenBytes& token);
// nullopt unless `text` is the canonical base64url of exactly kTokenBytes bytes.
std::optional<TokenBytes> parse_token_text(std::string_view text);

}  // namespace herald::auth

// Session token encoding and signing (see session_token.h).
#include "platform/auth/session_token.h"

#include <cstring>

#include "platform/auth/crypto.h"
#include "platform/auth/key_ring.h"

namespace herald::auth {
namespace {

void store_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void store_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t load_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t load_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

TokenBytes issue_token(const KeyRing& ring, const AccountId& account, uint32_t device_id,
                       uint64_t now_ms) {
  TokenBytes token{};
  uint8_t* p = token.data();
  p[0] = kTokenVersion;
  store_u32(p + 1, ring.signing_key().key_id);
  store_u64(p + 5, account.hi);
  store_u64(p + 13, account.lo);
  store_u32(p + 21, device_id);
  store_u64(p + 25, now_ms);
  store_u64(p + 33, now_ms + ring.options().token_ttl_ms);
  Digest mac = ring.signing_hmac().mac(std::span<const uint8_t>(p, kTokenClaimsBytes));
  std::memcpy(p + kTokenClaimsBytes, mac.data(), mac.size());
  return token;
}

TokenClaims read_claims(std::span<const uint8_t, kTokenBytes> token) {
  const uint8_t* p = token.data();
  TokenClaims c;
  c.key_id = load_u32(p + 1);
  c.account.hi = load_u64(p + 5);
  c.account.lo = load_u64(p + 13);
  c.device_id = load_u32(p + 21);
  c.issued_at_ms = load_u64(p + 25);
  c.expires_at_ms = load_u64(p + 33);
  return c;
}

std::string token_text(const TokenBytes& token) {
  return base64url_encode(token);
}

std::optional<TokenBytes> parse_token_text(std::string_view text) {
  TokenBytes token;
  if (!base64url_decode(text, token)) return std::nullopt;
  return token;
}

}  // namespace herald::auth

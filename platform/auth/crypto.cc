// BoringSSL-backed primitives for registration and session tokens (see crypto.h).
#include "platform/auth/crypto.h"

#include <openssl/base.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <cstring>

#ifndef OPENSSL_IS_BORINGSSL
#error "registration must be built against BoringSSL (boringssl_dep), not the system OpenSSL"
#endif

namespace herald::auth {

void random_bytes(std::span<uint8_t> out) {
  RAND_bytes(out.data(), out.size());
}

uint64_t random_u64() {
  uint64_t value;
  RAND_bytes(reinterpret_cast<uint8_t*>(&value), sizeof value);
  return value;
}

Digest sha256(std::span<const uint8_t> data) {
  Digest out;
  SHA256(data.data(), data.size(), out.data());
  return out;
}

bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

HmacSha256::HmacSha256(std::span<const uint8_t> key) {
  // RFC 2104 §2: keys longer than the block are hashed first; shorter ones are zero-padded.
  uint8_t block[SHA256_CBLOCK] = {};
  if (key.size() > SHA256_CBLOCK) {
    SHA256(key.data(), key.size(), block);
  } else if (!key.empty()) {
    std::memcpy(block, key.data(), key.size());
  }
  uint8_t pad[SHA256_CBLOCK];
  for (size_t i = 0; i < SHA256_CBLOCK; ++i) pad[i] = block[i] ^ 0x36;
  SHA256_Init(&inner_);
  SHA256_Update(&inner_, pad, sizeof pad);
  for (size_t i = 0; i < SHA256_CBLOCK; ++i) pad[i] = block[i] ^ 0x5c;
  SHA256_Init(&outer_);
  SHA256_Update(&outer_, pad, sizeof pad);
  OPENSSL_cleanse(block, sizeof block);
  OPENSSL_cleanse(pad, sizeof pad);
}

Digest HmacSha256::mac(std::span<const uint8_t> message) const {
  return mac(message, {});
}

Digest HmacSha256::mac(std::span<const uint8_t> a, std::span<const uint8_t> b) const {
  SHA256_CTX ctx = inner_;
  SHA256_Update(&ctx, a.data(), a.size());
  SHA256_Update(&ctx, b.data(), b.size());
  Digest inner_digest;
  SHA256_Final(inner_digest.data(), &ctx);
  ctx = outer_;
  SHA256_Update(&ctx, inner_digest.data(), inner_digest.size());
  Digest out;
  SHA256_Final(out.data(), &ctx);
  return out;
}

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// 0..63, or 0xff for a character outside the URL-safe alphabet.
constexpr std::array<uint8_t, 256> make_decode_table() {
  std::array<uint8_t, 256> table{};
  for (auto& v : table) v = 0xff;
  for (uint8_t i = 0; i < 64; ++i) table[static_cast<uint8_t>(kAlphabet[i])] = i;
  return table;
}
constexpr std::array<uint8_t, 256> kDecode = make_decode_table();

}  // namespace

std::string base64url_encode(std::span<const uint8_t> data) {
  std::string out;
  out.reserve(base64url_encoded_size(data.size()));
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{data[i]} << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

bool base64url_decode(std::string_view text, std::span<uint8_t> out) {
  if (text.size() != base64url_encoded_size(out.size())) return false;
  size_t o = 0;
  size_t i = 0;
  for (; i + 4 <= text.size(); i += 4) {
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      uint8_t d = kDecode[static_cast<uint8_t>(text[i + k])];
      if (d == 0xff) return false;
      v = (v << 6) | d;
    }
    out[o++] = static_cast<uint8_t>(v >> 16);
    out[o++] = static_cast<uint8_t>(v >> 8);
    out[o++] = static_cast<uint8_t>(v);
  }
  size_t rest = text.size() - i;  // 0, 2 or 3 (1 is impossible given the size check)
  if (rest == 0) return true;
  uint32_t v = 0;
  for (size_t k = 0; k < rest; ++k) {
    uint8_t d = kDecode[static_cast<uint8_t>(text[i + k])];
    if (d == 0xff) return false;
    v = (v << 6) | d;
  }
  if (rest == 2) {
    if ((v & 0xf) != 0) return false;  // 4 unused bits must be zero
    out[o++] = static_cast<uint8_t>(v >> 4);
  } else {
    if ((v & 0x3) != 0) return false;  // 2 unused bits must be zero
    out[o++] = static_cast<uint8_t>(v >> 10);
    out[o++] = static_cast<uint8_t>(v >> 2);
  }
  return true;
}

}  // namespace herald::auth

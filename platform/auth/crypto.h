// The few cryptographic primitives registration and session tokens need, over BoringSSL:
// randomness, SHA-256, HMAC-SHA256 with precomputed key state, constant-time compare, base64url.
#pragma once

#include <openssl/sha.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace herald::auth {

inline constexpr size_t kDigestBytes = 32;
using Digest = std::array<uint8_t, kDigestBytes>;

// Fills `out` from BoringSSL's CSPRNG (RAND_bytes). BoringSSL aborts the process itself if the
// kernel's entropy source fails, so there is no error to return.
void random_bytes(std::span<uint8_t> out);
uint64_t random_u64();

Digest sha256(std::span<const uint8_t> data);
inline Digest sha256(std::string_view data) {
  return sha256(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

// CRYPTO_memcmp: time depends only on the lengths, which are public here (fixed-size digests).
[[nodiscard]] bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b);

// HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once, so a MAC over a
// short message costs two SHA-256 compressions and never touches the heap (BoringSSL's HMAC()
// goes through EVP_MD_CTX, which may allocate). The dataplane runs this once per login.
class HmacSha256 {
 public:
  HmacSha256() = default;  // all-zero key; only for default-constructed arrays
  explicit HmacSha256(std::span<const uint8_t> key);

  [[nodiscard]] Digest mac(std::span<const uint8_t> message) const;
  // MAC over the concatenation a || b, without copying them together.
  [[nodiscard]] Digest mac(std::span<const uint8_t> a, std::span<const uint8_t> b) const;

 private:
  SHA256_CTX inner_{};
  SHA256_CTX outer_{};
};

// base64url without padding (RFC 4648 §5, §3.2).
std::string base64url_encode(std::span<const uint8_t> data);
inline constexpr size_t base64url_encoded_size(size_t bytes) {
  return (bytes * 4 + 2) / 3;
}
// Strict decoder: exactly `out.size()` bytes must come out, only the URL-safe alphabet, no
// padding, and the unused low bits of the last character must be zero, so every byte string
// has exactly one accepted text (no malleable encodings). False on any violation.
[[nodiscard]] bool base64url_decode(std::string_view text, std::span<uint8_t> out);

}  // namespace herald::auth

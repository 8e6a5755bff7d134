// Registration verification codes: six uniformly random digits, kept only as an HMAC under the
// node's secret.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/phone_number.h"

namespace herald::registration {

inline constexpr size_t kCodeDigits = 6;
inline constexpr uint32_t kCodeSpace = 1'000'000;  // 10^kCodeDigits
using CodeText = std::array<char, kCodeDigits>;

// Rejection sampling: a 32-bit sample maps to sample % 10^6 only when it is below the largest
// multiple of 10^6 that fits in 32 bits (4,294,000,000); otherwise nullopt and the caller draws
// again. Plain `% 10^6` would favour codes below 967,296 by 1 part in 4,294.
inline constexpr uint32_t kCodeSampleLimit = (UINT32_MAX / kCodeSpace) * kCodeSpace;
constexpr std::optional<uint32_t> code_from_sample(uint32_t sample) {
  if (sample >= kCodeSampleLimit) return std::nullopt;
  return sample % kCodeSpace;
}

// A fresh code from the CSPRNG (expected 1.0002 draws).
CodeText generate_code();
// Zero-padded decimal.
CodeText code_text(uint32_t value);

// Exactly kCodeDigits ASCII digits.
bool is_well_formed_code(std::string_view code);

// Codes are stored as HMAC-SHA256(node_secret, phone || code), not as a salted SHA-256: with
// only 10^6 possible codes, anyone holding a copy of the store could try them all against a
// salted hash in a millisecond; the HMAC needs the node secret too, which lives outside the
// store. Binding the phone number stops a hash from one number verifying another's code.
class CodeHasher {
 public:
  explicit CodeHasher(std::span<const uint8_t> node_secret) : hmac_(node_secret) {}
  Digest hash(PhoneNumber phone, std::string_view code) const;

 private:
  HmacSha256 hmac_;
};

}  // namespace herald::registration

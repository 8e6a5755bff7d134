// Verification code generation and hashing (see verification_code.h).
#include "controlplane/registration/verification_code.h"

#include <cstring>

namespace herald::registration {

CodeText code_text(uint32_t value) {
  CodeText text;
  for (size_t i = kCodeDigits; i > 0; --i) {
    text[i - 1] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  return text;
}

CodeText generate_code() {
  for (;;) {
    uint32_t sample;
    random_bytes(std::span(reinterpret_cast<uint8_t*>(&sample), sizeof sample));
    if (auto value = code_from_sample(sample)) return code_text(*value);
  }
}

bool is_well_formed_code(std::string_view code) {
  if (code.size() != kCodeDigits) return false;
  for (char c : code) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

Digest CodeHasher::hash(PhoneNumber phone, std::string_view code) const {
  uint8_t phone_bytes[8];
  uint64_t v = phone.value();
  std::memcpy(phone_bytes, &v, sizeof phone_bytes);  // little-endian on every supported host
  return hmac_.mac(phone_bytes,
                   std::span(reinterpret_cast<const uint8_t*>(code.data()), code.size()));
}

}  // namespace herald::registration

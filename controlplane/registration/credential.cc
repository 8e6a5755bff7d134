// Device credential issue and hashing (see credential.h).
#include "controlplane/registration/credential.h"

#include <openssl/mem.h>

#include <array>

namespace herald::registration {

IssuedCredential issue_credential() {
  std::array<uint8_t, kCredentialBytes> secret;
  random_bytes(secret);
  IssuedCredential out{base64url_encode(secret), sha256(std::span<const uint8_t>(secret))};
  OPENSSL_cleanse(secret.data(), secret.size());
  return out;
}

std::optional<Digest> credential_hash(std::string_view text) {
  std::array<uint8_t, kCredentialBytes> secret;
  if (!base64url_decode(text, secret)) return std::nullopt;
  Digest hash = sha256(std::span<const uint8_t>(secret));
  OPENSSL_cleanse(secret.data(), secret.size());
  return hash;
}

}  // namespace herald::registration

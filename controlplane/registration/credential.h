// Device credentials: 256 random bits handed to the device once (base64url), stored only as
// their SHA-256.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "controlplane/registration/auth_names.h"

namespace herald::registration {

inline constexpr size_t kCredentialBytes = 32;
inline constexpr size_t kCredentialTextBytes = base64url_encoded_size(kCredentialBytes);  // 43

struct IssuedCredential {
  std::string text;  // returned to the device once, never stored
  Digest hash;       // what the store keeps and indexes
};

IssuedCredential issue_credential();

// The hash a presented credential is looked up by; nullopt if the text is not a well-formed
// credential. A plain SHA-256 is enough (no salt, no slow hash): the input has 256 bits of
// entropy, so there is nothing to brute-force, and the hash can be an exact-match index.
std::optional<Digest> credential_hash(std::string_view text);

}  // namespace herald::registration

// Conversions between the registration types and their IPC records (see ipc_records.h).
#include "controlplane/registration/ipc_records.h"

#include <algorithm>

namespace herald::registration {

flatbuffers::Offset<ipc::SessionKeyPush> build_session_key_push(
    flatbuffers::FlatBufferBuilder& builder, const SessionKey& key) {
  auto bytes = builder.CreateVector(key.key.data(), key.key.size());
  return ipc::CreateSessionKeyPush(builder, key.key_id, bytes, key.not_before_ms, key.not_after_ms);
}

std::optional<SessionKey> session_key_from_push(const ipc::SessionKeyPush& push) {
  const flatbuffers::Vector<uint8_t>* bytes = push.key();
  if (bytes == nullptr || bytes->size() != kSessionKeyBytes || push.key_id() == 0) {
    return std::nullopt;
  }
  SessionKey key;
  key.key_id = push.key_id();
  std::copy(bytes->begin(), bytes->end(), key.key.begin());
  key.not_before_ms = push.not_before_ms();
  key.not_after_ms = push.not_after_ms();
  return key;
}

wire::AuthErrorCode auth_error_code(TokenError error) {
  switch (error) {
    case TokenError::kOk: return wire::AuthErrorCode::Unspecified;
    case TokenError::kUnknownKey: return wire::AuthErrorCode::UnknownKey;
    case TokenError::kExpired: return wire::AuthErrorCode::Expired;
    case TokenError::kRevoked: return wire::AuthErrorCode::Revoked;
    case TokenError::kMalformed:
    case TokenError::kBadVersion:
    case TokenError::kBadMac:
    case TokenError::kBadLifetime:
    case TokenError::kNotYetValid: return wire::AuthErrorCode::InvalidToken;
  }
  return wire::AuthErrorCode::InvalidToken;
}

flatbuffers::Offset<ipc::Revocation> build_revocation(flatbuffers::FlatBufferBuilder& builder,
                                                      const AccountId& account,
                                                      std::optional<uint32_t> device,
                                                      uint64_t issued_before_ms) {
  wire::AccountId id(account.hi, account.lo);
  flatbuffers::Optional<uint32_t> dev = flatbuffers::nullopt;
  if (device) dev = *device;
  return ipc::CreateRevocation(builder, &id, dev, issued_before_ms);
}

size_t apply_revocation_push(const ipc::RevocationPush& push, TokenVerifier& verifier,
                             uint64_t now_ms) {
  const auto* list = push.revocations();
  if (list == nullptr) return 0;
  size_t applied = 0;
  for (const ipc::Revocation* r : *list) {
    if (r == nullptr || r->account() == nullptr) continue;
    AccountId account{r->account()->hi(), r->account()->lo()};
    flatbuffers::Optional<uint32_t> device = r->device();
    uint32_t dev = device.has_value() ? device.value() : RevocationSet::kAllDevices;
    (void)verifier.revoke(account, dev, r->issued_before_ms(), now_ms);
    ++applied;
  }
  return applied;
}

}  // namespace herald::registration

// Session keys and revocations as the IPC records the control plane pushes to the dataplane
// (schemas/ipc.fbs SessionKeyPush, Revocation, RevocationPush), in both directions.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstdint>
#include <optional>

#include "controlplane/registration/auth_names.h"
#include "schemas/ipc_generated.h"

namespace herald::registration {

// CP side: one SessionKeyPush per key in KeyRing::keys() (after every rotate()).
flatbuffers::Offset<ipc::SessionKeyPush> build_session_key_push(
    flatbuffers::FlatBufferBuilder& builder, const SessionKey& key);
// DP side, on a verified record: nullopt unless the key is exactly 32 bytes and its id is not 0.
std::optional<SessionKey> session_key_from_push(const ipc::SessionKeyPush& push);

// The client-facing AuthError code for a failed verify (kOk maps to Unspecified). The finer
// TokenError stays in logs and counters; the client only needs to know what to do next.
wire::AuthErrorCode auth_error_code(TokenError error);

// CP side: device = nullopt revokes every device of the account.
flatbuffers::Offset<ipc::Revocation> build_revocation(flatbuffers::FlatBufferBuilder& builder,
                                                      const AccountId& account,
                                                      std::optional<uint32_t> device,
                                                      uint64_t issued_before_ms);
// DP side: applies every well-formed entry; returns how many (entries without an account are
// skipped).
size_t apply_revocation_push(const ipc::RevocationPush& push, TokenVerifier& verifier,
                             uint64_t now_ms);

}  // namespace herald::registration

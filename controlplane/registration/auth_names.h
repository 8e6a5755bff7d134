// The session-token vocabulary (platform/auth, shared with the dataplane) under the names the
// registration module has always used: it issues what platform/auth defines.
#pragma once

#include "platform/auth/account_id.h"
#include "platform/auth/crypto.h"
#include "platform/auth/key_ring.h"
#include "platform/auth/revocation_set.h"
#include "platform/auth/session_token.h"
#include "platform/auth/token_verifier.h"

namespace herald::registration {

using auth::AccountId;
using auth::base64url_decode;
using auth::base64url_encode;
using auth::base64url_encoded_size;
using auth::constant_time_equal;
using auth::Digest;
using auth::format_account_id;
using auth::HmacSha256;
using auth::issue_token;
using auth::kDigestBytes;
using auth::KeyRing;
using auth::KeyRingOptions;
using auth::kMaxSessionKeys;
using auth::kNoExpiry;
using auth::kSessionKeyBytes;
using auth::kTokenBytes;
using auth::new_account_id;
using auth::parse_account_id;
using auth::parse_token_text;
using auth::random_bytes;
using auth::random_u64;
using auth::read_claims;
using auth::RevocationSet;
using auth::SessionKey;
using auth::sha256;
using auth::token_error_name;
using auth::token_text;
using auth::TokenBytes;
using auth::TokenCheck;
using auth::TokenClaims;
using auth::TokenError;
using auth::TokenVerifier;
using auth::TokenVerifierOptions;

}  // namespace herald::registration

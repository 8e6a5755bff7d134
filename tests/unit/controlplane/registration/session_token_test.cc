// Tests for session tokens: round trip, every byte flipped, expiry and skew edges, key ids,
// rotation and retirement, revocations (including the full-set floor), key-ring persistence and
// the IPC records that carry keys and revocations to the dataplane.
#include <gtest/gtest.h>

#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/ipc_records.h"

namespace herald::registration {
namespace {

constexpr uint64_t kT0 = 1'800'000'000'000;  // unix ms, 2027
constexpr uint64_t kTtl = 3'600'000;
constexpr uint64_t kSkew = 30'000;
constexpr AccountId kAccount{0x1111222233334444, 0x5555666677778888};
constexpr std::array<uint64_t, 2> kSeed = {3, 4};

KeyRingOptions ring_options() {
  return {kTtl, kSkew};
}
TokenVerifierOptions verifier_options(uint32_t revocations = 1024) {
  return {kSkew, kTtl, revocations};
}

// A verifier holding every key of `ring`, as after the IPC pushes.
TokenVerifier verifier_for(const KeyRing& ring, uint64_t now_ms) {
  TokenVerifier v(verifier_options(), kSeed);
  for (const SessionKey& k : ring.keys()) EXPECT_TRUE(v.install_key(k, now_ms));
  return v;
}

TEST(SessionTokenTest, RoundTrip) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  TokenBytes token = issue_token(ring, kAccount, 7, kT0);
  TokenVerifier v = verifier_for(ring, kT0);
  TokenCheck c = v.verify(token, kT0);
  ASSERT_TRUE(c.ok()) << token_error_name(c.error);
  EXPECT_EQ(c.claims.account, kAccount);
  EXPECT_EQ(c.claims.device_id, 7u);
  EXPECT_EQ(c.claims.key_id, ring.signing_key().key_id);
  EXPECT_EQ(c.claims.issued_at_ms, kT0);
  EXPECT_EQ(c.claims.expires_at_ms, kT0 + kTtl);

  std::string text = token_text(token);
  EXPECT_EQ(text.size(), 98u);
  auto parsed = parse_token_text(text);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, token);
  EXPECT_FALSE(parse_token_text(text.substr(1)));
}

TEST(SessionTokenTest, EveryFlippedBitIsRejected) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  TokenVerifier v = verifier_for(ring, kT0);
  TokenBytes token = issue_token(ring, kAccount, 1, kT0);
  for (size_t i = 0; i < token.size(); ++i) {
    for (uint8_t bit = 1; bit != 0; bit = static_cast<uint8_t>(bit << 1)) {
      TokenBytes bad = token;
      bad[i] ^= bit;
      TokenCheck c = v.verify(bad, kT0);
      EXPECT_FALSE(c.ok()) << "byte " << i << " bit " << int(bit);
      if (i == 0) {
        EXPECT_EQ(c.error, TokenError::kBadVersion);
      } else if (i < 5) {
        // A flipped key id names no key, or another key of the ring (the staged one is id + 1),
        // whose MAC then fails.
        EXPECT_TRUE(c.error == TokenError::kUnknownKey || c.error == TokenError::kBadMac) << i;
      } else {
        EXPECT_EQ(c.error, TokenError::kBadMac) << "byte " << i;
      }
    }
  }
  EXPECT_EQ(v.verify(std::span(token).first(kTokenBytes - 1), kT0).error, TokenError::kMalformed);
  std::vector<uint8_t> longer(token.begin(), token.end());
  longer.push_back(0);
  EXPECT_EQ(v.verify(longer, kT0).error, TokenError::kMalformed);
}

TEST(SessionTokenTest, ExpiryAndSkewEdges) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  TokenVerifier v = verifier_for(ring, kT0);
  TokenBytes token = issue_token(ring, kAccount, 1, kT0);
  const uint64_t expires = kT0 + kTtl;
  EXPECT_TRUE(v.verify(token, expires - 1).ok());
  EXPECT_TRUE(v.verify(token, expires + kSkew - 1).ok());  // within the skew leeway
  EXPECT_EQ(v.verify(token, expires + kSkew).error, TokenError::kExpired);
  // A token from a clock ahead by at most the skew is fine; further ahead is not.
  EXPECT_TRUE(v.verify(token, kT0 - kSkew).ok());
  EXPECT_EQ(v.verify(token, kT0 - kSkew - 1).error, TokenError::kNotYetValid);
}

TEST(SessionTokenTest, LifetimeLongerThanTheVerifierAllowsIsRejected) {
  KeyRing ring = KeyRing::create({kTtl * 2, kSkew}, kT0);  // a misconfigured issuer
  TokenVerifier v = verifier_for(ring, kT0);
  EXPECT_EQ(v.verify(issue_token(ring, kAccount, 1, kT0), kT0).error, TokenError::kBadLifetime);
}

TEST(SessionTokenTest, UnknownKeyId) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  KeyRing other = KeyRing::create(ring_options(), kT0);
  TokenVerifier v = verifier_for(ring, kT0);
  TokenBytes token = issue_token(other, kAccount, 1, kT0);
  if (other.signing_key().key_id == ring.signing_key().key_id ||
      other.signing_key().key_id == ring.staged_key().key_id) {
    GTEST_SKIP() << "random key ids collided (p ~ 2^-31)";
  }
  EXPECT_EQ(v.verify(token, kT0).error, TokenError::kUnknownKey);
  TokenVerifier empty(verifier_options(), kSeed);
  EXPECT_EQ(empty.verify(issue_token(ring, kAccount, 1, kT0), kT0).error, TokenError::kUnknownKey);
}

TEST(KeyRingTest, RotatedKeyVerifiesUntilRetired) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  const uint32_t first = ring.signing_key().key_id;
  const uint32_t staged = ring.staged_key().key_id;
  TokenBytes old_token = issue_token(ring, kAccount, 1, kT0);

  const uint64_t t1 = kT0 + 600'000;
  ASSERT_TRUE(ring.rotate(t1).ok());
  // The staged key (already published) now signs; the old one verifies for ttl + skew more.
  EXPECT_EQ(ring.signing_key().key_id, staged);
  EXPECT_NE(ring.staged_key().key_id, staged);
  EXPECT_EQ(ring.keys().size(), 3u);
  TokenBytes new_token = issue_token(ring, kAccount, 1, t1);
  EXPECT_EQ(read_claims(new_token).key_id, staged);

  TokenVerifier v = verifier_for(ring, t1);
  EXPECT_TRUE(v.verify(old_token, t1).ok());
  EXPECT_TRUE(v.verify(new_token, t1).ok());

  const uint64_t retire_at = t1 + kTtl + kSkew;
  for (const SessionKey& k : ring.keys()) {
    if (k.key_id == first) {
      EXPECT_EQ(k.not_after_ms, retire_at);
    }
  }
  // A token signed with the old key just before rotation is still good to its end.
  TokenBytes last_old = old_token;
  EXPECT_TRUE(v.verify(last_old, kT0 + kTtl + kSkew - 1).ok());
  // Past not_after the key is gone, whatever the token says.
  EXPECT_EQ(ring.drop_expired(retire_at), 0u);
  EXPECT_EQ(ring.drop_expired(retire_at + 1), 1u);
  EXPECT_EQ(v.forget_expired_keys(retire_at + 1), 1u);
  EXPECT_EQ(v.verify(old_token, retire_at + 1).error, TokenError::kUnknownKey);
  EXPECT_TRUE(v.verify(issue_token(ring, kAccount, 1, retire_at + 1), retire_at + 1).ok());
}

TEST(KeyRingTest, RotationTooFastIsRefusedWithoutChange) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  uint64_t t = kT0;
  for (size_t i = 0; i < kMaxSessionKeys - 2; ++i) ASSERT_TRUE(ring.rotate(t += 1000).ok()) << i;
  EXPECT_EQ(ring.keys().size(), kMaxSessionKeys);
  uint32_t signer = ring.signing_key().key_id;
  absl::Status s = ring.rotate(t += 1000);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ring.signing_key().key_id, signer);
  // Once the oldest retired key is past its not_after, rotation works again.
  EXPECT_TRUE(ring.rotate(kT0 + 1000 + kTtl + kSkew + 1).ok());
}

// A shorter token lifetime at a config commit: new tokens carry it at once, but a key that
// retires while tokens issued under the old lifetime may live keeps verifying for the old
// lifetime (a live token is never cut short); once those tokens are gone, the new one rules.
TEST(KeyRingTest, ShorterTokenTtlNeverCutsALiveTokenShort) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  const uint64_t t_change = kT0 + 1000;
  const uint32_t old_key_id = ring.signing_key().key_id;
  const TokenBytes old_token = issue_token(ring, kAccount, 1, t_change - 1);
  ring.set_token_ttl(kTtl / 4, t_change);
  EXPECT_EQ(ring.options().token_ttl_ms, kTtl / 4);
  const TokenBytes new_token = issue_token(ring, kAccount, 1, t_change);
  TokenCheck c = verifier_for(ring, t_change).verify(new_token, t_change);
  ASSERT_TRUE(c.ok()) << token_error_name(c.error);
  EXPECT_EQ(c.claims.expires_at_ms, t_change + kTtl / 4);
  // The signing key retires just after the change: it must verify the old token to its end.
  ASSERT_TRUE(ring.rotate(t_change + 10).ok());
  const uint64_t old_expiry = t_change - 1 + kTtl;
  uint64_t old_not_after = 0;
  for (const SessionKey& k : ring.keys()) {
    if (k.key_id == old_key_id) old_not_after = k.not_after_ms;
  }
  EXPECT_EQ(old_not_after, t_change + 10 + kTtl + kSkew);
  c = verifier_for(ring, t_change + 10).verify(old_token, old_expiry - 1);
  EXPECT_TRUE(c.ok()) << token_error_name(c.error);
  // Once every old-lifetime token has expired, a retiring key gets the new lifetime only.
  const uint64_t later = t_change + kTtl + 1;
  const uint32_t retiring_id = ring.signing_key().key_id;
  ASSERT_TRUE(ring.rotate(later).ok());
  for (const SessionKey& k : ring.keys()) {
    if (k.key_id == retiring_id) {
      EXPECT_EQ(k.not_after_ms, later + kTtl / 4 + kSkew);
    }
  }
}

TEST(KeyRingTest, LongerTokenTtlRetiresKeysWithTheLongerLifetime) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  ring.set_token_ttl(kTtl * 2, kT0);
  const uint32_t retiring_id = ring.signing_key().key_id;
  ASSERT_TRUE(ring.rotate(kT0 + 1).ok());
  uint64_t retired_not_after = 0;
  for (const SessionKey& k : ring.keys()) {
    if (k.key_id == retiring_id) retired_not_after = k.not_after_ms;
  }
  EXPECT_EQ(retired_not_after, kT0 + 1 + kTtl * 2 + kSkew);
}

TEST(KeyRingTest, SerializeParseRoundTripAndCorruption) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  ASSERT_TRUE(ring.rotate(kT0 + 1000).ok());
  std::vector<uint8_t> bytes = ring.serialize();
  auto back = KeyRing::parse(bytes, ring_options());
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->keys().size(), ring.keys().size());
  for (size_t i = 0; i < ring.keys().size(); ++i) EXPECT_EQ(back->keys()[i], ring.keys()[i]);
  EXPECT_EQ(back->signing_key(), ring.signing_key());
  // The restored ring signs tokens the original's keys verify.
  TokenVerifier v = verifier_for(ring, kT0 + 1000);
  EXPECT_TRUE(v.verify(issue_token(*back, kAccount, 2, kT0 + 2000), kT0 + 2000).ok());

  for (size_t i = 0; i < bytes.size(); ++i) {
    std::vector<uint8_t> bad = bytes;
    bad[i] ^= 0x40;
    EXPECT_FALSE(KeyRing::parse(bad, ring_options()).ok()) << i;
  }
  EXPECT_FALSE(KeyRing::parse(std::span(bytes).first(bytes.size() - 1), ring_options()).ok());
  EXPECT_FALSE(KeyRing::parse({}, ring_options()).ok());
}

TEST(RevocationTest, DeviceRevokedAfterIssueIsRejected) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  TokenVerifier v = verifier_for(ring, kT0);
  TokenBytes dev1 = issue_token(ring, kAccount, 1, kT0);
  TokenBytes dev2 = issue_token(ring, kAccount, 2, kT0);
  EXPECT_EQ(v.revoke(kAccount, 1, kT0 + 1, kT0 + 1), RevocationSet::Added::kAdded);
  EXPECT_EQ(v.verify(dev1, kT0 + 2).error, TokenError::kRevoked);
  EXPECT_TRUE(v.verify(dev2, kT0 + 2).ok());
  // Issued in the same millisecond as the revocation: a new login, still valid.
  EXPECT_TRUE(v.verify(issue_token(ring, kAccount, 1, kT0 + 1), kT0 + 2).ok());
  // Revoking every device of the account.
  (void)v.revoke(kAccount, RevocationSet::kAllDevices, kT0 + 5, kT0 + 5);
  EXPECT_EQ(v.verify(dev2, kT0 + 6).error, TokenError::kRevoked);
  AccountId other{1, 2};
  EXPECT_TRUE(v.verify(issue_token(ring, other, 1, kT0), kT0 + 6).ok());
}

TEST(RevocationSetTest, PurgeAfterRetentionAndFloorWhenFull) {
  const uint64_t retention = kTtl + kSkew;
  RevocationSet set(4, retention, kSeed);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(set.revoke({i, i}, 0, kT0 + i, kT0), RevocationSet::Added::kAdded);
  }
  EXPECT_EQ(set.revoke({2, 2}, 0, kT0 + 100, kT0), RevocationSet::Added::kUpdated);
  EXPECT_TRUE(set.is_revoked({2, 2}, 0, kT0 + 99));
  // Full of live entries: the oldest (issued_before kT0) goes, and the floor takes its place,
  // so nothing that was revoked becomes valid.
  EXPECT_EQ(set.revoke({9, 9}, 0, kT0 + 50, kT0 + 10), RevocationSet::Added::kRaisedFloor);
  EXPECT_EQ(set.floor_ms(), kT0);
  EXPECT_EQ(set.size(), 4u);
  EXPECT_TRUE(set.is_revoked({0, 0}, 0, kT0 - 1));  // by the floor
  EXPECT_TRUE(set.is_revoked({7, 7}, 5, kT0 - 1));  // the floor applies to everyone
  EXPECT_FALSE(set.is_revoked({7, 7}, 5, kT0));
  EXPECT_TRUE(set.is_revoked({9, 9}, 0, kT0 + 49));
  EXPECT_TRUE(set.is_revoked({3, 3}, 0, kT0 + 2));
  EXPECT_FALSE(set.is_revoked({3, 3}, 0, kT0 + 3));
  // After the retention window every entry is dead weight and goes.
  EXPECT_EQ(set.purge(kT0 + 3 + retention), 1u);  // only {1,1}: issued_before + retention < now
  EXPECT_EQ(set.purge(kT0 + 200 + retention), 3u);
  EXPECT_EQ(set.size(), 0u);
}

TEST(RevocationSetTest, ManyInsertsAndPurgesKeepLookupsRight) {
  // Exercises backward-shift deletion across clusters and the wrap-around.
  RevocationSet set(256, 1000, kSeed);
  uint64_t now = 10'000;
  for (uint64_t round = 0; round < 50; ++round, now += 300) {
    for (uint64_t i = 0; i < 60; ++i) (void)set.revoke({round, i}, 0, now, now);
    (void)set.purge(now);
    for (uint64_t r = 0; r <= round; ++r) {
      bool alive = 10'000 + r * 300 + 1000 >= now;
      EXPECT_EQ(set.is_revoked({r, 17}, 0, 0), alive || set.floor_ms() > 0) << r;
    }
  }
  EXPECT_EQ(set.floor_ms(), 0u);
}

TEST(IpcRecordsTest, SessionKeyPushRoundTrip) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  ASSERT_TRUE(ring.rotate(kT0 + 1).ok());
  TokenVerifier v(verifier_options(), kSeed);
  for (const SessionKey& k : ring.keys()) {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(build_session_key_push(fbb, k));
    flatbuffers::Verifier verifier(fbb.GetBufferPointer(), fbb.GetSize());
    ASSERT_TRUE(verifier.VerifyBuffer<ipc::SessionKeyPush>(nullptr));
    auto* push = flatbuffers::GetRoot<ipc::SessionKeyPush>(fbb.GetBufferPointer());
    std::optional<SessionKey> back = session_key_from_push(*push);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, k);
    EXPECT_TRUE(v.install_key(*back, kT0 + 1));
  }
  EXPECT_TRUE(v.verify(issue_token(ring, kAccount, 3, kT0 + 2), kT0 + 2).ok());

  flatbuffers::FlatBufferBuilder fbb;
  std::vector<uint8_t> short_key(16, 1);
  fbb.Finish(ipc::CreateSessionKeyPush(fbb, 5, fbb.CreateVector(short_key), 0, kNoExpiry));
  EXPECT_FALSE(
      session_key_from_push(*flatbuffers::GetRoot<ipc::SessionKeyPush>(fbb.GetBufferPointer())));
}

TEST(IpcRecordsTest, RevocationPushAppliesToVerifier) {
  KeyRing ring = KeyRing::create(ring_options(), kT0);
  TokenVerifier v = verifier_for(ring, kT0);
  TokenBytes dev4 = issue_token(ring, kAccount, 4, kT0);
  TokenBytes other = issue_token(ring, {9, 9}, 1, kT0);
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<ipc::Revocation>> list = {
      build_revocation(fbb, kAccount, 4u, kT0 + 10),
      build_revocation(fbb, {9, 9}, std::nullopt, kT0 + 10),
  };
  fbb.Finish(ipc::CreateRevocationPush(fbb, fbb.CreateVector(list)));
  auto* push = flatbuffers::GetRoot<ipc::RevocationPush>(fbb.GetBufferPointer());
  EXPECT_EQ(apply_revocation_push(*push, v, kT0 + 10), 2u);
  EXPECT_EQ(v.verify(dev4, kT0 + 11).error, TokenError::kRevoked);
  EXPECT_EQ(auth_error_code(v.verify(dev4, kT0 + 11).error), wire::AuthErrorCode::Revoked);
  EXPECT_EQ(auth_error_code(TokenError::kBadMac), wire::AuthErrorCode::InvalidToken);
  EXPECT_EQ(v.verify(other, kT0 + 11).error, TokenError::kRevoked);
  EXPECT_TRUE(v.verify(issue_token(ring, kAccount, 5, kT0), kT0 + 11).ok());
}

}  // namespace
}  // namespace herald::registration

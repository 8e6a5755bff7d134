// The ring of HMAC keys that sign session tokens, owned by the control plane: the current key
// signs; a staged next key is already published so the dataplane holds it before it signs
// anything; retired keys keep verifying until every token they signed can have expired.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/auth/crypto.h"

namespace herald::auth {

inline constexpr size_t kSessionKeyBytes = 32;
// Current + next + up to 6 retired: rotation may run as often as every (ttl + skew) / 6.
inline constexpr size_t kMaxSessionKeys = 8;
inline constexpr uint64_t kNoExpiry = UINT64_MAX;

// One key, with exactly the fields of schemas/ipc.fbs SessionKeyPush.
struct SessionKey {
  uint32_t key_id = 0;
  std::array<uint8_t, kSessionKeyBytes> key{};
  uint64_t not_before_ms = 0;
  // kNoExpiry while the key is current or staged; retirement time + ttl + skew after.
  uint64_t not_after_ms = kNoExpiry;
  friend bool operator==(const SessionKey&, const SessionKey&) = default;
};

struct KeyRingOptions {
  uint64_t token_ttl_ms = 3'600'000;    // one hour
  uint64_t max_clock_skew_ms = 30'000;  // the verifier's leeway on expiry
};

class KeyRing {
 public:
  // A fresh ring: a current key (valid from now_ms) and a staged next key. Ids start at a
  // random value, so a ring re-created after losing its state does not reuse the ids of keys a
  // dataplane may still hold.
  static KeyRing create(const KeyRingOptions& options, uint64_t now_ms);

  // Called from the owner's rotation timer: the staged key becomes current, the old current
  // key retires (verifies until now + ttl + skew), a new key is staged, and expired keys are
  // dropped. Refused (FailedPrecondition, nothing changes) if that would need more than
  // kMaxSessionKeys live keys, i.e. rotation runs faster than tokens expire.
  absl::Status rotate(uint64_t now_ms);
  // Drops retired keys whose not_after_ms has passed; returns how many.
  size_t drop_expired(uint64_t now_ms);

  const SessionKey& signing_key() const { return keys_[current_]; }
  const HmacSha256& signing_hmac() const { return hmacs_[current_]; }
  const SessionKey& staged_key() const { return keys_[staged_]; }
  // Every key the dataplane must hold (current, staged, retired): one SessionKeyPush each.
  std::span<const SessionKey> keys() const { return keys_; }
  const KeyRingOptions& options() const { return options_; }

  // A committed config revision changed the token lifetime: tokens issued from now on carry
  // `token_ttl_ms`. A key that retires keeps verifying for the LONGER of the new and the old
  // lifetime until every token issued under the old one has expired (now + old ttl), so
  // shortening the lifetime never cuts a live token short.
  void set_token_ttl(uint64_t token_ttl_ms, uint64_t now_ms);

  // Persistence: "HKR1", u32 count, u32 current index, u32 staged index, then per key
  // {u32 id, u64 not_before, u64 not_after, 32 key bytes}, then CRC32C of all before it.
  std::vector<uint8_t> serialize() const;
  static absl::StatusOr<KeyRing> parse(std::span<const uint8_t> bytes,
                                       const KeyRingOptions& options);

 private:
  explicit KeyRing(const KeyRingOptions& options) : options_(options) {}
  SessionKey new_key(uint32_t key_id, uint64_t now_ms) const;
  void rebuild_hmacs();

  // How long a key retiring at now_ms must keep verifying the tokens it signed.
  uint64_t retirement_ttl_ms(uint64_t now_ms) const;

  KeyRingOptions options_;
  // A longer lifetime some live tokens may still have (set_token_ttl), until when.
  uint64_t previous_ttl_ms_ = 0;
  uint64_t previous_ttl_until_ms_ = 0;
  std::vector<SessionKey> keys_;
  std::vector<HmacSha256> hmacs_;
  size_t current_ = 0;
  size_t staged_ = 0;
};

}  // namespace herald::auth

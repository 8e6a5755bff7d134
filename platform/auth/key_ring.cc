// Session-token key ring: creation, rotation, retirement and persistence (see key_ring.h).
#include "platform/auth/key_ring.h"

#include <openssl/mem.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "platform/assert/assert.h"
#include "platform/crc32c/crc32c.h"

namespace herald::auth {
namespace {

constexpr char kMagic[4] = {'H', 'K', 'R', '1'};
constexpr size_t kHeaderBytes = 16;
constexpr size_t kKeyRecordBytes = 4 + 8 + 8 + kSessionKeyBytes;

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Key ids only grow (mod 2^32) and 0 is never used, so 0 can mean "no key" on the wire.
uint32_t next_key_id(uint32_t id) {
  return id + 1 == 0 ? 1 : id + 1;
}

}  // namespace

SessionKey KeyRing::new_key(uint32_t key_id, uint64_t now_ms) const {
  SessionKey key;
  key.key_id = key_id;
  random_bytes(key.key);
  key.not_before_ms = now_ms;
  key.not_after_ms = kNoExpiry;
  return key;
}

void KeyRing::rebuild_hmacs() {
  hmacs_.clear();
  for (const SessionKey& k : keys_) hmacs_.emplace_back(k.key);
}

KeyRing KeyRing::create(const KeyRingOptions& options, uint64_t now_ms) {
  KeyRing ring(options);
  uint32_t first_id = static_cast<uint32_t>(random_u64());
  if (first_id == 0) first_id = 1;
  ring.keys_.push_back(ring.new_key(first_id, now_ms));
  ring.keys_.push_back(ring.new_key(next_key_id(first_id), now_ms));
  ring.current_ = 0;
  ring.staged_ = 1;
  ring.rebuild_hmacs();
  return ring;
}

size_t KeyRing::drop_expired(uint64_t now_ms) {
  uint32_t current_id = keys_[current_].key_id;
  uint32_t staged_id = keys_[staged_].key_id;
  size_t before = keys_.size();
  std::erase_if(keys_, [&](const SessionKey& k) { return k.not_after_ms < now_ms; });
  size_t dropped = before - keys_.size();
  if (dropped == 0) return 0;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i].key_id == current_id) current_ = i;
    if (keys_[i].key_id == staged_id) staged_ = i;
  }
  rebuild_hmacs();
  return dropped;
}

void KeyRing::set_token_ttl(uint64_t token_ttl_ms, uint64_t now_ms) {
  if (token_ttl_ms == options_.token_ttl_ms) return;
  // The longest lifetime a live token may have, and until when such a token can be alive.
  const uint64_t longest_ms = retirement_ttl_ms(now_ms);
  const uint64_t until_ms = std::max(now_ms >= previous_ttl_until_ms_ ? 0 : previous_ttl_until_ms_,
                                     now_ms + options_.token_ttl_ms);
  options_.token_ttl_ms = token_ttl_ms;
  previous_ttl_ms_ = longest_ms;
  previous_ttl_until_ms_ = until_ms;
}

uint64_t KeyRing::retirement_ttl_ms(uint64_t now_ms) const {
  if (now_ms < previous_ttl_until_ms_) return std::max(options_.token_ttl_ms, previous_ttl_ms_);
  return options_.token_ttl_ms;
}

absl::Status KeyRing::rotate(uint64_t now_ms) {
  size_t live = 0;
  for (const SessionKey& k : keys_) live += k.not_after_ms >= now_ms ? 1 : 0;
  if (live + 1 > kMaxSessionKeys) {
    return absl::FailedPreconditionError(
        "session key rotation refused: " + std::to_string(live) +
        " keys still verify tokens; rotate less often than (token ttl + skew) / " +
        std::to_string(kMaxSessionKeys - 2));
  }
  drop_expired(now_ms);
  uint32_t newest = keys_[staged_].key_id;
  keys_[current_].not_after_ms = now_ms + retirement_ttl_ms(now_ms) + options_.max_clock_skew_ms;
  current_ = staged_;
  keys_.push_back(new_key(next_key_id(newest), now_ms));
  staged_ = keys_.size() - 1;
  rebuild_hmacs();
  return absl::OkStatus();
}

std::vector<uint8_t> KeyRing::serialize() const {
  std::vector<uint8_t> out;
  out.reserve(kHeaderBytes + keys_.size() * kKeyRecordBytes + 4);
  out.insert(out.end(), kMagic, kMagic + 4);
  put_u32(out, static_cast<uint32_t>(keys_.size()));
  put_u32(out, static_cast<uint32_t>(current_));
  put_u32(out, static_cast<uint32_t>(staged_));
  for (const SessionKey& k : keys_) {
    put_u32(out, k.key_id);
    put_u64(out, k.not_before_ms);
    put_u64(out, k.not_after_ms);
    out.insert(out.end(), k.key.begin(), k.key.end());
  }
  put_u32(out, crc32c::value(out.data(), out.size()));
  return out;
}

absl::StatusOr<KeyRing> KeyRing::parse(std::span<const uint8_t> bytes,
                                       const KeyRingOptions& options) {
  if (bytes.size() < kHeaderBytes + 4 || std::memcmp(bytes.data(), kMagic, 4) != 0) {
    return absl::DataLossError("key ring: not a key ring (bad magic or too short)");
  }
  uint32_t count = get_u32(bytes.data() + 4);
  uint32_t current = get_u32(bytes.data() + 8);
  uint32_t staged = get_u32(bytes.data() + 12);
  if (count < 2 || count > kMaxSessionKeys) {
    return absl::DataLossError("key ring: key count out of range");
  }
  if (bytes.size() != kHeaderBytes + count * kKeyRecordBytes + 4) {
    return absl::DataLossError("key ring: size does not match its key count");
  }
  size_t body = bytes.size() - 4;
  if (crc32c::value(bytes.data(), body) != get_u32(bytes.data() + body)) {
    return absl::DataLossError("key ring: CRC32C mismatch");
  }
  if (current >= count || staged >= count || current == staged) {
    return absl::DataLossError("key ring: bad current/staged index");
  }
  KeyRing ring(options);
  const uint8_t* p = bytes.data() + kHeaderBytes;
  for (uint32_t i = 0; i < count; ++i, p += kKeyRecordBytes) {
    SessionKey k;
    k.key_id = get_u32(p);
    k.not_before_ms = get_u64(p + 4);
    k.not_after_ms = get_u64(p + 12);
    std::memcpy(k.key.data(), p + 20, kSessionKeyBytes);
    for (const SessionKey& other : ring.keys_) {
      if (other.key_id == k.key_id) return absl::DataLossError("key ring: duplicate key id");
    }
    if (k.key_id == 0) return absl::DataLossError("key ring: key id 0");
    ring.keys_.push_back(k);
  }
  if (ring.keys_[current].not_after_ms != kNoExpiry ||
      ring.keys_[staged].not_after_ms != kNoExpiry) {
    return absl::DataLossError("key ring: current or staged key has an expiry");
  }
  ring.current_ = current;
  ring.staged_ = staged;
  ring.rebuild_hmacs();
  return ring;
}

}  // namespace herald::auth

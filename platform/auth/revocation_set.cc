// Fixed-memory revocation set: open addressing with linear probing and backward-shift deletion
// (Knuth, TAOCP vol. 3, §6.4 Algorithm R), so there are no tombstones to clean up.
#include "platform/auth/revocation_set.h"

#include <openssl/siphash.h>

#include <bit>
#include <cstring>

#include "platform/assert/assert.h"

namespace herald::auth {

RevocationSet::RevocationSet(uint32_t capacity, uint64_t retention_ms,
                             std::array<uint64_t, 2> hash_key)
    : capacity_(capacity), retention_ms_(retention_ms), hash_key_(hash_key) {
  HERALD_CHECK(capacity >= 1, "revocation set capacity");
  // Load factor at most 1/2 keeps linear probes short.
  size_t slots = std::bit_ceil(static_cast<size_t>(capacity) * 2);
  slots_.resize(slots);
  mask_ = slots - 1;
}

size_t RevocationSet::home(const AccountId& account, uint32_t device) const {
  uint8_t bytes[20];
  std::memcpy(bytes, &account.hi, 8);
  std::memcpy(bytes + 8, &account.lo, 8);
  std::memcpy(bytes + 16, &device, 4);
  return static_cast<size_t>(SIPHASH_24(hash_key_.data(), bytes, sizeof bytes)) & mask_;
}

size_t RevocationSet::find(const AccountId& account, uint32_t device) const {
  for (size_t i = home(account, device);; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (!s.used) return slots_.size();
    if (s.account == account && s.device == device) return i;
  }
}

void RevocationSet::erase_at(size_t index) {
  slots_[index].used = false;
  --size_;
  // Move later members of the cluster back into the hole when their home allows it.
  size_t hole = index;
  for (size_t j = (hole + 1) & mask_; slots_[j].used; j = (j + 1) & mask_) {
    size_t h = home(slots_[j].account, slots_[j].device);
    // Movable iff h is not cyclically in (hole, j].
    bool h_in_range = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
    if (!h_in_range) {
      slots_[hole] = slots_[j];
      slots_[j].used = false;
      hole = j;
    }
  }
}

RevocationSet::Added RevocationSet::revoke(const AccountId& account, uint32_t device,
                                           uint64_t issued_before_ms, uint64_t now_ms) {
  size_t at = find(account, device);
  if (at != slots_.size()) {
    if (issued_before_ms > slots_[at].issued_before_ms) {
      slots_[at].issued_before_ms = issued_before_ms;
    }
    return Added::kUpdated;
  }
  Added result = Added::kAdded;
  if (size_ >= capacity_) {
    purge(now_ms);
    if (size_ >= capacity_) {
      size_t oldest = slots_.size();
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].used && (oldest == slots_.size() ||
                               slots_[i].issued_before_ms < slots_[oldest].issued_before_ms)) {
          oldest = i;
        }
      }
      HERALD_CHECK(oldest != slots_.size(), "full revocation set has no entries");
      if (slots_[oldest].issued_before_ms > floor_ms_) floor_ms_ = slots_[oldest].issued_before_ms;
      erase_at(oldest);
      result = Added::kRaisedFloor;
    }
  }
  size_t i = home(account, device);
  while (slots_[i].used) i = (i + 1) & mask_;
  slots_[i] = Slot{account, device, true, issued_before_ms};
  ++size_;
  return result;
}

bool RevocationSet::is_revoked(const AccountId& account, uint32_t device,
                               uint64_t issued_at_ms) const {
  if (issued_at_ms < floor_ms_) return true;
  if (size_ == 0) return false;
  size_t at = find(account, device);
  if (at != slots_.size() && issued_at_ms < slots_[at].issued_before_ms) return true;
  at = find(account, kAllDevices);
  return at != slots_.size() && issued_at_ms < slots_[at].issued_before_ms;
}

size_t RevocationSet::purge(uint64_t now_ms) {
  size_t dropped = 0;
  // Backward shifts only move entries toward lower (cyclic) positions, so re-examining the
  // same index after an erase visits everything; a wrapped entry may be seen twice, harmlessly.
  for (size_t i = 0; i < slots_.size();) {
    const Slot& s = slots_[i];
    if (s.used && s.issued_before_ms + retention_ms_ < now_ms) {
      erase_at(i);
      ++dropped;
      continue;
    }
    ++i;
  }
  return dropped;
}

}  // namespace herald::auth

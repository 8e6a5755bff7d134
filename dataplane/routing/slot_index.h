// An open-addressing index from keys to the slots of a caller's fixed pool (linear probing,
// backward-shift deletion), sized once: single-threaded routing tables (dedup, device lists)
// find entries without allocating after start-up.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

#include "platform/assert/assert.h"

namespace herald::dataplane::routing {

// SplitMix64's finalizer: spreads ids whose entropy sits in a few bits over all 64.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// The index holds slot numbers only; the caller keeps keys in its pool and answers "does slot
// s hold this key" (find) and "what is slot s's hash" (erase, to move later entries back).
// At most `max_slots` entries; the table has at least twice as many cells, so probes stay short.
class SlotIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  explicit SlotIndex(uint32_t max_slots)
      : cells_(std::bit_ceil(std::max<uint64_t>(16, uint64_t{max_slots} * 2)), kNone),
        mask_(cells_.size() - 1) {}

  // The slot holding the key whose hash is `hash` (match(slot) says whether it does), or kNone.
  template <typename Match>
  uint32_t find(uint64_t hash, Match&& match) const {
    for (uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
      const uint32_t slot = cells_[i];
      if (slot == kNone) return kNone;
      if (match(slot)) return slot;
    }
  }

  // The key must be absent (find first) and the index below max_slots entries.
  void insert(uint64_t hash, uint32_t slot) {
    HERALD_CHECK(size_ < cells_.size() / 2, "SlotIndex over its capacity");
    uint64_t i = hash & mask_;
    while (cells_[i] != kNone) i = (i + 1) & mask_;
    cells_[i] = slot;
    ++size_;
  }

  // Removes `slot` (inserted with `hash`); hash_of(s) gives the hash of any other slot.
  template <typename HashOf>
  void erase(uint64_t hash, uint32_t slot, HashOf&& hash_of) {
    uint64_t hole = hash & mask_;
    while (cells_[hole] != slot) {
      HERALD_CHECK(cells_[hole] != kNone, "SlotIndex::erase of an absent slot");
      hole = (hole + 1) & mask_;
    }
    // Backward shift: move each later entry of the cluster into the hole unless its home lies
    // cyclically in (hole, j], where it must stay to remain reachable.
    for (uint64_t j = (hole + 1) & mask_; cells_[j] != kNone; j = (j + 1) & mask_) {
      const uint64_t home = hash_of(cells_[j]) & mask_;
      const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
      if (stays) continue;
      cells_[hole] = cells_[j];
      hole = j;
    }
    cells_[hole] = kNone;
    --size_;
  }

  uint32_t size() const { return size_; }
  size_t cells() const { return cells_.size(); }

 private:
  std::vector<uint32_t> cells_;
  uint64_t mask_;
  uint32_t size_ = 0;
};

}  // namespace herald::dataplane::routing

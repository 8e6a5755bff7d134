// An open-addressing index from keys to the slots of a caller's fixed pool (linear probing,
// backward-shift deletion), sized once: single-threaded routing tables (dedup, device lists)
// find entries without allocating after start-up.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

#include "platform/assert/assert.h"
#include "platform/containers/hash.h"

namespace herald::dataplane::routing {

// The index holds slot numbers; the caller keeps keys in its pool and answers "does slot s hold
// this key" (find). Each cell also keeps the low 32 bits of its key's hash: a probe past another
// key's cell is rejected on those bits without touching the caller's pool (a cache miss per
// probe in a pool of a million entries: the dedup window's lookups were 5.6% of a loaded
// worker), and erase finds each cell's home from them alone. 8 bytes a cell.
// At most `max_slots` entries; the table has at least twice as many cells, so probes stay short.
class SlotIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  explicit SlotIndex(uint32_t max_slots)
      : cells_(std::bit_ceil(std::max<uint64_t>(16, uint64_t{max_slots} * 2)), kEmpty),
        mask_(cells_.size() - 1) {
    // The home of a cell comes from the 32 hash bits it keeps.
    HERALD_CHECK(mask_ <= UINT32_MAX, "SlotIndex larger than 2^32 cells");
  }

  // The slot holding the key whose hash is `hash` (match(slot) says whether it does), or kNone.
  template <typename Match>
  uint32_t find(uint64_t hash, Match&& match) const {
    const uint32_t tag = static_cast<uint32_t>(hash);
    for (uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
      const uint64_t cell = cells_[i];
      if (cell == kEmpty) return kNone;
      if (tag_of(cell) == tag && match(slot_of(cell))) return slot_of(cell);
    }
  }

  // The key must be absent (find first) and the index below max_slots entries.
  void insert(uint64_t hash, uint32_t slot) {
    HERALD_CHECK(size_ < cells_.size() / 2, "SlotIndex over its capacity");
    HERALD_DCHECK(slot != kNone, "SlotIndex: kNone is not a slot");
    uint64_t i = hash & mask_;
    while (cells_[i] != kEmpty) i = (i + 1) & mask_;
    cells_[i] = (hash << 32) | slot;
    ++size_;
  }

  // Removes `slot` (inserted with `hash`).
  void erase(uint64_t hash, uint32_t slot) {
    uint64_t hole = hash & mask_;
    while (slot_of(cells_[hole]) != slot) {
      HERALD_CHECK(cells_[hole] != kEmpty, "SlotIndex::erase of an absent slot");
      hole = (hole + 1) & mask_;
    }
    // Backward shift: move each later entry of the cluster into the hole unless its home lies
    // cyclically in (hole, j], where it must stay to remain reachable.
    for (uint64_t j = (hole + 1) & mask_; cells_[j] != kEmpty; j = (j + 1) & mask_) {
      const uint64_t home = tag_of(cells_[j]) & mask_;
      const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
      if (stays) continue;
      cells_[hole] = cells_[j];
      hole = j;
    }
    cells_[hole] = kEmpty;
    --size_;
  }

  uint32_t size() const { return size_; }
  size_t cells() const { return cells_.size(); }

 private:
  // A cell: the hash's low 32 bits above the slot; all ones (slot kNone) is empty.
  static constexpr uint64_t kEmpty = UINT64_MAX;
  static uint32_t slot_of(uint64_t cell) { return static_cast<uint32_t>(cell); }
  static uint32_t tag_of(uint64_t cell) { return static_cast<uint32_t>(cell >> 32); }

  std::vector<uint64_t> cells_;
  uint64_t mask_;
  uint32_t size_ = 0;
};

}  // namespace herald::dataplane::routing

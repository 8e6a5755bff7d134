// A fixed-capacity map from ConnectionId to a slot index, sized once at start-up: open
// addressing with linear probing and backward-shift deletion (no tombstones), so lookups stay
// short however many connections come and go, and nothing allocates while serving.
#pragma once

#include <cstdint>
#include <memory>

#include "dataplane/transport/transport.h"

namespace herald::dataplane {

class ConnectionMap {
 public:
  static constexpr uint32_t kNotFound = UINT32_MAX;

  // Holds up to `max_entries`; the table is the next power of two >= 2 * max_entries, so a
  // probe sequence stays short at full load.
  explicit ConnectionMap(uint32_t max_entries) : max_entries_(max_entries) {
    uint64_t size = 16;
    while (size < uint64_t{max_entries} * 2) size <<= 1;
    mask_ = size - 1;
    entries_ = std::make_unique<Entry[]>(size);
  }

  [[nodiscard]] uint32_t find(ConnectionId id) const {
    if (id == kNoConnection) return kNotFound;
    for (uint64_t i = home(id);; i = (i + 1) & mask_) {
      const Entry& e = entries_[i];
      if (e.id == id) return e.value;
      if (e.id == kNoConnection) return kNotFound;
    }
  }

  // False when full or `id` is already present or kNoConnection.
  [[nodiscard]] bool insert(ConnectionId id, uint32_t value) {
    if (id == kNoConnection || size_ >= max_entries_) return false;
    uint64_t i = home(id);
    for (; entries_[i].id != kNoConnection; i = (i + 1) & mask_) {
      if (entries_[i].id == id) return false;
    }
    entries_[i] = Entry{id, value};
    ++size_;
    return true;
  }

  bool erase(ConnectionId id) {
    if (id == kNoConnection) return false;
    uint64_t i = home(id);
    for (; entries_[i].id != id; i = (i + 1) & mask_) {
      if (entries_[i].id == kNoConnection) return false;
    }
    // Backward shift: pull later entries of the cluster into the hole when their home slot
    // does not lie (cyclically) between the hole and them.
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & mask_; entries_[j].id != kNoConnection; j = (j + 1) & mask_) {
      const uint64_t h = home(entries_[j].id);
      const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (!stays) {
        entries_[hole] = entries_[j];
        hole = j;
      }
    }
    entries_[hole] = Entry{};
    --size_;
    return true;
  }

  [[nodiscard]] uint32_t size() const { return size_; }
  [[nodiscard]] uint32_t max_entries() const { return max_entries_; }

 private:
  struct Entry {
    ConnectionId id = kNoConnection;
    uint32_t value = 0;
  };
  // Fibonacci hashing: ids differ mostly in low bits and generations, the multiply spreads both.
  uint64_t home(ConnectionId id) const { return (id * 0x9E3779B97F4A7C15ull >> 20) & mask_; }

  std::unique_ptr<Entry[]> entries_;
  uint64_t mask_ = 0;
  uint32_t size_ = 0;
  uint32_t max_entries_;
};

}  // namespace herald::dataplane

// Open-addressing hash maps without a node per element: the storage engine's in-memory indexes
// (queue_table.h) and the dataplane's per-connection and per-message maps (router, transport).
//
// Both use linear probing with backward-shift deletion (no tombstones) and one control byte per
// slot: 0 when empty, else a 7-bit tag of the hash with the top bit set, so a probe run is walked
// in the dense control array and a key is compared only on a tag match (at load 3/4 a miss
// probes about 8 slots: reading each one's key was most of the restart time). The hash must mix
// well: the low bits pick the slot, the high bits make the tag.
//
// - FlatMap keeps key and value in the slot array: one cache line per lookup. For small values
//   and maps whose lookups are random (devices, tombstones).
// - DenseMap keeps the values in a separate array in insertion order (freed cells reused) and
//   only a tag and a 32-bit cell number per slot: the part touched at random is 5 bytes per
//   slot instead of the whole element. For large maps of large values built in bulk: the queue
//   table's bodies, 10 M of them after a restart, where a 1.8 GB slot array made every insert a
//   TLB miss through nested page tables (docs/PERFORMANCE.md, "Restart with 10 million stored
//   messages"). A lookup of an existing key costs a second access (the cell); recovery's
//   lookups hit cells it has just written.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include "platform/assert/assert.h"
#include "platform/containers/hash.h"

namespace herald {

namespace hash_map_internal {
// Allocates arrays of 2 MiB and more on 2 MiB boundaries and asks for transparent huge pages
// (MADV_HUGEPAGE): a hash index is touched at random, and with 4 KiB pages nearly every probe
// of a large one is a TLB miss (through nested page tables on a VM).
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding is implicit
  T* allocate(size_t n) {
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t bytes = n * sizeof(T);
    void* p = nullptr;
    if (bytes < kHuge) {
      p = std::malloc(bytes);
    } else if (posix_memalign(&p, kHuge, bytes) == 0) {
      (void)madvise(p, bytes, MADV_HUGEPAGE);
    }
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  friend bool operator==(const HugePageAllocator&, const HugePageAllocator&) { return true; }
};

// The smallest power-of-two capacity (at least 16) that holds n elements at most 3/4 full.
inline size_t capacity_for(size_t n) {
  size_t capacity = 16;
  while (n * 4 > capacity * 3) capacity *= 2;
  return capacity;
}

inline uint8_t tag_of(size_t hash) {
  return static_cast<uint8_t>(0x80 | (hash >> 57));
}
// Whether an element at `j` whose home slot is `home` stays put when slot `hole` empties
// (Knuth 6.4, Algorithm R): its home lies cyclically in (hole, j].
inline bool stays_after_hole(size_t hole, size_t j, size_t home) {
  return hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
}
}  // namespace hash_map_internal

// Key and value in one slot array, no node per element (the node-based std::unordered_map was
// most of the queue table's CPU time, docs/PERFORMANCE.md). Pointers returned by find/try_emplace
// are invalidated by any later try_emplace or erase.
template <class K, class V, class Hash>
class FlatMap {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return slots_.size(); }  // slots, 0 before the first insert

  V* find(const K& key) {
    if (size_ == 0) return nullptr;
    const size_t h = Hash{}(key);
    const uint8_t tag = tag_of(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (ctrl_[i] == 0) return nullptr;
      if (ctrl_[i] == tag && slots_[i].key == key) return &slots_[i].value;
    }
  }
  const V* find(const K& key) const { return const_cast<FlatMap*>(this)->find(key); }
  bool contains(const K& key) const { return find(key) != nullptr; }

  // The value of `key`, default-constructed and inserted if absent; true when inserted.
  std::pair<V*, bool> try_emplace(const K& key) {
    if ((size_ + 1) * 4 > slots_.size() * 3) rehash(slots_.empty() ? 16 : slots_.size() * 2);
    const size_t h = Hash{}(key);
    const uint8_t tag = tag_of(h);
    size_t i = h & mask_;
    for (; ctrl_[i] != 0; i = (i + 1) & mask_) {
      if (ctrl_[i] == tag && slots_[i].key == key) return {&slots_[i].value, false};
    }
    ctrl_[i] = tag;
    slots_[i].key = key;
    slots_[i].value = V{};
    ++size_;
    return {&slots_[i].value, true};
  }

  bool erase(const K& key) {
    if (size_ == 0) return false;
    const size_t h = Hash{}(key);
    const uint8_t tag = tag_of(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (ctrl_[i] == 0) return false;
      if (ctrl_[i] == tag && slots_[i].key == key) {
        erase_at(i);
        return true;
      }
    }
  }

  // Calls f(key, value) for every element; erases those for which it returns true.
  template <class F>
  void erase_if(F&& f) {
    // Backward shifting only moves an element into the hole being visited (or from the wrapped
    // start of the array to its end, already visited and kept), so nothing is skipped.
    for (size_t i = 0; i < slots_.size();) {
      if (ctrl_[i] != 0 && f(slots_[i].key, slots_[i].value)) {
        erase_at(i);
      } else {
        ++i;
      }
    }
  }
  template <class F>
  void for_each_mutable(F&& f) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (ctrl_[i] != 0) f(slots_[i].key, slots_[i].value);
    }
  }
  template <class F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (ctrl_[i] != 0) f(slots_[i].key, slots_[i].value);
    }
  }

  // Starts loading the slot `key` hashes to, for a find or try_emplace a little later
  // (recovery walks a run of records ahead of itself: each lookup is otherwise a cache miss).
  void prefetch(const K& key) const {
    if (slots_.empty()) return;
    const size_t i = Hash{}(key)&mask_;
    prefetch_line(&ctrl_[i]);
    const char* slot = reinterpret_cast<const char*>(&slots_[i]);
    prefetch_line(slot);
    prefetch_line(slot + sizeof(Slot) - 1);
  }

  void reserve(size_t n) {
    const size_t capacity = hash_map_internal::capacity_for(n);
    if (capacity > slots_.size()) rehash(capacity);
  }

  // Gives a table's peak back after departures. A table keeps the slots of its largest size
  // after its elements leave; once it is an eighth full this rehashes it to the smallest size
  // that holds what is left (an empty one frees its arrays). The result is more than 3/8 full
  // and grows again only past 3/4, so at least a quarter of its capacity in erases or 3/8 in
  // inserts separates two rehashes: amortized O(1) per erase. Call after an erase, never from
  // inside for_each or erase_if. Small tables are not worth a rehash and are left as they are.
  void shrink_when_sparse() {
    constexpr size_t kKeptCapacity = 1024;
    if (slots_.size() <= kKeptCapacity || size_ >= slots_.size() / 8) return;
    if (size_ == 0) {
      clear();
    } else {
      rehash(hash_map_internal::capacity_for(size_));
    }
  }

  // Erases every element and frees the arrays.
  void clear() {
    SlotVector().swap(slots_);
    CtrlVector().swap(ctrl_);
    mask_ = 0;
    size_ = 0;
  }

 private:
  struct Slot {
    K key{};
    V value{};
  };

  void erase_at(size_t hole) {
    // Backward-shift deletion (Knuth 6.4, Algorithm R): move later members of the probe run
    // into the hole when their home slot does not lie cyclically in (hole, j].
    for (size_t j = (hole + 1) & mask_; ctrl_[j] != 0; j = (j + 1) & mask_) {
      const size_t home = Hash{}(slots_[j].key) & mask_;
      if (hash_map_internal::stays_after_hole(hole, j, home)) continue;
      slots_[hole] = std::move(slots_[j]);
      ctrl_[hole] = ctrl_[j];
      hole = j;
    }
    ctrl_[hole] = 0;
    slots_[hole] = Slot{};
    --size_;
  }

  void rehash(size_t capacity) {
    SlotVector old_slots(capacity);
    CtrlVector old_ctrl(capacity, 0);
    old_slots.swap(slots_);
    old_ctrl.swap(ctrl_);
    mask_ = capacity - 1;
    for (size_t i = 0; i < old_slots.size(); ++i) {
      if (old_ctrl[i] == 0) continue;
      const size_t h = Hash{}(old_slots[i].key);
      size_t j = h & mask_;
      while (ctrl_[j] != 0) j = (j + 1) & mask_;
      ctrl_[j] = tag_of(h);
      slots_[j] = std::move(old_slots[i]);
    }
  }

  using SlotVector = std::vector<Slot>;
  using CtrlVector = std::vector<uint8_t>;
  static uint8_t tag_of(size_t hash) { return hash_map_internal::tag_of(hash); }
  SlotVector slots_;
  CtrlVector ctrl_;  // 0: empty; else tag_of(the hash of the slot's key)
  size_t mask_ = 0;
  size_t size_ = 0;
};

// Values in a dense cell array (insertion order, freed cells reused through a free list), the
// hash index holding a control byte and a cell number per slot. Cells never move except when
// the cell array grows: pointers returned by find/try_emplace are invalidated by a later
// try_emplace (as FlatMap's), but erase leaves the other elements where they are. Iteration
// goes through the cells in order (sequential memory), not through the index.
template <class K, class V, class Hash>
class DenseMap {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  V* find(const K& key) {
    const size_t i = slot_of(key);
    return i == kNone ? nullptr : &cells_[index_[i].cell].value;
  }
  const V* find(const K& key) const { return const_cast<DenseMap*>(this)->find(key); }
  bool contains(const K& key) const { return find(key) != nullptr; }

  // The value of `key`, default-constructed and inserted if absent; true when inserted.
  std::pair<V*, bool> try_emplace(const K& key) {
    if ((size_ + 1) * 4 > index_.size() * 3) rehash(index_.empty() ? 16 : index_.size() * 2);
    const size_t h = Hash{}(key);
    const uint8_t tag = hash_map_internal::tag_of(h);
    size_t i = h & mask_;
    for (; index_[i].tag != 0; i = (i + 1) & mask_) {
      if (index_[i].tag == tag && cells_[index_[i].cell].key == key) {
        return {&cells_[index_[i].cell].value, false};
      }
    }
    const uint32_t c = allocate_cell(key);
    index_[i] = {tag, c};
    ++size_;
    return {&cells_[c].value, true};
  }

  bool erase(const K& key) {
    const size_t i = slot_of(key);
    if (i == kNone) return false;
    free_cell(index_[i].cell);
    erase_slot(i);
    return true;
  }

  // Calls f(key, value) for every element; erases those for which it returns true.
  template <class F>
  void erase_if(F&& f) {
    for (size_t c = 0; c < cells_.size(); ++c) {
      if (live_[c] && f(cells_[c].key, cells_[c].value)) erase(K(cells_[c].key));
    }
  }
  template <class F>
  void for_each_mutable(F&& f) {
    for (size_t c = 0; c < cells_.size(); ++c) {
      if (live_[c]) f(cells_[c].key, cells_[c].value);
    }
  }
  template <class F>
  void for_each(F&& f) const {
    for (size_t c = 0; c < cells_.size(); ++c) {
      if (live_[c]) f(cells_[c].key, cells_[c].value);
    }
  }

  // Starts loading the index slot `key` hashes to (see FlatMap::prefetch). A new key's cell is
  // the next one at the end of the array (sequential), so only the index needs the hint.
  void prefetch(const K& key) const {
    if (index_.empty()) return;
    prefetch_line(&index_[Hash{}(key)&mask_]);
  }

  void reserve(size_t n) {
    const size_t capacity = hash_map_internal::capacity_for(n);
    if (capacity > index_.size()) rehash(capacity);
    if (n > cells_.capacity()) {
      cells_.reserve(n);
      populate(cells_.data() + cells_.size(), (cells_.capacity() - cells_.size()) * sizeof(Cell));
    }
    live_.reserve(n);
  }

 private:
  static constexpr size_t kNone = ~size_t{0};
  // Tag and cell number side by side, packed (5 bytes): a probe reads one cache line and needs
  // one TLB entry, where separate arrays needed two of each.
  struct __attribute__((packed)) IndexSlot {
    uint8_t tag = 0;  // 0: empty; else tag_of(the hash of its key)
    uint32_t cell = 0;
  };
  struct Cell {
    K key{};
    V value{};
  };

  size_t slot_of(const K& key) const {
    if (size_ == 0) return kNone;
    const size_t h = Hash{}(key);
    const uint8_t tag = hash_map_internal::tag_of(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (index_[i].tag == 0) return kNone;
      if (index_[i].tag == tag && cells_[index_[i].cell].key == key) return i;
    }
  }

  // Faults in the pages of [p, p + bytes) now, in one call, rather than one page fault per 4 KiB
  // as the cells are written: for 10 M bodies that was 270 k faults, a large part of a restart's
  // system time on a VM. Only a hint (MADV_POPULATE_WRITE, Linux 5.14): errors are ignored.
  static void populate(void* p, size_t bytes) {
    constexpr uintptr_t kPage = 4096;
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kPage - 1);
    if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, kMadvPopulateWrite);
  }
  static constexpr int kMadvPopulateWrite = 23;  // MADV_POPULATE_WRITE, not in every libc's headers

  uint32_t allocate_cell(const K& key) {
    if (!free_.empty()) {
      const uint32_t c = free_.back();
      free_.pop_back();
      cells_[c].key = key;
      live_[c] = 1;
      return c;
    }
    HERALD_CHECK(cells_.size() < UINT32_MAX, "DenseMap holds at most 2^32 - 1 elements");
    cells_.push_back(Cell{key, V{}});
    live_.push_back(1);
    return static_cast<uint32_t>(cells_.size() - 1);
  }
  void free_cell(uint32_t c) {
    cells_[c].value = V{};  // releases what the value owns now, not when the cell is reused
    live_[c] = 0;
    free_.push_back(c);
    --size_;
  }

  // Backward-shift deletion of index slot `hole` (see FlatMap::erase_at).
  void erase_slot(size_t hole) {
    for (size_t j = (hole + 1) & mask_; index_[j].tag != 0; j = (j + 1) & mask_) {
      const size_t home = Hash{}(cells_[index_[j].cell].key) & mask_;
      if (hash_map_internal::stays_after_hole(hole, j, home)) continue;
      index_[hole] = index_[j];
      hole = j;
    }
    index_[hole] = {};
  }

  // A new index of `capacity` slots, filled from the cells in order.
  void rehash(size_t capacity) {
    index_.assign(capacity, IndexSlot{});
    mask_ = capacity - 1;
    for (size_t c = 0; c < cells_.size(); ++c) {
      if (!live_[c]) continue;
      const size_t h = Hash{}(cells_[c].key);
      size_t j = h & mask_;
      while (index_[j].tag != 0) j = (j + 1) & mask_;
      index_[j] = {hash_map_internal::tag_of(h), static_cast<uint32_t>(c)};
    }
  }

  std::vector<Cell> cells_;
  std::vector<uint8_t> live_;   // per cell: 1 while it holds an element
  std::vector<uint32_t> free_;  // cells to reuse
  std::vector<IndexSlot, hash_map_internal::HugePageAllocator<IndexSlot>> index_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace herald

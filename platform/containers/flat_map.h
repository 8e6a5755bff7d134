// Hash maps for per-message lookups: Abseil's open-addressing flat_hash_map (a probe reads one
// group of control bytes, then the slot: no bucket array and no node per entry to miss in
// cache, and no allocation per insert), plus giving back a table's peak after a departure.
#pragma once

#include <cstddef>

#include "absl/container/flat_hash_map.h"

namespace herald {

template <typename Key, typename Value>
using FlatMap = absl::flat_hash_map<Key, Value>;

// Call after an erase. A table keeps the slots of its largest size (key, value and a control
// byte each) after its entries leave; once it is an eighth full this rehashes it to fit what
// is left. It grows again only at seven eighths, so the rehash is amortized O(1) per erase.
// Invalidates iterators: never call it inside a loop over the map.
template <typename Map>
void shrink_when_sparse(Map& map) {
  constexpr size_t kKeptCapacity = 1024;  // small tables are not worth a rehash
  if (map.capacity() > kKeptCapacity && map.size() < map.capacity() / 8) map.rehash(0);
}

}  // namespace herald

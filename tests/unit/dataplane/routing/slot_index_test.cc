// SlotIndex against a reference map, with hashes chosen to collide: keys sharing a home cell,
// keys sharing the 32 hash bits a cell keeps (so the tag cannot tell them apart and the
// caller's match must), clusters wrapping round the table's end, and erase's backward shift.
#include "dataplane/routing/slot_index.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

namespace herald::dataplane::routing {
namespace {

// The keys live in a pool, as in the index's users; slot s holds keys[s].
struct Pool {
  std::vector<uint64_t> keys;
  std::vector<uint32_t> free;
};

TEST(SlotIndexTest, FindsEveryKeyThroughCollidingTagsAndHomes) {
  constexpr uint32_t kSlots = 64;
  SlotIndex index(kSlots);
  ASSERT_EQ(index.cells(), 128u);
  // Hash: the key's low 3 bits pick one of 8 values, identical in both halves: eight keys
  // share each tag and home (and the homes sit at the end of the table, so clusters wrap).
  auto hash_of = [](uint64_t key) {
    const uint64_t h = 120 + (key & 7);
    return (h << 32) | h;
  };
  Pool pool;
  pool.keys.assign(kSlots, 0);
  for (uint32_t s = kSlots; s-- > 0;) pool.free.push_back(s);
  std::unordered_map<uint64_t, uint32_t> reference;
  std::mt19937_64 rng(7);
  auto find = [&](uint64_t key) {
    return index.find(hash_of(key), [&](uint32_t s) { return pool.keys[s] == key; });
  };
  for (int step = 0; step < 20000; ++step) {
    const uint64_t key = rng() % 200;
    auto it = reference.find(key);
    if (it == reference.end()) {
      ASSERT_EQ(find(key), SlotIndex::kNone) << key;
      if (pool.free.empty()) continue;
      const uint32_t s = pool.free.back();
      pool.free.pop_back();
      pool.keys[s] = key;
      index.insert(hash_of(key), s);
      reference[key] = s;
    } else {
      ASSERT_EQ(find(key), it->second) << key;
      index.erase(hash_of(key), it->second);
      pool.free.push_back(it->second);
      reference.erase(it);
      ASSERT_EQ(find(key), SlotIndex::kNone) << key;
    }
    ASSERT_EQ(index.size(), reference.size());
    if (step % 997 == 0) {
      for (const auto& [k, s] : reference) ASSERT_EQ(find(k), s) << k;
    }
  }
}

TEST(SlotIndexTest, SameHomeDifferentTagsNeverCallMatch) {
  SlotIndex index(8);
  // Three keys with the same home (low bits 3) and different tags.
  const uint64_t hashes[] = {(uint64_t{1} << 32) | 3, (uint64_t{2} << 32) | 0x10003,
                             (uint64_t{3} << 32) | 0x20003};
  for (uint32_t s = 0; s < 3; ++s) index.insert(hashes[s], s);
  int calls = 0;
  const uint32_t found = index.find(hashes[2], [&](uint32_t s) {
    ++calls;
    return s == 2;
  });
  EXPECT_EQ(found, 2u);
  EXPECT_EQ(calls, 1);  // the two cells before it were rejected on their tags
  index.erase(hashes[0], 0);
  EXPECT_EQ(index.find(hashes[1], [](uint32_t s) { return s == 1; }), 1u);
  EXPECT_EQ(index.find(hashes[2], [](uint32_t s) { return s == 2; }), 2u);
  EXPECT_EQ(index.find(hashes[0], [](uint32_t) { return true; }), SlotIndex::kNone);
}

TEST(SlotIndexDeathTest, RefusesAnInsertPastItsCapacity) {
  SlotIndex index(8);  // 16 cells, at most 8 entries
  for (uint32_t s = 0; s < 8; ++s) index.insert(s * 0x9e3779b97f4a7c15ULL, s);
  EXPECT_DEATH(index.insert(12345, 8), "over its capacity");
}

}  // namespace
}  // namespace herald::dataplane::routing

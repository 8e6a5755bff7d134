// FlatMap and DenseMap (platform/containers/hash_maps.h) against std::unordered_map as the
// model, through random inserts, erases, erase_if and shrinks; FlatMap::shrink_when_sparse
// gives a table's peak back, keeps every element and does not rehash back and forth.
#include "platform/containers/hash_maps.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <unordered_map>

namespace herald {
namespace {

// Every key hashes to one of a few homes: long probe runs that wrap around the array's end,
// where backward-shift deletion has the most to get wrong.
struct CollidingHash {
  size_t operator()(uint64_t key) const { return hash_mix(key % 5) ^ (size_t{15} << 60); }
};

template <class Map>
void expect_same(Map& map, const std::unordered_map<uint64_t, uint64_t>& model) {
  ASSERT_EQ(map.size(), model.size());
  for (const auto& [key, value] : model) {
    const uint64_t* found = map.find(key);
    ASSERT_NE(found, nullptr) << "key " << key;
    ASSERT_EQ(*found, value) << "key " << key;
  }
  size_t visited = 0;
  map.for_each([&](uint64_t key, uint64_t value) {
    ++visited;
    auto it = model.find(key);
    ASSERT_NE(it, model.end()) << "extra key " << key;
    EXPECT_EQ(it->second, value);
  });
  EXPECT_EQ(visited, model.size());
}

template <class Map>
void random_operations(uint64_t seed, uint64_t key_range) {
  Map map;
  std::unordered_map<uint64_t, uint64_t> model;
  std::mt19937_64 rng(seed);
  for (int step = 0; step < 20'000; ++step) {
    const uint64_t key = rng() % key_range;
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2: {
        auto [value, inserted] = map.try_emplace(key);
        EXPECT_EQ(inserted, !model.contains(key));
        *value = step;
        model[key] = step;
        break;
      }
      case 3:
      case 4: EXPECT_EQ(map.erase(key), model.erase(key) == 1); break;
      case 5: EXPECT_EQ(map.contains(key), model.contains(key)); break;
      case 6:
        if (rng() % 64 == 0) {  // now and then, thin the map out
          const uint64_t modulus = 2 + rng() % 4;
          map.erase_if([&](uint64_t k, uint64_t) { return k % modulus == 0; });
          std::erase_if(model, [&](const auto& kv) { return kv.first % modulus == 0; });
        }
        break;
      default:
        if constexpr (requires { map.shrink_when_sparse(); }) map.shrink_when_sparse();
        break;
    }
    if (step % 997 == 0) expect_same(map, model);
  }
  expect_same(map, model);
}

TEST(FlatMap, MatchesTheModel) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    random_operations<FlatMap<uint64_t, uint64_t, U64Hash>>(seed, 3000);
  }
}

TEST(FlatMap, MatchesTheModelWhenEveryKeyCollides) {
  random_operations<FlatMap<uint64_t, uint64_t, CollidingHash>>(7, 200);
}

TEST(DenseMap, MatchesTheModel) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    random_operations<DenseMap<uint64_t, uint64_t, U64Hash>>(seed, 3000);
  }
}

TEST(DenseMap, MatchesTheModelWhenEveryKeyCollides) {
  random_operations<DenseMap<uint64_t, uint64_t, CollidingHash>>(7, 200);
}

TEST(FlatMap, ADepartureGivesThePeakBackAndKeepsTheSurvivors) {
  FlatMap<uint64_t, uint64_t, U64Hash> map;
  constexpr uint64_t kPeak = 100'000;
  for (uint64_t k = 0; k < kPeak; ++k) *map.try_emplace(k * 7919).first = k;
  const size_t peak_capacity = map.capacity();
  // All but every hundredth leave, each erase followed by the shrink check as callers do.
  for (uint64_t k = 0; k < kPeak; ++k) {
    if (k % 100 == 0) continue;
    map.erase(k * 7919);
    map.shrink_when_sparse();
  }
  EXPECT_EQ(map.size(), kPeak / 100);
  EXPECT_LE(map.capacity(), peak_capacity / 32);
  EXPECT_GE(map.capacity() * 3, map.size() * 4);  // at most 3/4 full after the shrink
  for (uint64_t k = 0; k < kPeak; k += 100) {
    const uint64_t* value = map.find(k * 7919);
    ASSERT_NE(value, nullptr);
    EXPECT_EQ(*value, k);
  }
  // The last ones leave: the arrays go.
  for (uint64_t k = 0; k < kPeak; k += 100) {
    map.erase(k * 7919);
    map.shrink_when_sparse();
  }
  EXPECT_TRUE(map.empty());
  EXPECT_LE(map.capacity(), 1024u);
}

TEST(FlatMap, SmallTablesAndTablesAboveAnEighthAreLeftAlone) {
  FlatMap<uint64_t, uint64_t, U64Hash> small;
  for (uint64_t k = 0; k < 500; ++k) small.try_emplace(k);
  const size_t small_capacity = small.capacity();
  ASSERT_LE(small_capacity, 1024u);
  for (uint64_t k = 0; k < 499; ++k) {
    small.erase(k);
    small.shrink_when_sparse();
  }
  EXPECT_EQ(small.capacity(), small_capacity);  // at most 1,024 slots: never worth a rehash

  FlatMap<uint64_t, uint64_t, U64Hash> big;
  for (uint64_t k = 0; k < 20'000; ++k) big.try_emplace(k);
  const size_t capacity = big.capacity();
  uint64_t k = 0;
  while (big.size() >= capacity / 8) {
    EXPECT_EQ(big.capacity(), capacity) << "shrank with " << big.size() << " elements";
    big.erase(k++);
    big.shrink_when_sparse();
  }
  EXPECT_LT(big.capacity(), capacity);  // the erase that crossed an eighth shrank it
  // Just after a shrink, neither one insert nor one erase rehashes it again.
  const size_t shrunk = big.capacity();
  big.try_emplace(k - 1);
  EXPECT_EQ(big.capacity(), shrunk);
  big.erase(k - 1);
  big.erase(k);
  big.shrink_when_sparse();
  EXPECT_EQ(big.capacity(), shrunk);
}

TEST(FlatMap, ClearFreesTheArraysAndTheMapIsUsableAfter) {
  FlatMap<uint64_t, uint64_t, U64Hash> map;
  for (uint64_t k = 0; k < 5000; ++k) map.try_emplace(k);
  map.clear();
  EXPECT_TRUE(map.empty());
  EXPECT_EQ(map.capacity(), 0u);
  EXPECT_EQ(map.find(1), nullptr);
  EXPECT_FALSE(map.erase(1));
  *map.try_emplace(42).first = 7;
  ASSERT_NE(map.find(42), nullptr);
  EXPECT_EQ(*map.find(42), 7u);
}

}  // namespace
}  // namespace herald

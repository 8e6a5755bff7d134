// shrink_when_sparse: a table gives its peak back once mostly empty, keeps every entry, and
// does not rehash back and forth at the edge.
#include "platform/containers/flat_map.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace herald {
namespace {

TEST(FlatMap, ADepartureGivesThePeakBackAndKeepsTheSurvivors) {
  FlatMap<uint64_t, uint64_t> map;
  constexpr uint64_t kPeak = 100'000;
  for (uint64_t k = 0; k < kPeak; ++k) map.emplace(k * 7919, k);
  const size_t peak_capacity = map.capacity();
  // All but every hundredth leave, each erase followed by the shrink check as callers do.
  for (uint64_t k = 0; k < kPeak; ++k) {
    if (k % 100 == 0) continue;
    map.erase(k * 7919);
    shrink_when_sparse(map);
  }
  EXPECT_EQ(map.size(), kPeak / 100);
  EXPECT_LE(map.capacity(), peak_capacity / 32);
  EXPECT_GE(map.capacity(), map.size());
  for (uint64_t k = 0; k < kPeak; k += 100) {
    auto it = map.find(k * 7919);
    ASSERT_NE(it, map.end());
    EXPECT_EQ(it->second, k);
  }
}

TEST(FlatMap, SmallTablesAndTablesAboveAnEighthAreLeftAlone) {
  FlatMap<uint64_t, uint64_t> small;
  for (uint64_t k = 0; k < 500; ++k) small.emplace(k, k);
  const size_t small_capacity = small.capacity();
  for (uint64_t k = 0; k < 499; ++k) {
    small.erase(k);
    shrink_when_sparse(small);
  }
  EXPECT_EQ(small.capacity(), small_capacity);  // at most 1,024 slots: never worth a rehash

  FlatMap<uint64_t, uint64_t> big;
  for (uint64_t k = 0; k < 20'000; ++k) big.emplace(k, k);
  const size_t capacity = big.capacity();
  uint64_t k = 0;
  while (big.size() >= capacity / 8) {
    EXPECT_EQ(big.capacity(), capacity) << "shrank with " << big.size() << " entries";
    big.erase(k++);
    shrink_when_sparse(big);
  }
  EXPECT_LT(big.capacity(), capacity);  // the erase that crossed an eighth shrank it
}

}  // namespace
}  // namespace herald

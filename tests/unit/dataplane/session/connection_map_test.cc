// ConnectionMap against std::unordered_map under random inserts and erases (backward-shift
// deletion must keep every remaining key findable), and its capacity edge.
#include "dataplane/tls/connection_map.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

namespace herald::dataplane {
namespace {

TEST(ConnectionMap, MatchesAReferenceMapUnderChurn) {
  constexpr uint32_t kMax = 500;
  ConnectionMap map(kMax);
  std::unordered_map<ConnectionId, uint32_t> ref;
  std::vector<ConnectionId> keys;
  std::mt19937_64 rng(12345);
  for (int step = 0; step < 200'000; ++step) {
    const bool insert = keys.empty() || (keys.size() < kMax && rng() % 2 == 0);
    if (insert) {
      // Ids as transports make them: a generation in the high bits, clustered low bits.
      const ConnectionId id = (rng() % 4096) << 32 | (rng() % 64 + 1);
      const uint32_t value = static_cast<uint32_t>(rng());
      const bool fresh = ref.find(id) == ref.end();
      ASSERT_EQ(map.insert(id, value), fresh);
      if (fresh) {
        ref[id] = value;
        keys.push_back(id);
      }
    } else {
      const size_t i = rng() % keys.size();
      ASSERT_TRUE(map.erase(keys[i]));
      ref.erase(keys[i]);
      keys[i] = keys.back();
      keys.pop_back();
    }
    if (step % 1000 == 0) {
      for (const auto& [id, value] : ref) ASSERT_EQ(map.find(id), value);
    }
  }
  EXPECT_EQ(map.size(), ref.size());
}

TEST(ConnectionMap, CapacityEdgeAndInvalidIds) {
  ConnectionMap map(3);
  EXPECT_FALSE(map.insert(kNoConnection, 1));
  EXPECT_TRUE(map.insert(1, 10));
  EXPECT_TRUE(map.insert(2, 20));
  EXPECT_FALSE(map.insert(2, 21));  // duplicate
  EXPECT_TRUE(map.insert(3, 30));
  EXPECT_FALSE(map.insert(4, 40));  // full
  EXPECT_EQ(map.find(4), ConnectionMap::kNotFound);
  EXPECT_EQ(map.find(kNoConnection), ConnectionMap::kNotFound);
  EXPECT_TRUE(map.erase(2));
  EXPECT_FALSE(map.erase(2));
  EXPECT_TRUE(map.insert(4, 40));
  EXPECT_EQ(map.find(4), 40u);
  EXPECT_EQ(map.find(1), 10u);
}

}  // namespace
}  // namespace herald::dataplane

// GroupCache: version ordering, deletes, the member-count limit at its edge, membership checks.
#include "dataplane/routing/group_cache.h"

#include <gtest/gtest.h>

#include <vector>

namespace herald::dataplane::routing {
namespace {

// Builds one GroupMembershipPush and keeps its bytes alive.
struct Push {
  flatbuffers::FlatBufferBuilder fbb;
  const ipc::GroupMembershipPush* get(uint64_t group, uint64_t version,
                                      const std::vector<uint64_t>& members, bool deleted = false,
                                      bool no_group = false) {
    fbb.Clear();
    std::vector<wire::AccountId> ids;
    for (uint64_t m : members) ids.emplace_back(m, m + 1);
    const wire::GroupId id(group, group);
    fbb.Finish(ipc::CreateGroupMembershipPush(fbb, no_group ? nullptr : &id, version,
                                              fbb.CreateVectorOfStructs(ids), deleted));
    return flatbuffers::GetRoot<ipc::GroupMembershipPush>(fbb.GetBufferPointer());
  }
};

wire::GroupId gid(uint64_t g) {
  return wire::GroupId(g, g);
}
wire::AccountId acc(uint64_t m) {
  return wire::AccountId(m, m + 1);
}

TEST(GroupCache, MembersSortedAndMembershipChecked) {
  GroupCache cache(GroupCacheOptions{8, 100});
  Push p;
  EXPECT_EQ(cache.apply(*p.get(1, 10, {5, 3, 9, 3})), GroupPushResult::kApplied);
  const auto members = cache.members(gid(1));
  ASSERT_EQ(members.size(), 3u);  // the duplicate 3 kept once
  EXPECT_EQ(members[0].hi(), 3u);
  EXPECT_EQ(members[1].hi(), 5u);
  EXPECT_EQ(members[2].hi(), 9u);
  EXPECT_EQ(cache.stats().duplicate_members, 1u);
  EXPECT_TRUE(cache.is_member(gid(1), acc(5)));
  EXPECT_FALSE(cache.is_member(gid(1), acc(4)));
  EXPECT_FALSE(cache.is_member(gid(1), wire::AccountId(5, 7)));  // same hi, other lo
  EXPECT_FALSE(cache.is_member(gid(2), acc(5)));                 // unknown group
  EXPECT_TRUE(cache.members(gid(2)).empty());
  EXPECT_EQ(cache.version(gid(1)), 10u);
}

TEST(GroupCache, OlderAndEqualVersionsAreIgnored) {
  GroupCache cache(GroupCacheOptions{8, 100});
  Push p;
  ASSERT_EQ(cache.apply(*p.get(1, 10, {1, 2})), GroupPushResult::kApplied);
  EXPECT_EQ(cache.apply(*p.get(1, 9, {1})), GroupPushResult::kStale);
  EXPECT_EQ(cache.apply(*p.get(1, 10, {1})), GroupPushResult::kStale);
  EXPECT_EQ(cache.members(gid(1)).size(), 2u);
  // An old delete does not drop a newer list either.
  EXPECT_EQ(cache.apply(*p.get(1, 5, {}, true)), GroupPushResult::kStale);
  EXPECT_TRUE(cache.contains(gid(1)));
  EXPECT_EQ(cache.apply(*p.get(1, 11, {2})), GroupPushResult::kApplied);
  EXPECT_FALSE(cache.is_member(gid(1), acc(1)));  // removed member
  EXPECT_EQ(cache.stats().stale, 3u);
}

TEST(GroupCache, DeleteDropsTheGroup) {
  GroupCache cache(GroupCacheOptions{8, 100});
  Push p;
  ASSERT_EQ(cache.apply(*p.get(1, 10, {1, 2})), GroupPushResult::kApplied);
  EXPECT_EQ(cache.apply(*p.get(1, 12, {}, true)), GroupPushResult::kDeleted);
  EXPECT_FALSE(cache.contains(gid(1)));
  EXPECT_FALSE(cache.is_member(gid(1), acc(1)));
  EXPECT_EQ(cache.apply(*p.get(3, 1, {}, true)), GroupPushResult::kDeleted);
  EXPECT_EQ(cache.stats().deleted, 1u);
  EXPECT_EQ(cache.stats().deleted_unknown, 1u);
  EXPECT_EQ(cache.groups(), 0u);
}

TEST(GroupCache, MemberLimitAtItsEdge) {
  GroupCache cache(GroupCacheOptions{4, 100});
  Push p;
  EXPECT_EQ(cache.apply(*p.get(1, 1, {1, 2, 3, 4})), GroupPushResult::kApplied);  // == limit
  EXPECT_EQ(cache.apply(*p.get(1, 2, {1, 2, 3, 4, 5})), GroupPushResult::kTooLarge);
  EXPECT_EQ(cache.members(gid(1)).size(), 4u);  // the last list inside the limit stays
  EXPECT_EQ(cache.version(gid(1)), 1u);
  EXPECT_EQ(cache.apply(*p.get(2, 1, {1, 2, 3, 4, 5})), GroupPushResult::kTooLarge);
  EXPECT_FALSE(cache.contains(gid(2)));
  EXPECT_EQ(cache.stats().too_large, 2u);
  cache.set_max_group_members(5);  // a hot config change takes the next push
  EXPECT_EQ(cache.apply(*p.get(1, 3, {1, 2, 3, 4, 5})), GroupPushResult::kApplied);
}

TEST(GroupCache, GroupLimitRefusesNewGroupsOnly) {
  GroupCache cache(GroupCacheOptions{8, 2});
  Push p;
  ASSERT_EQ(cache.apply(*p.get(1, 1, {1})), GroupPushResult::kApplied);
  ASSERT_EQ(cache.apply(*p.get(2, 1, {1})), GroupPushResult::kApplied);
  EXPECT_EQ(cache.apply(*p.get(3, 1, {1})), GroupPushResult::kFull);
  EXPECT_EQ(cache.apply(*p.get(2, 2, {1, 2})), GroupPushResult::kApplied);  // an update fits
  EXPECT_EQ(cache.stats().full, 1u);
  EXPECT_EQ(cache.apply(*p.get(0, 1, {1}, false, true)), GroupPushResult::kMalformed);
  EXPECT_EQ(cache.stats().malformed, 1u);
}

}  // namespace
}  // namespace herald::dataplane::routing

// The three assertion tiers: CHECK aborts, DCHECK follows the build type, BUG_IF counts.
#include "platform/assert/assert.h"

#include <gtest/gtest.h>

namespace herald {
namespace {

TEST(AssertDeathTest, CheckAbortsWithExpressionAndMessage) {
  int ring_slots = 3;
  EXPECT_DEATH(HERALD_CHECK(ring_slots % 2 == 0, "ring slots must be even"),
               "ring_slots % 2 == 0.*ring slots must be even");
}

TEST(AssertTest, CheckPassesSilently) {
  int value = 4;
  HERALD_CHECK(value == 4, "never fires");
  SUCCEED();
}

TEST(AssertDeathTest, DcheckFollowsBuildType) {
#if HERALD_DEBUG_BUILD
  EXPECT_DEATH(HERALD_DCHECK(1 + 1 == 3, "debug check"), "debug check");
#else
  int evaluated = 0;
  HERALD_DCHECK((++evaluated, false), "compiled out");
  EXPECT_EQ(evaluated, 0) << "a release DCHECK must not evaluate its condition";
#endif
}

TEST(AssertTest, BugIfCountsAndReturnsConditionWhenNotAborting) {
  const bool saved = abort_on_bug();
  set_abort_on_bug(false);
  const uint64_t before = bug_count();
  EXPECT_FALSE(HERALD_BUG_IF(false, "not a bug"));
  EXPECT_EQ(bug_count(), before);
  EXPECT_TRUE(HERALD_BUG_IF(2 > 1, "a survivable bug"));
  EXPECT_TRUE(HERALD_BUG_IF(2 > 1, "a survivable bug"));
  EXPECT_EQ(bug_count(), before + 2);
  set_abort_on_bug(saved);
}

TEST(AssertDeathTest, BugIfAbortsWhenAskedTo) {
  set_abort_on_bug(true);
  EXPECT_DEATH((void)HERALD_BUG_IF(true, "fatal in debug"), "fatal in debug");
}

}  // namespace
}  // namespace herald

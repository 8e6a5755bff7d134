// Tests for the GCRA rate limiter: rule boundaries to the millisecond, several rules at once,
// the bounded table (eviction of recovered keys, fail-closed when full), and source-address keys.
#include "controlplane/registration/rate_limiter.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "controlplane/registration/source_address.h"

namespace herald::registration {
namespace {

constexpr std::array<uint64_t, 2> kSeed = {1, 2};

RateLimiterOptions one_rule(uint64_t interval_ms, uint32_t burst, uint32_t capacity = 64) {
  RateLimiterOptions o;
  o.rules[0] = {interval_ms, burst};
  o.rule_count = 1;
  o.capacity = capacity;
  return o;
}

TEST(RateLimiterTest, OnePerMinuteBoundary) {
  RateLimiter limiter(one_rule(60'000, 1), kSeed);
  RateKey k{0, 15551234567};
  const uint64_t t0 = 1'000'000;
  EXPECT_TRUE(limiter.acquire(k, t0).allowed());
  RateDecision d = limiter.acquire(k, t0 + 59'999);
  EXPECT_EQ(d.verdict, RateVerdict::kLimited);
  EXPECT_EQ(d.retry_after_ms, 1u);
  d = limiter.acquire(k, t0 + 1);
  EXPECT_EQ(d.retry_after_ms, 59'999u);
  EXPECT_TRUE(limiter.acquire(k, t0 + 60'000).allowed());
  EXPECT_FALSE(limiter.acquire(k, t0 + 60'001).allowed());
}

TEST(RateLimiterTest, BurstThenSteadyRate) {
  RateLimiter limiter(one_rule(720'000, 5), kSeed);  // 5 per hour
  RateKey k{0, 1};
  const uint64_t t0 = 0;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.acquire(k, t0).allowed()) << i;
  RateDecision d = limiter.acquire(k, t0);
  EXPECT_EQ(d.verdict, RateVerdict::kLimited);
  EXPECT_EQ(d.retry_after_ms, 720'000u);
  EXPECT_FALSE(limiter.acquire(k, t0 + 719'999).allowed());
  EXPECT_TRUE(limiter.acquire(k, t0 + 720'000).allowed());
  EXPECT_FALSE(limiter.acquire(k, t0 + 720'000).allowed());
  // After a full hour of silence the whole burst is back.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.acquire(k, t0 + 10'000'000).allowed()) << i;
  EXPECT_FALSE(limiter.acquire(k, t0 + 10'000'000).allowed());
}

TEST(RateLimiterTest, EveryRuleMustAllowAndRefusalsConsumeNothing) {
  RateLimiter limiter(default_phone_limits(), kSeed);
  RateKey k{0, 42};
  uint64_t t = 0;
  // 1 per 60 s and at most 5 in the hour burst: the 6th at 60 s spacing is refused by rule 2.
  for (int i = 0; i < 5; ++i, t += 60'000) ASSERT_TRUE(limiter.acquire(k, t).allowed()) << i;
  RateDecision d = limiter.acquire(k, t);  // t = 300 s
  ASSERT_EQ(d.verdict, RateVerdict::kLimited);
  // Rule 2's TAT is 5 * 720 s = 3600 s; tolerance 4 * 720 s: allowed again at 720 s.
  EXPECT_EQ(d.retry_after_ms, 720'000u - 300'000u);
  // Hammering while refused changes nothing: the same wait, shrinking only with time.
  for (int i = 0; i < 100; ++i) (void)limiter.acquire(k, t);
  EXPECT_TRUE(limiter.acquire(k, 720'000).allowed());
  // The burst is spent: the hourly rule now runs at its steady rate, one per 12 min.
  d = limiter.acquire(k, 720'000 + 30'000);
  EXPECT_EQ(d.retry_after_ms, 690'000u);
  EXPECT_TRUE(limiter.acquire(k, 2 * 720'000).allowed());
}

TEST(RateLimiterTest, CheckDoesNotConsume) {
  RateLimiter limiter(one_rule(60'000, 1), kSeed);
  RateKey k{0, 7};
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.check(k, 0).allowed());
  EXPECT_EQ(limiter.size(), 0u);
  EXPECT_TRUE(limiter.acquire(k, 0).allowed());
  EXPECT_FALSE(limiter.check(k, 0).allowed());
  EXPECT_EQ(limiter.size(), 1u);
}

TEST(RateLimiterTest, FullTableRefusesNewKeysButServesKnownOnes) {
  RateLimiter limiter(one_rule(60'000, 2, /*capacity=*/4), kSeed);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(limiter.acquire({0, i}, 1000).allowed());
  EXPECT_EQ(limiter.size(), 4u);
  // A fifth key: every slot owes time, so it is refused (fail closed), with a wait that is when
  // the least recently used key recovers.
  RateDecision d = limiter.acquire({0, 99}, 2000);
  EXPECT_EQ(d.verdict, RateVerdict::kTableFull);
  EXPECT_EQ(d.retry_after_ms, 59'000u);
  EXPECT_EQ(limiter.check({0, 99}, 2000).verdict, RateVerdict::kTableFull);
  // Known keys keep their own state: the second request of the burst is allowed.
  EXPECT_TRUE(limiter.acquire({0, 2}, 2000).allowed());
  EXPECT_EQ(limiter.size(), 4u);
}

TEST(RateLimiterTest, RecoveredKeysAreEvictedLosslessly) {
  RateLimiter limiter(one_rule(60'000, 1, /*capacity=*/4), kSeed);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(limiter.acquire({0, i}, 1000 * i).allowed());
  // At 61 s only key 0 (TAT 60 s) and key 1 (TAT 61 s) have recovered: the new key takes a
  // slot, and the table never forgets a key that still owes time.
  EXPECT_TRUE(limiter.acquire({0, 100}, 61'000).allowed());
  EXPECT_LE(limiter.size(), 4u);
  EXPECT_FALSE(limiter.acquire({0, 2}, 61'000).allowed());  // TAT 62 s
  EXPECT_FALSE(limiter.acquire({0, 3}, 61'000).allowed());  // TAT 63 s
  EXPECT_FALSE(limiter.acquire({0, 100}, 61'000).allowed());
  // Key 0 was evicted while recovered: coming back, it is a fresh key, as it would have been.
  EXPECT_TRUE(limiter.acquire({0, 0}, 61'000).allowed());
  // Much later everything drains on its own (two evictions per call).
  for (uint64_t i = 0; i < 8; ++i) (void)limiter.check({0, 1000 + i}, 10'000'000);
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(RateLimiterTest, ManyKeysChurnThroughASmallTable) {
  RateLimiter limiter(one_rule(1000, 1, /*capacity=*/8), kSeed);
  uint64_t t = 0;
  for (uint64_t i = 0; i < 10'000; ++i, t += 200) {
    // 8 slots, each key owes 1 s, a new key every 200 ms: always a recovered slot to take.
    ASSERT_TRUE(limiter.acquire({0, i}, t).allowed()) << i;
    ASSERT_LE(limiter.size(), 8u);
  }
}

// A committed config revision changes the rules of a live table: known keys keep their TATs,
// and the next request is judged by the new rules at once.
TEST(RateLimiterTest, NewRulesApplyToKnownKeysAtOnce) {
  RateLimiter limiter(one_rule(60'000, 1), kSeed);
  RateKey k{0, 7};
  EXPECT_TRUE(limiter.acquire(k, 0).allowed());
  EXPECT_FALSE(limiter.acquire(k, 1).allowed());
  // Burst 3: TAT is 60 s ahead, the tolerance now 120 s, so two more fit right away.
  ASSERT_TRUE(limiter.set_rules(one_rule(60'000, 3)).ok());
  EXPECT_TRUE(limiter.acquire(k, 1).allowed());
  EXPECT_TRUE(limiter.acquire(k, 2).allowed());
  EXPECT_FALSE(limiter.acquire(k, 3).allowed());
  // Back to burst 1: the key's TAT is at 180 s, so it waits for all of it (nothing forgiven).
  ASSERT_TRUE(limiter.set_rules(one_rule(60'000, 1)).ok());
  RateDecision d = limiter.acquire(k, 3);
  EXPECT_EQ(d.verdict, RateVerdict::kLimited);
  EXPECT_EQ(d.retry_after_ms, 180'000u - 3);
  EXPECT_FALSE(limiter.acquire(k, 179'999).allowed());
  EXPECT_TRUE(limiter.acquire(k, 180'000).allowed());
  // The table keeps its size: capacity is a restart field.
  ASSERT_TRUE(limiter.set_rules(one_rule(60'000, 1, 4096)).ok());
  EXPECT_EQ(limiter.capacity(), 64u);
  EXPECT_EQ(limiter.options().capacity, 64u);
}

TEST(RateLimiterTest, InvalidRulesAreRefusedWithoutChange) {
  RateLimiter limiter(one_rule(60'000, 1), kSeed);
  RateLimiterOptions none = one_rule(60'000, 1);
  none.rule_count = 0;
  EXPECT_EQ(limiter.set_rules(none).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(limiter.set_rules(one_rule(0, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(limiter.set_rules(one_rule(1000, 0)).code(), absl::StatusCode::kInvalidArgument);
  RateLimiterOptions too_many = one_rule(60'000, 1);
  too_many.rule_count = kMaxRateRules + 1;
  EXPECT_EQ(limiter.set_rules(too_many).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(limiter.options().rules[0].interval_ms, 60'000u);
  EXPECT_EQ(limiter.options().rule_count, 1u);
}

TEST(SourceAddressTest, Ipv4IsWholeAddressIpv6IsSlash64) {
  auto a = SourceAddress::parse("192.0.2.1");
  auto b = SourceAddress::parse("192.0.2.2");
  auto mapped = SourceAddress::parse("::ffff:192.0.2.1");
  auto c = SourceAddress::parse("2001:db8:1:2::1");
  auto d = SourceAddress::parse("2001:db8:1:2:ffff:ffff:ffff:ffff");
  auto e = SourceAddress::parse("2001:db8:1:3::1");
  ASSERT_TRUE(a && b && mapped && c && d && e);
  EXPECT_FALSE(SourceAddress::parse("not an address"));
  EXPECT_NE(a->rate_key(), b->rate_key());
  EXPECT_EQ(a->rate_key(), mapped->rate_key());
  EXPECT_EQ(c->rate_key(), d->rate_key());
  EXPECT_NE(c->rate_key(), e->rate_key());
  EXPECT_NE(a->rate_key(), c->rate_key());

  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(0xc0000201);
  auto from_sock = SourceAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&in), sizeof in);
  ASSERT_TRUE(from_sock);
  EXPECT_EQ(from_sock->rate_key(), a->rate_key());
  EXPECT_FALSE(SourceAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&in), 4));
}

}  // namespace
}  // namespace herald::registration

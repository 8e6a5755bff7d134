// Tests for platform/clock: TSC calibration against CLOCK_MONOTONIC, conversions, monotonicity,
// the invariance check, and the fake clock.
#include "platform/clock/clock.h"

#include <gtest/gtest.h>
#include <time.h>

#include <cstdlib>
#include <random>

#include "platform/clock/tsc.h"

namespace herald::clock {
namespace {

void sleep_ms(uint64_t ms) {
  timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>((ms % 1000) * 1'000'000)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

uint64_t abs_diff(uint64_t a, uint64_t b) {
  return a > b ? a - b : b - a;
}

// tsc.now_ns() minus CLOCK_MONOTONIC, read between two monotonic reads; the tightest bracket of
// many tries, so a preemption between the reads (this machine is shared) cannot skew it.
struct Offset {
  uint64_t mono_ns;
  int64_t offset_ns;
};

Offset offset_from_monotonic(const TscClock& tsc) {
  Offset best{0, 0};
  uint64_t best_bracket = UINT64_MAX;
  for (int i = 0; i < 100; ++i) {
    uint64_t before = monotonic_ns();
    uint64_t t = tsc.now_ns();
    uint64_t after = monotonic_ns();
    if (after - before < best_bracket) {
      best_bracket = after - before;
      uint64_t mid = before + (after - before) / 2;
      best = {mid, static_cast<int64_t>(t - mid)};
    }
  }
  return best;
}

TEST(Cpuinfo, NeedsBothFlagsOnEveryCpu) {
  EXPECT_TRUE(cpuinfo_says_tsc_invariant(
      "processor\t: 0\nflags\t\t: fpu tsc constant_tsc nonstop_tsc sse4_2\n\n"
      "processor\t: 1\nflags\t\t: fpu tsc nonstop_tsc constant_tsc\n"));
  EXPECT_FALSE(cpuinfo_says_tsc_invariant("flags\t\t: fpu tsc constant_tsc sse4_2\n"));
  EXPECT_FALSE(cpuinfo_says_tsc_invariant("flags\t\t: fpu tsc nonstop_tsc\n"));
  // One CPU without the flags spoils it.
  EXPECT_FALSE(
      cpuinfo_says_tsc_invariant("flags\t\t: constant_tsc nonstop_tsc\nflags\t\t: constant_tsc\n"));
  // Whole tokens only.
  EXPECT_FALSE(cpuinfo_says_tsc_invariant("flags\t\t: xconstant_tsc nonstop_tscx\n"));
  EXPECT_FALSE(cpuinfo_says_tsc_invariant(""));
  EXPECT_FALSE(cpuinfo_says_tsc_invariant("processor : 0\nmodel name : x\n"));
}

TEST(TscClock, ConversionsAtKnownFrequency) {
  TscClock tsc = TscClock::from_hz(2'500'000'000, 1000, 5'000'000'000);
  EXPECT_EQ(tsc.hz(), 2'500'000'000u);
  EXPECT_EQ(tsc.cycles_to_ns(2'500'000'000), 1'000'000'000u);
  EXPECT_EQ(tsc.ns_to_cycles(1'000'000'000), 2'500'000'000u);
  EXPECT_EQ(tsc.to_ns(1000), 5'000'000'000u);
  EXPECT_EQ(tsc.to_ns(1000 + 2'500), 5'000'001'000u);
  // Before the anchor, and saturating at zero.
  EXPECT_EQ(tsc.to_ns(1000 - 250 + 0), 5'000'000'000u - 100);
  TscClock early = TscClock::from_hz(1'000'000'000, 1'000'000, 10);
  EXPECT_EQ(early.to_ns(0), 0u);
}

TEST(TscClock, NoOverflowOverLongUptimes) {
  // Ten years of cycles at 5 GHz is ~1.6e18: far past where a 64-bit product would wrap.
  for (uint64_t hz : {100'000'000ull, 1'000'000'000ull, 2'596'098'000ull, 5'000'000'000ull}) {
    TscClock tsc = TscClock::from_hz(hz, 0, 0);
    constexpr uint64_t kTenYearsNs = 10ull * 365 * 24 * 3600 * 1'000'000'000;
    uint64_t cycles = tsc.ns_to_cycles(kTenYearsNs);
    // cycles = ns * hz / 1e9, within rounding.
    __extension__ unsigned __int128 exact =
        static_cast<unsigned __int128>(kTenYearsNs) * hz / 1'000'000'000;
    EXPECT_LE(abs_diff(cycles, static_cast<uint64_t>(exact)),
              static_cast<uint64_t>(exact) / 1'000'000'000 + 1)
        << hz;
    EXPECT_LE(abs_diff(tsc.cycles_to_ns(cycles), kTenYearsNs), kTenYearsNs / 1'000'000'000 + 2)
        << hz;
  }
  // Results that do not fit saturate instead of wrapping.
  EXPECT_EQ(TscClock::from_hz(100'000'000, 0, 0).cycles_to_ns(UINT64_MAX), UINT64_MAX);
  EXPECT_EQ(TscClock::from_hz(5'000'000'000, 0, 0).ns_to_cycles(UINT64_MAX), UINT64_MAX);
  // ...and those that fit are right: 2^64-1 cycles at 4 GHz is (2^64-1)/4 ns.
  EXPECT_LE(
      abs_diff(TscClock::from_hz(4'000'000'000, 0, 0).cycles_to_ns(UINT64_MAX), UINT64_MAX / 4),
      UINT64_MAX / 4 / 1'000'000'000);
}

TEST(TscClock, RoundTripsWithinRounding) {
  std::mt19937_64 rng(42);
  for (uint64_t hz : {100'000'000ull, 999'999'937ull, 2'596'098'000ull, 19'000'000'000ull}) {
    TscClock tsc = TscClock::from_hz(hz, rng(), rng() >> 2);
    for (int i = 0; i < 10'000; ++i) {
      uint64_t ns = rng() >> (rng() % 64);  // all magnitudes
      ns &= (uint64_t{1} << 59) - 1;        // keep cycles within 64 bits at 19 GHz
      uint64_t back = tsc.cycles_to_ns(tsc.ns_to_cycles(ns));
      // Two roundings of < 1 unit each, plus the Q32.32 multipliers' relative error (< 1e-9).
      uint64_t tolerance = 2 + ns / 500'000'000 + (1'000'000'000 / hz);
      ASSERT_LE(abs_diff(back, ns), tolerance) << "hz=" << hz << " ns=" << ns;
    }
  }
}

TEST(TscClock, CalibrationAgreesWithMonotonicOverASleep) {
  if (!tsc_is_invariant()) GTEST_SKIP() << "TSC not invariant on this machine";
  std::optional<TscClock> measured = TscClock::measure();
  ASSERT_TRUE(measured.has_value());
  EXPECT_EQ(measured->source(), TscFrequencySource::kMeasured);
  std::optional<TscClock> calibrated = TscClock::calibrate();
  ASSERT_TRUE(calibrated.has_value());
  // Whatever the source, the frequency agrees with measurement within 0.5%.
  EXPECT_LE(abs_diff(calibrated->hz(), measured->hz()), measured->hz() / 200)
      << tsc_frequency_source_name(calibrated->source());

  for (const TscClock& tsc : {*measured, *calibrated}) {
    Offset start = offset_from_monotonic(tsc);
    // Same time line: right after calibration the two agree closely (generous: 1 ms).
    EXPECT_LE(start.offset_ns < 0 ? -start.offset_ns : start.offset_ns, 1'000'000);
    sleep_ms(200);
    Offset end = offset_from_monotonic(tsc);
    uint64_t elapsed_ns = end.mono_ns - start.mono_ns;
    int64_t drift_ns = end.offset_ns - start.offset_ns;
    // Over 200+ ms the TSC clock drifts from CLOCK_MONOTONIC by the frequency error (a few
    // ppm). Allowed: 0.1% plus 100 us. Each reading is bracketed, so preemption cannot skew it.
    EXPECT_LE(drift_ns < 0 ? -drift_ns : drift_ns,
              static_cast<int64_t>(elapsed_ns / 1000 + 100'000))
        << "elapsed=" << elapsed_ns << " drift=" << drift_ns;
  }
}

TEST(TscClock, NowIsMonotonic) {
  if (!tsc_is_invariant()) GTEST_SKIP() << "TSC not invariant on this machine";
  TscClock tsc = TscClock::calibrate().value();
  uint64_t last = tsc.now_ns();
  for (int i = 0; i < 1'000'000; ++i) {
    uint64_t now = tsc.now_ns();
    ASSERT_GE(now, last);
    last = now;
  }
}

TEST(TscClock, FencedReadsAreOrdered) {
  uint64_t a = read_tsc_start();
  uint64_t b = read_tsc_end();
  uint64_t c = read_tsc();
  EXPECT_LE(a, b);
  EXPECT_LE(b, c);
}

TEST(MonotonicClock, NeverGoesBackwards) {
  uint64_t last = monotonic_ns();
  for (int i = 0; i < 100'000; ++i) {
    uint64_t now = monotonic_ns();
    ASSERT_GE(now, last);
    last = now;
  }
}

TEST(Clock, ProcessClockIsRealAndMonotonic) {
  const Clock& clock = Clock::process();
  EXPECT_NE(clock.kind(), Clock::Kind::kFake);
  EXPECT_EQ(clock.kind(), tsc_is_invariant() ? Clock::Kind::kTsc : Clock::Kind::kMonotonic);
  uint64_t a = clock.now_ns();
  sleep_ms(5);
  uint64_t b = clock.now_ns();
  EXPECT_GE(b - a, 4'000'000u);
  EXPECT_LE(abs_diff(b, monotonic_ns()), 50'000'000u);  // same time line
}

TEST(Clock, MonotonicKindReadsClockMonotonic) {
  Clock clock = Clock::monotonic();
  EXPECT_EQ(clock.kind(), Clock::Kind::kMonotonic);
  uint64_t before = monotonic_ns();
  uint64_t now = clock.now_ns();
  uint64_t after = monotonic_ns();
  EXPECT_GE(now, before);
  EXPECT_LE(now, after);
}

TEST(FakeClock, MovesOnlyWhenTold) {
  FakeClock fake(1'000);
  Clock clock = Clock::fake(&fake);
  EXPECT_EQ(clock.kind(), Clock::Kind::kFake);
  EXPECT_EQ(clock.now_ns(), 1'000u);
  sleep_ms(1);
  EXPECT_EQ(clock.now_ns(), 1'000u);
  fake.advance_ns(500);
  EXPECT_EQ(clock.now_ns(), 1'500u);
  fake.set_ns(10'000);
  EXPECT_EQ(clock.now_ns(), 10'000u);
  fake.set_ns(10'000);  // standing still is allowed
  EXPECT_EQ(fake.now_ns(), 10'000u);
  Clock copy = clock;  // copies read the same fake
  fake.advance_ns(1);
  EXPECT_EQ(copy.now_ns(), 10'001u);
}

TEST(FakeClockDeathTest, BackwardsIsABug) {
  FakeClock fake(100);
  EXPECT_DEATH(fake.set_ns(99), "backwards");
}

TEST(Clock, KindNames) {
  EXPECT_EQ(clock_kind_name(Clock::Kind::kTsc), "tsc");
  EXPECT_EQ(clock_kind_name(Clock::Kind::kMonotonic), "monotonic");
  EXPECT_EQ(clock_kind_name(Clock::Kind::kFake), "fake");
}

}  // namespace
}  // namespace herald::clock

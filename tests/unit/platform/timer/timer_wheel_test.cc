// Edge cases of the timer wheel: rounding, overdue deadlines, level and revolution boundaries,
// the overflow list, callbacks that cancel/re-arm/release, huge jumps, pool limits.
#include "platform/timer/timer_wheel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace herald::timer {
namespace {

// Records the ids that fire, in order.
struct Recorder {
  std::vector<TimerId> fired;
};

void record(TimerWheel&, TimerId id, uint64_t arg) {
  reinterpret_cast<Recorder*>(arg)->fired.push_back(id);
}

uint64_t as_arg(void* p) {
  return reinterpret_cast<uint64_t>(p);
}

TimerWheelConfig config(uint32_t capacity, uint64_t tick_ns, uint32_t levels = 4,
                        uint64_t start_ns = 0) {
  TimerWheelConfig c;
  c.capacity = capacity;
  c.tick_ns = tick_ns;
  c.levels = levels;
  c.start_ns = start_ns;
  return c;
}

TEST(TimerWheel, DeadlineRoundsUpToATickAndNeverFiresEarly) {
  TimerWheel wheel(config(4, 1000));
  Recorder rec;
  TimerId t = wheel.alloc(record, as_arg(&rec));
  ASSERT_NE(t, kInvalidTimerId);
  wheel.schedule(t, 1500);
  EXPECT_TRUE(wheel.armed(t));
  EXPECT_EQ(wheel.expiry_ns(t), 2000u);
  EXPECT_EQ(wheel.advance(1500), 0u);  // the deadline itself is not yet a tick boundary
  EXPECT_EQ(wheel.advance(1999), 0u);
  EXPECT_EQ(wheel.advance(2000), 1u);
  EXPECT_EQ(rec.fired, std::vector<TimerId>{t});
  EXPECT_FALSE(wheel.armed(t));
  EXPECT_EQ(wheel.advance(100'000), 0u);  // fires once
}

TEST(TimerWheel, DeadlineOnATickBoundaryFiresAtIt) {
  TimerWheel wheel(config(4, 1000));
  Recorder rec;
  TimerId t = wheel.alloc(record, as_arg(&rec));
  wheel.schedule(t, 3000);
  EXPECT_EQ(wheel.expiry_ns(t), 3000u);
  EXPECT_EQ(wheel.advance(2999), 0u);
  EXPECT_EQ(wheel.advance(3000), 1u);
}

TEST(TimerWheel, OverdueAndNowDeadlinesFireOnTheNextAdvanceEvenAtTheSameNow) {
  TimerWheel wheel(config(8, 1000, 4, 50'500));
  Recorder rec;
  TimerId now_timer = wheel.alloc(record, as_arg(&rec));
  TimerId past_timer = wheel.alloc(record, as_arg(&rec));
  TimerId zero_timer = wheel.alloc(record, as_arg(&rec));
  TimerId later = wheel.alloc(record, as_arg(&rec));
  wheel.schedule(later, 50'600);  // same tick as now, but in the future: waits for tick 51
  wheel.schedule(now_timer, 50'500);
  wheel.schedule(past_timer, 10'000);
  wheel.schedule(zero_timer, 0);
  EXPECT_EQ(wheel.next_wakeup_ns(), 50'500u);
  EXPECT_EQ(wheel.advance(50'500), 3u);
  std::vector<TimerId> fired = rec.fired;
  std::sort(fired.begin(), fired.end());
  EXPECT_EQ(fired, (std::vector<TimerId>{now_timer, past_timer, zero_timer}));
  EXPECT_TRUE(wheel.armed(later));
  EXPECT_EQ(wheel.advance(50'999), 0u);
  EXPECT_EQ(wheel.advance(51'000), 1u);
}

TEST(TimerWheel, OverdueFireBeforeTimersDueInTheSameAdvance) {
  TimerWheel wheel(config(4, 1));
  Recorder rec;
  TimerId due = wheel.alloc(record, as_arg(&rec));
  TimerId overdue = wheel.alloc(record, as_arg(&rec));
  wheel.schedule(due, 5);
  EXPECT_EQ(wheel.advance(3), 0u);
  wheel.schedule(overdue, 2);
  EXPECT_EQ(wheel.advance(10), 2u);
  EXPECT_EQ(rec.fired, (std::vector<TimerId>{overdue, due}));
}

// Deadlines exactly on, just before and just after each level's span and the top level's
// revolution, from several starting points (including just before a revolution ends).
TEST(TimerWheel, LevelAndRevolutionBoundaries) {
  std::vector<uint64_t> distances;
  for (int k = 1; k <= 5; ++k) {
    uint64_t span = uint64_t{1} << (8 * k);
    for (uint64_t d : {span - 1, span, span + 1}) distances.push_back(d);
  }
  distances.push_back(1);
  distances.push_back(2);
  distances.push_back(uint64_t{1} << 40);
  for (uint32_t levels : {1u, 2u, 4u}) {
    for (uint64_t start : {uint64_t{0}, uint64_t{255}, uint64_t{65'535 + 100},
                           (uint64_t{1} << 32) - 3, (uint64_t{1} << 16) - 1}) {
      for (uint64_t distance : distances) {
        SCOPED_TRACE(testing::Message()
                     << "levels=" << levels << " start=" << start << " distance=" << distance);
        TimerWheel wheel(config(2, 1, levels, start));
        Recorder rec;
        TimerId t = wheel.alloc(record, as_arg(&rec));
        wheel.schedule(t, start + distance);
        // Walk time forward the way an idle event loop would: sleep to next_wakeup_ns(),
        // which must never be later than the deadline, and must make progress.
        const uint64_t deadline = start + distance;
        int steps = 0;
        for (;;) {
          uint64_t wake = wheel.next_wakeup_ns();
          ASSERT_LE(wake, deadline);
          ASSERT_GT(wake, wheel.now_ns());
          if (wake == deadline) break;
          ASSERT_EQ(wheel.advance(wake), 0u);
          ASSERT_LT(++steps, 1000);
        }
        ASSERT_EQ(wheel.advance(deadline - 1), 0u);
        ASSERT_EQ(wheel.advance(deadline), 1u);
        ASSERT_EQ(rec.fired.size(), 1u);
        // One move per level at most, plus one re-filing from the overflow list: distance
        // costs no per-tick or per-revolution work.
        EXPECT_LE(steps, static_cast<int>(levels) + 1);
      }
    }
  }
}

TEST(TimerWheel, OneAdvanceAcrossEveryBoundaryFiresInOrder) {
  for (uint32_t levels : {1u, 3u, 4u}) {
    TimerWheel wheel(config(64, 1, levels, 12'345));
    Recorder rec;
    std::vector<uint64_t> deadlines;
    for (int k = 0; k <= 5; ++k) {
      uint64_t span = uint64_t{1} << (8 * k);
      for (uint64_t d : {span - 1, span, span + 1}) {
        if (d == 0) continue;
        TimerId t = wheel.alloc(record, as_arg(&rec));
        wheel.schedule(t, 12'345 + d);
        deadlines.push_back(12'345 + d);
      }
    }
    EXPECT_EQ(wheel.advance(12'345 + (uint64_t{1} << 40) + 1), deadlines.size());
    ASSERT_EQ(rec.fired.size(), deadlines.size());
    for (size_t i = 1; i < rec.fired.size(); ++i) {
      EXPECT_LE(deadlines[rec.fired[i - 1]], deadlines[rec.fired[i]]) << "levels=" << levels;
    }
  }
}

TEST(TimerWheel, FarDeadlinesUseTheOverflowListAndStillFireExactly) {
  // One level of 256 one-nanosecond ticks: everything further than the current revolution
  // overflows.
  TimerWheel wheel(config(8, 1, 1));
  EXPECT_EQ(wheel.revolution_ns(), 256u);
  Recorder rec;
  std::vector<uint64_t> deadlines = {300, 70'000, uint64_t{1} << 40, (uint64_t{1} << 40) + 1};
  for (uint64_t d : deadlines) wheel.schedule(wheel.alloc(record, as_arg(&rec)), d);
  for (uint64_t d : deadlines) {
    EXPECT_EQ(wheel.advance(d - 1), 0u) << d;
    EXPECT_EQ(wheel.advance(d), 1u) << d;
  }
  EXPECT_EQ(wheel.armed_count(), 0u);
}

TEST(TimerWheel, NeverDeadlineStaysArmed) {
  TimerWheel wheel(config(2, 1'000'000));
  Recorder rec;
  TimerId t = wheel.alloc(record, as_arg(&rec));
  wheel.schedule(t, UINT64_MAX);
  EXPECT_EQ(wheel.expiry_ns(t), UINT64_MAX);  // the rounded-up tick saturates
  EXPECT_EQ(wheel.advance(uint64_t{1} << 62), 0u);
  EXPECT_TRUE(wheel.armed(t));
  EXPECT_TRUE(wheel.cancel(t));
  wheel.schedule_after(t, UINT64_MAX);  // saturates rather than wrapping into the past
  EXPECT_EQ(wheel.advance((uint64_t{1} << 62) + 1), 0u);
  EXPECT_TRUE(wheel.armed(t));
}

TEST(TimerWheel, RescheduleMovesTheTimer) {
  TimerWheel wheel(config(2, 1));
  Recorder rec;
  TimerId t = wheel.alloc(record, as_arg(&rec));
  wheel.schedule(t, 100);
  wheel.schedule(t, 50);
  EXPECT_EQ(wheel.armed_count(), 1u);
  EXPECT_EQ(wheel.advance(49), 0u);
  EXPECT_EQ(wheel.advance(50), 1u);
  wheel.schedule(t, 100'000);
  wheel.schedule(t, 200'000);
  EXPECT_EQ(wheel.advance(199'999), 0u);
  EXPECT_EQ(wheel.advance(200'000), 1u);
  // Rescheduling an overdue timer into the future takes it off the overdue list.
  wheel.schedule(t, 0);
  wheel.schedule(t, 200'010);
  EXPECT_EQ(wheel.advance(200'009), 0u);
  EXPECT_EQ(wheel.advance(200'010), 1u);
}

TEST(TimerWheel, CancelReportsWhetherArmed) {
  TimerWheel wheel(config(2, 1));
  Recorder rec;
  TimerId t = wheel.alloc(record, as_arg(&rec));
  EXPECT_FALSE(wheel.cancel(t));
  wheel.schedule(t, 10);
  EXPECT_TRUE(wheel.cancel(t));
  EXPECT_FALSE(wheel.cancel(t));
  EXPECT_EQ(wheel.advance(100), 0u);
  EXPECT_TRUE(rec.fired.empty());
}

// Timers due in the same tick cancel each other: whichever fires first cancels the rest.
struct CancelOthers {
  TimerId ids[3];
  std::vector<TimerId> fired;
  int cancelled = 0;
};

void cancel_others(TimerWheel& wheel, TimerId id, uint64_t arg) {
  auto* s = reinterpret_cast<CancelOthers*>(arg);
  s->fired.push_back(id);
  EXPECT_FALSE(wheel.cancel(id));  // already idle while its callback runs
  for (TimerId other : s->ids) {
    if (other != id && wheel.cancel(other)) ++s->cancelled;
  }
}

TEST(TimerWheel, CancelDuringFire) {
  TimerWheel wheel(config(4, 1));
  CancelOthers s;
  for (TimerId& id : s.ids) {
    id = wheel.alloc(cancel_others, as_arg(&s));
    wheel.schedule(id, 1000);
  }
  EXPECT_EQ(wheel.advance(5000), 1u);
  EXPECT_EQ(s.fired.size(), 1u);
  EXPECT_EQ(s.cancelled, 2);
  EXPECT_EQ(wheel.armed_count(), 0u);
}

// A periodic timer: re-arms itself `period` after the wheel's now.
struct Periodic {
  uint64_t period_ns;
  std::vector<uint64_t> fired_at;
};

void periodic(TimerWheel& wheel, TimerId id, uint64_t arg) {
  auto* p = reinterpret_cast<Periodic*>(arg);
  p->fired_at.push_back(wheel.now_ns());
  wheel.schedule_after(id, p->period_ns);
}

TEST(TimerWheel, RescheduleFromCallback) {
  TimerWheel wheel(config(2, 1));
  Periodic p{10, {}};
  TimerId t = wheel.alloc(periodic, as_arg(&p));
  wheel.schedule_after(t, 10);
  for (uint64_t now = 1; now <= 100; ++now) (void)wheel.advance(now);
  EXPECT_EQ(p.fired_at, (std::vector<uint64_t>{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}));
  // A timer re-armed inside advance() never fires again in that advance(), however far it
  // jumps: one firing, re-armed relative to the new now.
  EXPECT_EQ(wheel.advance(1000), 1u);
  EXPECT_EQ(p.fired_at.back(), 1000u);
  EXPECT_EQ(wheel.expiry_ns(t), 1010u);
}

void rearm_for_now(TimerWheel& wheel, TimerId id, uint64_t arg) {
  ++*reinterpret_cast<int*>(arg);
  wheel.schedule(id, wheel.now_ns());  // overdue at once
}

TEST(TimerWheel, RearmForNowFromCallbackFiresOncePerAdvance) {
  TimerWheel wheel(config(2, 1000));
  int count = 0;
  TimerId t = wheel.alloc(rearm_for_now, as_arg(&count));
  wheel.schedule(t, 0);
  EXPECT_EQ(wheel.advance(0), 1u);
  EXPECT_EQ(wheel.advance(0), 1u);
  EXPECT_EQ(wheel.advance(7), 1u);
  EXPECT_EQ(count, 3);
  EXPECT_TRUE(wheel.armed(t));
}

// At tick 5 of an advance to 10, a callback arms another timer for tick 7: already passed by
// the time the advance ends? No: it is <= now, so overdue, and waits for the next call.
struct ArmOther {
  TimerId other;
  uint64_t deadline_ns;
  Recorder* rec;
};

void arm_other(TimerWheel& wheel, TimerId id, uint64_t arg) {
  auto* a = reinterpret_cast<ArmOther*>(arg);
  a->rec->fired.push_back(id);
  wheel.schedule(a->other, a->deadline_ns);
}

TEST(TimerWheel, TimersArmedDuringAdvanceWaitForTheNextOne) {
  TimerWheel wheel(config(4, 1));
  Recorder rec;
  TimerId other = wheel.alloc(record, as_arg(&rec));
  ArmOther a{other, 7, &rec};
  TimerId first = wheel.alloc(arm_other, as_arg(&a));
  wheel.schedule(first, 5);
  EXPECT_EQ(wheel.advance(10), 1u);
  EXPECT_EQ(rec.fired, std::vector<TimerId>{first});
  EXPECT_EQ(wheel.advance(10), 1u);
  EXPECT_EQ(rec.fired, (std::vector<TimerId>{first, other}));
  // And armed for later than now: fires at its time.
  a.deadline_ns = 15;
  wheel.schedule(first, 12);
  EXPECT_EQ(wheel.advance(14), 1u);
  EXPECT_EQ(wheel.advance(15), 1u);
}

struct ReleaseState {
  TimerId other;
  int fired = 0;
};

void release_self_and_other(TimerWheel& wheel, TimerId id, uint64_t arg) {
  auto* r = reinterpret_cast<ReleaseState*>(arg);
  ++r->fired;
  wheel.release(id);
  if (r->other != kInvalidTimerId) {
    wheel.release(r->other);
    r->other = kInvalidTimerId;
  }
}

TEST(TimerWheel, ReleaseFromCallback) {
  TimerWheel wheel(config(3, 1));
  ReleaseState r;
  TimerId a = wheel.alloc(release_self_and_other, as_arg(&r));
  TimerId b = wheel.alloc(release_self_and_other, as_arg(&r));
  r.other = b;
  wheel.schedule(a, 5);
  wheel.schedule(b, 5);  // same tick: whichever fires first releases the other
  EXPECT_EQ(wheel.allocated_count(), 2u);
  EXPECT_EQ(wheel.advance(5), 1u);
  EXPECT_EQ(r.fired, 1);
  EXPECT_EQ(wheel.allocated_count(), 0u);
  EXPECT_EQ(wheel.armed_count(), 0u);
  // Both ids went back to the pool.
  Recorder rec;
  EXPECT_NE(wheel.alloc(record, as_arg(&rec)), kInvalidTimerId);
  EXPECT_NE(wheel.alloc(record, as_arg(&rec)), kInvalidTimerId);
  EXPECT_NE(wheel.alloc(record, as_arg(&rec)), kInvalidTimerId);
  EXPECT_EQ(wheel.alloc(record, as_arg(&rec)), kInvalidTimerId);
}

TEST(TimerWheel, PoolExhaustionIsAnError) {
  TimerWheel wheel(config(3, 1));
  Recorder rec;
  TimerId ids[3];
  for (TimerId& id : ids) {
    id = wheel.alloc(record, as_arg(&rec));
    ASSERT_NE(id, kInvalidTimerId);
  }
  EXPECT_EQ(wheel.alloc(record, as_arg(&rec)), kInvalidTimerId);
  EXPECT_EQ(wheel.allocated_count(), 3u);
  wheel.schedule(ids[1], 10);
  wheel.release(ids[1]);  // releases an armed timer: cancelled
  EXPECT_EQ(wheel.armed_count(), 0u);
  TimerId again = wheel.alloc(record, as_arg(&rec));
  EXPECT_EQ(again, ids[1]);
  EXPECT_FALSE(wheel.armed(again));
  EXPECT_EQ(wheel.advance(100), 0u);
}

TEST(TimerWheel, HugeJumpFiresEverythingInExpiryOrder) {
  std::mt19937_64 rng(1234);
  TimerWheel wheel(config(20'000, 1, 4));
  Recorder rec;
  std::vector<uint64_t> expiry(20'000);
  for (uint32_t i = 0; i < 20'000; ++i) {
    TimerId t = wheel.alloc(record, as_arg(&rec));
    uint64_t deadline = 1 + (rng() >> (19 + rng() % 45));  // up to 2^45 ns, all magnitudes
    wheel.schedule(t, deadline);
    expiry[t] = wheel.expiry_ns(t);
  }
  EXPECT_EQ(wheel.advance(uint64_t{1} << 46), 20'000u);
  ASSERT_EQ(rec.fired.size(), 20'000u);
  for (size_t i = 1; i < rec.fired.size(); ++i) {
    ASSERT_LE(expiry[rec.fired[i - 1]], expiry[rec.fired[i]]) << i;
  }
  EXPECT_EQ(wheel.next_wakeup_ns(), UINT64_MAX);
}

TEST(TimerWheel, NextWakeupNeverLate) {
  TimerWheel wheel(config(4, 1'000'000));  // 1 ms
  Recorder rec;
  EXPECT_EQ(wheel.next_wakeup_ns(), UINT64_MAX);
  TimerId t = wheel.alloc(record, as_arg(&rec));
  wheel.schedule(t, 7'200'000'000'000);  // two hours
  uint64_t wake = wheel.next_wakeup_ns();
  EXPECT_LE(wake, 7'200'000'000'000u);
  EXPECT_GT(wake, 0u);
  wheel.schedule(t, 5);
  EXPECT_EQ(wheel.next_wakeup_ns(), 1'000'000u);
  wheel.schedule(t, 0);  // overdue
  EXPECT_EQ(wheel.next_wakeup_ns(), wheel.now_ns());
  EXPECT_TRUE(wheel.cancel(t));
  EXPECT_EQ(wheel.next_wakeup_ns(), UINT64_MAX);
}

TEST(TimerWheel, TimeNeverGoesBackwards) {
  TimerWheel wheel(config(2, 10));
  Recorder rec;
  TimerId t = wheel.alloc(record, as_arg(&rec));
  EXPECT_EQ(wheel.advance(1000), 0u);
  EXPECT_EQ(wheel.advance(500), 0u);
  EXPECT_EQ(wheel.now_ns(), 1000u);
  wheel.schedule_after(t, 100);
  EXPECT_EQ(wheel.expiry_ns(t), 1100u);
  EXPECT_EQ(wheel.advance(600), 0u);
  EXPECT_EQ(wheel.advance(1100), 1u);
}

TEST(TimerWheel, CoarseTicksForTheControlPlane) {
  TimerWheel wheel(config(4, 10'000'000, 4, 1'000'000'000));  // 10 ms ticks, start at 1 s
  Recorder rec;
  TimerId t = wheel.alloc(record, as_arg(&rec));
  wheel.schedule_after(t, 25'000'000);  // 25 ms -> fires at the 30 ms boundary
  EXPECT_EQ(wheel.expiry_ns(t), 1'030'000'000u);
  EXPECT_EQ(wheel.advance(1'029'999'999), 0u);
  EXPECT_EQ(wheel.advance(1'030'000'000), 1u);
}

TEST(TimerWheel, SetCallbackChangesWhatFires) {
  TimerWheel wheel(config(2, 1));
  Recorder first, second;
  TimerId t = wheel.alloc(record, as_arg(&first));
  wheel.set_callback(t, record, as_arg(&second));
  wheel.schedule(t, 3);
  EXPECT_EQ(wheel.advance(3), 1u);
  EXPECT_TRUE(first.fired.empty());
  EXPECT_EQ(second.fired, std::vector<TimerId>{t});
}

void advance_again(TimerWheel& wheel, TimerId, uint64_t) {
  (void)wheel.advance(1'000'000);
}

TEST(TimerWheelDeathTest, AdvanceFromACallbackIsABug) {
  TimerWheel wheel(config(2, 1));
  TimerId t = wheel.alloc(advance_again, 0);
  wheel.schedule(t, 1);
  EXPECT_DEATH((void)wheel.advance(5), "callback");
}

TEST(TimerWheelDeathTest, BadIdsAndConfigsAreBugs) {
  TimerWheel wheel(config(2, 1));
  EXPECT_DEATH(wheel.schedule(2, 5), "out of range");
  EXPECT_DEATH(TimerWheel(config(0, 1)), "capacity");
  EXPECT_DEATH(TimerWheel(config(1, 0)), "tick_ns");
  EXPECT_DEATH(TimerWheel(config(1, 1, 8)), "levels");
}

}  // namespace
}  // namespace herald::timer

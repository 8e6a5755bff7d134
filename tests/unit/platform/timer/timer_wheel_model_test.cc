// The timer wheel against a naive reference model, driven by the same seeded random stream of
// schedule / cancel / reschedule / release / advance operations, with callbacks that themselves
// re-arm, cancel and arm other timers. Any failure names its seed and config; replay one with
//   HERALD_TIMER_SEED=<seed> HERALD_TIMER_CONFIG=<config> ./timer_wheel_model_test
// Also a scale test with a million live timers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "platform/timer/timer_wheel.h"

namespace herald::timer {
namespace {

struct ModelConfig {
  uint32_t levels;
  uint64_t tick_ns;
  uint32_t timers;
};

// Small wheels make every path common: one level (everything far overflows), odd ticks.
constexpr ModelConfig kConfigs[] = {
    {1, 1, 64},
    {2, 3, 128},
    {4, 1000, 256},
    {3, 1'000'000, 200},
};

// What a timer's callback does, beyond being recorded. Chosen per timer from the seed.
enum class Action : uint8_t {
  kNothing,
  kRearmSelfLater,  // schedule_after(self, delay)
  kRearmSelfNow,    // schedule(self, now): overdue, must wait for the next advance
  kCancelOther,
  kScheduleOther,
  kReleaseSelf,
};

// The model: what each timer's state should be, in the wheel's documented terms only.
struct ModelTimer {
  bool allocated = false;
  bool armed = false;
  bool overdue = false;           // deadline <= now when armed: fires on the next advance
  uint64_t expiry_tick = 0;       // ceil(deadline / tick)
  bool due_this_advance = false;  // in the set that the running advance() must fire
  Action action = Action::kNothing;
  uint32_t other = 0;
  uint64_t delay_ns = 0;
};

class ModelRun {
 public:
  ModelRun(const ModelConfig& config, uint64_t seed)
      : config_(config), rng_(seed), wheel_(make_config(config, seed)), model_(config.timers) {
    model_now_ = wheel_.now_ns();
  }

  // Runs `ops` operations; returns "" or the first discrepancy.
  std::string run(int ops) {
    for (uint32_t i = 0; i < config_.timers / 2; ++i) alloc_one();
    for (int op = 0; op < ops && error_.empty(); ++op) {
      uint64_t pick = rng_() % 100;
      if (pick < 30) {
        op_schedule();
      } else if (pick < 40) {
        op_cancel();
      } else if (pick < 45) {
        op_release_and_alloc();
      } else if (pick < 80) {
        op_advance(random_step());
      } else if (pick < 85) {
        op_advance_to_wakeup();
      } else {
        op_advance_to_an_expiry();
      }
      if (error_.empty()) check_states(op);
    }
    return error_;
  }

 private:
  static TimerWheelConfig make_config(const ModelConfig& config, uint64_t seed) {
    TimerWheelConfig c;
    c.capacity = config.timers;
    c.tick_ns = config.tick_ns;
    c.levels = config.levels;
    // Start anywhere, including just before a revolution of the top level ends.
    std::mt19937_64 start_rng(seed ^ 0x9E3779B97F4A7C15);
    uint64_t revolution = c.tick_ns << (8 * c.levels);
    c.start_ns = start_rng() % 2
                     ? start_rng() % (uint64_t{1} << 40)
                     : revolution * (1 + start_rng() % 4) - start_rng() % (4 * c.tick_ns);
    return c;
  }

  void fail(const std::string& what) {
    if (error_.empty()) error_ = what;
  }

  static void on_fire(TimerWheel& wheel, TimerId id, uint64_t arg) {
    reinterpret_cast<ModelRun*>(arg)->fired(wheel, id);
  }

  uint64_t random_distance_ns() {
    const uint64_t tick = config_.tick_ns;
    switch (rng_() % 6) {
      case 0: return 0;
      case 1: return rng_() % (3 * tick);
      case 2: {  // around a level's span: the boundaries where cascades happen
        uint64_t span = tick << (8 * (rng_() % (config_.levels + 1)));
        uint64_t jitter = rng_() % (2 * tick + 1);
        return rng_() % 2 ? span + jitter : (span > jitter ? span - jitter : 0);
      }
      case 3: return rng_() % (300 * tick);
      default: {
        // All magnitudes up to 2^50 ns (13 days): far past every small config's top level,
        // while 3000 operations cannot overflow the 64-bit clock.
        uint64_t bits = rng_() % 48;
        uint64_t distance = (rng_() & ((uint64_t{1} << bits) - 1)) * (1 + rng_() % tick);
        return std::min(distance, uint64_t{1} << 50);
      }
    }
  }

  uint64_t random_step() {
    switch (rng_() % 5) {
      case 0: return 0;
      case 1: return 1;
      case 2: return config_.tick_ns - 1;
      default: return random_distance_ns();
    }
  }

  void alloc_one() {
    std::vector<uint32_t> free_ids;
    for (uint32_t i = 0; i < config_.timers; ++i) {
      if (!model_[i].allocated) free_ids.push_back(i);
    }
    TimerId id = wheel_.alloc(on_fire, reinterpret_cast<uint64_t>(this));
    if (free_ids.empty()) {
      if (id != kInvalidTimerId) fail("alloc succeeded on a full pool");
      return;
    }
    if (id == kInvalidTimerId || id >= config_.timers || model_[id].allocated) {
      fail("alloc returned a bad id");
      return;
    }
    ModelTimer& m = model_[id];
    m = ModelTimer{};
    m.allocated = true;
    m.action = static_cast<Action>(rng_() % 6);
    m.other = static_cast<uint32_t>(rng_() % config_.timers);
    m.delay_ns = random_distance_ns();
  }

  // A random allocated timer, or -1.
  int64_t random_allocated() {
    for (int tries = 0; tries < 16; ++tries) {
      uint32_t id = static_cast<uint32_t>(rng_() % config_.timers);
      if (model_[id].allocated) return id;
    }
    return -1;
  }

  // Mirrors TimerWheel::schedule in the model.
  void model_schedule(uint32_t id, uint64_t deadline_ns, bool in_advance) {
    ModelTimer& m = model_[id];
    m.armed = true;
    m.overdue = deadline_ns <= model_now_;
    m.expiry_tick = deadline_ns / config_.tick_ns + (deadline_ns % config_.tick_ns != 0);
    m.due_this_advance = false;  // armed during an advance: never fires in it
    (void)in_advance;
  }

  void op_schedule() {
    int64_t id = random_allocated();
    if (id < 0) return;
    uint64_t deadline;
    if (rng_() % 8 == 0) {
      deadline = model_now_ > 0 ? model_now_ - rng_() % (model_now_ + 1) : 0;  // the past
    } else {
      deadline = model_now_ + random_distance_ns();
    }
    wheel_.schedule(static_cast<TimerId>(id), deadline);
    model_schedule(static_cast<uint32_t>(id), deadline, false);
  }

  void op_cancel() {
    int64_t id = random_allocated();
    if (id < 0) return;
    bool was = wheel_.cancel(static_cast<TimerId>(id));
    if (was != model_[id].armed) fail("cancel() result differs from the model");
    model_[id].armed = false;
  }

  void op_release_and_alloc() {
    int64_t id = random_allocated();
    if (id < 0) return;
    wheel_.release(static_cast<TimerId>(id));
    model_[id] = ModelTimer{};
    alloc_one();
  }

  void op_advance_to_wakeup() {
    uint64_t wake = wheel_.next_wakeup_ns();
    // next_wakeup_ns() is never later than the earliest firing the model expects.
    uint64_t earliest = UINT64_MAX;
    for (const ModelTimer& m : model_) {
      if (!m.armed) continue;
      earliest = std::min(earliest, m.overdue ? model_now_ : m.expiry_tick * config_.tick_ns);
    }
    if (wake > earliest) {
      fail("next_wakeup_ns() " + std::to_string(wake) + " later than the earliest expiry " +
           std::to_string(earliest));
      return;
    }
    if (earliest == UINT64_MAX && wake != UINT64_MAX) fail("next_wakeup_ns() with nothing armed");
    if (wake != UINT64_MAX) op_advance(wake - model_now_);
  }

  void op_advance_to_an_expiry() {
    int64_t id = random_allocated();
    if (id < 0 || !model_[id].armed || model_[id].overdue) return op_advance(1);
    uint64_t at = model_[id].expiry_tick * config_.tick_ns;
    if (rng_() % 2 && at > model_now_) --at;  // just before: must not fire yet
    op_advance(at > model_now_ ? at - model_now_ : 0);
  }

  void op_advance(uint64_t step_ns) {
    uint64_t now = model_now_ + step_ns;
    if (rng_() % 20 == 0 && model_now_ > 0) now = model_now_ - 1;  // a clock read from behind
    model_now_ = std::max(model_now_, now);
    const uint64_t target_tick = model_now_ / config_.tick_ns;
    due_left_ = 0;
    for (ModelTimer& m : model_) {
      m.due_this_advance = m.armed && (m.overdue || m.expiry_tick <= target_tick);
      if (m.due_this_advance) ++due_left_;
    }
    last_key_ = 0;
    fired_count_ = 0;
    uint64_t returned = wheel_.advance(now);
    if (returned != fired_count_) fail("advance() returned a count unlike its callbacks");
    if (due_left_ != 0) {
      std::ostringstream out;
      out << "advance(" << now << ") missed " << due_left_ << " due timer(s):";
      for (uint32_t i = 0; i < config_.timers; ++i) {
        if (model_[i].due_this_advance) {
          out << " id=" << i << " expiry_tick=" << model_[i].expiry_tick
              << " overdue=" << model_[i].overdue;
        }
      }
      fail(out.str());
    }
    if (wheel_.now_ns() != model_now_) fail("wheel now differs from the model's");
  }

  void fired(TimerWheel& wheel, TimerId id) {
    ++fired_count_;
    if (id >= config_.timers) return fail("fired an id out of range");
    ModelTimer& m = model_[id];
    if (!m.due_this_advance) {
      std::ostringstream out;
      out << "timer " << id << " fired but was not due: armed=" << m.armed
          << " overdue=" << m.overdue << " expiry_tick=" << m.expiry_tick << " now=" << model_now_;
      return fail(out.str());
    }
    // Order: overdue first (key 0), then non-decreasing expiry tick.
    uint64_t key = m.overdue ? 0 : m.expiry_tick;
    if (key < last_key_) return fail("timers fired out of expiry order");
    last_key_ = key;
    if (wheel.armed(id)) return fail("a firing timer is still armed in its callback");
    m.armed = false;
    m.due_this_advance = false;
    --due_left_;

    switch (m.action) {
      case Action::kNothing: break;
      case Action::kRearmSelfLater:
        wheel.schedule_after(id, m.delay_ns);
        model_schedule(id, model_now_ + m.delay_ns, true);
        break;
      case Action::kRearmSelfNow:
        wheel.schedule(id, wheel.now_ns());
        model_schedule(id, model_now_, true);
        break;
      case Action::kCancelOther:
        if (model_[m.other].allocated) {
          bool was = wheel.cancel(m.other);
          if (was != model_[m.other].armed) return fail("cancel() in a callback disagrees");
          if (model_[m.other].due_this_advance) --due_left_;
          model_[m.other].armed = false;
          model_[m.other].due_this_advance = false;
        }
        break;
      case Action::kScheduleOther:
        if (model_[m.other].allocated) {
          if (model_[m.other].due_this_advance) --due_left_;
          wheel.schedule(m.other, model_now_ + m.delay_ns);
          model_schedule(m.other, model_now_ + m.delay_ns, true);
        }
        break;
      case Action::kReleaseSelf:
        wheel.release(id);
        m = ModelTimer{};
        break;
    }
  }

  void check_states(int op) {
    uint32_t armed = 0, allocated = 0;
    for (uint32_t i = 0; i < config_.timers; ++i) {
      const ModelTimer& m = model_[i];
      if (!m.allocated) continue;
      ++allocated;
      if (wheel_.armed(i) != m.armed) {
        return fail("op " + std::to_string(op) + ": armed(" + std::to_string(i) +
                    ") differs from the model");
      }
      if (m.armed) {
        ++armed;
        uint64_t expect = m.expiry_tick > UINT64_MAX / config_.tick_ns
                              ? UINT64_MAX
                              : m.expiry_tick * config_.tick_ns;
        if (wheel_.expiry_ns(i) != expect) return fail("expiry_ns() differs from the model");
      }
    }
    if (armed != wheel_.armed_count()) fail("armed_count() differs from the model");
    if (allocated != wheel_.allocated_count()) fail("allocated_count() differs from the model");
  }

  const ModelConfig config_;
  std::mt19937_64 rng_;
  TimerWheel wheel_;
  std::vector<ModelTimer> model_;
  uint64_t model_now_ = 0;
  uint64_t due_left_ = 0;
  uint64_t last_key_ = 0;
  uint64_t fired_count_ = 0;
  std::string error_;
};

const char* env(const char* name) {
  return std::getenv(name);
}

TEST(TimerWheelModel, RandomOperationStreamsMatchTheModel) {
  constexpr int kSeedsPerConfig = 150;
  constexpr int kOpsPerSeed = 3000;
  const char* only_seed = env("HERALD_TIMER_SEED");
  const char* only_config = env("HERALD_TIMER_CONFIG");
  for (size_t c = 0; c < std::size(kConfigs); ++c) {
    if (only_config != nullptr && std::strtoull(only_config, nullptr, 10) != c) continue;
    for (uint64_t seed = 1; seed <= kSeedsPerConfig; ++seed) {
      if (only_seed != nullptr && std::strtoull(only_seed, nullptr, 10) != seed) continue;
      ModelRun run(kConfigs[c], seed);
      std::string error = run.run(kOpsPerSeed);
      ASSERT_TRUE(error.empty()) << error << "\n  replay: HERALD_TIMER_SEED=" << seed
                                 << " HERALD_TIMER_CONFIG=" << c;
    }
  }
}

// A million live timers, as one worker's TCP connections would hold: random deadlines over two
// hours at 1 ms ticks, with cancels and reschedules before and while time moves. Each timer
// must fire exactly once, in the first advance() that reaches its expiry.
struct ScaleState {
  std::vector<uint64_t> expiry_ns;  // 0: not armed
  std::vector<uint8_t> fired;
  uint64_t previous_now_ns = 0;
  uint64_t fired_count = 0;
  uint64_t bad = 0;
};

void scale_fire(TimerWheel& wheel, TimerId id, uint64_t arg) {
  auto* s = reinterpret_cast<ScaleState*>(arg);
  ++s->fired_count;
  uint64_t expiry = s->expiry_ns[id];
  // Never early, and not left behind by an earlier advance().
  if (expiry == 0 || expiry > wheel.now_ns() || expiry <= s->previous_now_ns || s->fired[id]) {
    ++s->bad;
  }
  s->fired[id] = 1;
  s->expiry_ns[id] = 0;
}

TEST(TimerWheelScale, MillionLiveTimers) {
  constexpr uint32_t kTimers = 1'000'000;
  constexpr uint64_t kTickNs = 1'000'000;
  constexpr uint64_t kSpanNs = 2ull * 3600 * 1'000'000'000;
  TimerWheelConfig config;
  config.capacity = kTimers;
  config.tick_ns = kTickNs;
  TimerWheel wheel(config);
  ScaleState s;
  s.expiry_ns.assign(kTimers, 0);
  s.fired.assign(kTimers, 0);
  std::mt19937_64 rng(77);
  auto arm = [&](TimerId id, uint64_t deadline) {
    wheel.schedule(id, deadline);
    s.expiry_ns[id] = wheel.expiry_ns(id);
    s.fired[id] = 0;
  };
  for (uint32_t i = 0; i < kTimers; ++i) {
    TimerId id = wheel.alloc(scale_fire, reinterpret_cast<uint64_t>(&s));
    ASSERT_EQ(id, i);
    arm(id, 1 + rng() % kSpanNs);
  }
  EXPECT_EQ(wheel.armed_count(), kTimers);
  for (uint32_t i = 0; i < kTimers / 4; ++i) {  // cancel a quarter, reschedule a quarter
    TimerId id = static_cast<TimerId>(rng() % kTimers);
    if (rng() % 2) {
      if (wheel.cancel(id)) s.expiry_ns[id] = 0;
    } else {
      arm(id, 1 + rng() % kSpanNs);
    }
  }
  uint64_t now = 0;
  uint64_t total_fired = 0;
  while (now <= kSpanNs + 20'000'000'000) {
    s.previous_now_ns = now;
    now += 1 + rng() % 20'000'000'000;  // up to 20 s at a time
    total_fired += wheel.advance(now);
    // Churn while time moves: re-arm some timers (fired or not) into the future.
    for (int i = 0; i < 2000; ++i) {
      TimerId id = static_cast<TimerId>(rng() % kTimers);
      if (now < kSpanNs) arm(id, now + 1 + rng() % (kSpanNs - now));
    }
  }
  EXPECT_EQ(s.bad, 0u);
  EXPECT_EQ(total_fired, s.fired_count);
  EXPECT_EQ(wheel.armed_count(), 0u);
  uint64_t never_fired_but_armed = 0;
  for (uint32_t i = 0; i < kTimers; ++i) never_fired_but_armed += s.expiry_ns[i] != 0;
  EXPECT_EQ(never_fired_but_armed, 0u);
  EXPECT_GT(total_fired, kTimers / 2);
}

}  // namespace
}  // namespace herald::timer

// Time for Herald: CLOCK_MONOTONIC nanoseconds, read through the TSC where that is safe, or
// from a FakeClock in tests and simulations. Times are plain uint64_t nanoseconds on
// CLOCK_MONOTONIC's time line (names end in _ns); durations likewise.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "platform/clock/tsc.h"

namespace herald::clock {

// clock_gettime(CLOCK_MONOTONIC): a vDSO call, about 20 ns; never goes backwards.
uint64_t monotonic_ns();

// Manual time for tests and deterministic simulations: moves only when told to. Reads are
// relaxed atomics so a simulation's driver thread may move it while others read it.
class FakeClock {
 public:
  explicit FakeClock(uint64_t start_ns = 0) : now_ns_(start_ns) {}
  FakeClock(const FakeClock&) = delete;
  FakeClock& operator=(const FakeClock&) = delete;

  uint64_t now_ns() const { return now_ns_.load(std::memory_order_relaxed); }
  void advance_ns(uint64_t delta_ns) { now_ns_.fetch_add(delta_ns, std::memory_order_relaxed); }
  // Monotonic like the real thing: moving it backwards is a test bug (HERALD_CHECK).
  void set_ns(uint64_t now_ns);

 private:
  std::atomic<uint64_t> now_ns_;
};

// The clock that code holds and asks for the time: a small value (copy one per worker) that
// reads the TSC, CLOCK_MONOTONIC, or a FakeClock. The choice is a switch on a member that never
// changes, which the branch predictor always gets right; cheaper than a virtual call and lets
// now_ns() inline.
class Clock {
 public:
  enum class Kind : uint8_t { kTsc, kMonotonic, kFake };

  static Clock tsc(const TscClock& tsc) { return Clock(Kind::kTsc, tsc, nullptr); }
  static Clock monotonic() {
    return Clock(Kind::kMonotonic, TscClock::from_hz(1'000'000'000, 0, 0), nullptr);
  }
  // `fake` must outlive the Clock and its copies.
  static Clock fake(const FakeClock* fake) {
    return Clock(Kind::kFake, TscClock::from_hz(1'000'000'000, 0, 0), fake);
  }
  // The process's real clock: the TSC if tsc_is_invariant() (calibrated once, on first use,
  // which may take TscClock::kDefaultCalibrationWindowNs), else CLOCK_MONOTONIC. Logs the
  // choice once. Thread-safe.
  static const Clock& process();

  uint64_t now_ns() const {
    switch (kind_) {
      case Kind::kTsc: return tsc_.now_ns();
      case Kind::kMonotonic: return monotonic_ns();
      case Kind::kFake: return fake_->now_ns();
    }
    __builtin_unreachable();
  }
  Kind kind() const { return kind_; }
  // Meaningful only for kind() == kTsc (cycle <-> ns conversions for measurements).
  const TscClock& tsc_clock() const { return tsc_; }

 private:
  Clock(Kind kind, const TscClock& tsc, const FakeClock* fake)
      : tsc_(tsc), fake_(fake), kind_(kind) {}

  TscClock tsc_;
  const FakeClock* fake_;
  Kind kind_;
};

std::string_view clock_kind_name(Clock::Kind kind);

}  // namespace herald::clock

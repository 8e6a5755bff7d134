// CLOCK_MONOTONIC reads, the fake clock, and the choice of the process's real clock.
#include "platform/clock/clock.h"

#include <time.h>

#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::clock {

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

void FakeClock::set_ns(uint64_t now_ns) {
  HERALD_CHECK(now_ns >= now_ns_.load(std::memory_order_relaxed), "FakeClock moved backwards");
  now_ns_.store(now_ns, std::memory_order_relaxed);
}

namespace {

Clock choose_process_clock() {
  if (!tsc_is_invariant()) {
    HLOG_WARN("clock.selected")
        .kv("kind", "monotonic")
        .kv("reason", "tsc not invariant (no constant_tsc/nonstop_tsc)");
    return Clock::monotonic();
  }
  std::optional<TscClock> tsc = TscClock::calibrate();
  if (!tsc) {
    HLOG_WARN("clock.selected").kv("kind", "monotonic").kv("reason", "tsc frequency implausible");
    return Clock::monotonic();
  }
  HLOG_INFO("clock.selected")
      .kv("kind", "tsc")
      .kv("tsc_hz", tsc->hz())
      .kv("frequency_source", tsc_frequency_source_name(tsc->source()));
  return Clock::tsc(*tsc);
}

}  // namespace

const Clock& Clock::process() {
  static const Clock clock = choose_process_clock();
  return clock;
}

std::string_view clock_kind_name(Clock::Kind kind) {
  switch (kind) {
    case Clock::Kind::kTsc: return "tsc";
    case Clock::Kind::kMonotonic: return "monotonic";
    case Clock::Kind::kFake: return "fake";
  }
  return "unknown";
}

}  // namespace herald::clock

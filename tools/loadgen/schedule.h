// Open-loop arrivals: a Poisson process (exponential gaps) at a fixed rate, seeded, so a run's
// schedule is reproducible and independent of how fast the server answers. And the reconnect
// backoff of a client whose connection failed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>

namespace herald::tools::loadgen {

class PoissonSchedule {
 public:
  // `rate_per_s` > 0 arrivals per second on average, the first one gap after `start_ns`.
  PoissonSchedule(double rate_per_s, int64_t start_ns, uint64_t seed)
      : mean_gap_ns_(1e9 / rate_per_s), rng_(seed), next_ns_(static_cast<double>(start_ns)) {
    advance();
  }

  // When the next arrival is due (CLOCK_MONOTONIC ns).
  int64_t next_ns() const { return static_cast<int64_t>(next_ns_); }
  // Moves to the arrival after it. Gaps are kept in double so that rates of millions per
  // second do not accumulate rounding.
  void advance() {
    // Inverse transform: -ln(U) * mean, U in (0, 1].
    const double u = 1.0 - uniform_(rng_);
    next_ns_ += -std::log(u) * mean_gap_ns_;
  }

 private:
  double mean_gap_ns_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  double next_ns_;
};

// A client's reconnect delay after a failure: doubles per failure in a row from kMinMs to kMaxMs
// (a login resets it to 0); each wait is drawn from [delay / 2, delay], so clients that failed
// together (a dataplane restart drops all of them at once) do not come back together.
struct Backoff {
  static constexpr uint32_t kMinMs = 100;
  static constexpr uint32_t kMaxMs = 5'000;
  // The delay after one more failure, from the current one (0: none yet).
  static uint32_t next_ms(uint32_t current_ms) {
    return static_cast<uint32_t>(std::clamp<uint64_t>(uint64_t{current_ms} * 2, kMinMs, kMaxMs));
  }
  // The wait for `delay_ms`, from a random draw.
  static int64_t jittered_ms(uint32_t delay_ms, uint64_t random) {
    return delay_ms / 2 + static_cast<int64_t>(random % (delay_ms / 2 + 1));
  }
};

}  // namespace herald::tools::loadgen

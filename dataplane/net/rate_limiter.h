// A token bucket in integer nanoseconds for the stack's answers (ICMP, ARP replies): `rate` per
// second sustained, `burst` at once. Time comes from the caller, so it runs on virtual time.
#pragma once

#include <algorithm>
#include <cstdint>

namespace herald::net {

class RateLimiter {
 public:
  // rate_per_second == 0 allows nothing (the answer is switched off).
  RateLimiter(uint32_t rate_per_second, uint32_t burst)
      : interval_ns_(rate_per_second == 0 ? 0 : 1'000'000'000ull / rate_per_second),
        capacity_ns_(interval_ns_ * std::max<uint32_t>(burst, 1)),
        credit_ns_(capacity_ns_) {}

  bool allow(uint64_t now_ns) {
    if (interval_ns_ == 0) return false;
    // Time never runs backwards here; if a caller's does, it earns no credit.
    if (now_ns > last_ns_) {
      credit_ns_ = std::min(capacity_ns_, credit_ns_ + (now_ns - last_ns_));
      last_ns_ = now_ns;
    }
    if (credit_ns_ < interval_ns_) return false;
    credit_ns_ -= interval_ns_;
    return true;
  }

 private:
  uint64_t interval_ns_;
  uint64_t capacity_ns_;
  uint64_t credit_ns_;
  uint64_t last_ns_ = 0;
};

}  // namespace herald::net

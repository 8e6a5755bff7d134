// Rate limits for registration: GCRA (the virtual-scheduling form of ITU-T I.371's Generic Cell
// Rate Algorithm) over a bounded table of keys with LRU order. O(1) per request, fixed memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace herald::registration {

struct RateKey {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const RateKey&, const RateKey&) = default;
};

// `burst` requests may come at once; after that one per `interval_ms`. "1 per 60 s" is
// {60'000, 1}; "5 per hour, all at once if need be" is {720'000, 5}.
struct GcraRule {
  uint64_t interval_ms = 0;
  uint32_t burst = 1;
};

inline constexpr size_t kMaxRateRules = 3;

struct RateLimiterOptions {
  // Every rule must allow a request; a refused request consumes nothing.
  std::array<GcraRule, kMaxRateRules> rules{};
  size_t rule_count = 0;
  // Keys the table holds at most (fixed memory: about 64 bytes per key).
  uint32_t capacity = 65536;
};

// WhatsApp-like defaults for one phone number: a code at most every 60 s, at most 5 in any
// hour-long burst (then one per 12 min), at most 10 in a day-long burst (then one per 2.4 h).
RateLimiterOptions default_phone_limits();
// For one source address (IPv4 /32 or IPv6 /64): carrier-grade NAT puts many honest users
// behind one address, so bursts are larger: 20 at once, then one per 3 min; 100 a day.
RateLimiterOptions default_address_limits();

enum class RateVerdict : uint8_t {
  kAllowed,
  kLimited,    // this key is over one of its rules
  kTableFull,  // a new key, and every slot holds a key that still owes time: refused
};

struct RateDecision {
  RateVerdict verdict = RateVerdict::kAllowed;
  // When the same request would next be allowed (0 when allowed).
  uint64_t retry_after_ms = 0;
  bool allowed() const { return verdict == RateVerdict::kAllowed; }
};

// A fixed table of keys, each with one theoretical arrival time (TAT) per rule, hashed with
// SipHash under a random key (so clients cannot aim for one bucket) and kept in LRU order of
// their last allowed request.
//
// Table-full policy (fail closed): a key whose every TAT is in the past is in the same state as
// an absent key, so evicting it loses nothing; such keys are evicted from the LRU tail as they
// are met. A key still owing time is never evicted: forgetting it would hand an abuser a fresh
// allowance (and SMS costs money). So when the table is full of keys that owe time, a NEW key is
// refused with kTableFull (known keys keep working). The LRU tail recovers first within
// max(burst * interval) of its last request, which bounds how long that lasts; it means the
// table holds `capacity` distinct keys active within that window, which is what to size it for.
class RateLimiter {
 public:
  // `hash_key` seeds SipHash; random_u64() x 2 in production, fixed in tests.
  RateLimiter(const RateLimiterOptions& options, std::array<uint64_t, 2> hash_key);
  explicit RateLimiter(const RateLimiterOptions& options);

  // Would a request for `key` be allowed now? Changes nothing (but may evict recovered keys).
  [[nodiscard]] RateDecision check(const RateKey& key, uint64_t now_ms);
  // Counts a request for `key` if allowed; a refused one changes nothing.
  [[nodiscard]] RateDecision acquire(const RateKey& key, uint64_t now_ms);

  // Replaces the rules (a committed config revision). Each key keeps its TATs, which are points
  // in time, so a new interval or burst applies to the next request of every known key at
  // once. `options.capacity` is ignored: the table is sized at construction (a restart field).
  // InvalidArgument, changing nothing, for a rule count or rule the constructor would refuse.
  absl::Status set_rules(const RateLimiterOptions& options);

  size_t size() const { return size_; }
  size_t capacity() const { return entries_.size(); }
  const RateLimiterOptions& options() const { return options_; }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Entry {
    RateKey key;
    std::array<uint64_t, kMaxRateRules> tat_ms;
    uint32_t next_in_bucket;
    uint32_t lru_prev;  // toward the most recent
    uint32_t lru_next;  // toward the least recent
  };

  RateDecision decide(const RateKey& key, uint64_t now_ms, bool consume);
  uint32_t bucket_of(const RateKey& key) const;
  uint32_t find(const RateKey& key, uint32_t bucket) const;
  bool recovered(const Entry& e, uint64_t now_ms) const;
  void evict_recovered_tail(uint64_t now_ms, int max_evictions);
  void unlink_lru(uint32_t index);
  void push_lru_front(uint32_t index);
  void remove(uint32_t index);

  RateLimiterOptions options_;
  std::array<uint64_t, 2> hash_key_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> buckets_;
  uint32_t bucket_mask_ = 0;
  uint32_t free_head_ = kNone;
  uint32_t lru_head_ = kNone;
  uint32_t lru_tail_ = kNone;
  size_t size_ = 0;
};

}  // namespace herald::registration

// GCRA rate limiting over a bounded LRU table (see rate_limiter.h).
#include "controlplane/registration/rate_limiter.h"

#include <openssl/siphash.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "controlplane/registration/auth_names.h"
#include "platform/assert/assert.h"

namespace herald::registration {

RateLimiterOptions default_phone_limits() {
  RateLimiterOptions o;
  o.rules[0] = {60'000, 1};
  o.rules[1] = {720'000, 5};
  o.rules[2] = {8'640'000, 10};
  o.rule_count = 3;
  o.capacity = 1u << 20;
  return o;
}

RateLimiterOptions default_address_limits() {
  RateLimiterOptions o;
  o.rules[0] = {180'000, 20};
  o.rules[1] = {864'000, 100};
  o.rule_count = 2;
  o.capacity = 1u << 18;
  return o;
}

RateLimiter::RateLimiter(const RateLimiterOptions& options)
    : RateLimiter(options, {random_u64(), random_u64()}) {}

RateLimiter::RateLimiter(const RateLimiterOptions& options, std::array<uint64_t, 2> hash_key)
    : options_(options), hash_key_(hash_key) {
  HERALD_CHECK(options.capacity >= 1 && options.capacity < kNone / 2, "rate table capacity");
  HERALD_CHECK(options.rule_count >= 1 && options.rule_count <= kMaxRateRules, "rule count");
  for (size_t r = 0; r < options.rule_count; ++r) {
    HERALD_CHECK(options.rules[r].interval_ms > 0 && options.rules[r].burst >= 1, "bad GCRA rule");
  }
  entries_.resize(options.capacity);
  // Load factor at most 1 with chaining: one bucket per slot, rounded up to a power of two.
  size_t buckets = std::bit_ceil(static_cast<size_t>(options.capacity));
  buckets_.assign(buckets, kNone);
  bucket_mask_ = static_cast<uint32_t>(buckets - 1);
  for (uint32_t i = 0; i < options.capacity; ++i) {
    entries_[i].next_in_bucket = i + 1 < options.capacity ? i + 1 : kNone;
  }
  free_head_ = 0;
}

absl::Status RateLimiter::set_rules(const RateLimiterOptions& options) {
  if (options.rule_count < 1 || options.rule_count > kMaxRateRules) {
    return absl::InvalidArgumentError("rate limiter: rule count out of range");
  }
  for (size_t r = 0; r < options.rule_count; ++r) {
    if (options.rules[r].interval_ms == 0 || options.rules[r].burst < 1) {
      return absl::InvalidArgumentError("rate limiter: a rule needs interval_ms > 0, burst >= 1");
    }
  }
  // A rule index that was unused holds a TAT of 0 or an old time: both mean "owes nothing"
  // once now_ms passed them, which is the state of a key the new rule has not seen yet.
  options_.rules = options.rules;
  options_.rule_count = options.rule_count;
  return absl::OkStatus();
}

uint32_t RateLimiter::bucket_of(const RateKey& key) const {
  uint8_t bytes[16];
  std::memcpy(bytes, &key.hi, 8);
  std::memcpy(bytes + 8, &key.lo, 8);
  return static_cast<uint32_t>(SIPHASH_24(hash_key_.data(), bytes, sizeof bytes)) & bucket_mask_;
}

uint32_t RateLimiter::find(const RateKey& key, uint32_t bucket) const {
  for (uint32_t i = buckets_[bucket]; i != kNone; i = entries_[i].next_in_bucket) {
    if (entries_[i].key == key) return i;
  }
  return kNone;
}

bool RateLimiter::recovered(const Entry& e, uint64_t now_ms) const {
  for (size_t r = 0; r < options_.rule_count; ++r) {
    if (e.tat_ms[r] > now_ms) return false;
  }
  return true;
}

void RateLimiter::unlink_lru(uint32_t index) {
  Entry& e = entries_[index];
  if (e.lru_prev != kNone)
    entries_[e.lru_prev].lru_next = e.lru_next;
  else
    lru_head_ = e.lru_next;
  if (e.lru_next != kNone)
    entries_[e.lru_next].lru_prev = e.lru_prev;
  else
    lru_tail_ = e.lru_prev;
}

void RateLimiter::push_lru_front(uint32_t index) {
  Entry& e = entries_[index];
  e.lru_prev = kNone;
  e.lru_next = lru_head_;
  if (lru_head_ != kNone) entries_[lru_head_].lru_prev = index;
  lru_head_ = index;
  if (lru_tail_ == kNone) lru_tail_ = index;
}

void RateLimiter::remove(uint32_t index) {
  uint32_t bucket = bucket_of(entries_[index].key);
  uint32_t* link = &buckets_[bucket];
  while (*link != index) {
    HERALD_CHECK(*link != kNone, "rate table entry missing from its bucket");
    link = &entries_[*link].next_in_bucket;
  }
  *link = entries_[index].next_in_bucket;
  unlink_lru(index);
  entries_[index].next_in_bucket = free_head_;
  free_head_ = index;
  --size_;
}

void RateLimiter::evict_recovered_tail(uint64_t now_ms, int max_evictions) {
  // Bounded work per call keeps every request O(1); idle keys drain a few per request.
  for (int n = 0; n < max_evictions && lru_tail_ != kNone; ++n) {
    if (!recovered(entries_[lru_tail_], now_ms)) return;
    remove(lru_tail_);
  }
}

RateDecision RateLimiter::check(const RateKey& key, uint64_t now_ms) {
  return decide(key, now_ms, /*consume=*/false);
}

RateDecision RateLimiter::acquire(const RateKey& key, uint64_t now_ms) {
  return decide(key, now_ms, /*consume=*/true);
}

RateDecision RateLimiter::decide(const RateKey& key, uint64_t now_ms, bool consume) {
  evict_recovered_tail(now_ms, 2);
  uint32_t bucket = bucket_of(key);
  uint32_t index = find(key, bucket);
  if (index != kNone) {
    Entry& e = entries_[index];
    // GCRA: allowed iff max(TAT, now) - now <= (burst - 1) * interval; then TAT += interval.
    uint64_t wait_ms = 0;
    for (size_t r = 0; r < options_.rule_count; ++r) {
      const GcraRule& rule = options_.rules[r];
      uint64_t tat = std::max(e.tat_ms[r], now_ms);
      uint64_t tolerance_ms = (rule.burst - 1) * rule.interval_ms;
      if (tat - now_ms > tolerance_ms) wait_ms = std::max(wait_ms, tat - now_ms - tolerance_ms);
    }
    if (wait_ms > 0) return {RateVerdict::kLimited, wait_ms};
    if (consume) {
      for (size_t r = 0; r < options_.rule_count; ++r) {
        e.tat_ms[r] = std::max(e.tat_ms[r], now_ms) + options_.rules[r].interval_ms;
      }
      unlink_lru(index);
      push_lru_front(index);
    }
    return {RateVerdict::kAllowed, 0};
  }
  // A new key: allowed by every rule (burst >= 1), if it gets a slot.
  if (free_head_ == kNone) {
    HERALD_DCHECK(lru_tail_ != kNone, "full table with an empty LRU list");
    const Entry& tail = entries_[lru_tail_];
    // evict_recovered_tail() ran above, so the tail still owes time.
    uint64_t wait_ms = 1;
    for (size_t r = 0; r < options_.rule_count; ++r) {
      if (tail.tat_ms[r] > now_ms) wait_ms = std::max(wait_ms, tail.tat_ms[r] - now_ms);
    }
    return {RateVerdict::kTableFull, wait_ms};
  }
  if (!consume) return {RateVerdict::kAllowed, 0};
  index = free_head_;
  Entry& e = entries_[index];
  free_head_ = e.next_in_bucket;
  e.key = key;
  for (size_t r = 0; r < kMaxRateRules; ++r) {
    e.tat_ms[r] = r < options_.rule_count ? now_ms + options_.rules[r].interval_ms : 0;
  }
  e.next_in_bucket = buckets_[bucket];
  buckets_[bucket] = index;
  push_lru_front(index);
  ++size_;
  return {RateVerdict::kAllowed, 0};
}

}  // namespace herald::registration

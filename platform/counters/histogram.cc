// Reader-side histogram: merging per-thread bucket arrays and estimating percentiles.
#include "platform/counters/histogram.h"

#include <algorithm>
#include <cmath>

#include "platform/assert/assert.h"

namespace herald::counters {

void HistogramData::reset(HistogramSpec spec) {
  HERALD_CHECK(is_valid(spec), "histogram spec out of range");
  spec_ = spec;
  count_ = 0;
  sum_ = 0;
  max_ = 0;
  buckets_.assign(bucket_count(spec), 0);
}

void HistogramData::record(uint64_t value) {
  ++buckets_[bucket_index(value, spec_.sub_bucket_bits, overflow_bucket(spec_))];
  ++count_;
  sum_ += value;
  max_ = std::max(max_, value);
}

void HistogramData::add(uint64_t sum, uint64_t max, std::span<const uint64_t> buckets) {
  HERALD_CHECK(buckets.size() == buckets_.size(), "bucket count mismatch");
  for (size_t i = 0; i < buckets.size(); ++i) {
    buckets_[i] += buckets[i];
    count_ += buckets[i];
  }
  sum_ += sum;
  max_ = std::max(max_, max);
}

uint64_t HistogramData::percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Nearest rank (1-based); a count beyond 2^53 loses precision here, far past any real use.
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (uint32_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen < rank) continue;
    const BucketBounds b = bucket_bounds(spec_, i);
    if (i == overflow_bucket(spec_)) return std::max(max_, b.lower);
    const uint64_t midpoint = b.lower + (b.upper - b.lower) / 2;
    // The max is exact, so it caps the estimate; but a reader racing the writers may see a max
    // older than the buckets, and then it says nothing about this bucket.
    return (max_ >= b.lower && max_ < midpoint) ? max_ : midpoint;
  }
  return max_;  // unreachable when count_ equals the bucket total
}

}  // namespace herald::counters

// Log-linear latency histograms (HdrHistogram's bucketing): each power of two is split into
// 2^sub_bucket_bits linear sub-buckets, so a bucket is at most 2^-sub_bucket_bits of its lower
// bound wide. bucket_index() is the writer's hot path (a bit scan, a shift, an add, a min);
// HistogramData is the reader's merged view with percentile estimates.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace herald::counters {

inline constexpr uint8_t kMinSubBucketBits = 1;
inline constexpr uint8_t kMaxSubBucketBits = 7;
inline constexpr uint8_t kMaxValueBitsLimit = 63;

// Values in [0, 2^max_value_bits) get their log-linear bucket; larger values land in one
// overflow bucket (their exact maximum is still kept). Defaults: 16 sub-buckets per power of
// two (percentiles within 1/32 = 3.1% of the true value) up to 2^36 ns = 68.7 s, in 529
// buckets (4.2 KiB per thread).
struct HistogramSpec {
  uint8_t sub_bucket_bits = 4;
  uint8_t max_value_bits = 36;
  friend constexpr bool operator==(HistogramSpec, HistogramSpec) = default;
};

constexpr bool is_valid(HistogramSpec s) {
  return s.sub_bucket_bits >= kMinSubBucketBits && s.sub_bucket_bits <= kMaxSubBucketBits &&
         s.max_value_bits > s.sub_bucket_bits && s.max_value_bits <= kMaxValueBitsLimit;
}

// Buckets below the overflow one: values < 2^(k+1) each have their own bucket (index = value),
// then every further power of two adds 2^k buckets. Plus one overflow bucket.
constexpr uint32_t bucket_count(HistogramSpec s) {
  return ((uint32_t{s.max_value_bits} - s.sub_bucket_bits + 1u) << s.sub_bucket_bits) + 1u;
}
constexpr uint32_t overflow_bucket(HistogramSpec s) {
  return bucket_count(s) - 1;
}

// With m = the highest set bit of max(v, 2^k) and shift = m - k, v >> shift keeps v's top k+1
// bits, in [2^k, 2^(k+1)), and (shift << k) + (v >> shift) numbers the buckets contiguously.
// For v < 2^(k+1) the shift is 0 and the index is v itself.
[[nodiscard]] inline uint32_t bucket_index(uint64_t value, uint32_t sub_bucket_bits,
                                           uint32_t overflow_index) {
  const uint32_t top_bit =
      63u - static_cast<uint32_t>(__builtin_clzll(value | (uint64_t{1} << sub_bucket_bits)));
  const uint32_t shift = top_bit - sub_bucket_bits;
  const uint64_t index = (uint64_t{shift} << sub_bucket_bits) + (value >> shift);
  return index < overflow_index ? static_cast<uint32_t>(index) : overflow_index;
}

struct BucketBounds {
  uint64_t lower = 0;  // inclusive
  uint64_t upper = 0;  // inclusive; UINT64_MAX for the overflow bucket
};

// The value range bucket `index` holds (index < bucket_count(spec)).
constexpr BucketBounds bucket_bounds(HistogramSpec s, uint32_t index) {
  const uint32_t k = s.sub_bucket_bits;
  if (index >= overflow_bucket(s)) return {uint64_t{1} << s.max_value_bits, UINT64_MAX};
  const uint32_t exponent = index >> k;
  const uint32_t shift = exponent == 0 ? 0 : exponent - 1;
  const uint64_t mantissa = index - (uint64_t{shift} << k);
  const uint64_t lower = mantissa << shift;
  return {lower, lower + (uint64_t{1} << shift) - 1};
}

// Bound on |percentile() - exact| / exact for values below 2^max_value_bits: the estimate is
// the midpoint of the exact value's bucket, whose width is at most 2^-k of its lower bound.
constexpr double max_relative_error(HistogramSpec s) {
  return 1.0 / static_cast<double>(uint64_t{2} << s.sub_bucket_bits);
}

// A histogram merged over threads (what the reader returns), or recorded locally.
class HistogramData {
 public:
  HistogramData() : HistogramData(HistogramSpec{}) {}
  explicit HistogramData(HistogramSpec spec) { reset(spec); }

  // Empties the histogram; keeps the bucket vector's memory when the spec is unchanged.
  void reset(HistogramSpec spec);
  // Local recording (tests, the profiler's own rollups); the shared-segment hot path is
  // ThreadCounters::record().
  void record(uint64_t value);
  // Adds one thread's slots: buckets summed, max merged. `buckets` has bucket_count() values.
  void add(uint64_t sum, uint64_t max, std::span<const uint64_t> buckets);

  HistogramSpec spec() const { return spec_; }
  uint64_t count() const { return count_; }
  uint64_t sum() const { return sum_; }
  uint64_t max() const { return max_; }  // exact (the writers keep it)
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_; }
  std::span<const uint64_t> buckets() const { return buckets_; }

  // Estimate of the nearest-rank percentile: the value of rank ceil(q * count) in sorted order
  // (q in [0, 1], clamped). Returns the midpoint of the bucket holding that rank, capped by the
  // exact max; within max_relative_error(spec()) of the exact value. 0 when empty; for the
  // overflow bucket, the exact max.
  uint64_t percentile(double q) const;

 private:
  HistogramSpec spec_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  std::vector<uint64_t> buckets_;
};

}  // namespace herald::counters

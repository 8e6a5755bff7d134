// Tests for the log-linear histogram: bucket boundaries, the documented error bound of
// percentile estimates against exact percentiles of random data, and merging.
#include "platform/counters/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace herald::counters {
namespace {

const HistogramSpec kSpecs[] = {{1, 2}, {1, 10}, {3, 20}, {4, 36}, {5, 40}, {7, 63}};

TEST(HistogramBuckets, DefaultSpecCoversNanosecondsToTensOfSeconds) {
  const HistogramSpec spec{};
  EXPECT_EQ(spec.sub_bucket_bits, 4);
  EXPECT_EQ(bucket_count(spec), 529u);
  EXPECT_EQ(bucket_bounds(spec, overflow_bucket(spec) - 1).upper, (uint64_t{1} << 36) - 1);
  EXPECT_DOUBLE_EQ(max_relative_error(spec), 1.0 / 32);
}

TEST(HistogramBuckets, ValidityLimits) {
  EXPECT_TRUE(is_valid({1, 2}));
  EXPECT_TRUE(is_valid({7, 63}));
  EXPECT_FALSE(is_valid({0, 10}));
  EXPECT_FALSE(is_valid({8, 40}));
  EXPECT_FALSE(is_valid({4, 4}));   // needs at least one power of two above the linear range
  EXPECT_FALSE(is_valid({4, 64}));  // 2^64 does not fit
}

// Every bucket's bounds map back to it, buckets tile the value range with no gap or overlap,
// and each is at most 2^-k of its lower bound wide.
TEST(HistogramBuckets, BoundsTileTheRangeAndRoundTrip) {
  for (const HistogramSpec spec : kSpecs) {
    SCOPED_TRACE(testing::Message()
                 << "k=" << int{spec.sub_bucket_bits} << " B=" << int{spec.max_value_bits});
    const uint32_t overflow = overflow_bucket(spec);
    uint64_t next_lower = 0;
    for (uint32_t i = 0; i < overflow; ++i) {
      const BucketBounds b = bucket_bounds(spec, i);
      ASSERT_EQ(b.lower, next_lower) << "bucket " << i;
      ASSERT_LE(b.lower, b.upper);
      ASSERT_EQ(bucket_index(b.lower, spec.sub_bucket_bits, overflow), i);
      ASSERT_EQ(bucket_index(b.upper, spec.sub_bucket_bits, overflow), i);
      const uint64_t width = b.upper - b.lower + 1;
      if (b.lower < (uint64_t{2} << spec.sub_bucket_bits)) {
        ASSERT_EQ(width, 1u) << "values below 2^(k+1) are exact";
      } else {
        ASSERT_LE(width, b.lower >> spec.sub_bucket_bits);
      }
      next_lower = b.upper + 1;
    }
    EXPECT_EQ(next_lower, uint64_t{1} << spec.max_value_bits);
    EXPECT_EQ(bucket_bounds(spec, overflow).lower, next_lower);
    EXPECT_EQ(bucket_index(next_lower, spec.sub_bucket_bits, overflow), overflow);
    EXPECT_EQ(bucket_index(UINT64_MAX, spec.sub_bucket_bits, overflow), overflow);
    EXPECT_EQ(bucket_index(0, spec.sub_bucket_bits, overflow), 0u);
  }
}

TEST(HistogramBuckets, RandomValuesLandInsideTheirBucket) {
  std::mt19937_64 rng(42);
  for (const HistogramSpec spec : kSpecs) {
    const uint32_t overflow = overflow_bucket(spec);
    for (int n = 0; n < 20000; ++n) {
      const uint64_t v = rng() >> (rng() % 64);
      const uint32_t i = bucket_index(v, spec.sub_bucket_bits, overflow);
      ASSERT_LT(i, bucket_count(spec));
      const BucketBounds b = bucket_bounds(spec, i);
      ASSERT_GE(v, b.lower);
      ASSERT_LE(v, b.upper);
    }
  }
}

uint64_t exact_percentile(std::vector<uint64_t> sorted, double q) {
  const uint64_t n = sorted.size();
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(n)));
  rank = std::clamp<uint64_t>(rank, 1, n);
  return sorted[rank - 1];
}

// Latency-like data: log-uniform from 1 ns to ~34 s plus a dense cluster, so both the exact
// low buckets and the wide high buckets are exercised.
std::vector<uint64_t> latency_samples(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> log2_ns(0.0, 35.0);
  std::normal_distribution<double> cluster(50'000.0, 5'000.0);
  std::vector<uint64_t> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(i % 3 == 0 ? static_cast<uint64_t>(std::max(0.0, cluster(rng)))
                             : static_cast<uint64_t>(std::exp2(log2_ns(rng))));
  }
  return out;
}

TEST(HistogramPercentile, WithinDocumentedErrorOfExactPercentiles) {
  for (uint8_t k : {2, 3, 4, 5, 7}) {
    const HistogramSpec spec{k, 36};
    for (uint64_t seed : {1u, 2u, 3u}) {
      SCOPED_TRACE(testing::Message() << "k=" << int{k} << " seed=" << seed);
      std::vector<uint64_t> data = latency_samples(seed, 100'000);
      HistogramData h(spec);
      uint64_t sum = 0;
      for (uint64_t v : data) {
        h.record(v);
        sum += v;
      }
      std::sort(data.begin(), data.end());
      EXPECT_EQ(h.count(), data.size());
      EXPECT_EQ(h.sum(), sum);
      EXPECT_EQ(h.max(), data.back());
      for (double q : {0.0, 0.5, 0.9, 0.99, 0.999, 1.0}) {
        const double exact = static_cast<double>(exact_percentile(data, q));
        const double estimate = static_cast<double>(h.percentile(q));
        EXPECT_LE(std::abs(estimate - exact), exact * max_relative_error(spec))
            << "q=" << q << " exact=" << exact << " estimate=" << estimate;
        EXPECT_LE(estimate, static_cast<double>(h.max()));
      }
    }
  }
}

TEST(HistogramPercentile, EmptySingleAndOverflow) {
  HistogramData h(HistogramSpec{4, 20});
  EXPECT_EQ(h.percentile(0.5), 0u);
  EXPECT_EQ(h.mean(), 0.0);

  h.record(7);  // exact bucket
  EXPECT_EQ(h.percentile(0.0), 7u);
  EXPECT_EQ(h.percentile(1.0), 7u);

  HistogramData big(HistogramSpec{4, 20});
  big.record(990'000);  // bucket [983040, 1015807], midpoint 999423
  // Capped by the exact max, which lies below the midpoint of its bucket.
  EXPECT_EQ(big.percentile(0.5), 990'000u);
  big.record(1'010'000);  // same bucket, above the midpoint: the midpoint is the estimate
  EXPECT_EQ(big.percentile(1.0), 999'423u);
  EXPECT_EQ(big.max(), 1'010'000u);

  HistogramData over(HistogramSpec{4, 20});
  over.record(5u << 20);  // beyond 2^20: overflow bucket, reported as the exact max
  over.record(3);
  EXPECT_EQ(over.buckets()[overflow_bucket(over.spec())], 1u);
  EXPECT_EQ(over.percentile(1.0), 5u << 20);
  EXPECT_EQ(over.percentile(0.5), 3u);
  // Out-of-range quantiles clamp.
  EXPECT_EQ(over.percentile(7.0), 5u << 20);
  EXPECT_EQ(over.percentile(-1.0), 3u);
}

TEST(HistogramData, AddMergesLikeRecordingEverything) {
  const HistogramSpec spec{3, 30};
  const std::vector<uint64_t> data = latency_samples(9, 10'000);
  HistogramData all(spec), a(spec), b(spec), merged(spec);
  for (size_t i = 0; i < data.size(); ++i) {
    all.record(data[i] >> 5);
    (i % 2 ? a : b).record(data[i] >> 5);
  }
  merged.add(a.sum(), a.max(), a.buckets());
  merged.add(b.sum(), b.max(), b.buckets());
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.sum(), all.sum());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_TRUE(std::equal(merged.buckets().begin(), merged.buckets().end(), all.buckets().begin(),
                         all.buckets().end()));
  merged.reset(spec);
  EXPECT_EQ(merged.count(), 0u);
}

}  // namespace
}  // namespace herald::counters

// CUBIC (RFC 9438) against the RFC's own equations: the decrease, fast convergence, the curve's
// shape (concave up to W_max, flat there, convex beyond), the per-RTT growth cap and the
// Reno-friendly region.
#include "dataplane/net/tcp/cubic.h"

#include <gtest/gtest.h>

#include <cmath>

namespace herald::net::tcp {
namespace {

constexpr uint32_t kMss = 1000;

TEST(Cubic, CongestionEventTakesSeventyPercentAndRemembersTheWindow) {
  CubicState s;
  EXPECT_EQ(cubic_on_congestion(s, 100 * kMss, 100 * kMss, kMss), 70 * kMss);
  EXPECT_EQ(s.w_max, 100 * kMss);
  EXPECT_EQ(s.cwnd_prior, 100 * kMss);
  EXPECT_EQ(s.epoch_start_us, 0u);
  // Never below two segments.
  CubicState t;
  EXPECT_EQ(cubic_on_congestion(t, kMss, kMss, kMss), 2 * kMss);
}

TEST(Cubic, FastConvergenceRemembersLessWhenTheWindowShrank) {
  CubicState s;
  (void)cubic_on_congestion(s, 100 * kMss, 100 * kMss, kMss);
  // A second event below the last W_max: W_max = cwnd * (1 + beta) / 2.
  (void)cubic_on_congestion(s, 80 * kMss, 80 * kMss, kMss);
  EXPECT_EQ(s.w_max, 68 * kMss);
  // Above it: the window itself.
  (void)cubic_on_congestion(s, 90 * kMss, 90 * kMss, kMss);
  EXPECT_EQ(s.w_max, 90 * kMss);
}

TEST(Cubic, CurveReachesWMaxAtKAndIsFlatThere) {
  // W_max 100, epoch from 70 segments: K = cbrt(30 / 0.4) = 4.2172 s.
  const double k = std::cbrt(30.0 / kCubicC);
  EXPECT_NEAR(cubic_window(100 * kMss, 70 * kMss, kMss, 0.0), 70.0 * kMss, 1e-6);
  EXPECT_NEAR(cubic_window(100 * kMss, 70 * kMss, kMss, k), 100.0 * kMss, 1e-6);
  // Concave before K, convex after, symmetric about it.
  const double before = cubic_window(100 * kMss, 70 * kMss, kMss, k - 1);
  const double after = cubic_window(100 * kMss, 70 * kMss, kMss, k + 1);
  EXPECT_NEAR(100.0 * kMss - before, after - 100.0 * kMss, 1e-6);
  EXPECT_NEAR(after, (100 + kCubicC) * kMss, 1e-6);
}

// Drives avoidance: one ACK per segment, a window's worth of ACKs per RTT.
uint32_t run_rtts(CubicState& s, uint32_t cwnd, uint64_t* now_us, uint64_t rtt_us, int rtts) {
  for (int i = 0; i < rtts; ++i) {
    const uint32_t segments = cwnd / kMss;
    for (uint32_t a = 0; a < segments; ++a) {
      *now_us += rtt_us / segments;
      cwnd = cubic_on_ack(s, cwnd, kMss, kMss, *now_us, rtt_us);
    }
  }
  return cwnd;
}

TEST(Cubic, WindowClimbsBackToWMaxAroundKThenProbesBeyond) {
  CubicState s;
  uint32_t cwnd = cubic_on_congestion(s, 100 * kMss, 100 * kMss, kMss);  // 70 segments
  uint64_t now_us = 1'000'000;
  const uint64_t rtt_us = 100'000;
  // K is 4.2 s, i.e. 42 RTTs: halfway there the window is well below W_max, yet above where
  // Reno would be (70 + 21 * 0.53 ~ 81 segments).
  cwnd = run_rtts(s, cwnd, &now_us, rtt_us, 21);
  EXPECT_GT(cwnd, 90 * kMss);
  EXPECT_LT(cwnd, 100 * kMss);
  // Near K it plateaus at W_max: growth over the 10 RTTs around K stays small.
  const uint32_t at_k_minus = run_rtts(s, cwnd, &now_us, rtt_us, 16);
  const uint32_t at_k_plus = run_rtts(s, at_k_minus, &now_us, rtt_us, 10);
  EXPECT_GE(at_k_minus, 99 * kMss);
  EXPECT_LT(at_k_plus, 103 * kMss);
  // Past K it accelerates (convex), following the curve: 30 RTTs later (t = 7.7 s, t - K =
  // 3.5 s) about 100 + 0.4 * 3.5^3 = 117 segments, and gaining faster than over the 10 before.
  const uint32_t later = run_rtts(s, at_k_plus, &now_us, rtt_us, 30);
  const double t_s = static_cast<double>(now_us - s.epoch_start_us) / 1e6;
  EXPECT_NEAR(later, cubic_window(100 * kMss, 70 * kMss, kMss, t_s), 2.0 * kMss);
  EXPECT_GT(later, 112 * kMss);
  const uint32_t even_later = run_rtts(s, later, &now_us, rtt_us, 10);
  EXPECT_GT(even_later - later, later - at_k_plus);
}

TEST(Cubic, GrowthPerRttIsCappedAtHalfTheWindow) {
  CubicState s;
  s.w_max = 1000 * kMss;  // far above: the curve wants a huge jump
  s.cwnd_prior = 1000 * kMss;
  uint64_t now_us = 10'000'000;
  uint32_t cwnd = 10 * kMss;
  // Start an epoch far in the past so W_cubic(t + RTT) is far above 1.5 cwnd.
  s.epoch_start_us = 1;
  s.epoch_cwnd = 10 * kMss;
  s.w_est = 10 * kMss;
  const uint32_t after = run_rtts(s, cwnd, &now_us, 100'000, 1);
  EXPECT_LE(after, 15 * kMss + kMss);  // one RTT: at most x1.5 (plus rounding of the last ACK)
  EXPECT_GT(after, 13 * kMss);
}

TEST(Cubic, RenoFriendlyRegionOnShortRtts) {
  // A 1 ms RTT: the cubic curve barely moves in a few RTTs, so the Reno estimate leads and the
  // window grows by about alpha = 0.53 segments per RTT until W_est passes cwnd_prior.
  CubicState s;
  uint32_t cwnd = cubic_on_congestion(s, 100 * kMss, 100 * kMss, kMss);
  uint64_t now_us = 1'000'000;
  const uint32_t start = cwnd;
  cwnd = run_rtts(s, cwnd, &now_us, 1000, 20);
  const double gained_segments = static_cast<double>(cwnd - start) / kMss;
  EXPECT_NEAR(gained_segments, 20 * 3.0 * (1 - kCubicBeta) / (1 + kCubicBeta), 2.0);
}

TEST(Cubic, FirstAvoidanceWithoutALossStartsFlatAtTheWindow) {
  // Leaving slow start without a congestion event: W_max = cwnd, K = 0, so the window grows
  // convexly from where it is (and at least as fast as Reno).
  CubicState s;
  uint64_t now_us = 5'000'000;
  const uint32_t cwnd = run_rtts(s, 50 * kMss, &now_us, 50'000, 10);
  EXPECT_EQ(s.w_max, 50 * kMss);
  EXPECT_GE(cwnd, 59 * kMss);  // Reno's +1 segment per RTT (less the rounding of each ACK)
}

}  // namespace
}  // namespace herald::net::tcp

// CUBIC (RFC 9438): multiplicative decrease with fast convergence, the cubic window curve and
// the Reno-friendly region. Double arithmetic: a handful of operations per ACK, and exact
// enough that the curve is the RFC's rather than a fixed-point approximation of it.
#include "dataplane/net/tcp/cubic.h"

#include <algorithm>
#include <cmath>

namespace herald::net::tcp {
namespace {

constexpr double kUint32Max = 4294967295.0;

uint32_t clamp_window(double bytes) {
  return static_cast<uint32_t>(std::clamp(bytes, 0.0, kUint32Max));
}

}  // namespace

uint32_t cubic_on_congestion(CubicState& s, uint32_t cwnd, uint32_t flight, uint32_t mss) {
  // Fast convergence (4.7): a flow whose window fell since the last event releases bandwidth
  // by remembering less than it had.
  s.w_max = cwnd < s.w_max ? clamp_window(cwnd * (1.0 + kCubicBeta) / 2.0) : cwnd;
  s.cwnd_prior = cwnd;
  s.epoch_start_us = 0;
  return std::max(clamp_window(flight * kCubicBeta), 2 * mss);
}

double cubic_window(uint32_t w_max, uint32_t epoch_cwnd, uint32_t mss, double t_s) {
  // K (eq. 2): when the curve reaches W_max again; 0 when the epoch starts at or above it.
  const double below_segments =
      w_max > epoch_cwnd ? static_cast<double>(w_max - epoch_cwnd) / mss : 0.0;
  const double k_s = std::cbrt(below_segments / kCubicC);
  const double d = t_s - k_s;
  return kCubicC * d * d * d * mss + w_max;
}

uint32_t cubic_on_ack(CubicState& s, uint32_t cwnd, uint32_t acked, uint32_t mss, uint64_t now_us,
                      uint64_t srtt_us) {
  if (s.epoch_start_us == 0) {
    // A new epoch (4.2, 4.8): after a congestion event, or on leaving slow start without one,
    // where the curve starts flat at the current window.
    s.epoch_start_us = std::max<uint64_t>(now_us, 1);
    s.epoch_cwnd = cwnd;
    s.w_est = cwnd;
    s.w_max = std::max(s.w_max, cwnd);
  }
  const double t_s = static_cast<double>(now_us - std::min(now_us, s.epoch_start_us)) / 1e6;
  const double rtt_s = static_cast<double>(srtt_us) / 1e6;
  // Reno-friendly estimate (4.3): alpha makes its average window match Reno's under the same
  // loss rate; once it has passed the window of the last event it grows as Reno does.
  const double alpha =
      s.w_est >= s.cwnd_prior ? 1.0 : 3.0 * (1.0 - kCubicBeta) / (1.0 + kCubicBeta);
  s.w_est = clamp_window(s.w_est + alpha * acked * mss / std::max(cwnd, 1u));
  const double w_cubic_now = cubic_window(s.w_max, s.epoch_cwnd, mss, t_s);
  if (w_cubic_now < s.w_est) return std::max(cwnd, s.w_est);
  // Concave or convex region (4.4, 4.5): towards the curve's value one RTT ahead, at most 1.5x.
  const double target = std::clamp(cubic_window(s.w_max, s.epoch_cwnd, mss, t_s + rtt_s),
                                   static_cast<double>(cwnd), 1.5 * cwnd);
  const double grow = (target - cwnd) * acked / std::max(cwnd, 1u);
  if (grow <= 0.0) return cwnd;
  return clamp_window(cwnd + std::max(1.0, std::round(grow)));
}

}  // namespace herald::net::tcp

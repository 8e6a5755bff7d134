// CUBIC congestion control (RFC 9438) as a pure per-connection state machine: the TCP engine
// keeps slow start, recovery and the scoreboard; CUBIC decides the window after a congestion
// event (its multiplicative decrease) and its growth in congestion avoidance.
#pragma once

#include <cstdint>

namespace herald::net::tcp {

enum class CongestionControl : uint8_t { kCubic = 0, kNewReno = 1 };

// RFC 9438 4.5-4.6: multiplicative decrease factor and the cubic's scaling constant.
inline constexpr double kCubicBeta = 0.7;
inline constexpr double kCubicC = 0.4;  // segments per second cubed

// Per connection, 24 bytes: windows in bytes, the epoch on the engine's microsecond clock.
struct CubicState {
  uint32_t w_max = 0;           // window before the last congestion event (W_max)
  uint32_t cwnd_prior = 0;      // cwnd at the last congestion event (for the Reno-friendly alpha)
  uint32_t w_est = 0;           // the Reno-friendly estimate (W_est), bytes
  uint32_t epoch_cwnd = 0;      // cwnd when the current avoidance epoch started
  uint64_t epoch_start_us = 0;  // 0: no epoch (the next avoidance ACK starts one)
};

// A congestion event (fast retransmit, SACK recovery or a retransmission timeout) with `cwnd`
// and `flight` bytes outstanding: remembers W_max (with fast convergence, RFC 9438 4.7), ends
// the epoch and returns the new ssthresh: flight * beta, at least two segments.
uint32_t cubic_on_congestion(CubicState& s, uint32_t cwnd, uint32_t flight, uint32_t mss);

// Congestion avoidance (cwnd >= ssthresh, not in recovery): `acked` bytes newly acknowledged at
// `now_us` with smoothed RTT `srtt_us`. Returns the new cwnd: the larger of the cubic curve's
// target one RTT ahead (growth per ACK capped so cwnd at most gains half of itself per RTT,
// RFC 9438 4.2) and the Reno-friendly estimate (4.3).
uint32_t cubic_on_ack(CubicState& s, uint32_t cwnd, uint32_t acked, uint32_t mss, uint64_t now_us,
                      uint64_t srtt_us);

// The cubic curve W_cubic(t) = C (t - K)^3 + W_max in bytes at `t_us` into an epoch that began
// at `epoch_cwnd`; exposed for tests.
double cubic_window(uint32_t w_max, uint32_t epoch_cwnd, uint32_t mss, double t_s);

}  // namespace herald::net::tcp

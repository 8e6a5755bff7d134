// The profiler on the control plane's io_uring loop: a one-shot timer re-armed at the current
// interval drives Sampler::sample(), and the admin API starts, stops, reports and downloads
// captures (GET/POST /v1/profiler...; docs/openapi.yaml).
//
//   ProfilerService profiler(loop, options, clock::Clock::monotonic());
//   profiler.sampler().set_counters_source(...);
//   profiler.start();                 // background sampling at options.interval_ms
//   profiler.add_routes(admin_router);
//   ...
//   profiler.shutdown();              // before the loop goes away
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "controlplane/api/router.h"
#include "controlplane/profiler/sampler.h"
#include "platform/uring/event_loop.h"

namespace herald::profiler {

struct ProfilerOptions {
  SamplerOptions sampler;
  uint32_t interval_ms = 100;     // background sampling
  uint32_t min_interval_ms = 10;  // the fastest a capture may ask for
  uint32_t max_duration_s = 600;  // the longest capture
  bool enabled = true;            // false: no background sampling (captures still run)
};

enum class CaptureState : uint8_t { kIdle, kRunning, kDone };
std::string_view capture_state_name(CaptureState state);

struct ProfilerStats {
  uint64_t captures_started = 0;
  uint64_t captures_stopped = 0;   // by the API before their duration
  uint64_t captures_finished = 0;  // reached their duration
  uint64_t downloads = 0;
  uint64_t rejected = 0;    // a start with a bad interval or duration, or while running
  uint64_t late_ticks = 0;  // the timer fired more than one interval late
};

class ProfilerService {
 public:
  ProfilerService(uring::EventLoop& loop, ProfilerOptions options, clock::Clock clock);
  ~ProfilerService();
  ProfilerService(const ProfilerService&) = delete;
  ProfilerService& operator=(const ProfilerService&) = delete;

  Sampler& sampler() { return sampler_; }
  const ProfilerStats& stats() const { return stats_; }
  CaptureState state() const { return state_; }

  // Arms the timer (background sampling when enabled).
  void start();
  // Cancels the timer and runs the loop until it is idle.
  void shutdown();

  // The background interval (config profiler.sample_interval_ms, hot): takes effect at the
  // next tick; a running capture keeps its own.
  void set_interval_ms(uint32_t interval_ms);

  // Starts a capture: the ring is sampled every interval_ms for duration_ms; the capture is
  // the ring's window from its start (the history before it stays in the ring).
  // kInvalidArgument (interval below min_interval_ms or above 60 s, duration 0 or above
  // max_duration_s, or more samples than the ring holds); kFailedPrecondition while one runs.
  absl::Status start_capture(uint32_t interval_ms, uint64_t duration_ms);
  // Ends a running capture now; kFailedPrecondition when none runs.
  absl::Status stop_capture();
  // The finished capture's bytes; kNotFound without one, kFailedPrecondition while running.
  absl::StatusOr<std::string> download() const;
  std::string status_json() const;

  // GET /v1/profiler (read), POST /v1/profiler/capture?interval_ms=&duration_ms= (admin),
  // POST /v1/profiler/capture/stop (admin), GET /v1/profiler/capture (read).
  void add_routes(api::Router& router);

  // The timer's body, public for tests that drive time themselves.
  void on_timer();

 private:
  static void on_timer_completion(uring::Operation& op, const uring::Completion& completion);
  void arm();
  void finish_capture();
  uint64_t current_interval_ns() const;

  uring::EventLoop& loop_;
  ProfilerOptions options_;
  clock::Clock clock_;
  Sampler sampler_;
  uring::Operation timer_op_;
  bool running_ = false;
  uint64_t last_tick_ns_ = 0;

  CaptureState state_ = CaptureState::kIdle;
  uint32_t capture_interval_ms_ = 0;
  uint64_t capture_duration_ms_ = 0;
  uint64_t capture_start_ns_ = 0;
  uint64_t capture_start_unix_ms_ = 0;
  std::string capture_bytes_;
  size_t capture_samples_ = 0;
  ProfilerStats stats_;
};

}  // namespace herald::profiler

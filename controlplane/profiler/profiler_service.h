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
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "controlplane/api/router.h"
#include "controlplane/profiler/flame.h"
#include "controlplane/profiler/sampler.h"
#include "platform/uring/event_loop.h"

namespace herald::profiler {

struct ProfilerOptions {
  SamplerOptions sampler;
  uint32_t interval_ms = 100;     // background sampling
  uint32_t min_interval_ms = 10;  // the fastest a capture may ask for
  uint32_t max_duration_s = 600;  // the longest capture
  bool enabled = true;            // false: no background sampling (captures still run)
  // Flame graphs (a capture with flame=1 or flame_hz=N): the perf binary (searched in PATH),
  // where its temporary files go, the sampling frequency bounds and the folding limits.
  std::string perf_path = "perf";
  std::string flame_dir = "/tmp";
  uint32_t default_flame_hz = 499;
  uint32_t max_flame_hz = 10'000;
  // perf may take this long to stop after SIGINT, and perf script this long to symbolize;
  // past them they are killed and the capture says so.
  uint32_t perf_stop_timeout_ms = 10'000;
  uint32_t perf_script_timeout_ms = 60'000;
  FlameLimits flame_limits;
};

// kFinishing: the samples are taken, the flame graph is still being made (perf stopping, perf
// script symbolizing); the API answers as while running.
enum class CaptureState : uint8_t { kIdle, kRunning, kFinishing, kDone };
std::string_view capture_state_name(CaptureState state);

struct ProfilerStats {
  uint64_t captures_started = 0;
  uint64_t captures_stopped = 0;   // by the API before their duration
  uint64_t captures_finished = 0;  // reached their duration
  uint64_t downloads = 0;
  uint64_t rejected = 0;    // a start with a bad interval or duration, or while running
  uint64_t late_ticks = 0;  // the timer fired more than one interval late
  uint64_t flames_ok = 0;
  uint64_t flames_failed = 0;  // asked for, but no profile (the capture says why)
  FoldStats fold;              // summed over captures
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
  // The pid a flame graph profiles (the connected dataplane's; 0: none).
  void set_flame_target(std::function<int()> pid) { flame_target_ = std::move(pid); }

  // Starts a capture: the ring is sampled every interval_ms for duration_ms; the capture is
  // the ring's window from its start (the history before it stays in the ring).
  // kInvalidArgument (interval below min_interval_ms or above 60 s, duration 0 or above
  // max_duration_s, or more samples than the ring holds); kFailedPrecondition while one runs.
  // flame_hz > 0: also a CPU profile of the flame target at that frequency (max_flame_hz).
  absl::Status start_capture(uint32_t interval_ms, uint64_t duration_ms, uint32_t flame_hz = 0);
  // Ends a running capture now; kFailedPrecondition when none runs.
  absl::Status stop_capture();
  // The finished capture's bytes; kNotFound without one, kFailedPrecondition while running.
  absl::StatusOr<std::string> download() const;
  std::string status_json() const;

  // GET /v1/profiler (read), POST /v1/profiler/capture?interval_ms=&duration_ms=[&flame=1]
  // [&flame_hz=N] (admin),
  // POST /v1/profiler/capture/stop (admin), GET /v1/profiler/capture (read).
  void add_routes(api::Router& router);

  // The timer's body, public for tests that drive time themselves.
  void on_timer();

 private:
  static void on_timer_completion(uring::Operation& op, const uring::Completion& completion);
  void arm();
  void finish_capture();
  // The flame graph's steps, driven by flame_op_'s timer until the capture is done.
  void start_flame(uint32_t hz);
  void poll_flame();
  void end_flame(std::string status);
  void complete_capture();
  static void on_flame_completion(uring::Operation& op, const uring::Completion& completion);
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
  // The sampler's CPU over the last capture's samples (its cost at that interval).
  uint64_t capture_cpu_start_ns_ = 0;
  uint64_t capture_samples_start_ = 0;
  double capture_sample_cpu_us_ = 0;
  Capture pending_;  // the samples of a finishing capture, waiting for its flame graph

  enum class FlameStep : uint8_t { kNone, kRecording, kStopping, kScripting };
  std::function<int()> flame_target_;
  FlameStep flame_step_ = FlameStep::kNone;
  ChildProcess perf_;
  std::string flame_base_;  // temporary files: base + ".data", ".script", ".err"
  uint64_t flame_deadline_ns_ = 0;
  std::optional<FlameProfile> flame_;
  std::string last_flame_status_;  // of the last capture's profile, for the status
  uring::Operation flame_op_;
  ProfilerStats stats_;
};

}  // namespace herald::profiler

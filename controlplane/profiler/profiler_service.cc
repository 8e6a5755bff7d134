// The profiler's timer, capture state machine and admin routes (profiler_service.h).
#include "controlplane/profiler/profiler_service.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/api/json_codec.h"

namespace herald::profiler {
namespace {

constexpr uint32_t kMaxIntervalMs = 60'000;
// How often the flame graph's children are checked (waitpid WNOHANG on a loop timer).
constexpr uint64_t kFlamePollNs = 50'000'000;

uint64_t unix_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return {};
  return buf;
}

// A JSON string literal (the API's escaping).
std::string json_quoted(std::string_view s) {
  std::string out;
  api::append_json_string(out, s);
  return out;
}

// A decimal query parameter; nullopt when absent, malformed or above `max`.
std::optional<uint64_t> number_param(std::string_view query, std::string_view name, uint64_t max) {
  const std::optional<std::string> text = api::query_param(query, name);
  if (!text || text->empty() || text->size() > 19) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || ptr != text->data() + text->size() || v > max) return std::nullopt;
  return v;
}

int http_status_for(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kFailedPrecondition: return 409;
    default: return 500;
  }
}

}  // namespace

std::string_view capture_state_name(CaptureState state) {
  switch (state) {
    case CaptureState::kIdle: return "idle";
    case CaptureState::kRunning: return "running";
    case CaptureState::kFinishing: return "finishing";
    case CaptureState::kDone: return "done";
  }
  return "idle";
}

ProfilerService::ProfilerService(uring::EventLoop& loop, ProfilerOptions options,
                                 clock::Clock clock)
    : loop_(loop),
      options_(std::move(options)),
      clock_(clock),
      sampler_(options_.sampler, clock),
      timer_op_(&ProfilerService::on_timer_completion, this),
      flame_op_(&ProfilerService::on_flame_completion, this) {
  options_.min_interval_ms = std::max<uint32_t>(options_.min_interval_ms, 1);
  options_.interval_ms = std::max(options_.interval_ms, options_.min_interval_ms);
}

ProfilerService::~ProfilerService() {
  shutdown();
}

void ProfilerService::start() {
  if (running_) return;
  running_ = true;
  arm();
}

void ProfilerService::shutdown() {
  running_ = false;
  if (timer_op_.in_flight()) loop_.cancel(timer_op_);
  if (flame_op_.in_flight()) loop_.cancel(flame_op_);
  while (timer_op_.in_flight() || flame_op_.in_flight()) loop_.run_once(10'000'000);
  // A perf still running is killed and reaped (ChildProcess), its files removed.
  if (perf_.running()) perf_.signal(SIGKILL);
  flame_step_ = FlameStep::kNone;
  if (!flame_base_.empty()) {
    for (const char* ext : {"", ".data", ".out", ".err", ".script"}) {
      ::unlink(absl::StrCat(flame_base_, ext).c_str());
    }
    flame_base_.clear();
  }
}

void ProfilerService::set_interval_ms(uint32_t interval_ms) {
  const uint32_t ms = std::max(interval_ms, options_.min_interval_ms);
  if (ms == options_.interval_ms) return;
  options_.interval_ms = ms;
  // Re-armed at the new interval by the cancelled timer's completion.
  if (state_ != CaptureState::kRunning && timer_op_.in_flight()) loop_.cancel(timer_op_);
}

uint64_t ProfilerService::current_interval_ns() const {
  const uint32_t ms =
      state_ == CaptureState::kRunning ? capture_interval_ms_ : options_.interval_ms;
  return uint64_t{ms} * 1'000'000;
}

void ProfilerService::arm() {
  if (!running_ || timer_op_.in_flight()) return;
  // Sampling only while enabled or a capture runs: a disabled profiler costs nothing.
  if (!options_.enabled && state_ != CaptureState::kRunning) return;
  // One-shot, re-armed after each sample: when the loop is busy the profiler samples less
  // often rather than queueing ticks, and sample times come from the monotonic clock anyway.
  loop_.timeout(timer_op_, current_interval_ns());
}

void ProfilerService::on_timer_completion(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<ProfilerService>();
  if (c.result == 0) self->on_timer();
  // -ECANCELED: an interval change (start or stop of a capture) or shutdown; arm() decides.
  self->arm();
}

void ProfilerService::on_timer() {
  const uint64_t now_ns = clock_.now_ns();
  if (last_tick_ns_ != 0 && now_ns - last_tick_ns_ > 2 * current_interval_ns()) {
    ++stats_.late_ticks;
  }
  last_tick_ns_ = now_ns;
  sampler_.sample();
  if (state_ == CaptureState::kRunning) {
    ++capture_samples_;
    if (now_ns - capture_start_ns_ >= capture_duration_ms_ * 1'000'000) {
      ++stats_.captures_finished;
      finish_capture();
    }
  }
}

absl::Status ProfilerService::start_capture(uint32_t interval_ms, uint64_t duration_ms,
                                            uint32_t flame_hz) {
  if (state_ == CaptureState::kRunning || state_ == CaptureState::kFinishing) {
    ++stats_.rejected;
    return absl::FailedPreconditionError("a capture is already running; stop it first");
  }
  if (interval_ms < options_.min_interval_ms || interval_ms > kMaxIntervalMs) {
    ++stats_.rejected;
    return absl::InvalidArgumentError(
        absl::StrCat("interval_ms must be in ", options_.min_interval_ms, "..", kMaxIntervalMs));
  }
  if (duration_ms == 0 || duration_ms > uint64_t{options_.max_duration_s} * 1000) {
    ++stats_.rejected;
    return absl::InvalidArgumentError(
        absl::StrCat("duration_ms must be in 1..", uint64_t{options_.max_duration_s} * 1000));
  }
  if (flame_hz > options_.max_flame_hz) {
    ++stats_.rejected;
    return absl::InvalidArgumentError(
        absl::StrCat("flame_hz must be in 1..", options_.max_flame_hz));
  }
  // The capture is the ring's window: it must fit, or its start would be overwritten.
  if (duration_ms / interval_ms + 2 > sampler_.options().ring_samples) {
    ++stats_.rejected;
    return absl::InvalidArgumentError(
        absl::StrCat("duration_ms / interval_ms must stay below the ring's ",
                     sampler_.options().ring_samples, " samples (profiler.history_samples)"));
  }
  state_ = CaptureState::kRunning;
  capture_interval_ms_ = interval_ms;
  capture_duration_ms_ = duration_ms;
  capture_start_ns_ = clock_.now_ns();
  capture_start_unix_ms_ = unix_ms();
  capture_bytes_.clear();
  capture_samples_ = 0;
  ++stats_.captures_started;
  capture_cpu_start_ns_ = sampler_.stats().total_sample_cpu_ns;
  capture_samples_start_ = sampler_.stats().samples;
  flame_.reset();
  last_flame_status_.clear();
  if (flame_hz > 0) start_flame(flame_hz);
  // A first sample now, so every rate has a base at the capture's start.
  sampler_.sample();
  ++capture_samples_;
  // Re-arm at the capture's interval (the completion's arm() picks it up).
  if (timer_op_.in_flight()) {
    loop_.cancel(timer_op_);
  } else {
    arm();
  }
  return absl::OkStatus();
}

void ProfilerService::start_flame(uint32_t hz) {
  FlameProfile& f = flame_.emplace();
  f.frequency_hz = hz;
  const int pid = flame_target_ ? flame_target_() : 0;
  if (pid <= 0) {
    end_flame("no dataplane pid (the dataplane is not connected)");
    return;
  }
  f.pid = static_cast<uint64_t>(pid);
  std::string tmpl = absl::StrCat(options_.flame_dir, "/herald-flame-XXXXXX");
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    end_flame(
        absl::StrCat("cannot create a file in ", options_.flame_dir, ": ", std::strerror(errno)));
    return;
  }
  ::close(fd);
  flame_base_ = tmpl;
  const int rc =
      perf_.spawn({options_.perf_path, "record", "-e", "cpu-clock", "-F", absl::StrCat(hz), "-g",
                   "-p", absl::StrCat(pid), "-o", flame_base_ + ".data"},
                  flame_base_ + ".out", flame_base_ + ".err");
  if (rc != 0) {
    end_flame(rc == ENOENT ? std::string("perf not installed")
                           : absl::StrCat("perf could not start: ", std::strerror(rc)));
    return;
  }
  flame_step_ = FlameStep::kRecording;
  if (!flame_op_.in_flight()) loop_.timeout(flame_op_, kFlamePollNs);
}

void ProfilerService::on_flame_completion(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<ProfilerService>();
  if (c.result == -ECANCELED || !self->running_) return;
  self->poll_flame();
  if (self->flame_step_ != FlameStep::kNone && !self->flame_op_.in_flight()) {
    self->loop_.timeout(self->flame_op_, kFlamePollNs);
  }
}

void ProfilerService::poll_flame() {
  const uint64_t now_ns = clock_.now_ns();
  if (!perf_.poll()) {
    if (flame_step_ != FlameStep::kRecording && now_ns > flame_deadline_ns_) {
      // Killed; the next poll reaps it and says so.
      perf_.signal(SIGKILL);
      flame_deadline_ns_ = UINT64_MAX;
    }
    return;
  }
  const int status = perf_.exit_status();
  // perf record ends on our SIGINT with status 0 (or dies of it); anything else failed.
  const bool ok = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                  (WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
  const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  const std::string err_path = flame_base_ + ".err";
  auto failure = [&](std::string_view what) {
    const std::string line = first_line_of(err_path);
    return absl::StrCat(std::string(what), " failed (", describe_wait_status(status), ")",
                        line.empty() ? "" : ": ", line);
  };
  if (flame_step_ == FlameStep::kRecording || flame_step_ == FlameStep::kStopping) {
    if (killed && flame_step_ == FlameStep::kStopping) {
      end_flame(
          absl::StrCat("perf record did not stop within ", options_.perf_stop_timeout_ms, " ms"));
      return;
    }
    if (!ok) {
      end_flame(failure("perf record"));
      return;
    }
    // Recorded (early when the dataplane exited): symbolize it.
    const int rc = perf_.spawn(
        {options_.perf_path, "script", "-F", "comm,tid,ip,sym", "-i", flame_base_ + ".data"},
        flame_base_ + ".script", err_path);
    if (rc != 0) {
      end_flame(absl::StrCat("perf script could not start: ", std::strerror(rc)));
      return;
    }
    flame_step_ = FlameStep::kScripting;
    flame_deadline_ns_ = now_ns + uint64_t{options_.perf_script_timeout_ms} * 1'000'000;
    return;
  }
  if (flame_step_ != FlameStep::kScripting) return;
  if (killed) {
    end_flame(
        absl::StrCat("perf script did not finish within ", options_.perf_script_timeout_ms, " ms"));
    return;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    end_flame(failure("perf script"));
    return;
  }
  // Read and folded on the loop: bounded by max_script_bytes (a 30 s capture at 499 Hz of a
  // few threads is some tens of MB of text, a fraction of a second to fold).
  std::ifstream in(flame_base_ + ".script", std::ios::binary | std::ios::ate);
  const std::streamoff size = in.tellg();
  // Sized from the file (at most the limit), not the limit: no 256 MiB zero-fill per capture.
  std::string text(
      static_cast<size_t>(std::clamp<std::streamoff>(
          size, 0, static_cast<std::streamoff>(options_.flame_limits.max_script_bytes))),
      '\0');
  in.seekg(0);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  if (size > static_cast<std::streamoff>(text.size())) {
    // Cut at the limit: only whole samples (up to the last blank line) are folded.
    const size_t end = text.rfind("\n\n");
    text.resize(end == std::string::npos ? 0 : end + 2);
  }
  FoldStats fold;
  flame_->stacks = fold_perf_script(text, options_.flame_limits, &fold);
  stats_.fold.samples += fold.samples;
  stats_.fold.stacks_merged += fold.stacks_merged;
  stats_.fold.frames_cut += fold.frames_cut;
  stats_.fold.stacks_cut += fold.stacks_cut;
  stats_.fold.bad_lines += fold.bad_lines;
  end_flame(flame_->stacks.empty() ? "no samples" : "ok");
}

void ProfilerService::end_flame(std::string status) {
  flame_->status = std::move(status);
  flame_step_ = FlameStep::kNone;
  if (flame_->status == "ok") {
    ++stats_.flames_ok;
  } else {
    ++stats_.flames_failed;
  }
  if (!flame_base_.empty()) {
    for (const char* ext : {"", ".data", ".out", ".err", ".script"}) {
      ::unlink(absl::StrCat(flame_base_, ext).c_str());
    }
    flame_base_.clear();
  }
  if (state_ == CaptureState::kFinishing) complete_capture();
}

absl::Status ProfilerService::stop_capture() {
  if (state_ != CaptureState::kRunning) {
    return absl::FailedPreconditionError("no capture is running");
  }
  ++stats_.captures_stopped;
  finish_capture();
  return absl::OkStatus();
}

void ProfilerService::finish_capture() {
  CaptureMeta meta;
  meta.node = options_.sampler.node_name;
  meta.host = host_name();
  meta.start_unix_ms = capture_start_unix_ms_;
  meta.interval_ns = uint64_t{capture_interval_ms_} * 1'000'000;
  // The samples end here; the flame graph may take a while longer (perf stops, symbolizes).
  pending_ = sampler_.capture_since(capture_start_ns_, meta);
  const uint64_t samples = sampler_.stats().samples - capture_samples_start_;
  capture_sample_cpu_us_ =
      samples == 0
          ? 0.0
          : static_cast<double>(sampler_.stats().total_sample_cpu_ns - capture_cpu_start_ns_) /
                1000.0 / static_cast<double>(samples);
  state_ = CaptureState::kFinishing;
  // Back to the background interval.
  if (timer_op_.in_flight()) loop_.cancel(timer_op_);
  if (flame_step_ == FlameStep::kRecording) {
    perf_.signal(SIGINT);
    flame_step_ = FlameStep::kStopping;
    flame_deadline_ns_ = clock_.now_ns() + uint64_t{options_.perf_stop_timeout_ms} * 1'000'000;
    return;
  }
  if (flame_step_ == FlameStep::kNone) complete_capture();
}

void ProfilerService::complete_capture() {
  last_flame_status_ = flame_ ? flame_->status : std::string();
  pending_.flame = std::move(flame_);
  flame_.reset();
  capture_bytes_ = encode_capture(pending_);
  pending_ = Capture{};
  state_ = CaptureState::kDone;
}

absl::StatusOr<std::string> ProfilerService::download() const {
  if (state_ == CaptureState::kRunning || state_ == CaptureState::kFinishing) {
    return absl::FailedPreconditionError("the capture is still running");
  }
  if (state_ == CaptureState::kIdle) return absl::NotFoundError("no capture has been taken");
  return capture_bytes_;
}

std::string ProfilerService::status_json() const {
  const SamplerStats& s = sampler_.stats();
  const double cpu_per_sample_us = s.samples == 0 ? 0.0
                                                  : static_cast<double>(s.total_sample_cpu_ns) /
                                                        1000.0 / static_cast<double>(s.samples);
  std::string out = absl::StrCat(
      "{\"state\":\"", std::string(capture_state_name(state_)),
      "\",\"enabled\":", options_.enabled ? "true" : "false",
      ",\"interval_ms\":", options_.interval_ms, ",\"capture_interval_ms\":", capture_interval_ms_,
      ",\"capture_duration_ms\":", capture_duration_ms_, ",\"capture_samples\":", capture_samples_,
      ",\"capture_bytes\":", capture_bytes_.size(), ",\"ring_samples\":", sampler_.ring_size(),
      ",\"ring_capacity\":", sampler_.options().ring_samples,
      ",\"series\":", sampler_.series().size(), ",\"samples\":", s.samples,
      ",\"source_errors\":", s.source_errors, ",\"malformed_lines\":", s.malformed_lines,
      ",\"counters_errors\":", s.counters_errors, ",\"series_dropped\":", s.series_dropped,
      ",\"sample_cpu_us\":", cpu_per_sample_us,
      ",\"capture_sample_cpu_us\":", capture_sample_cpu_us_,
      ",\"hardware_counters_open\":", sampler_.perf().open_count(),
      ",\"hardware_counters_unavailable\":", json_quoted(sampler_.perf().unavailable_reason()),
      ",\"slow_reads\":", s.slow_reads, ",\"flame\":",
      json_quoted(flame_ ? (flame_->status.empty() ? "recording" : flame_->status)
                         : last_flame_status_),
      ",\"flames_ok\":", stats_.flames_ok, ",\"flames_failed\":", stats_.flames_failed, "}");
  return out;
}

void ProfilerService::add_routes(api::Router& router) {
  router.add(http::Method::kGet, "/v1/profiler", api::Scope::kRead,
             [this](api::Call& call) { call.respond_json(200, status_json()); });
  router.add(
      http::Method::kPost, "/v1/profiler/capture", api::Scope::kAdmin, [this](api::Call& call) {
        const std::string_view query = call.request.query();
        const auto interval = number_param(query, "interval_ms", kMaxIntervalMs);
        if (!interval) {
          ++stats_.rejected;
          call.respond_error(400, "invalid_interval",
                             "interval_ms: a decimal number of milliseconds", "interval_ms");
          return;
        }
        const auto duration = number_param(query, "duration_ms", UINT32_MAX);
        if (!duration) {
          ++stats_.rejected;
          call.respond_error(400, "invalid_duration",
                             "duration_ms: a decimal number of milliseconds", "duration_ms");
          return;
        }
        // flame=1 (at default_flame_hz) or flame_hz=N: a perf profile of the dataplane.
        uint32_t flame_hz = 0;
        if (api::query_param(query, "flame_hz")) {
          const auto hz = number_param(query, "flame_hz", options_.max_flame_hz);
          if (!hz || *hz == 0) {
            ++stats_.rejected;
            call.respond_error(
                400, "invalid_flame_hz",
                absl::StrCat("flame_hz: 1..", options_.max_flame_hz, " samples a second"),
                "flame_hz");
            return;
          }
          flame_hz = static_cast<uint32_t>(*hz);
        } else if (const auto flame = api::query_param(query, "flame")) {
          if (*flame != "0" && *flame != "1") {
            ++stats_.rejected;
            call.respond_error(400, "invalid_flame", "flame: 0 or 1", "flame");
            return;
          }
          if (*flame == "1") flame_hz = options_.default_flame_hz;
        }
        const absl::Status s = start_capture(static_cast<uint32_t>(*interval), *duration, flame_hz);
        if (!s.ok()) {
          const bool bad_interval = s.message().find("interval_ms") == 0;
          call.respond_error(http_status_for(s),
                             s.code() == absl::StatusCode::kFailedPrecondition
                                 ? "capture_running"
                                 : (bad_interval ? "invalid_interval" : "invalid_duration"),
                             std::string(s.message()),
                             bad_interval ? "interval_ms" : "duration_ms");
          return;
        }
        call.respond_json(202, status_json());
      });
  router.add(http::Method::kPost, "/v1/profiler/capture/stop", api::Scope::kAdmin,
             [this](api::Call& call) {
               if (absl::Status s = stop_capture(); !s.ok()) {
                 call.respond_error(409, "no_capture_running", std::string(s.message()));
                 return;
               }
               call.respond_json(200, status_json());
             });
  router.add(http::Method::kGet, "/v1/profiler/capture", api::Scope::kRead,
             [this](api::Call& call) {
               absl::StatusOr<std::string> bytes = download();
               if (!bytes.ok()) {
                 call.respond_error(http_status_for(bytes.status()),
                                    bytes.status().code() == absl::StatusCode::kNotFound
                                        ? "no_capture"
                                        : "capture_running",
                                    std::string(bytes.status().message()));
                 return;
               }
               ++stats_.downloads;
               call.responder.respond(200, "application/octet-stream", *bytes);
             });
}

}  // namespace herald::profiler

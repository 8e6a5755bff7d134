// The profiler's timer, capture state machine and admin routes (profiler_service.h).
#include "controlplane/profiler/profiler_service.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/api/json_codec.h"

namespace herald::profiler {
namespace {

constexpr uint32_t kMaxIntervalMs = 60'000;

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
      timer_op_(&ProfilerService::on_timer_completion, this) {
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
  while (timer_op_.in_flight()) loop_.run_once(10'000'000);
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

absl::Status ProfilerService::start_capture(uint32_t interval_ms, uint64_t duration_ms) {
  if (state_ == CaptureState::kRunning) {
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
  capture_bytes_ = encode_capture(sampler_.capture_since(capture_start_ns_, meta));
  state_ = CaptureState::kDone;
  // Back to the background interval.
  if (timer_op_.in_flight()) loop_.cancel(timer_op_);
}

absl::StatusOr<std::string> ProfilerService::download() const {
  if (state_ == CaptureState::kRunning) {
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
      ",\"hardware_counters_open\":", sampler_.perf().open_count(),
      ",\"hardware_counters_unavailable\":", json_quoted(sampler_.perf().unavailable_reason()),
      "}");
  return out;
}

void ProfilerService::add_routes(api::Router& router) {
  router.add(http::Method::kGet, "/v1/profiler", api::Scope::kRead,
             [this](api::Call& call) { call.respond_json(200, status_json()); });
  router.add(http::Method::kPost, "/v1/profiler/capture", api::Scope::kAdmin,
             [this](api::Call& call) {
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
               const absl::Status s = start_capture(static_cast<uint32_t>(*interval), *duration);
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

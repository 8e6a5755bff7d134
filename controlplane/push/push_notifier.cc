// The push notifier (see push_notifier.h).
#include "controlplane/push/push_notifier.h"

#include <algorithm>
#include <utility>

#include "platform/log/log.h"

namespace herald::push {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
// Devices looked at per batch, tokens or not: a queue of devices without tokens must not turn
// one timer into a long walk on the loop.
constexpr uint32_t kLookupsPerBatchFactor = 8;

}  // namespace

std::string PushNotifier::batch_json(std::span<const PushEntry> entries) {
  std::string out = "{\"hints\":[";
  bool first = true;
  for (const PushEntry& e : entries) {
    if (!first) out += ',';
    first = false;
    out += "{\"account\":\"";
    out += auth::format_account_id(e.account);
    out += "\",\"device\":";
    out += std::to_string(e.device);
    out += ",\"platform\":\"";
    out += platform_name(e.platform);
    out += "\",\"token\":\"";
    out += e.token;
    out += "\",\"count\":";
    out += std::to_string(e.count);
    out += '}';
  }
  out += "]}";
  return out;
}

absl::StatusOr<std::unique_ptr<PushNotifier>> PushNotifier::create(
    uring::EventLoop& loop, const PushNotifierOptions& options, TokenLookup lookup) {
  if (options.batch_size == 0 || options.max_attempts == 0 || options.max_queued_hints == 0 ||
      options.timeout_ms == 0 || options.interval_ms == 0 || options.initial_backoff_ms == 0 ||
      options.max_backoff_ms < options.initial_backoff_ms || !lookup) {
    return absl::InvalidArgumentError("push notifier limits must be positive");
  }
  std::optional<http::HttpTarget> target;
  std::shared_ptr<tls::ClientContext> tls_context;
  if (!options.url.empty()) {
    absl::StatusOr<http::HttpTarget> parsed = http::parse_http_url(options.url);
    if (!parsed.ok()) return parsed.status();
    // The CA store is read once for the notifier's life, not per POST.
    if (parsed->tls) {
      absl::StatusOr<std::shared_ptr<tls::ClientContext>> context =
          http::make_tls_client_context(options.ca_path);
      if (!context.ok()) return context.status();
      tls_context = std::move(*context);
    }
    target = std::move(*parsed);
  }
  return std::unique_ptr<PushNotifier>(new PushNotifier(loop, options, std::move(lookup),
                                                        std::move(target), std::move(tls_context)));
}

PushNotifier::PushNotifier(uring::EventLoop& loop, const PushNotifierOptions& options,
                           TokenLookup lookup, std::optional<http::HttpTarget> target,
                           std::shared_ptr<tls::ClientContext> tls)
    : loop_(loop), options_(options), lookup_(std::move(lookup)), target_(std::move(target)) {
  timer_op_.set_callback(&PushNotifier::on_timer, this);
  if (target_) client_ = std::make_unique<http::HttpClient>(loop, std::move(tls));
}

PushNotifier::~PushNotifier() {
  closing_ = true;
  if (!counts_.empty() || !batch_.empty()) {
    HLOG_WARN("push.dropped_at_shutdown")
        .kv("queued", static_cast<uint64_t>(counts_.size()))
        .kv("batch", static_cast<uint64_t>(batch_.size()));
  }
  client_.reset();  // cancels the exchange; its callback does not run
  if (timer_armed_) (void)loop_.cancel(timer_op_);
  while (timer_op_.in_flight()) (void)loop_.run_once(10'000'000);
}

void PushNotifier::on_hint(const auth::AccountId& account, uint32_t device) {
  ++stats_.hints;
  if (!enabled()) {
    ++stats_.disabled;
    return;
  }
  const Key key{account.hi, account.lo, device};
  if (auto it = counts_.find(key); it != counts_.end()) {
    if (it->second != UINT32_MAX) ++it->second;
    ++stats_.coalesced;
    return;
  }
  if (counts_.size() >= options_.max_queued_hints) {
    ++stats_.dropped_queue_full;
    HLOG_RATE_LIMITED(kWarn, "push.queue_full", 1)
        .kv("queued", static_cast<uint64_t>(counts_.size()));
    return;
  }
  counts_.emplace(key, 1);
  order_.push_back(key);
  stats_.queued = counts_.size();
  if (state_ == State::kIdle) arm(options_.interval_ms, State::kWaiting);
}

void PushNotifier::arm(uint64_t delay_ms, State state) {
  state_ = state;
  timer_armed_ = true;
  loop_.timeout(timer_op_, delay_ms * kNsPerMs);
}

void PushNotifier::on_timer(uring::Operation& op, const uring::Completion& c) {
  auto* self = op.context_as<PushNotifier>();
  self->timer_armed_ = false;
  if (self->closing_ || c.result == -ECANCELED) return;
  if (self->state_ == State::kWaiting) {
    self->send_next();
  } else if (self->state_ == State::kBackingOff) {
    self->post();
  }
}

void PushNotifier::send_next() {
  batch_.clear();
  attempts_ = 0;
  next_backoff_ms_ = options_.initial_backoff_ms;
  uint64_t looked_at = 0;
  const uint64_t max_lookups = uint64_t{options_.batch_size} * kLookupsPerBatchFactor;
  while (batch_.size() < options_.batch_size && !order_.empty() && looked_at < max_lookups) {
    const Key key = order_.front();
    order_.pop_front();
    const auto it = counts_.find(key);
    const uint32_t count = it->second;
    counts_.erase(it);
    ++looked_at;
    const auth::AccountId account{key.hi, key.lo};
    std::optional<PushToken> token = lookup_(account, key.device);
    if (!token) {
      ++stats_.no_token;
      continue;
    }
    batch_.push_back({account, key.device, token->platform, std::move(token->token), count});
  }
  stats_.queued = counts_.size();
  if (batch_.empty()) {
    state_ = State::kIdle;
    if (!order_.empty()) arm(options_.interval_ms, State::kWaiting);
    return;
  }
  post();
}

void PushNotifier::post() {
  state_ = State::kSending;
  ++attempts_;
  http::ClientRequest request;
  request.target = *target_;
  request.body = batch_json(batch_);
  http::ClientOptions client_options;
  client_options.timeout_ms = options_.timeout_ms;
  client_options.connect_timeout_ms =
      std::min(client_options.connect_timeout_ms, options_.timeout_ms);
  client_options.max_response_bytes = 4096;
  stats_.in_flight = batch_.size();
  absl::Status s = client_->start(
      request, client_options,
      [this](absl::StatusOr<http::ClientResponse> result) { on_result(std::move(result)); });
  if (!s.ok()) {
    ++stats_.failed;
    retry_or_drop(s.ToString());
  }
}

void PushNotifier::on_result(absl::StatusOr<http::ClientResponse> result) {
  if (!result.ok()) {
    ++stats_.failed;
    retry_or_drop(result.status().ToString());
    return;
  }
  const int status = result->status;
  if (status >= 200 && status < 300) {
    stats_.sent += batch_.size();
    ++stats_.batches_sent;
    batch_done();
    return;
  }
  ++stats_.failed;
  // RFC 9110 §15.5.9 (408) and RFC 6585 §4 (429) invite a retry; other 4xx are final: the
  // gateway refused this batch, and sending it again would not change its mind.
  if (status >= 400 && status < 500 && status != 408 && status != 429) {
    stats_.dropped_rejected += batch_.size();
    HLOG_RATE_LIMITED(kError, "push.batch_rejected", 1)
        .kv("status", status)
        .kv("entries", static_cast<uint64_t>(batch_.size()));
    batch_done();
    return;
  }
  retry_or_drop("HTTP " + std::to_string(status));
}

void PushNotifier::retry_or_drop(const std::string& why) {
  if (closing_) return;
  if (attempts_ >= options_.max_attempts) {
    stats_.dropped_gave_up += batch_.size();
    HLOG_RATE_LIMITED(kError, "push.batch_dropped", 1)
        .kv("attempts", attempts_)
        .kv("entries", static_cast<uint64_t>(batch_.size()))
        .kv("last_error", why);
    batch_done();
    return;
  }
  ++stats_.retries;
  HLOG_RATE_LIMITED(kWarn, "push.retry", 1)
      .kv("attempt", attempts_)
      .kv("backoff_ms", next_backoff_ms_)
      .kv("error", why);
  const uint64_t backoff_ms = next_backoff_ms_;
  next_backoff_ms_ = std::min(next_backoff_ms_ * 2, options_.max_backoff_ms);
  arm(backoff_ms, State::kBackingOff);
}

void PushNotifier::batch_done() {
  batch_.clear();
  stats_.in_flight = 0;
  state_ = State::kIdle;
  if (order_.empty()) return;
  // A backlog of a full batch or more goes out back to back; less waits for the interval.
  if (order_.size() >= options_.batch_size) {
    send_next();
  } else {
    arm(options_.interval_ms, State::kWaiting);
  }
}

}  // namespace herald::push

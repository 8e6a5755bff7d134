// The `webhook` code gateway (see webhook_gateway.h).
#include "controlplane/registration/webhook_gateway.h"

#include <algorithm>

#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::registration {

namespace {
constexpr uint64_t kNsPerMs = 1'000'000;
}  // namespace

struct WebhookGateway::Item {
  WebhookGateway* gateway = nullptr;
  std::string body;
  uint64_t deadline_ns = 0;
  uint32_t attempts = 0;
  uint64_t next_backoff_ms = 0;
  uring::Operation backoff_op;
  bool waiting = false;  // backoff timer armed
};

std::string WebhookGateway::body_json(PhoneNumber phone, CodeMethod method, std::string_view code,
                                      uint64_t expires_at_ms) {
  // Every value is from a closed alphabet ('+' and digits, "sms"/"voice", six digits), so no
  // JSON escaping is needed. expires_at is unix seconds (rounded down: never later than the
  // code's real expiry).
  std::string out = "{\"phone\":\"";
  out += phone.to_string();
  out += "\",\"code\":\"";
  out += code;
  out += "\",\"method\":\"";
  out += code_method_name(method);
  out += "\",\"expires_at\":";
  out += std::to_string(expires_at_ms / 1000);
  out += "}";
  return out;
}

absl::StatusOr<std::unique_ptr<WebhookGateway>> WebhookGateway::create(
    uring::EventLoop& loop, const WebhookOptions& options) {
  if (options.max_queue == 0 || options.max_in_flight == 0 || options.max_attempts == 0 ||
      options.total_deadline_ms == 0 || options.attempt_timeout_ms == 0) {
    return absl::InvalidArgumentError("webhook limits must be positive");
  }
  absl::StatusOr<http::HttpTarget> target = http::parse_http_url(options.url);
  if (!target.ok()) return target.status();
  // The CA store is loaded here, once for the gateway's life, not per request (parsing the
  // system bundle costs milliseconds). An http:// gateway needs none.
  std::shared_ptr<tls::ClientContext> tls_context;
  if (target->tls) {
    absl::StatusOr<std::shared_ptr<tls::ClientContext>> context =
        http::make_tls_client_context(options.ca_path);
    if (!context.ok()) return context.status();
    tls_context = std::move(*context);
  }
  return std::unique_ptr<WebhookGateway>(
      new WebhookGateway(loop, options, std::move(*target), std::move(tls_context)));
}

WebhookGateway::WebhookGateway(uring::EventLoop& loop, const WebhookOptions& options,
                               http::HttpTarget target, std::shared_ptr<tls::ClientContext> tls)
    : loop_(loop),
      options_(options),
      target_(std::move(target)),
      client_(std::make_unique<http::HttpClient>(loop, std::move(tls))) {}

WebhookGateway::~WebhookGateway() {
  closing_ = true;
  if (!items_.empty()) {
    HLOG_WARN("registration.webhook_dropped").kv("codes", static_cast<uint64_t>(items_.size()));
  }
  client_.reset();  // cancels exchanges; their callbacks do not run
  for (const auto& item : items_) {
    if (item->waiting) loop_.cancel(item->backoff_op);
  }
  auto waiting = [this] {
    return std::any_of(items_.begin(), items_.end(), [](const auto& i) { return i->waiting; });
  };
  while (waiting()) (void)loop_.run_once(10'000'000);
}

absl::Status WebhookGateway::send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                                       uint64_t now_ms) {
  if (items_.size() >= options_.max_queue) {
    ++stats_.queue_full;
    HLOG_RATE_LIMITED(kWarn, "registration.webhook_queue_full", 1)
        .kv("queued", static_cast<uint64_t>(items_.size()));
    return absl::ResourceExhaustedError("webhook queue full");
  }
  auto item = std::make_unique<Item>();
  item->gateway = this;
  item->body = body_json(phone, method, code, now_ms + options_.code_ttl_ms);
  item->deadline_ns = clock::monotonic_ns() + options_.total_deadline_ms * kNsPerMs;
  item->next_backoff_ms = options_.initial_backoff_ms;
  item->backoff_op.set_callback(&WebhookGateway::on_backoff, item.get());
  ready_.push_back(item.get());
  items_.push_back(std::move(item));
  ++stats_.accepted;
  stats_.queued = items_.size();
  pump();
  return absl::OkStatus();
}

void WebhookGateway::pump() {
  while (!closing_ && stats_.in_flight < options_.max_in_flight && !ready_.empty()) {
    Item* item = ready_.front();
    ready_.pop_front();
    start_attempt(item);
  }
}

void WebhookGateway::start_attempt(Item* item) {
  const uint64_t now = clock::monotonic_ns();
  if (now >= item->deadline_ns) {
    retry_or_give_up(item, "deadline passed while queued");
    return;
  }
  http::ClientRequest request;
  request.target = target_;
  request.body = item->body;
  request.headers = options_.headers;
  http::ClientOptions client_options;
  client_options.connect_timeout_ms = options_.connect_timeout_ms;
  // No attempt outlives the item's deadline.
  const uint64_t left_ms = (item->deadline_ns - now + kNsPerMs - 1) / kNsPerMs;
  client_options.timeout_ms = std::min(options_.attempt_timeout_ms, left_ms);
  client_options.max_response_bytes = 4096;
  ++item->attempts;
  ++stats_.attempts;
  absl::Status s = client_->start(request, client_options,
                                  [this, item](absl::StatusOr<http::ClientResponse> result) {
                                    on_result(item, std::move(result));
                                  });
  if (!s.ok()) {
    ++stats_.transport_errors;
    retry_or_give_up(item, s.ToString());
    return;
  }
  ++stats_.in_flight;
}

void WebhookGateway::on_result(Item* item, absl::StatusOr<http::ClientResponse> result) {
  --stats_.in_flight;
  stats_.tls_handshakes = client_->stats().tls_handshakes;
  stats_.tls_resumed = client_->stats().tls_resumed;
  if (!result.ok()) {
    ++stats_.transport_errors;
    if (http::is_tls_failure(result.status())) ++stats_.tls_failures;
    retry_or_give_up(item, result.status().ToString());
  } else if (result->status >= 200 && result->status < 300) {
    ++stats_.delivered;
    erase(item);
  } else {
    ++stats_.http_errors;
    const int status = result->status;
    // RFC 9110 §15.5.9 (408) and RFC 6585 §4 (429) invite a retry; other 4xx are final.
    if (status >= 400 && status < 500 && status != 408 && status != 429) {
      ++stats_.rejected;
      HLOG_RATE_LIMITED(kError, "registration.webhook_rejected", 1).kv("status", status);
      erase(item);
    } else {
      retry_or_give_up(item, "HTTP " + std::to_string(status));
    }
  }
  pump();
}

void WebhookGateway::retry_or_give_up(Item* item, const std::string& why) {
  const uint64_t now = clock::monotonic_ns();
  const uint64_t backoff_ms = item->next_backoff_ms;
  if (closing_ || item->attempts >= options_.max_attempts ||
      now + backoff_ms * kNsPerMs >= item->deadline_ns) {
    ++stats_.gave_up;
    HLOG_RATE_LIMITED(kError, "registration.webhook_gave_up", 1)
        .kv("attempts", item->attempts)
        .kv("last_error", why);
    erase(item);
    return;
  }
  ++stats_.retries;
  HLOG_RATE_LIMITED(kWarn, "registration.webhook_retry", 1)
      .kv("attempt", item->attempts)
      .kv("backoff_ms", backoff_ms)
      .kv("error", why);
  item->next_backoff_ms = std::min(backoff_ms * 2, options_.max_backoff_ms);
  item->waiting = true;
  loop_.timeout(item->backoff_op, backoff_ms * kNsPerMs);
}

void WebhookGateway::on_backoff(uring::Operation& op, const uring::Completion& c) {
  auto* item = op.context_as<Item>();
  item->waiting = false;
  WebhookGateway* self = item->gateway;
  if (self->closing_ || c.result == -ECANCELED) return;
  self->ready_.push_back(item);
  self->pump();
}

void WebhookGateway::erase(Item* item) {
  auto it =
      std::find_if(items_.begin(), items_.end(), [item](const auto& p) { return p.get() == item; });
  if (it != items_.end()) items_.erase(it);
  stats_.queued = items_.size();
}

}  // namespace herald::registration

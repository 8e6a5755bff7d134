// The `webhook` code gateway: POSTs {"phone","code","method","expires_at"} as JSON to the
// operator's SMS/voice provider URL (https://, or http:// on a trusted network), from a bounded
// queue, with retries (exponential backoff) inside a total deadline per code. send_code() only
// enqueues, so the registration request never waits on the provider; a full queue refuses the
// code at once (gateway_failed, 503) rather than letting codes pile up behind a dead provider.
//
// Retried: transport errors (TLS failures included: a provider mid-rotation of its certificate
// may recover), timeouts, 408, 429 and 5xx. Not retried: other 4xx (the provider
// refused this request; sending it again would not help and could double-send). Single-threaded:
// the control plane's event loop.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/http/client.h"
#include "controlplane/registration/code_gateway.h"
#include "platform/uring/event_loop.h"

namespace herald::registration {

struct WebhookOptions {
  std::string url;  // https://host[:port]/path or http://host[:port]/path
  // https:// only: PEM roots the provider's certificate must chain to; empty: the system bundle
  // (http::kSystemCaBundle). Read once, by create().
  std::string ca_path;
  // Extra request fields, e.g. {"Authorization", "Bearer <provider token>"}.
  std::vector<std::pair<std::string, std::string>> headers;
  uint64_t code_ttl_ms = 600'000;  // for expires_at (the registrar's code_ttl_ms)
  uint64_t connect_timeout_ms = 2'000;
  uint64_t attempt_timeout_ms = 5'000;  // one POST, connect included
  // From send_code() to giving up: no attempt starts after it, and none outlives it. Far less
  // than the code's TTL, so a code is never delivered after it stopped being useful.
  uint64_t total_deadline_ms = 60'000;
  uint32_t max_attempts = 6;
  uint64_t initial_backoff_ms = 250;  // doubled per retry, up to max_backoff_ms
  uint64_t max_backoff_ms = 8'000;
  uint32_t max_queue = 1024;   // codes accepted and not yet delivered or given up
  uint32_t max_in_flight = 8;  // concurrent POSTs
};

struct WebhookStats {
  uint64_t accepted = 0;
  uint64_t queue_full = 0;
  uint64_t delivered = 0;
  uint64_t attempts = 0;
  uint64_t retries = 0;
  uint64_t http_errors = 0;       // non-2xx answers
  uint64_t transport_errors = 0;  // connect, timeout, reset, malformed response, TLS
  uint64_t tls_failures = 0;      // of transport_errors: handshake, certificate, bad records
  uint64_t tls_handshakes = 0;    // completed (https://)
  uint64_t tls_resumed = 0;       // of those, resuming the provider's previous session
  uint64_t rejected = 0;          // given up on a non-retryable 4xx
  uint64_t gave_up = 0;           // attempts or deadline exhausted
  uint64_t queued = 0;            // gauge: accepted, not finished
  uint64_t in_flight = 0;         // gauge
};

class WebhookGateway final : public CodeGateway {
 public:
  // Parses and resolves the URL and, for https://, loads the CA bundle (blocking: call at
  // start-up or config reload). InvalidArgument for a bad URL or an unreadable bundle.
  static absl::StatusOr<std::unique_ptr<WebhookGateway>> create(uring::EventLoop& loop,
                                                                const WebhookOptions& options);
  // Drops what is still queued (logged) and waits for the kernel to release in-flight
  // operations. On the loop thread, outside its callbacks.
  ~WebhookGateway() override;
  WebhookGateway(const WebhookGateway&) = delete;
  WebhookGateway& operator=(const WebhookGateway&) = delete;

  // Enqueues the code; ResourceExhausted when the queue is full.
  absl::Status send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                         uint64_t now_ms) override;

  const WebhookStats& stats() const { return stats_; }

  // The JSON body for one code (exposed for tests).
  static std::string body_json(PhoneNumber phone, CodeMethod method, std::string_view code,
                               uint64_t expires_at_ms);

 private:
  struct Item;
  WebhookGateway(uring::EventLoop& loop, const WebhookOptions& options, http::HttpTarget target,
                 std::shared_ptr<tls::ClientContext> tls);
  void pump();
  void start_attempt(Item* item);
  void on_result(Item* item, absl::StatusOr<http::ClientResponse> result);
  void retry_or_give_up(Item* item, const std::string& why);
  void erase(Item* item);
  static void on_backoff(uring::Operation& op, const uring::Completion& c);

  uring::EventLoop& loop_;
  WebhookOptions options_;
  http::HttpTarget target_;
  std::vector<std::unique_ptr<Item>> items_;  // every accepted item, until finished
  std::deque<Item*> ready_;                   // waiting for an in-flight slot
  WebhookStats stats_;
  bool closing_ = false;
  // Declared last: destroyed first, so in-flight exchanges end before items_ goes.
  std::unique_ptr<http::HttpClient> client_;
};

}  // namespace herald::registration

// A small HTTP/1.1 client on the io_uring loop, for the control plane's outbound calls (the SMS
// provider webhook): one request per connection (Connection: close), a connect timeout and a
// deadline for the whole exchange, a strict status-line and header reader, and Content-Length
// or read-to-close bodies. Plain TCP only (no TLS yet).
//
//   HttpClient client(loop);
//   ClientRequest req{.address = *parse_http_url("http://10.0.0.5:8080/sms"), .body = json};
//   absl::Status s = client.start(req, {}, [](absl::StatusOr<ClientResponse> r) { ... });
//
// Threading: everything on the loop's thread; the callback runs from a loop completion, never
// inside start().
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/uring/event_loop.h"

namespace herald::http {

// An http:// URL resolved to a socket address. The host must be an IP literal or a name
// getaddrinfo(3) resolves; resolution happens once, here (blocking: call it at start-up or
// config load, never per request).
struct HttpTarget {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string host_header;  // "host" or "host:port", as the Host field (RFC 9110 §7.2)
  std::string path;         // origin-form, "/" when the URL has none
};
// "http://host[:port][/path]". InvalidArgument for anything else (https:// included: the client
// has no TLS yet), NotFound when the name does not resolve.
absl::StatusOr<HttpTarget> parse_http_url(std::string_view url);

struct ClientRequest {
  HttpTarget target;
  std::string method = "POST";
  std::string content_type = "application/json";
  std::string body;
  // Extra fields (an Authorization header for the provider); names and values must be free of
  // CR and LF (checked: InvalidArgument).
  std::vector<std::pair<std::string, std::string>> headers;
};

struct ClientOptions {
  uint64_t connect_timeout_ms = 2'000;
  uint64_t timeout_ms = 10'000;  // the whole exchange, connect included
  // A larger response body is cut here (body_truncated); the status is what callers act on.
  size_t max_response_bytes = 64 * 1024;
};

struct ClientResponse {
  int status = 0;
  std::string body;
  bool body_truncated = false;
};

// The outcome: a response (any status), or DeadlineExceeded (connect or overall timeout),
// Unavailable (connect refused, reset, closed early), InvalidArgument/DataLoss (a response that
// is not HTTP/1.x), Cancelled (the client was destroyed).
using ClientCallback = std::function<void(absl::StatusOr<ClientResponse> result)>;

struct ClientStats {
  uint64_t started = 0;
  uint64_t responses = 0;
  uint64_t connect_failures = 0;
  uint64_t timeouts = 0;
  uint64_t protocol_errors = 0;
  uint64_t io_errors = 0;
  uint64_t live = 0;  // gauge
};

class HttpClient {
 public:
  explicit HttpClient(uring::EventLoop& loop);
  // Cancels what is in flight (callbacks are not run) and runs the loop until the kernel has
  // let go of every operation. Call on the loop thread, outside the loop's callbacks.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts one exchange. An error here (bad header, no socket) means nothing was started and
  // `done` will not run; otherwise `done` runs exactly once, later.
  absl::Status start(const ClientRequest& request, const ClientOptions& options,
                     ClientCallback done);

  const ClientStats& stats() const { return stats_; }

 private:
  struct Exchange;
  friend struct Exchange;
  void finished(Exchange* exchange);

  uring::EventLoop& loop_;
  std::vector<std::unique_ptr<Exchange>> live_;
  bool closing_ = false;
  ClientStats stats_;
};

// Parses a response head ("HTTP/1.1 200 OK\r\n" fields "\r\n"): the status, and the body
// framing. Exposed for tests.
struct ResponseHead {
  int status = 0;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool chunked = false;
};
absl::StatusOr<ResponseHead> parse_response_head(std::string_view head);

}  // namespace herald::http

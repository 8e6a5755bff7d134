// A small HTTP/1.1 client on the io_uring loop, for the control plane's outbound calls (the SMS
// provider webhook): one request per connection (Connection: close), a connect timeout and a
// deadline for the whole exchange, a strict status-line and header reader, and Content-Length
// or read-to-close bodies. https:// URLs speak TLS 1.2 or 1.3 (platform/tls, BoringSSL, driven by
// bytes on the same loop) with the chain verified against a CA bundle and the host name checked.
//
//   auto tls = make_tls_client_context("");  // the system CA bundle; once, not per request
//   HttpClient client(loop, *tls);
//   ClientRequest req{.target = *parse_http_url("https://sms.example/v1"), .body = json};
//   absl::Status s = client.start(req, {}, [](absl::StatusOr<ClientResponse> r) { ... });
//
// Threading: everything on the loop's thread; the callback runs from a loop completion, never
// inside start().
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/uring/event_loop.h"

struct ssl_session_st;  // BoringSSL's SSL_SESSION, kept out of this header
namespace herald::tls {
class ClientContext;
}  // namespace herald::tls

namespace herald::http {

// An http:// or https:// URL resolved to a socket address. The host must be an IP literal or a name
// getaddrinfo(3) resolves; resolution happens once, here (blocking: call it at start-up or
// config load, never per request).
struct HttpTarget {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string host_header;  // "host" or "host:port", as the Host field (RFC 9110 §7.2)
  std::string path;         // origin-form, "/" when the URL has none
  bool tls = false;         // https://
  // The host without brackets or port: the TLS server name (SNI unless an IP literal) and the
  // name the certificate must carry.
  std::string server_name;
};
// "http://host[:port][/path]" or "https://host[:port][/path]" (port 80 or 443 by default).
// InvalidArgument for anything else, NotFound when the name does not resolve.
absl::StatusOr<HttpTarget> parse_http_url(std::string_view url);

// Where make_tls_client_context looks when given no CA path (Debian's ca-certificates bundle).
inline constexpr const char* kSystemCaBundle = "/etc/ssl/certs/ca-certificates.crt";

// The TLS settings of an HttpClient: TLS 1.2 minimum (1.3 preferred by negotiation), ALPN
// "http/1.1", servers verified against the PEM roots in `ca_path` (kSystemCaBundle when empty).
// Reads the bundle now (blocking: start-up or config reload); share the result between requests.
absl::StatusOr<std::shared_ptr<tls::ClientContext>> make_tls_client_context(
    const std::string& ca_path);

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
  // The body may be incomplete: cut at max_response_bytes, or a read-to-close body over TLS
  // that ended without close_notify (RFC 8446 §6.1: a truncation an attacker could cause).
  bool body_truncated = false;
};

// True for an error that came from TLS: a failed handshake (untrusted or misnamed certificate,
// no shared version or cipher, garbage records, a peer that left mid-handshake) or a broken
// record afterwards. Such errors are Unavailable, like a connect failure.
bool is_tls_failure(const absl::Status& status);

// The outcome: a response (any status), or DeadlineExceeded (connect or overall timeout, the
// TLS handshake included), Unavailable (connect refused, reset, closed early; or a TLS failure:
// see is_tls_failure), InvalidArgument/DataLoss (a response that is not HTTP/1.x), Cancelled
// (the client was destroyed).
using ClientCallback = std::function<void(absl::StatusOr<ClientResponse> result)>;

struct ClientStats {
  uint64_t started = 0;
  uint64_t responses = 0;
  uint64_t connect_failures = 0;
  uint64_t timeouts = 0;
  uint64_t protocol_errors = 0;
  uint64_t io_errors = 0;
  uint64_t tls_handshakes = 0;  // completed
  uint64_t tls_resumed = 0;     // of those, resuming an earlier session (no certificate work)
  uint64_t tls_failures = 0;    // see is_tls_failure
  uint64_t live = 0;            // gauge
};

class HttpClient {
 public:
  // `tls` serves https:// targets (make_tls_client_context); without it they fail to start
  // (FailedPrecondition).
  explicit HttpClient(uring::EventLoop& loop, std::shared_ptr<tls::ClientContext> tls = nullptr);
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

  // Resumable TLS sessions, one per target (server name and port): the newest ticket from a
  // successful exchange. Each is used once (RFC 8446 C.4: a ticket reused links connections),
  // and the connection that uses it brings the next one. Bounded: kMaxSessions targets.
  static constexpr size_t kMaxSessions = 64;
  using Session = std::shared_ptr<ssl_session_st>;  // tls::ClientSession
  Session take_session(const std::string& key);
  void keep_session(const std::string& key, Session session);
  std::map<std::string, Session> sessions_;

  uring::EventLoop& loop_;
  std::shared_ptr<tls::ClientContext> tls_;
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

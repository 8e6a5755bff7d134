// The HTTP/1.1 client on the io_uring loop (see client.h).
#include "controlplane/http/client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <span>

#include "absl/strings/cord.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"

namespace herald::http {

namespace {

constexpr size_t kMaxResponseHeadBytes = 16 * 1024;
constexpr size_t kRecvChunkBytes = 8 * 1024;
constexpr uint64_t kNsPerMs = 1'000'000;
// Marks a Status as a TLS failure (is_tls_failure), so callers count it apart from TCP errors
// without parsing messages.
constexpr const char* kTlsFailurePayload = "type.herald/http.TlsFailure";

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_crlf_or_nul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// The resumption cache's key: the name the certificate was checked against and where the
// connection went (the same name on another port may be another server).
std::string session_key_of(const HttpTarget& target) {
  return target.server_name + "|" + target.host_header;
}

std::string errno_text(int err) {
  return std::string(std::strerror(err));
}

}  // namespace

bool is_tls_failure(const absl::Status& status) {
  return status.GetPayload(kTlsFailurePayload).has_value();
}

absl::StatusOr<std::shared_ptr<tls::ClientContext>> make_tls_client_context(
    const std::string& ca_path) {
  tls::ClientOptions options;
  options.min_version = tls::TlsVersion::kTls12;
  options.max_version = tls::TlsVersion::kTls13;
  // Servers that speak ALPN must not pick h2 for a client that only reads HTTP/1.1.
  options.alpn_protocols = {"http/1.1"};
  options.ca_file = ca_path.empty() ? std::string(kSystemCaBundle) : ca_path;
  return tls::ClientContext::create(std::move(options));
}

absl::StatusOr<HttpTarget> parse_http_url(std::string_view url) {
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  bool secure = false;
  size_t scheme_length = 0;
  if (url.size() >= kHttp.size() && ieq(url.substr(0, kHttp.size()), kHttp)) {
    scheme_length = kHttp.size();
  } else if (url.size() >= kHttps.size() && ieq(url.substr(0, kHttps.size()), kHttps)) {
    scheme_length = kHttps.size();
    secure = true;
  } else {
    return absl::InvalidArgumentError("webhook URL must start with http:// or https://");
  }
  std::string_view rest = url.substr(scheme_length);
  const size_t slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  // "?q" or "#f" right after the authority: the path is "/" (prepending, not insert(), which
  // trips a GCC 12 -O3 -Wrestrict false positive).
  if (!path.empty() && path[0] != '/') path = "/" + path;
  if (path.find('#') != std::string::npos) path.erase(path.find('#'));
  if (authority.empty() || authority.find('@') != std::string_view::npos || has_crlf_or_nul(url) ||
      url.find(' ') != std::string_view::npos) {
    return absl::InvalidArgumentError("webhook URL has a bad authority");
  }
  std::string_view host = authority;
  std::string_view port_text;
  if (authority.front() == '[') {  // RFC 3986 §3.2.2: IPv6 literal in brackets
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("unclosed '['");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return absl::InvalidArgumentError("junk after ']'");
      port_text = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
  }
  uint16_t port = secure ? 443 : 80;
  if (!port_text.empty()) {
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0) {
      return absl::InvalidArgumentError("webhook URL has a bad port");
    }
  }
  if (host.empty()) return absl::InvalidArgumentError("webhook URL has no host");

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string host_text(host);
  const std::string port_string = std::to_string(port);
  if (int rc = ::getaddrinfo(host_text.c_str(), port_string.c_str(), &hints, &found);
      rc != 0 || found == nullptr) {
    return absl::NotFoundError("cannot resolve webhook host " + host_text + ": " +
                               ::gai_strerror(rc));
  }
  HttpTarget target;
  std::memcpy(&target.addr, found->ai_addr, found->ai_addrlen);
  target.addr_len = found->ai_addrlen;
  ::freeaddrinfo(found);
  target.host_header = std::string(authority);
  target.path = std::move(path);
  target.tls = secure;
  target.server_name = host_text;
  return target;
}

absl::StatusOr<ResponseHead> parse_response_head(std::string_view head) {
  // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
  size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return absl::InvalidArgumentError("no status line");
  std::string_view line = head.substr(0, eol);
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
    return absl::InvalidArgumentError("bad status line");
  }
  ResponseHead out;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return absl::InvalidArgumentError("bad status code");
    out.status = out.status * 10 + (line[i] - '0');
  }
  if (out.status < 100) return absl::InvalidArgumentError("bad status code");
  std::string_view fields = head.substr(eol + 2);
  while (!fields.empty()) {
    eol = fields.find("\r\n");
    if (eol == std::string_view::npos) return absl::InvalidArgumentError("unterminated field");
    std::string_view field = fields.substr(0, eol);
    fields.remove_prefix(eol + 2);
    if (field.empty()) break;
    const size_t colon = field.find(':');
    // RFC 9112 §5.1: no whitespace between the name and the colon; no obs-fold.
    if (colon == 0 || colon == std::string_view::npos || field.front() == ' ' ||
        field.front() == '\t' || field[colon - 1] == ' ' || field[colon - 1] == '\t') {
      return absl::InvalidArgumentError("bad header field");
    }
    std::string_view name = field.substr(0, colon);
    std::string_view value = trim_ows(field.substr(colon + 1));
    if (ieq(name, "Content-Length")) {
      uint64_t length = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() ||
          (out.has_content_length && length != out.content_length)) {
        return absl::InvalidArgumentError("bad Content-Length");
      }
      out.has_content_length = true;
      out.content_length = length;
    } else if (ieq(name, "Transfer-Encoding")) {
      out.chunked = true;
    }
  }
  // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; we read such a body to close.
  if (out.chunked) out.has_content_length = false;
  return out;
}

// One exchange: connect, (over TLS: handshake,) send the whole request, read the response; a
// timer enforces the connect timeout and the overall deadline. Owned by HttpClient::live_.
//
// Over TLS one socket operation is in flight at a time, as in plain HTTP: the engine's pending
// ciphertext (handshake flights, then the encrypted request) is sent first, and only when
// nothing is left to send do we receive. HTTP/1.1 with Connection: close never needs to send
// and receive at once, so this costs nothing and keeps the state small.
struct HttpClient::Exchange {
  enum class Phase : uint8_t { kConnecting, kSending, kReceiving };

  HttpClient* client = nullptr;
  ClientCallback done;
  int fd = -1;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string out;                      // the request; over TLS, the plaintext handed to the engine
  size_t sent = 0;                      // bytes of `out` sent (plain) or encrypted (TLS)
  std::string in;                       // response bytes (plaintext)
  size_t head_end = std::string::npos;  // offset of the body in `in` once the head is parsed
  ResponseHead head;
  Phase phase = Phase::kConnecting;
  uint64_t connect_deadline_ns = 0;
  uint64_t deadline_ns = 0;
  size_t max_response_bytes = 0;
  uring::Operation io_op;
  uring::Operation timer_op;
  bool io_busy = false;
  bool timer_busy = false;
  bool over = false;
  absl::StatusOr<ClientResponse> result = absl::UnknownError("unfinished");
  std::array<char, kRecvChunkBytes> buf{};
  // TLS only (null for http://).
  std::unique_ptr<tls::Connection> tls_conn;
  std::string wire;  // ciphertext being sent, copied out of the engine
  size_t wire_sent = 0;
  bool handshake_counted = false;
  std::string session_key;                                      // HttpClient::sessions_
  std::unique_ptr<std::array<uint8_t, kRecvChunkBytes>> plain;  // decrypted bytes

  uring::EventLoop& loop() { return client->loop_; }

  void arm_timer() {
    const uint64_t now = clock::monotonic_ns();
    const uint64_t next =
        phase == Phase::kConnecting ? std::min(connect_deadline_ns, deadline_ns) : deadline_ns;
    timer_busy = true;
    loop().timeout(timer_op, next > now ? next - now : 1);
  }
  void send_more() {
    io_busy = true;
    loop().send(io_op, fd, out.data() + sent, static_cast<uint32_t>(out.size() - sent));
  }
  void send_wire() {
    phase = Phase::kSending;
    io_busy = true;
    loop().send(io_op, fd, wire.data() + wire_sent, static_cast<uint32_t>(wire.size() - wire_sent));
  }
  void recv_more() {
    phase = Phase::kReceiving;
    io_busy = true;
    loop().recv(io_op, fd, buf.data(), static_cast<uint32_t>(buf.size()));
  }

  void finish(absl::StatusOr<ClientResponse> outcome) {
    if (over) return;
    over = true;
    result = std::move(outcome);
    if (io_busy) loop().cancel(io_op);
    if (timer_busy) loop().cancel(timer_op);
    maybe_release();
  }
  void fail(absl::Status status, uint64_t& counter) {
    ++counter;
    finish(std::move(status));
  }
  // Last step of every path: `this` may be gone afterwards.
  void maybe_release() {
    if (!over || io_busy || timer_busy) return;
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
    client->finished(this);
  }

  void succeed(std::string_view body, bool truncated) {
    ++client->stats_.responses;
    if (tls_conn != nullptr && tls_conn->session() != nullptr) {
      client->keep_session(session_key, tls_conn->session());
    }
    ClientResponse response;
    response.status = head.status;
    response.body = std::string(body);
    response.body_truncated = truncated;
    finish(std::move(response));
  }

  // Returns true when the exchange finished.
  bool check_response() {
    while (head_end == std::string::npos) {
      // The limit holds whether the head arrives in pieces or in one read.
      const size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos ? in.size() > kMaxResponseHeadBytes
                                   : end + 4 > kMaxResponseHeadBytes) {
        fail(absl::InvalidArgumentError("response head too large"), client->stats_.protocol_errors);
        return true;
      }
      if (end == std::string::npos) return false;
      absl::StatusOr<ResponseHead> parsed =
          parse_response_head(std::string_view(in).substr(0, end + 4));
      if (!parsed.ok()) {
        fail(parsed.status(), client->stats_.protocol_errors);
        return true;
      }
      if (parsed->status >= 100 && parsed->status < 200) {
        // An interim response (RFC 9110 §15.2): skip it, the final one follows.
        in.erase(0, end + 4);
        continue;
      }
      head = *parsed;
      head_end = end + 4;
    }
    std::string_view body = std::string_view(in).substr(head_end);
    if (head.has_content_length && body.size() >= head.content_length) {
      const bool truncated = head.content_length > max_response_bytes;
      succeed(body.substr(0, std::min<uint64_t>(head.content_length, max_response_bytes)),
              truncated);
      return true;
    }
    if (body.size() >= max_response_bytes) {
      succeed(body.substr(0, max_response_bytes), true);
      return true;
    }
    return false;
  }

  void on_eof() {
    if (head_end == std::string::npos) {
      fail(absl::UnavailableError("connection closed before a response"), client->stats_.io_errors);
      return;
    }
    std::string_view body = std::string_view(in).substr(head_end);
    if (head.has_content_length) {  // shorter than announced (longer finished earlier)
      fail(absl::DataLossError("response body shorter than its Content-Length"),
           client->stats_.protocol_errors);
      return;
    }
    succeed(body, false);
  }

  // ---- TLS ----------------------------------------------------------------------------------

  void tls_fail() {
    const bool handshaking = !tls_conn->handshake_done();
    std::string message = handshaking ? "TLS handshake failed: " : "TLS connection failed: ";
    message += std::string(tls::tls_error_name(tls_conn->error()));
    message += " (";
    message += std::string(tls_conn->error_reason());
    message += ")";
    absl::Status status = absl::UnavailableError(message);
    status.SetPayload(kTlsFailurePayload, absl::Cord("1"));
    // The alert the engine may have queued is not sent: the connection is closed at once, and
    // a peer that broke the protocol gets nothing more from us.
    fail(std::move(status), client->stats_.tls_failures);
  }

  // Moves the engine's pending ciphertext to `wire`; false when there is none.
  bool take_ciphertext() {
    const std::span<const uint8_t> pending = tls_conn->pending_ciphertext();
    if (pending.empty()) return false;
    wire.assign(reinterpret_cast<const char*>(pending.data()), pending.size());
    wire_sent = 0;
    tls_conn->consume_ciphertext(pending.size());
    return true;
  }

  // Chooses the next socket operation: send what the engine produced, else hand it more of
  // the request once the handshake is done, else receive.
  void pump_tls() {
    if (take_ciphertext()) {
      send_wire();
      return;
    }
    if (tls_conn->handshake_done() && sent < out.size()) {
      const auto* p = reinterpret_cast<const uint8_t*>(out.data()) + sent;
      const tls::IoResult w = tls_conn->write_plaintext(std::span(p, out.size() - sent));
      if (w.status == tls::IoStatus::kError) {
        tls_fail();
        return;
      }
      sent += w.bytes;
      if (take_ciphertext()) {
        send_wire();
        return;
      }
      // Output was drained, so the engine should have taken something: never spin.
      fail(absl::InternalError("TLS engine refused the request"), client->stats_.tls_failures);
      return;
    }
    recv_more();
  }

  // Decrypts what the engine holds into `in`. Returns false when the exchange finished.
  bool drain_plaintext(bool at_eof) {
    if (tls_conn->handshake_state() == tls::HandshakeState::kFailed) {
      tls_fail();
      return false;
    }
    if (!handshake_counted && tls_conn->handshake_done()) {
      handshake_counted = true;
      ++client->stats_.tls_handshakes;
      if (tls_conn->resumed()) ++client->stats_.tls_resumed;
    }
    for (;;) {
      const tls::IoResult r = tls_conn->read_plaintext(std::span(plain->data(), plain->size()));
      switch (r.status) {
        case tls::IoStatus::kOk:
          in.append(reinterpret_cast<const char*>(plain->data()), r.bytes);
          if (check_response()) return false;
          if (r.bytes == 0) return true;  // cannot happen with a non-empty buffer; never spin
          continue;
        case tls::IoStatus::kWantMore:
          if (at_eof) {
            on_eof();
            return false;
          }
          return true;
        case tls::IoStatus::kClosed:  // close_notify: the end of a read-to-close body
          on_eof();
          return false;
        case tls::IoStatus::kError:
          if (at_eof && tls_conn->handshake_done() &&
              tls_conn->error() == tls::TlsError::kTruncated) {
            // Many servers close without close_notify. A framed body was already judged by
            // check_response(); a read-to-close one may have been cut short, so say so.
            if (head_end != std::string::npos && !head.has_content_length) {
              succeed(std::string_view(in).substr(head_end), true);
            } else {
              on_eof();
            }
            return false;
          }
          tls_fail();
          return false;
      }
    }
  }

  void on_ciphertext(size_t bytes) {
    std::span<const uint8_t> rest(reinterpret_cast<const uint8_t*>(buf.data()), bytes);
    while (!rest.empty()) {
      const size_t took = tls_conn->feed_ciphertext(rest);
      rest = rest.subspan(took);
      if (!drain_plaintext(false)) return;
      if (took == 0) {
        // The engine's input is full and reading freed nothing: a bug, not the peer's doing.
        fail(absl::InternalError("TLS engine stalled"), client->stats_.tls_failures);
        return;
      }
    }
    pump_tls();
  }

  void on_tls_eof() {
    tls_conn->feed_eof();
    (void)drain_plaintext(true);
  }

  // ---- completions --------------------------------------------------------------------------

  static void on_io(uring::Operation& op, const uring::Completion& c) {
    auto* x = op.context_as<Exchange>();
    x->io_busy = false;
    if (x->over) {
      x->maybe_release();
      return;
    }
    if (c.result < 0) {
      const std::string what = x->phase == Phase::kConnecting ? "connect: " : "socket: ";
      x->fail(absl::UnavailableError(what + errno_text(-c.result)),
              x->phase == Phase::kConnecting ? x->client->stats_.connect_failures
                                             : x->client->stats_.io_errors);
      return;
    }
    if (x->tls_conn != nullptr) {
      x->on_tls_io(static_cast<size_t>(c.result));
      return;
    }
    switch (x->phase) {
      case Phase::kConnecting:
        x->phase = Phase::kSending;
        x->send_more();
        return;
      case Phase::kSending:
        x->sent += static_cast<size_t>(c.result);
        if (x->sent < x->out.size()) {
          x->send_more();
        } else {
          x->phase = Phase::kReceiving;
          x->recv_more();
        }
        return;
      case Phase::kReceiving:
        if (c.result == 0) {
          x->on_eof();
          return;
        }
        x->in.append(x->buf.data(), static_cast<size_t>(c.result));
        if (!x->check_response()) x->recv_more();
        return;
    }
  }

  void on_tls_io(size_t bytes) {
    switch (phase) {
      case Phase::kConnecting:
        pump_tls();  // the ClientHello
        return;
      case Phase::kSending:
        wire_sent += bytes;
        if (wire_sent < wire.size()) {
          send_wire();
        } else {
          pump_tls();
        }
        return;
      case Phase::kReceiving:
        if (bytes == 0) {
          on_tls_eof();
        } else {
          on_ciphertext(bytes);
        }
        return;
    }
  }

  static void on_timer(uring::Operation& op, const uring::Completion& c) {
    auto* x = op.context_as<Exchange>();
    x->timer_busy = false;
    if (x->over || c.result == -ECANCELED) {
      x->maybe_release();
      return;
    }
    const uint64_t now = clock::monotonic_ns();
    if (x->phase == Phase::kConnecting && now >= x->connect_deadline_ns) {
      x->fail(absl::DeadlineExceededError("connect timed out"), x->client->stats_.timeouts);
    } else if (now >= x->deadline_ns) {
      const bool handshaking = x->tls_conn != nullptr && !x->tls_conn->handshake_done();
      x->fail(absl::DeadlineExceededError(handshaking ? "TLS handshake timed out"
                                                      : "request timed out"),
              x->client->stats_.timeouts);
    } else {
      x->arm_timer();
    }
  }
};

HttpClient::HttpClient(uring::EventLoop& loop, std::shared_ptr<tls::ClientContext> tls)
    : loop_(loop), tls_(std::move(tls)) {}

absl::Status HttpClient::start(const ClientRequest& request, const ClientOptions& options,
                               ClientCallback done) {
  if (request.target.addr_len == 0) return absl::InvalidArgumentError("no target address");
  if (has_crlf_or_nul(request.method) || has_crlf_or_nul(request.target.path) ||
      has_crlf_or_nul(request.content_type) || request.method.empty()) {
    return absl::InvalidArgumentError("bad request line or content type");
  }
  for (const auto& [name, value] : request.headers) {
    if (name.empty() || has_crlf_or_nul(name) || has_crlf_or_nul(value) ||
        name.find(':') != std::string::npos) {
      return absl::InvalidArgumentError("bad header field");
    }
  }
  std::unique_ptr<tls::Connection> tls_connection;
  if (request.target.tls) {
    if (tls_ == nullptr) {
      return absl::FailedPreconditionError("https:// needs a TLS client context");
    }
    // Made before the socket: a bad server name fails here, and the ClientHello is ready.
    auto made = tls::Connection::client(tls_, request.target.server_name,
                                        take_session(session_key_of(request.target)));
    if (!made.ok()) return made.status();
    tls_connection = std::move(*made);
  }
  const int fd =
      ::socket(request.target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError("socket: " + errno_text(errno));

  auto x = std::make_unique<Exchange>();
  x->client = this;
  x->done = std::move(done);
  x->fd = fd;
  x->addr = request.target.addr;
  x->addr_len = request.target.addr_len;
  x->max_response_bytes = options.max_response_bytes;
  if (tls_connection != nullptr) {
    x->tls_conn = std::move(tls_connection);
    x->session_key = session_key_of(request.target);
    x->plain = std::make_unique<std::array<uint8_t, kRecvChunkBytes>>();
  }
  x->out.reserve(256 + request.body.size());
  x->out.append(request.method).append(" ").append(request.target.path).append(" HTTP/1.1\r\n");
  x->out.append("Host: ").append(request.target.host_header).append("\r\n");
  x->out.append("User-Agent: herald\r\nConnection: close\r\n");
  if (!request.content_type.empty()) {
    x->out.append("Content-Type: ").append(request.content_type).append("\r\n");
  }
  x->out.append("Content-Length: ").append(std::to_string(request.body.size())).append("\r\n");
  for (const auto& [name, value] : request.headers) {
    x->out.append(name).append(": ").append(value).append("\r\n");
  }
  x->out.append("\r\n").append(request.body);

  const uint64_t now = clock::monotonic_ns();
  x->connect_deadline_ns = now + options.connect_timeout_ms * kNsPerMs;
  x->deadline_ns = now + options.timeout_ms * kNsPerMs;
  x->io_op.set_callback(&Exchange::on_io, x.get());
  x->timer_op.set_callback(&Exchange::on_timer, x.get());
  x->io_busy = true;
  loop_.connect(x->io_op, x->fd, reinterpret_cast<const sockaddr*>(&x->addr), x->addr_len);
  x->arm_timer();
  ++stats_.started;
  ++stats_.live;
  live_.push_back(std::move(x));
  return absl::OkStatus();
}

HttpClient::Session HttpClient::take_session(const std::string& key) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return nullptr;
  Session session = std::move(it->second);
  sessions_.erase(it);
  return session;
}

void HttpClient::keep_session(const std::string& key, Session session) {
  if (sessions_.size() >= kMaxSessions && !sessions_.contains(key)) {
    sessions_.erase(sessions_.begin());  // any one: a target that lost its ticket handshakes fully
  }
  sessions_[key] = std::move(session);
}

void HttpClient::finished(Exchange* exchange) {
  auto it = std::find_if(live_.begin(), live_.end(),
                         [exchange](const auto& p) { return p.get() == exchange; });
  if (it == live_.end()) return;
  std::unique_ptr<Exchange> owned = std::move(*it);
  live_.erase(it);
  --stats_.live;
  ClientCallback done = std::move(owned->done);
  absl::StatusOr<ClientResponse> result = std::move(owned->result);
  owned.reset();
  if (!closing_ && done) done(std::move(result));
}

HttpClient::~HttpClient() {
  closing_ = true;
  std::vector<Exchange*> pending;
  pending.reserve(live_.size());
  for (const auto& x : live_) pending.push_back(x.get());
  for (Exchange* x : pending) x->finish(absl::CancelledError("client destroyed"));
  // The kernel may still hold the cancelled operations: wait for their final completions.
  while (!live_.empty()) (void)loop_.run_once(10'000'000);
}

}  // namespace herald::http

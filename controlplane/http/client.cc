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

#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::http {

namespace {

constexpr size_t kMaxResponseHeadBytes = 16 * 1024;
constexpr size_t kRecvChunkBytes = 8 * 1024;
constexpr uint64_t kNsPerMs = 1'000'000;

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

std::string errno_text(int err) {
  return std::string(std::strerror(err));
}

}  // namespace

absl::StatusOr<HttpTarget> parse_http_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || !ieq(url.substr(0, kScheme.size()), kScheme)) {
    return absl::InvalidArgumentError("webhook URL must start with http:// (no TLS client yet)");
  }
  std::string_view rest = url.substr(kScheme.size());
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
  uint16_t port = 80;
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

// One exchange: connect, send the whole request, read the response; a timer enforces the
// connect timeout and the overall deadline. Owned by HttpClient::live_.
struct HttpClient::Exchange {
  enum class Phase : uint8_t { kConnecting, kSending, kReceiving };

  HttpClient* client = nullptr;
  ClientCallback done;
  int fd = -1;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string out;
  size_t sent = 0;
  std::string in;
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
  void recv_more() {
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
    ClientResponse response;
    response.status = head.status;
    response.body = std::string(body);
    response.body_truncated = truncated;
    finish(std::move(response));
  }

  // Returns true when the exchange finished.
  bool check_response() {
    while (head_end == std::string::npos) {
      const size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (in.size() > kMaxResponseHeadBytes) {
          fail(absl::InvalidArgumentError("response head too large"),
               client->stats_.protocol_errors);
          return true;
        }
        return false;
      }
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
      x->fail(absl::DeadlineExceededError("request timed out"), x->client->stats_.timeouts);
    } else {
      x->arm_timer();
    }
  }
};

HttpClient::HttpClient(uring::EventLoop& loop) : loop_(loop) {}

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

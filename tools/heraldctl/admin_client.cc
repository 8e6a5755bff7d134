// Blocking admin API client (admin_client.h).
#include "tools/heraldctl/admin_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <string>

#include "absl/status/status.h"

namespace herald::tools {
namespace {

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Waits for `events` on fd until the deadline.
absl::Status wait_for(int fd, short events, uint64_t deadline_ms) {
  for (;;) {
    const uint64_t now = now_ms();
    if (now >= deadline_ms) return absl::DeadlineExceededError("admin API: timed out");
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(deadline_ms - now));
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR) return absl::UnavailableError(std::strerror(errno));
  }
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

}  // namespace

absl::Status parse_admin_url(std::string_view url, AdminEndpoint& endpoint) {
  if (url.starts_with("https://")) {
    return absl::InvalidArgumentError("the admin API client speaks plain http:// only");
  }
  if (url.starts_with("http://")) url.remove_prefix(7);
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  std::string_view host;
  std::string_view port_text;
  if (url.starts_with("[")) {
    const size_t close = url.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("bad IPv6 address");
    host = url.substr(1, close - 1);
    if (close + 1 < url.size() && url[close + 1] == ':') port_text = url.substr(close + 2);
  } else {
    const size_t colon = url.rfind(':');
    host = url.substr(0, colon);
    if (colon != std::string_view::npos) port_text = url.substr(colon + 1);
  }
  if (host == "localhost") host = "127.0.0.1";
  in6_addr probe{};
  const std::string host_text(host);
  if (::inet_pton(AF_INET, host_text.c_str(), &probe) != 1 &&
      ::inet_pton(AF_INET6, host_text.c_str(), &probe) != 1) {
    return absl::InvalidArgumentError("admin URL: the host must be an IP address");
  }
  uint32_t port = 8080;
  if (!port_text.empty()) {
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return absl::InvalidArgumentError("admin URL: bad port");
    }
  }
  endpoint.host = host_text;
  endpoint.port = static_cast<uint16_t>(port);
  return absl::OkStatus();
}

absl::StatusOr<AdminResponse> admin_request(const AdminEndpoint& endpoint, std::string_view method,
                                            std::string_view target, std::string_view body,
                                            std::string_view content_type) {
  const uint64_t deadline = now_ms() + endpoint.timeout_ms;
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, endpoint.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(endpoint.port);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, endpoint.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(endpoint.port);
    len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError("admin API: the host must be an IP address");
  }
  Socket sock(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (sock.fd() < 0) return absl::UnavailableError(std::strerror(errno));
  if (::connect(sock.fd(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(std::string("admin API: connect: ") + std::strerror(errno));
    }
    if (absl::Status s = wait_for(sock.fd(), POLLOUT, deadline); !s.ok()) return s;
    int error = 0;
    socklen_t error_len = sizeof(error);
    ::getsockopt(sock.fd(), SOL_SOCKET, SO_ERROR, &error, &error_len);
    if (error != 0) {
      return absl::UnavailableError(std::string("admin API: connect: ") + std::strerror(error));
    }
  }

  std::string request = std::string(method) + " " + std::string(target) +
                        " HTTP/1.1\r\nHost: " + endpoint.host +
                        "\r\nConnection: close\r\nUser-Agent: heraldctl\r\n";
  if (!endpoint.api_key.empty()) request += "Authorization: Bearer " + endpoint.api_key + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    request += "Content-Type: " + std::string(content_type) + "\r\n";
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n";
  request += body;
  std::string_view rest = request;
  while (!rest.empty()) {
    const ssize_t n = ::send(sock.fd(), rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n > 0) {
      rest.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (absl::Status s = wait_for(sock.fd(), POLLOUT, deadline); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(std::string("admin API: send: ") + std::strerror(errno));
  }

  std::string data;
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::recv(sock.fd(), chunk, sizeof(chunk), 0);
    if (n > 0) {
      data.append(chunk, static_cast<size_t>(n));
      if (data.size() > (64u << 20)) return absl::DataLossError("admin API: response too large");
      continue;
    }
    if (n == 0) break;
    if (errno == EAGAIN || errno == EINTR) {
      if (absl::Status s = wait_for(sock.fd(), POLLIN, deadline); !s.ok()) return s;
      continue;
    }
    if (errno == ECONNRESET && !data.empty()) break;
    return absl::UnavailableError(std::string("admin API: recv: ") + std::strerror(errno));
  }

  const size_t head_end = data.find("\r\n\r\n");
  if (!data.starts_with("HTTP/1.1 ") || head_end == std::string::npos || data.size() < 12) {
    return absl::DataLossError("admin API: the answer is not an HTTP/1.1 response");
  }
  AdminResponse response;
  auto [end, ec] = std::from_chars(data.data() + 9, data.data() + 12, response.status);
  if (ec != std::errc() || end != data.data() + 12) {
    return absl::DataLossError("admin API: bad status line");
  }
  const std::string head = lower(std::string_view(data).substr(0, head_end + 2));
  size_t body_length = data.size() - head_end - 4;
  if (const size_t cl = head.find("\r\ncontent-length:"); cl != std::string::npos) {
    size_t value = 0;
    const char* p = head.data() + cl + 17;
    while (*p == ' ') ++p;
    std::from_chars(p, head.data() + head.size(), value);
    if (value > body_length) return absl::DataLossError("admin API: truncated response");
    body_length = value;
  }
  if (const size_t ct = head.find("\r\ncontent-type:"); ct != std::string::npos) {
    size_t start = ct + 15;
    while (start < head.size() && head[start] == ' ') ++start;
    response.content_type = head.substr(start, head.find("\r\n", start) - start);
  }
  response.body = data.substr(head_end + 4, body_length);
  return response;
}

}  // namespace herald::tools

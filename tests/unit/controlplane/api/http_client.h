// Test helper: a blocking HTTP/1.1 client over loopback for the API tests (one request, one
// response with a Content-Length body, on a fresh connection each time).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "tests/unit/blocking_socket.h"

namespace herald::api::testing {

struct HttpResponse {
  int status = 0;  // 0: no complete response
  std::string head;
  std::string body;

  // The value of header `name` (exact case as the server writes it), or empty.
  std::string header(std::string_view name) const {
    const std::string key = "\r\n" + std::string(name) + ": ";
    const size_t at = head.find(key);
    if (at == std::string::npos) return {};
    const size_t start = at + key.size();
    return head.substr(start, head.find("\r\n", start) - start);
  }
};

inline HttpResponse http_request(uint16_t port, std::string_view method, std::string_view target,
                                 std::string_view body = {}, std::string_view extra_headers = {}) {
  HttpResponse r;
  const int fd = herald::testing::connect_loopback(port);
  if (fd < 0) return r;
  std::string request = std::string(method) + " " + std::string(target) +
                        " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" +
                        std::string(extra_headers);
  if (!body.empty() || method == "POST" || method == "PUT") {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n";
  request += body;
  (void)herald::testing::send_all_retrying(fd, request);
  std::string data;
  char chunk[4096];
  for (;;) {
    const ssize_t n = herald::testing::recv_retrying(fd, chunk, sizeof(chunk));
    if (n <= 0) break;
    data.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string::npos || data.size() < 12) return r;
  r.head = data.substr(0, end + 2);
  r.body = data.substr(end + 4);
  r.status = std::stoi(data.substr(9, 3));
  return r;
}

}  // namespace herald::api::testing

// A blocking HTTP/1.1 client for the admin API (heraldctl, tests): one request per
// connection, Content-Length or close-delimited responses. Plain HTTP only: the admin
// listener is on the loopback or management address.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace herald::tools {

struct AdminEndpoint {
  std::string host = "127.0.0.1";  // IPv4 or IPv6 literal
  uint16_t port = 8080;
  std::string api_key;  // sent as "Authorization: Bearer <key>" when not empty
  uint32_t timeout_ms = 10'000;
};

struct AdminResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// Parses "http://host:port" (or "host:port", "[v6]:port"); InvalidArgument otherwise.
absl::Status parse_admin_url(std::string_view url, AdminEndpoint& endpoint);

// Sends one request and reads the whole response. Unavailable when the node cannot be reached,
// DeadlineExceeded on the timeout, DataLoss for a response that is not HTTP/1.1.
absl::StatusOr<AdminResponse> admin_request(const AdminEndpoint& endpoint, std::string_view method,
                                            std::string_view target, std::string_view body = {},
                                            std::string_view content_type = "application/json");

}  // namespace herald::tools

// The public HTTPS API's registration calls (docs/openapi.yaml), for herald-chat,
// herald-loadgen and end-to-end tests: request a code, verify it, get a session token for the
// dataplane's Auth. One request per TLS connection.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/client/tls_stream.h"

namespace herald::tools {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// POST `path` with a JSON body over a new TLS connection; the whole response. Unavailable /
// DeadlineExceeded / Unauthenticated as TlsStream::connect; DataLoss for a response that is not
// HTTP/1.1.
absl::StatusOr<HttpResponse> https_post_json(const TlsStreamOptions& server,
                                             const std::string& path, const std::string& json);

// POST /v1/accounts/code: seconds the code is valid. ResourceExhausted ("retry_after=N") on
// 429; InvalidArgument / FailedPrecondition with the server's error code otherwise.
absl::StatusOr<uint64_t> request_code(const TlsStreamOptions& server, const std::string& phone,
                                      const std::string& method = "sms");

struct Registration {
  std::string account_id;  // as the API prints it
  uint32_t device_id = 0;
  std::string credential;
  bool new_account = false;
};
// POST /v1/accounts/verify.
absl::StatusOr<Registration> verify_code(const TlsStreamOptions& server, const std::string& phone,
                                         const std::string& code, const std::string& device_name);

struct SessionToken {
  std::vector<uint8_t> token;  // the bytes Auth carries
  std::string text;            // as the API returned it
  uint64_t expires_at_ms = 0;
};
// POST /v1/sessions.
absl::StatusOr<SessionToken> create_session(const TlsStreamOptions& server,
                                            const std::string& credential);

struct LinkCode {
  std::string code;
  uint64_t expires_in_s = 0;
};
// POST /v1/devices/link-code with the primary device's credential.
absl::StatusOr<LinkCode> link_code(const TlsStreamOptions& server, const std::string& credential);
// POST /v1/devices/link: the new linked device (new_account is false). The server's error code
// is in the status message (e.g. "too_many_devices", "link_code_used").
absl::StatusOr<Registration> link_device(const TlsStreamOptions& server,
                                         const std::string& link_code,
                                         const std::string& device_name);

// The last code the `log` gateway wrote for `phone` in <data-dir>/sms.log (development and
// tests: the node's log gateway writes one JSON line per code). NotFound when there is none.
absl::StatusOr<std::string> code_from_sms_log(const std::string& sms_log_path,
                                              const std::string& phone);

}  // namespace herald::tools

// How a verification code reaches the phone: an interface, and the `log` gateway that appends
// one JSON line per code to a file (<data-dir>/sms.log; for development and tests). The
// `webhook` gateway is in webhook_gateway.h.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/registration/phone_number.h"
#include "controlplane/registration/store.h"

namespace herald::registration {

std::string_view code_method_name(CodeMethod method);  // "sms" | "voice"
std::optional<CodeMethod> parse_code_method(std::string_view text);

class CodeGateway {
 public:
  virtual ~CodeGateway() = default;
  // Hands the code to the provider. An error means it was certainly not sent.
  virtual absl::Status send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                                 uint64_t now_ms) = 0;
};

// Appends {"time_ms":..,"phone":"+..","method":"sms","code":"123456"} lines. The file is opened
// O_APPEND (mode 0600: it holds live codes) and each line goes out in one write(2), so lines
// from several writers never interleave. A local append is short enough for the event loop in
// development; production uses the webhook gateway.
class LogGateway final : public CodeGateway {
 public:
  static absl::StatusOr<std::unique_ptr<LogGateway>> open(const std::string& path);
  ~LogGateway() override;
  LogGateway(const LogGateway&) = delete;
  LogGateway& operator=(const LogGateway&) = delete;

  absl::Status send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                         uint64_t now_ms) override;

 private:
  LogGateway(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

}  // namespace herald::registration

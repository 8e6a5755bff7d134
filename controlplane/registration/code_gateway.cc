// The code gateway interface's helpers and the `log` gateway (see code_gateway.h).
#include "controlplane/registration/code_gateway.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace herald::registration {

std::string_view code_method_name(CodeMethod method) {
  return method == CodeMethod::kVoice ? "voice" : "sms";
}

std::optional<CodeMethod> parse_code_method(std::string_view text) {
  if (text == "sms") return CodeMethod::kSms;
  if (text == "voice") return CodeMethod::kVoice;
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<LogGateway>> LogGateway::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError("cannot open code log " + path + ": " + std::strerror(errno));
  }
  return std::unique_ptr<LogGateway>(new LogGateway(fd, path));
}

LogGateway::~LogGateway() {
  ::close(fd_);
}

absl::Status LogGateway::send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                                   uint64_t now_ms) {
  // Every value is digits, '+' or a fixed word: nothing needs JSON escaping.
  std::string line = "{\"time_ms\":" + std::to_string(now_ms) + ",\"phone\":\"" +
                     phone.to_string() + "\",\"method\":\"" +
                     std::string(code_method_name(method)) + "\",\"code\":\"" + std::string(code) +
                     "\"}\n";
  ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    int err = n < 0 ? errno : EIO;
    return absl::UnavailableError("code log " + path_ + ": write failed: " + std::strerror(err));
  }
  return absl::OkStatus();
}

}  // namespace herald::registration

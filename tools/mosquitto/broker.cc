// Starts tools/mosquitto/start-broker as a child process and waits for its ready line.
#include "tools/mosquitto/broker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace herald::tools::mosquitto {
namespace {

constexpr std::string_view kReadyPrefix = "mosquitto-harness: ready ";
constexpr int kPortAttempts = 3;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A loopback port nothing listens on now. The broker binds it a moment later; a race with
// another process is retried by the caller.
absl::StatusOr<uint16_t> pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("bind 127.0.0.1:0: ", std::strerror(error)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string read_tail(const std::string& path, size_t max_bytes) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  std::string all = text.str();
  return all.size() > max_bytes ? all.substr(all.size() - max_bytes) : all;
}

// SIGTERM, then SIGKILL if the process is still there after `grace_ms`; reaps it.
void stop_process(pid_t pid, int64_t grace_ms) {
  ::kill(pid, SIGTERM);
  const int64_t deadline_ms = now_ms() + grace_ms;
  for (;;) {
    const pid_t done = ::waitpid(pid, nullptr, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) return;
    if (now_ms() >= deadline_ms) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

struct Attempt {
  absl::StatusOr<pid_t> pid;
  bool port_taken = false;  // the broker could not bind the port (another process took it)
};

Attempt start_once(const MosquittoBrokerOptions& options, uint16_t port, const std::string& dir) {
  const std::string port_text = std::to_string(port);
  std::vector<std::string> args = {options.script, "--port", port_text, "--dir", dir};
  for (const std::string& setting : options.settings) {
    args.push_back("--set");
    args.push_back(setting);
  }
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const std::string stderr_path = dir + "/start-broker.stderr";
  const int stderr_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (stderr_fd < 0) {
    return {absl::InternalError(absl::StrCat("open ", stderr_path, ": ", std::strerror(errno)))};
  }
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(stderr_fd);
    return {absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)))};
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(stderr_fd);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return {absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)))};
  }
  if (pid == 0) {
    // The broker must not outlive a test that crashes (only async-signal-safe calls here).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(stderr_fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(stderr_fd);
  ::close(out_pipe[1]);

  // The ready line, or the broker's exit (reaped here: until then start-broker's watcher sees
  // the zombie as alive and keeps the pipe open), or the deadline.
  std::string output;
  const int64_t deadline_ms = now_ms() + options.ready_timeout_ms;
  absl::Status failure;
  bool reaped = false;
  for (;;) {
    if (output.find(kReadyPrefix) != std::string::npos &&
        output.find('\n', output.find(kReadyPrefix)) != std::string::npos) {
      break;
    }
    const int64_t left_ms = deadline_ms - now_ms();
    if (left_ms <= 0) {
      failure = absl::DeadlineExceededError(
          absl::StrCat("mosquitto not ready after ", options.ready_timeout_ms, " ms"));
      break;
    }
    pollfd pfd{out_pipe[0], POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left_ms, 50))) > 0) {
      char buffer[512];
      const ssize_t n = ::read(out_pipe[0], buffer, sizeof(buffer));
      if (n > 0) output.append(buffer, static_cast<size_t>(n));
    }
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      reaped = true;
      failure = absl::UnavailableError(
          absl::StrCat("mosquitto exited before it was ready: ", read_tail(stderr_path, 2000),
                       read_tail(dir + "/mosquitto.log", 2000)));
      break;
    }
  }
  ::close(out_pipe[0]);
  if (!failure.ok()) {
    if (!reaped) stop_process(pid, 2'000);
    const bool port_taken =
        failure.message().find("Address already in use") != std::string_view::npos;
    return {failure, port_taken};
  }
  return {pid, false};
}

}  // namespace

absl::StatusOr<std::string> find_mosquitto() {
  std::string path = getenv("PATH") != nullptr ? getenv("PATH") : "";
  path += ":/usr/sbin:/usr/local/sbin";
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/mosquitto";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError("mosquitto is not installed (tools/bootstrap installs it)");
}

absl::StatusOr<std::unique_ptr<MosquittoBroker>> MosquittoBroker::start(
    MosquittoBrokerOptions options) {
  if (absl::StatusOr<std::string> binary = find_mosquitto(); !binary.ok()) return binary.status();
  if (::access(options.script.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("no executable start-broker at ", options.script));
  }
  std::string dir = options.dir;
  const bool remove_dir = dir.empty();
  if (remove_dir) {
    const char* tmp = getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/herald-mosquitto-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
    }
    dir = pattern;
  } else {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
  }
  const int attempts = options.port == 0 ? kPortAttempts : 1;
  absl::Status last;
  for (int i = 0; i < attempts; ++i) {
    uint16_t port = options.port;
    if (port == 0) {
      absl::StatusOr<uint16_t> picked = pick_free_port();
      if (!picked.ok()) {
        last = picked.status();
        break;
      }
      port = *picked;
    }
    Attempt attempt = start_once(options, port, dir);
    if (attempt.pid.ok()) {
      return std::unique_ptr<MosquittoBroker>(
          new MosquittoBroker(*attempt.pid, port, dir, remove_dir));
    }
    last = attempt.pid.status();
    if (!attempt.port_taken) break;  // another port would not help
  }
  if (remove_dir) {
    std::error_code error;
    std::filesystem::remove_all(dir, error);
  }
  return last;
}

MosquittoBroker::~MosquittoBroker() {
  stop_process(pid_, 5'000);
  if (remove_dir_) {
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
  }
}

}  // namespace herald::tools::mosquitto

// perf script folding and the non-blocking child process behind the flame graph (flame.h).
#include "controlplane/profiler/flame.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <unordered_map>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace herald::profiler {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool is_hex(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

// "1234" or "1234/1235": the pid/tid field that ends the comm in a header line.
bool is_pid_token(std::string_view s) {
  if (s.empty()) return false;
  bool digit = false;
  for (const char c : s) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c != '/') {
      return false;
    }
  }
  return digit && s.front() != '/';
}

// The comm of a header line: every token before the first pid token (a comm may hold spaces).
std::string_view header_comm(std::string_view line) {
  size_t i = 0;
  size_t comm_end = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (start == i) break;
    if (start > 0 && is_pid_token(line.substr(start, i - start))) break;
    comm_end = i;
  }
  return trim(line.substr(0, comm_end));
}

// A frame line's symbol: the address dropped, then " (dso)" and "+0xoffset".
bool frame_symbol(std::string_view line, std::string_view* symbol) {
  line = trim(line);
  const size_t space = line.find_first_of(" \t");
  if (!is_hex(line.substr(0, space))) return false;
  std::string_view rest =
      space == std::string_view::npos ? std::string_view() : trim(line.substr(space));
  if (!rest.empty() && rest.back() == ')') {
    const size_t open = rest.rfind(" (");
    if (open != std::string_view::npos) rest = trim(rest.substr(0, open));
  }
  const size_t plus = rest.rfind("+0x");
  if (plus != std::string_view::npos && is_hex(rest.substr(plus + 3))) rest = rest.substr(0, plus);
  *symbol = rest.empty() ? std::string_view("[unknown]") : rest;
  return true;
}

void append_frame(std::string& key, std::string_view frame, const FlameLimits& limits,
                  FoldStats* stats) {
  if (frame.size() > limits.max_frame_bytes) {
    frame = frame.substr(0, limits.max_frame_bytes);
    ++stats->frames_cut;
  }
  const size_t at = key.size();
  key.append(frame);
  // ';' separates frames in the folded format.
  std::replace(key.begin() + static_cast<std::ptrdiff_t>(at), key.end(), ';', ':');
}

}  // namespace

std::vector<FoldedStack> fold_perf_script(std::string_view text, const FlameLimits& limits,
                                          FoldStats* stats) {
  std::unordered_map<std::string, uint64_t> counts;
  std::string comm;
  std::vector<std::string_view> frames;  // leaf first, as perf prints them
  bool in_sample = false;
  std::string key;
  auto flush = [&] {
    if (!in_sample) return;
    in_sample = false;
    key.clear();
    append_frame(key, comm.empty() ? std::string_view("[unknown]") : std::string_view(comm), limits,
                 stats);
    // Root first; the root-most max_depth frames are kept (the context a reader needs).
    size_t depth = frames.size();
    if (depth > limits.max_depth) {
      depth = limits.max_depth;
      ++stats->stacks_cut;
    }
    for (size_t i = 0; i < depth; ++i) {
      key.push_back(';');
      append_frame(key, frames[frames.size() - 1 - i], limits, stats);
    }
    frames.clear();
    ++stats->samples;
    auto it = counts.find(key);
    if (it == counts.end()) {
      // One slot stays for "[other]", so the profile never holds more than max_stacks.
      if (counts.size() + 1 >= limits.max_stacks) {
        ++stats->stacks_merged;
        ++counts["[other]"];
        return;
      }
      it = counts.emplace(key, 0).first;
    }
    ++it->second;
  };
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (trim(line).empty()) {
      flush();
      continue;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      std::string_view symbol;
      if (!in_sample || !frame_symbol(line, &symbol)) {
        ++stats->bad_lines;
        continue;
      }
      frames.push_back(symbol);
      continue;
    }
    flush();
    comm.assign(header_comm(line));
    in_sample = true;
  }
  flush();
  std::vector<FoldedStack> out;
  out.reserve(counts.size());
  for (auto& [frames_key, samples] : counts) out.push_back(FoldedStack{frames_key, samples});
  std::sort(out.begin(), out.end(), [](const FoldedStack& a, const FoldedStack& b) {
    return a.samples != b.samples ? a.samples > b.samples : a.frames < b.frames;
  });
  return out;
}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

int ChildProcess::spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
                        const std::string& stderr_path) {
  if (pid_ > 0 || argv.empty()) return EBUSY;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Not O_CLOEXEC: these become the child's fds 0-2 and must survive its exec.
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  // The control plane blocks its signals for a signalfd; the child must not inherit that mask,
  // or perf would never see the SIGINT that ends its recording.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGCHLD);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return rc;
  pid_ = pid;
  status_ = 0;
  return 0;
}

void ChildProcess::signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

bool ChildProcess::poll() {
  if (pid_ <= 0) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return false;
  if (r < 0 && errno == EINTR) return false;
  // ECHILD (someone else reaped it) counts as exited, with an unknown status.
  status_ = r == pid_ ? status : -1;
  pid_ = 0;
  return true;
}

std::string describe_wait_status(int status) {
  if (status == -1) return "exit status unknown";
  if (WIFEXITED(status)) return absl::StrCat("exited ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

std::string first_line_of(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!trim(line).empty()) break;
  }
  if (line.size() > 200) line.resize(200);
  return std::string(trim(line));
}

}  // namespace herald::profiler

// The dataplane's CPU flame graph for a capture: `perf record -e cpu-clock -g -p PID` as a child
// process for the capture's duration, then `perf script`, folded into FlameProfile stacks
// (capture.h). Nothing here blocks: children are started with posix_spawn and reaped with
// waitpid(WNOHANG) by whoever polls (ProfilerService, on its loop timer).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/profiler/capture.h"

namespace herald::profiler {

// Bounds of one folded profile; past them stacks are cut or merged, and counted.
struct FlameLimits {
  uint32_t max_stacks = 20'000;    // distinct stacks; more go to one "[other]" stack
  uint32_t max_frame_bytes = 512;  // a longer symbol is cut there
  uint32_t max_depth = 128;        // frames kept per stack, root first; deeper ones dropped
  uint64_t max_script_bytes = 256ull << 20;  // perf script output read; the rest is ignored
};

struct FoldStats {
  uint64_t samples = 0;
  uint64_t stacks_merged = 0;  // samples put in "[other]" past max_stacks
  uint64_t frames_cut = 0;     // symbols cut at max_frame_bytes
  uint64_t stacks_cut = 0;     // stacks cut at max_depth
  uint64_t bad_lines = 0;      // stack lines without an address
};

// The stack name of `perf script` output (its default fields, or -F comm,tid,ip,sym): each
// sample is a header line ("comm tid ..."), then one indented line per frame, leaf first
// ("\t  55d5c0a1b2c3 symbol+0x1f (dso)"), then a blank line. Folded as
// "comm;root;...;leaf" with offsets and dsos dropped, ';' in symbols made ':'. Heaviest first
// (ties by name, so the output is deterministic).
std::vector<FoldedStack> fold_perf_script(std::string_view text, const FlameLimits& limits,
                                          FoldStats* stats);

// One child process with stdout and stderr to files; reaped without blocking.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();  // SIGKILLs and reaps a child still running (shutdown mid-capture)
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // posix_spawnp(argv[0]) with stdin /dev/null, stdout and stderr to the given files (created,
  // truncated). Returns errno (ENOENT: not installed) or 0.
  int spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
            const std::string& stderr_path);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // waitpid(WNOHANG): true once the child has exited (its status in exit_status()).
  bool poll();
  // The raw wait status of the last child reaped.
  int exit_status() const { return status_; }

 private:
  pid_t pid_ = 0;
  int status_ = 0;
};

// "exited 3" / "killed by signal 9" from a wait status.
std::string describe_wait_status(int status);
// The first line of a file (for "perf failed: <its stderr's first line>"), at most 200 bytes.
std::string first_line_of(const std::string& path);

}  // namespace herald::profiler

// The flame graph's parts: folding a checked-in `perf script` fixture (and perf's default
// output format), every limit at its edge, and the child process that runs perf (exit status,
// stderr's first line, a missing binary, SIGINT reaching a child of a process that blocks it).
#include "controlplane/profiler/flame.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace herald::profiler {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

uint64_t total(const std::vector<FoldedStack>& stacks) {
  uint64_t n = 0;
  for (const FoldedStack& s : stacks) n += s.samples;
  return n;
}

// 80 samples of a python3 run (with its pyenv shims), `perf script -F comm,tid,ip,sym`; the
// expected figures come from an independent fold of the same file.
TEST(FoldPerfScript, CheckedInFixture) {
  const std::string text = read_file(HERALD_PERF_SCRIPT_FIXTURE);
  ASSERT_FALSE(text.empty());
  FoldStats stats;
  const std::vector<FoldedStack> stacks = fold_perf_script(text, FlameLimits{}, &stats);
  EXPECT_EQ(stats.samples, 80u);
  EXPECT_EQ(total(stacks), 80u);
  EXPECT_EQ(stacks.size(), 70u);
  EXPECT_EQ(stats.bad_lines, 0u);
  ASSERT_GE(stacks.size(), 2u);
  // Heaviest first, ties by name.
  EXPECT_EQ(stacks[0], (FoldedStack{"python3;[unknown];gc_collect_main", 3}));
  EXPECT_EQ(stacks[1], (FoldedStack{"python3;unicodekeys_lookup_unicode", 3}));
  uint64_t python = 0;
  for (const FoldedStack& s : stacks) {
    if (s.frames.rfind("python3;", 0) == 0) python += s.samples;
  }
  EXPECT_EQ(python, 37u);
}

TEST(FoldPerfScript, DefaultFormatCommsWithSpacesAndSeparators) {
  const std::string text =
      "sh 22669 62039.614388:    1001001 cpu-clock: \n"
      "\t          167158 __strcmp_evex+0x38 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
      "\t           10019 [unknown] ([unknown])\n"
      "\t    55a1558bdc20 main+0x1f (/usr/bin/dash)\n"
      "\n"
      "Web Content 345/346 [001] 1.0: 1 cpu-clock:\n"
      "\t  abc std::map<int;int>::find(int) const+0x10 (/x)\n"
      "\t  abd main (/x)\n"
      "\n"
      "sh 22669 62039.62:    1001001 cpu-clock: \n"  // no blank line before the next header
      "\t    55a1558bdc20 main+0x1f (/usr/bin/dash)\n"
      "sh 22669 62039.63:    1001001 cpu-clock: \n"
      "\t    55a1558bdc20 main+0x1f (/usr/bin/dash)\n";
  FoldStats stats;
  const auto stacks = fold_perf_script(text, FlameLimits{}, &stats);
  EXPECT_EQ(stats.samples, 4u);
  ASSERT_EQ(stacks.size(), 3u);
  EXPECT_EQ(stacks[0], (FoldedStack{"sh;main", 2}));
  EXPECT_EQ(stacks[1], (FoldedStack{"Web Content;main;std::map<int:int>::find(int) const", 1}));
  EXPECT_EQ(stacks[2], (FoldedStack{"sh;main;[unknown];__strcmp_evex", 1}));
}

TEST(FoldPerfScript, MalformedLinesAreCountedNotFatal) {
  const std::string text =
      "\t  deadbeef orphan_frame\n"  // before any header
      "x 1\n"
      "\t  nothex frame\n"
      "\t  12 good\n"
      "\n\n\n";
  FoldStats stats;
  const auto stacks = fold_perf_script(text, FlameLimits{}, &stats);
  EXPECT_EQ(stats.bad_lines, 2u);
  ASSERT_EQ(stacks.size(), 1u);
  EXPECT_EQ(stacks[0], (FoldedStack{"x;good", 1}));
  EXPECT_TRUE(fold_perf_script("", FlameLimits{}, &stats).empty());
}

TEST(FoldPerfScript, DepthLimitAtItsEdge) {
  FlameLimits limits;
  limits.max_depth = 3;
  FoldStats stats;
  // Three frames: kept whole. Four: the root-most three.
  auto stacks = fold_perf_script("p 1\n\t1 c\n\t2 b\n\t3 a\n", limits, &stats);
  EXPECT_EQ(stacks[0].frames, "p;a;b;c");
  EXPECT_EQ(stats.stacks_cut, 0u);
  stacks = fold_perf_script("p 1\n\t1 d\n\t1 c\n\t2 b\n\t3 a\n", limits, &stats);
  EXPECT_EQ(stacks[0].frames, "p;a;b;c");
  EXPECT_EQ(stats.stacks_cut, 1u);
}

TEST(FoldPerfScript, FrameLimitAtItsEdge) {
  FlameLimits limits;
  limits.max_frame_bytes = 8;
  FoldStats stats;
  auto stacks = fold_perf_script("p 1\n\t1 abcdefgh\n", limits, &stats);
  EXPECT_EQ(stacks[0].frames, "p;abcdefgh");
  EXPECT_EQ(stats.frames_cut, 0u);
  stacks = fold_perf_script("p 1\n\t1 abcdefghi\n", limits, &stats);
  EXPECT_EQ(stacks[0].frames, "p;abcdefgh");
  EXPECT_EQ(stats.frames_cut, 1u);
}

TEST(FoldPerfScript, StackLimitMergesTheRestIntoOther) {
  FlameLimits limits;
  limits.max_stacks = 3;  // two distinct stacks and "[other]"
  FoldStats stats;
  const std::string text = "p 1\n\t1 a\n\np 1\n\t1 a\n\np 1\n\t1 b\n\np 1\n\t1 c\n\np 1\n\t1 d\n\n";
  const auto stacks = fold_perf_script(text, limits, &stats);
  ASSERT_EQ(stacks.size(), 3u);
  EXPECT_EQ(stacks[0], (FoldedStack{"[other]", 2}));  // ties by name: '[' < 'p'
  EXPECT_EQ(stacks[1], (FoldedStack{"p;a", 2}));
  EXPECT_EQ(stacks[2], (FoldedStack{"p;b", 1}));
  EXPECT_EQ(stats.stacks_merged, 2u);
  EXPECT_EQ(total(stacks), 5u);  // no sample lost
}

bool wait_exit(ChildProcess& child) {
  for (int i = 0; i < 500; ++i) {
    if (child.poll()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(ChildProcess, ExitStatusAndStderrFirstLine) {
  char dir[] = "/tmp/flame_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string out = std::string(dir) + "/out";
  const std::string err = std::string(dir) + "/err";
  ChildProcess child;
  ASSERT_EQ(
      child.spawn({"/bin/sh", "-c", "echo hi; echo; echo 'first error' >&2; exit 3"}, out, err), 0);
  EXPECT_TRUE(child.running());
  ASSERT_TRUE(wait_exit(child));
  EXPECT_FALSE(child.running());
  EXPECT_EQ(describe_wait_status(child.exit_status()), "exited 3");
  EXPECT_EQ(first_line_of(out), "hi");
  EXPECT_EQ(first_line_of(err), "first error");
  EXPECT_EQ(first_line_of(std::string(dir) + "/none"), "");
  EXPECT_EQ(child.spawn({"herald-no-such-binary-xyz"}, out, err), ENOENT);
  ::unlink(out.c_str());
  ::unlink(err.c_str());
  ::rmdir(dir);
}

// The control plane blocks SIGINT for its signalfd; perf (the child) must still get it.
TEST(ChildProcess, SigintReachesAChildOfAProcessThatBlocksIt) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  ChildProcess child;
  ASSERT_EQ(child.spawn({"sleep", "30"}, "/dev/null", "/dev/null"), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  child.signal(SIGINT);
  ASSERT_TRUE(wait_exit(child));
  EXPECT_EQ(describe_wait_status(child.exit_status()), "killed by signal 2");
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(ChildProcess, DestructorKillsAndReapsARunningChild) {
  pid_t pid = 0;
  {
    ChildProcess child;
    ASSERT_EQ(child.spawn({"sleep", "30"}, "/dev/null", "/dev/null"), 0);
    pid = child.pid();
  }
  // Reaped: no such child any more.
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
}

}  // namespace
}  // namespace herald::profiler

// Structured log lines (text and JSON), level filtering and per-call-site rate limiting.
#include "platform/log/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace herald::log {
namespace {

// Captures what the logger writes through a pipe, restoring the sink afterwards.
class LogCapture {
 public:
  LogCapture() {
    EXPECT_EQ(pipe2(fds_, O_NONBLOCK), 0);
    set_sink_fd(fds_[1]);
  }
  ~LogCapture() {
    set_sink_fd(STDERR_FILENO);
    close(fds_[0]);
    close(fds_[1]);
  }
  std::string take() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds_[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

 private:
  int fds_[2];
};

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_min_level(Level::kDebug);
    set_format(Format::kText);
  }
  void TearDown() override {
    set_min_level(Level::kInfo);
    set_format(Format::kText);
  }
};

TEST_F(LogTest, TextLineCarriesLevelEventSourceAndFields) {
  LogCapture capture;
  HLOG_INFO("store.opened").kv("path", "/var/lib/herald").kv("segments", 12u).kv("ok", true);
  std::string line = capture.take();
  // 2026-11-27T22:40:01.123456Z INFO  store.opened src=log_test.cc:NN path=... segments=12 ok=true
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line[4], '-');
  EXPECT_EQ(line[26], 'Z');
  EXPECT_NE(line.find(" INFO  store.opened src=log_test.cc:"), std::string::npos) << line;
  EXPECT_NE(line.find(" path=/var/lib/herald segments=12 ok=true\n"), std::string::npos) << line;
}

TEST_F(LogTest, TextValuesWithSpacesAreQuoted) {
  LogCapture capture;
  HLOG_WARN("peer.rejected").kv("reason", "bad header = yes").kv("delta", int64_t{-5});
  std::string line = capture.take();
  EXPECT_NE(line.find("reason=\"bad header = yes\" delta=-5"), std::string::npos) << line;
}

TEST_F(LogTest, JsonLineIsEscaped) {
  set_format(Format::kJson);
  LogCapture capture;
  HLOG_ERROR("weird").kv("text", "quote\" back\\ nl\n ctl\x01").kv("ratio", 0.5);
  std::string line = capture.take();
  EXPECT_EQ(line.substr(0, 7), "{\"ts\":\"");
  EXPECT_NE(line.find("\"level\":\"error\",\"event\":\"weird\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"text\":\"quote\\\" back\\\\ nl\\n ctl\\u0001\""), std::string::npos)
      << line;
  EXPECT_NE(line.find("\"ratio\":0.5}\n"), std::string::npos) << line;
}

TEST_F(LogTest, LinesBelowMinimumLevelAreNotBuilt) {
  set_min_level(Level::kWarn);
  LogCapture capture;
  int evaluated = 0;
  HLOG_INFO("quiet").kv("n", ++evaluated);
  EXPECT_EQ(evaluated, 0) << "fields of a filtered line must not be evaluated";
  EXPECT_EQ(capture.take(), "");
}

TEST_F(LogTest, ParseLevel) {
  Level level = Level::kInfo;
  EXPECT_TRUE(parse_level("warn", &level));
  EXPECT_EQ(level, Level::kWarn);
  EXPECT_FALSE(parse_level("verbose", &level));
  EXPECT_EQ(level, Level::kWarn);
}

TEST(RateLimiterTest, AllowsPerSecondThenCountsSuppressed) {
  RateLimiter limiter(3);
  constexpr uint64_t kSecond = 1'000'000'000;
  uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.allow_at(10 * kSecond + static_cast<uint64_t>(i), &suppressed));
    EXPECT_EQ(suppressed, 0u);
  }
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limiter.allow_at(10 * kSecond + 500, &suppressed));
  // The next window lets records through again and the first one carries the count.
  EXPECT_TRUE(limiter.allow_at(11 * kSecond, &suppressed));
  EXPECT_EQ(suppressed, 5u);
  EXPECT_TRUE(limiter.allow_at(11 * kSecond + 1, &suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST_F(LogTest, RateLimitedMacroLimitsOneCallSite) {
  LogCapture capture;
  for (int i = 0; i < 50; ++i) {
    HLOG_RATE_LIMITED(kWarn, "flood", 5).kv("i", i);
  }
  std::string out = capture.take();
  size_t lines = 0;
  for (char c : out) lines += c == '\n';
  // All 50 calls land in at most two one-second windows: 5 or 10 lines, never 50.
  EXPECT_GE(lines, 5u);
  EXPECT_LE(lines, 10u);
}

}  // namespace
}  // namespace herald::log

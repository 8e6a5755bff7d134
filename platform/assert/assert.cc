// The three assertion tiers' slow paths: abort with context, or log-and-count a bug.
#include "platform/assert/assert.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "platform/log/log.h"

namespace herald {

namespace {
std::atomic<uint64_t> g_bug_count{0};
std::atomic<bool> g_abort_on_bug{HERALD_DEBUG_BUILD != 0};
}  // namespace

void check_failed(const char* expr, const char* msg, SourceLocation loc) {
  // Plain stdio, not the log: the process is about to die and the logger may be what broke.
  std::fprintf(stderr, "FATAL check failed: %s (%s) at %s:%u in %s\n", expr, msg, loc.file_name(),
               static_cast<unsigned>(loc.line()), loc.function_name());
  std::fflush(stderr);
  std::abort();
}

void report_bug(const char* expr, const char* msg, SourceLocation loc) {
  g_bug_count.fetch_add(1, std::memory_order_relaxed);
  if (g_abort_on_bug.load(std::memory_order_relaxed)) check_failed(expr, msg, loc);
  static log::RateLimiter limiter(10);
  uint64_t suppressed = 0;
  if (limiter.allow(&suppressed)) {
    log::Line(log::Level::kError, "bug", loc, suppressed)
        .kv("expr", expr)
        .kv("msg", msg)
        .kv("function", loc.function_name());
  }
}

uint64_t bug_count() {
  return g_bug_count.load(std::memory_order_relaxed);
}
void set_abort_on_bug(bool value) {
  g_abort_on_bug.store(value, std::memory_order_relaxed);
}
bool abort_on_bug() {
  return g_abort_on_bug.load(std::memory_order_relaxed);
}

}  // namespace herald

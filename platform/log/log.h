// Structured logging: one record per line, an event name plus key=value fields, as text for a
// terminal or as JSON lines for collectors. Call sites can be rate limited so a flood of the
// same event (a bad peer, a full queue) costs one line per interval plus a suppressed count.
//
//   HLOG_INFO("store.opened").kv("path", dir).kv("segments", n);
//   HLOG_RATE_LIMITED(kWarn, "frame.rejected", 10).kv("reason", "too_large");
//
// Not for the dataplane's per-packet path: there, counters say what happens; logs say why.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include "platform/assert/source_location.h"

namespace herald::log {

enum class Level : uint8_t { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format : uint8_t { kText, kJson };

std::string_view level_name(Level level);
// Accepts "debug", "info", "warn", "error"; returns false for anything else.
bool parse_level(std::string_view text, Level* out);

void set_min_level(Level level);
void set_format(Format format);
// Where lines go (default: stderr). Each line is written with one write(2).
void set_sink_fd(int fd);

namespace detail {
extern std::atomic<uint8_t> g_min_level;
}
inline bool enabled(Level level) {
  return static_cast<uint8_t>(level) >= detail::g_min_level.load(std::memory_order_relaxed);
}

// Builds one record and writes it when destroyed (at the end of the full expression).
class Line {
 public:
  Line(Level level, std::string_view event, ::herald::SourceLocation loc, uint64_t suppressed = 0);
  ~Line();
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;

  Line& kv(std::string_view key, std::string_view value);
  Line& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, const std::string& value) {
    return kv(key, std::string_view(value));
  }
  Line& kv(std::string_view key, bool value);
  Line& kv(std::string_view key, double value);
  template <std::signed_integral T>
  Line& kv(std::string_view key, T value) {
    return kv_int(key, static_cast<int64_t>(value));
  }
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) Line& kv(std::string_view key, T value) {
    return kv_uint(key, static_cast<uint64_t>(value));
  }

 private:
  Line& kv_int(std::string_view key, int64_t value);
  Line& kv_uint(std::string_view key, uint64_t value);
  void key(std::string_view key);
  void raw_value(std::string_view value);

  std::string buf_;
  Format format_;
};

// Fixed-window limiter for one call site: up to `per_second` records in each one-second
// window; the rest are counted and the count rides on the next record that passes.
class RateLimiter {
 public:
  explicit RateLimiter(uint32_t per_second) : per_second_(per_second) {}
  // Returns true if a record may be written now; then *suppressed holds how many were dropped
  // since the last one that passed.
  bool allow(uint64_t* suppressed);
  bool allow_at(uint64_t now_ns, uint64_t* suppressed);  // for tests: explicit time

 private:
  const uint32_t per_second_;
  std::atomic<uint64_t> window_start_s_{0};
  std::atomic<uint32_t> in_window_{0};
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace herald::log

#define HLOG(level, event)              \
  if (!::herald::log::enabled(level)) { \
  } else                                \
    ::herald::log::Line((level), (event), ::herald::SourceLocation::current())

#define HLOG_DEBUG(event) HLOG(::herald::log::Level::kDebug, event)
#define HLOG_INFO(event) HLOG(::herald::log::Level::kInfo, event)
#define HLOG_WARN(event) HLOG(::herald::log::Level::kWarn, event)
#define HLOG_ERROR(event) HLOG(::herald::log::Level::kError, event)

// `level` is a bare enumerator: kDebug, kInfo, kWarn or kError. The lambda gives each call
// site its own limiter.
#define HLOG_RATE_LIMITED(level, event, per_second)                                                \
  if (uint64_t hlog_suppressed_ = 0; !::herald::log::enabled(::herald::log::Level::level) ||       \
                                         ![]() -> ::herald::log::RateLimiter& {                    \
        static ::herald::log::RateLimiter limiter(per_second);                                     \
        return limiter;                                                                            \
      }()                                                                                          \
                                                      .allow(&hlog_suppressed_)) {                 \
  } else                                                                                           \
    ::herald::log::Line(::herald::log::Level::level, (event), ::herald::SourceLocation::current(), \
                        hlog_suppressed_)

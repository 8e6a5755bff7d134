// Structured log lines: formatting, the sink, and per-call-site rate limiting.
#include "platform/log/log.h"

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace herald::log {

namespace detail {
std::atomic<uint8_t> g_min_level{static_cast<uint8_t>(Level::kInfo)};
}  // namespace detail

namespace {
std::atomic<uint8_t> g_format{static_cast<uint8_t>(Format::kText)};
std::atomic<int> g_sink_fd{STDERR_FILENO};

void append_uint(std::string& out, uint64_t v) {
  char tmp[24];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, v);
  out.append(tmp, end);
}

void append_padded(std::string& out, uint64_t v, int width) {
  char tmp[24];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, v);
  for (int pad = width - static_cast<int>(end - tmp); pad > 0; --pad) out.push_back('0');
  out.append(tmp, end);
}

// RFC 3339 UTC timestamp with microseconds: 2026-11-27T22:40:01.123456Z
void append_timestamp(std::string& out) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  append_padded(out, static_cast<uint64_t>(utc.tm_year + 1900), 4);
  out.push_back('-');
  append_padded(out, static_cast<uint64_t>(utc.tm_mon + 1), 2);
  out.push_back('-');
  append_padded(out, static_cast<uint64_t>(utc.tm_mday), 2);
  out.push_back('T');
  append_padded(out, static_cast<uint64_t>(utc.tm_hour), 2);
  out.push_back(':');
  append_padded(out, static_cast<uint64_t>(utc.tm_min), 2);
  out.push_back(':');
  append_padded(out, static_cast<uint64_t>(utc.tm_sec), 2);
  out.push_back('.');
  append_padded(out, static_cast<uint64_t>(ts.tv_nsec / 1000), 6);
  out.push_back('Z');
}

// JSON string escaping (RFC 8259 §7). Control characters become \u00XX.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0xf]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// Text values are quoted only when they would otherwise be ambiguous (logfmt style).
void append_text_value(std::string& out, std::string_view s) {
  bool needs_quotes = s.empty();
  for (char c : s) {
    if (c == ' ' || c == '=' || c == '"' || static_cast<unsigned char>(c) < 0x20) {
      needs_quotes = true;
      break;
    }
  }
  if (needs_quotes) {
    append_json_string(out, s);
  } else {
    out.append(s);
  }
}

std::string_view basename(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}
}  // namespace

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "unknown";
}

bool parse_level(std::string_view text, Level* out) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (text == level_name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

void set_min_level(Level level) {
  detail::g_min_level.store(static_cast<uint8_t>(level), std::memory_order_relaxed);
}
void set_format(Format format) {
  g_format.store(static_cast<uint8_t>(format), std::memory_order_relaxed);
}
void set_sink_fd(int fd) {
  g_sink_fd.store(fd, std::memory_order_relaxed);
}

Line::Line(Level level, std::string_view event, SourceLocation loc, uint64_t suppressed)
    : format_(static_cast<Format>(g_format.load(std::memory_order_relaxed))) {
  buf_.reserve(256);
  std::string src(basename(loc.file_name()));
  src.push_back(':');
  append_uint(src, loc.line());
  if (format_ == Format::kJson) {
    buf_ += "{\"ts\":\"";
    append_timestamp(buf_);
    buf_ += "\",\"level\":\"";
    buf_ += level_name(level);
    buf_ += "\",\"event\":";
    append_json_string(buf_, event);
    buf_ += ",\"src\":";
    append_json_string(buf_, src);
  } else {
    append_timestamp(buf_);
    buf_.push_back(' ');
    std::string_view name = level_name(level);
    for (char c : name) buf_.push_back(static_cast<char>(c - 'a' + 'A'));
    for (size_t pad = name.size(); pad < 5; ++pad) buf_.push_back(' ');
    buf_.push_back(' ');
    buf_ += event;
    buf_ += " src=";
    buf_ += src;
  }
  if (suppressed != 0) kv_uint("suppressed", suppressed);
}

Line::~Line() {
  buf_ += format_ == Format::kJson ? "}\n" : "\n";
  // One write per line keeps lines whole when several threads log at once; a short write or
  // EINTR is retried, any other error is dropped: logging must never take the process down.
  int fd = g_sink_fd.load(std::memory_order_relaxed);
  const char* p = buf_.data();
  size_t left = buf_.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void Line::key(std::string_view k) {
  if (format_ == Format::kJson) {
    buf_.push_back(',');
    append_json_string(buf_, k);
    buf_.push_back(':');
  } else {
    buf_.push_back(' ');
    buf_ += k;
    buf_.push_back('=');
  }
}

Line& Line::kv(std::string_view k, std::string_view value) {
  key(k);
  if (format_ == Format::kJson) {
    append_json_string(buf_, value);
  } else {
    append_text_value(buf_, value);
  }
  return *this;
}

Line& Line::kv(std::string_view k, bool value) {
  key(k);
  buf_ += value ? "true" : "false";
  return *this;
}

Line& Line::kv(std::string_view k, double value) {
  key(k);
  char tmp[32];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, value);
  std::string_view text(tmp, static_cast<size_t>(end - tmp));
  // JSON has no NaN or infinity; they go out as strings there.
  if (format_ == Format::kJson && !std::isfinite(value)) {
    append_json_string(buf_, text);
  } else {
    buf_ += text;
  }
  return *this;
}

Line& Line::kv_int(std::string_view k, int64_t value) {
  key(k);
  char tmp[24];
  auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, value);
  buf_.append(tmp, end);
  return *this;
}

Line& Line::kv_uint(std::string_view k, uint64_t value) {
  key(k);
  append_uint(buf_, value);
  return *this;
}

bool RateLimiter::allow(uint64_t* suppressed) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return allow_at(
      static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec),
      suppressed);
}

bool RateLimiter::allow_at(uint64_t now_ns, uint64_t* suppressed) {
  const uint64_t now_s = now_ns / 1'000'000'000ull;
  uint64_t start = window_start_s_.load(std::memory_order_relaxed);
  if (now_s != start &&
      window_start_s_.compare_exchange_strong(start, now_s, std::memory_order_relaxed)) {
    in_window_.store(0, std::memory_order_relaxed);
  }
  if (in_window_.fetch_add(1, std::memory_order_relaxed) < per_second_) {
    *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace herald::log

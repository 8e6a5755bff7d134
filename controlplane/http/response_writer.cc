// Response serialization and the per-second Date cache.
#include "controlplane/http/response_writer.h"

#include <time.h>

#include <charconv>
#include <cstdio>
#include <cstring>

#include "controlplane/http/chars.h"
#include "controlplane/http/status.h"
#include "platform/assert/assert.h"

namespace herald::http {
namespace {

bool bodyless_status(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

void append_decimal(std::string& out, uint64_t value) {
  char digits[20];
  const auto result = std::to_chars(digits, digits + sizeof(digits), value);
  out.append(digits, static_cast<size_t>(result.ptr - digits));
}

}  // namespace

std::string_view DateCache::at(int64_t unix_seconds) {
  if (unix_seconds != cached_seconds_) {
    static constexpr char kDays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr char kMonths[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const time_t seconds = static_cast<time_t>(unix_seconds < 0 ? 0 : unix_seconds);
    struct tm tm {};
    gmtime_r(&seconds, &tm);
    // Fixed width by construction: years 0..9999 (gmtime of a non-negative time_t < 2^38).
    char buffer[64];
    const int n = snprintf(buffer, sizeof(buffer), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                           kDays[tm.tm_wday % 7], tm.tm_mday, kMonths[tm.tm_mon % 12],
                           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    HERALD_CHECK(n == static_cast<int>(kLength), "IMF-fixdate must be 29 characters");
    std::memcpy(text_, buffer, kLength);
    cached_seconds_ = unix_seconds;
    ++format_count_;
  }
  return {text_, kLength};
}

std::string_view DateCache::now() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return at(static_cast<int64_t>(ts.tv_sec));
}

bool valid_field_value(std::string_view value) {
  for (char c : value) {
    if (!chars::is(c, chars::kFieldValue)) return false;
  }
  return true;
}

ResponseWriter::ResponseWriter(std::string& out, int status)
    : out_(out), start_(out.size()), status_(status) {
  HERALD_CHECK(status >= 100 && status <= 999, "HTTP status out of range");
  out_.append("HTTP/1.1 ");
  append_decimal(out_, static_cast<uint64_t>(status));
  out_.push_back(' ');
  out_.append(reason_phrase(status));
  out_.append("\r\n");
}

void ResponseWriter::header(std::string_view name, std::string_view value) {
  if (!ok_) return;
  bool name_ok = !name.empty();
  for (char c : name) name_ok = name_ok && chars::is_token(c);
  // Leading or trailing whitespace would be stripped by the peer; refuse it so what we send
  // is what it reads.
  const bool value_ok =
      valid_field_value(value) &&
      (value.empty() || (!chars::is_ows(value.front()) && !chars::is_ows(value.back())));
  if (!name_ok || !value_ok) {
    ok_ = false;
    return;
  }
  out_.append(name);
  out_.append(": ");
  out_.append(value);
  out_.append("\r\n");
}

void ResponseWriter::header(std::string_view name, uint64_t value) {
  char digits[20];
  const auto result = std::to_chars(digits, digits + sizeof(digits), value);
  header(name, std::string_view(digits, static_cast<size_t>(result.ptr - digits)));
}

bool ResponseWriter::end_head() {
  if (!ok_) {
    out_.resize(start_);
    return false;
  }
  out_.append("\r\n");
  return true;
}

bool ResponseWriter::finish(std::string_view body) {
  if (bodyless_status(status_)) {
    if (HERALD_BUG_IF(!body.empty(), "body on a 1xx/204/304 response")) ok_ = false;
  } else {
    header("Content-Length", static_cast<uint64_t>(body.size()));
  }
  if (!end_head()) return false;
  out_.append(body);
  return true;
}

bool ResponseWriter::finish_head_only() {
  return end_head();
}

bool ResponseWriter::finish_chunked() {
  if (HERALD_BUG_IF(bodyless_status(status_), "chunked body on a 1xx/204/304 response")) {
    ok_ = false;
  }
  header("Transfer-Encoding", "chunked");
  return end_head();
}

void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  char digits[16];
  const auto result = std::to_chars(digits, digits + sizeof(digits), data.size(), 16);
  out.append(digits, static_cast<size_t>(result.ptr - digits));
  out.append("\r\n");
  out.append(data);
  out.append("\r\n");
}

void append_last_chunk(std::string& out) {
  out.append("0\r\n\r\n");
}

void append_continue(std::string& out) {
  out.append("HTTP/1.1 100 Continue\r\n\r\n");
}

}  // namespace herald::http

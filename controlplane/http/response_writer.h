// HTTP/1.1 response serialization into a caller's per-connection output buffer: status line,
// headers, then a Content-Length body or the chunked coding; plus the cached Date value.
// Pure code, no I/O: the server hands the buffer to its SendStream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::http {

// IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT", formatted again only
// when the second changes: one Date per response costs a compare, not a gmtime + format.
class DateCache {
 public:
  static constexpr size_t kLength = 29;

  // The date for `unix_seconds` (>= 0); the view is valid until the next call.
  std::string_view at(int64_t unix_seconds);
  // The date now (CLOCK_REALTIME_COARSE: a millisecond-scale read is plenty for a 1 s field).
  std::string_view now();
  // How many times the text was formatted (for tests of the cache).
  uint64_t format_count() const { return format_count_; }

 private:
  int64_t cached_seconds_ = -1;
  uint64_t format_count_ = 0;
  char text_[kLength] = {};
};

// Appends one response to `out`. A header that could split or corrupt the response (a name
// that is not a token, a value with CR, LF, NUL or another control) is not written: it marks
// the writer failed, and finish*() then truncates `out` back to where this response began and
// returns false, so the server can answer 500 instead of forwarding injected bytes.
//
//   ResponseWriter w(out, 200);
//   w.header("Date", dates.now());
//   w.header("Content-Type", "application/json");
//   if (!w.finish(body)) { ... }
class ResponseWriter {
 public:
  // Writes the status line "HTTP/1.1 <status> <reason>" (status in 100..999).
  ResponseWriter(std::string& out, int status);
  ResponseWriter(const ResponseWriter&) = delete;
  ResponseWriter& operator=(const ResponseWriter&) = delete;

  void header(std::string_view name, std::string_view value);
  void header(std::string_view name, uint64_t value);

  // Content-Length: body.size(), the empty line, the body. For 1xx, 204 and 304 no
  // Content-Length is sent (RFC 9110 §8.6) and `body` must be empty.
  [[nodiscard]] bool finish(std::string_view body);
  // The empty line only, nothing added: for a HEAD response, whose caller sets the
  // Content-Length the GET would have had (RFC 9110 §9.3.2), or for 1xx/204/304.
  [[nodiscard]] bool finish_head_only();
  // Transfer-Encoding: chunked and the empty line; the body follows with append_chunk() and
  // append_last_chunk().
  [[nodiscard]] bool finish_chunked();

  bool ok() const { return ok_; }

 private:
  [[nodiscard]] bool end_head();

  std::string& out_;
  const size_t start_;
  const int status_;
  bool ok_ = true;
};

// One chunk: hex size, CRLF, data, CRLF. An empty `data` writes nothing, because a zero-size
// chunk would end the body.
void append_chunk(std::string& out, std::string_view data);
// The last chunk and the empty trailer section: "0\r\n\r\n".
void append_last_chunk(std::string& out);
// The interim "HTTP/1.1 100 Continue" response (RFC 9110 §15.2.1) for Expect: 100-continue.
void append_continue(std::string& out);

// Whether `value` may be sent as a field value (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB).
bool valid_field_value(std::string_view value);

}  // namespace herald::http

// libFuzzer target for the HTTP/1.1 request parser. The first two input bytes seed how the
// rest is cut into pieces (each piece in its own exactly-sized heap buffer, so a read past it
// is an ASan report). Checks: consumption never exceeds the input; the split stream gives the
// same events, bodies and error as the whole stream; a completed body has Content-Length bytes
// or the sum of its chunk sizes (decoded again by a separate, simple decoder); request views
// are readable until the next request starts; failure is sticky.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/http/request_parser.h"

namespace {

using herald::http::BodyFraming;
using herald::http::Limits;
using herald::http::ParseError;
using herald::http::ParseEvent;
using herald::http::ParseStep;
using herald::http::RequestParser;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// Small limits, so the fuzzer reaches every limit path with short inputs.
Limits fuzz_limits() {
  Limits limits;
  limits.max_request_line_bytes = 256;
  limits.max_header_bytes = 1024;
  limits.max_header_count = 16;
  limits.max_body_bytes = 4096;
  limits.max_chunk_ext_bytes = 32;
  limits.max_trailer_bytes = 256;
  return limits;
}

struct Event {
  ParseEvent event;
  std::string body;
  size_t offset;  // stream offset after the event
};

struct Trace {
  std::vector<Event> events;  // adjacent body pieces merged, so splits compare equal
  ParseError error = ParseError::kNone;
};

// Reads every byte of the current request's views, so ASan sees any that dangle.
uint32_t touch_request(const RequestParser& parser) {
  uint32_t sum = 0;
  const auto& r = parser.request();
  for (std::string_view v : {r.method_name(), r.target(), r.path(), r.query(), r.authority()}) {
    for (char c : v) sum += static_cast<uint8_t>(c);
  }
  for (const auto& field : r.headers()) {
    for (char c : field.name) sum += static_cast<uint8_t>(c);
    for (char c : field.value) sum += static_cast<uint8_t>(c);
  }
  return sum;
}

void record(Trace& trace, ParseEvent event, std::string_view body, size_t offset) {
  if (event == ParseEvent::kBodyData && !trace.events.empty() &&
      trace.events.back().event == ParseEvent::kBodyData) {
    trace.events.back().body.append(body);
    trace.events.back().offset = offset;
    return;
  }
  trace.events.push_back({event, std::string(body), offset});
}

Trace run(std::string_view stream, const std::vector<size_t>& pieces, uint32_t* sink) {
  RequestParser parser(fuzz_limits());
  Trace trace;
  size_t offset = 0;
  uint64_t body_sum = 0;
  for (size_t piece_size : pieces) {
    std::unique_ptr<char[]> buffer(new char[piece_size == 0 ? 1 : piece_size]);
    std::memcpy(buffer.get(), stream.data() + offset, piece_size);
    std::string_view rest(buffer.get(), piece_size);
    int zero_progress = 0;
    for (;;) {
      const ParseStep step = parser.parse(rest);
      FUZZ_CHECK(step.consumed_bytes <= rest.size());
      zero_progress = step.consumed_bytes == 0 ? zero_progress + 1 : 0;
      FUZZ_CHECK(zero_progress <= 2);  // every event but one in a row moves forward
      offset += step.consumed_bytes;
      if (step.event == ParseEvent::kError) {
        FUZZ_CHECK(parser.error() != ParseError::kNone);
        const int status = herald::http::parse_error_status(parser.error());
        FUZZ_CHECK(status >= 400 && status <= 505);
        const ParseStep again = parser.parse(rest);
        FUZZ_CHECK(again.event == ParseEvent::kError && again.consumed_bytes == 0);
        trace.error = parser.error();
        record(trace, step.event, {}, offset);
        return trace;
      }
      if (step.event == ParseEvent::kNeedMore) {
        FUZZ_CHECK(step.consumed_bytes == rest.size());
        break;
      }
      if (step.event == ParseEvent::kHeadersComplete) {
        *sink += touch_request(parser);
        body_sum = 0;
      } else if (step.event == ParseEvent::kBodyData) {
        FUZZ_CHECK(!step.body.empty());
        FUZZ_CHECK(step.body.data() >= rest.data() &&
                   step.body.data() + step.body.size() == rest.data() + step.consumed_bytes);
        body_sum += step.body.size();
        FUZZ_CHECK(body_sum == parser.body_bytes());
        FUZZ_CHECK(body_sum <= parser.limits().max_body_bytes);
      } else if (step.event == ParseEvent::kMessageComplete) {
        *sink += touch_request(parser);  // still valid until the next request starts
        FUZZ_CHECK(body_sum == parser.body_bytes());
        if (parser.request().body_framing() == BodyFraming::kContentLength) {
          FUZZ_CHECK(body_sum == parser.request().content_length());
        }
        if (parser.request().body_framing() == BodyFraming::kNone) FUZZ_CHECK(body_sum == 0);
      }
      record(trace, step.event, step.body, offset);
      rest.remove_prefix(step.consumed_bytes);
    }
  }
  return trace;
}

// A deliberately simple decoder of a chunked body already accepted by the parser: sizes are
// hex up to the first non-hex byte, everything else up to CRLF is skipped.
std::string decode_chunked(std::string_view body) {
  std::string out;
  for (;;) {
    uint64_t size = 0;
    size_t i = 0;
    while (i < body.size() && std::isxdigit(static_cast<unsigned char>(body[i]))) {
      const char c = body[i++];
      size = size * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    const size_t line_end = body.find("\r\n");
    FUZZ_CHECK(line_end != std::string_view::npos);
    body.remove_prefix(line_end + 2);
    if (size == 0) return out;
    FUZZ_CHECK(size + 2 <= body.size());
    out.append(body.substr(0, size));
    FUZZ_CHECK(body.substr(size, 2) == "\r\n");
    body.remove_prefix(size + 2);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint32_t seed = static_cast<uint32_t>(data[0]) << 8 | data[1];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

  std::vector<size_t> pieces;
  for (size_t left = stream.size(); left > 0;) {
    seed = seed * 1103515245u + 12345u;  // the split pattern only needs to be varied
    const size_t n = std::min<size_t>(left, 1 + (seed >> 16) % 17);
    pieces.push_back(n);
    left -= n;
  }
  uint32_t sink = 0;
  const Trace split = run(stream, pieces, &sink);
  const Trace whole = run(stream, {stream.size()}, &sink);

  FUZZ_CHECK(split.error == whole.error);
  FUZZ_CHECK(split.events.size() == whole.events.size());
  size_t head_end = 0;
  for (size_t i = 0; i < whole.events.size(); ++i) {
    const Event& a = whole.events[i];
    const Event& b = split.events[i];
    FUZZ_CHECK(a.event == b.event && a.body == b.body);
    // Where a failure is reported may depend on the cut; where an event completes may not.
    FUZZ_CHECK(a.event == ParseEvent::kError || a.offset == b.offset);
    if (a.event == ParseEvent::kHeadersComplete) head_end = a.offset;
    if (a.event == ParseEvent::kMessageComplete && head_end < a.offset) {
      // The bytes between the head and the end of the message, decoded independently.
      const std::string_view framed = stream.substr(head_end, a.offset - head_end);
      const std::string body = (i > 0 && whole.events[i - 1].event == ParseEvent::kBodyData)
                                   ? whole.events[i - 1].body
                                   : std::string();
      if (framed.size() != body.size()) FUZZ_CHECK(decode_chunked(framed) == body);
    }
  }
  if (sink == 0xdeadbeef) std::abort();  // keeps the reads alive
  return 0;
}

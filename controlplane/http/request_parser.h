// Strict, incremental HTTP/1.1 request parser (RFC 9112): bytes arrive in any pieces, the
// request head is copied once into storage sized from Limits at construction, and body bytes
// are handed back as views into the caller's input. Pure code, no I/O, no allocation after
// construction. Anything that could let two parsers disagree about framing is refused.
//
//   RequestParser parser(limits);
//   for (;;) {
//     ParseStep step = parser.parse(input);
//     input.remove_prefix(step.consumed_bytes);
//     switch (step.event) {
//       case ParseEvent::kNeedMore: return;                     // read more bytes
//       case ParseEvent::kHeadersComplete: route(parser.request()); break;
//       case ParseEvent::kBodyData: append(step.body); break;
//       case ParseEvent::kMessageComplete: respond(); break;   // next call: next request
//       case ParseEvent::kError: reply(parse_error_status(parser.error())); close(); return;
//     }
//   }
//
// Every error is fatal to the connection: answer parse_error_status() with
// "Connection: close" and close. After a request whose keep_alive() is false the server stops
// feeding bytes; the parser itself would go on to parse them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "controlplane/http/parse_error.h"
#include "controlplane/http/request.h"

namespace herald::http {

// Every limit has a defined answer: 414, 431, 413 or 400 (see parse_error.h).
struct Limits {
  // Request line without its CRLF. RFC 9112 §3 recommends supporting at least 8000 octets.
  uint32_t max_request_line_bytes = 8192;
  // All header field lines with their CRLFs plus the empty line that ends the head.
  uint32_t max_header_bytes = 16384;
  uint32_t max_header_count = 64;
  // Content-Length, or the sum of the chunk sizes.
  uint64_t max_body_bytes = 1 << 20;
  // One chunk's extensions (after the size, before the CRLF).
  uint32_t max_chunk_ext_bytes = 256;
  // The whole trailer section of a chunked body, with its final CRLF.
  uint32_t max_trailer_bytes = 4096;
};

enum class ParseEvent : uint8_t {
  kNeedMore,         // every input byte was consumed; call again with more
  kHeadersComplete,  // request() is valid; the body (if any) follows
  kBodyData,         // step.body holds body bytes (a view into this call's input)
  kMessageComplete,  // the request and its body are complete
  kError,            // error() says why; the parser stays failed
};

// Where a request head is copied: the line and field bytes, and the field views. A parser can
// own its storage, or borrow it from the server's pool and hand it back between requests, so
// an idle keep-alive connection holds none (at default limits it is about 26 KiB).
struct HeadStorage {
  std::span<char> bytes;
  std::span<HeaderField> fields;

  // The sizes a parser with `limits` needs.
  static size_t bytes_needed(const Limits& limits) {
    return size_t{limits.max_request_line_bytes} + 2 + limits.max_header_bytes;
  }
  static size_t fields_needed(const Limits& limits) {
    return limits.max_header_count == 0 ? 1 : limits.max_header_count;
  }
  bool fits(const Limits& limits) const {
    return bytes.size() >= bytes_needed(limits) && fields.size() >= fields_needed(limits);
  }
};

struct ParseStep {
  ParseEvent event = ParseEvent::kNeedMore;
  size_t consumed_bytes = 0;
  std::string_view body;  // kBodyData only; chunk framing already removed
};

class RequestParser {
 public:
  // Allocates and owns its head storage.
  explicit RequestParser(const Limits& limits);
  // Starts without storage: attach_storage() before the first byte is parsed.
  struct NoStorage {};
  RequestParser(const Limits& limits, NoStorage);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Consumes a prefix of `input` and reports one event. Call it until it returns kNeedMore or
  // kError (an empty `input` is fine: a request without a body completes without more bytes).
  // After kMessageComplete the next call starts the next pipelined request; request() and
  // its views stay valid until then.
  [[nodiscard]] ParseStep parse(std::string_view input);

  const Request& request() const { return request_; }
  ParseError error() const { return error_; }
  // Body bytes delivered so far for the current request (chunk framing excluded).
  uint64_t body_bytes() const { return body_bytes_; }
  // True once any byte of a request (not yet complete) arrived: the server's header- and
  // body-read timeouts run while this holds.
  bool in_progress() const;
  // Requests completed on this parser (i.e. on this connection).
  uint64_t completed_requests() const { return completed_requests_; }
  const Limits& limits() const { return limits_; }

  // Borrowed storage (it must fit the limits, and outlive its use here). Only when the parser
  // has none.
  void attach_storage(HeadStorage storage);
  // Gives the storage back between requests (!in_progress(), or failed); request() must not be
  // used afterwards. Returns what was attached (or the parser's own, which it then no longer
  // uses until attached again).
  HeadStorage release_storage();
  bool has_storage() const { return !storage_.bytes.empty(); }

  // Back to the initial state (a new connection reusing the parser and its storage).
  void reset();

 private:
  enum class State : uint8_t {
    kRequestLine,
    kHeaderLines,
    kBody,
    kChunkSize,
    kChunkExt,
    kChunkSizeLf,
    kChunkData,
    kChunkDataCr,
    kChunkDataLf,
    kTrailerLineStart,
    kTrailerName,
    kTrailerValue,
    kTrailerLineLf,
    kTrailerEndLf,
    kMessageDone,  // kMessageComplete not yet reported
    kIdle,         // between requests: the next byte starts a new one
    kFailed,
  };

  ParseStep fail(ParseError error, size_t consumed_bytes);
  void start_request();
  ParseStep parse_head(std::string_view input);
  ParseError on_request_line(std::string_view line);
  ParseError on_header_line(std::string_view line);
  ParseError on_head_complete();
  ParseStep parse_chunked(std::string_view input);
  ParseStep parse_trailer(std::string_view input);

  const Limits limits_;
  std::unique_ptr<char[]> owned_bytes_;
  std::unique_ptr<HeaderField[]> owned_fields_;
  HeadStorage storage_;

  State state_ = State::kIdle;
  ParseError error_ = ParseError::kNone;
  Request request_;

  // Head accumulation: bytes in storage_, where the current line starts, header bytes so far.
  size_t head_used_bytes_ = 0;
  size_t line_start_ = 0;
  size_t header_bytes_ = 0;
  uint32_t empty_lines_ = 0;

  // What the header lines said about framing, checked together once the head is complete.
  uint32_t host_count_ = 0;
  bool absolute_form_ = false;
  bool have_content_length_ = false;
  bool have_transfer_encoding_ = false;
  bool chunked_seen_ = false;
  bool chunked_last_ = false;
  bool other_coding_seen_ = false;
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
  bool expect_other_ = false;

  // Body progress.
  uint64_t body_remaining_bytes_ = 0;  // Content-Length left, or the current chunk's
  uint64_t body_bytes_ = 0;
  uint64_t chunk_size_ = 0;
  uint32_t chunk_size_digits_ = 0;
  uint32_t chunk_ext_bytes_ = 0;
  bool chunk_ext_semicolon_ = false;
  uint32_t trailer_bytes_ = 0;
  uint64_t completed_requests_ = 0;
};

}  // namespace herald::http

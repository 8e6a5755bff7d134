// The strict incremental HTTP/1.1 request parser: head lines are copied into fixed storage and
// parsed once each as they complete; the body is framed by Content-Length or the chunked coding
// and handed back without a copy. RFC 9112 section numbers are cited where a rule is applied.
#include "controlplane/http/request_parser.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "controlplane/http/chars.h"
#include "platform/assert/assert.h"

namespace herald::http {
namespace {

// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line (some
// clients send an extra CRLF after a POST body). A few are tolerated; a stream of them is not.
constexpr uint32_t kMaxLeadingEmptyLines = 4;
// A chunk size of more than 16 hex digits cannot fit in 64 bits (or is absurdly zero-padded).
constexpr uint32_t kMaxChunkSizeDigits = 16;

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && chars::is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && chars::is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// 1*DIGIT into a uint64_t: no sign, no whitespace, no overflow (RFC 9110 §8.6).
bool parse_decimal(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

// Calls fn(element) for each comma-separated element of a field value, whitespace trimmed
// (RFC 9110 §5.6.1). Stops at the first element for which fn returns an error.
template <typename Fn>
ParseError for_each_element(std::string_view value, Fn fn) {
  for (;;) {
    const size_t comma = value.find(',');
    const ParseError error = fn(trim_ows(value.substr(0, comma)));
    if (error != ParseError::kNone) return error;
    if (comma == std::string_view::npos) return ParseError::kNone;
    value.remove_prefix(comma + 1);
  }
}

bool all_tokens(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), chars::is_token);
}

// Characters of a request-target, with "%" followed by two hex digits (RFC 3986 §2.1).
bool valid_target_chars(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (!chars::is(s[i], chars::kTarget)) return false;
    if (s[i] == '%') {
      if (i + 2 >= s.size() || !chars::is_hex(s[i + 1]) || !chars::is_hex(s[i + 2])) {
        return false;
      }
      i += 2;
    }
  }
  return true;
}

// uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2). IP-literals are checked for their
// character set only; IPvFuture is not accepted.
bool valid_host(std::string_view v) {
  size_t i = 0;
  if (!v.empty() && v[0] == '[') {
    const size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (size_t j = 1; j < close; ++j) {
      if (!chars::is_hex(v[j]) && v[j] != ':' && v[j] != '.') return false;
    }
    i = close + 1;
  } else {
    for (; i < v.size() && v[i] != ':'; ++i) {
      if (!chars::is(v[i], chars::kRegName)) return false;
      if (v[i] == '%') {
        if (i + 2 >= v.size() || !chars::is_hex(v[i + 1]) || !chars::is_hex(v[i + 2])) {
          return false;
        }
        i += 2;
      }
    }
  }
  if (i == v.size()) return true;
  if (v[i] != ':') return false;
  const std::string_view port = v.substr(i + 1);
  if (port.size() > 5) return false;
  return std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Method method_from_name(std::string_view name) {
  // Methods are case-sensitive (RFC 9110 §9.1).
  struct Entry {
    std::string_view name;
    Method method;
  };
  static constexpr Entry kMethods[] = {
      {"GET", Method::kGet},         {"HEAD", Method::kHead},     {"POST", Method::kPost},
      {"PUT", Method::kPut},         {"DELETE", Method::kDelete}, {"PATCH", Method::kPatch},
      {"OPTIONS", Method::kOptions}, {"TRACE", Method::kTrace},
  };
  for (const Entry& entry : kMethods) {
    if (entry.name == name) return entry.method;
  }
  return Method::kOther;
}

void split_path_query(std::string_view s, std::string_view* path, std::string_view* query) {
  const size_t q = s.find('?');
  *path = s.substr(0, q);
  *query = q == std::string_view::npos ? std::string_view() : s.substr(q + 1);
}

}  // namespace

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto ca = static_cast<unsigned char>(a[i]);
    const auto cb = static_cast<unsigned char>(b[i]);
    if (ca == cb) continue;
    // Equal up to case only for letters: (ca | 0x20) alone would also match '@' and '`'.
    if ((ca | 0x20) != (cb | 0x20) || (ca | 0x20) < 'a' || (ca | 0x20) > 'z') return false;
  }
  return true;
}

const HeaderField* Request::find(std::string_view name) const {
  for (size_t i = 0; i < header_count_; ++i) {
    if (equals_ignore_case(headers_[i].name, name)) return &headers_[i];
  }
  return nullptr;
}

std::string_view Request::value(std::string_view name) const {
  const HeaderField* field = find(name);
  return field == nullptr ? std::string_view() : field->value;
}

RequestParser::RequestParser(const Limits& limits) : RequestParser(limits, NoStorage{}) {
  owned_bytes_.reset(new char[HeadStorage::bytes_needed(limits)]);
  owned_fields_.reset(new HeaderField[HeadStorage::fields_needed(limits)]);
  attach_storage({{owned_bytes_.get(), HeadStorage::bytes_needed(limits)},
                  {owned_fields_.get(), HeadStorage::fields_needed(limits)}});
}

RequestParser::RequestParser(const Limits& limits, NoStorage) : limits_(limits) {
  HERALD_CHECK(limits.max_request_line_bytes > 0 && limits.max_header_bytes > 0,
               "http limits must be positive");
}

void RequestParser::attach_storage(HeadStorage storage) {
  HERALD_CHECK(!has_storage(), "http parser already has head storage");
  // The limits checked before every copy into it are what keep the copy inside it.
  HERALD_CHECK(storage.fits(limits_), "http head storage smaller than the limits");
  storage_ = storage;
  request_.headers_ = storage_.fields.data();
}

HeadStorage RequestParser::release_storage() {
  HERALD_CHECK(!in_progress(), "http head storage released in the middle of a request");
  const HeadStorage storage = storage_;
  storage_ = HeadStorage{};
  request_ = Request{};
  return storage;
}

void RequestParser::reset() {
  state_ = State::kIdle;
  error_ = ParseError::kNone;
  completed_requests_ = 0;
  start_request();
  state_ = State::kIdle;
}

bool RequestParser::in_progress() const {
  return state_ != State::kIdle && state_ != State::kFailed && state_ != State::kMessageDone;
}

void RequestParser::start_request() {
  request_ = Request{};
  request_.headers_ = storage_.fields.data();
  head_used_bytes_ = 0;
  line_start_ = 0;
  header_bytes_ = 0;
  empty_lines_ = 0;
  host_count_ = 0;
  absolute_form_ = false;
  have_content_length_ = false;
  have_transfer_encoding_ = false;
  chunked_seen_ = false;
  chunked_last_ = false;
  other_coding_seen_ = false;
  connection_close_ = false;
  connection_keep_alive_ = false;
  expect_other_ = false;
  body_remaining_bytes_ = 0;
  body_bytes_ = 0;
  chunk_size_ = 0;
  chunk_size_digits_ = 0;
  chunk_ext_bytes_ = 0;
  chunk_ext_semicolon_ = false;
  trailer_bytes_ = 0;
  state_ = State::kRequestLine;
}

ParseStep RequestParser::fail(ParseError error, size_t consumed_bytes) {
  HERALD_DCHECK(error != ParseError::kNone, "fail() needs a reason");
  error_ = error;
  state_ = State::kFailed;
  return {ParseEvent::kError, consumed_bytes, {}};
}

ParseStep RequestParser::parse(std::string_view input) {
  switch (state_) {
    case State::kFailed: return {ParseEvent::kError, 0, {}};
    case State::kMessageDone:
      state_ = State::kIdle;
      ++completed_requests_;
      return {ParseEvent::kMessageComplete, 0, {}};
    case State::kIdle:
      if (input.empty()) return {ParseEvent::kNeedMore, 0, {}};
      HERALD_CHECK(has_storage(), "http parser used without head storage");
      start_request();
      return parse_head(input);
    case State::kRequestLine:
    case State::kHeaderLines: return parse_head(input);
    case State::kBody: {
      if (input.empty()) return {ParseEvent::kNeedMore, 0, {}};
      const size_t n = static_cast<size_t>(std::min<uint64_t>(body_remaining_bytes_, input.size()));
      body_remaining_bytes_ -= n;
      body_bytes_ += n;
      if (body_remaining_bytes_ == 0) state_ = State::kMessageDone;
      return {ParseEvent::kBodyData, n, input.substr(0, n)};
    }
    default: return parse_chunked(input);
  }
}

ParseStep RequestParser::parse_head(std::string_view input) {
  size_t consumed = 0;
  while (consumed < input.size()) {
    const std::string_view rest = input.substr(consumed);
    const char* lf = static_cast<const char*>(std::memchr(rest.data(), '\n', rest.size()));
    const size_t take = lf != nullptr ? static_cast<size_t>(lf - rest.data()) + 1 : rest.size();
    // Limits are checked before the copy. A line still missing its LF fails as soon as the LF
    // could no longer fit, so a slow sender cannot park more bytes than the limit allows.
    if (state_ == State::kRequestLine) {
      const size_t line_bytes = head_used_bytes_ - line_start_ + take;
      const size_t max_line_bytes = size_t{limits_.max_request_line_bytes} + 2;
      if (lf != nullptr ? line_bytes > max_line_bytes : line_bytes >= max_line_bytes) {
        return fail(ParseError::kRequestLineTooLong, consumed);
      }
    } else {
      const size_t total_bytes = header_bytes_ + take;
      if (lf != nullptr ? total_bytes > limits_.max_header_bytes
                        : total_bytes >= limits_.max_header_bytes) {
        return fail(ParseError::kHeadersTooLarge, consumed);
      }
      header_bytes_ = total_bytes;
    }
    HERALD_CHECK(head_used_bytes_ + take <= storage_.bytes.size(), "http head overrun");
    std::memcpy(storage_.bytes.data() + head_used_bytes_, rest.data(), take);
    head_used_bytes_ += take;
    consumed += take;
    if (lf == nullptr) return {ParseEvent::kNeedMore, consumed, {}};

    // A complete line. RFC 9112 §2.2 lets a recipient accept a bare LF as a line end; Herald
    // does not: a proxy in front that disagrees about line ends is a smuggling vector.
    std::string_view line(storage_.bytes.data() + line_start_, head_used_bytes_ - line_start_);
    if (line.size() < 2 || line[line.size() - 2] != '\r') {
      return fail(ParseError::kBareLf, consumed);
    }
    line.remove_suffix(2);
    // RFC 9112 §2.2: a bare CR is invalid; rejecting beats replacing it with SP.
    if (std::memchr(line.data(), '\r', line.size()) != nullptr) {
      return fail(ParseError::kBareCr, consumed);
    }
    ParseError error = ParseError::kNone;
    if (state_ == State::kRequestLine) {
      if (line.empty()) {
        if (++empty_lines_ > kMaxLeadingEmptyLines) {
          return fail(ParseError::kTooManyEmptyLines, consumed);
        }
        head_used_bytes_ = line_start_;
        continue;
      }
      error = on_request_line(line);
      state_ = State::kHeaderLines;
    } else if (line.empty()) {
      error = on_head_complete();
      if (error != ParseError::kNone) return fail(error, consumed);
      return {ParseEvent::kHeadersComplete, consumed, {}};
    } else {
      error = on_header_line(line);
    }
    if (error != ParseError::kNone) return fail(error, consumed);
    line_start_ = head_used_bytes_;
  }
  return {ParseEvent::kNeedMore, consumed, {}};
}

// request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single spaces only.
ParseError RequestParser::on_request_line(std::string_view line) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return ParseError::kMalformedRequestLine;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return ParseError::kMalformedRequestLine;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);

  if (!all_tokens(method)) return ParseError::kInvalidMethod;
  // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3). A well-formed
  // version we do not speak is 505 (RFC 9110 §15.6.6); anything else is malformed.
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return ParseError::kInvalidVersion;
  }
  if (version == "HTTP/1.1") {
    request_.version_ = Version::kHttp11;
  } else if (version == "HTTP/1.0") {
    request_.version_ = Version::kHttp10;
  } else {
    return ParseError::kVersionNotSupported;
  }

  request_.method_name_ = method;
  request_.method_ = method_from_name(method);
  // Authority-form exists only for CONNECT (RFC 9112 §3.2.3); Herald is not a tunnel.
  if (method == "CONNECT") return ParseError::kConnectUnsupported;

  if (!valid_target_chars(target)) return ParseError::kInvalidTarget;
  request_.target_ = target;
  if (target == "*") {
    // Asterisk-form is for a server-wide OPTIONS only (RFC 9112 §3.2.4).
    if (request_.method_ != Method::kOptions) return ParseError::kAsteriskNotOptions;
    request_.path_ = target;
    return ParseError::kNone;
  }
  if (target[0] == '/') {  // origin-form (RFC 9112 §3.2.1)
    split_path_query(target, &request_.path_, &request_.query_);
    return ParseError::kNone;
  }
  // absolute-form: a server MUST accept it (RFC 9112 §3.2.2). Only http and https name us.
  const size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return ParseError::kInvalidTarget;
  const std::string_view scheme = target.substr(0, scheme_end);
  if (!equals_ignore_case(scheme, "http") && !equals_ignore_case(scheme, "https")) {
    return ParseError::kUnsupportedScheme;
  }
  const std::string_view after = target.substr(scheme_end + 3);
  const size_t authority_end = after.find_first_of("/?");
  const std::string_view authority = after.substr(0, authority_end);
  // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
  if (authority.find('@') != std::string_view::npos) return ParseError::kUserinfoInTarget;
  if (authority.empty() || !valid_host(authority)) return ParseError::kInvalidTarget;
  absolute_form_ = true;
  request_.authority_ = authority;
  const std::string_view path_query =
      authority_end == std::string_view::npos ? std::string_view() : after.substr(authority_end);
  split_path_query(path_query, &request_.path_, &request_.query_);
  if (request_.path_.empty()) request_.path_ = "/";
  return ParseError::kNone;
}

// field-line = field-name ":" OWS field-value OWS (RFC 9112 §5).
ParseError RequestParser::on_header_line(std::string_view line) {
  // RFC 9112 §5.2: obs-fold in a request is rejected; this also catches whitespace between the
  // request line and the first field (RFC 9112 §2.2).
  if (chars::is_ows(line[0])) return ParseError::kObsFold;
  size_t colon = 0;
  while (colon < line.size() && chars::is_token(line[colon])) ++colon;
  if (colon == line.size()) return ParseError::kInvalidHeaderName;
  if (line[colon] != ':') {
    // RFC 9112 §5.1: whitespace between name and colon MUST be rejected with 400; it is the
    // classic "Transfer-Encoding : chunked" smuggling obfuscation.
    return chars::is_ows(line[colon]) ? ParseError::kSpaceBeforeColon
                                      : ParseError::kInvalidHeaderName;
  }
  if (colon == 0) return ParseError::kInvalidHeaderName;
  const std::string_view name = line.substr(0, colon);
  const std::string_view value = trim_ows(line.substr(colon + 1));
  // RFC 9110 §5.5: NUL, CR, LF and other controls are invalid in field values.
  for (char c : value) {
    if (!chars::is(c, chars::kFieldValue)) return ParseError::kInvalidHeaderValue;
  }
  if (request_.header_count_ >= limits_.max_header_count) return ParseError::kTooManyHeaders;
  storage_.fields[request_.header_count_++] = HeaderField{name, value};

  if (equals_ignore_case(name, "content-length")) {
    // RFC 9112 §6.3 item 5, RFC 9110 §8.6: a list of identical values may be taken as one;
    // differing values or anything but 1*DIGIT is an unrecoverable framing error.
    return for_each_element(value, [this](std::string_view element) {
      uint64_t length = 0;
      if (!parse_decimal(element, &length)) return ParseError::kInvalidContentLength;
      if (have_content_length_ && length != request_.content_length_) {
        return ParseError::kConflictingContentLength;
      }
      have_content_length_ = true;
      request_.content_length_ = length;
      return ParseError::kNone;
    });
  }
  if (equals_ignore_case(name, "transfer-encoding")) {
    have_transfer_encoding_ = true;
    // transfer-coding = token *( OWS ";" OWS transfer-parameter ) (RFC 9112 §7). Empty list
    // elements are refused here (RFC 9110 §5.6.1 tolerates them) because every parser on the
    // path must agree on this field.
    return for_each_element(value, [this](std::string_view element) {
      size_t end = 0;
      while (end < element.size() && chars::is_token(element[end])) ++end;
      if (end == 0) return ParseError::kInvalidTransferEncoding;
      const std::string_view params = trim_ows(element.substr(end));
      if (!params.empty() && params[0] != ';') return ParseError::kInvalidTransferEncoding;
      if (equals_ignore_case(element.substr(0, end), "chunked")) {
        if (!params.empty()) return ParseError::kInvalidTransferEncoding;  // it takes none
        // RFC 9112 §7: chunked MUST NOT be applied more than once.
        if (chunked_seen_) return ParseError::kChunkedTwice;
        chunked_seen_ = true;
        chunked_last_ = true;
      } else {
        other_coding_seen_ = true;
        chunked_last_ = false;
      }
      return ParseError::kNone;
    });
  }
  if (equals_ignore_case(name, "host")) {
    // RFC 9112 §3.2: more than one Host, or an invalid one, is a 400.
    if (++host_count_ > 1) return ParseError::kMultipleHost;
    if (!valid_host(value)) return ParseError::kInvalidHost;
    if (!absolute_form_) request_.authority_ = value;
    return ParseError::kNone;
  }
  if (equals_ignore_case(name, "connection")) {
    return for_each_element(value, [this](std::string_view element) {
      if (element.empty()) return ParseError::kNone;
      if (!all_tokens(element)) return ParseError::kInvalidConnection;
      if (equals_ignore_case(element, "close")) connection_close_ = true;
      if (equals_ignore_case(element, "keep-alive")) connection_keep_alive_ = true;
      return ParseError::kNone;
    });
  }
  if (equals_ignore_case(name, "expect")) {
    return for_each_element(value, [this](std::string_view element) {
      if (element.empty()) return ParseError::kNone;
      if (equals_ignore_case(element, "100-continue")) {
        request_.expect_continue_ = true;
      } else {
        expect_other_ = true;
      }
      return ParseError::kNone;
    });
  }
  return ParseError::kNone;
}

ParseError RequestParser::on_head_complete() {
  const bool http11 = request_.version_ == Version::kHttp11;
  if (http11 && host_count_ == 0) return ParseError::kMissingHost;  // RFC 9112 §3.2

  if (have_transfer_encoding_) {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (!http11) return ParseError::kTransferEncodingInHttp10;
    // RFC 9112 §6.1: a server MAY reject both; it is the root of CL.TE / TE.CL smuggling.
    if (have_content_length_) return ParseError::kContentLengthWithTransferEncoding;
    // RFC 9112 §6.3 item 4: chunked not final in a request -> 400 and close.
    if (!chunked_last_) return ParseError::kChunkedNotFinal;
    // RFC 9112 §6.1: a coding we do not understand -> 501.
    if (other_coding_seen_) return ParseError::kUnsupportedTransferCoding;
    request_.framing_ = BodyFraming::kChunked;
  } else if (have_content_length_) {
    // Refused before a byte of the body is read (RFC 9110 §15.5.14).
    if (request_.content_length_ > limits_.max_body_bytes) return ParseError::kBodyTooLarge;
    request_.framing_ = BodyFraming::kContentLength;
  }
  // RFC 9110 §10.1.1: 417 for an expectation we cannot meet; 100-continue on HTTP/1.0 is
  // ignored.
  if (expect_other_) return ParseError::kExpectationFailed;
  if (!http11) request_.expect_continue_ = false;

  // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
  request_.keep_alive_ = !connection_close_ && (http11 || connection_keep_alive_);

  switch (request_.framing_) {
    case BodyFraming::kChunked: state_ = State::kChunkSize; break;
    case BodyFraming::kContentLength:
      body_remaining_bytes_ = request_.content_length_;
      state_ = body_remaining_bytes_ > 0 ? State::kBody : State::kMessageDone;
      break;
    case BodyFraming::kNone: state_ = State::kMessageDone; break;
  }
  return ParseError::kNone;
}

// chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 §7.1), one byte at a time
// except chunk data, which is handed back in place.
ParseStep RequestParser::parse_chunked(std::string_view input) {
  size_t i = 0;
  while (i < input.size()) {
    const char c = input[i];
    switch (state_) {
      case State::kChunkSize:
        if (chars::is_hex(c)) {
          if (++chunk_size_digits_ > kMaxChunkSizeDigits) {
            return fail(ParseError::kChunkSizeOverflow, i);
          }
          chunk_size_ = (chunk_size_ << 4) | chars::hex_value(c);
          break;
        }
        if (chunk_size_digits_ == 0) return fail(ParseError::kInvalidChunkSize, i);
        if (c == '\r') {
          state_ = State::kChunkSizeLf;
          break;
        }
        if (c != ';' && !chars::is_ows(c)) return fail(ParseError::kInvalidChunkSize, i);
        state_ = State::kChunkExt;
        chunk_ext_bytes_ = 0;
        chunk_ext_semicolon_ = false;
        continue;  // the same byte starts the extension
      case State::kChunkExt:
        // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ). The
        // extensions are bounded, checked for forbidden bytes and ignored (we define none).
        if (c == '\r') {
          if (!chunk_ext_semicolon_) return fail(ParseError::kInvalidChunkExtension, i);
          state_ = State::kChunkSizeLf;
          break;
        }
        if (++chunk_ext_bytes_ > limits_.max_chunk_ext_bytes) {
          return fail(ParseError::kChunkExtensionTooLong, i);
        }
        if (c == '\n') return fail(ParseError::kBareLf, i);
        if (c == ';') {
          chunk_ext_semicolon_ = true;
        } else if (!chars::is(c, chars::kFieldValue) ||
                   (!chunk_ext_semicolon_ && !chars::is_ows(c))) {
          return fail(ParseError::kInvalidChunkExtension, i);
        }
        break;
      case State::kChunkSizeLf:
        if (c != '\n') return fail(ParseError::kBareCr, i);
        if (chunk_size_ == 0) {  // last-chunk: the trailer section follows
          state_ = State::kTrailerLineStart;
          trailer_bytes_ = 0;
          break;
        }
        if (chunk_size_ > limits_.max_body_bytes - body_bytes_) {
          return fail(ParseError::kBodyTooLarge, i);
        }
        body_remaining_bytes_ = chunk_size_;
        chunk_size_ = 0;
        chunk_size_digits_ = 0;
        state_ = State::kChunkData;
        break;
      case State::kChunkData: {
        const size_t n =
            static_cast<size_t>(std::min<uint64_t>(body_remaining_bytes_, input.size() - i));
        body_remaining_bytes_ -= n;
        body_bytes_ += n;
        if (body_remaining_bytes_ == 0) state_ = State::kChunkDataCr;
        return {ParseEvent::kBodyData, i + n, input.substr(i, n)};
      }
      case State::kChunkDataCr:
        if (c != '\r') return fail(ParseError::kMissingChunkCrlf, i);
        state_ = State::kChunkDataLf;
        break;
      case State::kChunkDataLf:
        if (c != '\n') return fail(ParseError::kMissingChunkCrlf, i);
        state_ = State::kChunkSize;
        break;
      // trailer-section = *( field-line CRLF ): parsed for syntax, bounded, and discarded
      // (RFC 9110 §6.5: a recipient may ignore trailers; none of ours carries meaning).
      case State::kTrailerLineStart:
      case State::kTrailerName:
      case State::kTrailerValue:
      case State::kTrailerLineLf:
      case State::kTrailerEndLf:
        if (++trailer_bytes_ > limits_.max_trailer_bytes) {
          return fail(ParseError::kTrailersTooLarge, i);
        }
        if (state_ == State::kTrailerLineStart) {
          if (c == '\r') {
            state_ = State::kTrailerEndLf;
          } else if (c == '\n') {
            return fail(ParseError::kBareLf, i);
          } else if (!chars::is_token(c)) {
            return fail(ParseError::kInvalidTrailer, i);  // obs-fold, stray bytes
          } else {
            state_ = State::kTrailerName;
          }
        } else if (state_ == State::kTrailerName) {
          if (c == ':') {
            state_ = State::kTrailerValue;
          } else if (!chars::is_token(c)) {
            return fail(ParseError::kInvalidTrailer, i);
          }
        } else if (state_ == State::kTrailerValue) {
          if (c == '\r') {
            state_ = State::kTrailerLineLf;
          } else if (c == '\n') {
            return fail(ParseError::kBareLf, i);
          } else if (!chars::is(c, chars::kFieldValue)) {
            return fail(ParseError::kInvalidTrailer, i);
          }
        } else if (state_ == State::kTrailerLineLf) {
          if (c != '\n') return fail(ParseError::kBareCr, i);
          state_ = State::kTrailerLineStart;
        } else {  // kTrailerEndLf
          if (c != '\n') return fail(ParseError::kBareCr, i);
          state_ = State::kIdle;
          ++completed_requests_;
          return {ParseEvent::kMessageComplete, i + 1, {}};
        }
        break;
      default: HERALD_CHECK(false, "parse_chunked in a non-chunked state");
    }
    ++i;
  }
  return {ParseEvent::kNeedMore, i, {}};
}

}  // namespace herald::http

// One parsed HTTP/1.1 request head: views into the parser's head storage, valid until the
// parser starts on the next request (see RequestParser). What the API layer routes on.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace herald::http {

enum class Method : uint8_t {
  kOther = 0,  // a valid token we do not know: the server answers 501
  kGet,
  kHead,
  kPost,
  kPut,
  kDelete,
  kPatch,
  kOptions,
  kTrace,
};

enum class Version : uint8_t { kHttp10, kHttp11 };

// How the body is delimited (RFC 9112 §6.3): nothing, Content-Length, or the chunked coding.
enum class BodyFraming : uint8_t { kNone, kContentLength, kChunked };

struct HeaderField {
  std::string_view name;   // as received (case preserved)
  std::string_view value;  // leading and trailing whitespace removed (RFC 9112 §5.1)
};

// ASCII case-insensitive equality, for field names and tokens.
bool equals_ignore_case(std::string_view a, std::string_view b);

class Request {
 public:
  Method method() const { return method_; }
  std::string_view method_name() const { return method_name_; }
  // The request-target exactly as received.
  std::string_view target() const { return target_; }
  // The path ("/" for an absolute-form target with an empty path, "*" for asterisk-form) and
  // the query after "?" (empty when absent). Percent-encoding is validated, not decoded.
  std::string_view path() const { return path_; }
  std::string_view query() const { return query_; }
  // The target's authority for absolute-form (which then overrides Host, RFC 9112 §3.2.2),
  // else the Host field value; empty if neither.
  std::string_view authority() const { return authority_; }
  Version version() const { return version_; }

  std::span<const HeaderField> headers() const { return {headers_, header_count_}; }
  // The first field named `name` (case-insensitive), or nullptr.
  const HeaderField* find(std::string_view name) const;
  // The value of the first field named `name`, or empty.
  std::string_view value(std::string_view name) const;

  BodyFraming body_framing() const { return framing_; }
  // Declared Content-Length (0 unless body_framing() == kContentLength).
  uint64_t content_length() const { return content_length_; }
  // Whether the connection may carry another request after this one (RFC 9112 §9.3).
  bool keep_alive() const { return keep_alive_; }
  // Expect: 100-continue on an HTTP/1.1 request (RFC 9110 §10.1.1): the client may wait for
  // a 100 (Continue) before it sends the body.
  bool expect_continue() const { return expect_continue_; }

 private:
  friend class RequestParser;

  Method method_ = Method::kOther;
  Version version_ = Version::kHttp11;
  BodyFraming framing_ = BodyFraming::kNone;
  bool keep_alive_ = true;
  bool expect_continue_ = false;
  std::string_view method_name_;
  std::string_view target_;
  std::string_view path_;
  std::string_view query_;
  std::string_view authority_;
  const HeaderField* headers_ = nullptr;
  size_t header_count_ = 0;
  uint64_t content_length_ = 0;
};

}  // namespace herald::http

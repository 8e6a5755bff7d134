// Why the HTTP/1.1 request parser refused a request: one X-macro table of stable reason names
// and the status each answers with, so the server keeps one counter per reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace herald::http {

// X(Enumerator, reason_name, status). Names are stable: counters and logs use them.
// Every rejection is fatal to the connection: once framing is in doubt, no later byte on it
// can be trusted to start a request (RFC 9112 §6.3, §11.2).
#define HERALD_HTTP_PARSE_ERRORS(X)                                                 \
  /* Line syntax (RFC 9112 §2.2). */                                               \
  X(kBareCr, bare_cr, 400)                                                          \
  X(kBareLf, bare_lf, 400)                                                          \
  X(kTooManyEmptyLines, too_many_empty_lines, 400)                                  \
  /* Request line (RFC 9112 §3). */                                                \
  X(kRequestLineTooLong, request_line_too_long, 414)                                \
  X(kMalformedRequestLine, malformed_request_line, 400)                             \
  X(kInvalidMethod, invalid_method, 400)                                            \
  X(kInvalidTarget, invalid_target, 400)                                            \
  X(kAsteriskNotOptions, asterisk_form_not_options, 400)                            \
  X(kUnsupportedScheme, unsupported_scheme, 400)                                    \
  X(kUserinfoInTarget, userinfo_in_target, 400)                                     \
  X(kConnectUnsupported, connect_unsupported, 501)                                  \
  X(kInvalidVersion, invalid_version, 400)                                          \
  X(kVersionNotSupported, version_not_supported, 505)                               \
  /* Header section (RFC 9112 §5, RFC 9110 §5). */                                \
  X(kHeadersTooLarge, headers_too_large, 431)                                       \
  X(kTooManyHeaders, too_many_headers, 431)                                         \
  X(kObsFold, obs_fold, 400)                                                        \
  X(kSpaceBeforeColon, space_before_colon, 400)                                     \
  X(kInvalidHeaderName, invalid_header_name, 400)                                   \
  X(kInvalidHeaderValue, invalid_header_value, 400)                                 \
  X(kMissingHost, missing_host, 400)                                                \
  X(kMultipleHost, multiple_host, 400)                                              \
  X(kInvalidHost, invalid_host, 400)                                                \
  X(kInvalidConnection, invalid_connection, 400)                                    \
  X(kExpectationFailed, expectation_failed, 417)                                    \
  /* Message body framing (RFC 9112 §6). */                                        \
  X(kInvalidContentLength, invalid_content_length, 400)                             \
  X(kConflictingContentLength, conflicting_content_length, 400)                     \
  X(kContentLengthWithTransferEncoding, content_length_with_transfer_encoding, 400) \
  X(kTransferEncodingInHttp10, transfer_encoding_in_http10, 400)                    \
  X(kInvalidTransferEncoding, invalid_transfer_encoding, 400)                       \
  X(kChunkedNotFinal, chunked_not_final, 400)                                       \
  X(kChunkedTwice, chunked_twice, 400)                                              \
  X(kUnsupportedTransferCoding, unsupported_transfer_coding, 501)                   \
  X(kBodyTooLarge, body_too_large, 413)                                             \
  /* Chunked coding (RFC 9112 §7.1). */                                            \
  X(kInvalidChunkSize, invalid_chunk_size, 400)                                     \
  X(kChunkSizeOverflow, chunk_size_overflow, 400)                                   \
  X(kInvalidChunkExtension, invalid_chunk_extension, 400)                           \
  X(kChunkExtensionTooLong, chunk_extension_too_long, 400)                          \
  X(kMissingChunkCrlf, missing_chunk_crlf, 400)                                     \
  X(kInvalidTrailer, invalid_trailer, 400)                                          \
  X(kTrailersTooLarge, trailers_too_large, 400)

enum class ParseError : uint8_t {
  kNone = 0,
#define HERALD_HTTP_X(e, name, status) e,
  HERALD_HTTP_PARSE_ERRORS(HERALD_HTTP_X)
#undef HERALD_HTTP_X
};

// Number of reasons, kNone excluded: a counter array indexed by `static_cast<size_t>(e) - 1`.
inline constexpr size_t kParseErrorCount = 0
#define HERALD_HTTP_X(e, name, status) +1
    HERALD_HTTP_PARSE_ERRORS(HERALD_HTTP_X)
#undef HERALD_HTTP_X
    ;

// The stable reason name ("bare_lf"); "none" for kNone.
std::string_view parse_error_name(ParseError error);
// The status to answer with (400, 413, 414, 417, 431, 501, 505); 0 for kNone.
int parse_error_status(ParseError error);

}  // namespace herald::http

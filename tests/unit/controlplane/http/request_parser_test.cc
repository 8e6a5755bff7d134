// Table-driven tests of the strict HTTP/1.1 request parser: accepted requests, rejections with
// their status and reason, a corpus of smuggling attempts, limits and pipelining. Every case is
// fed whole, one byte at a time, and in seeded random splits, and must give the same result.
#include "controlplane/http/request_parser.h"

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/http/parse_error.h"
#include "gtest/gtest.h"
#include "tests/unit/controlplane/http/parser_harness.h"

namespace herald::http {
namespace {

using namespace std::string_literals;
using testing::all_splits;
using testing::feed;
using testing::Outcome;

constexpr std::string_view kHead = "POST /p HTTP/1.1\r\nHost: h\r\n";

struct AcceptCase {
  const char* name;
  std::string input;
  std::string method;
  std::string path;
  std::string query;
  std::string authority;
  std::string body;
  bool keep_alive = true;
  bool expect_continue = false;
  Version version = Version::kHttp11;
};

std::vector<AcceptCase> accept_cases() {
  const std::string head(kHead);
  return {
      {"simple_get", "GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/v1/health", "", "a",
       ""},
      {"query", "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h:8080\r\n\r\n", "GET", "/a/b", "x=1&y=%20",
       "h:8080", ""},
      {"content_length_body",
       "POST /v1/accounts/code HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
       "Content-Length: 5\r\n\r\nhello",
       "POST", "/v1/accounts/code", "", "h", "hello"},
      {"content_length_zero", head + "Content-Length: 0\r\n\r\n", "POST", "/p", "", "h", ""},
      {"chunked", head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
       "POST", "/p", "", "h", "hello world"},
      {"chunked_ext_trailer",
       head + "Transfer-Encoding: chunked\r\n\r\n5;name=val\r\nhello\r\nA ; a=\"q\"\r\n"
              "0123456789\r\n0\r\nX-Trailer: t\r\nX-Other:\r\n\r\n",
       "POST", "/p", "", "h", "hello0123456789"},
      {"chunked_case_insensitive_and_padded",
       head + "Transfer-Encoding:\tChunked \r\n\r\n0005\r\nhello\r\n000\r\n\r\n", "POST", "/p", "",
       "h", "hello"},
      {"http10_no_host", "GET / HTTP/1.0\r\n\r\n", "GET", "/", "", "", "", false, false,
       Version::kHttp10},
      {"http10_keep_alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "/", "", "",
       "", true, false, Version::kHttp10},
      {"http11_close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, , close\r\n\r\n", "GET",
       "/", "", "h", "", false},
      {"expect_continue",
       "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc", "PUT",
       "/x", "", "h", "abc", true, true},
      {"expect_continue_ignored_in_http10",
       "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", "PUT", "/x", "",
       "", "abc", false, false, Version::kHttp10},
      {"identical_content_lengths",
       head + "Content-Length: 3\r\nContent-Length: 3\r\ncontent-length: 3, 3\r\n\r\nabc", "POST",
       "/p", "", "h", "abc"},
      {"leading_empty_lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "", "h", ""},
      {"ows_trimmed", "GET / HTTP/1.1\r\nHost: \t h \t\r\nX-Empty:\r\n\r\n", "GET", "/", "", "h",
       ""},
      {"absolute_form_overrides_host",
       "GET http://example.com:8443/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", "GET", "/p", "q=1",
       "example.com:8443", ""},
      {"absolute_form_empty_path", "GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "GET", "/", "", "example.com", ""},
      {"absolute_form_query_only", "GET http://e.com?a HTTP/1.1\r\nHost: e.com\r\n\r\n", "GET", "/",
       "a", "e.com", ""},
      {"asterisk_options", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", "", "h", ""},
      {"unknown_method_token", "PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n", "PURGE", "/x", "", "h", ""},
      {"obs_text_value", "GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\r\n\r\n", "GET", "/", "",
       "h", ""},
      {"ipv6_host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "GET", "/", "", "[::1]:8080", ""},
      {"empty_host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "", "", ""},
  };
}

TEST(RequestParserTest, AcceptsValidRequestsInEverySplit) {
  for (const AcceptCase& c : accept_cases()) {
    for (const auto& [split_name, pieces] : all_splits(c.input.size())) {
      SCOPED_TRACE(std::string(c.name) + " / " + split_name);
      RequestParser parser(Limits{});
      const Outcome out = feed(parser, c.input, pieces);
      ASSERT_EQ(out.error, ParseError::kNone) << parse_error_name(out.error);
      ASSERT_EQ(out.requests.size(), 1u);
      EXPECT_FALSE(out.in_progress);
      const testing::ParsedRequest& r = out.requests[0];
      EXPECT_EQ(r.method, c.method);
      EXPECT_EQ(r.path, c.path);
      EXPECT_EQ(r.query, c.query);
      EXPECT_EQ(r.authority, c.authority);
      EXPECT_EQ(r.body, c.body);
      EXPECT_EQ(r.keep_alive, c.keep_alive);
      EXPECT_EQ(r.expect_continue, c.expect_continue);
      EXPECT_EQ(r.version, c.version);
      EXPECT_EQ(parser.completed_requests(), 1u);
    }
  }
}

struct RejectCase {
  const char* name;
  std::string input;
  ParseError error;
};

std::vector<RejectCase> reject_cases() {
  const std::string head(kHead);
  const std::string chunked = head + "Transfer-Encoding: chunked\r\n\r\n";
  using E = ParseError;
  return {
      // Line endings.
      {"bare_lf_request_line", "GET / HTTP/1.1\nHost: h\r\n\r\n", E::kBareLf},
      {"bare_lf_header", "GET / HTTP/1.1\r\nHost: h\n\r\n", E::kBareLf},
      {"bare_lf_end_of_head", "GET / HTTP/1.1\r\nHost: h\r\n\n", E::kBareLf},
      {"bare_cr_header", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", E::kBareCr},
      {"bare_cr_request_line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", E::kBareCr},
      {"too_many_empty_lines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
       E::kTooManyEmptyLines},
      // Request line.
      {"no_version", "GET /\r\n\r\n", E::kMalformedRequestLine},
      {"double_space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", E::kMalformedRequestLine},
      {"leading_space", " GET / HTTP/1.1\r\nHost: h\r\n\r\n", E::kMalformedRequestLine},
      {"method_not_token", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidMethod},
      {"method_tab_two_spaces", "GET\t/ a HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidMethod},
      {"method_tab", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", E::kMalformedRequestLine},
      {"target_space", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidVersion},
      {"target_angle", "GET /a<b HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidTarget},
      {"target_bad_pct", "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidTarget},
      {"target_short_pct", "GET /a%2 HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidTarget},
      {"target_fragment", "GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidTarget},
      {"target_control", "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidTarget},
      {"target_nul", "GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"s, E::kInvalidTarget},
      {"target_relative", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidTarget},
      {"asterisk_not_options", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", E::kAsteriskNotOptions},
      {"ftp_scheme", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", E::kUnsupportedScheme},
      {"userinfo", "GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n", E::kUserinfoInTarget},
      {"empty_authority", "GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", E::kInvalidTarget},
      {"connect", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", E::kConnectUnsupported},
      {"version_garbage", "GET / HTTP/1.1x\r\nHost: h\r\n\r\n", E::kInvalidVersion},
      {"version_lowercase", "GET / http/1.1\r\nHost: h\r\n\r\n", E::kInvalidVersion},
      {"version_no_dot", "GET / HTTP/11\r\nHost: h\r\n\r\n", E::kInvalidVersion},
      {"version_2", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", E::kVersionNotSupported},
      {"version_1_2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", E::kVersionNotSupported},
      {"version_0_9", "GET / HTTP/0.9\r\n\r\n", E::kVersionNotSupported},
      // Header section.
      {"obs_fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", E::kObsFold},
      {"space_after_request_line", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", E::kObsFold},
      {"space_before_colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", E::kSpaceBeforeColon},
      {"name_not_token", "GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", E::kInvalidHeaderName},
      {"name_control", "GET / HTTP/1.1\r\nHost: h\r\nX\x01: b\r\n\r\n", E::kInvalidHeaderName},
      {"empty_name", "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", E::kInvalidHeaderName},
      {"no_colon", "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", E::kInvalidHeaderName},
      {"value_nul", "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"s, E::kInvalidHeaderValue},
      {"value_control", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n", E::kInvalidHeaderValue},
      {"value_del", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", E::kInvalidHeaderValue},
      {"missing_host", "GET / HTTP/1.1\r\n\r\n", E::kMissingHost},
      {"multiple_host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", E::kMultipleHost},
      {"host_space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", E::kInvalidHost},
      {"host_bad_port", "GET / HTTP/1.1\r\nHost: a:http\r\n\r\n", E::kInvalidHost},
      {"host_open_bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", E::kInvalidHost},
      {"host_userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", E::kInvalidHost},
      {"connection_not_token", "GET / HTTP/1.1\r\nHost: h\r\nConnection: clo se\r\n\r\n",
       E::kInvalidConnection},
      {"expect_other", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n",
       E::kExpectationFailed},
      // Content-Length.
      {"cl_plus", head + "Content-Length: +5\r\n\r\nhello", E::kInvalidContentLength},
      {"cl_minus", head + "Content-Length: -5\r\n\r\n", E::kInvalidContentLength},
      {"cl_suffix", head + "Content-Length: 5a\r\n\r\nhello", E::kInvalidContentLength},
      {"cl_hex", head + "Content-Length: 0x5\r\n\r\nhello", E::kInvalidContentLength},
      {"cl_empty", head + "Content-Length:\r\n\r\n", E::kInvalidContentLength},
      {"cl_inner_space", head + "Content-Length: 5 5\r\n\r\nhello", E::kInvalidContentLength},
      {"cl_overflow", head + "Content-Length: 99999999999999999999999\r\n\r\n",
       E::kInvalidContentLength},
      {"cl_empty_element", head + "Content-Length: 5,\r\n\r\nhello", E::kInvalidContentLength},
      {"cl_differ_lines", head + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
       E::kConflictingContentLength},
      {"cl_differ_list", head + "Content-Length: 5, 6\r\n\r\nhello!", E::kConflictingContentLength},
      {"cl_too_large", head + "Content-Length: 1048577\r\n\r\n", E::kBodyTooLarge},
      // Transfer-Encoding.
      {"te_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       E::kTransferEncodingInHttp10},
      {"te_empty_element", head + "Transfer-Encoding: chunked, \r\n\r\n",
       E::kInvalidTransferEncoding},
      {"te_quoted", head + "Transfer-Encoding: \"chunked\"\r\n\r\n", E::kInvalidTransferEncoding},
      {"te_chunked_param", head + "Transfer-Encoding: chunked;q=1\r\n\r\n",
       E::kInvalidTransferEncoding},
      {"te_gzip_only", head + "Transfer-Encoding: gzip\r\n\r\n", E::kChunkedNotFinal},
      {"te_gzip_chunked", head + "Transfer-Encoding: gzip, chunked\r\n\r\n",
       E::kUnsupportedTransferCoding},
      {"te_chunked_twice", head + "Transfer-Encoding: chunked, chunked\r\n\r\n", E::kChunkedTwice},
      // Chunked body.
      {"chunk_size_not_hex", chunked + "zz\r\n", E::kInvalidChunkSize},
      {"chunk_size_empty", chunked + "\r\n", E::kInvalidChunkSize},
      {"chunk_size_negative", chunked + "-1\r\n", E::kInvalidChunkSize},
      {"chunk_size_0x", chunked + "0x5\r\nhello\r\n0\r\n\r\n", E::kInvalidChunkSize},
      {"chunk_size_lf_only", chunked + "5\nhello\r\n0\r\n\r\n", E::kInvalidChunkSize},
      {"chunk_size_bare_cr", chunked + "5\rhello\r\n0\r\n\r\n", E::kBareCr},
      {"chunk_size_overflow", chunked + "10000000000000005\r\n", E::kChunkSizeOverflow},
      {"chunk_too_large", chunked + "100001\r\n", E::kBodyTooLarge},
      {"chunk_data_too_long", chunked + "5\r\nhelloX\r\n0\r\n\r\n", E::kMissingChunkCrlf},
      {"chunk_data_lf_only", chunked + "5\r\nhello\n0\r\n\r\n", E::kMissingChunkCrlf},
      {"chunk_data_cr_only", chunked + "5\r\nhello\r0\r\n\r\n", E::kMissingChunkCrlf},
      {"chunk_ext_no_semicolon", chunked + "5 x\r\nhello\r\n0\r\n\r\n", E::kInvalidChunkExtension},
      {"chunk_ext_trailing_space", chunked + "5 \r\nhello\r\n0\r\n\r\n", E::kInvalidChunkExtension},
      {"chunk_ext_control", chunked + "5;a\x01\r\nhello\r\n0\r\n\r\n", E::kInvalidChunkExtension},
      {"chunk_ext_bare_lf", chunked + "5;a\nhello\r\n0\r\n\r\n", E::kBareLf},
      {"chunk_ext_too_long", chunked + "5;" + std::string(300, 'a') + "\r\nhello\r\n0\r\n\r\n",
       E::kChunkExtensionTooLong},
      {"trailer_fold", chunked + "0\r\n bad\r\n\r\n", E::kInvalidTrailer},
      {"trailer_space_before_colon", chunked + "0\r\nX : y\r\n\r\n", E::kInvalidTrailer},
      {"trailer_control", chunked + "0\r\nX: \x01\r\n\r\n", E::kInvalidTrailer},
      {"trailer_bare_lf", chunked + "0\r\nX: y\n\r\n", E::kBareLf},
      {"trailer_end_bare_cr", chunked + "0\r\n\rX", E::kBareCr},
      {"trailers_too_large", chunked + "0\r\nX: " + std::string(5000, 'a') + "\r\n\r\n",
       E::kTrailersTooLarge},
  };
}

// The classic request smuggling shapes (CL.TE, TE.CL, TE.TE obfuscations, duplicated or
// malformed lengths). Each must be refused outright: a request that a front end frames one way
// and Herald another is the attack.
std::vector<RejectCase> smuggling_cases() {
  const std::string head(kHead);
  using E = ParseError;
  return {
      {"cl_te", head + "Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED",
       E::kContentLengthWithTransferEncoding},
      {"te_cl",
       head + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
       E::kContentLengthWithTransferEncoding},
      {"te_te_space_before_colon",
       head + "Content-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n5c\r\n",
       E::kSpaceBeforeColon},
      {"te_te_xchunked", head + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
       E::kChunkedNotFinal},
      {"te_te_chunked_identity", head + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
       E::kChunkedNotFinal},
      {"te_te_identity_chunked", head + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
       E::kUnsupportedTransferCoding},
      {"te_te_second_line", head + "Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n",
       E::kChunkedNotFinal},
      {"te_te_two_chunked_lines",
       head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", E::kChunkedTwice},
      {"te_te_vertical_tab",
       head + "Transfer-Encoding:\x0b"
              "chunked\r\n\r\n",
       E::kInvalidHeaderValue},
      {"te_te_form_feed", head + "Transfer-Encoding: chunked\x0c\r\n\r\n", E::kInvalidHeaderValue},
      {"te_te_nul", head + "Transfer-Encoding: chunked\0\r\n\r\n"s, E::kInvalidHeaderValue},
      {"te_te_folded", head + "Transfer-Encoding:\r\n chunked\r\n\r\n",
       E::kInvalidTransferEncoding},
      {"te_te_fold_continuation", head + "X: y\r\n Transfer-Encoding: chunked\r\n\r\n",
       E::kObsFold},
      {"te_te_bare_lf", head + "X: y\nTransfer-Encoding: chunked\r\n\r\n", E::kBareLf},
      {"te_te_bare_cr", head + "X: y\rTransfer-Encoding: chunked\r\n\r\n", E::kBareCr},
      {"te_te_name_newline", head + "Transfer-Encoding\r\n: chunked\r\n\r\n",
       E::kInvalidHeaderName},
      {"te_te_quoted", head + "Transfer-Encoding: \"chunked\"\r\n\r\n",
       E::kInvalidTransferEncoding},
      {"te_http10_with_cl",
       "POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
       E::kTransferEncodingInHttp10},
      {"cl_cl_differ", head + "Content-Length: 6\r\nContent-Length: 5\r\n\r\nhello!",
       E::kConflictingContentLength},
      {"cl_plus", head + "Content-Length: +6\r\n\r\nhello!", E::kInvalidContentLength},
      {"cl_space_inside", head + "Content-Length: 6 0\r\n\r\nhello!", E::kInvalidContentLength},
      {"cl_space_before_colon", head + "Content-Length : 6\r\n\r\nhello!", E::kSpaceBeforeColon},
      {"cl_leading_space_line", head + " Content-Length: 6\r\n\r\nhello!", E::kObsFold},
      {"cl_wraps_to_small", head + "Content-Length: 18446744073709551621\r\n\r\nhello",
       E::kInvalidContentLength},
      {"chunk_size_wraps",
       head + "Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
       E::kChunkSizeOverflow},
      {"chunk_data_lf_terminated",
       head + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\nGET / HTTP/1.1\r\n",
       E::kMissingChunkCrlf},
      {"chunk_size_semicolon_lf", head + "Transfer-Encoding: chunked\r\n\r\n3;\nabc\r\n0\r\n\r\n",
       E::kBareLf},
      {"request_line_lf_only", "GET / HTTP/1.1\nHost: h\nContent-Length: 5\n\nhello", E::kBareLf},
      {"http2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", E::kVersionNotSupported},
  };
}

void expect_rejected(const std::vector<RejectCase>& cases) {
  for (const RejectCase& c : cases) {
    for (const auto& [split_name, pieces] : all_splits(c.input.size())) {
      SCOPED_TRACE(std::string(c.name) + " / " + split_name);
      RequestParser parser(Limits{});
      const Outcome out = feed(parser, c.input, pieces);
      EXPECT_EQ(parse_error_name(out.error), parse_error_name(c.error));
      EXPECT_TRUE(out.requests.empty());
      // Failure is sticky: nothing more is consumed.
      const ParseStep again = parser.parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
      EXPECT_EQ(again.event, ParseEvent::kError);
      EXPECT_EQ(again.consumed_bytes, 0u);
    }
  }
}

TEST(RequestParserTest, RejectsInvalidRequestsInEverySplit) {
  expect_rejected(reject_cases());
}

TEST(RequestParserTest, RejectsSmugglingAttemptsInEverySplit) {
  expect_rejected(smuggling_cases());
}

TEST(RequestParserTest, UnderscoreTransferEncodingIsAnOrdinaryField) {
  // "Transfer_Encoding" is a different (valid) field name, so the request has no body and the
  // would-be chunk becomes the next request line, which fails. Documented: we do not guess.
  const std::string input =
      "POST /p HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  RequestParser parser(Limits{});
  const Outcome out = feed(parser, input, testing::whole(input.size()));
  ASSERT_EQ(out.requests.size(), 1u);
  EXPECT_EQ(out.requests[0].framing, BodyFraming::kNone);
  EXPECT_EQ(out.error, ParseError::kMalformedRequestLine);
}

TEST(RequestParserTest, PipelinedRequestsCompleteInOrder) {
  const std::string input =
      "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "POST /three HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
      "\r\n"  // a stray CRLF between requests is tolerated (RFC 9112 §2.2)
      "GET /four HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  for (const auto& [split_name, pieces] : all_splits(input.size(), 64)) {
    SCOPED_TRACE(split_name);
    RequestParser parser(Limits{});
    const Outcome out = feed(parser, input, pieces);
    ASSERT_EQ(out.error, ParseError::kNone) << parse_error_name(out.error);
    ASSERT_EQ(out.requests.size(), 4u);
    EXPECT_EQ(out.requests[0].path, "/one");
    EXPECT_EQ(out.requests[1].path, "/two");
    EXPECT_EQ(out.requests[1].body, "abc");
    EXPECT_EQ(out.requests[2].path, "/three");
    EXPECT_EQ(out.requests[2].body, "xy");
    EXPECT_EQ(out.requests[3].path, "/four");
    EXPECT_TRUE(out.requests[2].keep_alive);
    EXPECT_FALSE(out.requests[3].keep_alive);
    EXPECT_EQ(parser.completed_requests(), 4u);
    EXPECT_FALSE(parser.in_progress());
  }
}

TEST(RequestParserTest, PipelineStopsAtTheFirstBadRequest) {
  const std::string input =
      "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"
      "GET /bad HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"
      "GET /never HTTP/1.1\r\nHost: h\r\n\r\n";
  for (const auto& [split_name, pieces] : all_splits(input.size())) {
    SCOPED_TRACE(split_name);
    RequestParser parser(Limits{});
    const Outcome out = feed(parser, input, pieces);
    ASSERT_EQ(out.requests.size(), 1u);
    EXPECT_EQ(out.requests[0].path, "/ok");
    EXPECT_EQ(out.error, ParseError::kConflictingContentLength);
  }
}

TEST(RequestParserTest, HeadersAreFoundCaseInsensitively) {
  RequestParser parser(Limits{});
  const std::string input =
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
  const ParseStep step = parser.parse(input);
  ASSERT_EQ(step.event, ParseEvent::kHeadersComplete);
  const Request& r = parser.request();
  EXPECT_EQ(r.method(), Method::kGet);
  ASSERT_EQ(r.headers().size(), 4u);
  EXPECT_EQ(r.value("content-TYPE"), "text/plain");
  EXPECT_EQ(r.value("x-a"), "1");  // the first one
  EXPECT_EQ(r.find("missing"), nullptr);
  EXPECT_EQ(r.value("missing"), "");
  EXPECT_TRUE(equals_ignore_case("Keep-Alive", "kEEP-aLIVE"));
  EXPECT_FALSE(equals_ignore_case("@", "`"));  // differ only in bit 0x20, but not letters
  EXPECT_FALSE(equals_ignore_case("[", "{"));
  EXPECT_FALSE(equals_ignore_case("a", "ab"));
}

TEST(RequestParserTest, MethodsMapToTheirEnum) {
  const std::pair<const char*, Method> cases[] = {
      {"GET", Method::kGet},         {"HEAD", Method::kHead},     {"POST", Method::kPost},
      {"PUT", Method::kPut},         {"DELETE", Method::kDelete}, {"PATCH", Method::kPatch},
      {"OPTIONS", Method::kOptions}, {"TRACE", Method::kTrace},   {"get", Method::kOther},
  };
  for (const auto& [name, method] : cases) {
    RequestParser parser(Limits{});
    const std::string input = std::string(name) + " / HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(parser.parse(input).event, ParseEvent::kHeadersComplete) << name;
    EXPECT_EQ(parser.request().method(), method) << name;
  }
}

Outcome parse_with(const Limits& limits, const std::string& input) {
  RequestParser parser(limits);
  return feed(parser, input, testing::whole(input.size()));
}

TEST(RequestParserLimitsTest, RequestLineBoundary) {
  Limits limits;
  limits.max_request_line_bytes = 32;
  const std::string prefix = "GET /";
  const std::string suffix = " HTTP/1.1";
  const std::string fits = prefix + std::string(32 - prefix.size() - suffix.size(), 'a') + suffix;
  ASSERT_EQ(fits.size(), 32u);
  EXPECT_EQ(parse_with(limits, fits + "\r\nHost: h\r\n\r\n").error, ParseError::kNone);
  const std::string over = prefix + "a" + fits.substr(prefix.size());
  EXPECT_EQ(parse_with(limits, over + "\r\nHost: h\r\n\r\n").error,
            ParseError::kRequestLineTooLong);
  EXPECT_EQ(parse_error_status(ParseError::kRequestLineTooLong), 414);
}

TEST(RequestParserLimitsTest, OversizeRequestLineFailsBeforeItsEnd) {
  // A sender that never ends its line is refused once the line cannot fit any more.
  Limits limits;
  limits.max_request_line_bytes = 32;
  RequestParser parser(limits);
  const std::string endless = "GET /" + std::string(100, 'a');
  size_t fed = 0;
  ParseStep step;
  for (; fed < endless.size(); ++fed) {
    step = parser.parse(std::string_view(endless).substr(fed, 1));
    if (step.event == ParseEvent::kError) break;
  }
  EXPECT_EQ(step.event, ParseEvent::kError);
  EXPECT_EQ(parser.error(), ParseError::kRequestLineTooLong);
  EXPECT_EQ(fed, 33u);  // byte 34 (index 33) could only fit with no CRLF after it
}

TEST(RequestParserLimitsTest, HeaderBytesBoundary) {
  Limits limits;
  limits.max_header_bytes = 64;
  // "Host: h\r\n" (9) + "X: <n>\r\n" (5 + n) + "\r\n" (2) == 64 when n == 48.
  const std::string fits = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(48, 'v') + "\r\n\r\n";
  EXPECT_EQ(parse_with(limits, fits).error, ParseError::kNone);
  const std::string over = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(49, 'v') + "\r\n\r\n";
  EXPECT_EQ(parse_with(limits, over).error, ParseError::kHeadersTooLarge);
  // An endless header line fails without its LF.
  const std::string endless = "GET / HTTP/1.1\r\nX: " + std::string(1000, 'v');
  const Outcome out = parse_with(limits, endless);
  EXPECT_EQ(out.error, ParseError::kHeadersTooLarge);
  EXPECT_EQ(parse_error_status(ParseError::kHeadersTooLarge), 431);
}

TEST(RequestParserLimitsTest, HeaderCountBoundary) {
  Limits limits;
  limits.max_header_count = 4;
  std::string fits = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 3; ++i) fits += "X" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(parse_with(limits, fits + "\r\n").error, ParseError::kNone);
  EXPECT_EQ(parse_with(limits, fits + "Y: v\r\n\r\n").error, ParseError::kTooManyHeaders);
  EXPECT_EQ(parse_error_status(ParseError::kTooManyHeaders), 431);
}

TEST(RequestParserLimitsTest, BodyBoundary) {
  Limits limits;
  limits.max_body_bytes = 10;
  const std::string head(kHead);
  EXPECT_EQ(parse_with(limits, head + "Content-Length: 10\r\n\r\n0123456789").error,
            ParseError::kNone);
  // Refused from the Content-Length alone, before any body byte.
  EXPECT_EQ(parse_with(limits, head + "Content-Length: 11\r\n\r\n").error,
            ParseError::kBodyTooLarge);
  const std::string chunked = head + "Transfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(parse_with(limits, chunked + "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n").error,
            ParseError::kNone);
  EXPECT_EQ(parse_with(limits, chunked + "5\r\n01234\r\n6\r\n").error, ParseError::kBodyTooLarge);
  EXPECT_EQ(parse_error_status(ParseError::kBodyTooLarge), 413);
}

TEST(RequestParserLimitsTest, ChunkExtensionAndTrailerBoundaries) {
  Limits limits;
  limits.max_chunk_ext_bytes = 8;
  limits.max_trailer_bytes = 16;
  const std::string chunked = std::string(kHead) + "Transfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(parse_with(limits, chunked + "1;abcdefg\r\nx\r\n0\r\n\r\n").error, ParseError::kNone);
  EXPECT_EQ(parse_with(limits, chunked + "1;abcdefgh\r\nx\r\n0\r\n\r\n").error,
            ParseError::kChunkExtensionTooLong);
  // "A: 0123456789\r\n" (15) + "\r\n" (2) = 17 > 16; one fewer value byte fits.
  EXPECT_EQ(parse_with(limits, chunked + "0\r\nA: 012345678\r\n\r\n").error, ParseError::kNone);
  EXPECT_EQ(parse_with(limits, chunked + "0\r\nA: 0123456789\r\n\r\n").error,
            ParseError::kTrailersTooLarge);
}

TEST(RequestParserTest, ProgressAndReset) {
  RequestParser parser(Limits{});
  EXPECT_FALSE(parser.in_progress());
  ParseStep step = parser.parse("GET / HT");
  EXPECT_EQ(step.event, ParseEvent::kNeedMore);
  EXPECT_EQ(step.consumed_bytes, 8u);
  EXPECT_TRUE(parser.in_progress());
  step = parser.parse("TP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(step.event, ParseEvent::kHeadersComplete);
  EXPECT_FALSE(parser.in_progress());  // complete, waiting to report it
  EXPECT_EQ(parser.parse({}).event, ParseEvent::kMessageComplete);
  EXPECT_EQ(parser.parse({}).event, ParseEvent::kNeedMore);
  EXPECT_FALSE(parser.in_progress());

  EXPECT_EQ(parser.parse("BAD\r\n\r\n").event, ParseEvent::kError);
  parser.reset();
  EXPECT_EQ(parser.error(), ParseError::kNone);
  EXPECT_EQ(parser.completed_requests(), 0u);
  EXPECT_EQ(parser.parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n").event, ParseEvent::kHeadersComplete);
}

TEST(RequestParserTest, BodyFramingIsReported) {
  RequestParser parser(Limits{});
  ASSERT_EQ(parser.parse(std::string(kHead) + "Content-Length: 7\r\n\r\n").event,
            ParseEvent::kHeadersComplete);
  EXPECT_EQ(parser.request().body_framing(), BodyFraming::kContentLength);
  EXPECT_EQ(parser.request().content_length(), 7u);
  EXPECT_TRUE(parser.in_progress());  // body still to come
}

TEST(RequestParserStorageTest, IdleConnectionsShareOneHeadBuffer) {
  // Two connections take turns with one pooled buffer: each holds it only while a request
  // head is being read, and each request still parses whole across the hand-overs.
  const Limits limits;
  std::vector<char> bytes(HeadStorage::bytes_needed(limits));
  std::vector<HeaderField> fields(HeadStorage::fields_needed(limits));
  const HeadStorage pool{bytes, fields};
  RequestParser a(limits, RequestParser::NoStorage{});
  RequestParser b(limits, RequestParser::NoStorage{});
  EXPECT_FALSE(a.has_storage());
  for (int round = 0; round < 3; ++round) {
    for (RequestParser* parser : {&a, &b}) {
      parser->attach_storage(pool);
      const std::string input =
          "POST /r" + std::to_string(round) + " HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok";
      const Outcome out = feed(*parser, input, testing::random_splits(input.size(), round + 1));
      ASSERT_EQ(out.error, ParseError::kNone);
      ASSERT_EQ(out.requests.size(), 1u);
      EXPECT_EQ(out.requests[0].path, "/r" + std::to_string(round));
      EXPECT_EQ(out.requests[0].body, "ok");
      const HeadStorage back = parser->release_storage();
      EXPECT_EQ(back.bytes.data(), bytes.data());
      EXPECT_FALSE(parser->has_storage());
    }
  }
  EXPECT_EQ(a.completed_requests(), 3u);
  EXPECT_EQ(b.completed_requests(), 3u);
}

TEST(RequestParserStorageDeathTest, MisuseOfStorageIsABug) {
  const Limits limits;
  std::vector<char> small(HeadStorage::bytes_needed(limits) - 1);
  std::vector<HeaderField> fields(HeadStorage::fields_needed(limits));
  RequestParser parser(limits, RequestParser::NoStorage{});
  EXPECT_DEATH(parser.attach_storage({small, fields}), "smaller than the limits");
  EXPECT_DEATH((void)parser.parse("GET"), "without head storage");
  RequestParser owning(limits);
  ASSERT_EQ(owning.parse("GET / HT").event, ParseEvent::kNeedMore);
  EXPECT_DEATH(owning.release_storage(), "middle of a request");
}

TEST(ParseErrorTest, EveryReasonHasAUniqueNameAndAnErrorStatus) {
  std::set<std::string_view> names;
  for (size_t i = 1; i <= kParseErrorCount; ++i) {
    const auto error = static_cast<ParseError>(i);
    const std::string_view name = parse_error_name(error);
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(names.insert(name).second) << name;
    const int status = parse_error_status(error);
    EXPECT_TRUE(status == 400 || status == 413 || status == 414 || status == 417 || status == 431 ||
                status == 501 || status == 505)
        << name << " " << status;
  }
  EXPECT_EQ(parse_error_name(ParseError::kNone), "none");
  EXPECT_EQ(parse_error_status(ParseError::kNone), 0);
  EXPECT_EQ(parse_error_status(ParseError::kVersionNotSupported), 505);
  EXPECT_EQ(parse_error_status(ParseError::kUnsupportedTransferCoding), 501);
  EXPECT_EQ(parse_error_status(ParseError::kExpectationFailed), 417);
  EXPECT_EQ(parse_error_name(ParseError::kObsFold), "obs_fold");
}

}  // namespace
}  // namespace herald::http

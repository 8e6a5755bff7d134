// Tests of the HTTP/1.1 response serializer: exact bytes of status lines, headers, fixed and
// chunked bodies, refusal of header injection, the Date cache and reason phrases.
#include "controlplane/http/response_writer.h"

#include <string>

#include "controlplane/http/request_parser.h"
#include "controlplane/http/status.h"
#include "gtest/gtest.h"
#include "tests/unit/controlplane/http/parser_harness.h"

namespace herald::http {
namespace {

TEST(ResponseWriterTest, FixedLengthBody) {
  std::string out;
  ResponseWriter w(out, 200);
  w.header("Content-Type", "application/json");
  ASSERT_TRUE(w.finish("{}"));
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
}

TEST(ResponseWriterTest, AppendsAfterEarlierResponses) {
  std::string out = "HTTP/1.1 204 No Content\r\n\r\n";
  const std::string before = out;
  ResponseWriter w(out, 429);
  w.header("Retry-After", uint64_t{30});
  ASSERT_TRUE(w.finish("x"));
  EXPECT_EQ(out, before +
                     "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: "
                     "1\r\n\r\nx");
}

TEST(ResponseWriterTest, NoContentLengthOnBodylessStatuses) {
  for (int status : {204, 304}) {
    std::string out;
    ResponseWriter w(out, status);
    ASSERT_TRUE(w.finish(""));
    EXPECT_EQ(out.find("Content-Length"), std::string::npos) << status;
    EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
  }
}

TEST(ResponseWriterTest, HeadOnlyKeepsCallersContentLength) {
  std::string out;
  ResponseWriter w(out, 200);
  w.header("Content-Length", uint64_t{1234});
  ASSERT_TRUE(w.finish_head_only());
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
}

TEST(ResponseWriterTest, RefusesHeaderInjectionAndRollsBack) {
  const std::string earlier = "earlier bytes";
  const char* bad_values[] = {"a\r\nSet-Cookie: x", "a\nb", "a\rb", "a\x01", " lead", "trail\t"};
  for (const char* value : bad_values) {
    std::string out = earlier;
    ResponseWriter w(out, 200);
    w.header("X-Echo", value);
    w.header("X-After", "fine");
    EXPECT_FALSE(w.ok());
    EXPECT_FALSE(w.finish("body"));
    EXPECT_EQ(out, earlier) << value;
  }
  std::string value_with_nul = "a";
  value_with_nul.push_back('\0');
  for (const std::string& name : {std::string("Bad Name"), std::string(""), std::string("X:Y")}) {
    std::string out;
    ResponseWriter w(out, 200);
    w.header(name, "v");
    EXPECT_FALSE(w.finish_chunked()) << name;
    EXPECT_TRUE(out.empty());
  }
  std::string out;
  ResponseWriter w(out, 200);
  w.header("X", value_with_nul);
  EXPECT_FALSE(w.finish_head_only());
  EXPECT_TRUE(out.empty());
}

TEST(ResponseWriterTest, ChunkedBody) {
  std::string out;
  ResponseWriter w(out, 200);
  ASSERT_TRUE(w.finish_chunked());
  append_chunk(out, "hello");
  append_chunk(out, "");  // skipped: a zero chunk would end the body
  append_chunk(out, std::string(26, 'z'));
  append_last_chunk(out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a\r\n" +
                     std::string(26, 'z') + "\r\n0\r\n\r\n");
}

TEST(ResponseWriterTest, ChunksRoundTripThroughTheParser) {
  // The chunk writer and the chunk parser agree: a request body written with append_chunk()
  // parses back to the same bytes, in every split.
  std::string input = "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string expected;
  for (size_t n : {1u, 15u, 16u, 255u, 256u, 4097u}) {
    const std::string piece(n, static_cast<char>('a' + n % 26));
    append_chunk(input, piece);
    expected += piece;
  }
  append_last_chunk(input);
  for (const auto& [split_name, pieces] : testing::all_splits(input.size(), 4)) {
    SCOPED_TRACE(split_name);
    RequestParser parser(Limits{});
    const testing::Outcome out = testing::feed(parser, input, pieces);
    ASSERT_EQ(out.error, ParseError::kNone);
    ASSERT_EQ(out.requests.size(), 1u);
    EXPECT_EQ(out.requests[0].body, expected);
  }
}

TEST(ResponseWriterTest, ContinueAndUnknownReason) {
  std::string out;
  append_continue(out);
  EXPECT_EQ(out, "HTTP/1.1 100 Continue\r\n\r\n");
  out.clear();
  ResponseWriter w(out, 299);
  ASSERT_TRUE(w.finish(""));
  // The reason phrase may be empty, the space before it may not (RFC 9112 §4).
  EXPECT_EQ(out, "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");
}

TEST(StatusTest, ReasonPhrases) {
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(400), "Bad Request");
  EXPECT_EQ(reason_phrase(413), "Content Too Large");
  EXPECT_EQ(reason_phrase(414), "URI Too Long");
  EXPECT_EQ(reason_phrase(417), "Expectation Failed");
  EXPECT_EQ(reason_phrase(429), "Too Many Requests");
  EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reason_phrase(501), "Not Implemented");
  EXPECT_EQ(reason_phrase(505), "HTTP Version Not Supported");
  EXPECT_EQ(reason_phrase(299), "");
  // Every status the parser answers with has a phrase.
  for (size_t i = 1; i <= kParseErrorCount; ++i) {
    EXPECT_FALSE(reason_phrase(parse_error_status(static_cast<ParseError>(i))).empty());
  }
}

TEST(DateCacheTest, FormatsImfFixdateAndCachesPerSecond) {
  DateCache dates;
  // The example of RFC 9110 §5.6.7.
  EXPECT_EQ(dates.at(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(dates.format_count(), 1u);
  EXPECT_EQ(dates.at(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(dates.format_count(), 1u);
  EXPECT_EQ(dates.at(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
  EXPECT_EQ(dates.format_count(), 2u);
  EXPECT_EQ(dates.at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(dates.at(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");  // leap day
  const std::string_view now = dates.now();
  EXPECT_EQ(now.size(), DateCache::kLength);
  EXPECT_EQ(now.substr(now.size() - 4), " GMT");
}

}  // namespace
}  // namespace herald::http

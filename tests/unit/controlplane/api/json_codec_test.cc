// api::JsonCodec: schema-checked parsing of request bodies, strict JSON out, error bodies.
#include "controlplane/api/json_codec.h"

#include <gtest/gtest.h>

#include <string>

#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"

namespace herald::api {
namespace {

constexpr std::string_view kErrorBody = "herald.admin.ErrorBody";

TEST(JsonCodec, ParsesAValidBodyAndReusesTheParser) {
  JsonCodec codec(schemas::kAdminFbs, "admin.fbs");
  auto first = codec.parse<admin::ErrorBody>(kErrorBody, R"({"error": "a", "message": "m"})");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->error()->str(), "a");
  // A second body must not inherit fields of the first.
  auto second = codec.parse<admin::ErrorBody>(kErrorBody, R"({"error": "b"})");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->error()->str(), "b");
  EXPECT_EQ((*second)->message(), nullptr);
}

TEST(JsonCodec, RefusesWhatTheSchemaOrStrictJsonRefuses) {
  JsonCodec codec(schemas::kAdminFbs, "admin.fbs");
  for (std::string_view bad : {
           R"({"error": "a", "unknown": 1})",  // unknown field
           R"({error: "a"})",                  // unquoted key
           R"({"error": 5})",                  // wrong type
           R"({"error": "a",})",               // trailing comma
           R"({"error": "a")",                 // truncated
           "[]",
           "",
       }) {
    auto parsed = codec.parse_buffer(kErrorBody, bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_TRUE(absl::IsInvalidArgument(parsed.status()));
      // The parser's "line: col: error: " prefix is stripped for people.
      EXPECT_EQ(parsed.status().message().find("error: "), std::string::npos)
          << parsed.status().message();
    }
  }
  const std::string with_nul("{\"error\": \"a\0\"}", 16);
  EXPECT_FALSE(codec.parse_buffer(kErrorBody, with_nul).ok());
  EXPECT_FALSE(codec.parse_buffer(kErrorBody, std::string(kMaxJsonBodyBytes + 1, ' ')).ok());
  // After errors, a good body still parses.
  EXPECT_TRUE(codec.parse_buffer(kErrorBody, R"({"error": "ok"})").ok());
}

TEST(JsonCodec, GeneratesStrictJsonOnOneLine) {
  JsonCodec codec(schemas::kAdminFbs, "admin.fbs");
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(admin::CreateErrorBodyDirect(fbb, "not_found", "no \"such\" thing"));
  const std::string json = codec.to_json(kErrorBody, fbb);
  EXPECT_EQ(json.find('\n'), std::string::npos) << json;
  EXPECT_NE(json.find(R"("error": "not_found")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"(no \"such\" thing)"), std::string::npos) << json;
}

TEST(JsonCodec, ErrorJsonEscapes) {
  EXPECT_EQ(error_json("e", "m"), R"({"error":"e","message":"m"})");
  EXPECT_EQ(error_json("e", "m", "limits.x"), R"({"error":"e","message":"m","field":"limits.x"})");
  EXPECT_EQ(error_json("e", std::string("a\"b\\c\n\x01", 7)),
            R"({"error":"e","message":"a\"b\\c\n\u0001"})");
}

}  // namespace
}  // namespace herald::api

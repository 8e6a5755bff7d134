// JSON bodies of the HTTP APIs through FlatBuffers: a request body is parsed against a table of
// an embedded schema (schemas/admin.fbs, public_api.fbs, config_api.fbs), so unknown fields,
// wrong types and out-of-range numbers are refused by the schema itself, and responses are
// generated from the same tables as strict JSON.
//
//   JsonCodec codec(schemas::kPublicApiFbs, "public_api.fbs");
//   absl::StatusOr<const public_api::CodeRequest*> req =
//       codec.parse<public_api::CodeRequest>("herald.public_api.CodeRequest", body);
//   std::string json = codec.to_json("herald.public_api.CodeResponse", builder);
//
// One codec per schema per thread: parse() reuses the codec's parser, and what it returns
// points into that parser's buffer, valid until the next parse().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/idl.h"

namespace herald::api {

// Largest body the codec parses; the HTTP limits usually refuse larger ones earlier.
inline constexpr size_t kMaxJsonBodyBytes = 1 << 20;

class JsonCodec {
 public:
  // `schema` must parse (embedded schemas are checked by tests): a failure is a build defect
  // and aborts.
  JsonCodec(std::string_view schema, std::string_view schema_name);
  JsonCodec(const JsonCodec&) = delete;
  JsonCodec& operator=(const JsonCodec&) = delete;

  // Parses `json` as the table `root_type` (fully qualified, e.g. "herald.admin.ErrorBody") and
  // returns the root, valid until the next parse(). InvalidArgument with a message for people
  // ("unknown field: x", "expecting: string constant") for anything the schema refuses, an
  // empty body, a NUL byte or a body over kMaxJsonBodyBytes.
  absl::StatusOr<const uint8_t*> parse_buffer(std::string_view root_type, std::string_view json);
  template <typename T>
  absl::StatusOr<const T*> parse(std::string_view root_type, std::string_view json) {
    absl::StatusOr<const uint8_t*> buffer = parse_buffer(root_type, json);
    if (!buffer.ok()) return buffer.status();
    return flatbuffers::GetRoot<T>(*buffer);
  }

  // Strict JSON (quoted keys, no trailing commas) of a finished buffer holding `root_type`,
  // scalars at their default included, enums by name, on one line.
  std::string to_json(std::string_view root_type, const uint8_t* buffer);
  std::string to_json(std::string_view root_type, const flatbuffers::FlatBufferBuilder& builder) {
    return to_json(root_type, builder.GetBufferPointer());
  }

 private:
  flatbuffers::Parser parser_;
  std::string current_root_;
};

// {"error": "...", "message": "..."} (plus "field" when not empty), the body of every non-2xx
// response of both APIs (admin.fbs ErrorBody). Escapes as JSON requires.
std::string error_json(std::string_view error, std::string_view message,
                       std::string_view field = {});

// Appends `text` to `out` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view text);

}  // namespace herald::api

// JSON bodies through FlatBuffers' parser and generator (json_codec.h).
#include "controlplane/api/json_codec.h"

#include <string>

#include "platform/assert/assert.h"

namespace herald::api {
namespace {

flatbuffers::IDLOptions codec_options() {
  flatbuffers::IDLOptions options;
  options.strict_json = true;
  options.skip_unexpected_fields_in_json = false;
  options.output_default_scalars_in_json = true;
  options.output_enum_identifiers = true;
  options.indent_step = -1;  // one line
  return options;
}

// The parser's messages start with "<line>: <column>: error: "; people need only the rest.
std::string clean_error(const std::string& error) {
  const std::string_view marker = "error: ";
  const size_t at = error.find(marker);
  std::string text = at == std::string::npos ? error : error.substr(at + marker.size());
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

JsonCodec::JsonCodec(std::string_view schema, std::string_view schema_name)
    : parser_(codec_options()) {
  const std::string text(schema);
  const std::string name(schema_name);
  HERALD_CHECK(parser_.Parse(text.c_str(), nullptr, name.c_str()),
               "embedded API schema does not parse");
}

absl::StatusOr<const uint8_t*> JsonCodec::parse_buffer(std::string_view root_type,
                                                       std::string_view json) {
  if (json.empty()) return absl::InvalidArgumentError("the request needs a JSON body");
  if (json.size() > kMaxJsonBodyBytes) return absl::InvalidArgumentError("body too large");
  // The parser wants a terminated string: an embedded NUL would hide what follows it.
  if (json.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("body contains a NUL byte");
  }
  if (current_root_ != root_type) {
    const std::string root(root_type);
    HERALD_CHECK(parser_.SetRootType(root.c_str()), "unknown root type for a JSON body");
    current_root_ = root;
  }
  const std::string text(json);
  if (!parser_.ParseJson(text.c_str())) {
    return absl::InvalidArgumentError(clean_error(parser_.error_));
  }
  return parser_.builder_.GetBufferPointer();
}

std::string JsonCodec::to_json(std::string_view root_type, const uint8_t* buffer) {
  if (current_root_ != root_type) {
    const std::string root(root_type);
    HERALD_CHECK(parser_.SetRootType(root.c_str()), "unknown root type for a JSON body");
    current_root_ = root;
  }
  std::string json;
  // Generation fails only for a buffer that does not match the schema: our own defect.
  HERALD_CHECK(flatbuffers::GenerateText(parser_, buffer, &json),
               "response buffer does not match its schema");
  return json;
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += "\\u00";
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0xf]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string error_json(std::string_view error, std::string_view message, std::string_view field) {
  std::string out = "{\"error\":";
  append_json_string(out, error);
  out += ",\"message\":";
  append_json_string(out, message);
  if (!field.empty()) {
    out += ",\"field\":";
    append_json_string(out, field);
  }
  out += "}";
  return out;
}

}  // namespace herald::api

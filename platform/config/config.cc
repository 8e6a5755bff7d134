// Loads the node config: JSON -> flatbuffers::Parser (schemas/config.fbs, embedded) ->
// schema-driven normalisation and range checks -> an owned, verified buffer.
#include "platform/config/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "flatbuffers/idl.h"
#include "platform/config/normalize.h"
#include "schemas/config_fbs.h"

namespace herald::config {

absl::StatusOr<Config> make_config(std::vector<uint8_t> buffer);

namespace {

// Strict JSON in, strict JSON out; an unknown field is an error, not something to skip (a typo
// in a limit must not silently leave the default in place).
flatbuffers::IDLOptions parser_options() {
  flatbuffers::IDLOptions options;
  options.strict_json = true;
  options.skip_unexpected_fields_in_json = false;
  options.output_default_scalars_in_json = true;
  options.output_enum_identifiers = true;
  options.indent_step = 2;
  return options;
}

// A parser holding config.fbs. The embedded schema is known good (the unit tests parse it), so
// a failure here is a build defect, reported as an internal error.
absl::Status parse_schema(flatbuffers::Parser& parser) {
  const std::string schema(herald::schemas::kConfigFbs);
  if (!parser.Parse(schema.c_str(), nullptr, "config.fbs")) {
    return absl::InternalError(absl::StrCat("config schema: ", parser.error_));
  }
  if (parser.root_struct_def_ == nullptr) {
    return absl::InternalError("config schema: no root_type");
  }
  return absl::OkStatus();
}

// Rules that involve two fields, which the per-field attributes cannot say.
absl::Status check_cross_field(const Config& config) {
  const Dataplane& dp = config.dataplane();
  if (dp.cores()->size() != 0 && dp.cores()->size() != dp.workers()) {
    return absl::InvalidArgumentError(absl::StrCat("dataplane.cores lists ", dp.cores()->size(),
                                                   " cores for ", dp.workers(),
                                                   " workers; list one core per worker, or none"));
  }
  const Limits& limits = config.limits();
  // A Message frame carries the body plus its own fields (ids, recipient): leave room for them.
  constexpr uint32_t kFrameOverheadBytes = 512;
  if (limits.max_body_bytes() > limits.max_frame_bytes() - kFrameOverheadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("limits.max_body_bytes = ", limits.max_body_bytes(),
                     " leaves no room for the frame around it: at most limits.max_frame_bytes - ",
                     kFrameOverheadBytes, " = ", limits.max_frame_bytes() - kFrameOverheadBytes));
  }
  return absl::OkStatus();
}

// Builds the normalised buffer from a parsed one (or from nothing: the defaults).
absl::StatusOr<Config> normalize(const flatbuffers::Parser& parser, const uint8_t* parsed) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.ForceDefaults(true);
  const flatbuffers::Table* root =
      parsed != nullptr ? flatbuffers::GetRoot<flatbuffers::Table>(parsed) : nullptr;
  absl::StatusOr<flatbuffers::uoffset_t> offset =
      internal::normalize_table(fbb, *parser.root_struct_def_, root, "");
  if (!offset.ok()) return offset.status();
  fbb.Finish(flatbuffers::Offset<NodeConfig>(*offset), NodeConfigIdentifier());
  return make_config(
      std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()));
}

// FlatBuffers' parser errors carry "<name>:<line>: <column>: error: ..." but, for a bad value,
// not the field. Find the last "key": before that position, so the message can name it.
std::string field_near_error(const std::string& text, const std::string& error) {
  // The source name may itself contain ':', so parse backwards from the ": error:" tag:
  // "...:<line>: <column>: error:".
  const size_t tag = error.find(": error:");
  if (tag == std::string::npos) return "";
  const size_t col_start = error.rfind(' ', tag);
  if (col_start == std::string::npos || col_start == 0) return "";
  const size_t line_end = error.rfind(':', col_start);
  if (line_end == std::string::npos || line_end == 0) return "";
  const size_t line_start = error.rfind(':', line_end - 1);
  if (line_start == std::string::npos) return "";
  int line = 0, column = 0;
  if (!absl::SimpleAtoi(error.substr(line_start + 1, line_end - line_start - 1), &line) ||
      !absl::SimpleAtoi(error.substr(col_start + 1, tag - col_start - 1), &column)) {
    return "";
  }
  size_t offset = 0;
  for (int l = 1; l < line && offset != std::string::npos; ++l) {
    offset = text.find('\n', offset);
    if (offset != std::string::npos) ++offset;
  }
  if (offset == std::string::npos) return "";
  offset = std::min(text.size(), offset + static_cast<size_t>(std::max(column, 0)));
  // Walk back to a ':' outside the value, then take the quoted key before it.
  const size_t colon = text.rfind(':', offset == 0 ? 0 : offset - 1);
  if (colon == std::string::npos) return "";
  const size_t key_end = text.rfind('"', colon);
  if (key_end == std::string::npos || key_end == 0) return "";
  const size_t key_start = text.rfind('"', key_end - 1);
  if (key_start == std::string::npos) return "";
  return text.substr(key_start + 1, key_end - key_start - 1);
}

absl::StatusOr<std::string> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("config: cannot open ", path));
  std::string text;
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(error, absl::StrCat("config: cannot read ", path));
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > kMaxConfigBytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("config: ", path, " is larger than ", kMaxConfigBytes, " bytes"));
    }
    text.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

}  // namespace

// Verifies the buffer (it may come from disk) and the rules the attributes cannot express.
absl::StatusOr<Config> make_config(std::vector<uint8_t> buffer) {
  flatbuffers::Verifier verifier(buffer.data(), buffer.size());
  if (!VerifyNodeConfigBuffer(verifier)) {
    return absl::InternalError("config: the normalised buffer does not verify");
  }
  Config config(std::move(buffer));
  if (absl::Status status = check_cross_field(config); !status.ok()) return status;
  return config;
}

std::unique_ptr<NodeConfigT> Config::unpack() const {
  return std::unique_ptr<NodeConfigT>(root().UnPack());
}

absl::StatusOr<Config> load_config_from_string(std::string_view json,
                                               std::string_view source_name) {
  const std::string name = source_name.empty() ? std::string("config") : std::string(source_name);
  if (json.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: ", name, " is larger than ", kMaxConfigBytes, " bytes"));
  }
  // The parser wants a terminated string; an embedded NUL would end the text early and hide
  // what follows, so refuse it.
  if (json.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", name, " contains a NUL byte"));
  }
  flatbuffers::Parser parser(parser_options());
  if (absl::Status status = parse_schema(parser); !status.ok()) return status;
  const std::string text(json);
  if (!parser.ParseJson(text.c_str(), name.c_str())) {
    const std::string field = field_near_error(text, parser.error_);
    if (field.empty() || parser.error_.find(field) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("config: ", parser.error_));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("config: ", parser.error_, " (near field \"", field, "\")"));
  }
  absl::StatusOr<Config> config = normalize(parser, parser.builder_.GetBufferPointer());
  if (!config.ok() && absl::IsInvalidArgument(config.status())) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: ", name, ": ", config.status().message()));
  }
  return config;
}

absl::StatusOr<Config> load_config(const std::string& path) {
  absl::StatusOr<std::string> text = read_file(path);
  if (!text.ok()) return text.status();
  return load_config_from_string(*text, path);
}

const Config& default_config() {
  // The defaults are part of the build: failing to build them is a defect every test catches,
  // so there is no error to return.
  static const Config* const config = [] {
    absl::StatusOr<Config> loaded = load_config_from_string("{}", "defaults");
    if (!loaded.ok()) std::abort();
    return new Config(*std::move(loaded));
  }();
  return *config;
}

absl::StatusOr<std::string> config_to_json(const Config& config) {
  flatbuffers::Parser parser(parser_options());
  if (absl::Status status = parse_schema(parser); !status.ok()) return status;
  std::string json;
  if (!flatbuffers::GenerateText(parser, config.bytes().data(), &json)) {
    return absl::InternalError("config: cannot render as JSON (a string is not UTF-8)");
  }
  return json;
}

absl::StatusOr<Config> config_from_buffer(std::span<const uint8_t> buffer) {
  if (buffer.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError("config: buffer too large");
  }
  // Copy first: the caller's bytes may not be aligned.
  const std::vector<uint8_t> copy(buffer.begin(), buffer.end());
  flatbuffers::Verifier verifier(copy.data(), copy.size());
  if (!VerifyNodeConfigBuffer(verifier)) {
    return absl::InvalidArgumentError("config: buffer is not a valid NodeConfig");
  }
  flatbuffers::Parser parser(parser_options());
  if (absl::Status status = parse_schema(parser); !status.ok()) return status;
  absl::StatusOr<Config> config = normalize(parser, copy.data());
  if (!config.ok() && absl::IsInvalidArgument(config.status())) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", config.status().message()));
  }
  return config;
}

}  // namespace herald::config

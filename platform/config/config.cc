// Loads the node config: JSON -> flatbuffers::Parser (schemas/config.fbs, embedded) ->
// schema-driven normalisation and range checks -> an owned, verified buffer.
#include "platform/config/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "flatbuffers/idl.h"
#include "platform/config/normalize.h"
#include "platform/log/log.h"
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

bool is_hex(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

// "0000:01:00.0" or "01:00.0": a PCI address as DPDK's -a takes it.
bool is_pci_address(std::string_view s) {
  if (s.size() == 12) {
    if (s[4] != ':') return false;
    for (size_t i = 0; i < 4; ++i) {
      if (!is_hex(s[i])) return false;
    }
    s.remove_prefix(5);
  }
  return s.size() == 7 && is_hex(s[0]) && is_hex(s[1]) && s[2] == ':' && is_hex(s[3]) &&
         is_hex(s[4]) && s[5] == '.' && s[6] >= '0' && s[6] <= '7';
}

// A virtual device as DPDK's --vdev takes it: "net_<driver><n>" (lower case, digits last) and
// optional ",key=value" arguments without spaces. Empty when good, else why not.
std::string vdev_problem(std::string_view s) {
  const size_t comma = s.find(',');
  const std::string_view name = s.substr(0, comma);
  if (name.size() < 5 || name.substr(0, 4) != "net_") return "a vdev name starts with \"net_\"";
  size_t digits = name.size();
  while (digits > 4 && std::isdigit(static_cast<unsigned char>(name[digits - 1])) != 0) --digits;
  if (digits == name.size() || digits == 4) {
    return "a vdev name is a driver and an instance number (\"net_null0\")";
  }
  for (size_t i = 4; i < digits; ++i) {
    if (!std::islower(static_cast<unsigned char>(name[i])) && name[i] != '_') {
      return "a vdev driver name is lower-case letters and '_'";
    }
  }
  if (comma == std::string_view::npos) return "";
  std::string_view args = s.substr(comma + 1);
  while (true) {
    const size_t next = args.find(',');
    const std::string_view arg = args.substr(0, next);
    const size_t eq = arg.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == arg.size()) {
      return "vdev arguments are key=value pairs separated by ','";
    }
    for (char c : arg) {
      if (std::isspace(static_cast<unsigned char>(c)) != 0 || c == '"' || c == '\'') {
        return "vdev arguments hold no spaces or quotes";
      }
    }
    if (next == std::string_view::npos) return "";
    args.remove_prefix(next + 1);
  }
}

// dataplane.dpdk: what the EAL and the port layer would refuse later, said here with the field.
absl::Status check_dpdk(const Dataplane& dp) {
  const Dpdk& dpdk = *dp.dpdk();
  const auto& ports = *dpdk.ports();
  std::vector<std::string_view> names;
  for (flatbuffers::uoffset_t i = 0; i < ports.size(); ++i) {
    const std::string_view port = ports.Get(i)->string_view();
    const std::string path = absl::StrCat("dataplane.dpdk.ports[", i, "]");
    if (!is_pci_address(port)) {
      if (std::string problem = vdev_problem(port); !problem.empty()) {
        return internal::field_error(
            path,
            absl::StrCat(path, " = \"", std::string(port),
                         "\" is neither a PCI address (\"0000:01:00.0\") nor a vdev: ", problem));
      }
    }
    const std::string_view name = port.substr(0, port.find(','));
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      return internal::field_error(
          path, absl::StrCat(path, " names device \"", std::string(name), "\" a second time"));
    }
    names.push_back(name);
  }
  const std::string_view prefix = dpdk.file_prefix()->string_view();
  const bool prefix_ok =
      !prefix.empty() && prefix.size() <= 32 &&
      std::all_of(prefix.begin(), prefix.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
      });
  if (!prefix_ok) {
    return internal::field_error("dataplane.dpdk.file_prefix",
                                 "dataplane.dpdk.file_prefix is 1 to 32 of [A-Za-z0-9_-] (it "
                                 "names files under /var/run/dpdk)");
  }
  const auto& lcores = *dpdk.lcores();
  for (flatbuffers::uoffset_t i = 0; i < lcores.size(); ++i) {
    for (flatbuffers::uoffset_t j = 0; j < i; ++j) {
      if (lcores.Get(i) == lcores.Get(j)) {
        return internal::field_error(
            absl::StrCat("dataplane.dpdk.lcores[", i, "]"),
            absl::StrCat("dataplane.dpdk.lcores lists lcore ", lcores.Get(i), " twice"));
      }
    }
  }
  if (lcores.size() != 0 && lcores.size() < uint32_t{dpdk.rx_queues()} + 1) {
    return internal::field_error(
        "dataplane.dpdk.lcores",
        absl::StrCat("dataplane.dpdk.lcores lists ", lcores.size(), " lcores for ",
                     dpdk.rx_queues(),
                     " rx queues: the main lcore plus one port loop per rx queue, or none"));
  }
  if (dpdk.tx_queues() < dpdk.rx_queues()) {
    return internal::field_error("dataplane.dpdk.tx_queues",
                                 absl::StrCat("dataplane.dpdk.tx_queues = ", dpdk.tx_queues(),
                                              " is below rx_queues = ", dpdk.rx_queues(),
                                              ": each port loop needs its own tx queue"));
  }
  // The user-space stack is IPv4 only for now (dataplane/net/README.md).
  for (const auto& [field, value] : {std::pair{"dataplane.dpdk.address", dpdk.address()},
                                     std::pair{"dataplane.dpdk.gateway", dpdk.gateway()}}) {
    in_addr v4{};
    if (inet_pton(AF_INET, value->c_str(), &v4) != 1) {
      return internal::field_error(field, absl::StrCat(field, " = \"", value->str(),
                                                       "\" is not an IPv4 address (the "
                                                       "DPDK stack has no IPv6 yet)"));
    }
  }
  const uint32_t ring_min = std::min(dpdk.rx_descriptors(), dpdk.tx_descriptors());
  if (dpdk.burst_size() > ring_min) {
    return internal::field_error(
        "dataplane.dpdk.burst_size",
        absl::StrCat("dataplane.dpdk.burst_size = ", dpdk.burst_size(),
                     " is larger than a queue (rx_descriptors, tx_descriptors): at most ",
                     ring_min));
  }
  return absl::OkStatus();
}

// Rules that involve two fields, which the per-field attributes cannot say. Each error names the
// field an operator would change.
absl::Status check_cross_field(const Config& config) {
  const Dataplane& dp = config.dataplane();
  if (dp.cores()->size() != 0 && dp.cores()->size() != dp.workers()) {
    return internal::field_error(
        "dataplane.cores",
        absl::StrCat("dataplane.cores lists ", dp.cores()->size(), " cores for ", dp.workers(),
                     " workers; list one core per worker, or none"));
  }
  if (absl::Status status = check_dpdk(dp); !status.ok()) return status;
  const Limits& limits = config.limits();
  // A Message frame carries the body plus its own fields (ids, recipient): leave room for them.
  constexpr uint32_t kFrameOverheadBytes = 512;
  if (limits.max_body_bytes() > limits.max_frame_bytes() - kFrameOverheadBytes) {
    return internal::field_error(
        "limits.max_body_bytes",
        absl::StrCat("limits.max_body_bytes = ", limits.max_body_bytes(),
                     " leaves no room for the frame around it: at most limits.max_frame_bytes - ",
                     kFrameOverheadBytes, " = ", limits.max_frame_bytes() - kFrameOverheadBytes));
  }
  // key_ring.h: the ring holds the current, the staged and up to 6 retired keys, and a retired
  // key must keep verifying for token_ttl + skew (30 s); so 6 rotations must span that time.
  const SessionTokens& tokens = config.session_tokens();
  constexpr uint64_t kRetiredKeys = 6;
  constexpr uint64_t kClockSkewS = 30;
  if (uint64_t{tokens.key_rotation_s()} * kRetiredKeys <
      uint64_t{tokens.token_ttl_s()} + kClockSkewS) {
    return internal::field_error(
        "session_tokens.key_rotation_s",
        absl::StrCat(
            "session_tokens.key_rotation_s = ", tokens.key_rotation_s(),
            " retires signing keys before the tokens they signed expire: at least "
            "(session_tokens.token_ttl_s + 30) / 6 = ",
            (uint64_t{tokens.token_ttl_s()} + kClockSkewS + kRetiredKeys - 1) / kRetiredKeys));
  }
  const CodeGateway& gateway = config.code_gateway();
  if (gateway.kind() == CodeGatewayKind::webhook && gateway.webhook_url()->size() == 0) {
    return internal::field_error("code_gateway.webhook_url",
                                 "code_gateway.webhook_url is required when code_gateway.kind is "
                                 "\"webhook\"");
  }
  const Tls& tls = config.tls();
  if ((tls.public_cert_path()->size() == 0) != (tls.public_key_path()->size() == 0)) {
    const bool cert_missing = tls.public_cert_path()->size() == 0;
    return internal::field_error(
        cert_missing ? "tls.public_cert_path" : "tls.public_key_path",
        "tls.public_cert_path and tls.public_key_path go together: set both, or neither (a "
        "self-signed pair is generated)");
  }
  return absl::OkStatus();
}

// `status` with `prefix` before its message, keeping the field payload.
absl::Status prefixed(const absl::Status& status, const std::string& prefix) {
  absl::Status out(status.code(), absl::StrCat(prefix, status.message()));
  if (auto field = status.GetPayload(internal::kFieldPayloadUrl)) {
    out.SetPayload(internal::kFieldPayloadUrl, *field);
  }
  return out;
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
// not the field. The byte offset in `text` the error points at, or npos.
size_t error_offset(const std::string& text, const std::string& error) {
  // The source name may itself contain ':', so parse backwards from the ": error:" tag:
  // "...:<line>: <column>: error:".
  const size_t tag = error.find(": error:");
  if (tag == std::string::npos) return std::string::npos;
  const size_t col_start = error.rfind(' ', tag);
  if (col_start == std::string::npos || col_start == 0) return std::string::npos;
  const size_t line_end = error.rfind(':', col_start);
  if (line_end == std::string::npos || line_end == 0) return std::string::npos;
  const size_t line_start = error.rfind(':', line_end - 1);
  if (line_start == std::string::npos) return std::string::npos;
  int line = 0, column = 0;
  if (!absl::SimpleAtoi(error.substr(line_start + 1, line_end - line_start - 1), &line) ||
      !absl::SimpleAtoi(error.substr(col_start + 1, tag - col_start - 1), &column)) {
    return std::string::npos;
  }
  size_t offset = 0;
  for (int l = 1; l < line && offset != std::string::npos; ++l) {
    offset = text.find('\n', offset);
    if (offset != std::string::npos) ++offset;
  }
  if (offset == std::string::npos) return std::string::npos;
  return std::min(text.size(), offset + static_cast<size_t>(std::max(column, 0)));
}

// The last "key": before `offset`, so the message can name it.
std::string field_near_error(const std::string& text, size_t offset) {
  if (offset == std::string::npos) return "";
  // Walk back to a ':' outside the value, then take the quoted key before it.
  const size_t colon = text.rfind(':', offset == 0 ? 0 : offset - 1);
  if (colon == std::string::npos) return "";
  const size_t key_end = text.rfind('"', colon);
  if (key_end == std::string::npos || key_end == 0) return "";
  const size_t key_start = text.rfind('"', key_end - 1);
  if (key_start == std::string::npos) return "";
  return text.substr(key_start + 1, key_end - key_start - 1);
}

// The dotted path of the last object key before byte `offset` of JSON `text` ("limits.x"): a
// forgiving scan (the text may be malformed after the error). The parser reports an error after
// the token it read ahead, which may close the table, so the last key, not the innermost open
// object, is what the error is about.
std::string json_path_at(const std::string& text, size_t offset) {
  if (offset == std::string::npos) return "";
  struct Frame {
    bool object;
    std::string key;
  };
  std::vector<Frame> stack;
  std::string last_path;
  bool expecting_key = false;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      std::string str;
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        str += text[i];
      }
      // A string just after '{' or ',' in an object is a key.
      if (expecting_key && !stack.empty() && stack.back().object) {
        stack.back().key = str;
        last_path.clear();
        for (const Frame& frame : stack) {
          if (!frame.object || frame.key.empty()) continue;
          if (!last_path.empty()) last_path += '.';
          last_path += frame.key;
        }
      }
      expecting_key = false;
      continue;
    }
    switch (c) {
      case '{':
        stack.push_back({true, ""});
        expecting_key = true;
        break;
      case '[':
        stack.push_back({false, ""});
        expecting_key = false;
        break;
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        expecting_key = false;
        break;
      case ',': expecting_key = !stack.empty() && stack.back().object; break;
      default: break;
    }
  }
  return last_path;
}

// Where the parser's error is about. An out-of-range number is reported once its table is
// complete, after later fields; when the message quotes the number ("invalid number: \"70000\""),
// the last occurrence of that literal before the error position is the field.
size_t error_subject(const std::string& text, const std::string& error, size_t offset) {
  if (offset == std::string::npos) return offset;
  static constexpr std::string_view kInvalidNumber = "invalid number: \"";
  const size_t at = error.find(kInvalidNumber);
  if (at == std::string::npos) return offset;
  const size_t start = at + kInvalidNumber.size();
  const size_t end = error.find('"', start);
  if (end == std::string::npos || end == start) return offset;
  const std::string literal = error.substr(start, end - start);
  size_t found = text.rfind(literal, offset);
  while (found != std::string::npos) {
    // A whole value token: after ':', '[' or ',' and before ',', ']' or '}' (whitespace aside),
    // so not part of a longer number or of a string.
    const auto is_before = [](char c) {
      return std::string_view(" \t\r\n:[,").find(c) != std::string_view::npos;
    };
    const auto is_after = [](char c) {
      return std::string_view(" \t\r\n,]}").find(c) != std::string_view::npos;
    };
    const bool head = found != 0 && is_before(text[found - 1]);
    const bool tail =
        found + literal.size() < text.size() && is_after(text[found + literal.size()]);
    if (head && tail) return found;
    if (found == 0) break;
    found = text.rfind(literal, found - 1);
  }
  return offset;
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
    const size_t offset = error_offset(text, parser.error_);
    const std::string field = field_near_error(text, offset);
    const std::string path = json_path_at(text, error_subject(text, parser.error_, offset));
    std::string message = absl::StrCat("config: ", parser.error_);
    if (!field.empty() && parser.error_.find(field) == std::string::npos) {
      absl::StrAppend(&message, " (near field \"", field, "\")");
    }
    return path.empty() ? absl::InvalidArgumentError(message)
                        : internal::field_error(path, message);
  }
  absl::StatusOr<Config> config = normalize(parser, parser.builder_.GetBufferPointer());
  if (!config.ok() && absl::IsInvalidArgument(config.status())) {
    return prefixed(config.status(), absl::StrCat("config: ", name, ": "));
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
    return prefixed(config.status(), "config: ");
  }
  return config;
}

std::string error_field(const absl::Status& status) {
  auto field = status.GetPayload(internal::kFieldPayloadUrl);
  return field ? std::string(*field) : std::string();
}

namespace {

// Walks table `def` of two normalised buffers (every field present: ForceDefaults) and reports
// each field whose value differs, with whether herald_restart covers it.
void diff_table(const flatbuffers::StructDef& def, const flatbuffers::Table* a,
                const flatbuffers::Table* b, const std::string& path, bool restart,
                const std::function<void(const std::string&, bool)>& report) {
  using flatbuffers::BaseType;
  for (const flatbuffers::FieldDef* field : def.fields.vec) {
    if (field->deprecated) continue;
    const std::string name = path.empty() ? field->name : absl::StrCat(path, ".", field->name);
    const bool field_restart = restart || field->attributes.Lookup("herald_restart") != nullptr;
    const flatbuffers::voffset_t offset = field->value.offset;
    const flatbuffers::Type& type = field->value.type;
    bool differs = false;
    switch (type.base_type) {
      case BaseType::BASE_TYPE_STRUCT: {
        const auto* sub_a =
            a != nullptr ? a->GetPointer<const flatbuffers::Table*>(offset) : nullptr;
        const auto* sub_b =
            b != nullptr ? b->GetPointer<const flatbuffers::Table*>(offset) : nullptr;
        diff_table(*type.struct_def, sub_a, sub_b, name, field_restart, report);
        continue;
      }
      case BaseType::BASE_TYPE_STRING: {
        const auto* sa = a != nullptr ? a->GetPointer<const flatbuffers::String*>(offset) : nullptr;
        const auto* sb = b != nullptr ? b->GetPointer<const flatbuffers::String*>(offset) : nullptr;
        differs = (sa != nullptr ? sa->string_view() : std::string_view()) !=
                  (sb != nullptr ? sb->string_view() : std::string_view());
        break;
      }
      case BaseType::BASE_TYPE_VECTOR: {
        using Strings = flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>;
        if (type.VectorType().base_type == BaseType::BASE_TYPE_STRING) {
          const auto* va = a != nullptr ? a->GetPointer<const Strings*>(offset) : nullptr;
          const auto* vb = b != nullptr ? b->GetPointer<const Strings*>(offset) : nullptr;
          const size_t na = va != nullptr ? va->size() : 0, nb = vb != nullptr ? vb->size() : 0;
          differs = na != nb;
          for (size_t i = 0; !differs && i < na; ++i) {
            differs = va->Get(static_cast<flatbuffers::uoffset_t>(i))->string_view() !=
                      vb->Get(static_cast<flatbuffers::uoffset_t>(i))->string_view();
          }
        } else {
          const size_t element = flatbuffers::SizeOf(type.VectorType().base_type);
          const auto* va =
              a != nullptr ? a->GetPointer<const flatbuffers::Vector<uint8_t>*>(offset) : nullptr;
          const auto* vb =
              b != nullptr ? b->GetPointer<const flatbuffers::Vector<uint8_t>*>(offset) : nullptr;
          const size_t na = va != nullptr ? va->size() * element : 0;
          const size_t nb = vb != nullptr ? vb->size() * element : 0;
          differs = na != nb || (na != 0 && std::memcmp(va->Data(), vb->Data(), na) != 0);
        }
        break;
      }
      default: {
        // A scalar: both buffers hold it explicitly, so the bytes compare.
        const size_t size = flatbuffers::SizeOf(type.base_type);
        const uint8_t* pa = a != nullptr ? a->GetAddressOf(offset) : nullptr;
        const uint8_t* pb = b != nullptr ? b->GetAddressOf(offset) : nullptr;
        differs =
            (pa == nullptr) != (pb == nullptr) || (pa != nullptr && std::memcmp(pa, pb, size) != 0);
        break;
      }
    }
    if (differs) report(name, field_restart);
  }
}

void diff_configs(const Config& from, const Config& to,
                  const std::function<void(const std::string&, bool)>& report) {
  flatbuffers::Parser parser(parser_options());
  // The embedded schema always parses (default_config() proved it), so no error to return.
  if (!parse_schema(parser).ok()) return;
  diff_table(*parser.root_struct_def_,
             flatbuffers::GetRoot<flatbuffers::Table>(from.bytes().data()),
             flatbuffers::GetRoot<flatbuffers::Table>(to.bytes().data()), "", false, report);
}

void list_restart_fields(const flatbuffers::StructDef& def, const std::string& path, bool restart,
                         std::vector<std::string>& out) {
  for (const flatbuffers::FieldDef* field : def.fields.vec) {
    if (field->deprecated) continue;
    const std::string name = path.empty() ? field->name : absl::StrCat(path, ".", field->name);
    const bool field_restart = restart || field->attributes.Lookup("herald_restart") != nullptr;
    if (field->value.type.base_type == flatbuffers::BaseType::BASE_TYPE_STRUCT) {
      list_restart_fields(*field->value.type.struct_def, name, field_restart, out);
    } else if (field_restart) {
      out.push_back(name);
    }
  }
}

}  // namespace

std::vector<std::string> changed_fields(const Config& from, const Config& to) {
  std::vector<std::string> out;
  diff_configs(from, to, [&](const std::string& path, bool) { out.push_back(path); });
  return out;
}

std::vector<std::string> restart_required_changes(const Config& from, const Config& to) {
  std::vector<std::string> out;
  diff_configs(from, to, [&](const std::string& path, bool restart) {
    if (restart) out.push_back(path);
  });
  return out;
}

const std::vector<std::string>& restart_required_fields() {
  static const std::vector<std::string>* const fields = [] {
    auto* out = new std::vector<std::string>();
    flatbuffers::Parser parser(parser_options());
    if (parse_schema(parser).ok()) list_restart_fields(*parser.root_struct_def_, "", false, *out);
    return out;
  }();
  return *fields;
}

}  // namespace herald::config

// The node config: JSON checked against schemas/config.fbs (embedded at build time), every
// default filled in and every range enforced from the schema's herald_* attributes.
// Control-plane code (start-up, admin API): allocates and returns absl::Status.
//
//   absl::StatusOr<config::Config> cfg = config::load_config("/etc/herald/node.json");
//   if (!cfg.ok()) { HLOG_ERROR("config.invalid").kv("error", cfg.status().message()); ... }
//   uint32_t max_frame = cfg->limits().max_frame_bytes();
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "schemas/config_generated.h"

namespace herald::config {

// Largest config file or string accepted; a config is a few kilobytes.
inline constexpr size_t kMaxConfigBytes = 1 << 20;

// An owned, verified and normalised NodeConfig buffer: every section table and every string is
// present (defaults filled from the schema), every scalar is written explicitly, every value is
// inside its schema range. So accessors never return null for sections or strings.
class Config {
 public:
  // The root table, for fields not covered below.
  [[nodiscard]] const NodeConfig& root() const { return *GetNodeConfig(buffer_.data()); }
  [[nodiscard]] const NodeConfig* operator->() const { return &root(); }

  [[nodiscard]] const Node& node() const { return *root().node(); }
  [[nodiscard]] const Controlplane& controlplane() const { return *root().controlplane(); }
  [[nodiscard]] const Dataplane& dataplane() const { return *root().dataplane(); }
  [[nodiscard]] const Limits& limits() const { return *root().limits(); }
  [[nodiscard]] const Profiler& profiler() const { return *root().profiler(); }
  [[nodiscard]] const Shm& shm() const { return *root().shm(); }
  [[nodiscard]] const HttpListener& admin_http() const { return *root().admin_http(); }
  [[nodiscard]] const HttpListener& public_http() const { return *root().public_http(); }
  [[nodiscard]] const Registration& registration() const { return *root().registration(); }
  [[nodiscard]] const SessionTokens& session_tokens() const { return *root().session_tokens(); }
  [[nodiscard]] const CodeGateway& code_gateway() const { return *root().code_gateway(); }
  [[nodiscard]] const Tls& tls() const { return *root().tls(); }
  [[nodiscard]] const Catalog& catalog() const { return *root().catalog(); }

  // The FlatBuffer (identifier "HCFG"): what config revisions store and the admin API compares.
  [[nodiscard]] std::span<const uint8_t> bytes() const { return buffer_; }
  // A mutable copy in the object API (to derive a new revision, in tests).
  [[nodiscard]] std::unique_ptr<NodeConfigT> unpack() const;

 private:
  friend absl::StatusOr<Config> make_config(std::vector<uint8_t> buffer);
  explicit Config(std::vector<uint8_t> buffer) : buffer_(std::move(buffer)) {}

  // operator new aligns to at least 16 bytes, more than the 8 FlatBuffers needs.
  std::vector<uint8_t> buffer_;
};

// Reads and checks the JSON file at `path`. Errors (absl::InvalidArgumentError unless the file
// cannot be read) name the file, the line and the field: "node.json:3: 17: error: unknown
// field: max_frame", or "limits.max_frame_bytes = 100 is below the minimum 1024".
[[nodiscard]] absl::StatusOr<Config> load_config(const std::string& path);

// The same for JSON text; `source_name` appears in error messages instead of a file name.
[[nodiscard]] absl::StatusOr<Config> load_config_from_string(std::string_view json,
                                                             std::string_view source_name = "");

// The embedded defaults: what `{}` loads to. Built once, on first use.
[[nodiscard]] const Config& default_config();

// Every field, defaults included, as strict JSON that load_config_from_string() accepts back
// (GET /v1/config).
[[nodiscard]] absl::StatusOr<std::string> config_to_json(const Config& config);

// Checks a buffer from elsewhere (a stored config revision): verifies it, fills defaults and
// enforces ranges as if it had been loaded from JSON.
[[nodiscard]] absl::StatusOr<Config> config_from_buffer(std::span<const uint8_t> buffer);

// The field an InvalidArgument from the functions above is about, as a path
// ("limits.max_frame_bytes", "dataplane.cores[1]"), or "" when the error names none (malformed
// JSON before any key, a rule about the whole config). For the admin API's 400 answers.
[[nodiscard]] std::string error_field(const absl::Status& status);

// Paths of the fields whose values differ between `from` and `to` ("dataplane.workers"), in
// schema order; a vector or string counts as one field. Found by walking config.fbs, so a field
// added to the schema is covered without touching this code.
[[nodiscard]] std::vector<std::string> changed_fields(const Config& from, const Config& to);

// The subset of changed_fields() marked herald_restart in config.fbs (on the field or on a
// table that holds it): the changes the running node cannot apply without a restart.
[[nodiscard]] std::vector<std::string> restart_required_changes(const Config& from,
                                                                const Config& to);

// Every field path marked herald_restart (a table so marked lists its fields), in schema order:
// what GET /v1/config publishes and docs/CONFIG.md lists.
[[nodiscard]] const std::vector<std::string>& restart_required_fields();

// Sets the process's log level and format from `node.log_level` / `node.log_format` (both
// planes, at start and when a committed revision changes them).
void apply_log_settings(const Config& config);

}  // namespace herald::config

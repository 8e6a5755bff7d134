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

}  // namespace herald::config

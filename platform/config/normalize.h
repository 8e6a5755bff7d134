// Schema-driven normalisation of a parsed config: walks the FieldDefs flatbuffers::Parser keeps
// for config.fbs, fills defaults (herald_default for strings) and enforces herald_min,
// herald_max, herald_pow2, herald_format and enum membership. Internal to platform/config.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/idl.h"

namespace herald::config::internal {

// The absl::Status payload that names the offending field ("limits.max_frame_bytes") of an
// InvalidArgument error; config::error_field() reads it.
inline constexpr char kFieldPayloadUrl[] = "herald.config/field";

// InvalidArgument(`message`) naming `path` in its payload.
absl::Status field_error(const std::string& path, const std::string& message);

// Rebuilds table `src` of type `def` into `fbb` (which must have ForceDefaults on), with every
// field written: scalars, strings (defaults filled), sub-tables (built from defaults when
// absent), vectors. `src` may be null: then the table is all defaults. `path` names the table
// in errors ("" for the root, "limits" for a section). Supports what config.fbs uses (scalars,
// enums, strings, tables, vectors of scalars and strings); anything else is an internal error,
// which the unit tests would catch on the defaults.
[[nodiscard]] absl::StatusOr<flatbuffers::uoffset_t> normalize_table(
    flatbuffers::FlatBufferBuilder& fbb, const flatbuffers::StructDef& def,
    const flatbuffers::Table* src, const std::string& path);

}  // namespace herald::config::internal

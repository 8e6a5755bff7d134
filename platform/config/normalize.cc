// Schema-driven normalisation and range checks for the node config (see normalize.h).
#include "platform/config/normalize.h"

#include <arpa/inet.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "flatbuffers/util.h"

namespace herald::config::internal {
namespace {

using flatbuffers::BaseType;
using flatbuffers::FieldDef;
using flatbuffers::StructDef;
using flatbuffers::Table;

std::string field_path(const std::string& table_path, const FieldDef& field) {
  return table_path.empty() ? field.name : absl::StrCat(table_path, ".", field.name);
}

const flatbuffers::Value* attribute(const FieldDef& field, const char* name) {
  return field.attributes.Lookup(name);
}

// A schema mistake (a malformed attribute, an unsupported type), not an operator's: the unit
// tests load the defaults, so these never reach a node.
absl::Status schema_error(const std::string& path, const std::string& what) {
  return absl::InternalError(absl::StrCat("config schema: ", path, ": ", what));
}

template <typename T>
std::string number_text(T value) {
  if constexpr (std::is_floating_point_v<T>) {
    return absl::StrCat(static_cast<double>(value));
  } else {
    return absl::StrCat(
        static_cast<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(value));
  }
}

// Checks one scalar against the field's herald_* attributes and, for an enum, its values.
template <typename T>
absl::Status check_scalar(const FieldDef& field, T value, const std::string& path) {
  if (const flatbuffers::Value* min = attribute(field, "herald_min")) {
    T bound{};
    if (!flatbuffers::StringToNumber(min->constant.c_str(), &bound)) {
      return schema_error(path, "herald_min does not fit the field's type");
    }
    if (value < bound) {
      return field_error(path, absl::StrCat(path, " = ", number_text(value),
                                            " is below the minimum ", min->constant));
    }
  }
  if (const flatbuffers::Value* max = attribute(field, "herald_max")) {
    T bound{};
    if (!flatbuffers::StringToNumber(max->constant.c_str(), &bound)) {
      return schema_error(path, "herald_max does not fit the field's type");
    }
    if (value > bound) {
      return field_error(path, absl::StrCat(path, " = ", number_text(value),
                                            " is above the maximum ", max->constant));
    }
  }
  if (attribute(field, "herald_pow2") != nullptr) {
    if constexpr (std::is_integral_v<T>) {
      if (value <= 0 || (value & (value - 1)) != 0) {
        return field_error(path,
                           absl::StrCat(path, " = ", number_text(value), " is not a power of two"));
      }
    } else {
      return schema_error(path, "herald_pow2 on a floating-point field");
    }
  }
  // FlatBuffers' JSON parser accepts any integer for an enum field; only named values mean
  // something to the code that reads them.
  const flatbuffers::EnumDef* enum_def = field.value.type.enum_def;
  if constexpr (std::is_integral_v<T>) {
    if (enum_def != nullptr && !enum_def->is_union &&
        enum_def->attributes.Lookup("bit_flags") == nullptr &&
        enum_def->ReverseLookup(static_cast<int64_t>(value), false) == nullptr) {
      return field_error(path, absl::StrCat(path, " = ", number_text(value), " is not a ",
                                            enum_def->name, " value"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> scalar_value(const FieldDef& field, const Table* src, const std::string& path) {
  T fallback{};
  if (!flatbuffers::StringToNumber(field.value.constant.c_str(), &fallback)) {
    return schema_error(path, "default does not fit the field's type");
  }
  const T value = src != nullptr ? src->GetField<T>(field.value.offset, fallback) : fallback;
  if (absl::Status status = check_scalar(field, value, path); !status.ok()) return status;
  return value;
}

// Calls fn(T{}) with the C++ type of a scalar base type; false for non-scalars.
template <typename Fn>
bool with_scalar_type(BaseType type, Fn&& fn) {
  switch (type) {
    case BaseType::BASE_TYPE_BOOL:
    case BaseType::BASE_TYPE_UTYPE:
    case BaseType::BASE_TYPE_UCHAR: fn(uint8_t{}); return true;
    case BaseType::BASE_TYPE_CHAR: fn(int8_t{}); return true;
    case BaseType::BASE_TYPE_SHORT: fn(int16_t{}); return true;
    case BaseType::BASE_TYPE_USHORT: fn(uint16_t{}); return true;
    case BaseType::BASE_TYPE_INT: fn(int32_t{}); return true;
    case BaseType::BASE_TYPE_UINT: fn(uint32_t{}); return true;
    case BaseType::BASE_TYPE_LONG: fn(int64_t{}); return true;
    case BaseType::BASE_TYPE_ULONG: fn(uint64_t{}); return true;
    case BaseType::BASE_TYPE_FLOAT: fn(float{}); return true;
    case BaseType::BASE_TYPE_DOUBLE: fn(double{}); return true;
    default: return false;
  }
}

absl::Status check_format(const FieldDef& field, std::string_view value, const std::string& path) {
  const flatbuffers::Value* format = attribute(field, "herald_format");
  if (format == nullptr) return absl::OkStatus();
  if (format->constant == "ip") {
    // inet_pton needs a terminated string; addresses are short, and this is start-up code.
    const std::string text(value);
    in6_addr addr{};
    if (inet_pton(AF_INET, text.c_str(), &addr) == 1 ||
        inet_pton(AF_INET6, text.c_str(), &addr) == 1) {
      return absl::OkStatus();
    }
    return field_error(path,
                       absl::StrCat(path, " = \"", text, "\" is not an IPv4 or IPv6 address"));
  }
  if (format->constant == "abs_path" || format->constant == "abs_path_or_empty") {
    if (!value.empty() && value.front() == '/') return absl::OkStatus();
    if (value.empty() && format->constant == "abs_path_or_empty") return absl::OkStatus();
    return field_error(
        path, absl::StrCat(path, " = \"", std::string(value), "\" is not an absolute path"));
  }
  if (format->constant == "url") {
    // Only the scheme and a non-empty rest are checked here; the gateway that uses the URL
    // parses it in full when it starts.
    const bool http = value.starts_with("http://") && value.size() > 7;
    const bool https = value.starts_with("https://") && value.size() > 8;
    if (value.empty() || http || https) return absl::OkStatus();
    return field_error(path, absl::StrCat(path, " = \"", std::string(value),
                                          "\" is not an http:// or https:// URL"));
  }
  return schema_error(path, absl::StrCat("unknown herald_format \"", format->constant, "\""));
}

absl::StatusOr<flatbuffers::uoffset_t> normalize_string(flatbuffers::FlatBufferBuilder& fbb,
                                                        const FieldDef& field, const Table* src,
                                                        const std::string& path) {
  const auto* str =
      src != nullptr ? src->GetPointer<const flatbuffers::String*>(field.value.offset) : nullptr;
  std::string_view value;
  if (str != nullptr) {
    value = str->string_view();
  } else if (const flatbuffers::Value* fallback = attribute(field, "herald_default")) {
    value = fallback->constant;
  }
  if (absl::Status status = check_format(field, value, path); !status.ok()) return status;
  return fbb.CreateString(value.data(), value.size()).o;
}

absl::StatusOr<flatbuffers::uoffset_t> normalize_vector(flatbuffers::FlatBufferBuilder& fbb,
                                                        const FieldDef& field, const Table* src,
                                                        const std::string& path) {
  const flatbuffers::Type element = field.value.type.VectorType();
  // Any vector has the same header (a uoffset_t count); read the count through uint8_t.
  const auto* raw = src != nullptr
                        ? src->GetPointer<const flatbuffers::Vector<uint8_t>*>(field.value.offset)
                        : nullptr;
  const flatbuffers::uoffset_t count = raw != nullptr ? raw->size() : 0;

  if (element.base_type == BaseType::BASE_TYPE_STRING) {
    const auto* strings =
        reinterpret_cast<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>*>(raw);
    std::vector<flatbuffers::Offset<flatbuffers::String>> offsets;
    offsets.reserve(count);
    for (flatbuffers::uoffset_t i = 0; i < count; ++i) {
      offsets.push_back(fbb.CreateString(strings->Get(i)));
    }
    return fbb.CreateVector(offsets).o;
  }

  absl::StatusOr<flatbuffers::uoffset_t> result = schema_error(path, "unsupported vector type");
  with_scalar_type(element.base_type, [&](auto type) {
    using T = decltype(type);
    std::vector<T> values;
    values.reserve(count);
    const uint8_t* data = raw != nullptr ? raw->Data() : nullptr;
    for (flatbuffers::uoffset_t i = 0; i < count; ++i) {
      const T value = flatbuffers::ReadScalar<T>(data + i * sizeof(T));
      if (absl::Status status = check_scalar(field, value, absl::StrCat(path, "[", i, "]"));
          !status.ok()) {
        result = status;
        return;
      }
      values.push_back(value);
    }
    result = fbb.CreateVector(values).o;
  });
  return result;
}

}  // namespace

absl::Status field_error(const std::string& path, const std::string& message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kFieldPayloadUrl, absl::Cord(path));
  return status;
}

absl::StatusOr<flatbuffers::uoffset_t> normalize_table(flatbuffers::FlatBufferBuilder& fbb,
                                                       const StructDef& def, const Table* src,
                                                       const std::string& path) {
  if (def.fixed) return schema_error(path, "structs are not supported in the config");

  // FlatBuffers builds children before their parent: first every string, vector and sub-table,
  // then the table itself with the scalars and the children's offsets.
  std::vector<std::pair<flatbuffers::voffset_t, flatbuffers::uoffset_t>> children;
  for (const FieldDef* field : def.fields.vec) {
    if (field->deprecated) continue;
    const std::string name = field_path(path, *field);
    const flatbuffers::Type& type = field->value.type;
    absl::StatusOr<flatbuffers::uoffset_t> child;
    switch (type.base_type) {
      case BaseType::BASE_TYPE_STRING: child = normalize_string(fbb, *field, src, name); break;
      case BaseType::BASE_TYPE_VECTOR: child = normalize_vector(fbb, *field, src, name); break;
      case BaseType::BASE_TYPE_STRUCT: {
        const Table* sub =
            src != nullptr ? src->GetPointer<const Table*>(field->value.offset) : nullptr;
        child = normalize_table(fbb, *type.struct_def, sub, name);
        break;
      }
      default: {
        absl::Status status = schema_error(name, "unsupported field type");
        with_scalar_type(type.base_type, [&](auto t) {
          status = scalar_value<decltype(t)>(*field, src, name).status();
        });
        if (!status.ok()) return status;
        continue;
      }
    }
    if (!child.ok()) return child.status();
    children.emplace_back(field->value.offset, *child);
  }

  const flatbuffers::uoffset_t start = fbb.StartTable();
  for (const FieldDef* field : def.fields.vec) {
    if (field->deprecated) continue;
    with_scalar_type(field->value.type.base_type, [&](auto t) {
      using T = decltype(t);
      // Checked above; with ForceDefaults every value is written, so the buffer (and the JSON
      // made from it) says what the node runs with.
      fbb.AddElement<T>(field->value.offset, *scalar_value<T>(*field, src, path), T{});
    });
  }
  for (const auto& [offset, child] : children) {
    fbb.AddOffset(offset, flatbuffers::Offset<void>(child));
  }
  return fbb.EndTable(start);
}

}  // namespace herald::config::internal

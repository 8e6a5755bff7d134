// libFuzzer target for the node config loader: any input gives a config or an error (never a
// crash), and an accepted config survives config_to_json() and back unchanged.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "platform/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<herald::config::Config> config =
      herald::config::load_config_from_string(json, "fuzz.json");
  if (!config.ok()) {
    if (config.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  absl::StatusOr<std::string> text = herald::config::config_to_json(*config);
  if (!text.ok()) __builtin_trap();
  absl::StatusOr<herald::config::Config> again = herald::config::load_config_from_string(*text);
  if (!again.ok()) __builtin_trap();
  if (!std::equal(config->bytes().begin(), config->bytes().end(), again->bytes().begin(),
                  again->bytes().end())) {
    __builtin_trap();
  }
  return 0;
}

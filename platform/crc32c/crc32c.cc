// CRC32C: run-time choice of implementation, and the portable slicing-by-8 path.
#include "platform/crc32c/crc32c.h"

#include <cstring>

#include "platform/crc32c/crc32c_tables.h"

namespace herald::crc32c {
namespace {

using internal::kSlicingTables;

inline uint32_t load_le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);  // x86 is little-endian, as the tables assume
  return v;
}

bool detect_sse42() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

}  // namespace

bool hardware_accelerated() {
  // A function-local static: safe to call from other static initialisers.
  static const bool has_sse42 = detect_sse42();
  return has_sse42;
}

uint32_t extend(uint32_t crc, const void* data, size_t size_bytes) {
  return hardware_accelerated() ? extend_sse42(crc, data, size_bytes)
                                : extend_portable(crc, data, size_bytes);
}

uint32_t extend_portable(uint32_t crc, const void* data, size_t size_bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  // Byte at a time up to 4-byte alignment, then eight bytes per step.
  while (size_bytes > 0 && (reinterpret_cast<uintptr_t>(p) & 3) != 0) {
    c = kSlicingTables[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    --size_bytes;
  }
  while (size_bytes >= 8) {
    uint32_t lo = c ^ load_le32(p);
    uint32_t hi = load_le32(p + 4);
    c = kSlicingTables[7][lo & 0xFF] ^ kSlicingTables[6][(lo >> 8) & 0xFF] ^
        kSlicingTables[5][(lo >> 16) & 0xFF] ^ kSlicingTables[4][lo >> 24] ^
        kSlicingTables[3][hi & 0xFF] ^ kSlicingTables[2][(hi >> 8) & 0xFF] ^
        kSlicingTables[1][(hi >> 16) & 0xFF] ^ kSlicingTables[0][hi >> 24];
    p += 8;
    size_bytes -= 8;
  }
  while (size_bytes > 0) {
    c = kSlicingTables[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    --size_bytes;
  }
  return ~c;
}

}  // namespace herald::crc32c

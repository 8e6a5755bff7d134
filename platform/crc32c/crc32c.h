// CRC32C (Castagnoli, RFC 3720 §12.1 / Appendix B.4): the checksum on store records and on-disk
// segments. SSE4.2 CRC32 instructions when the CPU has them, a table-driven fallback otherwise,
// chosen at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace herald::crc32c {

// Extends `crc` (the result of an earlier call, or 0 to start) with `size_bytes` bytes at
// `data`. The standard pre/post inversion happens inside, so
//   extend(extend(0, a), b) == extend(0, a + b)   (a + b: the concatenation)
// and the result is the CRC32C of everything fed so far. `data` may be null if size_bytes is 0.
[[nodiscard]] uint32_t extend(uint32_t crc, const void* data, size_t size_bytes);

// CRC32C of one buffer.
[[nodiscard]] inline uint32_t value(const void* data, size_t size_bytes) {
  return extend(0, data, size_bytes);
}
[[nodiscard]] inline uint32_t value(std::string_view bytes) {
  return extend(0, bytes.data(), bytes.size());
}

// Whether extend() uses the SSE4.2 path on this CPU.
bool hardware_accelerated();

// The two implementations, exposed so tests can compare them and benchmarks can time them.
// extend_sse42() must only be called when hardware_accelerated().
[[nodiscard]] uint32_t extend_portable(uint32_t crc, const void* data, size_t size_bytes);
[[nodiscard]] uint32_t extend_sse42(uint32_t crc, const void* data, size_t size_bytes);

}  // namespace herald::crc32c

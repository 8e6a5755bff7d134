// Compile-time tables for CRC32C: the slicing-by-8 tables of the portable path, and the
// "shift by N zero bytes" tables that recombine the SSE4.2 path's interleaved streams.
// Internal to platform/crc32c.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace herald::crc32c::internal {

// The Castagnoli polynomial 0x1EDC6F41, bit-reflected (CRC32C is a reflected CRC).
inline constexpr uint32_t kPolyReflected = 0x82F63B78;

using ByteTable = std::array<uint32_t, 256>;

// Slicing-by-8 (Intel, Kounavis & Berry 2005): table k advances the register past a byte
// followed by k zero bytes, so eight lookups consume eight bytes with no serial dependency
// between them.
constexpr std::array<ByteTable, 8> make_slicing_tables() {
  std::array<ByteTable, 8> t{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t crc = n;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? kPolyReflected : 0);
    t[0][n] = crc;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (uint32_t n = 0; n < 256; ++n) t[k][n] = (t[k - 1][n] >> 8) ^ t[0][t[k - 1][n] & 0xFF];
  }
  return t;
}

inline constexpr std::array<ByteTable, 8> kSlicingTables = make_slicing_tables();

// Feeding zero bytes to a raw (uninverted) CRC register is linear over GF(2), so "the register
// after `zero_bytes` zeros" is a 32x32 bit matrix. We tabulate it one byte of the register at a
// time: four lookups apply it. This lets three streams be CRCed independently and joined:
//   raw(A || B) = shift(raw(A), |B|) ^ raw_from_zero(B).
constexpr std::array<ByteTable, 4> make_shift_tables(size_t zero_bytes) {
  std::array<uint32_t, 32> basis{};
  for (int bit = 0; bit < 32; ++bit) {
    uint32_t crc = uint32_t{1} << bit;
    for (size_t i = 0; i < zero_bytes; ++i) crc = kSlicingTables[0][crc & 0xFF] ^ (crc >> 8);
    basis[bit] = crc;
  }
  std::array<ByteTable, 4> t{};
  for (int byte = 0; byte < 4; ++byte) {
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t image = 0;
      for (int bit = 0; bit < 8; ++bit) {
        if (n & (1u << bit)) image ^= basis[byte * 8 + bit];
      }
      t[byte][n] = image;
    }
  }
  return t;
}

inline uint32_t apply_shift(const std::array<ByteTable, 4>& t, uint32_t crc) {
  return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24];
}

}  // namespace herald::crc32c::internal

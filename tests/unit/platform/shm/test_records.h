// Deterministic record contents for the ring tests: record i of a seeded stream has a size and
// bytes that both processes can regenerate, so the consumer checks byte-exactness on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace herald::shm::testing {

// SplitMix64 (Steele, Lea, Flood 2014): a tiny, good-enough deterministic generator.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Size of record `index`: uniform in [0, max_bytes], with extra weight on 0 and max_bytes.
inline size_t record_size(uint64_t seed, uint64_t index, size_t max_bytes) {
  const uint64_t r = splitmix64(seed ^ (index * 0x2545f4914f6cdd1dULL));
  switch (r % 16) {
    case 0: return 0;
    case 1: return max_bytes;
    default: return static_cast<size_t>((r >> 8) % (max_bytes + 1));
  }
}

inline uint32_t record_type(uint64_t seed, uint64_t index) {
  return static_cast<uint32_t>(splitmix64(seed + index) % 1000);
}

// Fills `out` with the bytes of record `index`; the first 8 bytes (if room) are the index.
inline void fill_record(uint64_t seed, uint64_t index, std::span<std::byte> out) {
  uint64_t state = splitmix64(seed * 31 + index);
  for (size_t i = 0; i < out.size(); i += 8) {
    state = splitmix64(state);
    const size_t n = out.size() - i < 8 ? out.size() - i : 8;
    std::memcpy(out.data() + i, &state, n);
  }
  if (out.size() >= 8) std::memcpy(out.data(), &index, 8);
}

inline std::vector<std::byte> make_record(uint64_t seed, uint64_t index, size_t max_bytes) {
  std::vector<std::byte> v(record_size(seed, index, max_bytes));
  fill_record(seed, index, v);
  return v;
}

inline bool record_matches(uint64_t seed, uint64_t index, size_t max_bytes, uint32_t type,
                           std::span<const std::byte> got) {
  if (type != record_type(seed, index)) return false;
  const std::vector<std::byte> want = make_record(seed, index, max_bytes);
  return want.size() == got.size() &&
         (want.empty() || std::memcmp(want.data(), got.data(), want.size()) == 0);
}

}  // namespace herald::shm::testing

// SipHash-2-4 (Aumasson & Bernstein) for the TCP engine's small inputs: the keyed PRF RFC 6528
// asks for (ISNs), SYN cookies, and the hash of the 4-tuple tables (a peer cannot aim its
// tuples at one chain without the key).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dataplane/net/tcp/types.h"

namespace herald::net::tcp {

inline uint64_t siphash_rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

inline uint64_t siphash(const uint64_t key[2], const uint8_t* data, size_t len) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
  auto round = [&] {
    v0 += v1, v1 = siphash_rotl(v1, 13), v1 ^= v0, v0 = siphash_rotl(v0, 32);
    v2 += v3, v3 = siphash_rotl(v3, 16), v3 ^= v2;
    v0 += v3, v3 = siphash_rotl(v3, 21), v3 ^= v0;
    v2 += v1, v1 = siphash_rotl(v1, 17), v1 ^= v2, v2 = siphash_rotl(v2, 32);
  };
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m;
    std::memcpy(&m, data + i, 8);
    v3 ^= m, round(), round(), v0 ^= m;
  }
  uint64_t b = uint64_t{len & 0xff} << 56;
  for (size_t j = 0; i + j < len; ++j) b |= uint64_t{data[i + j]} << (8 * j);
  v3 ^= b, round(), round(), v0 ^= b;
  v2 ^= 0xff;
  round(), round(), round(), round();
  return v0 ^ v1 ^ v2 ^ v3;
}

// The 4-tuple's 36 bytes (both addresses as 16, both ports), the input of the tuple hashes.
inline uint64_t siphash_tuple(const uint64_t key[2], const FourTuple& t) {
  uint8_t buf[36];
  std::memcpy(buf, t.local.bytes, 16);
  std::memcpy(buf + 16, t.remote.bytes, 16);
  std::memcpy(buf + 32, &t.local_port, 2);
  std::memcpy(buf + 34, &t.remote_port, 2);
  return siphash(key, buf, sizeof(buf));
}

}  // namespace herald::net::tcp

// Small value types of the TCP engine: addresses (IPv4 now, IPv6-shaped), the 4-tuple and its
// hash, and sequence-number arithmetic modulo 2^32 (RFC 9293 3.4).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

namespace herald::net::tcp {

// An IP address. IPv4 lives in bytes[0..3] with family 4; IPv6 uses all 16 with family 6, so
// the engine (demux, pseudo-header, ISN) never assumes IPv4.
struct IpAddr {
  uint8_t family = 4;
  uint8_t bytes[16] = {};

  static IpAddr v4(uint32_t host_order) {
    IpAddr a;
    a.family = 4;
    a.bytes[0] = static_cast<uint8_t>(host_order >> 24);
    a.bytes[1] = static_cast<uint8_t>(host_order >> 16);
    a.bytes[2] = static_cast<uint8_t>(host_order >> 8);
    a.bytes[3] = static_cast<uint8_t>(host_order);
    return a;
  }
  size_t length() const { return family == 6 ? 16 : 4; }
  bool operator==(const IpAddr& o) const {
    return family == o.family && std::memcmp(bytes, o.bytes, 16) == 0;
  }
  std::string to_string() const;
};

struct FourTuple {
  IpAddr local;
  IpAddr remote;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  bool operator==(const FourTuple& o) const {
    return local_port == o.local_port && remote_port == o.remote_port && local == o.local &&
           remote == o.remote;
  }
};

struct FourTupleHash {
  size_t operator()(const FourTuple& t) const {
    // FNV-1a over the fields: cheap and adequate for a table the peer cannot flood with chosen
    // collisions (its size is bounded by max_connections and the SYN queue).
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&h](const uint8_t* p, size_t n) {
      for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
    };
    mix(t.local.bytes, t.local.length());
    mix(t.remote.bytes, t.remote.length());
    uint8_t ports[4] = {static_cast<uint8_t>(t.local_port), static_cast<uint8_t>(t.local_port >> 8),
                        static_cast<uint8_t>(t.remote_port),
                        static_cast<uint8_t>(t.remote_port >> 8)};
    mix(ports, 4);
    return static_cast<size_t>(h);
  }
};

// Sequence comparisons modulo 2^32.
inline bool seq_lt(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}
inline bool seq_le(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) <= 0;
}
inline bool seq_gt(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) > 0;
}
inline bool seq_ge(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) >= 0;
}
inline uint32_t seq_max(uint32_t a, uint32_t b) {
  return seq_gt(a, b) ? a : b;
}
inline uint32_t seq_min(uint32_t a, uint32_t b) {
  return seq_lt(a, b) ? a : b;
}

}  // namespace herald::net::tcp

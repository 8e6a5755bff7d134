// Addresses for the user-space stack: MAC addresses, IP addresses (IPv4 now; the family tag
// leaves room for IPv6) and endpoints (address + port). Small values, copied freely.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace herald::net {

struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  static constexpr MacAddress broadcast() {
    return MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
  }
  // The I/G bit (IEEE 802.3 §3.2.3): set for group addresses, broadcast included.
  constexpr bool is_multicast() const { return (bytes[0] & 0x01) != 0; }
  constexpr bool is_broadcast() const { return *this == broadcast(); }
  constexpr bool is_zero() const { return *this == MacAddress{}; }
  friend constexpr bool operator==(const MacAddress&, const MacAddress&) = default;
  std::string to_string() const;  // "02:00:00:00:00:01"
};

// An IP address of either family. Only IPv4 is built; IPv6 adds a family and a 16-byte member,
// and code that switches on family() keeps compiling (with a warning for the missing case).
class IpAddress {
 public:
  enum class Family : uint8_t { kNone, kV4 };

  constexpr IpAddress() = default;
  // `host_order`: 0x0a000001 is 10.0.0.1.
  static constexpr IpAddress v4(uint32_t host_order) { return IpAddress(Family::kV4, host_order); }
  static constexpr IpAddress v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    return v4((uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | uint32_t{d});
  }

  constexpr Family family() const { return family_; }
  constexpr bool is_v4() const { return family_ == Family::kV4; }
  constexpr uint32_t v4_host_order() const { return v4_; }
  constexpr bool is_none() const { return family_ == Family::kNone; }
  friend constexpr bool operator==(const IpAddress&, const IpAddress&) = default;

  std::string to_string() const;  // "10.0.0.1", "none"
  size_t hash() const { return (static_cast<size_t>(v4_) * 0x9e3779b97f4a7c15ull) >> 7; }

 private:
  constexpr IpAddress(Family family, uint32_t v4) : family_(family), v4_(v4) {}

  Family family_ = Family::kNone;
  uint32_t v4_ = 0;
};

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
  friend constexpr bool operator==(const Endpoint&, const Endpoint&) = default;
  std::string to_string() const;  // "10.0.0.1:443"
};

// A connection's key as seen from this host.
struct FourTuple {
  Endpoint local;
  Endpoint remote;
  friend constexpr bool operator==(const FourTuple&, const FourTuple&) = default;
};

}  // namespace herald::net

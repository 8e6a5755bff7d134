// Source addresses reduced to rate-limit keys (see source_address.h).
#include "controlplane/registration/source_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>

namespace herald::registration {
namespace {
// Tags in RateKey::hi keep the two families apart.
constexpr uint64_t kTagIpv4 = 4;
constexpr uint64_t kTagIpv6 = 6;
}  // namespace

SourceAddress SourceAddress::ipv4(uint32_t addr) {
  return SourceAddress(RateKey{kTagIpv4, addr});
}

SourceAddress SourceAddress::ipv6(const std::array<uint8_t, 16>& addr) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(addr.data(), kMappedPrefix, sizeof kMappedPrefix) == 0) {
    return ipv4((uint32_t{addr[12]} << 24) | (uint32_t{addr[13]} << 16) |
                (uint32_t{addr[14]} << 8) | addr[15]);
  }
  uint64_t prefix = 0;
  for (size_t i = 0; i < 8; ++i) prefix = (prefix << 8) | addr[i];
  return SourceAddress(RateKey{kTagIpv6, prefix});
}

std::optional<SourceAddress> SourceAddress::from_sockaddr(const sockaddr* addr, socklen_t len) {
  if (addr == nullptr) return std::nullopt;
  if (addr->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in;
    std::memcpy(&in, addr, sizeof in);
    return ipv4(ntohl(in.sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6;
    std::memcpy(&in6, addr, sizeof in6);
    std::array<uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &in6.sin6_addr, 16);
    return ipv6(bytes);
  }
  return std::nullopt;
}

std::optional<SourceAddress> SourceAddress::parse(std::string_view text) {
  std::string s(text);
  in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) return ipv4(ntohl(v4.s_addr));
  std::array<uint8_t, 16> v6;
  if (inet_pton(AF_INET6, s.c_str(), v6.data()) == 1) return ipv6(v6);
  return std::nullopt;
}

}  // namespace herald::registration

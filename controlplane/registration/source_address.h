// The source address of a registration request, reduced to the key its rate limit is counted
// under: an IPv4 address, or the /64 prefix of an IPv6 address.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "controlplane/registration/rate_limiter.h"

namespace herald::registration {

class SourceAddress {
 public:
  // `addr` in host byte order (0x7f000001 is 127.0.0.1).
  static SourceAddress ipv4(uint32_t addr);
  // An IPv4-mapped address (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) becomes the IPv4 address, so a
  // dual-stack listener counts a client the same way on either socket family.
  static SourceAddress ipv6(const std::array<uint8_t, 16>& addr);
  // AF_INET or AF_INET6; nullopt for anything else or a short length.
  static std::optional<SourceAddress> from_sockaddr(const sockaddr* addr, socklen_t len);
  // inet_pton text ("192.0.2.1", "2001:db8::1"); for tests and tools.
  static std::optional<SourceAddress> parse(std::string_view text);

  // IPv4: the whole address. IPv6: the /64, since one subscriber is routinely given a whole
  // /64 (RFC 6177) and could otherwise pick a fresh address per request.
  RateKey rate_key() const { return key_; }

 private:
  explicit SourceAddress(RateKey key) : key_(key) {}
  RateKey key_;
};

}  // namespace herald::registration

// Text forms of the stack's addresses, for logs and test failure messages.
#include "dataplane/net/ip_address.h"

#include <cstdio>

namespace herald::net {

std::string MacAddress::to_string() const {
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2],
                bytes[3], bytes[4], bytes[5]);
  return text;
}

std::string IpAddress::to_string() const {
  switch (family_) {
    case Family::kNone: return "none";
    case Family::kV4: {
      char text[16];
      std::snprintf(text, sizeof(text), "%u.%u.%u.%u", v4_ >> 24, (v4_ >> 16) & 0xff,
                    (v4_ >> 8) & 0xff, v4_ & 0xff);
      return text;
    }
  }
  return "invalid";
}

std::string Endpoint::to_string() const {
  return address.to_string() + ":" + std::to_string(port);
}

}  // namespace herald::net

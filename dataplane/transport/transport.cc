// The transport contract's out-of-line pieces: peer addresses as text and close-reason names.
#include "dataplane/transport/transport.h"

#include <arpa/inet.h>

namespace herald::dataplane {

std::string PeerAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET && length >= sizeof(sockaddr_in)) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    if (::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host)) == nullptr) return "?";
    // Appended step by step: GCC 12 at -O3 warns (-Wrestrict, a false positive) on the chain
    // of operator+ temporaries.
    std::string text(host);
    text += ':';
    text += std::to_string(ntohs(v4->sin_port));
    return text;
  }
  if (address.ss_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    if (::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host)) == nullptr) return "?";
    std::string text = "[";
    text += host;
    text += "]:";
    text += std::to_string(ntohs(v6->sin6_port));
    return text;
  }
  return "?";  // unknown family, or getpeername failed
}

const char* close_reason_name(CloseReason reason) {
  switch (reason) {
#define HERALD_CLOSE_REASON_NAME(name, text, doc) \
  case CloseReason::name: return text;
    HERALD_CLOSE_REASONS(HERALD_CLOSE_REASON_NAME)
#undef HERALD_CLOSE_REASON_NAME
    case CloseReason::kCount: break;
  }
  return "unknown";
}

}  // namespace herald::dataplane

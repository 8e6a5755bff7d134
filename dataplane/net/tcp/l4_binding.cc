// TcpEngine <-> IP layer glue (see l4_binding.h).
#include "dataplane/net/tcp/l4_binding.h"

#include <algorithm>
#include <cstring>

namespace herald::net::tcp {

IpAddr to_tcp_address(const IpAddress& address) {
  // Only IPv4 exists below; IPv6 adds a case here and nothing in the engine.
  return IpAddr::v4(address.v4_host_order());
}

IpAddress from_tcp_address(const IpAddr& address) {
  return IpAddress::v4(address.bytes[0], address.bytes[1], address.bytes[2], address.bytes[3]);
}

void TcpL4Binding::on_packet(const L4Packet& packet) {
  if (engine_ == nullptr || packet.protocol != kIpProtocolTcp) return;
  engine_->input(to_tcp_address(packet.source), to_tcp_address(packet.destination), packet.bytes,
                 /*checksum_verified=*/true);
}

bool TcpL4Binding::send_segment(const IpAddr& src, const IpAddr& dst,
                                std::span<const uint8_t> segment) {
  L4TxFrame frame;
  const auto bytes = static_cast<uint32_t>(segment.size());
  // From the connection's own address (a client stack may own several).
  if (!output_.alloc_from(from_tcp_address(src), from_tcp_address(dst), kIpProtocolTcp, bytes,
                          &frame)) {
    return false;
  }
  if (frame.capacity_bytes < bytes) {
    output_.abort(frame);
    return false;
  }
  std::memcpy(frame.l4, segment.data(), bytes);
  output_.send(frame, bytes, clock_.now_ns());
  return true;
}

uint16_t TcpL4Binding::path_mss() const {
  const uint32_t l4 = output_.max_l4_bytes();
  return static_cast<uint16_t>(std::min<uint32_t>(l4 > 20 ? l4 - 20 : 0, 65535));
}

}  // namespace herald::net::tcp

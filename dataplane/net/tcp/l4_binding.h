// Binds a TcpEngine to the IP layer's L4 contract (dataplane/net/l4.h): received TCP datagrams
// go to TcpEngine::input (checksum already verified there), and the engine's segments go out
// through L4Output::alloc/send. The only place that knows both address types.
#pragma once

#include <cstdint>
#include <span>

#include "dataplane/net/l4.h"
#include "dataplane/net/tcp/tcp.h"
#include "platform/clock/clock.h"

namespace herald::net::tcp {

IpAddr to_tcp_address(const IpAddress& address);
IpAddress from_tcp_address(const IpAddr& address);

class TcpL4Binding final : public L4Receiver, public TcpOutput {
 public:
  TcpL4Binding(L4Output& output, clock::Clock clock) : output_(output), clock_(clock) {}
  // The engine the binding feeds; set once, before packets flow (the engine is built with the
  // binding as its TcpOutput, so the two are made in that order).
  void attach(TcpEngine* engine) { engine_ = engine; }

  // L4Receiver
  void on_packet(const L4Packet& packet) override;
  // TcpOutput: copies the segment into a port buffer (its checksum field is overwritten there).
  bool send_segment(const IpAddr& src, const IpAddr& dst,
                    std::span<const uint8_t> segment) override;

  // The MSS for TcpConfig::mss on this path (l4.h: max_l4_bytes() - 20).
  uint16_t path_mss() const;

 private:
  L4Output& output_;
  clock::Clock clock_;
  TcpEngine* engine_ = nullptr;
};

}  // namespace herald::net::tcp

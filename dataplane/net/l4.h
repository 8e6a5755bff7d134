// The interface between the IP layer and an L4 engine (TCP in dataplane/net/tcp/, UDP later):
// segments up with their addresses, and an output path down that builds IPv4 + Ethernet and
// resolves ARP. This header is the contract; NetStack (stack.h) implements L4Output.
//
// Receive: NetStack calls L4Receiver::on_packet for each IPv4 datagram addressed to us whose
// protocol has a receiver registered (NetStack::set_receiver). By then the IPv4 header is valid,
// the datagram is not a fragment, and the L4 checksum (over the pseudo-header) has been verified
// (port offload or software): the engine does not check it again. `bytes` is the L4 header and
// payload, trimmed to the IP total length (Ethernet padding removed), and is valid only for the
// call: copy what you keep. The engine may send from inside on_packet (an ACK, a RST).
//
// Send (zero copy; the engine writes straight into the port's buffer):
//   L4TxFrame f;
//   if (!out.alloc(remote_ip, kIpProtocolTcp, header_bytes + payload_bytes, &f)) return;  //
//   counted write the TCP header and payload into f.l4[0 .. n)       // leave the checksum field as
//   is out.send(f, n, now_ns);                                  // n <= f.capacity_bytes
// send() fills the L4 checksum (TCP at offset 16, UDP at 6: software, or the pseudo-header sum
// with the offload flag when the port computes it), the IPv4 header (DF set, TTL and TOS from
// NetOptions) and Ethernet; when the next hop's MAC is not known yet, the frame waits (bounded)
// in the ARP queue and leaves when the reply comes, or is dropped and counted. A frame from
// alloc() must be given to send() or abort(), exactly once.
// TCP's MSS for this path is max_l4_bytes() - 20 (TCP header without options).
#pragma once

#include <cstdint>
#include <span>

#include "dataplane/net/frame_io.h"
#include "dataplane/net/ip_address.h"

namespace herald::net {

inline constexpr uint8_t kIpProtocolIcmp = 1;
inline constexpr uint8_t kIpProtocolTcp = 6;
inline constexpr uint8_t kIpProtocolUdp = 17;

// One received L4 datagram.
struct L4Packet {
  IpAddress source;
  IpAddress destination;  // always our address (broadcasts are not delivered to L4)
  uint8_t protocol = 0;
  uint8_t ttl = 0;
  uint8_t tos = 0;
  std::span<const uint8_t> bytes;  // L4 header + payload; valid only during the call
  uint64_t now_ns = 0;             // the virtual or real time the frame was received at

  FourTuple tuple(uint16_t source_port, uint16_t destination_port) const {
    return FourTuple{Endpoint{destination, destination_port}, Endpoint{source, source_port}};
  }
};

class L4Receiver {
 public:
  virtual ~L4Receiver() = default;
  virtual void on_packet(const L4Packet& packet) = 0;
};

// A frame being built by an L4 engine. `l4`/`capacity_bytes` are the engine's; the rest is the
// IP layer's bookkeeping (do not touch).
struct L4TxFrame {
  uint8_t* l4 = nullptr;
  uint32_t capacity_bytes = 0;

  TxFrame frame;
  IpAddress source;  // ours: alloc()'s primary address, or alloc_from()'s
  IpAddress destination;
  uint8_t protocol = 0;
};

class L4Output {
 public:
  virtual ~L4Output() = default;

  virtual IpAddress local_address() const = 0;
  // One of our addresses (a stack may own several consecutive ones: NetOptions::address_count).
  virtual bool is_local(const IpAddress& address) const { return address == local_address(); }
  // The largest L4 datagram (header + payload) that fits the MTU without fragmenting.
  virtual uint32_t max_l4_bytes() const = 0;
  // False (and a counted drop: tx_too_big, tx_alloc_failed, tx_no_route) when no frame can be
  // built; the engine treats it like a lost segment (its retransmission timer recovers).
  [[nodiscard]] virtual bool alloc(const IpAddress& destination, uint8_t protocol,
                                   uint32_t l4_bytes, L4TxFrame* frame) = 0;
  // alloc() from `source`, which must be one of ours (is_local): a connection's own address.
  [[nodiscard]] virtual bool alloc_from(const IpAddress& source, const IpAddress& destination,
                                        uint8_t protocol, uint32_t l4_bytes, L4TxFrame* frame) {
    (void)source;
    return alloc(destination, protocol, l4_bytes, frame);
  }
  virtual void send(L4TxFrame& frame, uint32_t l4_bytes, uint64_t now_ns) = 0;
  virtual void abort(L4TxFrame& frame) = 0;
};

}  // namespace herald::net

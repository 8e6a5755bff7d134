// Byte-level layout of the headers the stack reads and writes (Ethernet, ARP, IPv4, ICMP, and
// the L4 checksum offsets): offsets, sizes and big-endian loads/stores on unaligned bytes.
#pragma once

#include <cstdint>

namespace herald::net::wire {

inline uint16_t load16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
inline uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline void store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Ethernet II (IEEE 802.3 §3.1.1); the FCS is the port's business.
inline constexpr uint32_t kEthHeaderBytes = 14;
inline constexpr uint32_t kEthMinFrameBytes = 60;  // without FCS: shorter frames are padded
inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;  // 802.1Q
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;  // 802.1ad
inline constexpr uint32_t kEthDst = 0, kEthSrc = 6, kEthType = 12;

// ARP for IPv4 over Ethernet (RFC 826).
inline constexpr uint32_t kArpBytes = 28;
inline constexpr uint16_t kArpHardwareEthernet = 1;
inline constexpr uint16_t kArpOpRequest = 1, kArpOpReply = 2;
inline constexpr uint32_t kArpHrd = 0, kArpPro = 2, kArpHln = 4, kArpPln = 5, kArpOp = 6,
                          kArpSha = 8, kArpSpa = 14, kArpTha = 18, kArpTpa = 24;

// IPv4 (RFC 791).
inline constexpr uint32_t kIpv4HeaderBytes = 20;  // without options
inline constexpr uint32_t kIpv4VerIhl = 0, kIpv4Tos = 1, kIpv4TotalLength = 2, kIpv4Id = 4,
                          kIpv4FlagsFragment = 6, kIpv4Ttl = 8, kIpv4Protocol = 9,
                          kIpv4Checksum = 10, kIpv4Src = 12, kIpv4Dst = 16;
inline constexpr uint16_t kIpv4FlagDf = 0x4000, kIpv4FlagMf = 0x2000, kIpv4OffsetMask = 0x1fff;

// ICMP (RFC 792).
inline constexpr uint32_t kIcmpHeaderBytes = 8;
inline constexpr uint8_t kIcmpEchoReply = 0, kIcmpDestUnreachable = 3, kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmpCodeProtocolUnreachable = 2, kIcmpCodePortUnreachable = 3;
inline constexpr uint32_t kIcmpType = 0, kIcmpCode = 1, kIcmpChecksum = 2;
// RFC 1812 §4.3.2.3: an ICMP error carries as much of the datagram as fits in 576 bytes.
inline constexpr uint32_t kIcmpErrorMaxBytes = 576;

// Where the L4 checksum lives.
inline constexpr uint32_t kTcpHeaderBytes = 20, kTcpChecksum = 16;
inline constexpr uint32_t kUdpHeaderBytes = 8, kUdpLength = 4, kUdpChecksum = 6;

}  // namespace herald::net::wire

// IPv4 (RFC 791, RFC 1122 §3.2.1): header checks on input, dispatch to ICMP and the L4
// receivers with their checksums verified, and the output path L4 engines send through.
#include <algorithm>
#include <cstring>

#include "dataplane/net/checksum.h"
#include "dataplane/net/stack.h"
#include "dataplane/net/wire.h"
#include "platform/assert/assert.h"

namespace herald::net {
namespace {

constexpr uint32_t kL2L3Bytes = wire::kEthHeaderBytes + wire::kIpv4HeaderBytes;

bool l4_checksum_ok(ChecksumHint hint, uint32_t pseudo, std::span<const uint8_t> l4) {
  if (hint == ChecksumHint::kGood) return true;
  if (hint == ChecksumHint::kBad) return false;
  return checksum_fold(checksum_add(pseudo, l4)) == 0xffff;
}

}  // namespace

bool NetStack::is_our_broadcast(uint32_t address) const {
  return (address & ~netmask_) == ~netmask_ && (address & netmask_) == (our_ip_ & netmask_);
}

RxResult NetStack::ipv4_input(std::span<const uint8_t> ip, const RxMeta& meta, bool link_broadcast,
                              uint64_t now_ns) {
  if (ip.size() < wire::kIpv4HeaderBytes) return drop(DropReason::kIpv4Truncated);
  const uint8_t* p = ip.data();
  if ((p[wire::kIpv4VerIhl] >> 4) != 4) return drop(DropReason::kIpv4BadVersion);
  const uint32_t header_bytes = (p[wire::kIpv4VerIhl] & 0x0fu) * 4;
  if (header_bytes < wire::kIpv4HeaderBytes) return drop(DropReason::kIpv4BadIhl);
  if (header_bytes > ip.size()) return drop(DropReason::kIpv4Truncated);
  const uint32_t total_bytes = wire::load16(p + wire::kIpv4TotalLength);
  if (total_bytes < header_bytes) return drop(DropReason::kIpv4BadTotalLength);
  // Longer frames are fine (Ethernet pads to 60 bytes); the datagram ends where IP says.
  if (total_bytes > ip.size()) return drop(DropReason::kIpv4Truncated);
  if (meta.ipv4_checksum == ChecksumHint::kBad ||
      (meta.ipv4_checksum == ChecksumHint::kUnknown && !checksum_ok(ip.first(header_bytes)))) {
    return drop(DropReason::kIpv4BadChecksum);
  }
  // RFC 791 §3.2: MF or a non-zero offset is a fragment; no reassembly here (TCP sets DF and
  // its MSS keeps segments within the MTU).
  if ((wire::load16(p + wire::kIpv4FlagsFragment) & (wire::kIpv4FlagMf | wire::kIpv4OffsetMask)) !=
      0) {
    return drop(DropReason::kIpv4Fragment);
  }
  const uint32_t src = wire::load32(p + wire::kIpv4Src);
  const uint32_t dst = wire::load32(p + wire::kIpv4Dst);
  if (!ours(dst)) {
    if (dst == 0xffffffff || is_our_broadcast(dst)) return drop(DropReason::kIpv4Broadcast);
    if ((dst >> 28) == 0xe) return drop(DropReason::kIpv4Multicast);
    return drop(DropReason::kIpv4NotForUs);
  }
  // RFC 1122 §3.2.1.3: a source that is not a unicast host is discarded. A TTL of 0 or 1 is
  // accepted (§3.2.1.7: a host must not discard a datagram for a low TTL); we do not forward.
  if (src == 0 || (src >> 24) == 127 || (src >> 28) >= 0xe || ours(src) || is_our_broadcast(src)) {
    return drop(DropReason::kIpv4BadSource);
  }
  if (header_bytes > wire::kIpv4HeaderBytes) stats_.add(NetCounter::kRxIpv4Options);
  return l4_input(ip.first(total_bytes), header_bytes, meta, link_broadcast, now_ns);
}

RxResult NetStack::l4_input(std::span<const uint8_t> datagram, uint32_t header_bytes,
                            const RxMeta& meta, bool link_broadcast, uint64_t now_ns) {
  const uint8_t* p = datagram.data();
  const uint8_t protocol = p[wire::kIpv4Protocol];
  auto l4 = datagram.subspan(header_bytes);
  const IpAddress src = IpAddress::v4(wire::load32(p + wire::kIpv4Src));
  const IpAddress dst = IpAddress::v4(wire::load32(p + wire::kIpv4Dst));
  L4Receiver* receiver = nullptr;

  switch (protocol) {
    case kIpProtocolIcmp: return icmp_input(datagram, header_bytes, now_ns);
    case kIpProtocolTcp: {
      if (l4.size() < wire::kTcpHeaderBytes) return drop(DropReason::kL4Truncated);
      const uint32_t pseudo =
          pseudo_header_sum(src, dst, protocol, static_cast<uint32_t>(l4.size()));
      if (!l4_checksum_ok(meta.l4_checksum, pseudo, l4)) return drop(DropReason::kL4BadChecksum);
      receiver = tcp_;
      if (receiver == nullptr) {
        // RFC 1122 §3.2.2: never an ICMP error about a link-layer broadcast.
        if (!link_broadcast)
          icmp_send_unreachable(datagram, wire::kIcmpCodeProtocolUnreachable, now_ns);
        return drop(DropReason::kIpv4UnknownProtocol);
      }
      break;
    }
    case kIpProtocolUdp: {
      if (l4.size() < wire::kUdpHeaderBytes) return drop(DropReason::kL4Truncated);
      const uint32_t udp_bytes = wire::load16(l4.data() + wire::kUdpLength);
      if (udp_bytes < wire::kUdpHeaderBytes || udp_bytes > l4.size())
        return drop(DropReason::kL4Truncated);
      l4 = l4.first(udp_bytes);
      // RFC 768: a zero checksum means the sender computed none.
      if (wire::load16(l4.data() + wire::kUdpChecksum) != 0) {
        const uint32_t pseudo = pseudo_header_sum(src, dst, protocol, udp_bytes);
        if (!l4_checksum_ok(meta.l4_checksum, pseudo, l4)) return drop(DropReason::kL4BadChecksum);
      }
      receiver = udp_;
      if (receiver == nullptr) {
        if (!link_broadcast)
          icmp_send_unreachable(datagram, wire::kIcmpCodePortUnreachable, now_ns);
        return drop(DropReason::kUdpNoListener);
      }
      break;
    }
    default:
      if (!link_broadcast)
        icmp_send_unreachable(datagram, wire::kIcmpCodeProtocolUnreachable, now_ns);
      return drop(DropReason::kIpv4UnknownProtocol);
  }

  L4Packet packet;
  packet.source = src;
  packet.destination = dst;
  packet.protocol = protocol;
  packet.ttl = p[wire::kIpv4Ttl];
  packet.tos = p[wire::kIpv4Tos];
  packet.bytes = l4;
  packet.now_ns = now_ns;
  stats_.add(NetCounter::kRxDelivered);
  receiver->on_packet(packet);
  return RxResult{RxVerdict::kDelivered, DropReason::kNone};
}

bool NetStack::next_hop(uint32_t destination, uint32_t* hop) const {
  if (destination == 0 || ours(destination) || (destination >> 28) >= 0xe ||
      (destination >> 24) == 127 || is_our_broadcast(destination)) {
    return false;
  }
  if ((destination & netmask_) == (our_ip_ & netmask_)) {
    *hop = destination;
    return true;
  }
  if (!options_.gateway.is_v4()) return false;
  *hop = options_.gateway.v4_host_order();
  return true;
}

DropReason NetStack::l4_alloc(const IpAddress& destination, uint8_t protocol, uint32_t l4_bytes,
                              L4TxFrame* frame) {
  uint32_t hop = 0;
  DropReason reason = DropReason::kNone;
  if (!destination.is_v4() || !next_hop(destination.v4_host_order(), &hop)) {
    reason = DropReason::kTxNoRoute;
  } else if (l4_bytes > max_l4_bytes()) {
    reason = DropReason::kTxTooBig;
  }
  if (reason != DropReason::kNone) {
    stats_.add(reason);
    return reason;
  }
  const uint32_t length_bytes = std::max(wire::kEthMinFrameBytes, kL2L3Bytes + l4_bytes);
  if (!alloc_frame(length_bytes, &frame->frame)) return DropReason::kTxAllocFailed;
  frame->l4 = frame->frame.data + kL2L3Bytes;
  frame->capacity_bytes = std::min(frame->frame.capacity_bytes - kL2L3Bytes, max_l4_bytes());
  frame->source = options_.address;
  frame->destination = destination;
  frame->protocol = protocol;
  return DropReason::kNone;
}

bool NetStack::alloc(const IpAddress& destination, uint8_t protocol, uint32_t l4_bytes,
                     L4TxFrame* frame) {
  return l4_alloc(destination, protocol, l4_bytes, frame) == DropReason::kNone;
}

bool NetStack::alloc_from(const IpAddress& source, const IpAddress& destination, uint8_t protocol,
                          uint32_t l4_bytes, L4TxFrame* frame) {
  // Our own L4 code picks the source from a connection's tuple, which only ever holds one of
  // our addresses: anything else is a bug, not input.
  HERALD_CHECK(is_local(source), "L4Output::alloc_from with a source that is not ours");
  if (l4_alloc(destination, protocol, l4_bytes, frame) != DropReason::kNone) return false;
  frame->source = source;
  return true;
}

void NetStack::abort(L4TxFrame& frame) {
  HERALD_CHECK(frame.frame.data != nullptr, "L4Output::abort of a frame not allocated");
  port_.release(frame.frame);
  frame = L4TxFrame{};
}

void NetStack::send(L4TxFrame& frame, uint32_t l4_bytes, uint64_t now_ns) {
  // Misuse by our own L4 code is a bug, not input: always checked.
  HERALD_CHECK(frame.frame.data != nullptr, "L4Output::send of a frame not allocated");
  HERALD_CHECK(l4_bytes <= frame.capacity_bytes, "L4Output::send beyond the allocated frame");
  uint8_t* d = frame.frame.data;
  uint8_t* ip = d + wire::kEthHeaderBytes;
  uint8_t* l4 = ip + wire::kIpv4HeaderBytes;
  const IpAddress src = frame.source;
  const IpAddress& dst = frame.destination;

  TxOffload offload;
  offload.l2_bytes = wire::kEthHeaderBytes;
  offload.l3_bytes = wire::kIpv4HeaderBytes;
  uint32_t checksum_at = 0;
  if (frame.protocol == kIpProtocolTcp) checksum_at = wire::kTcpChecksum;
  if (frame.protocol == kIpProtocolUdp) checksum_at = wire::kUdpChecksum;
  if (checksum_at != 0) {
    HERALD_CHECK(l4_bytes >= checksum_at + 2, "TCP/UDP datagram shorter than its header");
    wire::store16(l4 + checksum_at, 0);
    const uint32_t pseudo = pseudo_header_sum(src, dst, frame.protocol, l4_bytes);
    uint16_t checksum;
    if (caps_.tx_l4_checksum) {
      checksum = checksum_fold(pseudo);
      offload.l4_checksum = true;
      offload.l4_protocol = frame.protocol;
    } else {
      checksum = checksum_finish(checksum_add(pseudo, {l4, l4_bytes}));
      // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
      if (frame.protocol == kIpProtocolUdp && checksum == 0) checksum = 0xffff;
    }
    wire::store16(l4 + checksum_at, checksum);
  }

  ip[wire::kIpv4VerIhl] = 0x45;
  ip[wire::kIpv4Tos] = options_.tos;
  wire::store16(ip + wire::kIpv4TotalLength,
                static_cast<uint16_t>(wire::kIpv4HeaderBytes + l4_bytes));
  // DF is always set, so the id only has to be unique enough for nobody (RFC 6864 §4.1).
  wire::store16(ip + wire::kIpv4Id, next_ip_id_++);
  wire::store16(ip + wire::kIpv4FlagsFragment, wire::kIpv4FlagDf);
  ip[wire::kIpv4Ttl] = options_.ttl;
  ip[wire::kIpv4Protocol] = frame.protocol;
  wire::store16(ip + wire::kIpv4Checksum, 0);
  wire::store32(ip + wire::kIpv4Src, src.v4_host_order());
  wire::store32(ip + wire::kIpv4Dst, dst.v4_host_order());
  if (caps_.tx_ipv4_checksum) {
    offload.ipv4_checksum = true;
  } else {
    wire::store16(ip + wire::kIpv4Checksum, internet_checksum({ip, wire::kIpv4HeaderBytes}));
  }

  const uint32_t used_bytes = kL2L3Bytes + l4_bytes;
  const uint32_t length_bytes = std::max(wire::kEthMinFrameBytes, used_bytes);
  std::memset(d + used_bytes, 0, length_bytes - used_bytes);
  write_eth(d, MacAddress{}, wire::kEtherTypeIpv4);

  uint32_t hop = 0;
  const bool routed = next_hop(dst.v4_host_order(), &hop);
  HERALD_CHECK(routed, "a frame from alloc() lost its route");
  const TxFrame tx = frame.frame;
  frame = L4TxFrame{};
  resolve_and_queue(hop, tx, length_bytes, offload, now_ns);
}

}  // namespace herald::net

// ICMP (RFC 792, RFC 1122 §3.2.2): echo replies and destination-unreachable messages, both
// rate-limited (RFC 1812 §4.3.2.8) so a storm costs us a bounded amount of transmit.
#include <algorithm>
#include <cstring>

#include "dataplane/net/checksum.h"
#include "dataplane/net/stack.h"
#include "dataplane/net/wire.h"

namespace herald::net {

RxResult NetStack::icmp_input(std::span<const uint8_t> datagram, uint32_t header_bytes,
                              uint64_t now_ns) {
  const auto message = datagram.subspan(header_bytes);
  if (message.size() < wire::kIcmpHeaderBytes) return drop(DropReason::kIcmpTruncated);
  // Always in software: ports offload TCP and UDP checksums, not ICMP's.
  if (!checksum_ok(message)) return drop(DropReason::kIcmpBadChecksum);
  const uint8_t type = message[wire::kIcmpType];
  const uint8_t code = message[wire::kIcmpCode];
  // Errors about our own datagrams (unreachable, time exceeded) are not acted on yet: TCP
  // recovers by retransmission (RFC 1122 §4.2.3.9 lets it).
  if (type != wire::kIcmpEchoRequest || code != 0) return drop(DropReason::kIcmpIgnoredType);
  if (message.size() > max_l4_bytes()) return drop(DropReason::kIcmpEchoTooBig);
  if (!icmp_echo_.allow(now_ns)) return drop(DropReason::kIcmpEchoRateLimited);

  const IpAddress source = IpAddress::v4(wire::load32(datagram.data() + wire::kIpv4Src));
  L4TxFrame frame;
  const auto length = static_cast<uint32_t>(message.size());
  const DropReason failed = l4_alloc(source, kIpProtocolIcmp, length, &frame);
  if (failed != DropReason::kNone) return RxResult{RxVerdict::kDropped, failed};  // counted
  // From the address pinged (one of ours: the datagram was delivered).
  frame.source = IpAddress::v4(wire::load32(datagram.data() + wire::kIpv4Dst));
  // RFC 792: the reply is the request with the type changed; identifier, sequence and data
  // are echoed. One word changed, so the verified checksum is updated (RFC 1624), not redone.
  std::memcpy(frame.l4, message.data(), length);
  frame.l4[wire::kIcmpType] = wire::kIcmpEchoReply;
  const uint16_t old_word = static_cast<uint16_t>((wire::kIcmpEchoRequest << 8) | code);
  const uint16_t new_word = static_cast<uint16_t>((wire::kIcmpEchoReply << 8) | code);
  wire::store16(
      frame.l4 + wire::kIcmpChecksum,
      checksum_update16(wire::load16(message.data() + wire::kIcmpChecksum), old_word, new_word));
  stats_.add(NetCounter::kIcmpEchoReplies);
  send(frame, length, now_ns);
  return RxResult{RxVerdict::kAnswered, DropReason::kNone};
}

void NetStack::icmp_send_unreachable(std::span<const uint8_t> datagram, uint8_t code,
                                     uint64_t now_ns) {
  if (!icmp_unreach_.allow(now_ns)) {
    stats_.add(NetCounter::kIcmpUnreachSuppressed);
    return;
  }
  // The offending datagram's header and as much data as keeps the error within 576 bytes.
  const uint32_t quote_bytes = std::min<uint32_t>(
      static_cast<uint32_t>(datagram.size()),
      wire::kIcmpErrorMaxBytes - wire::kIpv4HeaderBytes - wire::kIcmpHeaderBytes);
  const uint32_t length = std::min(wire::kIcmpHeaderBytes + quote_bytes, max_l4_bytes());
  const IpAddress source = IpAddress::v4(wire::load32(datagram.data() + wire::kIpv4Src));
  L4TxFrame frame;
  if (l4_alloc(source, kIpProtocolIcmp, length, &frame) != DropReason::kNone) return;  // counted
  frame.source = IpAddress::v4(wire::load32(datagram.data() + wire::kIpv4Dst));
  std::memset(frame.l4, 0, wire::kIcmpHeaderBytes);
  frame.l4[wire::kIcmpType] = wire::kIcmpDestUnreachable;
  frame.l4[wire::kIcmpCode] = code;
  std::memcpy(frame.l4 + wire::kIcmpHeaderBytes, datagram.data(), length - wire::kIcmpHeaderBytes);
  wire::store16(frame.l4 + wire::kIcmpChecksum, internet_checksum({frame.l4, length}));
  stats_.add(NetCounter::kIcmpUnreachSent);
  send(frame, length, now_ns);
}

}  // namespace herald::net

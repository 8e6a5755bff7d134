// NetStack's construction and its Ethernet layer: the destination MAC filter, the EtherType
// dispatch, and building and queueing frames on the port.
#include "dataplane/net/stack.h"

#include <algorithm>
#include <cstring>

#include "dataplane/net/wire.h"
#include "platform/assert/assert.h"

namespace herald::net {

std::string validate(const NetOptions& o) {
  if (!o.address.is_v4() || o.address.v4_host_order() == 0) return "address must be an IPv4 host";
  if (o.mac.is_multicast() || o.mac.is_zero()) return "mac must be a unicast address";
  if (o.prefix_length < 1 || o.prefix_length > 30) return "prefix_length must be 1..30";
  if (!o.gateway.is_none() && !o.gateway.is_v4()) return "gateway must be IPv4 or none";
  if (o.mtu_bytes < 68 || o.mtu_bytes > 9000) return "mtu_bytes must be 68..9000";
  if (o.ttl == 0) return "ttl must be 1..255";
  if (o.arp_entries < 1 || o.arp_entries > (1u << 20)) return "arp_entries must be 1..1048576";
  if (o.arp_reachable_ms < 1) return "arp_reachable_ms must be at least 1";
  if (o.arp_refresh_before_ms >= o.arp_reachable_ms)
    return "arp_refresh_before_ms must be below arp_reachable_ms";
  if (o.arp_retry_ms < 1) return "arp_retry_ms must be at least 1";
  if (o.arp_requests < 1 || o.arp_requests > 255) return "arp_requests must be 1..255";
  if (o.arp_queue_per_entry > 65535) return "arp_queue_per_entry must be 0..65535";
  if (o.arp_queue_total > (1u << 24)) return "arp_queue_total must be 0..16777216";
  if (o.address_count < 1 || o.address_count > 65536) return "address_count must be 1..65536";
  if (o.address.is_v4() && o.prefix_length >= 1 && o.prefix_length <= 30) {
    const uint32_t mask = ~uint32_t{0} << (32 - o.prefix_length);
    const uint64_t last = uint64_t{o.address.v4_host_order()} + o.address_count - 1;
    if (last > UINT32_MAX ||
        (static_cast<uint32_t>(last) & mask) != (o.address.v4_host_order() & mask) ||
        (static_cast<uint32_t>(last) & ~mask) == ~mask) {
      return "address_count takes the addresses past the subnet (or onto its broadcast)";
    }
  }
  return "";
}

namespace {
const NetOptions& checked(const NetOptions& options) {
  HERALD_CHECK(validate(options).empty(), "NetStack options must pass validate()");
  return options;
}
}  // namespace

NetStack::NetStack(const NetOptions& options, FramePort& port)
    : options_(checked(options)),
      port_(port),
      caps_(port.capabilities()),
      arp_(options.arp_entries, options.arp_queue_per_entry, options.arp_queue_total, port, stats_),
      arp_replies_(options.arp_replies_per_second, options.arp_replies_burst),
      icmp_echo_(options.icmp_echo_per_second, options.icmp_echo_burst),
      icmp_unreach_(options.icmp_unreach_per_second, options.icmp_unreach_burst),
      our_ip_(options.address.v4_host_order()),
      netmask_(~uint32_t{0} << (32 - options.prefix_length)) {}

void NetStack::set_receiver(uint8_t protocol, L4Receiver* receiver) {
  HERALD_CHECK(protocol == kIpProtocolTcp || protocol == kIpProtocolUdp,
               "L4 receivers exist for TCP and UDP only");
  (protocol == kIpProtocolTcp ? tcp_ : udp_) = receiver;
}

void NetStack::start(uint64_t now_ns) {
  (void)now_ns;
  if (!options_.gratuitous_arp) return;
  // RFC 5227 §3: an announcement is a request with sender and target both our address.
  arp_send(wire::kArpOpRequest, MacAddress::broadcast(), MacAddress{}, our_ip_, our_ip_);
}

uint32_t NetStack::introduce_to(const IpAddress& neighbour) {
  uint32_t hop = 0;
  if (!neighbour.is_v4() || !next_hop(neighbour.v4_host_order(), &hop)) return 0;
  // RFC 826: the target of a request records its sender, so one request per address of ours
  // teaches the neighbour all of them (a gratuitous announcement only refreshes known entries).
  // Broadcast: the neighbour's MAC may not be known yet; the first reply resolves it for us.
  for (uint32_t i = 0; i < options_.address_count; ++i) {
    arp_send(wire::kArpOpRequest, MacAddress::broadcast(), MacAddress{}, hop, our_ip_ + i);
  }
  return options_.address_count;
}

RxResult NetStack::receive(std::span<const uint8_t> frame, const RxMeta& meta, uint64_t now_ns) {
  if (meta.replica) return arp_replica_input(frame, now_ns);
  stats_.add(NetCounter::kRxFrames);
  stats_.add(NetCounter::kRxBytes, frame.size());
  if (frame.size() < wire::kEthHeaderBytes) return drop(DropReason::kEthTruncated);

  MacAddress dst, src;
  std::memcpy(dst.bytes.data(), frame.data() + wire::kEthDst, 6);
  std::memcpy(src.bytes.data(), frame.data() + wire::kEthSrc, 6);
  bool link_broadcast = false;
  if (dst != options_.mac) {
    if (dst.is_broadcast()) {
      link_broadcast = true;
      stats_.add(NetCounter::kRxBroadcast);
    } else if (dst.is_multicast()) {
      return drop(DropReason::kEthMulticast);
    } else {
      return drop(DropReason::kEthNotOurMac);
    }
  }
  if (src.is_multicast()) return drop(DropReason::kEthBadSource);

  const uint16_t type = wire::load16(frame.data() + wire::kEthType);
  const auto payload = frame.subspan(wire::kEthHeaderBytes);
  switch (type) {
    case wire::kEtherTypeIpv4: return ipv4_input(payload, meta, link_broadcast, now_ns);
    case wire::kEtherTypeArp: return arp_input(payload, now_ns, /*replica=*/false);
    case wire::kEtherTypeVlan:
    case wire::kEtherTypeQinQ: return drop(DropReason::kEthVlan);
    default: return drop(DropReason::kEthUnknownType);
  }
}

bool NetStack::alloc_frame(uint32_t length_bytes, TxFrame* frame) {
  if (!port_.alloc(length_bytes, frame)) {
    stats_.add(DropReason::kTxAllocFailed);
    return false;
  }
  HERALD_CHECK(frame->capacity_bytes >= length_bytes && frame->data != nullptr,
               "FramePort::alloc returned a buffer smaller than asked");
  return true;
}

void NetStack::write_eth(uint8_t* frame, const MacAddress& destination, uint16_t ether_type) const {
  std::memcpy(frame + wire::kEthDst, destination.bytes.data(), 6);
  std::memcpy(frame + wire::kEthSrc, options_.mac.bytes.data(), 6);
  wire::store16(frame + wire::kEthType, ether_type);
}

void NetStack::queue_frame(const TxFrame& frame, uint32_t length_bytes, const TxOffload& offload) {
  stats_.add(NetCounter::kTxFrames);
  stats_.add(NetCounter::kTxBytes, length_bytes);
  port_.queue(frame, length_bytes, offload);
}

bool NetStack::arp_lookup(const IpAddress& address, uint64_t now_ns, MacAddress* mac) const {
  if (!address.is_v4()) return false;
  const uint32_t i = arp_.find(address.v4_host_order());
  if (i == ArpCache::kNil) return false;
  const ArpCache::Entry& e = arp_.at(i);
  if (e.state != ArpCache::State::kReachable || now_ns >= e.expires_ns) return false;
  *mac = e.mac;
  return true;
}

}  // namespace herald::net

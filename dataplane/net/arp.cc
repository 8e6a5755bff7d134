// ARP over Ethernet for IPv4 (RFC 826): answering for our address, learning (the merge rule),
// resolving next hops with a bounded wait queue, retries, refresh before expiry, and failure.
#include <algorithm>
#include <cstring>

#include "dataplane/net/stack.h"
#include "dataplane/net/wire.h"

namespace herald::net {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;

// Not a unicast host address on any network: zero, loopback, multicast, class E, broadcast.
bool martian(uint32_t ip) {
  return ip == 0 || (ip >> 24) == 127 || (ip >> 28) >= 0xe;
}

}  // namespace

RxResult NetStack::arp_input(std::span<const uint8_t> arp, uint64_t now_ns, bool replica) {
  // A replica's rejections were counted by the lcore that received the frame.
  auto reject = [this, replica](DropReason reason) {
    return replica ? RxResult{RxVerdict::kDropped, reason} : this->drop(reason);
  };
  if (arp.size() < wire::kArpBytes) return reject(DropReason::kArpTruncated);
  const uint8_t* p = arp.data();
  if (wire::load16(p + wire::kArpHrd) != wire::kArpHardwareEthernet ||
      wire::load16(p + wire::kArpPro) != wire::kEtherTypeIpv4 || p[wire::kArpHln] != 6 ||
      p[wire::kArpPln] != 4) {
    return reject(DropReason::kArpUnsupported);
  }
  const uint16_t op = wire::load16(p + wire::kArpOp);
  if (op != wire::kArpOpRequest && op != wire::kArpOpReply)
    return reject(DropReason::kArpBadOpcode);

  MacAddress sha;
  std::memcpy(sha.bytes.data(), p + wire::kArpSha, 6);
  const uint32_t spa = wire::load32(p + wire::kArpSpa);
  const uint32_t tpa = wire::load32(p + wire::kArpTpa);
  if (sha.is_multicast() || sha.is_zero()) return reject(DropReason::kArpBadSender);
  if (ours(spa)) {
    // Someone else announces or uses our address (RFC 5227 §2.4); our own reflected frame is
    // no conflict but is not news either.
    return reject(sha == options_.mac ? DropReason::kArpBadSender
                                      : DropReason::kArpAddressConflict);
  }
  // spa 0 is an RFC 5227 probe: answered, never learned.
  const bool probe = spa == 0;
  if (!probe && (martian(spa) || is_our_broadcast(spa))) return reject(DropReason::kArpBadSender);
  if (probe && op != wire::kArpOpRequest) return reject(DropReason::kArpBadSender);

  // RFC 826 merge: a sender we already know is refreshed whoever the target is.
  uint32_t index = probe ? ArpCache::kNil : arp_.find(spa);
  if (index != ArpCache::kNil) arp_learn(index, sha, now_ns);
  if (!ours(tpa)) return reject(DropReason::kArpNotForUs);
  // We are the target: remember the sender (it is about to talk to us).
  if (!probe && index == ArpCache::kNil) {
    index = arp_.insert(spa);
    arp_learn(index, sha, now_ns);
  }
  if (op == wire::kArpOpReply && !replica) stats_.add(NetCounter::kArpRepliesReceived);
  if (op == wire::kArpOpRequest && !replica) {
    if (!arp_replies_.allow(now_ns)) return reject(DropReason::kArpReplyRateLimited);
    arp_send(wire::kArpOpReply, sha, sha, spa, tpa);  // from the address asked for
  }
  return RxResult{RxVerdict::kAnswered, DropReason::kNone};
}

RxResult NetStack::arp_replica_input(std::span<const uint8_t> frame, uint64_t now_ns) {
  stats_.add(NetCounter::kArpReplicas);
  if (frame.size() < wire::kEthHeaderBytes ||
      wire::load16(frame.data() + wire::kEthType) != wire::kEtherTypeArp) {
    return RxResult{RxVerdict::kDropped, DropReason::kNone};
  }
  MacAddress dst;
  std::memcpy(dst.bytes.data(), frame.data() + wire::kEthDst, 6);
  if (dst != options_.mac && !dst.is_broadcast())
    return RxResult{RxVerdict::kDropped, DropReason::kNone};
  return arp_input(frame.subspan(wire::kEthHeaderBytes), now_ns, /*replica=*/true);
}

void NetStack::arp_send(uint16_t op, const MacAddress& eth_destination,
                        const MacAddress& target_mac, uint32_t target_ip, uint32_t sender_ip) {
  TxFrame frame;
  if (!alloc_frame(wire::kEthMinFrameBytes, &frame)) return;
  uint8_t* d = frame.data;
  std::memset(d, 0, wire::kEthMinFrameBytes);
  write_eth(d, eth_destination, wire::kEtherTypeArp);
  uint8_t* p = d + wire::kEthHeaderBytes;
  wire::store16(p + wire::kArpHrd, wire::kArpHardwareEthernet);
  wire::store16(p + wire::kArpPro, wire::kEtherTypeIpv4);
  p[wire::kArpHln] = 6;
  p[wire::kArpPln] = 4;
  wire::store16(p + wire::kArpOp, op);
  std::memcpy(p + wire::kArpSha, options_.mac.bytes.data(), 6);
  wire::store32(p + wire::kArpSpa, sender_ip);
  std::memcpy(p + wire::kArpTha, target_mac.bytes.data(), 6);
  wire::store32(p + wire::kArpTpa, target_ip);
  stats_.add(op == wire::kArpOpRequest ? NetCounter::kArpRequestsSent
                                       : NetCounter::kArpRepliesSent);
  queue_frame(frame, wire::kEthMinFrameBytes, TxOffload{});
}

void NetStack::arp_learn(uint32_t index, const MacAddress& mac, uint64_t now_ns) {
  ArpCache::Entry& e = arp_.at(index);
  e.mac = mac;
  arp_.set_state(index, ArpCache::State::kReachable);
  e.expires_ns = now_ns + options_.arp_reachable_ms * kNsPerMs;
  e.next_request_ns = 0;
  e.requests_sent = 0;
  arp_.touch(index);
  stats_.add(NetCounter::kArpLearned);
  arp_.drain(index, [this, &mac](ArpCache::Waiting& w) {
    std::memcpy(w.frame.data + wire::kEthDst, mac.bytes.data(), 6);
    stats_.add(NetCounter::kArpReleased);
    queue_frame(w.frame, w.length_bytes, w.offload);
  });
}

void NetStack::resolve_and_queue(uint32_t next_hop, const TxFrame& frame, uint32_t length_bytes,
                                 const TxOffload& offload, uint64_t now_ns) {
  const uint64_t retry_ns = options_.arp_retry_ms * kNsPerMs;
  uint32_t index = arp_.find(next_hop);
  if (index != ArpCache::kNil) {
    ArpCache::Entry& e = arp_.at(index);
    if (e.state == ArpCache::State::kReachable && now_ns < e.expires_ns) {
      arp_.touch(index);
      std::memcpy(frame.data + wire::kEthDst, e.mac.bytes.data(), 6);
      queue_frame(frame, length_bytes, offload);
      // RFC 1122 §2.3.2.1: revalidate an entry in use before it expires, unicast to the MAC we
      // have, so traffic never stalls on a timeout; the frame went out meanwhile.
      if (now_ns + options_.arp_refresh_before_ms * kNsPerMs >= e.expires_ns &&
          now_ns >= e.next_request_ns) {
        e.next_request_ns = now_ns + retry_ns;
        arp_send(wire::kArpOpRequest, e.mac, MacAddress{}, next_hop, our_ip_);
      }
      return;
    }
    if (e.state == ArpCache::State::kReachable) {
      // Expired without a refresh answer: resolve again from scratch.
      arp_.set_state(index, ArpCache::State::kIncomplete);
      e.requests_sent = 0;
      e.next_request_ns = now_ns;
    }
  } else {
    index = arp_.insert(next_hop);
    arp_.at(index).next_request_ns = now_ns;
  }

  ArpCache::Entry& e = arp_.at(index);
  arp_.touch(index);
  if (arp_.enqueue(index, ArpCache::Waiting{frame, length_bytes, offload, ArpCache::kNil})) {
    stats_.add(NetCounter::kArpQueued);
  } else {
    port_.release(frame);
    stats_.add(DropReason::kArpQueueFull);
  }
  if (now_ns >= e.next_request_ns) {
    ++e.requests_sent;
    e.next_request_ns = now_ns + retry_ns;
    arp_send(wire::kArpOpRequest, MacAddress::broadcast(), MacAddress{}, next_hop, our_ip_);
  }
  next_arp_poll_ns_ = std::min(next_arp_poll_ns_, e.next_request_ns);
}

void NetStack::poll(uint64_t now_ns) {
  if (arp_.incomplete() == 0 || now_ns < next_arp_poll_ns_) return;
  const uint64_t retry_ns = options_.arp_retry_ms * kNsPerMs;
  uint64_t next_ns = UINT64_MAX;
  arp_.for_each([&](uint32_t index) {
    ArpCache::Entry& e = arp_.at(index);
    if (e.state != ArpCache::State::kIncomplete) return;
    if (now_ns >= e.next_request_ns) {
      if (e.requests_sent >= options_.arp_requests) {
        arp_.remove(index, DropReason::kArpResolutionFailed);
        return;
      }
      ++e.requests_sent;
      e.next_request_ns = now_ns + retry_ns;
      arp_send(wire::kArpOpRequest, MacAddress::broadcast(), MacAddress{}, e.ip, our_ip_);
    }
    next_ns = std::min(next_ns, e.next_request_ns);
  });
  next_arp_poll_ns_ = next_ns;
}

}  // namespace herald::net

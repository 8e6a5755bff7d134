// ARP resolution at its edges: waiting queues (per entry and total), retries and failure,
// expiry and refresh, eviction, gratuitous ARP, and that no port buffer is ever leaked.
#include <gtest/gtest.h>

#include "dataplane/net/stack.h"
#include "tests/unit/dataplane/net/net_test_util.h"

namespace herald::net {
namespace {

using namespace herald::net::testing;  // NOLINT(build/namespaces): test helpers only

constexpr uint64_t kMs = 1'000'000;

NetOptions options() {
  NetOptions o;
  o.mac = kOurMac;
  o.address = kOurIp;
  o.gateway = kGatewayIp;
  o.arp_reachable_ms = 10'000;
  o.arp_refresh_before_ms = 1'000;
  o.arp_retry_ms = 100;
  o.arp_requests = 3;
  o.arp_queue_per_entry = 2;
  o.arp_queue_total = 3;
  o.gratuitous_arp = true;
  return o;
}

// Sends one 20-byte UDP datagram to `to` through the L4 output path.
void send_udp(NetStack& stack, IpAddress to, uint64_t now_ns) {
  L4TxFrame f;
  ASSERT_TRUE(stack.alloc(to, kIpProtocolUdp, 20, &f));
  Bytes u = udp(kOurIp, to, 1, 2, Bytes(12, 0x42), false);
  std::copy(u.begin(), u.end(), f.l4);
  stack.send(f, 20, now_ns);
}

Bytes reply_from(MacAddress mac, IpAddress from) {
  return eth(kOurMac, mac, 0x0806,
             arp(2, mac, from.v4_host_order(), kOurMac, kOurIp.v4_host_order()));
}

bool is_arp_request_for(const FakePort::Sent& s, IpAddress who, MacAddress eth_dst) {
  return s.bytes.size() == 60 && get16(s.bytes, 12) == 0x0806 && get16(s.bytes, 14 + 6) == 1 &&
         get32(s.bytes, 14 + 24) == who.v4_host_order() && mac_at(s.bytes, 0) == eth_dst;
}

TEST(Arp, GratuitousAnnouncementAtStart) {
  FakePort port;
  NetStack stack(options(), port);
  stack.start(0);
  ASSERT_EQ(port.sent.size(), 1u);
  const Bytes& f = port.sent[0].bytes;
  EXPECT_TRUE(is_arp_request_for(port.sent[0], kOurIp, MacAddress::broadcast()));
  EXPECT_EQ(get32(f, 14 + 14), kOurIp.v4_host_order()) << "sender == target (RFC 5227)";
  NetOptions quiet = options();
  quiet.gratuitous_arp = false;
  FakePort port2;
  NetStack stack2(quiet, port2);
  stack2.start(0);
  EXPECT_TRUE(port2.sent.empty());
}

TEST(Arp, ResolvesThenReleasesWaitingFramesInOrder) {
  FakePort port;
  NetStack stack(options(), port);
  send_udp(stack, kPeerIp, 0);
  send_udp(stack, kPeerIp, 1);
  ASSERT_EQ(port.sent.size(), 1u) << "one request, frames wait";
  EXPECT_TRUE(is_arp_request_for(port.sent[0], kPeerIp, MacAddress::broadcast()));
  EXPECT_EQ(stack.stats().count(NetCounter::kArpQueued), 2u);
  EXPECT_EQ(stack.receive(reply_from(kPeerMac, kPeerIp), {}, 5 * kMs).verdict,
            RxVerdict::kAnswered);
  ASSERT_EQ(port.sent.size(), 3u);
  for (int i = 1; i <= 2; ++i) {
    EXPECT_EQ(mac_at(port.sent[i].bytes, 0), kPeerMac);
    EXPECT_EQ(get16(port.sent[i].bytes, 14 + 4), i - 1) << "IP ids in send order";
  }
  MacAddress mac;
  EXPECT_TRUE(stack.arp_lookup(kPeerIp, 5 * kMs, &mac));
  EXPECT_EQ(mac, kPeerMac);
  send_udp(stack, kPeerIp, 6 * kMs);
  EXPECT_EQ(port.sent.size(), 4u) << "resolved: straight out";
  EXPECT_EQ(port.outstanding(), 0u);
}

TEST(Arp, OffLinkGoesThroughTheGateway) {
  FakePort port;
  NetStack stack(options(), port);
  send_udp(stack, IpAddress::v4(198, 51, 100, 7), 0);
  ASSERT_EQ(port.sent.size(), 1u);
  EXPECT_TRUE(is_arp_request_for(port.sent[0], kGatewayIp, MacAddress::broadcast()));
  stack.receive(reply_from(kGatewayMac, kGatewayIp), {}, 1);
  ASSERT_EQ(port.sent.size(), 2u);
  EXPECT_EQ(mac_at(port.sent[1].bytes, 0), kGatewayMac);
  EXPECT_EQ(get32(port.sent[1].bytes, 14 + 16), IpAddress::v4(198, 51, 100, 7).v4_host_order());
}

TEST(Arp, WaitQueueLimitsPerEntryAndTotal) {
  FakePort port;
  NetStack stack(options(), port);  // 2 per entry, 3 in all
  send_udp(stack, kPeerIp, 0);
  send_udp(stack, kPeerIp, 0);
  send_udp(stack, kPeerIp, 0);  // third on one entry: over
  EXPECT_EQ(stack.stats().drop(DropReason::kArpQueueFull), 1u);
  send_udp(stack, IpAddress::v4(10, 0, 0, 3), 0);
  send_udp(stack, IpAddress::v4(10, 0, 0, 3), 0);  // fourth in all: over
  EXPECT_EQ(stack.stats().drop(DropReason::kArpQueueFull), 2u);
  EXPECT_EQ(stack.stats().count(NetCounter::kArpQueued), 3u);
  EXPECT_EQ(port.outstanding(), 3u) << "exactly the waiting frames";
  EXPECT_EQ(port.released, 2u);
}

TEST(Arp, ZeroQueueStillResolves) {
  NetOptions o = options();
  o.arp_queue_per_entry = 0;
  FakePort port;
  NetStack stack(o, port);
  send_udp(stack, kPeerIp, 0);
  EXPECT_EQ(stack.stats().drop(DropReason::kArpQueueFull), 1u);
  ASSERT_EQ(port.sent.size(), 1u);
  EXPECT_TRUE(is_arp_request_for(port.sent[0], kPeerIp, MacAddress::broadcast()));
}

TEST(Arp, RetriesThenFailsAndDropsWaitingFrames) {
  FakePort port;
  NetStack stack(options(), port);  // 3 requests, 100 ms apart
  send_udp(stack, kPeerIp, 0);
  send_udp(stack, kPeerIp, 0);
  stack.poll(99 * kMs);
  EXPECT_EQ(stack.stats().count(NetCounter::kArpRequestsSent), 1u) << "not yet";
  stack.poll(100 * kMs);
  stack.poll(150 * kMs);
  EXPECT_EQ(stack.stats().count(NetCounter::kArpRequestsSent), 2u);
  stack.poll(200 * kMs);
  EXPECT_EQ(stack.stats().count(NetCounter::kArpRequestsSent), 3u);
  EXPECT_EQ(stack.arp_cache().size(), 1u);
  stack.poll(299 * kMs);
  EXPECT_EQ(stack.stats().drop(DropReason::kArpResolutionFailed), 0u);
  stack.poll(300 * kMs);
  EXPECT_EQ(stack.stats().drop(DropReason::kArpResolutionFailed), 2u);
  EXPECT_EQ(stack.arp_cache().size(), 0u);
  EXPECT_EQ(stack.arp_cache().incomplete(), 0u);
  EXPECT_EQ(port.outstanding(), 0u);
  for (const auto& s : port.sent)
    EXPECT_TRUE(is_arp_request_for(s, kPeerIp, MacAddress::broadcast()));
  // A late reply is still addressed to us, so it is learned (RFC 826).
  stack.receive(reply_from(kPeerMac, kPeerIp), {}, 301 * kMs);
  EXPECT_EQ(stack.arp_cache().size(), 1u);
}

TEST(Arp, RefreshesBeforeExpiryAndResolvesAgainAfter) {
  FakePort port;
  NetStack stack(options(), port);  // reachable 10 s, refresh in the last 1 s
  stack.receive(reply_from(kPeerMac, kPeerIp), {}, 0);
  send_udp(stack, kPeerIp, 8'999 * kMs);
  ASSERT_EQ(port.sent.size(), 1u) << "fresh: no refresh yet";
  send_udp(stack, kPeerIp, 9'000 * kMs);
  ASSERT_EQ(port.sent.size(), 3u) << "sent, and a unicast refresh request";
  EXPECT_EQ(get16(port.sent[1].bytes, 12), 0x0800);
  EXPECT_TRUE(is_arp_request_for(port.sent[2], kPeerIp, kPeerMac));
  send_udp(stack, kPeerIp, 9'050 * kMs);
  EXPECT_EQ(port.sent.size(), 4u) << "refresh not repeated within the retry interval";
  // No answer: at 10 s the entry expires and the next frame waits on a broadcast request.
  send_udp(stack, kPeerIp, 10'000 * kMs);
  ASSERT_EQ(port.sent.size(), 5u);
  EXPECT_TRUE(is_arp_request_for(port.sent[4], kPeerIp, MacAddress::broadcast()));
  MacAddress mac;
  EXPECT_FALSE(stack.arp_lookup(kPeerIp, 10'000 * kMs, &mac));
  stack.receive(reply_from(kPeerMac, kPeerIp), {}, 10'001 * kMs);
  EXPECT_EQ(port.sent.size(), 6u);
  EXPECT_TRUE(stack.arp_lookup(kPeerIp, 10'001 * kMs, &mac));
}

TEST(Arp, EvictsLeastRecentlyUsed) {
  NetOptions o = options();
  o.arp_entries = 2;
  FakePort port;
  NetStack stack(o, port);
  const IpAddress a = IpAddress::v4(10, 0, 0, 3), b = IpAddress::v4(10, 0, 0, 4),
                  c = IpAddress::v4(10, 0, 0, 5);
  stack.receive(reply_from(kPeerMac, a), {}, 0);
  EXPECT_EQ(stack.arp_cache().size(), 1u) << "a reply addressed to us is learned";
  send_udp(stack, b, 1);  // waits on b
  send_udp(stack, a, 2);  // a is used: b is now the coldest
  send_udp(stack, c, 3);  // evicts b with its waiting frame
  EXPECT_EQ(stack.stats().count(NetCounter::kArpEvictions), 1u);
  EXPECT_EQ(stack.stats().drop(DropReason::kArpEvicted), 1u);
  EXPECT_EQ(stack.arp_cache().size(), 2u);
  MacAddress mac;
  EXPECT_TRUE(stack.arp_lookup(a, 4, &mac));
  EXPECT_EQ(port.outstanding(), 1u) << "only c's frame waits";
}

TEST(Arp, KnownSenderRefreshedByAnyArp) {
  FakePort port;
  NetStack stack(options(), port);
  stack.receive(reply_from(kPeerMac, kPeerIp), {}, 0);
  // The peer moves to a new MAC and says so to someone else: RFC 826 merge still applies.
  const MacAddress moved{{0x02, 0, 0, 0, 0, 0x22}};
  const RxResult r =
      stack.receive(eth(MacAddress::broadcast(), moved, 0x0806,
                        arp(1, moved, kPeerIp.v4_host_order(), MacAddress{}, 0x0a000009)),
                    {}, 1);
  EXPECT_EQ(r.reason, DropReason::kArpNotForUs);
  MacAddress mac;
  ASSERT_TRUE(stack.arp_lookup(kPeerIp, 2, &mac));
  EXPECT_EQ(mac, moved);
}

TEST(Arp, DestructorReturnsWaitingBuffers) {
  FakePort port;
  {
    NetStack stack(options(), port);
    send_udp(stack, kPeerIp, 0);
    EXPECT_EQ(port.outstanding(), 1u);
  }
  EXPECT_EQ(port.outstanding(), 0u);
}

}  // namespace
}  // namespace herald::net

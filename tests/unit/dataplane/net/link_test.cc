// Two stacks over a simulated link in virtual time, with seeded impairment on both sides of
// both ports: ARP resolves through loss by retrying, datagrams cross, and a seed replays the
// same run exactly (what the TCP simulation tests build on).
#include <gtest/gtest.h>

#include <memory>

#include "dataplane/net/impairment.h"
#include "dataplane/net/stack.h"
#include "tests/unit/dataplane/net/net_test_util.h"

namespace herald::net {
namespace {

using namespace herald::net::testing;  // NOLINT(build/namespaces): test helpers only

constexpr uint64_t kUs = 1000;

struct Node {
  Node(MacAddress mac, IpAddress ip, const PortImpairmentOptions& impair)
      : tx(impair.tx, wire), stack(options(mac, ip), tx), rx(impair.rx) {
    stack.set_receiver(kIpProtocolUdp, &udp);
  }
  static NetOptions options(MacAddress mac, IpAddress ip) {
    NetOptions o;
    o.mac = mac;
    o.address = ip;
    o.arp_retry_ms = 2;
    o.arp_requests = 20;
    return o;
  }
  FakePort wire;  // what this node put on the wire, taken by the link each step
  ImpairedPort tx;
  NetStack stack;
  ImpairedRx rx;
  RecordingReceiver udp;
};

struct RunResult {
  std::vector<Bytes> delivered;  // at B, in order
  uint64_t arp_requests_a = 0;
  uint64_t impaired_rx_b = 0;
};

RunResult run(const PortImpairmentOptions& impair, uint32_t datagrams) {
  Node a(kPeerMac, kPeerIp, impair), b(kOurMac, kOurIp, impair);
  a.stack.start(0);
  b.stack.start(0);
  auto carry = [](Node& from, Node& to, uint64_t now) {
    auto deliver = [&](std::span<const uint8_t> f, const RxMeta& m) {
      to.stack.receive(f, m, now);
    };
    to.rx.release_due(now, deliver);
    std::vector<FakePort::Sent> frames;
    frames.swap(from.wire.sent);
    for (const auto& f : frames) to.rx.receive(f.bytes, {}, now, deliver);
  };
  uint32_t sent = 0;
  for (uint64_t now = 0; now < 400'000 * kUs; now += 100 * kUs) {
    for (Node* n : {&a, &b}) {
      n->tx.release_due(now);
      n->stack.poll(now);
    }
    if (sent < datagrams && now % (1000 * kUs) == 0) {
      L4TxFrame f;
      if (a.stack.alloc(kOurIp, kIpProtocolUdp, 12, &f)) {
        Bytes u = udp(kPeerIp, kOurIp, 1, 2, Bytes{static_cast<uint8_t>(sent), 0, 0, 0}, false);
        std::copy(u.begin(), u.end(), f.l4);
        a.stack.send(f, 12, now);
      }
      ++sent;
    }
    carry(a, b, now);
    carry(b, a, now);
  }
  EXPECT_EQ(a.wire.outstanding() + b.wire.outstanding(), 0u) << "no buffer leaked";
  RunResult r;
  for (const auto& g : b.udp.got) r.delivered.push_back(g.bytes);
  r.arp_requests_a = a.stack.stats().count(NetCounter::kArpRequestsSent);
  r.impaired_rx_b = b.rx.stats().count(Impairment::kDropped);
  return r;
}

TEST(Link, CleanLinkDeliversEverythingInOrder) {
  const RunResult r = run({}, 50);
  ASSERT_EQ(r.delivered.size(), 50u) << "the first waits on ARP; none is lost";
  for (uint32_t i = 0; i < 50; ++i) EXPECT_EQ(r.delivered[i][8], i);
}

TEST(Link, ImpairedLinkIsLossyButReplaysFromItsSeed) {
  PortImpairmentOptions impair;
  for (ImpairmentOptions* o : {&impair.rx, &impair.tx}) {
    o->drop_ppm = 150'000;
    o->duplicate_ppm = 50'000;
    o->reorder_ppm = 50'000;
    o->delay_ppm = 100'000;
    o->delay_us = 700;
    o->delay_jitter_us = 300;
    o->corrupt_ppm = 50'000;
  }
  impair.rx.seed = 1234;
  impair.tx.seed = 5678;
  const RunResult first = run(impair, 200);
  const RunResult again = run(impair, 200);
  EXPECT_EQ(first.delivered, again.delivered);
  EXPECT_EQ(first.arp_requests_a, again.arp_requests_a);
  EXPECT_GT(first.delivered.size(), 50u);
  EXPECT_LT(first.delivered.size(), 240u);
  EXPECT_GT(first.impaired_rx_b, 0u);

  impair.rx.seed = 99;
  const RunResult other = run(impair, 200);
  EXPECT_NE(other.delivered, first.delivered);
}

}  // namespace
}  // namespace herald::net

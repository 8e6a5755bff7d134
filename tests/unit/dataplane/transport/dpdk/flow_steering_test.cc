// Flow steering (dataplane/transport/dpdk/flow_steering.h): the Toeplitz hash against
// Microsoft's published RSS verification vectors and DPDK's own rte_softrss, the symmetric key's
// property, the indirection table, and which queue owns every kind of frame (malformed included).
#include "dataplane/transport/dpdk/flow_steering.h"

#include <rte_thash.h>

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace herald::dataplane::dpdk {
namespace {

// The key of Microsoft's "Verifying the RSS Hash Calculation" (also DPDK's test_thash.c).
constexpr std::array<uint8_t, kRssKeyBytes> kMicrosoftKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

uint32_t ip(int a, int b, int c, int d) {
  return uint32_t(a) << 24 | uint32_t(b) << 16 | uint32_t(c) << 8 | uint32_t(d);
}

std::vector<uint8_t> tuple_bytes(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  std::vector<uint8_t> b;
  for (uint32_t v : {src, dst}) {
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(v >> shift));
  }
  for (uint16_t v : {sport, dport}) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
  }
  return b;
}

TEST(Toeplitz, MatchesMicrosoftsVerificationVectors) {
  struct Vector {
    uint32_t src, dst;
    uint16_t sport, dport;
    uint32_t ip_only, with_ports;
  };
  const Vector vectors[] = {
      {ip(66, 9, 149, 187), ip(161, 142, 100, 80), 2794, 1766, 0x323e8fc2, 0x51ccc178},
      {ip(199, 92, 111, 2), ip(65, 69, 140, 83), 14230, 4739, 0xd718262a, 0xc626b0ea},
      {ip(24, 19, 198, 95), ip(12, 22, 207, 184), 12898, 38024, 0xd2d0a5de, 0x5c2b394a},
      {ip(38, 27, 205, 30), ip(209, 142, 163, 6), 48228, 2217, 0x82989176, 0xafc7327f},
      {ip(153, 39, 163, 191), ip(202, 188, 127, 2), 44251, 1303, 0x5d1809c5, 0x10e828a2},
  };
  for (const Vector& v : vectors) {
    const std::vector<uint8_t> full = tuple_bytes(v.src, v.dst, v.sport, v.dport);
    EXPECT_EQ(toeplitz_hash(kMicrosoftKey, full), v.with_ports);
    EXPECT_EQ(toeplitz_hash(kMicrosoftKey, std::span<const uint8_t>(full).first(8)), v.ip_only);
  }
}

TEST(Toeplitz, TheTableDrivenHashIsDpdksSoftRssUnderTheSymmetricKey) {
  const FlowSteering steering(4);
  std::mt19937 rng(7);
  for (int i = 0; i < 10'000; ++i) {
    const uint32_t src = rng(), dst = rng();
    const auto sport = static_cast<uint16_t>(rng()), dport = static_cast<uint16_t>(rng());
    uint32_t words[3] = {src, dst, uint32_t{sport} << 16 | dport};
    const uint32_t dpdk = rte_softrss(words, 3, kSymmetricRssKey.data());
    ASSERT_EQ(steering.hash(src, dst, sport, dport), dpdk);
    ASSERT_EQ(steering.hash(src, dst), rte_softrss(words, 2, kSymmetricRssKey.data()));
    ASSERT_EQ(toeplitz_hash(kSymmetricRssKey, tuple_bytes(src, dst, sport, dport)), dpdk);
  }
}

TEST(Toeplitz, TheSymmetricKeyHashesBothDirectionsAlike) {
  const FlowSteering steering(2);
  std::mt19937 rng(11);
  for (int i = 0; i < 10'000; ++i) {
    const uint32_t a = rng(), b = rng();
    const auto pa = static_cast<uint16_t>(rng()), pb = static_cast<uint16_t>(rng());
    ASSERT_EQ(steering.hash(a, b, pa, pb), steering.hash(b, a, pb, pa));
  }
  // Microsoft's key is not symmetric: the property is the key's, not the code's.
  const std::vector<uint8_t> there = tuple_bytes(ip(10, 0, 0, 1), ip(10, 0, 0, 2), 40000, 5222);
  const std::vector<uint8_t> back = tuple_bytes(ip(10, 0, 0, 2), ip(10, 0, 0, 1), 5222, 40000);
  EXPECT_NE(toeplitz_hash(kMicrosoftKey, there), toeplitz_hash(kMicrosoftKey, back));
}

TEST(FlowSteering, TheTableSpreadsQueuesRoundRobinAndFlowsEvenly) {
  const FlowSteering steering(3, 128);
  ASSERT_EQ(steering.table_size(), 128);
  for (uint16_t i = 0; i < 128; ++i) EXPECT_EQ(steering.table()[i], i % 3);
  // 30,000 clients of one server port: each queue gets its share within 5%.
  std::vector<int> per_queue(3);
  for (uint32_t c = 0; c < 30'000; ++c) {
    ++per_queue[steering.queue_for(ip(10, 1, 0, 0) + c / 100, ip(10, 0, 0, 1),
                                   static_cast<uint16_t>(32768 + c), 5222)];
  }
  for (int n : per_queue) EXPECT_NEAR(n, 10'000, 500);
}

TEST(FlowSteeringDeathTest, RefusesATableThatCannotHoldTheQueues) {
  EXPECT_DEATH(FlowSteering(0), "needs a queue");
  EXPECT_DEATH(FlowSteering(4, 2), "power of two");
  EXPECT_DEATH(FlowSteering(2, 96), "power of two");
}

// Frames as the port hands them over. `extra` zero bytes follow the Ethernet header (sized
// at once: growing a 14-byte vector trips GCC 12's -O3 -Warray-bounds false positive).
std::vector<uint8_t> ethernet(uint16_t type, size_t extra = 0) {
  std::vector<uint8_t> f(14 + extra, 0);
  f[12] = static_cast<uint8_t>(type >> 8);
  f[13] = static_cast<uint8_t>(type);
  return f;
}

void put32(std::vector<uint8_t>& f, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) f[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// Ethernet + IPv4 (20 bytes, or more with options) + the first bytes of a TCP/UDP header.
std::vector<uint8_t> ipv4_frame(uint8_t protocol, uint32_t src, uint32_t dst, uint16_t sport,
                                uint16_t dport, uint8_t ihl = 5, uint16_t fragment = 0) {
  const size_t ip_at = 14;
  std::vector<uint8_t> f = ethernet(0x0800, ihl * 4u + 20);
  f[ip_at] = static_cast<uint8_t>(0x40 | ihl);
  f[ip_at + 6] = static_cast<uint8_t>(fragment >> 8);
  f[ip_at + 7] = static_cast<uint8_t>(fragment);
  f[ip_at + 9] = protocol;
  put32(f, ip_at + 12, src);
  put32(f, ip_at + 16, dst);
  const size_t l4 = ip_at + ihl * 4u;
  f[l4] = static_cast<uint8_t>(sport >> 8);
  f[l4 + 1] = static_cast<uint8_t>(sport);
  f[l4 + 2] = static_cast<uint8_t>(dport >> 8);
  f[l4 + 3] = static_cast<uint8_t>(dport);
  return f;
}

using Kind = FlowSteering::Owner::Kind;

TEST(FlowSteering, TcpAndUdpGoToTheirFlowsQueueArpToEveryoneTheRestStays) {
  const FlowSteering steering(2);
  const uint32_t client = ip(10, 9, 0, 2), server = ip(10, 9, 0, 1);
  // Find a client port for each queue, so both answers are exercised.
  for (uint16_t want = 0; want < 2; ++want) {
    uint16_t port = 40000;
    while (steering.queue_for(client, server, port, 5222) != want) ++port;
    for (uint8_t protocol : {uint8_t{6}, uint8_t{17}}) {
      const auto owner = steering.owner(ipv4_frame(protocol, client, server, port, 5222));
      EXPECT_EQ(owner.kind, Kind::kQueue);
      EXPECT_EQ(owner.queue, want);
      // Options move the ports, not the answer.
      const auto with_options =
          steering.owner(ipv4_frame(protocol, client, server, port, 5222, /*ihl=*/7));
      EXPECT_EQ(with_options.kind, Kind::kQueue);
      EXPECT_EQ(with_options.queue, want);
    }
    // Our own reply direction hashes alike (the symmetric key): what an active open relies on.
    EXPECT_EQ(steering.owner(ipv4_frame(6, server, client, 5222, port)).queue, want);
  }
  EXPECT_EQ(steering.owner(ethernet(0x0806)).kind, Kind::kEvery);  // ARP
  EXPECT_EQ(steering.owner(ethernet(0x86dd)).kind, Kind::kLocal);  // IPv6: not ours
  EXPECT_EQ(steering.owner(ipv4_frame(1, client, server, 0x0800, 0)).kind,
            Kind::kLocal);  // ICMP echo
}

TEST(FlowSteering, AnIcmpErrorGoesToTheQueueOfTheConnectionItIsAbout) {
  const FlowSteering steering(2);
  const uint32_t us = ip(10, 9, 0, 1), peer = ip(10, 9, 0, 2), router = ip(10, 9, 0, 254);
  for (uint16_t want = 0; want < 2; ++want) {
    uint16_t port = 50000;
    while (steering.queue_for(peer, us, port, 5222) != want) ++port;
    // Fragmentation needed (3/4) from a router, quoting our segment us:5222 -> peer:port.
    std::vector<uint8_t> error = ipv4_frame(1, router, us, 0, 0);
    const size_t icmp = 14 + 20;
    error.resize(icmp + 8);
    error[icmp] = 3;
    error[icmp + 1] = 4;
    std::vector<uint8_t> quoted = ipv4_frame(6, us, peer, 5222, port);
    error.insert(error.end(), quoted.begin() + 14, quoted.begin() + 14 + 20 + 8);
    const auto owner = steering.owner(error);
    EXPECT_EQ(owner.kind, Kind::kQueue);
    EXPECT_EQ(owner.queue, want);
    // Cut inside the quoted ports: stays where it arrived.
    error.resize(icmp + 8 + 20 + 3);
    EXPECT_EQ(steering.owner(error).kind, Kind::kLocal);
  }
}

TEST(FlowSteering, MalformedAndFragmentedFramesStayWhereTheyArrived) {
  const FlowSteering steering(2);
  const std::vector<uint8_t> good = ipv4_frame(6, ip(10, 0, 0, 2), ip(10, 0, 0, 1), 1234, 5222);
  // Every truncation of a good frame is answered without reading past it (ASan checks).
  for (size_t n = 0; n < good.size(); ++n) {
    const auto owner = steering.owner(std::span<const uint8_t>(good).first(n));
    if (n < 14 + 20 + 4) {
      EXPECT_EQ(owner.kind, Kind::kLocal) << n;
    }
  }
  std::vector<uint8_t> bad = good;
  bad[14] = 0x45 - 0x40 + 0x60;  // version 6 in an IPv4 frame
  EXPECT_EQ(steering.owner(bad).kind, Kind::kLocal);
  bad = good;
  bad[14] = 0x44;  // IHL 4: shorter than a header
  EXPECT_EQ(steering.owner(bad).kind, Kind::kLocal);
  bad = good;
  bad[14] = 0x4f;  // IHL 15: longer than the frame
  EXPECT_EQ(steering.owner(bad).kind, Kind::kLocal);
  // Fragments: more-fragments set, or a non-zero offset (only the first has ports).
  EXPECT_EQ(steering.owner(ipv4_frame(6, 1, 2, 3, 4, 5, 0x2000)).kind, Kind::kLocal);
  EXPECT_EQ(steering.owner(ipv4_frame(6, 1, 2, 3, 4, 5, 0x0010)).kind, Kind::kLocal);
  // Don't-fragment is not a fragment.
  EXPECT_EQ(steering.owner(ipv4_frame(6, 1, 2, 3, 4, 5, 0x4000)).kind, Kind::kQueue);
}

}  // namespace
}  // namespace herald::dataplane::dpdk

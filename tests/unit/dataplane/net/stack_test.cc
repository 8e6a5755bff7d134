// Table-driven packet tests for NetStack (Ethernet, ARP, IPv4, ICMP, L4 dispatch): a frame in,
// the verdict and drop reason, and the frames that came out; then the output path and rate
// limits.
#include "dataplane/net/stack.h"

#include <gtest/gtest.h>

#include <functional>
#include <ostream>
#include <string>

#include "tests/unit/dataplane/net/net_test_util.h"

namespace herald::net {
namespace {

using namespace herald::net::testing;  // NOLINT(build/namespaces): test helpers only

NetOptions test_options() {
  NetOptions o;
  o.mac = kOurMac;
  o.address = kOurIp;
  o.prefix_length = 24;
  o.gateway = kGatewayIp;
  return o;
}

// A stack that already knows the peer's MAC (it asked us, so we learned it).
struct Fixture {
  explicit Fixture(NetOptions o = test_options()) : stack(o, port) {
    const RxResult r = stack.receive(
        eth(MacAddress::broadcast(), kPeerMac, 0x0806,
            arp(1, kPeerMac, kPeerIp.v4_host_order(), MacAddress{}, kOurIp.v4_host_order())),
        RxMeta{}, 0);
    EXPECT_EQ(r.verdict, RxVerdict::kAnswered);
    port.sent.clear();
  }
  FakePort port;
  NetStack stack;
};

struct Case {
  std::string name;
  Bytes frame;
  RxVerdict verdict;
  DropReason reason = DropReason::kNone;
  size_t frames_out = 0;
  RxMeta meta = {};
  // Extra checks on what came out.
  std::function<void(const FakePort&)> check = nullptr;
};

// gtest prints a failing parameter; the name says which row it was.
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

Bytes with(Bytes b, size_t at, uint8_t v) {
  b[at] = v;
  return b;
}
Bytes truncated(Bytes b, size_t n) {
  b.resize(n);
  return b;
}
Bytes padded(Bytes b, size_t n) {
  b.resize(n, 0);
  return b;
}
uint32_t ip(IpAddress a) {
  return a.v4_host_order();
}

const Bytes kEcho = icmp(8, 0, 0x77, 1, Bytes{'p', 'i', 'n', 'g'});
const Bytes kEchoFrame = peer_ip_frame(1, kEcho);

void expect_echo_reply(const FakePort& port) {
  ASSERT_EQ(port.sent.size(), 1u);
  const Bytes& f = port.sent[0].bytes;
  EXPECT_EQ(mac_at(f, 0), kPeerMac);
  EXPECT_EQ(mac_at(f, 6), kOurMac);
  EXPECT_EQ(get16(f, 12), 0x0800);
  EXPECT_EQ(get32(f, 14 + 12), ip(kOurIp));
  EXPECT_EQ(get32(f, 14 + 16), ip(kPeerIp));
  EXPECT_EQ(f[14 + 8], 64) << "our TTL";
  EXPECT_EQ(naive_sum({f.data() + 14, 20}), 0xffff) << "IPv4 header checksum";
  const size_t icmp_len = get16(f, 16) - 20u;
  const Bytes reply(f.begin() + 34, f.begin() + 34 + static_cast<long>(icmp_len));
  EXPECT_EQ(reply[0], 0) << "echo reply";
  EXPECT_EQ(naive_sum(reply), 0xffff) << "ICMP checksum (RFC 1624 update)";
  EXPECT_EQ(Bytes(reply.begin() + 4, reply.end()), Bytes(kEcho.begin() + 4, kEcho.end()));
  EXPECT_GE(f.size(), 60u) << "padded to the Ethernet minimum";
}

void expect_unreachable(const FakePort& port, uint8_t code) {
  ASSERT_EQ(port.sent.size(), 1u);
  const Bytes& f = port.sent[0].bytes;
  EXPECT_EQ(mac_at(f, 0), kPeerMac);
  EXPECT_EQ(f[14 + 9], 1) << "ICMP";
  EXPECT_EQ(f[34], 3) << "destination unreachable";
  EXPECT_EQ(f[35], code);
  const size_t icmp_len = get16(f, 16) - 20u;
  EXPECT_EQ(naive_sum({f.data() + 34, icmp_len}), 0xffff);
  EXPECT_EQ(f[34 + 8], 0x45) << "quotes the offending IP header";
  EXPECT_EQ(get32(f, 34 + 8 + 12), ip(kPeerIp));
}

std::vector<Case> cases() {
  const Bytes arp_req = eth(MacAddress::broadcast(), kPeerMac, 0x0806,
                            arp(1, kPeerMac, ip(kPeerIp), MacAddress{}, ip(kOurIp)));
  const MacAddress mcast{{0x01, 0x00, 0x5e, 0, 0, 1}};
  const Bytes ip_echo = ipv4(kPeerIp, kOurIp, 1, kEcho);
  auto ip_frame = [](const Bytes& ipb) { return eth(kOurMac, kPeerMac, 0x0800, ipb); };
  // An IPv4 header with its checksum fixed after a field was changed.
  auto ip_fixed = [](Bytes ipb, size_t at, uint8_t v) {
    ipb[at] = v;
    const size_t header = (ipb[0] & 0xf) * 4u;
    if (header >= 20 && header <= ipb.size()) {
      put16(ipb, 10, 0);
      put16(ipb, 10, naive_checksum({ipb.data(), header}));
    }
    return eth(kOurMac, kPeerMac, 0x0800, ipb);
  };
  const Bytes udp_bytes = udp(kPeerIp, kOurIp, 5000, 53, Bytes{1, 2, 3});
  const Bytes tcp_bytes = tcp(kPeerIp, kOurIp, 40000, 443, Bytes{});
  Bytes bad_udp = udp_bytes;
  bad_udp[8] ^= 1;
  Bytes udp_no_sum = udp(kPeerIp, kOurIp, 5000, 53, Bytes{1, 2, 3}, false);
  Bytes udp_len_lies = udp_bytes;
  put16(udp_len_lies, 4, 200);
  Bytes bad_tcp = tcp_bytes;
  bad_tcp[4] ^= 0x80;
  Bytes bad_icmp = kEcho;
  bad_icmp[9] ^= 1;

  return {
      // Ethernet
      {"eth_truncated", truncated(kEchoFrame, 13), RxVerdict::kDropped, DropReason::kEthTruncated},
      {"eth_empty", Bytes{}, RxVerdict::kDropped, DropReason::kEthTruncated},
      {"eth_other_unicast", eth(kPeerMac, kGatewayMac, 0x0800, ip_echo), RxVerdict::kDropped,
       DropReason::kEthNotOurMac},
      {"eth_multicast", eth(mcast, kPeerMac, 0x0800, ip_echo), RxVerdict::kDropped,
       DropReason::kEthMulticast},
      {"eth_group_source", eth(kOurMac, mcast, 0x0800, ip_echo), RxVerdict::kDropped,
       DropReason::kEthBadSource},
      {"eth_vlan", eth(kOurMac, kPeerMac, 0x8100, ip_echo), RxVerdict::kDropped,
       DropReason::kEthVlan},
      {"eth_qinq", eth(kOurMac, kPeerMac, 0x88a8, ip_echo), RxVerdict::kDropped,
       DropReason::kEthVlan},
      {"eth_ipv6", eth(kOurMac, kPeerMac, 0x86dd, ip_echo), RxVerdict::kDropped,
       DropReason::kEthUnknownType},
      {"eth_header_only", eth(kOurMac, kPeerMac, 0x0800, Bytes{}), RxVerdict::kDropped,
       DropReason::kIpv4Truncated},

      // ARP
      {"arp_request_for_us",
       arp_req,
       RxVerdict::kAnswered,
       DropReason::kNone,
       1,
       {},
       [](const FakePort& p) {
         const Bytes& f = p.sent[0].bytes;
         EXPECT_EQ(f.size(), 60u);
         EXPECT_EQ(mac_at(f, 0), kPeerMac);
         EXPECT_EQ(get16(f, 12), 0x0806);
         EXPECT_EQ(get16(f, 14 + 6), 2) << "reply";
         EXPECT_EQ(mac_at(f, 14 + 8), kOurMac);
         EXPECT_EQ(get32(f, 14 + 14), ip(kOurIp));
         EXPECT_EQ(mac_at(f, 14 + 18), kPeerMac);
         EXPECT_EQ(get32(f, 14 + 24), ip(kPeerIp));
       }},
      {"arp_probe_answered",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, kPeerMac, 0, MacAddress{}, ip(kOurIp))),
       RxVerdict::kAnswered, DropReason::kNone, 1},
      {"arp_reply_from_zero",
       eth(kOurMac, kPeerMac, 0x0806, arp(2, kPeerMac, 0, kOurMac, ip(kOurIp))),
       RxVerdict::kDropped, DropReason::kArpBadSender},
      {"arp_reply_for_us",
       eth(kOurMac, kPeerMac, 0x0806, arp(2, kPeerMac, ip(kPeerIp), kOurMac, ip(kOurIp))),
       RxVerdict::kAnswered, DropReason::kNone, 0},
      {"arp_truncated", truncated(arp_req, 14 + 27), RxVerdict::kDropped,
       DropReason::kArpTruncated},
      {"arp_hardware_type", with(arp_req, 14 + 1, 6), RxVerdict::kDropped,
       DropReason::kArpUnsupported},
      {"arp_protocol_type", with(arp_req, 14 + 2, 0x86), RxVerdict::kDropped,
       DropReason::kArpUnsupported},
      {"arp_hlen", with(arp_req, 14 + 4, 8), RxVerdict::kDropped, DropReason::kArpUnsupported},
      {"arp_plen", with(arp_req, 14 + 5, 16), RxVerdict::kDropped, DropReason::kArpUnsupported},
      {"arp_opcode", with(arp_req, 14 + 7, 3), RxVerdict::kDropped, DropReason::kArpBadOpcode},
      {"arp_sender_multicast", with(arp_req, 14 + 8, 0x01), RxVerdict::kDropped,
       DropReason::kArpBadSender},
      {"arp_sender_zero_mac",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, MacAddress{}, ip(kPeerIp), MacAddress{}, ip(kOurIp))),
       RxVerdict::kDropped, DropReason::kArpBadSender},
      {"arp_sender_broadcast_ip",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, kPeerMac, 0xffffffff, MacAddress{}, ip(kOurIp))),
       RxVerdict::kDropped, DropReason::kArpBadSender},
      {"arp_sender_subnet_broadcast",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, kPeerMac, 0x0a0000ff, MacAddress{}, ip(kOurIp))),
       RxVerdict::kDropped, DropReason::kArpBadSender},
      {"arp_sender_loopback",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, kPeerMac, 0x7f000001, MacAddress{}, ip(kOurIp))),
       RxVerdict::kDropped, DropReason::kArpBadSender},
      {"arp_conflict",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, kPeerMac, ip(kOurIp), MacAddress{}, ip(kOurIp))),
       RxVerdict::kDropped, DropReason::kArpAddressConflict},
      {"arp_own_reflection",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, kOurMac, ip(kOurIp), MacAddress{}, ip(kOurIp))),
       RxVerdict::kDropped, DropReason::kArpBadSender},
      {"arp_not_for_us",
       eth(MacAddress::broadcast(), kPeerMac, 0x0806,
           arp(1, kPeerMac, ip(kPeerIp), MacAddress{}, 0x0a000009)),
       RxVerdict::kDropped, DropReason::kArpNotForUs},
      {"arp_gratuitous_stranger",
       eth(MacAddress::broadcast(), kGatewayMac, 0x0806,
           arp(1, kGatewayMac, 0x0a000007, MacAddress{}, 0x0a000007)),
       RxVerdict::kDropped, DropReason::kArpNotForUs},

      // IPv4 header
      {"ipv4_short", ip_frame(truncated(ip_echo, 19)), RxVerdict::kDropped,
       DropReason::kIpv4Truncated},
      {"ipv4_version_6", ip_fixed(ip_echo, 0, 0x65), RxVerdict::kDropped,
       DropReason::kIpv4BadVersion},
      {"ipv4_ihl_4", ip_frame(with(ip_echo, 0, 0x44)), RxVerdict::kDropped,
       DropReason::kIpv4BadIhl},
      {"ipv4_ihl_0", ip_frame(with(ip_echo, 0, 0x40)), RxVerdict::kDropped,
       DropReason::kIpv4BadIhl},
      {"ipv4_ihl_past_frame", ip_frame(truncated(with(ip_echo, 0, 0x4f), 40)), RxVerdict::kDropped,
       DropReason::kIpv4Truncated},
      {"ipv4_total_below_header",
       ip_frame(ipv4(kPeerIp, kOurIp, 1, kEcho,
                     {.total_length_delta = -static_cast<int>(kEcho.size()) - 1})),
       RxVerdict::kDropped, DropReason::kIpv4BadTotalLength},
      {"ipv4_total_past_frame",
       ip_frame(ipv4(kPeerIp, kOurIp, 1, kEcho, {.total_length_delta = 1})), RxVerdict::kDropped,
       DropReason::kIpv4Truncated},
      {"ipv4_bad_checksum", ip_frame(with(ip_echo, 10, static_cast<uint8_t>(ip_echo[10] ^ 1))),
       RxVerdict::kDropped, DropReason::kIpv4BadChecksum},
      {"ipv4_port_says_bad",
       kEchoFrame,
       RxVerdict::kDropped,
       DropReason::kIpv4BadChecksum,
       0,
       {.ipv4_checksum = ChecksumHint::kBad}},
      {"ipv4_port_says_good",
       ip_frame(with(ip_echo, 10, static_cast<uint8_t>(ip_echo[10] ^ 1))),
       RxVerdict::kAnswered,
       DropReason::kNone,
       1,
       {.ipv4_checksum = ChecksumHint::kGood}},
      {"ipv4_more_fragments", ip_frame(ipv4(kPeerIp, kOurIp, 1, kEcho, {.flags_fragment = 0x2000})),
       RxVerdict::kDropped, DropReason::kIpv4Fragment},
      {"ipv4_fragment_offset",
       ip_frame(ipv4(kPeerIp, kOurIp, 1, kEcho, {.flags_fragment = 0x0010})), RxVerdict::kDropped,
       DropReason::kIpv4Fragment},
      {"ipv4_not_for_us", ip_frame(ipv4(kPeerIp, IpAddress::v4(10, 0, 0, 9), 1, kEcho)),
       RxVerdict::kDropped, DropReason::kIpv4NotForUs},
      {"ipv4_subnet_broadcast", ip_frame(ipv4(kPeerIp, IpAddress::v4(10, 0, 0, 255), 1, kEcho)),
       RxVerdict::kDropped, DropReason::kIpv4Broadcast},
      {"ipv4_limited_broadcast",
       eth(MacAddress::broadcast(), kPeerMac, 0x0800,
           ipv4(kPeerIp, IpAddress::v4(0xffffffff), 1, kEcho)),
       RxVerdict::kDropped, DropReason::kIpv4Broadcast},
      {"ipv4_multicast", ip_frame(ipv4(kPeerIp, IpAddress::v4(224, 0, 0, 1), 1, kEcho)),
       RxVerdict::kDropped, DropReason::kIpv4Multicast},
      {"ipv4_source_zero", ip_frame(ipv4(IpAddress::v4(0), kOurIp, 1, kEcho)), RxVerdict::kDropped,
       DropReason::kIpv4BadSource},
      {"ipv4_source_loopback", ip_frame(ipv4(IpAddress::v4(127, 0, 0, 1), kOurIp, 1, kEcho)),
       RxVerdict::kDropped, DropReason::kIpv4BadSource},
      {"ipv4_source_ours", ip_frame(ipv4(kOurIp, kOurIp, 1, kEcho)), RxVerdict::kDropped,
       DropReason::kIpv4BadSource},
      {"ipv4_source_multicast", ip_frame(ipv4(IpAddress::v4(239, 1, 1, 1), kOurIp, 1, kEcho)),
       RxVerdict::kDropped, DropReason::kIpv4BadSource},
      {"ipv4_source_broadcast", ip_frame(ipv4(IpAddress::v4(10, 0, 0, 255), kOurIp, 1, kEcho)),
       RxVerdict::kDropped, DropReason::kIpv4BadSource},
      {"ipv4_options_tolerated",
       ip_frame(ipv4(kPeerIp, kOurIp, 1, kEcho, {.options = Bytes{1, 1, 1, 0}})),
       RxVerdict::kAnswered,
       DropReason::kNone,
       1,
       {},
       expect_echo_reply},
      {"ipv4_ttl_zero_accepted", ip_frame(ipv4(kPeerIp, kOurIp, 1, kEcho, {.ttl = 0})),
       RxVerdict::kAnswered, DropReason::kNone, 1},
      {"ipv4_padded_frame",
       padded(kEchoFrame, 200),
       RxVerdict::kAnswered,
       DropReason::kNone,
       1,
       {},
       expect_echo_reply},
      {"ipv4_unknown_protocol",
       ip_frame(ipv4(kPeerIp, kOurIp, 47, Bytes(20, 0))),
       RxVerdict::kDropped,
       DropReason::kIpv4UnknownProtocol,
       1,
       {},
       [](const FakePort& p) { expect_unreachable(p, 2); }},
      {"ipv4_unknown_protocol_link_broadcast",
       eth(MacAddress::broadcast(), kPeerMac, 0x0800, ipv4(kPeerIp, kOurIp, 47, Bytes(20, 0))),
       RxVerdict::kDropped, DropReason::kIpv4UnknownProtocol, 0},

      // ICMP
      {"icmp_echo", kEchoFrame, RxVerdict::kAnswered, DropReason::kNone, 1, {}, expect_echo_reply},
      {"icmp_echo_empty_data", peer_ip_frame(1, icmp(8, 0, 1, 1, Bytes{})), RxVerdict::kAnswered,
       DropReason::kNone, 1},
      {"icmp_echo_odd_data", peer_ip_frame(1, icmp(8, 0, 1, 1, Bytes{1, 2, 3})),
       RxVerdict::kAnswered, DropReason::kNone, 1},
      {"icmp_truncated", peer_ip_frame(1, Bytes{8, 0, 0xf7, 0xff}), RxVerdict::kDropped,
       DropReason::kIcmpTruncated},
      {"icmp_bad_checksum", peer_ip_frame(1, bad_icmp), RxVerdict::kDropped,
       DropReason::kIcmpBadChecksum},
      {"icmp_echo_reply_ignored", peer_ip_frame(1, icmp(0, 0, 1, 1, Bytes{})), RxVerdict::kDropped,
       DropReason::kIcmpIgnoredType},
      {"icmp_echo_bad_code", peer_ip_frame(1, icmp(8, 1, 1, 1, Bytes{})), RxVerdict::kDropped,
       DropReason::kIcmpIgnoredType},
      {"icmp_unreachable_ignored", peer_ip_frame(1, icmp(3, 3, 0, 0, ip_echo)), RxVerdict::kDropped,
       DropReason::kIcmpIgnoredType, 0},
      {"icmp_garbage_type", peer_ip_frame(1, icmp(250, 77, 0, 0, Bytes(40, 0xee))),
       RxVerdict::kDropped, DropReason::kIcmpIgnoredType, 0},

      // UDP (no receiver registered in the table)
      {"udp_no_listener",
       peer_ip_frame(17, udp_bytes),
       RxVerdict::kDropped,
       DropReason::kUdpNoListener,
       1,
       {},
       [](const FakePort& p) { expect_unreachable(p, 3); }},
      {"udp_no_checksum", peer_ip_frame(17, udp_no_sum), RxVerdict::kDropped,
       DropReason::kUdpNoListener, 1},
      {"udp_bad_checksum", peer_ip_frame(17, bad_udp), RxVerdict::kDropped,
       DropReason::kL4BadChecksum},
      {"udp_port_says_bad",
       peer_ip_frame(17, udp_bytes),
       RxVerdict::kDropped,
       DropReason::kL4BadChecksum,
       0,
       {.l4_checksum = ChecksumHint::kBad}},
      {"udp_truncated", peer_ip_frame(17, Bytes{0, 1, 0, 2, 0}), RxVerdict::kDropped,
       DropReason::kL4Truncated},
      {"udp_length_lies", peer_ip_frame(17, udp_len_lies), RxVerdict::kDropped,
       DropReason::kL4Truncated},
      {"udp_length_below_header", peer_ip_frame(17, with(udp_bytes, 5, 7)), RxVerdict::kDropped,
       DropReason::kL4Truncated},
      {"udp_link_broadcast_no_icmp",
       eth(MacAddress::broadcast(), kPeerMac, 0x0800, ipv4(kPeerIp, kOurIp, 17, udp_bytes)),
       RxVerdict::kDropped, DropReason::kUdpNoListener, 0},

      // TCP (no receiver registered in the table)
      {"tcp_no_receiver",
       peer_ip_frame(6, tcp_bytes),
       RxVerdict::kDropped,
       DropReason::kIpv4UnknownProtocol,
       1,
       {},
       [](const FakePort& p) { expect_unreachable(p, 2); }},
      {"tcp_truncated", peer_ip_frame(6, truncated(tcp_bytes, 19)), RxVerdict::kDropped,
       DropReason::kL4Truncated},
      {"tcp_bad_checksum", peer_ip_frame(6, bad_tcp), RxVerdict::kDropped,
       DropReason::kL4BadChecksum},
      {"tcp_port_says_good",
       peer_ip_frame(6, bad_tcp),
       RxVerdict::kDropped,
       DropReason::kIpv4UnknownProtocol,
       1,
       {.l4_checksum = ChecksumHint::kGood}},
  };
}

class PacketTable : public ::testing::TestWithParam<Case> {};

TEST_P(PacketTable, VerdictAndOutput) {
  const Case& c = GetParam();
  Fixture fx;
  const NetStats before = fx.stack.stats();
  const RxResult r = fx.stack.receive(c.frame, c.meta, 1'000'000);
  EXPECT_EQ(r.verdict, c.verdict);
  EXPECT_EQ(drop_reason_name(r.reason), drop_reason_name(c.reason));
  if (c.reason != DropReason::kNone) {
    EXPECT_EQ(fx.stack.stats().drop(c.reason), before.drop(c.reason) + 1) << "counted once";
  }
  EXPECT_EQ(fx.stack.stats().total_drops(),
            before.total_drops() + (c.verdict == RxVerdict::kDropped ? 1 : 0));
  ASSERT_EQ(fx.port.sent.size(), c.frames_out);
  if (c.check) c.check(fx.port);
  EXPECT_EQ(fx.port.outstanding(), 0u) << "every buffer queued or released";
}

std::string case_name(const ::testing::TestParamInfo<Case>& param) {
  return param.param.name;
}

INSTANTIATE_TEST_SUITE_P(Frames, PacketTable, ::testing::ValuesIn(cases()), case_name);

TEST(NetStack, DeliversUdpAndTcpToReceiversTrimmed) {
  Fixture fx;
  RecordingReceiver tcp_rx, udp_rx;
  fx.stack.set_receiver(kIpProtocolTcp, &tcp_rx);
  fx.stack.set_receiver(kIpProtocolUdp, &udp_rx);
  const Bytes t = tcp(kPeerIp, kOurIp, 40000, 443, Bytes{'h', 'i'});
  EXPECT_EQ(fx.stack.receive(peer_ip_frame(6, t), {}, 5).verdict, RxVerdict::kDelivered);
  // Padded past the IP total length and with UDP length shorter than the IP payload.
  Bytes u = udp(kPeerIp, kOurIp, 7, 9, Bytes{'x'});
  Bytes u_extra = u;
  u_extra.push_back(0xcc);
  EXPECT_EQ(fx.stack.receive(padded(peer_ip_frame(17, u_extra), 80), {}, 6).verdict,
            RxVerdict::kDelivered);
  ASSERT_EQ(tcp_rx.got.size(), 1u);
  EXPECT_EQ(tcp_rx.got[0].bytes, t);
  EXPECT_EQ(tcp_rx.got[0].source, kPeerIp);
  EXPECT_EQ(tcp_rx.got[0].destination, kOurIp);
  EXPECT_EQ(tcp_rx.got[0].protocol, kIpProtocolTcp);
  ASSERT_EQ(udp_rx.got.size(), 1u);
  EXPECT_EQ(udp_rx.got[0].bytes, u);
  EXPECT_EQ(fx.stack.stats().count(NetCounter::kRxDelivered), 2u);
  EXPECT_TRUE(fx.port.sent.empty());
}

TEST(NetStack, EchoStormHitsTheRateLimit) {
  NetOptions o = test_options();
  o.icmp_echo_per_second = 100;
  o.icmp_echo_burst = 5;
  Fixture fx(o);
  for (int i = 0; i < 1000; ++i) fx.stack.receive(kEchoFrame, {}, 1'000'000);
  EXPECT_EQ(fx.port.sent.size(), 5u) << "the burst, no more";
  EXPECT_EQ(fx.stack.stats().drop(DropReason::kIcmpEchoRateLimited), 995u);
  // 100 per second: 10 ms later exactly one more token.
  EXPECT_EQ(fx.stack.receive(kEchoFrame, {}, 11'000'000).verdict, RxVerdict::kAnswered);
  EXPECT_EQ(fx.stack.receive(kEchoFrame, {}, 11'000'000).reason, DropReason::kIcmpEchoRateLimited);
  // Rate 0 switches echo off.
  o.icmp_echo_per_second = 0;
  Fixture off(o);
  EXPECT_EQ(off.stack.receive(kEchoFrame, {}, 1).reason, DropReason::kIcmpEchoRateLimited);
}

TEST(NetStack, UnreachableStormIsSuppressedAndCounted) {
  NetOptions o = test_options();
  o.icmp_unreach_per_second = 10;
  o.icmp_unreach_burst = 3;
  Fixture fx(o);
  const Bytes f = peer_ip_frame(17, udp(kPeerIp, kOurIp, 1, 2, Bytes{}));
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(fx.stack.receive(f, {}, 0).reason, DropReason::kUdpNoListener);
  }
  EXPECT_EQ(fx.port.sent.size(), 3u);
  EXPECT_EQ(fx.stack.stats().count(NetCounter::kIcmpUnreachSent), 3u);
  EXPECT_EQ(fx.stack.stats().count(NetCounter::kIcmpUnreachSuppressed), 47u);
}

TEST(NetStack, ArpReplyStormHitsTheRateLimit) {
  NetOptions o = test_options();
  o.arp_replies_per_second = 10;
  o.arp_replies_burst = 2;
  Fixture fx(o);  // the fixture's own request used one token
  const Bytes req = eth(MacAddress::broadcast(), kPeerMac, 0x0806,
                        arp(1, kPeerMac, ip(kPeerIp), MacAddress{}, ip(kOurIp)));
  EXPECT_EQ(fx.stack.receive(req, {}, 0).verdict, RxVerdict::kAnswered);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(fx.stack.receive(req, {}, 0).reason, DropReason::kArpReplyRateLimited);
  }
  EXPECT_EQ(fx.port.sent.size(), 1u);
}

TEST(NetStack, EchoReplyLargerThanMtuIsDropped) {
  NetOptions o = test_options();
  o.mtu_bytes = 100;
  Fixture fx(o);
  const RxResult r = fx.stack.receive(peer_ip_frame(1, icmp(8, 0, 1, 1, Bytes(200, 7))), {}, 0);
  EXPECT_EQ(r.reason, DropReason::kIcmpEchoTooBig);
  EXPECT_EQ(fx.stack.receive(peer_ip_frame(1, icmp(8, 0, 1, 1, Bytes(72, 7))), {}, 0).verdict,
            RxVerdict::kAnswered)
      << "80 bytes of ICMP fit an MTU of 100";
}

TEST(NetStack, EchoWithNoTransmitBufferIsCounted) {
  Fixture fx;
  fx.port.allocs_to_fail = 1;
  const RxResult r = fx.stack.receive(kEchoFrame, {}, 0);
  EXPECT_EQ(r.reason, DropReason::kTxAllocFailed);
  EXPECT_EQ(fx.stack.stats().drop(DropReason::kTxAllocFailed), 1u);
  EXPECT_TRUE(fx.port.sent.empty());
}

TEST(L4Output, SendsTcpWithSoftwareChecksums) {
  Fixture fx;
  L4TxFrame f;
  ASSERT_TRUE(fx.stack.alloc(kPeerIp, kIpProtocolTcp, 24, &f));
  ASSERT_GE(f.capacity_bytes, 24u);
  Bytes seg = tcp(kOurIp, kPeerIp, 443, 40000, Bytes{1, 2, 3, 4});
  put16(seg, 16, 0xdead);  // whatever the engine left there is replaced
  std::copy(seg.begin(), seg.end(), f.l4);
  fx.stack.send(f, 24, 0);
  ASSERT_EQ(fx.port.sent.size(), 1u);
  const Bytes& out = fx.port.sent[0].bytes;
  EXPECT_EQ(out.size(), 60u) << "58 bytes padded to 60";
  EXPECT_EQ(mac_at(out, 0), kPeerMac);
  EXPECT_EQ(get16(out, 14 + 2), 44) << "IP total length excludes padding";
  EXPECT_EQ(get16(out, 14 + 6), 0x4000) << "DF";
  EXPECT_EQ(naive_sum({out.data() + 14, 20}), 0xffff);
  EXPECT_EQ(naive_sum({out.data() + 34, 24}, naive_pseudo(kOurIp, kPeerIp, 6, 24)), 0xffff);
  EXPECT_EQ(out[58], 0);
  EXPECT_EQ(out[59], 0);
  EXPECT_FALSE(fx.port.sent[0].offload.l4_checksum);
}

TEST(L4Output, LeavesChecksumsToAnOffloadingPort) {
  FakePort port;
  port.caps = PortCapabilities{.tx_ipv4_checksum = true, .tx_l4_checksum = true};
  NetStack stack(test_options(), port);
  stack.receive(eth(MacAddress::broadcast(), kPeerMac, 0x0806,
                    arp(1, kPeerMac, ip(kPeerIp), MacAddress{}, ip(kOurIp))),
                {}, 0);
  port.sent.clear();
  L4TxFrame f;
  ASSERT_TRUE(stack.alloc(kPeerIp, kIpProtocolUdp, 8, &f));
  Bytes u = udp(kOurIp, kPeerIp, 1, 2, Bytes{}, false);
  std::copy(u.begin(), u.end(), f.l4);
  stack.send(f, 8, 0);
  ASSERT_EQ(port.sent.size(), 1u);
  const auto& s = port.sent[0];
  EXPECT_TRUE(s.offload.ipv4_checksum);
  EXPECT_TRUE(s.offload.l4_checksum);
  EXPECT_EQ(s.offload.l4_protocol, kIpProtocolUdp);
  EXPECT_EQ(s.offload.l2_bytes, 14);
  EXPECT_EQ(s.offload.l3_bytes, 20);
  EXPECT_EQ(get16(s.bytes, 14 + 10), 0) << "IPv4 checksum left to the port";
  EXPECT_EQ(get16(s.bytes, 34 + 6), naive_pseudo(kOurIp, kPeerIp, 17, 8))
      << "the pseudo-header sum, as DPDK expects";
}

TEST(L4Output, RefusesWhatCannotBeSent) {
  NetOptions o = test_options();
  o.gateway = IpAddress{};
  Fixture fx(o);
  L4TxFrame f;
  EXPECT_FALSE(fx.stack.alloc(IpAddress::v4(192, 0, 2, 1), kIpProtocolTcp, 20, &f))
      << "off-link without a gateway";
  EXPECT_FALSE(fx.stack.alloc(IpAddress{}, kIpProtocolTcp, 20, &f));
  EXPECT_FALSE(fx.stack.alloc(IpAddress::v4(10, 0, 0, 255), kIpProtocolTcp, 20, &f));
  EXPECT_FALSE(fx.stack.alloc(kOurIp, kIpProtocolTcp, 20, &f));
  EXPECT_EQ(fx.stack.stats().drop(DropReason::kTxNoRoute), 4u);
  EXPECT_EQ(fx.stack.max_l4_bytes(), 1480u);
  EXPECT_FALSE(fx.stack.alloc(kPeerIp, kIpProtocolTcp, 1481, &f));
  EXPECT_EQ(fx.stack.stats().drop(DropReason::kTxTooBig), 1u);
  ASSERT_TRUE(fx.stack.alloc(kPeerIp, kIpProtocolTcp, 1480, &f)) << "exactly the MTU";
  fx.stack.abort(f);
  fx.port.allocs_to_fail = 1;
  EXPECT_FALSE(fx.stack.alloc(kPeerIp, kIpProtocolTcp, 20, &f));
  EXPECT_EQ(fx.stack.stats().drop(DropReason::kTxAllocFailed), 1u);
  EXPECT_EQ(fx.port.outstanding(), 0u);
}

// A client stack owning 10.0.0.10 .. 10.0.0.13 (address_count 4): ARP for any of them is
// answered from that address, IPv4 to any is delivered, a segment sent from a secondary carries
// it as source (checksummed over it), and nothing past the range is ours.
TEST(NetStack, SecondaryAddressesAreOursEverywhere) {
  NetOptions o = test_options();
  o.address = IpAddress::v4(10, 0, 0, 10);
  o.address_count = 4;
  o.gateway = IpAddress{};  // on-link only
  FakePort port;
  NetStack stack(o, port);
  const IpAddress first = o.address;
  const IpAddress third = IpAddress::v4(10, 0, 0, 12);
  const IpAddress past = IpAddress::v4(10, 0, 0, 14);

  ASSERT_EQ(stack
                .receive(eth(MacAddress::broadcast(), kPeerMac, 0x0806,
                             arp(1, kPeerMac, kPeerIp.v4_host_order(), MacAddress{},
                                 third.v4_host_order())),
                         RxMeta{}, 0)
                .verdict,
            RxVerdict::kAnswered);
  ASSERT_EQ(port.sent.size(), 1u);
  const Bytes& reply = port.sent[0].bytes;
  EXPECT_EQ(get16(reply, 14 + 6), 2) << "an ARP reply";
  EXPECT_EQ(mac_at(reply, 14 + 8), kOurMac);
  EXPECT_EQ(get32(reply, 14 + 14), third.v4_host_order()) << "from the address asked for";
  port.sent.clear();
  EXPECT_EQ(stack
                .receive(eth(MacAddress::broadcast(), kPeerMac, 0x0806,
                             arp(1, kPeerMac, kPeerIp.v4_host_order(), MacAddress{},
                                 past.v4_host_order())),
                         RxMeta{}, 0)
                .reason,
            DropReason::kArpNotForUs);
  // Someone else claiming one of our secondaries is a conflict like the primary.
  EXPECT_EQ(stack
                .receive(eth(MacAddress::broadcast(), kPeerMac, 0x0806,
                             arp(1, kPeerMac, third.v4_host_order(), MacAddress{},
                                 kPeerIp.v4_host_order())),
                         RxMeta{}, 0)
                .reason,
            DropReason::kArpAddressConflict);

  RecordingReceiver tcp_rx;
  stack.set_receiver(kIpProtocolTcp, &tcp_rx);
  const Bytes t = tcp(kPeerIp, third, 40000, 443, Bytes{'h'});
  EXPECT_EQ(stack.receive(peer_ip_frame(6, t, {}, kPeerIp, third), {}, 1).verdict,
            RxVerdict::kDelivered);
  ASSERT_EQ(tcp_rx.got.size(), 1u);
  EXPECT_EQ(tcp_rx.got[0].destination, third);
  EXPECT_EQ(
      stack
          .receive(peer_ip_frame(6, tcp(kPeerIp, past, 40000, 443, Bytes{'h'}), {}, kPeerIp, past),
                   {}, 1)
          .reason,
      DropReason::kIpv4NotForUs);
  EXPECT_EQ(
      stack.receive(peer_ip_frame(6, tcp(third, first, 1, 443, Bytes{}), {}, third, first), {}, 1)
          .reason,
      DropReason::kIpv4BadSource)
      << "a datagram from one of our own addresses";

  EXPECT_TRUE(stack.is_local(third));
  EXPECT_FALSE(stack.is_local(past));
  port.sent.clear();
  L4TxFrame f;
  ASSERT_TRUE(stack.alloc_from(third, kPeerIp, kIpProtocolTcp, 24, &f));
  const Bytes seg = tcp(third, kPeerIp, 443, 40000, Bytes{1, 2, 3, 4});
  std::copy(seg.begin(), seg.end(), f.l4);
  stack.send(f, 24, 2);
  ASSERT_EQ(port.sent.size(), 1u);
  const Bytes& out = port.sent[0].bytes;
  EXPECT_EQ(get32(out, 14 + 12), third.v4_host_order());
  EXPECT_EQ(naive_sum({out.data() + 34, 24}, naive_pseudo(third, kPeerIp, 6, 24)), 0xffff);

  // Introduced to a neighbour: one broadcast request for it from each of our four addresses.
  port.sent.clear();
  EXPECT_EQ(stack.introduce_to(kPeerIp), 4u);
  ASSERT_EQ(port.sent.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    const Bytes& request = port.sent[i].bytes;
    EXPECT_EQ(mac_at(request, 0), MacAddress::broadcast());
    EXPECT_EQ(get16(request, 14 + 6), 1) << "a request";
    EXPECT_EQ(get32(request, 14 + 14), first.v4_host_order() + i) << "sender " << i;
    EXPECT_EQ(get32(request, 14 + 24), kPeerIp.v4_host_order());
  }
  EXPECT_EQ(stack.introduce_to(IpAddress::v4(192, 168, 9, 9)), 0u) << "off-link, no gateway";
}

TEST(NetStack, OptionsAreValidated) {
  EXPECT_EQ(validate(test_options()), "");
  NetOptions o = test_options();
  o.mtu_bytes = 67;
  EXPECT_NE(validate(o), "");
  o = test_options();
  o.ttl = 0;
  EXPECT_NE(validate(o), "");
  o = test_options();
  o.mac = MacAddress::broadcast();
  EXPECT_NE(validate(o), "");
  o = test_options();
  o.arp_refresh_before_ms = o.arp_reachable_ms;
  EXPECT_NE(validate(o), "");
  o = test_options();
  o.address = IpAddress{};
  EXPECT_NE(validate(o), "");
  // address_count: the range must stay inside the /24 and short of its broadcast (.255).
  o = test_options();
  o.address_count = 0;
  EXPECT_NE(validate(o), "");
  o.address_count = 254;  // 10.0.0.1 .. 10.0.0.254
  EXPECT_EQ(validate(o), "");
  o.address_count = 255;  // onto 10.0.0.255
  EXPECT_NE(validate(o), "");
  o.address_count = 300;  // past the subnet
  EXPECT_NE(validate(o), "");
}

TEST(NetStats, NamesAreStableSnakeCase) {
  EXPECT_EQ(drop_reason_name(DropReason::kEthTruncated), "eth_truncated");
  EXPECT_EQ(drop_reason_name(DropReason::kTxNoRoute), "tx_no_route");
  EXPECT_EQ(drop_reason_name(DropReason::kNone), "none");
  EXPECT_EQ(net_counter_name(NetCounter::kRxFrames), "rx_frames");
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    const std::string_view n = drop_reason_name(static_cast<DropReason>(i));
    ASSERT_FALSE(n.empty());
    for (char ch : n)
      EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_') << n;
    for (size_t j = 0; j < i; ++j) EXPECT_NE(n, drop_reason_name(static_cast<DropReason>(j)));
  }
}

}  // namespace
}  // namespace herald::net

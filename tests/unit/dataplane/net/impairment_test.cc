// The impairment layer: off is a pass-through, every impairment does what it says and is
// counted, and the same seed gives the same frames at the same virtual times.
#include "dataplane/net/impairment.h"

#include <gtest/gtest.h>

#include <utility>

#include "dataplane/net/stack.h"
#include "tests/unit/dataplane/net/net_test_util.h"

namespace herald::net {
namespace {

using namespace herald::net::testing;  // NOLINT(build/namespaces): test helpers only

constexpr uint64_t kUs = 1000;

Bytes numbered(uint32_t i, size_t len = 64) {
  Bytes b(len, static_cast<uint8_t>(i));
  put32(b, 0, i);
  return b;
}

struct Out {
  uint64_t at_ns;
  Bytes bytes;
  RxMeta meta;
};

// Feeds `n` numbered frames, one every 10 us of virtual time, releasing held ones at their due
// times; returns what came out and when.
std::vector<Out> run_rx(const ImpairmentOptions& o, uint32_t n, ImpairmentStats* stats = nullptr) {
  ImpairedRx rx(o);
  std::vector<Out> out;
  uint64_t now = 0;
  auto deliver = [&](std::span<const uint8_t> f, const RxMeta& m) {
    out.push_back(Out{now, Bytes(f.begin(), f.end()), m});
  };
  for (uint32_t i = 0; i < n; ++i) {
    // Like a simulation: virtual time jumps to each due frame, then to the next arrival.
    while (rx.next_due_ns() <= i * 10 * kUs) {
      now = rx.next_due_ns();
      rx.release_due(now, deliver);
    }
    now = i * 10 * kUs;
    rx.receive(numbered(i), RxMeta{.ipv4_checksum = ChecksumHint::kGood}, now, deliver);
  }
  while (rx.next_due_ns() != UINT64_MAX) {
    now = rx.next_due_ns();
    rx.release_due(now, deliver);
  }
  if (stats != nullptr) *stats = rx.stats();
  return out;
}

TEST(Impairment, OffIsAPassThrough) {
  ImpairmentOptions o;
  EXPECT_FALSE(o.enabled());
  ImpairmentStats s;
  const auto out = run_rx(o, 100, &s);
  ASSERT_EQ(out.size(), 100u);
  for (uint32_t i = 0; i < 100; ++i) {
    EXPECT_EQ(out[i].bytes, numbered(i));
    EXPECT_EQ(out[i].at_ns, i * 10 * kUs);
  }
  EXPECT_EQ(s.count(Impairment::kFrames), 0u);
}

TEST(Impairment, SameSeedSameRunOtherSeedOtherRun) {
  ImpairmentOptions o;
  o.drop_ppm = 100'000;
  o.duplicate_ppm = 100'000;
  o.reorder_ppm = 100'000;
  o.delay_ppm = 100'000;
  o.corrupt_ppm = 100'000;
  o.delay_us = 50;
  o.delay_jitter_us = 30;
  o.seed = 42;
  const auto a = run_rx(o, 2000), b = run_rx(o, 2000);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].at_ns, b[i].at_ns) << i;
    ASSERT_EQ(a[i].bytes, b[i].bytes) << i;
  }
  o.seed = 43;
  const auto c = run_rx(o, 2000);
  bool differs = c.size() != a.size();
  for (size_t i = 0; !differs && i < a.size(); ++i) differs = a[i].bytes != c[i].bytes;
  EXPECT_TRUE(differs);
}

TEST(Impairment, RatesAreRoughlyTheirPartsPerMillion) {
  ImpairmentOptions o;
  o.drop_ppm = 250'000;
  o.seed = 9;
  ImpairmentStats s;
  const auto out = run_rx(o, 20'000, &s);
  EXPECT_EQ(s.count(Impairment::kFrames), 20'000u);
  EXPECT_EQ(out.size() + s.count(Impairment::kDropped), 20'000u);
  // A fixed seed: this is a property of the generator, not a flaky statistic.
  EXPECT_NEAR(static_cast<double>(s.count(Impairment::kDropped)), 5000.0, 300.0);
  o.drop_ppm = 1'000'000;
  EXPECT_TRUE(run_rx(o, 100).empty());
}

TEST(Impairment, DuplicateFollowsTheOriginal) {
  ImpairmentOptions o;
  o.duplicate_ppm = 1'000'000;
  ImpairmentStats s;
  const auto out = run_rx(o, 10, &s);
  ASSERT_EQ(out.size(), 20u);
  for (uint32_t i = 0; i < 10; ++i) {
    EXPECT_EQ(out[2 * i].bytes, numbered(i));
    EXPECT_EQ(out[2 * i + 1].bytes, numbered(i));
  }
  EXPECT_EQ(s.count(Impairment::kDuplicated), 10u);
}

TEST(Impairment, DelayHoldsForVirtualTime) {
  ImpairmentOptions o;
  o.delay_ppm = 1'000'000;
  o.delay_us = 25;
  const auto out = run_rx(o, 5);
  ASSERT_EQ(out.size(), 5u);
  for (uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out[i].bytes, numbered(i));
    EXPECT_EQ(out[i].at_ns, i * 10 * kUs + 25 * kUs);
  }
}

TEST(Impairment, ReorderLetsLaterFramesOvertake) {
  ImpairmentOptions o;
  o.reorder_ppm = 1'000'000;
  o.reorder_hold_us = 15;  // longer than the 10 us between frames
  ImpairedRx rx(o);
  std::vector<uint32_t> order;
  auto deliver = [&](std::span<const uint8_t> f, const RxMeta&) {
    order.push_back((uint32_t{f[0]} << 24) | (uint32_t{f[1]} << 16) | (f[2] << 8) | f[3]);
  };
  rx.receive(numbered(0), {}, 0, deliver);
  EXPECT_TRUE(order.empty());
  // Frame 1 arrives at 10 us on another, unimpaired path.
  deliver(numbered(1), {});
  rx.release_due(15 * kUs, deliver);
  EXPECT_EQ(order, (std::vector<uint32_t>{1, 0}));
  EXPECT_EQ(rx.stats().count(Impairment::kReordered), 1u);
}

TEST(Impairment, CorruptFlipsExactlyOneBitAndForgetsTheHints) {
  ImpairmentOptions o;
  o.corrupt_ppm = 1'000'000;
  const auto out = run_rx(o, 50);
  ASSERT_EQ(out.size(), 50u);
  for (uint32_t i = 0; i < 50; ++i) {
    int bits = 0;
    const Bytes want = numbered(i);
    for (size_t j = 0; j < want.size(); ++j) bits += __builtin_popcount(want[j] ^ out[i].bytes[j]);
    EXPECT_EQ(bits, 1) << i;
    EXPECT_EQ(out[i].meta.ipv4_checksum, ChecksumHint::kUnknown);
  }
}

TEST(Impairment, HoldQueueOverflowSendsOnTime) {
  ImpairmentOptions o;
  o.delay_ppm = 1'000'000;
  o.delay_us = 1000;
  o.hold_frames = 2;
  ImpairedRx rx(o);
  int now_out = 0;
  auto deliver = [&](std::span<const uint8_t>, const RxMeta&) { ++now_out; };
  for (uint32_t i = 0; i < 5; ++i) rx.receive(numbered(i), {}, 0, deliver);
  EXPECT_EQ(now_out, 3);
  EXPECT_EQ(rx.stats().count(Impairment::kHoldOverflow), 3u);
  // Too big to hold: goes on time as well.
  ImpairmentOptions small = o;
  small.max_frame_bytes = 60;
  ImpairedRx rx2(small);
  now_out = 0;
  rx2.receive(numbered(0, 61), {}, 0, deliver);
  EXPECT_EQ(now_out, 1);
}

TEST(Impairment, EmptyFramesAreHeldAndReleased) {
  ImpairmentOptions o;
  o.delay_ppm = 1'000'000;
  o.delay_us = 1;
  o.duplicate_ppm = 1'000'000;
  ImpairedRx rx(o);
  int out = 0;
  auto deliver = [&](std::span<const uint8_t> f, const RxMeta&) {
    EXPECT_TRUE(f.empty());
    ++out;
  };
  rx.receive(std::span<const uint8_t>(), {}, 0, deliver);
  rx.release_due(kUs, deliver);
  EXPECT_EQ(out, 2);
}

TEST(Impairment, OptionsAreValidated) {
  ImpairmentOptions o;
  EXPECT_EQ(validate(o), "");
  o.drop_ppm = 1'000'001;
  EXPECT_NE(validate(o), "");
  o = ImpairmentOptions{};
  o.max_frame_bytes = 59;
  EXPECT_NE(validate(o), "");
}

TEST(ImpairedPort, DropDelayDuplicateOnTransmit) {
  FakePort lower;
  lower.caps = PortCapabilities{.tx_ipv4_checksum = true, .tx_l4_checksum = true};
  ImpairmentOptions o;
  o.delay_ppm = 1'000'000;
  o.delay_us = 100;
  o.duplicate_ppm = 1'000'000;
  ImpairedPort port(o, lower);
  EXPECT_TRUE(port.capabilities().tx_l4_checksum) << "no corruption: offloads kept";
  port.release_due(0);
  TxFrame f;
  ASSERT_TRUE(port.alloc(64, &f));
  std::fill(f.data, f.data + 64, 0x5a);
  port.queue(f, 64, TxOffload{.l4_checksum = true});
  EXPECT_TRUE(lower.sent.empty());
  EXPECT_EQ(lower.outstanding(), 0u) << "held frames are copies; the buffer went back";
  port.release_due(99 * kUs);
  EXPECT_TRUE(lower.sent.empty());
  port.release_due(100 * kUs);
  ASSERT_EQ(lower.sent.size(), 2u);
  EXPECT_EQ(lower.sent[0].bytes, Bytes(64, 0x5a));
  EXPECT_TRUE(lower.sent[1].offload.l4_checksum) << "offload flags ride along";
  EXPECT_EQ(lower.outstanding(), 0u);

  ImpairmentOptions d;
  d.drop_ppm = 1'000'000;
  d.corrupt_ppm = 1;
  ImpairedPort dropping(d, lower);
  EXPECT_FALSE(dropping.capabilities().tx_l4_checksum) << "corruption hides offloads";
  ASSERT_TRUE(dropping.alloc(64, &f));
  dropping.queue(f, 64, {});
  EXPECT_EQ(lower.sent.size(), 2u);
  EXPECT_EQ(lower.outstanding(), 0u);
  EXPECT_EQ(dropping.stats().count(Impairment::kDropped), 1u);
}

TEST(ImpairedPort, DuplicateWithoutBufferIsCounted) {
  FakePort lower;
  ImpairmentOptions o;
  o.duplicate_ppm = 1'000'000;
  ImpairedPort port(o, lower);
  TxFrame f;
  ASSERT_TRUE(port.alloc(60, &f));
  lower.allocs_to_fail = 1;
  port.queue(f, 60, {});
  EXPECT_EQ(lower.sent.size(), 1u) << "the original still goes";
  EXPECT_EQ(port.stats().count(Impairment::kTxAllocFailed), 1u);
}

// The stack under heavy rx impairment: every outcome is a verdict, nothing leaks.
TEST(Impairment, StackSurvivesCorruptedTraffic) {
  FakePort port;
  NetOptions no;
  no.mac = kOurMac;
  no.address = kOurIp;
  no.gateway = kGatewayIp;
  NetStack stack(no, port);
  ImpairmentOptions o;
  o.corrupt_ppm = 1'000'000;
  o.duplicate_ppm = 300'000;
  o.seed = 5;
  ImpairedRx rx(o);
  const Bytes echo = peer_ip_frame(1, icmp(8, 0, 1, 1, Bytes(32, 1)));
  const Bytes req =
      eth(MacAddress::broadcast(), kPeerMac, 0x0806,
          arp(1, kPeerMac, kPeerIp.v4_host_order(), MacAddress{}, kOurIp.v4_host_order()));
  uint64_t results = 0;
  for (uint32_t i = 0; i < 3000; ++i) {
    rx.receive(i % 2 ? echo : req, {}, i * 1000, [&](std::span<const uint8_t> f, const RxMeta& m) {
      stack.receive(f, m, i * 1000);
      ++results;
    });
  }
  EXPECT_EQ(stack.stats().count(NetCounter::kRxFrames), results);
  EXPECT_GT(stack.stats().total_drops(), 0u);
  EXPECT_EQ(port.outstanding(), 0u);
}

}  // namespace
}  // namespace herald::net

// The TcpEngine <-> L4 binding: a SYN handed up by the IP layer reaches the listener, its SYN-ACK
// goes down through L4Output to the right address, and a refused alloc() counts as no room.
#include "dataplane/net/tcp/l4_binding.h"

#include <gtest/gtest.h>

#include <vector>

#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"

namespace herald::net::tcp {
namespace {

class FakeL4Output : public L4Output {
 public:
  IpAddress local_address() const override { return IpAddress::v4(10, 0, 0, 1); }
  uint32_t max_l4_bytes() const override { return 1480; }
  bool alloc(const IpAddress& destination, uint8_t protocol, uint32_t l4_bytes,
             L4TxFrame* frame) override {
    if (refuse) return false;
    buffer.assign(l4_bytes, 0);
    frame->l4 = buffer.data();
    frame->capacity_bytes = l4_bytes;
    frame->destination = destination;
    frame->protocol = protocol;
    return true;
  }
  void send(L4TxFrame& frame, uint32_t l4_bytes, uint64_t) override {
    sent.emplace_back(frame.l4, frame.l4 + l4_bytes);
    destinations.push_back(frame.destination);
  }
  void abort(L4TxFrame&) override { ++aborted; }

  bool refuse = false;
  std::vector<uint8_t> buffer;
  std::vector<std::vector<uint8_t>> sent;
  std::vector<IpAddress> destinations;
  int aborted = 0;
};

class NoEvents : public TcpEvents {
 public:
  void on_accepted(ConnectionId, const FourTuple&) override {}
  void on_connected(ConnectionId) override {}
  void on_data(ConnectionId, std::span<const uint8_t>) override {}
  void on_peer_closed(ConnectionId) override {}
  void on_writable(ConnectionId) override {}
  void on_closed(ConnectionId, TcpCloseReason) override {}
};

TEST(TcpL4Binding, SynUpSynAckDown) {
  clock::FakeClock fake(1'000'000'000);
  timer::TimerWheel wheel(
      {.capacity = 8, .tick_ns = 1'000'000, .levels = 4, .start_ns = fake.now_ns()});
  FakeL4Output out;
  NoEvents events;
  TcpL4Binding binding(out, clock::Clock::fake(&fake));
  TcpConfig config;
  config.mss = binding.path_mss();
  EXPECT_EQ(config.mss, 1460);
  TcpEngine engine(config, clock::Clock::fake(&fake), wheel, binding, events);
  binding.attach(&engine);
  ASSERT_TRUE(engine.listen(to_tcp_address(out.local_address()), 443));

  const IpAddress peer = IpAddress::v4(10, 0, 0, 2);
  SegmentSpec syn;
  syn.src_port = 5555;
  syn.dst_port = 443;
  syn.seq = 77;
  syn.flags = kSyn;
  std::vector<uint8_t> buf(kTcpMaxHeaderBytes);
  buf.resize(build_segment(to_tcp_address(peer), to_tcp_address(out.local_address()), syn, {},
                           false, buf));
  L4Packet packet;
  packet.source = peer;
  packet.destination = out.local_address();
  packet.protocol = kIpProtocolTcp;
  packet.bytes = buf;
  binding.on_packet(packet);

  ASSERT_EQ(out.sent.size(), 1u);
  EXPECT_EQ(out.destinations[0], peer);
  Segment seg;
  ASSERT_EQ(parse_segment(to_tcp_address(out.local_address()), to_tcp_address(peer), out.sent[0],
                          false, &seg),
            ParseError::kNone);
  EXPECT_EQ(seg.flags, kSyn | kAck);
  EXPECT_EQ(seg.ack, 78u);

  // The port has no buffer: the segment is lost and counted; the SYN-ACK timer recovers.
  out.refuse = true;
  fake.advance_ns(1'000'000'000);
  (void)wheel.advance(fake.now_ns());
  EXPECT_EQ(engine.stats()[TcpStats::output_no_room], 1u);
  out.refuse = false;
  fake.advance_ns(2'000'000'000);
  (void)wheel.advance(fake.now_ns());
  EXPECT_EQ(out.sent.size(), 2u);
}

}  // namespace
}  // namespace herald::net::tcp

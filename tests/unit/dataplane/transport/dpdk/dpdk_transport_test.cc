// DpdkTransport over a fake port (no EAL): the transport's stack and a client stack (NetStack +
// TcpEngine) joined in memory, in virtual time. Checks the Transport contract end to end:
// accept, byte-exact data both ways, the queue limit at its edge, close modes, peer FIN and RST,
// set_reading, max_connections, stop.
#include "dataplane/transport/dpdk/dpdk_transport.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "dataplane/net/tcp/l4_binding.h"

namespace herald::dataplane::dpdk {
namespace {

using net::IpAddress;
using net::MacAddress;

constexpr IpAddress kServerIp = IpAddress::v4(10, 0, 0, 1);
constexpr IpAddress kClientIp = IpAddress::v4(10, 0, 0, 2);
constexpr uint16_t kPort = 5222;

// The port loop's batch: frames appended this turn, or refused when told to.
class FakeBatch final : public TxBatch {
 public:
  std::span<uint8_t> append(uint16_t port, uint16_t length, const TxOffload& offload) override {
    if (port != 0 || refuse > 0) {
      if (refuse > 0) --refuse;
      return {};
    }
    frames.emplace_back(length);
    offloads.push_back(offload);
    return frames.back();
  }
  std::deque<std::vector<uint8_t>> frames;
  std::deque<TxOffload> offloads;
  int refuse = 0;
};

// The client's port: frames it queues, in order.
class ClientPort final : public net::FramePort {
 public:
  net::PortCapabilities capabilities() const override { return {}; }
  bool alloc(uint32_t length_bytes, net::TxFrame* frame) override {
    buffers_.emplace_back(std::max<uint32_t>(length_bytes, 1514));
    frame->data = buffers_.back().data();
    frame->capacity_bytes = static_cast<uint32_t>(buffers_.back().size());
    frame->handle = buffers_.size() - 1;
    return true;
  }
  void queue(const net::TxFrame& frame, uint32_t length_bytes, const net::TxOffload&) override {
    out.emplace_back(frame.data, frame.data + length_bytes);
  }
  void release(const net::TxFrame&) override {}
  std::deque<std::vector<uint8_t>> out;

 private:
  std::deque<std::vector<uint8_t>> buffers_;
};

struct Upper final : public TransportEvents {
  void on_accepted(ConnectionId id, const PeerAddress& peer) override {
    accepted.push_back(id);
    peers.push_back(peer.to_string());
  }
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    data[id].append(bytes.begin(), bytes.end());
  }
  void on_writable(ConnectionId id) override { ++writable[id]; }
  void on_closed(ConnectionId id, CloseReason reason) override { closed[id] = reason; }
  std::vector<ConnectionId> accepted;
  std::vector<std::string> peers;
  std::map<ConnectionId, std::string> data;
  std::map<ConnectionId, int> writable;
  std::map<ConnectionId, CloseReason> closed;
};

struct ClientEvents final : public net::tcp::TcpEvents {
  void on_accepted(ConnectionId, const net::tcp::FourTuple&) override {}
  void on_connected(ConnectionId id) override { connected.push_back(id); }
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    data[id].append(bytes.begin(), bytes.end());
  }
  void on_peer_closed(ConnectionId id) override { peer_closed.push_back(id); }
  void on_writable(ConnectionId) override {}
  void on_closed(ConnectionId id, net::tcp::TcpCloseReason reason) override { closed[id] = reason; }
  std::vector<ConnectionId> connected;
  std::map<ConnectionId, std::string> data;
  std::vector<ConnectionId> peer_closed;
  std::map<ConnectionId, net::tcp::TcpCloseReason> closed;
};

net::NetOptions net_options(IpAddress address, uint8_t last_mac_byte) {
  net::NetOptions o;
  o.mac = MacAddress{{0x02, 0, 0, 0, 0, last_mac_byte}};
  o.address = address;
  o.prefix_length = 24;
  return o;
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class DpdkTransportTest : public ::testing::Test {
 protected:
  void build(TransportLimits limits = {}, const net::PortImpairmentOptions& impairment = {}) {
    DpdkTransportOptions o;
    o.net = net_options(kServerIp, 1);
    o.port = kPort;
    o.limits = limits;
    o.impairment = impairment;
    o.port_fills_checksums = false;  // FakeBatch sums nothing: the stack does it
    o.tcp.min_rto_ms = 200;
    o.tcp.initial_rto_ms = 200;
    o.tcp.msl_ms = 100;
    server_ = std::make_unique<DpdkTransport>(o, clock::Clock::fake(&clock_), server_wheel_);
    server_->start(upper_);

    client_stack_ = std::make_unique<net::NetStack>(net_options(kClientIp, 2), client_port_);
    client_binding_ =
        std::make_unique<net::tcp::TcpL4Binding>(*client_stack_, clock::Clock::fake(&clock_));
    net::tcp::TcpConfig c;
    c.min_rto_ms = 200;
    c.initial_rto_ms = 200;
    c.msl_ms = 100;
    client_ = std::make_unique<net::tcp::TcpEngine>(c, clock::Clock::fake(&clock_), client_wheel_,
                                                    *client_binding_, client_events_);
    client_binding_->attach(client_.get());
    client_stack_->set_receiver(net::kIpProtocolTcp, client_binding_.get());
    client_stack_->start(clock_.now_ns());
  }

  // Moves frames both ways and time forward 1 ms per step, until `steps` have passed.
  void pump(int steps = 200) {
    for (int i = 0; i < steps; ++i) {
      clock_.advance_ns(1'000'000);
      (void)server_wheel_.advance(clock_.now_ns());
      (void)client_wheel_.advance(clock_.now_ns());
      client_stack_->poll(clock_.now_ns());
      client_->poll();
      // Client → server, as one burst.
      std::vector<std::vector<uint8_t>> in(client_port_.out.begin(), client_port_.out.end());
      client_port_.out.clear();
      std::vector<RxFrame> rx;
      for (const auto& f : in) rx.push_back(RxFrame{.bytes = f});
      server_->on_frames(rx, batch_);
      (void)server_->on_turn(0, batch_);
      // Server → client.
      while (!batch_.frames.empty()) {
        std::vector<uint8_t> f = std::move(batch_.frames.front());
        batch_.frames.pop_front();
        batch_.offloads.pop_front();
        (void)client_stack_->receive(f, net::RxMeta{}, clock_.now_ns());
      }
      client_->poll();
    }
  }

  ConnectionId connect_one() {
    const ConnectionId c = client_->connect(net::tcp::to_tcp_address(kClientIp), 0,
                                            net::tcp::to_tcp_address(kServerIp), kPort);
    EXPECT_NE(c, kNoConnection);
    pump(20);
    return c;
  }

  clock::FakeClock clock_{1'000'000'000};
  timer::TimerWheel server_wheel_{
      timer::TimerWheelConfig{.capacity = 4096, .tick_ns = 1'000'000, .start_ns = 1'000'000'000}};
  timer::TimerWheel client_wheel_{
      timer::TimerWheelConfig{.capacity = 4096, .tick_ns = 1'000'000, .start_ns = 1'000'000'000}};
  Upper upper_;
  FakeBatch batch_;
  std::unique_ptr<DpdkTransport> server_;
  ClientPort client_port_;
  std::unique_ptr<net::NetStack> client_stack_;
  std::unique_ptr<net::tcp::TcpL4Binding> client_binding_;
  ClientEvents client_events_;
  std::unique_ptr<net::tcp::TcpEngine> client_;
};

// The engine's secrets come from the CSPRNG per transport, never the compiled-in defaults
// (which anyone can read): two transports differ from the defaults and from each other.
TEST_F(DpdkTransportTest, TcpSecretsAreRandomPerTransport) {
  build();
  DpdkTransportOptions o;
  o.net = net_options(kServerIp, 1);
  o.port = kPort;
  timer::TimerWheel wheel{
      timer::TimerWheelConfig{.capacity = 64, .tick_ns = 1'000'000, .start_ns = 1'000'000'000}};
  DpdkTransport other(o, clock::Clock::fake(&clock_), wheel);
  const net::tcp::TcpConfig defaults;
  const net::tcp::TcpConfig& a = server_->tcp_config();
  const net::tcp::TcpConfig& b = other.tcp_config();
  for (int i = 0; i < 2; ++i) {
    EXPECT_NE(a.isn_key[i], defaults.isn_key[i]);
    EXPECT_NE(a.syn_cookie_key[i], defaults.syn_cookie_key[i]);
    EXPECT_NE(a.isn_key[i], b.isn_key[i]);
    EXPECT_NE(a.syn_cookie_key[i], b.syn_cookie_key[i]);
  }
  // Off (reproducible tests): the keys given are kept.
  o.random_secrets = false;
  o.tcp.isn_key[0] = 42;
  DpdkTransport fixed(o, clock::Clock::fake(&clock_), wheel);
  EXPECT_EQ(fixed.tcp_config().isn_key[0], 42u);
  EXPECT_EQ(fixed.tcp_config().syn_cookie_key[1], defaults.syn_cookie_key[1]);
}

TEST_F(DpdkTransportTest, AcceptsAndMovesBytesExactlyBothWays) {
  build();
  const ConnectionId c = connect_one();
  ASSERT_EQ(client_events_.connected.size(), 1u);
  ASSERT_EQ(upper_.accepted.size(), 1u);
  const ConnectionId s = upper_.accepted[0];
  EXPECT_EQ(upper_.peers[0].rfind("10.0.0.2:", 0), 0u) << upper_.peers[0];
  EXPECT_EQ(server_->connections(), 1u);
  EXPECT_EQ(server_->stats().accepted, 1u);

  const std::string up = random_bytes(150'000, 1);
  const std::string down = random_bytes(200'000, 2);
  ASSERT_EQ(client_->send(c, as_bytes(up)), SendResult::kOk);
  // A gathered batch: three parts, one ordered stream.
  const std::span<const uint8_t> parts[] = {as_bytes(down).subspan(0, 10),
                                            as_bytes(down).subspan(10, 99'990),
                                            as_bytes(down).subspan(100'000)};
  ASSERT_EQ(server_->send_gather(s, parts), SendResult::kOk);
  EXPECT_EQ(server_->queued_bytes(s), 200'000u);
  pump(500);
  EXPECT_EQ(upper_.data[s], up);
  EXPECT_EQ(client_events_.data[c], down);
  EXPECT_EQ(server_->queued_bytes(s), 0u);
  EXPECT_GT(server_->stats().tx_frames, 100u);
  EXPECT_EQ(server_->stats().tx_batch_refused, 0u);
  EXPECT_GT(server_->net_stats().count(net::NetCounter::kRxDelivered), 100u);
  // The one drop is the client's gratuitous ARP (not a request for us); no checksum failed.
  EXPECT_LE(server_->net_stats().total_drops(), 1u);
  EXPECT_EQ(server_->net_stats().drop(net::DropReason::kL4BadChecksum), 0u);
}

// dataplane.dpdk.impairment is off by default: every frame goes straight through, no dice.
TEST_F(DpdkTransportTest, ImpairmentIsOffByDefault) {
  build();
  const ConnectionId c = connect_one();
  const ConnectionId s = upper_.accepted.at(0);
  ASSERT_EQ(server_->send(s, as_bytes(random_bytes(50'000, 9))), SendResult::kOk);
  pump(100);
  EXPECT_EQ(client_events_.data[c].size(), 50'000u);
  for (const net::ImpairmentStats* st :
       {&server_->rx_impairment_stats(), &server_->tx_impairment_stats()}) {
    for (uint64_t n : st->counts) EXPECT_EQ(n, 0u);
  }
  EXPECT_EQ(server_->tcp_stats()[net::tcp::TcpStats::segments_retransmitted], 0u);
}

// Impairment on both sides of the port: the streams stay byte-exact, and the counters show
// each impairment really happened (TCP resent what was lost, the IP layer dropped corrupted
// frames on their checksums).
TEST_F(DpdkTransportTest, ImpairedRxAndTxStillByteExact) {
  net::PortImpairmentOptions impair;
  for (net::ImpairmentOptions* o : {&impair.rx, &impair.tx}) {
    o->drop_ppm = 30'000;
    o->duplicate_ppm = 20'000;
    o->reorder_ppm = 30'000;
    o->delay_ppm = 20'000;
    o->corrupt_ppm = 20'000;
    o->delay_us = 3000;
    o->reorder_hold_us = 2000;
  }
  impair.rx.seed = 11;
  impair.tx.seed = 12;
  build({}, impair);
  const ConnectionId c = connect_one();
  pump(3000);  // handshake frames may be lost: SYN retries
  ASSERT_EQ(upper_.accepted.size(), 1u);
  const ConnectionId s = upper_.accepted[0];
  const std::string up = random_bytes(120'000, 5);
  const std::string down = random_bytes(180'000, 6);
  ASSERT_EQ(client_->send(c, as_bytes(up)), SendResult::kOk);
  ASSERT_EQ(server_->send(s, as_bytes(down)), SendResult::kOk);
  pump(20'000);
  EXPECT_EQ(upper_.data[s], up);
  EXPECT_EQ(client_events_.data[c], down);
  const net::ImpairmentStats& rx = server_->rx_impairment_stats();
  const net::ImpairmentStats& tx = server_->tx_impairment_stats();
  for (net::Impairment i :
       {net::Impairment::kDropped, net::Impairment::kDuplicated, net::Impairment::kReordered,
        net::Impairment::kDelayed, net::Impairment::kCorrupted}) {
    EXPECT_GT(rx.count(i), 0u) << net::impairment_name(i);
    EXPECT_GT(tx.count(i), 0u) << net::impairment_name(i);
  }
  EXPECT_GT(server_->tcp_stats()[net::tcp::TcpStats::segments_retransmitted], 0u);
  EXPECT_GT(client_->stats()[net::tcp::TcpStats::segments_retransmitted], 0u);
  EXPECT_GT(server_->net_stats().drop(net::DropReason::kL4BadChecksum) +
                server_->net_stats().drop(net::DropReason::kIpv4BadChecksum),
            0u);
}

TEST_F(DpdkTransportTest, QueueLimitAtItsEdge) {
  TransportLimits limits;
  limits.send_queue_bytes = 10'000;
  limits.send_low_water_bytes = 2'000;
  build(limits);
  const ConnectionId c = connect_one();
  ASSERT_EQ(upper_.accepted.size(), 1u);
  const ConnectionId s = upper_.accepted[0];
  const std::string bytes = random_bytes(10'001, 3);
  // Exactly the limit fits; one byte more does not, queues nothing and cuts the connection off.
  ASSERT_EQ(server_->send(s, as_bytes(bytes).subspan(0, 10'000)), SendResult::kOk);
  EXPECT_EQ(server_->queued_bytes(s), 10'000u);
  EXPECT_EQ(server_->send(s, as_bytes(bytes).subspan(0, 1)), SendResult::kQueueFull);
  EXPECT_EQ(server_->send(s, as_bytes(bytes).subspan(0, 1)), SendResult::kClosed);
  EXPECT_EQ(server_->stats().send_queue_full, 1u);
  pump(50);
  ASSERT_EQ(upper_.closed.count(s), 1u);
  EXPECT_EQ(upper_.closed[s], CloseReason::kSendQueueFull);
  EXPECT_EQ(client_events_.closed[c], net::tcp::TcpCloseReason::kPeerReset);
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(DpdkTransportTest, GatherPastTheLimitQueuesNothing) {
  TransportLimits limits;
  limits.send_queue_bytes = 10'000;
  limits.send_low_water_bytes = 2'000;
  build(limits);
  (void)connect_one();
  const ConnectionId s = upper_.accepted.at(0);
  const std::string bytes = random_bytes(10'001, 4);
  const std::span<const uint8_t> fits[] = {as_bytes(bytes).subspan(0, 4'000),
                                           as_bytes(bytes).subspan(4'000, 6'000)};
  ASSERT_EQ(server_->send_gather(s, fits), SendResult::kOk);
  pump(50);  // acknowledged: the queue is empty again
  EXPECT_EQ(server_->queued_bytes(s), 0u);
  const std::span<const uint8_t> over[] = {as_bytes(bytes).subspan(0, 5'000),
                                           as_bytes(bytes).subspan(5'000, 5'001)};
  EXPECT_EQ(server_->send_gather(s, over), SendResult::kQueueFull);
  EXPECT_EQ(server_->queued_bytes(s), 0u);
  pump(20);
  EXPECT_EQ(upper_.closed.at(s), CloseReason::kSendQueueFull);
}

TEST_F(DpdkTransportTest, WritableAfterTheQueueDrains) {
  TransportLimits limits;
  limits.send_queue_bytes = 100'000;
  limits.send_low_water_bytes = 20'000;
  build(limits);
  (void)connect_one();
  const ConnectionId s = upper_.accepted.at(0);
  ASSERT_EQ(server_->send(s, as_bytes(random_bytes(90'000, 5))), SendResult::kOk);
  EXPECT_EQ(upper_.writable[s], 0);
  pump(300);
  EXPECT_GE(upper_.writable[s], 1);
}

TEST_F(DpdkTransportTest, GracefulCloseFlushesThenFin) {
  build();
  const ConnectionId c = connect_one();
  const ConnectionId s = upper_.accepted.at(0);
  const std::string down = random_bytes(50'000, 6);
  ASSERT_EQ(server_->send(s, as_bytes(down)), SendResult::kOk);
  server_->close(s, CloseMode::kGraceful);
  EXPECT_EQ(server_->send(s, as_bytes(down)), SendResult::kClosed);  // closing: nothing queued
  pump(100);
  EXPECT_EQ(client_events_.data[c], down);
  ASSERT_EQ(client_events_.peer_closed.size(), 1u);
  client_->close(c, CloseMode::kGraceful);
  pump(300);
  EXPECT_EQ(upper_.closed.at(s), CloseReason::kLocalClose);
  EXPECT_EQ(client_events_.closed.at(c), net::tcp::TcpCloseReason::kNormal);
  EXPECT_EQ(server_->stats().closed[static_cast<size_t>(CloseReason::kLocalClose)], 1u);
}

TEST_F(DpdkTransportTest, AbortResetsThePeer) {
  build();
  const ConnectionId c = connect_one();
  const ConnectionId s = upper_.accepted.at(0);
  ASSERT_EQ(server_->send(s, as_bytes(random_bytes(5'000, 7))), SendResult::kOk);
  server_->close(s, CloseMode::kAbort);
  pump(20);
  EXPECT_EQ(upper_.closed.at(s), CloseReason::kLocalClose);
  EXPECT_EQ(client_events_.closed.at(c), net::tcp::TcpCloseReason::kPeerReset);
}

TEST_F(DpdkTransportTest, PeerResetAndPeerFin) {
  build();
  const ConnectionId c1 = connect_one();
  const ConnectionId c2 = connect_one();
  ASSERT_EQ(upper_.accepted.size(), 2u);
  client_->close(c1, CloseMode::kAbort);
  pump(20);
  EXPECT_EQ(upper_.closed.at(upper_.accepted[0]), CloseReason::kPeerReset);
  // A FIN from the peer: the transport finishes its side too (no half-close above).
  client_->close(c2, CloseMode::kGraceful);
  pump(300);
  EXPECT_EQ(upper_.closed.at(upper_.accepted[1]), CloseReason::kPeerClosed);
  EXPECT_EQ(client_events_.closed.at(c2), net::tcp::TcpCloseReason::kNormal);
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(DpdkTransportTest, SetReadingHoldsDataBack) {
  build();
  const ConnectionId c = connect_one();
  const ConnectionId s = upper_.accepted.at(0);
  server_->set_reading(s, false);
  const std::string up = random_bytes(30'000, 8);
  ASSERT_EQ(client_->send(c, as_bytes(up)), SendResult::kOk);
  pump(100);
  EXPECT_TRUE(upper_.data[s].empty());
  server_->set_reading(s, true);
  pump(100);
  EXPECT_EQ(upper_.data[s], up);
}

TEST_F(DpdkTransportTest, MaxConnectionsAtItsEdge) {
  TransportLimits limits;
  limits.max_connections = 2;
  build(limits);
  const ConnectionId c1 = connect_one();
  const ConnectionId c2 = connect_one();
  const ConnectionId c3 = connect_one();
  EXPECT_EQ(upper_.accepted.size(), 2u);
  EXPECT_EQ(server_->connections(), 2u);
  EXPECT_EQ(server_->stats().rejected_max_connections, 1u);
  EXPECT_EQ(client_events_.closed.count(c1), 0u);
  EXPECT_EQ(client_events_.closed.count(c2), 0u);
  EXPECT_EQ(client_events_.closed.at(c3), net::tcp::TcpCloseReason::kPeerReset);
}

TEST_F(DpdkTransportTest, UnknownIdsAreIgnoredAndCounted) {
  build();
  (void)connect_one();
  const ConnectionId bogus = upper_.accepted.at(0) + 12345;
  EXPECT_EQ(server_->send(bogus, as_bytes("x")), SendResult::kClosed);
  server_->close(bogus, CloseMode::kAbort);
  server_->set_reading(bogus, false);
  EXPECT_EQ(server_->queued_bytes(bogus), 0u);
  EXPECT_EQ(server_->stats().unknown_id_calls, 3u);
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(DpdkTransportTest, RefusedBatchIsRecoveredByRetransmission) {
  build();
  const ConnectionId c = connect_one();
  const ConnectionId s = upper_.accepted.at(0);
  batch_.refuse = 3;  // the port had no mbufs for the next three frames
  const std::string down = random_bytes(20'000, 9);
  ASSERT_EQ(server_->send(s, as_bytes(down)), SendResult::kOk);
  pump(2'000);
  EXPECT_EQ(server_->stats().tx_batch_refused, 3u);
  EXPECT_EQ(client_events_.data[c], down);
  EXPECT_GE(server_->tcp_stats()[net::tcp::TcpStats::segments_retransmitted], 3u);
}

TEST_F(DpdkTransportTest, StopClosesEveryConnectionWithShutdown) {
  build();
  const ConnectionId c1 = connect_one();
  (void)connect_one();
  server_->stop();
  ASSERT_EQ(upper_.closed.size(), 2u);
  for (const auto& [id, reason] : upper_.closed) EXPECT_EQ(reason, CloseReason::kShutdown);
  EXPECT_TRUE(server_->idle());
  pump(20);
  EXPECT_EQ(client_events_.closed.at(c1), net::tcp::TcpCloseReason::kPeerReset);
}

TEST_F(DpdkTransportTest, AsksThePortForChecksumsWhenItFillsThem) {
  DpdkTransportOptions o;
  o.net = net_options(kServerIp, 1);
  o.net.gratuitous_arp = false;
  DpdkTransport t(o, clock::Clock::fake(&clock_), server_wheel_);
  Upper upper;
  t.start(upper);
  // A SYN from the client reaches it; its SYN-ACK asks the port for IPv4 + TCP checksums.
  build();
  const ConnectionId c = client_->connect(net::tcp::to_tcp_address(kClientIp), 0,
                                          net::tcp::to_tcp_address(kServerIp), kPort);
  ASSERT_NE(c, kNoConnection);
  client_stack_->poll(clock_.now_ns());
  // Teach the stack the client's MAC (ARP) first, then the SYN.
  FakeBatch batch;
  for (int round = 0; round < 5; ++round) {
    std::vector<std::vector<uint8_t>> in(client_port_.out.begin(), client_port_.out.end());
    client_port_.out.clear();
    std::vector<RxFrame> rx;
    for (const auto& f : in) rx.push_back(RxFrame{.bytes = f});
    t.on_frames(rx, batch);
    while (!batch.frames.empty()) {
      std::vector<uint8_t> f = std::move(batch.frames.front());
      const TxOffload off = batch.offloads.front();
      batch.frames.pop_front();
      batch.offloads.pop_front();
      if (f.size() > 23 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 6) {
        EXPECT_TRUE(off.ipv4_checksum);
        EXPECT_TRUE(off.tcp_checksum);
        EXPECT_FALSE(off.udp_checksum);
        EXPECT_EQ(off.l2_len, 14);
        EXPECT_EQ(off.l3_len, 20);
        return;
      }
      (void)client_stack_->receive(f, net::RxMeta{}, clock_.now_ns());
    }
    client_->poll();
    clock_.advance_ns(1'000'000);
    client_stack_->poll(clock_.now_ns());
  }
  FAIL() << "no TCP frame from the transport";
}

}  // namespace
}  // namespace herald::dataplane::dpdk

namespace herald::dataplane::dpdk {
namespace {

// Several workers on one port: a client transport of worker `queue` opens connections to the
// fixture's server, frames moved between the two transports' batches.
class SteeredClientTest : public DpdkTransportTest {
 protected:
  static constexpr uint16_t kFirstPort = 40000;
  static constexpr uint16_t kPorts = 64;

  void build_client(uint16_t queue) {
    DpdkTransportOptions o;
    o.net = net_options(kClientIp, 2);
    o.port = 0;  // no listener: a client
    o.port_fills_checksums = false;
    o.tcp.ephemeral_port_min = kFirstPort;
    o.tcp.ephemeral_port_max = kFirstPort + kPorts - 1;
    o.steering = steering_;
    o.queue = queue;
    client_transport_ =
        std::make_unique<DpdkTransport>(o, clock::Clock::fake(&clock_), client_transport_wheel_);
    client_transport_->start(client_upper_);
  }

  // Both ways until quiet; every frame the client sends is kept in `sent_`.
  void pump_transports(int steps = 50) {
    for (int i = 0; i < steps; ++i) {
      clock_.advance_ns(1'000'000);
      (void)server_wheel_.advance(clock_.now_ns());
      (void)client_transport_wheel_.advance(clock_.now_ns());
      (void)client_transport_->on_turn(0, client_batch_);
      std::vector<RxFrame> rx;
      std::deque<std::vector<uint8_t>> in;
      in.swap(client_batch_.frames);
      client_batch_.offloads.clear();
      for (const auto& f : in) {
        sent_.push_back(f);
        rx.push_back(RxFrame{.bytes = f});
      }
      server_->on_frames(rx, batch_);
      (void)server_->on_turn(0, batch_);
      std::deque<std::vector<uint8_t>> back;
      back.swap(batch_.frames);
      batch_.offloads.clear();
      std::vector<RxFrame> rx_back;
      for (const auto& f : back) rx_back.push_back(RxFrame{.bytes = f});
      client_transport_->on_frames(rx_back, client_batch_);
    }
  }

  std::shared_ptr<const FlowSteering> steering_ = std::make_shared<const FlowSteering>(2);
  timer::TimerWheel client_transport_wheel_{
      timer::TimerWheelConfig{.capacity = 4096, .tick_ns = 1'000'000, .start_ns = 1'000'000'000}};
  Upper client_upper_;
  FakeBatch client_batch_;
  std::unique_ptr<DpdkTransport> client_transport_;
  std::vector<std::vector<uint8_t>> sent_;
};

// An active open takes only a source port whose flow (as the port receives the server's
// segments) hashes to the opening worker's queue; when the range has no such port left, the
// connect is refused and counted, exactly at the number of qualifying ports.
TEST_F(SteeredClientTest, ActiveOpensTakeOnlyPortsThatHashToTheirOwnQueue) {
  build();
  const uint32_t server = kServerIp.v4_host_order(), client = kClientIp.v4_host_order();
  for (uint16_t queue = 0; queue < 2; ++queue) {
    build_client(queue);
    sent_.clear();
    uint32_t qualifying = 0;
    for (uint32_t p = kFirstPort; p < uint32_t{kFirstPort} + kPorts; ++p) {
      if (steering_->queue_for(server, client, kPort, static_cast<uint16_t>(p)) == queue) {
        ++qualifying;
      }
    }
    ASSERT_GT(qualifying, 0u);
    ASSERT_LT(qualifying, kPorts);  // the filter really excludes ports
    const size_t accepted_before = upper_.accepted.size();
    // Resolved first: otherwise the SYNs past the ARP queue's per-entry limit wait for their
    // retransmission.
    client_transport_->introduce_to(kServerIp);
    pump_transports(5);
    uint32_t opened = 0;
    while (client_transport_->connect(kServerIp, kPort) != kNoConnection) ++opened;
    EXPECT_EQ(opened, qualifying);
    EXPECT_EQ(client_transport_->stats().connect_refused_local, 1u);
    pump_transports();
    // Every SYN left from a port of this queue; the server accepted each connection.
    uint32_t syns = 0;
    for (const auto& f : sent_) {
      if (f.size() < 14 + 20 + 20 || f[12] != 0x08 || f[13] != 0x00 || f[14 + 9] != 6) continue;
      const uint8_t* tcp = f.data() + 14 + (f[14] & 0x0f) * 4;
      if ((tcp[13] & 0x12) != 0x02) continue;  // SYN without ACK
      ++syns;
      const auto source_port = static_cast<uint16_t>(tcp[0] << 8 | tcp[1]);
      EXPECT_EQ(steering_->queue_for(server, client, kPort, source_port), queue) << source_port;
    }
    EXPECT_EQ(syns, qualifying);
    EXPECT_EQ(upper_.accepted.size() - accepted_before, qualifying);
    client_transport_->stop();  // resets every connection: the server forgets them
    pump_transports(5);
    client_transport_.reset();
  }
}

// A copy of an ARP frame another worker received (RxFrame::replica): learned, never answered,
// counted apart from the frames this worker received.
TEST_F(DpdkTransportTest, ArpReplicasAreLearnedNotAnswered) {
  build();
  // The client asks who has the server's address (before it: its own announcement).
  (void)client_->connect(net::tcp::to_tcp_address(kClientIp), 0,
                         net::tcp::to_tcp_address(kServerIp), kPort);
  client_stack_->poll(clock_.now_ns());
  std::vector<uint8_t> request;
  const uint32_t server = kServerIp.v4_host_order();
  for (const auto& f : client_port_.out) {
    const size_t tpa = 14 + 24;
    if (f.size() >= tpa + 4 && f[12] == 0x08 && f[13] == 0x06 &&
        (uint32_t{f[tpa]} << 24 | uint32_t{f[tpa + 1]} << 16 | uint32_t{f[tpa + 2]} << 8 |
         f[tpa + 3]) == server) {
      request = f;
    }
  }
  ASSERT_FALSE(request.empty());
  (void)server_->on_turn(0, batch_);  // the server's own announcement out of the way
  batch_.frames.clear();
  batch_.offloads.clear();
  const uint64_t rx_before = server_->net_stats().count(net::NetCounter::kRxFrames);
  const uint64_t learned_before = server_->net_stats().count(net::NetCounter::kArpLearned);
  std::vector<RxFrame> rx{RxFrame{.bytes = request, .replica = true}};
  server_->on_frames(rx, batch_);
  (void)server_->on_turn(0, batch_);
  EXPECT_TRUE(batch_.frames.empty()) << "a replica was answered";
  EXPECT_EQ(server_->net_stats().count(net::NetCounter::kArpReplicas), 1u);
  EXPECT_EQ(server_->net_stats().count(net::NetCounter::kRxFrames), rx_before);
  EXPECT_EQ(server_->net_stats().count(net::NetCounter::kArpLearned), learned_before + 1);
  EXPECT_EQ(server_->net_stats().count(net::NetCounter::kArpRepliesSent), 0u);
  // The same frame as received from the port is answered.
  rx[0].replica = false;
  server_->on_frames(rx, batch_);
  (void)server_->on_turn(0, batch_);
  EXPECT_EQ(batch_.frames.size(), 1u);
  EXPECT_EQ(server_->net_stats().count(net::NetCounter::kArpRepliesSent), 1u);
}

}  // namespace
}  // namespace herald::dataplane::dpdk

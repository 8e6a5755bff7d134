// KernelTransport over real loopback sockets: an echo layer (with read backpressure through
// set_reading / on_writable) and a recording layer above the transport, plain kernel-socket
// clients below it. Every wait is bounded (run_until) so a hang fails instead of stalling.
#include "dataplane/transport/kernel/kernel_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/platform/uring/uring_test_util.h"

namespace herald::dataplane {
namespace {

using uring::testing::connect_blocking;
using uring::testing::pattern;
using uring::testing::read_exact;
using uring::testing::run_until;
using uring::testing::write_all;

struct ConnRecord {
  PeerAddress peer;
  std::vector<uint8_t> received;
  uint32_t data_events = 0;
  uint32_t writable_events = 0;
  bool closed = false;
  CloseReason reason = CloseReason::kCount;
};

// The layer above: records everything; optionally echoes what it receives, pausing reads while
// its send queue is above `pause_above_bytes` and resuming on on_writable (the backpressure the
// session layer will use).
class Layer : public TransportEvents {
 public:
  Transport* transport = nullptr;
  bool echo = false;
  bool pause_on_accept = false;
  bool pause_after_each_data = false;
  uint32_t pause_above_bytes = 256 * 1024;
  std::map<ConnectionId, ConnRecord> conns;
  std::vector<ConnectionId> order;  // accept order
  uint32_t closed = 0;
  std::vector<SendResult> send_results;
  std::function<void(ConnectionId)> on_accept_hook;
  std::function<void(ConnectionId, std::span<const uint8_t>)> on_data_hook;

  void on_accepted(ConnectionId id, const PeerAddress& peer) override {
    EXPECT_NE(id, kNoConnection);
    EXPECT_EQ(conns.count(id), 0u) << "ids are never reused";
    conns[id].peer = peer;
    order.push_back(id);
    if (pause_on_accept) transport->set_reading(id, false);
    if (on_accept_hook) on_accept_hook(id);
  }
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    auto it = conns.find(id);
    ASSERT_NE(it, conns.end());
    ASSERT_FALSE(it->second.closed);
    ASSERT_FALSE(bytes.empty());
    ++it->second.data_events;
    if (echo) {
      const SendResult r = transport->send(id, bytes);
      if (r != SendResult::kOk) send_results.push_back(r);
      if (transport->queued_bytes(id) > pause_above_bytes) transport->set_reading(id, false);
    } else {
      it->second.received.insert(it->second.received.end(), bytes.begin(), bytes.end());
    }
    if (pause_after_each_data) transport->set_reading(id, false);
    if (on_data_hook) on_data_hook(id, bytes);
  }
  void on_writable(ConnectionId id) override {
    ++conns[id].writable_events;
    if (echo) transport->set_reading(id, true);
  }
  void on_closed(ConnectionId id, CloseReason reason) override {
    auto it = conns.find(id);
    ASSERT_NE(it, conns.end());
    EXPECT_FALSE(it->second.closed) << "exactly one on_closed";
    it->second.closed = true;
    it->second.reason = reason;
    ++closed;
  }
  ConnRecord& nth(size_t i) { return conns.at(order.at(i)); }
};

class KernelTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_ = uring::testing::make_loop();
    ASSERT_NE(loop_, nullptr);
    options_.listen_address = "127.0.0.1";
  }
  void TearDown() override {
    transports_.clear();
    loop_.reset();
  }

  KernelTransport* make(Layer& layer, const KernelTransportOptions& options) {
    auto t = KernelTransport::create(*loop_, options);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return nullptr;
    transports_.push_back(std::move(*t));
    KernelTransport* raw = transports_.back().get();
    layer.transport = raw;
    raw->start(layer);
    return raw;
  }
  KernelTransport* make(Layer& layer) { return make(layer, options_); }

  template <typename Pred>
  bool run(Pred done) {
    return run_until(*loop_, done);
  }
  // Runs the loop while `thread` works, then joins it.
  bool run_with(std::thread& thread, const std::atomic<bool>& done) {
    const bool ok = run([&] { return done.load(); });
    thread.join();
    return ok;
  }

  // Several MiB each way on a few connections at once, the echo pausing its reads while its
  // queue is high: byte-exact and in order, and the pause / resume path runs many times.
  void echo_large(KernelTransport* t, size_t bytes_each, int clients_count) {
    std::atomic<int> ok{0};
    std::atomic<bool> done{false};
    std::thread clients([&] {
      std::vector<std::thread> threads;
      for (int i = 0; i < clients_count; ++i) {
        threads.emplace_back([&, i] {
          const int fd = connect_blocking(t->port());
          const auto sent = pattern(bytes_each, static_cast<uint32_t>(100 + i));
          std::thread writer([&] { EXPECT_TRUE(write_all(fd, sent.data(), sent.size())); });
          std::vector<uint8_t> got(bytes_each);
          const bool read_ok = read_exact(fd, got.data(), got.size());
          writer.join();
          if (read_ok && got == sent) ++ok;
          ::close(fd);
        });
      }
      for (auto& th : threads) th.join();
      done = true;
    });
    ASSERT_TRUE(run_with(clients, done));
    EXPECT_EQ(ok.load(), clients_count);
  }

  // The layers above must outlive their transports (a failed ASSERT leaves the test body
  // early): owned here, destroyed after the transports.
  Layer& new_layer() { return layers_.emplace_back(); }

  std::unique_ptr<uring::EventLoop> loop_;
  KernelTransportOptions options_;
  std::deque<Layer> layers_;
  std::vector<std::unique_ptr<KernelTransport>> transports_;
};

// Reads until EOF or error: returns the bytes, and the errno of the end (0 for EOF).
std::vector<uint8_t> read_to_end(int fd, int* end_errno) {
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r > 0) {
      out.insert(out.end(), buf, buf + r);
      continue;
    }
    *end_errno = r == 0 ? 0 : errno;
    return out;
  }
}

void set_linger_zero(int fd) {
  const linger lg{.l_onoff = 1, .l_linger = 0};
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
}

TEST(TransportNames, CloseReasonsAndPeerAddresses) {
  EXPECT_STREQ(close_reason_name(CloseReason::kPeerClosed), "peer_closed");
  EXPECT_STREQ(close_reason_name(CloseReason::kSendQueueFull), "send_queue_full");
  EXPECT_STREQ(close_reason_name(CloseReason::kShutdown), "shutdown");
  EXPECT_STREQ(close_reason_name(CloseReason::kCount), "unknown");

  PeerAddress v4;
  auto* sin = reinterpret_cast<sockaddr_in*>(&v4.address);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(51234);
  ASSERT_EQ(::inet_pton(AF_INET, "203.0.113.7", &sin->sin_addr), 1);
  v4.length = sizeof(sockaddr_in);
  EXPECT_EQ(v4.to_string(), "203.0.113.7:51234");

  PeerAddress v6;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&v6.address);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(443);
  ASSERT_EQ(::inet_pton(AF_INET6, "2001:db8::1", &sin6->sin6_addr), 1);
  v6.length = sizeof(sockaddr_in6);
  EXPECT_EQ(v6.to_string(), "[2001:db8::1]:443");

  PeerAddress empty;
  EXPECT_EQ(empty.to_string(), "?");
  v6.length = 4;  // truncated: not trusted
  EXPECT_EQ(v6.to_string(), "?");
}

TEST_F(KernelTransportTest, RejectsBadOptions) {
  KernelTransportOptions o = options_;
  o.listen_address = "not-an-address";
  EXPECT_FALSE(KernelTransport::create(*loop_, o).ok());
  o = options_;
  o.limits.send_low_water_bytes = o.limits.send_queue_bytes + 1;
  EXPECT_FALSE(KernelTransport::create(*loop_, o).ok());
  o = options_;
  o.limits.max_connections = 0;
  EXPECT_FALSE(KernelTransport::create(*loop_, o).ok());
  o = options_;
  o.recv_buffer_count = 3;  // not a power of two
  EXPECT_FALSE(KernelTransport::create(*loop_, o).ok());
}

TEST_F(KernelTransportTest, EchoesManyConnectionsAtOnce) {
  Layer& layer = new_layer();
  layer.echo = true;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  constexpr int kClients = 48;
  constexpr size_t kBytes = 48 * 1024;  // fits the socket buffers: write all, then read
  std::atomic<int> ok{0};
  std::atomic<bool> done{false};
  std::thread clients([&] {
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i) {
      threads.emplace_back([&, i] {
        const int fd = connect_blocking(t->port());
        const auto sent = pattern(kBytes, static_cast<uint32_t>(i));
        std::vector<uint8_t> got(kBytes);
        if (write_all(fd, sent.data(), sent.size()) && read_exact(fd, got.data(), got.size()) &&
            got == sent) {
          ++ok;
        }
        ::close(fd);
      });
    }
    for (auto& th : threads) th.join();
    done = true;
  });
  ASSERT_TRUE(run_with(clients, done));
  EXPECT_EQ(ok.load(), kClients);
  ASSERT_TRUE(run([&] { return layer.closed == kClients; }));
  for (auto& [id, rec] : layer.conns) EXPECT_EQ(rec.reason, CloseReason::kPeerClosed);
  EXPECT_TRUE(layer.send_results.empty());
  const auto& s = t->stats();
  EXPECT_EQ(s.accepts, static_cast<uint64_t>(kClients));
  EXPECT_EQ(s.bytes_in, kClients * kBytes);
  EXPECT_EQ(s.bytes_out, kClients * kBytes);
  EXPECT_EQ(s.closes[static_cast<size_t>(CloseReason::kPeerClosed)], uint64_t{kClients});
  EXPECT_EQ(t->connections(), 0u);
  EXPECT_EQ(layer.nth(0).peer.to_string().rfind("127.0.0.1:", 0), 0u);
}

TEST_F(KernelTransportTest, SeveralMebibytesEachWayByteExact) {
  Layer& layer = new_layer();
  layer.echo = true;
  layer.pause_above_bytes = 128 * 1024;
  options_.limits.send_queue_bytes = 8 * 1024 * 1024;
  options_.limits.send_low_water_bytes = 32 * 1024;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  constexpr size_t kBytes = 6 * 1024 * 1024;
  echo_large(t, kBytes, 3);
  ASSERT_TRUE(run([&] { return layer.closed == 3; }));
  EXPECT_TRUE(layer.send_results.empty());
  const auto& s = t->stats();
  EXPECT_EQ(s.bytes_in, 3 * kBytes);
  EXPECT_EQ(s.bytes_out, 3 * kBytes);
  EXPECT_GT(s.writable_events, 0u);
}

// The kernel paths older kernels get: single-shot accept and receive, re-armed by the loop.
TEST_F(KernelTransportTest, SingleShotFallbacksEchoByteExact) {
  uring::Options o;
  o.allow_multishot_accept = false;
  o.allow_multishot_recv = false;
  loop_ = uring::testing::make_loop(o);
  ASSERT_NE(loop_, nullptr);
  Layer& layer = new_layer();
  layer.echo = true;
  layer.pause_above_bytes = 64 * 1024;
  options_.limits.send_queue_bytes = 8 * 1024 * 1024;
  options_.limits.send_low_water_bytes = 16 * 1024;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  constexpr size_t kBytes = 2 * 1024 * 1024;
  echo_large(t, kBytes, 2);
  // The clients can read the last bytes before the loop reaps the send's completion, which is
  // where bytes_out is counted: wait for the closes, as the test above does.
  ASSERT_TRUE(run([&] { return layer.closed == 2; }));
  EXPECT_EQ(t->stats().bytes_out, 2 * kBytes);
  EXPECT_TRUE(layer.send_results.empty());
}

// Small sends made while a send is in flight coalesce into the connection's last chunk: a
// hundred send() calls go out in two send requests (the first, then everything behind it).
TEST_F(KernelTransportTest, SmallSendsCoalesceIntoFewRequests) {
  Layer& layer = new_layer();
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  std::vector<uint8_t> expected;
  layer.on_accept_hook = [&](ConnectionId id) {
    for (int i = 0; i < 100; ++i) {
      const auto piece = pattern(10, static_cast<uint32_t>(i));
      expected.insert(expected.end(), piece.begin(), piece.end());
      EXPECT_EQ(t->send(id, piece), SendResult::kOk);
    }
  };
  const int fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return t->stats().bytes_out == 1000; }));
  std::vector<uint8_t> got(1000);
  ASSERT_TRUE(read_exact(fd, got.data(), got.size()));
  EXPECT_EQ(got, expected);
  EXPECT_EQ(t->stats().sends, 100u);
  EXPECT_LE(t->stats().send_requests, 2u);
  EXPECT_EQ(t->stats().send_chunks_allocated, 1u);
  // Chunks are pooled: another burst reuses the one already made.
  const auto more = pattern(5000, 9);
  EXPECT_EQ(t->send(layer.order[0], more), SendResult::kOk);
  ASSERT_TRUE(run([&] { return t->stats().bytes_out == 6000; }));
  EXPECT_EQ(t->stats().send_chunks_allocated, 1u);
  ::close(fd);
}

TEST_F(KernelTransportTest, TinyBufferRingStillDeliversEveryByte) {
  Layer& layer = new_layer();
  layer.echo = true;
  layer.pause_above_bytes = 64 * 1024;
  options_.recv_buffer_count = 2;
  options_.recv_buffer_size_bytes = 64;
  options_.limits.send_queue_bytes = 4 * 1024 * 1024;
  options_.limits.send_low_water_bytes = 16 * 1024;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  constexpr size_t kBytes = 512 * 1024;
  echo_large(t, kBytes, 4);
  EXPECT_EQ(t->stats().bytes_in, 4 * kBytes);
  // Four connections racing for two 64-byte buffers run the ring dry.
  EXPECT_GT(t->stats().recv_buffers_exhausted, 0u);
}

TEST_F(KernelTransportTest, SendQueueLimitEdgeClosesWithSendQueueFull) {
  Layer& layer = new_layer();
  options_.limits.send_queue_bytes = 64 * 1024;
  options_.limits.send_low_water_bytes = 16 * 1024;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  const ConnectionId id = layer.order[0];
  // Nothing completes between calls without the loop running: the queue is exactly what was
  // sent, so the edge is exact.
  const auto bytes = pattern(64 * 1024 - 10, 1);
  EXPECT_EQ(t->send(id, bytes), SendResult::kOk);
  const uint8_t ten[10] = {};
  EXPECT_EQ(t->send(id, ten), SendResult::kOk);  // exactly at the limit
  EXPECT_EQ(t->queued_bytes(id), 64u * 1024);
  const uint8_t one[1] = {};
  EXPECT_EQ(t->send(id, one), SendResult::kQueueFull);  // one past it
  EXPECT_EQ(t->send(id, one), SendResult::kClosed);     // being closed: refused, not queued
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kSendQueueFull);
  EXPECT_EQ(t->stats().queue_full, 1u);
  EXPECT_EQ(t->stats().closes[static_cast<size_t>(CloseReason::kSendQueueFull)], 1u);
  int end = 0;
  (void)read_to_end(fd, &end);
  EXPECT_EQ(end, ECONNRESET);
  ::close(fd);
}

TEST_F(KernelTransportTest, ClientThatStopsReadingIsCutOff) {
  Layer& layer = new_layer();
  options_.limits.send_queue_bytes = 256 * 1024;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int fd = connect_blocking(t->port());
  const int small = 4096;
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  const ConnectionId id = layer.order[0];
  const auto chunk = pattern(16 * 1024, 2);
  SendResult last = SendResult::kOk;
  uint32_t queued_before = 0;
  uint64_t accepted_bytes = 0;
  ASSERT_TRUE(run([&] {
    queued_before = t->queued_bytes(id);
    last = t->send(id, chunk);
    if (last == SendResult::kOk) accepted_bytes += chunk.size();
    return last != SendResult::kOk;
  }));
  EXPECT_EQ(last, SendResult::kQueueFull);
  // Refused exactly when this send would have crossed the limit, not before.
  EXPECT_GT(queued_before + chunk.size(), options_.limits.send_queue_bytes);
  EXPECT_LE(queued_before, options_.limits.send_queue_bytes);
  EXPECT_GT(accepted_bytes, options_.limits.send_queue_bytes);  // the socket took some first
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kSendQueueFull);
  ::close(fd);
}

TEST_F(KernelTransportTest, GracefulCloseFlushesEverythingBeforeFin) {
  Layer& layer = new_layer();
  options_.limits.send_queue_bytes = 4 * 1024 * 1024;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const auto payload = pattern(3 * 1024 * 1024, 3);
  layer.on_accept_hook = [&](ConnectionId id) {
    // Several sends, one gathered: all queued before the close.
    const size_t third = payload.size() / 3;
    EXPECT_EQ(t->send(id, std::span(payload).first(third)), SendResult::kOk);
    const std::span<const uint8_t> parts[2] = {std::span(payload).subspan(third, third),
                                               std::span(payload).subspan(2 * third)};
    EXPECT_EQ(t->send_gather(id, parts), SendResult::kOk);
    t->close(id, CloseMode::kGraceful);
    EXPECT_EQ(t->send(id, parts[0]), SendResult::kClosed);
  };
  std::vector<uint8_t> got;
  int end = -1;
  std::atomic<bool> done{false};
  std::thread client([&] {
    const int fd = connect_blocking(t->port());
    got = read_to_end(fd, &end);
    ::close(fd);
    done = true;
  });
  ASSERT_TRUE(run_with(client, done));
  EXPECT_EQ(end, 0);  // FIN, not RST
  EXPECT_TRUE(got == payload) << got.size() << " of " << payload.size();
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kLocalClose);
  EXPECT_EQ(t->stats().linger_timeouts, 0u);
}

TEST_F(KernelTransportTest, GracefulCloseGivesUpOnASilentPeer) {
  Layer& layer = new_layer();
  options_.close_linger_ms = 50;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int fd = connect_blocking(t->port());  // never closes until the end
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  t->close(layer.order[0], CloseMode::kGraceful);
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kLocalClose);
  EXPECT_EQ(t->stats().linger_timeouts, 1u);
  int end = -1;
  (void)read_to_end(fd, &end);
  EXPECT_EQ(end, 0);
  ::close(fd);
}

TEST_F(KernelTransportTest, GracefulCloseWhilePausedDrainsSoThePeerSeesFinNotReset) {
  Layer& layer = new_layer();
  layer.pause_on_accept = true;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  const auto junk = pattern(64 * 1024, 7);  // unread by the server: would turn close into RST
  ASSERT_TRUE(write_all(fd, junk.data(), junk.size()));
  for (int i = 0; i < 5; ++i) (void)loop_->run_once(2'000'000);
  const uint8_t bye[3] = {'b', 'y', 'e'};
  ASSERT_EQ(t->send(layer.order[0], bye), SendResult::kOk);
  t->close(layer.order[0], CloseMode::kGraceful);
  std::vector<uint8_t> got;
  int end = -1;
  std::atomic<bool> done{false};
  std::thread client([&] {
    got = read_to_end(fd, &end);
    ::close(fd);
    done = true;
  });
  ASSERT_TRUE(run_with(client, done));
  EXPECT_EQ(end, 0);
  EXPECT_EQ(got, std::vector<uint8_t>(bye, bye + 3));
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kLocalClose);
  EXPECT_EQ(layer.nth(0).data_events, 0u);  // closing: drained, not delivered
}

TEST_F(KernelTransportTest, CloseFromInsideOnDataSendsTheReplyFirst) {
  Layer& layer = new_layer();
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  layer.on_data_hook = [&](ConnectionId id, std::span<const uint8_t> bytes) {
    EXPECT_EQ(t->send(id, bytes), SendResult::kOk);
    t->close(id, CloseMode::kGraceful);
    EXPECT_FALSE(layer.conns[id].closed);
  };
  std::vector<uint8_t> got;
  int end = -1;
  std::atomic<bool> done{false};
  std::thread client([&] {
    const int fd = connect_blocking(t->port());
    const uint8_t ping[4] = {'p', 'i', 'n', 'g'};
    EXPECT_TRUE(write_all(fd, ping, sizeof(ping)));
    got = read_to_end(fd, &end);
    ::close(fd);
    done = true;
  });
  ASSERT_TRUE(run_with(client, done));
  EXPECT_EQ(end, 0);
  EXPECT_EQ(got, std::vector<uint8_t>({'p', 'i', 'n', 'g'}));
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kLocalClose);
}

TEST_F(KernelTransportTest, WritableOnceWhenTheQueueFallsToTheLowWaterMark) {
  Layer& layer = new_layer();
  options_.limits.send_queue_bytes = 4 * 1024 * 1024;
  options_.limits.send_low_water_bytes = 16 * 1024;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  const ConnectionId id = layer.order[0];
  // Below the mark: never "writable" (it never stopped being).
  const auto small = pattern(1000, 8);
  ASSERT_EQ(t->send(id, small), SendResult::kOk);
  ASSERT_TRUE(run([&] { return t->queued_bytes(id) == 0; }));
  EXPECT_EQ(layer.nth(0).writable_events, 0u);
  std::vector<uint8_t> got(small.size());
  ASSERT_TRUE(read_exact(fd, got.data(), got.size()));
  // Above it (the client is not reading yet, so most of it stays queued), then drained.
  const auto big = pattern(3 * 1024 * 1024, 9);
  ASSERT_EQ(t->send(id, big), SendResult::kOk);
  EXPECT_GT(t->queued_bytes(id), options_.limits.send_low_water_bytes);
  std::atomic<bool> done{false};
  bool read_ok = false;
  std::thread client([&] {
    std::vector<uint8_t> rest(big.size());
    read_ok = read_exact(fd, rest.data(), rest.size()) && rest == big;
    done = true;
  });
  ASSERT_TRUE(run_with(client, done));
  EXPECT_TRUE(read_ok);
  ASSERT_TRUE(run([&] { return t->queued_bytes(id) == 0; }));
  EXPECT_EQ(layer.nth(0).writable_events, 1u);
  EXPECT_EQ(t->stats().writable_events, 1u);
  ::close(fd);
}

TEST_F(KernelTransportTest, AbortResetsThePeer) {
  Layer& layer = new_layer();
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  const ConnectionId id = layer.order[0];
  const uint8_t hello[5] = {'h', 'e', 'l', 'l', 'o'};
  ASSERT_TRUE(write_all(fd, hello, sizeof(hello)));
  ASSERT_TRUE(run([&] { return layer.nth(0).received.size() == 5; }));
  t->close(id, CloseMode::kAbort);
  EXPECT_FALSE(layer.nth(0).closed);  // on_closed never runs inside a Transport call
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kLocalClose);
  uint8_t buf[16];
  errno = 0;
  EXPECT_LT(::read(fd, buf, sizeof(buf)), 0);
  EXPECT_EQ(errno, ECONNRESET);
  ::close(fd);
}

TEST_F(KernelTransportTest, PeerFinAndPeerReset) {
  Layer& layer = new_layer();
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int a = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  const int b = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 2; }));
  const uint8_t data[3] = {1, 2, 3};
  ASSERT_TRUE(write_all(a, data, sizeof(data)));
  ::shutdown(a, SHUT_WR);
  ASSERT_TRUE(run([&] { return layer.nth(0).closed; }));
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kPeerClosed);
  EXPECT_EQ(layer.nth(0).received, std::vector<uint8_t>({1, 2, 3}));  // data before the FIN
  int end = -1;
  (void)read_to_end(a, &end);
  EXPECT_EQ(end, 0);  // we finished our side too
  set_linger_zero(b);
  ::close(b);
  ASSERT_TRUE(run([&] { return layer.nth(1).closed; }));
  EXPECT_EQ(layer.nth(1).reason, CloseReason::kPeerReset);
  ::close(a);
  EXPECT_EQ(t->stats().closes[static_cast<size_t>(CloseReason::kPeerReset)], 1u);
  EXPECT_EQ(t->stats().closes[static_cast<size_t>(CloseReason::kPeerClosed)], 1u);
}

TEST_F(KernelTransportTest, PausedReadingDeliversNothingThenEverything) {
  Layer& layer = new_layer();
  layer.pause_on_accept = true;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const auto payload = pattern(1024 * 1024, 4);
  std::thread client([&] {
    const int fd = connect_blocking(t->port());
    EXPECT_TRUE(write_all(fd, payload.data(), payload.size()));  // blocks until resumed
    ::shutdown(fd, SHUT_WR);  // the FIN must wait behind the paused bytes too
    int end = -1;
    (void)read_to_end(fd, &end);
    ::close(fd);
  });
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  // Paused: rounds of the loop deliver nothing and do not close, however much is waiting.
  for (int i = 0; i < 20; ++i) (void)loop_->run_once(5'000'000);
  EXPECT_EQ(layer.nth(0).data_events, 0u);
  EXPECT_FALSE(layer.nth(0).closed);
  t->set_reading(layer.order[0], true);
  ASSERT_TRUE(run([&] { return layer.nth(0).closed; }));
  EXPECT_TRUE(layer.nth(0).received == payload) << layer.nth(0).received.size();
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kPeerClosed);
  client.join();
}

TEST_F(KernelTransportTest, PauseAfterEveryDeliveryLosesNothing) {
  Layer& layer = new_layer();
  layer.pause_after_each_data = true;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const auto payload = pattern(2 * 1024 * 1024, 5);
  std::thread client([&] {
    const int fd = connect_blocking(t->port());
    EXPECT_TRUE(write_all(fd, payload.data(), payload.size()));
    ::close(fd);
  });
  // Resume every round: receives are cancelled and re-armed thousands of times, with bytes
  // landing between a pause and its cancel.
  ASSERT_TRUE(run([&] {
    for (ConnectionId id : layer.order) t->set_reading(id, true);
    return !layer.order.empty() && layer.nth(0).closed;
  }));
  client.join();
  EXPECT_TRUE(layer.nth(0).received == payload) << layer.nth(0).received.size();
  EXPECT_EQ(layer.nth(0).reason, CloseReason::kPeerClosed);
  EXPECT_GT(layer.nth(0).data_events, 1u);
}

TEST_F(KernelTransportTest, MaxConnectionsEdge) {
  Layer& layer = new_layer();
  options_.limits.max_connections = 4;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  std::vector<int> fds;
  for (int i = 0; i < 4; ++i) {
    fds.push_back(connect_blocking(t->port()));
    ASSERT_TRUE(run([&] { return layer.order.size() == fds.size(); }));
  }
  EXPECT_EQ(t->connections(), 4u);
  const int extra = connect_blocking(t->port());  // the kernel completes the handshake...
  ASSERT_TRUE(run([&] { return t->stats().refused_over_limit == 1; }));  // ...we refuse it
  EXPECT_EQ(layer.order.size(), 4u);
  int end = -1;
  (void)read_to_end(extra, &end);
  EXPECT_EQ(end, ECONNRESET);
  ::close(extra);
  // Room again once one leaves.
  ::close(fds[0]);
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  fds[0] = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 5; }));
  EXPECT_EQ(t->connections(), 4u);
  EXPECT_EQ(t->stats().accepts, 5u);
  EXPECT_EQ(t->stats().refused_over_limit, 1u);
  for (int fd : fds) ::close(fd);
}

TEST_F(KernelTransportTest, TwoTransportsShareThePort) {
  Layer& a = new_layer();
  a.echo = true;
  Layer& b = new_layer();
  b.echo = true;
  KernelTransport* ta = make(a);
  ASSERT_NE(ta, nullptr);
  KernelTransportOptions second = options_;
  second.port = ta->port();
  KernelTransport* tb = make(b, second);
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(tb->port(), ta->port());
  // The kernel hashes each connection to one listener; 64 connections all landing on one of
  // two is a 2^-63 event.
  constexpr int kClients = 64;
  std::atomic<int> ok{0};
  std::atomic<bool> done{false};
  std::thread clients([&] {
    for (int i = 0; i < kClients; ++i) {
      const int fd = connect_blocking(ta->port());
      const uint8_t byte[1] = {static_cast<uint8_t>(i)};
      uint8_t back[1] = {};
      if (write_all(fd, byte, 1) && read_exact(fd, back, 1) && back[0] == byte[0]) ++ok;
      ::close(fd);
    }
    done = true;
  });
  ASSERT_TRUE(run_with(clients, done));
  EXPECT_EQ(ok.load(), kClients);
  EXPECT_GT(ta->stats().accepts, 0u);
  EXPECT_GT(tb->stats().accepts, 0u);
  EXPECT_EQ(ta->stats().accepts + tb->stats().accepts, uint64_t{kClients});
}

TEST_F(KernelTransportTest, StaleIdsAreIgnoredAndCounted) {
  Layer& layer = new_layer();
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  int fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 1; }));
  const ConnectionId old_id = layer.order[0];
  ::close(fd);
  ASSERT_TRUE(run([&] { return layer.closed == 1; }));
  // The slot is reused by the next connection, under a new id.
  fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer.order.size() == 2; }));
  const ConnectionId new_id = layer.order[1];
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(new_id & 0xffffffffu, old_id & 0xffffffffu);

  const uint64_t before = t->stats().unknown_id_calls;
  const uint8_t byte[1] = {7};
  EXPECT_EQ(t->send(old_id, byte), SendResult::kClosed);
  t->close(old_id, CloseMode::kAbort);
  t->set_reading(old_id, false);
  EXPECT_EQ(t->queued_bytes(old_id), 0u);
  EXPECT_EQ(t->send(kNoConnection, byte), SendResult::kClosed);
  EXPECT_EQ(t->send(0xdeadbeef12345678ull, byte), SendResult::kClosed);
  EXPECT_EQ(t->stats().unknown_id_calls, before + 6);
  // The live connection was not touched by any of it.
  ASSERT_TRUE(write_all(fd, byte, 1));
  ASSERT_TRUE(run([&] { return layer.nth(1).received.size() == 1; }));
  EXPECT_FALSE(layer.nth(1).closed);
  ::close(fd);
}

TEST_F(KernelTransportTest, StopClosesEveryConnectionWithShutdown) {
  Layer& layer = new_layer();
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(connect_blocking(t->port()));
  ASSERT_TRUE(run([&] { return layer.order.size() == 3; }));
  const uint8_t byte[1] = {1};
  EXPECT_EQ(t->send(layer.order[0], byte), SendResult::kOk);
  const uint16_t port = t->port();
  t->stop();
  ASSERT_TRUE(run([&] { return t->idle(); }));
  EXPECT_EQ(layer.closed, 3u);
  for (auto& [id, rec] : layer.conns) EXPECT_EQ(rec.reason, CloseReason::kShutdown);
  EXPECT_EQ(t->stats().closes[static_cast<size_t>(CloseReason::kShutdown)], 3u);
  EXPECT_EQ(t->connections(), 0u);
  // Nobody listens any more.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = uring::testing::loopback(port);
  EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  for (int f : fds) ::close(f);
}

TEST_F(KernelTransportTest, ServesIpv6Loopback) {
  Layer& layer = new_layer();
  layer.echo = true;
  options_.listen_address = "::1";
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  std::atomic<bool> done{false};
  bool ok = false;
  std::thread client([&] {
    const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{.tv_sec = 20, .tv_usec = 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(t->port());
    addr.sin6_addr = in6addr_loopback;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      const auto sent = pattern(100 * 1024, 6);
      std::vector<uint8_t> got(sent.size());
      ok = write_all(fd, sent.data(), sent.size()) && read_exact(fd, got.data(), got.size()) &&
           got == sent;
    }
    ::close(fd);
    done = true;
  });
  ASSERT_TRUE(run_with(client, done));
  EXPECT_TRUE(ok);
  ASSERT_EQ(layer.order.size(), 1u);
  EXPECT_EQ(layer.nth(0).peer.to_string().rfind("[::1]:", 0), 0u) << layer.nth(0).peer.to_string();
}

// Accepted sockets are direct descriptors: with not one process descriptor left (the old
// backend paused on EMFILE here), connections are still accepted and served.
TEST_F(KernelTransportTest, AcceptsWithNoProcessDescriptorLeft) {
  Layer& layer = new_layer();
  layer.echo = true;
  KernelTransport* t = make(layer);
  ASSERT_NE(t, nullptr);
  const int fd = connect_blocking(t->port());  // the client's descriptor, before the limit drops
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  const int probe = ::dup(0);
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(probe);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  EXPECT_LT(::dup(0), 0);  // really none left
  const bool accepted = run([&] { return layer.order.size() == 1; });
  const uint8_t byte[1] = {5};
  const bool wrote = write_all(fd, byte, 1);
  const bool echoed = run([&] { return t->stats().bytes_out == 1; });
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_TRUE(accepted);
  EXPECT_TRUE(wrote);
  EXPECT_TRUE(echoed);
  uint8_t back[1] = {};
  EXPECT_TRUE(read_exact(fd, back, 1));
  EXPECT_EQ(back[0], 5);
  EXPECT_EQ(t->stats().accept_errors, 0u);
  ::close(fd);
}

}  // namespace
}  // namespace herald::dataplane

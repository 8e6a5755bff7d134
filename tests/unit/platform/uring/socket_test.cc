// EventLoop on real TCP sockets over 127.0.0.1 (ephemeral ports): multishot accept, an echo
// server on multishot recv with provided buffers (run dry on purpose), large sends that go out
// in pieces, and a peer that resets. Each runs with the multishot paths and with the
// single-shot fallbacks older kernels get.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "platform/uring/buffer_ring.h"
#include "platform/uring/event_loop.h"
#include "platform/uring/send_stream.h"
#include "tests/unit/platform/uring/uring_test_util.h"

namespace herald::uring {
namespace {

using testing::make_loop;
using testing::run_until;

class SocketTest : public ::testing::TestWithParam<bool> {
 protected:
  bool multishot() const { return GetParam(); }
  Options options() const {
    Options o;
    o.allow_multishot_accept = multishot();
    o.allow_multishot_recv = multishot();
    o.allow_multishot_poll = multishot();
    return o;
  }
};

// Accepts connections into a list until cancelled.
struct Acceptor {
  std::vector<int> fds;
  bool finished = false;
  int32_t final_result = 1;
  static void on_accept(Operation& op, const Completion& c) {
    auto* a = op.context_as<Acceptor>();
    if (c.result >= 0) a->fds.push_back(c.result);
    if (c.more) {
      EXPECT_GE(c.result, 0);  // transient errors are retried, never reported as "more"
    } else {
      a->finished = true;
      a->final_result = c.result;
    }
  }
};

TEST_P(SocketTest, AcceptsManyConnections) {
  constexpr int kClients = 64;
  uint16_t port = 0;
  const int listener = testing::listen_loopback(&port);
  struct Connects {
    int ok = 0;
    int failed = 0;
  } connects;
  Acceptor acceptor;
  Operation accept_op(&Acceptor::on_accept, &acceptor);
  std::array<Operation, kClients> connect_ops;
  std::array<int, kClients> client_fds;
  const sockaddr_in addr = testing::loopback(port);
  auto loop = make_loop(options());
  ASSERT_NE(loop, nullptr);
  ASSERT_EQ(loop->features().use_multishot_accept,
            multishot() && loop->features().multishot_accept);

  loop->accept(accept_op, listener);
  for (int i = 0; i < kClients; ++i) {
    client_fds[i] = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(client_fds[i], 0);
    connect_ops[i].set_callback(
        [](Operation& op, const Completion& c) {
          auto* n = op.context_as<Connects>();
          if (c.result == 0) {
            ++n->ok;
          } else {
            ++n->failed;
          }
        },
        &connects);
    loop->connect(connect_ops[i], client_fds[i], reinterpret_cast<const sockaddr*>(&addr),
                  sizeof(addr));
  }
  ASSERT_TRUE(run_until(*loop, [&] {
    return connects.ok + connects.failed == kClients &&
           acceptor.fds.size() == static_cast<size_t>(connects.ok);
  }));
  EXPECT_EQ(connects.failed, 0);
  EXPECT_EQ(acceptor.fds.size(), static_cast<size_t>(kClients));
  EXPECT_FALSE(acceptor.finished);
  if (!loop->features().use_multishot_accept) {
    EXPECT_GE(loop->stats().rearms, static_cast<uint64_t>(kClients));  // one SQE per accept
  }

  // Each accepted fd is its own connected, non-blocking socket (flags were applied).
  for (int fd : acceptor.fds) {
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    EXPECT_EQ(::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len), 0);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    ::close(fd);
  }
  EXPECT_TRUE(loop->cancel(accept_op));
  ASSERT_TRUE(run_until(*loop, [&] { return acceptor.finished; }));
  EXPECT_EQ(acceptor.final_result, -ECANCELED);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  for (int fd : client_fds) ::close(fd);
  ::close(listener);
}

TEST_P(SocketTest, AcceptEndsWhenTheListenerFails) {
  // A non-listening socket: accept fails with EINVAL, which is not transient, so the loop
  // reports it and stops instead of re-arming forever.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  Acceptor acceptor;
  Operation accept_op(&Acceptor::on_accept, &acceptor);
  auto loop = make_loop(options());
  ASSERT_NE(loop, nullptr);
  loop->accept(accept_op, fd);
  ASSERT_TRUE(run_until(*loop, [&] { return acceptor.finished; }));
  EXPECT_EQ(acceptor.final_result, -EINVAL);
  EXPECT_TRUE(acceptor.fds.empty());
  ::close(fd);
}

// An echo server that sends straight out of the provided buffers it received into. It holds
// buffers until it has a whole ring's worth (or the stream ends) and recycles each only when
// its send has completed, so the next receive finds the ring empty: ENOBUFS, deterministically,
// in both the multishot and the single-shot mode.
struct EchoServer {
  static constexpr uint32_t kBuffers = 8;
  static constexpr uint32_t kBufferBytes = 512;

  EventLoop* loop = nullptr;
  BufferRing* ring = nullptr;
  int fd = -1;
  Operation recv_op{&EchoServer::on_recv, this};
  Operation close_op{&EchoServer::on_close, this};
  std::unique_ptr<SendStream> stream;
  std::array<SendChunk, kBuffers> chunks;
  std::array<uint16_t, kBuffers> held;
  uint32_t held_count = 0;
  uint64_t received_bytes = 0;
  bool eof = false;
  bool closed = false;
  int32_t error = 0;

  void start(int conn_fd) {
    fd = conn_fd;
    stream = std::make_unique<SendStream>(*loop, fd, &EchoServer::on_sent, this);
    loop->recv_multishot(recv_op, fd, *ring);
  }
  void echo_held() {
    for (uint32_t i = 0; i < held_count; ++i) {
      if (stream->push(chunks[held[i]]) != 0) ring->recycle(held[i]);
    }
    held_count = 0;
  }
  void maybe_close() {
    if ((eof || error != 0) && stream->idle() && !close_op.in_flight() && !closed) {
      loop->close(close_op, fd);
    }
  }
  static void on_recv(Operation& op, const Completion& c) {
    auto* s = op.context_as<EchoServer>();
    if (c.result > 0) {
      EXPECT_NE(c.buffer_ring, nullptr);
      EXPECT_EQ(c.data, s->ring->buffer(c.buffer_id));
      EXPECT_LE(static_cast<uint32_t>(c.result), kBufferBytes);
      s->received_bytes += static_cast<uint64_t>(c.result);
      SendChunk& chunk = s->chunks[c.buffer_id];
      chunk.data = c.data;
      chunk.size_bytes = static_cast<uint32_t>(c.result);
      chunk.user = reinterpret_cast<void*>(static_cast<uintptr_t>(c.buffer_id));
      s->held[s->held_count++] = c.buffer_id;
    } else {
      EXPECT_EQ(c.buffer_ring, nullptr);  // nothing to hand over
    }
    if (s->held_count == kBuffers || !c.more) s->echo_held();
    if (!c.more) {
      if (c.result == 0) {
        s->eof = true;
      } else if (c.result < 0) {
        s->error = c.result;
      }
      s->maybe_close();
    }
  }
  static void on_sent(SendStream& stream, SendChunk& chunk, int32_t result) {
    auto* s = static_cast<EchoServer*>(stream.context());
    if (result < 0 && s->error == 0) s->error = result;
    s->ring->recycle(static_cast<uint16_t>(reinterpret_cast<uintptr_t>(chunk.user)));
    s->maybe_close();
  }
  static void on_close(Operation& op, const Completion& c) {
    EXPECT_EQ(c.result, 0);
    op.context_as<EchoServer>()->closed = true;
  }
};

TEST_P(SocketTest, EchoWithProvidedBuffersSurvivesBufferExhaustion) {
  constexpr size_t kTotal = 1 << 20;
  // Written before the server starts receiving, so a full ring's worth is waiting at once. It
  // fits in the socket buffers, so the client's write completes without a reader.
  constexpr size_t kHead = 32 * 1024;
  uint16_t port = 0;
  const int listener = testing::listen_loopback(&port);
  const std::vector<uint8_t> sent = testing::pattern(kTotal, 7);
  std::vector<uint8_t> echoed(kTotal);
  std::atomic<bool> head_written{false};
  std::atomic<bool> client_ok{false};
  Acceptor acceptor;
  Operation accept_op(&Acceptor::on_accept, &acceptor);
  EchoServer server;
  auto loop = make_loop(options());
  ASSERT_NE(loop, nullptr);
  if (!loop->features().buf_ring) GTEST_SKIP() << "kernel without buffer rings";
  auto ring = BufferRing::create(*loop, EchoServer::kBuffers, EchoServer::kBufferBytes);
  ASSERT_TRUE(ring.ok()) << ring.status();
  server.loop = loop.get();
  server.ring = ring->get();

  std::thread client([&] {
    const int fd = testing::connect_blocking(port);
    bool ok = testing::write_all(fd, sent.data(), kHead);
    head_written = true;
    std::thread writer([&] {
      if (!testing::write_all(fd, sent.data() + kHead, kTotal - kHead)) ADD_FAILURE();
      ::shutdown(fd, SHUT_WR);
    });
    ok = testing::read_exact(fd, echoed.data(), kTotal) && ok;
    uint8_t extra;
    ok = ok && ::read(fd, &extra, 1) == 0;  // the server closes after echoing everything
    writer.join();
    ::close(fd);
    client_ok = ok;
  });

  loop->accept(accept_op, listener);
  const bool started = run_until(*loop, [&] { return !acceptor.fds.empty() && head_written; });
  EXPECT_TRUE(started);
  if (started) {
    EXPECT_TRUE(loop->cancel(accept_op));
    server.start(acceptor.fds[0]);
    EXPECT_TRUE(run_until(*loop, [&] { return server.closed; }));
  }
  if (!server.closed) ::shutdown(acceptor.fds.empty() ? -1 : acceptor.fds[0], SHUT_RDWR);
  client.join();

  EXPECT_TRUE(client_ok);
  EXPECT_EQ(server.error, 0);
  EXPECT_EQ(server.received_bytes, kTotal);
  EXPECT_TRUE(echoed == sent) << "echoed bytes differ";
  EXPECT_GT(loop->stats().enobufs, 0u);       // the re-arm path ran
  EXPECT_EQ(server.ring->outstanding(), 0u);  // every buffer came back
  ASSERT_TRUE(run_until(*loop, [&] { return loop->stats().ops_in_flight == 0; }));
  ::close(listener);
}

TEST_P(SocketTest, PartialSendsOfLargePayloadsArriveByteExactAndInOrder) {
  uint16_t port = 0;
  const int listener = testing::listen_loopback(&port);
  const std::vector<uint8_t> a = testing::pattern(4 << 20, 1);
  const std::vector<uint8_t> b = testing::pattern(1, 2);
  const std::vector<uint8_t> c = testing::pattern(2 << 20, 3);
  const size_t total = a.size() + b.size() + c.size();
  std::vector<uint8_t> expected;
  expected.insert(expected.end(), a.begin(), a.end());
  expected.insert(expected.end(), b.begin(), b.end());
  expected.insert(expected.end(), c.begin(), c.end());
  std::vector<uint8_t> got(total);
  std::atomic<bool> client_ok{false};

  std::thread client([&] {
    // A small receive buffer (set before connect so the window is sized by it) keeps the
    // sender from ever pushing a whole chunk in one go.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int rcvbuf = 16 * 1024;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    timeval tv{.tv_sec = testing::kTestDeadline.count(), .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const sockaddr_in addr = testing::loopback(port);
    bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
    ok = ok && testing::read_exact(fd, got.data(), total);
    uint8_t extra;
    ok = ok && ::read(fd, &extra, 1) == 0;
    ::close(fd);
    client_ok = ok;
  });

  struct Sent {
    std::vector<int> order;
    std::vector<int32_t> results;
  } sent_log;
  std::array<SendChunk, 3> chunks;
  Acceptor acceptor;
  Operation accept_op(&Acceptor::on_accept, &acceptor);
  Operation close_op([](Operation&, const Completion&) {}, nullptr);
  auto loop = make_loop(options());
  ASSERT_NE(loop, nullptr);
  loop->accept(accept_op, listener);
  ASSERT_TRUE(run_until(*loop, [&] { return !acceptor.fds.empty(); }));
  EXPECT_TRUE(loop->cancel(accept_op));
  const int fd = acceptor.fds[0];
  const int sndbuf = 16 * 1024;
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);

  SendStream stream(
      *loop, fd,
      [](SendStream& s, SendChunk& chunk, int32_t result) {
        auto* log = static_cast<Sent*>(s.context());
        log->order.push_back(static_cast<int>(reinterpret_cast<uintptr_t>(chunk.user)));
        log->results.push_back(result);
      },
      &sent_log);
  const std::vector<uint8_t>* payloads[3] = {&a, &b, &c};
  for (int i = 0; i < 3; ++i) {
    chunks[i].data = payloads[i]->data();
    chunks[i].size_bytes = static_cast<uint32_t>(payloads[i]->size());
    chunks[i].user = reinterpret_cast<void*>(static_cast<uintptr_t>(i));
    ASSERT_EQ(stream.push(chunks[i]), 0);
  }
  ASSERT_TRUE(run_until(*loop, [&] { return sent_log.order.size() == 3; }));
  loop->close(close_op, fd);
  ASSERT_TRUE(run_until(*loop, [&] { return !close_op.in_flight(); }));
  client.join();

  EXPECT_EQ(sent_log.order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(sent_log.results, (std::vector<int32_t>{static_cast<int32_t>(a.size()), 1,
                                                    static_cast<int32_t>(c.size())}));
  EXPECT_GT(stream.partial_sends(), 0u);  // the resubmit path ran
  EXPECT_TRUE(client_ok);
  EXPECT_TRUE(got == expected) << "received bytes differ";
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  ::close(listener);
}

TEST_P(SocketTest, PeerResetDeliversErrorAndLeaksNothing) {
  uint16_t port = 0;
  const int listener = testing::listen_loopback(&port);
  const int client = testing::connect_blocking(port);
  Acceptor acceptor;
  Operation accept_op(&Acceptor::on_accept, &acceptor);
  struct Recv {
    std::vector<Completion> seen;
    bool done = false;
  } recv_log;
  Operation recv_op(
      [](Operation& op, const Completion& c) {
        auto* r = op.context_as<Recv>();
        r->seen.push_back(c);
        if (c.buffer_ring != nullptr) c.buffer_ring->recycle(c.buffer_id);
        if (!c.more) r->done = true;
      },
      &recv_log);
  struct Sends {
    std::vector<int32_t> results;
  } send_log;
  std::array<SendChunk, 2> chunks;
  const uint8_t byte = 'x';
  Operation close_op([](Operation&, const Completion&) {}, nullptr);
  auto loop = make_loop(options());
  ASSERT_NE(loop, nullptr);
  if (!loop->features().buf_ring) GTEST_SKIP() << "kernel without buffer rings";
  auto ring = BufferRing::create(*loop, 4, 256);
  ASSERT_TRUE(ring.ok());
  loop->accept(accept_op, listener);
  ASSERT_TRUE(run_until(*loop, [&] { return !acceptor.fds.empty(); }));
  EXPECT_TRUE(loop->cancel(accept_op));
  const int fd = acceptor.fds[0];
  loop->recv_multishot(recv_op, fd, **ring);
  (void)loop->run_once(0);
  EXPECT_FALSE(recv_log.done);  // armed and waiting

  // SO_LINGER with a zero timeout turns close(2) into a RST (RFC 793 §3.5 abort).
  const linger abort_on_close{.l_onoff = 1, .l_linger = 0};
  ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close)),
            0);
  ::close(client);
  ASSERT_TRUE(run_until(*loop, [&] { return recv_log.done; }));
  ASSERT_EQ(recv_log.seen.size(), 1u);
  EXPECT_EQ(recv_log.seen[0].result, -ECONNRESET);
  EXPECT_FALSE(recv_log.seen[0].more);
  EXPECT_EQ(recv_log.seen[0].buffer_ring, nullptr);

  // Sending to the dead connection fails with an error result, not SIGPIPE; the stream then
  // refuses more work.
  SendStream stream(
      *loop, fd,
      [](SendStream& s, SendChunk&, int32_t result) {
        static_cast<Sends*>(s.context())->results.push_back(result);
      },
      &send_log);
  for (SendChunk& chunk : chunks) {
    chunk.data = &byte;
    chunk.size_bytes = 1;
    ASSERT_EQ(stream.push(chunk), 0);
  }
  ASSERT_TRUE(run_until(*loop, [&] { return send_log.results.size() == 2; }));
  EXPECT_LT(send_log.results[0], 0);
  EXPECT_EQ(send_log.results[1], send_log.results[0]);  // queued chunk fails with the same error
  SendChunk late{.data = &byte, .size_bytes = 1};
  EXPECT_EQ(stream.push(late), stream.error());
  EXPECT_TRUE(stream.idle());

  loop->close(close_op, fd);
  ASSERT_TRUE(run_until(*loop, [&] { return !close_op.in_flight(); }));
  EXPECT_EQ((*ring)->outstanding(), 0u);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  ::close(listener);
}

TEST_P(SocketTest, CancelBufferedRecvParkedOnEmptyRing) {
  // A receive parked after ENOBUFS is not with the kernel; cancel must still finish it.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  std::vector<uint16_t> held;
  struct Recv {
    std::vector<uint16_t>* held;
    bool done = false;
    int32_t final_result = 1;
  } log{&held};
  Operation recv_op(
      [](Operation& op, const Completion& c) {
        auto* r = op.context_as<Recv>();
        if (c.buffer_ring != nullptr) r->held->push_back(c.buffer_id);  // keep it: ring runs dry
        if (!c.more) {
          r->done = true;
          r->final_result = c.result;
        }
      },
      &log);
  auto loop = make_loop(options());
  ASSERT_NE(loop, nullptr);
  if (!loop->features().buf_ring) GTEST_SKIP() << "kernel without buffer rings";
  auto ring = BufferRing::create(*loop, 2, 16);
  ASSERT_TRUE(ring.ok());
  const std::vector<uint8_t> data = testing::pattern(256, 5);
  ASSERT_EQ(::write(sv[1], data.data(), data.size()), static_cast<ssize_t>(data.size()));
  loop->recv_multishot(recv_op, sv[0], **ring);
  ASSERT_TRUE(run_until(*loop, [&] { return loop->stats().enobufs > 0 && held.size() == 2; }));
  EXPECT_FALSE(log.done);  // parked, not failed
  EXPECT_TRUE(loop->cancel(recv_op));
  ASSERT_TRUE(run_until(*loop, [&] { return log.done; }));
  EXPECT_EQ(log.final_result, -ECANCELED);
  for (uint16_t id : held) (*ring)->recycle(id);
  EXPECT_EQ((*ring)->outstanding(), 0u);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  ::close(sv[0]);
  ::close(sv[1]);
}

INSTANTIATE_TEST_SUITE_P(Modes, SocketTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? "Multishot" : "SingleShotFallback";
                         });

}  // namespace
}  // namespace herald::uring

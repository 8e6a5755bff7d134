// Integration tests of the io_uring HTTP/1.1 server over real sockets on 127.0.0.1: the loop
// runs in its own thread, the clients are blocking sockets (5 s receive timeout) in the test.
#include "controlplane/http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::http {
namespace {

// Answers by path: /hold is kept until a /now on the same connection answers it after its own
// (out of order); /shutdown starts a graceful shutdown and then answers a held request.
class TestHandler : public Handler {
 public:
  void handle(const Request& req, std::string_view body, Responder& r) override {
    const std::string path(req.path());
    if (path == "/hold") {
      held_.push_back(r);
      return;
    }
    if (path == "/now") {
      r.respond(200, "text/plain", "now");
      for (Responder& h : held_) h.respond(200, "text/plain", "hold");
      held_.clear();
      return;
    }
    if (path == "/peer") {
      socklen_t len = 0;
      const sockaddr* peer = r.peer_address(&len);
      char text[INET6_ADDRSTRLEN] = "none";
      if (peer != nullptr && peer->sa_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr, text,
                    sizeof(text));
      } else if (peer != nullptr && peer->sa_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr, text,
                    sizeof(text));
      }
      r.respond(200, "text/plain", text);
      return;
    }
    if (path == "/big") {
      r.respond(200, "application/octet-stream", big_);
      return;
    }
    if (path == "/tighten") {  // a config commit, on the loop thread like the real one
      ServerLimits tight = server->limits();
      tight.max_connections_per_address = 1;
      tight.max_requests_per_connection = 1;
      tight.idle_timeout_ms = 200;
      server->set_limits(tight);
      r.respond(200, "text/plain", "tightened");
      return;
    }
    if (path == "/shutdown") {
      r.respond(200, "text/plain", "bye");
      server->shutdown();
      for (Responder& h : held_) h.respond(200, "text/plain", "late");
      held_.clear();
      return;
    }
    std::string echo(req.method_name());
    echo += ' ';
    echo += path;
    echo += ' ';
    echo += body;
    r.respond(200, "text/plain", echo);
  }

  Server* server = nullptr;

 private:
  std::vector<Responder> held_;
  const std::string big_ = std::string(1 << 20, 'b');
};

using ServerThread = testing::LoopServer<TestHandler>;

int connect_to(uint16_t port, bool ipv6 = false) {
  const int fd = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_storage ss{};
  socklen_t len = sizeof(sockaddr_in);
  if (ipv6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    a6->sin6_addr = in6addr_loopback;
    len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

struct Response {
  int status = 0;
  std::string head;
  std::string body;
};

// Reads one response (Content-Length bodies only; HEAD when `head_only`). status 0: EOF or
// error before a complete response. `buffer` keeps bytes of the next response.
Response read_response(int fd, std::string& buffer, bool head_only = false) {
  Response r;
  char chunk[4096];
  size_t end = std::string::npos;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return r;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  r.head = buffer.substr(0, end + 4);
  buffer.erase(0, end + 4);
  size_t length = 0;
  const size_t cl = r.head.find("Content-Length: ");
  if (cl != std::string::npos && !head_only) length = std::stoul(r.head.substr(cl + 16));
  while (buffer.size() < length) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return r;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  r.body = buffer.substr(0, length);
  buffer.erase(0, length);
  r.status = std::stoi(r.head.substr(9, 3));
  return r;
}

Response read_response(int fd) {
  std::string buffer;
  return read_response(fd, buffer);
}

// True when the server closed: EOF (or a reset) rather than the receive timeout.
bool closed_by_server(int fd) {
  char c;
  for (;;) {
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

ServerLimits test_limits() {
  ServerLimits l;
  l.header_timeout_ms = 200;
  l.body_timeout_ms = 200;
  l.idle_timeout_ms = 5'000;
  l.recv_buffer_count = 64;
  l.recv_buffer_size_bytes = 4096;
  return l;
}

TEST(HttpServer, GetPostContentLengthAndChunkedOnOneKeepAliveConnection) {
  ServerThread st(test_limits());
  ASSERT_NE(st.port(), 0);
  const int fd = connect_to(st.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_all(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  Response r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET /a ");
  EXPECT_EQ(r.head.find("Connection: close"), std::string::npos);
  send_all(fd, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  r = read_response(fd, buf);
  EXPECT_EQ(r.body, "POST /p hello");
  send_all(fd,
           "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_EQ(r.body, "POST /c hello world");
  send_all(fd, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_response(fd, buf, /*head_only=*/true);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("Content-Length: 8"), std::string::npos);  // as GET: "HEAD /h "
  // No body bytes followed the HEAD response: the next response starts right away.
  send_all(fd, "GET /z HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_EQ(r.body, "GET /z ");
  ::close(fd);
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.requests == 5; }));
}

TEST(HttpServer, HandlerSeesThePeerAddress) {
  ServerThread st(test_limits());
  const int fd = connect_to(st.port());
  ASSERT_GE(fd, 0);
  send_all(fd, "GET /peer HTTP/1.1\r\nHost: x\r\n\r\n");
  const Response r = read_response(fd);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "127.0.0.1");
  ::close(fd);
}

// An idle keep-alive connection holds no head storage; one in the middle of a head holds one,
// and gives it back when the request completes.
TEST(HttpServer, HeadStorageIsHeldOnlyWhileARequestIsRead) {
  ServerThread st(test_limits());
  int fds[8];
  for (int& fd : fds) {
    fd = connect_to(st.port());
    ASSERT_GE(fd, 0);
    send_all(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(read_response(fd).status, 200);
  }
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.head_storage_in_use == 0; }));
  send_all(fds[0], "GET /b HTTP/1.1\r\nHo");
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.head_storage_in_use == 1; }));
  send_all(fds[0], "st: x\r\n\r\n");
  EXPECT_EQ(read_response(fds[0]).status, 200);
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.head_storage_in_use == 0; }));
  // Closed in the middle of a head: the storage comes back too.
  send_all(fds[1], "GET /c HTTP/1.1\r\nHo");
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.head_storage_in_use == 1; }));
  ::close(fds[1]);
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.head_storage_in_use == 0; }));
  for (int fd : fds) ::close(fd);
}

TEST(HttpServer, PipelinedResponsesLeaveInRequestOrder) {
  ServerThread st(test_limits());
  const int fd = connect_to(st.port());
  ASSERT_GE(fd, 0);
  send_all(fd,
           "GET /hold HTTP/1.1\r\nHost: x\r\n\r\nGET /now HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /e HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string buf;
  EXPECT_EQ(read_response(fd, buf).body, "hold");  // answered second, sent first
  EXPECT_EQ(read_response(fd, buf).body, "now");
  EXPECT_EQ(read_response(fd, buf).body, "GET /e ");
  ::close(fd);
}

TEST(HttpServer, DeepPipelineBeyondQueueDepthIsServedInOrder) {
  ServerLimits l = test_limits();
  l.max_pipeline_depth = 2;  // reading pauses and resumes several times
  ServerThread st(l);
  const int fd = connect_to(st.port());
  ASSERT_GE(fd, 0);
  std::string all;
  for (int i = 0; i < 20; ++i) all += "GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  send_all(fd, all);
  std::string buf;
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(read_response(fd, buf).body, "GET /" + std::to_string(i) + " ");
  }
  ::close(fd);
}

TEST(HttpServer, SlowlorisGets408WhileOthersAreServed) {
  ServerThread st(test_limits());
  const int slow = connect_to(st.port());
  ASSERT_GE(slow, 0);
  send_all(slow, "GET / HTTP/1.1\r\nHost: x\r\n");  // the head never completes
  const int fast = connect_to(st.port());
  send_all(fast, "GET /f HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(fast).body, "GET /f ");
  const Response r = read_response(slow);
  EXPECT_EQ(r.status, 408);
  EXPECT_NE(r.body.find("header_timeout"), std::string::npos);
  EXPECT_TRUE(closed_by_server(slow));
  EXPECT_EQ(st.stats().header_timeouts, 1u);
  ::close(slow);
  ::close(fast);
}

TEST(HttpServer, BodyThatStopsArrivingGets408) {
  ServerThread st(test_limits());
  const int fd = connect_to(st.port());
  send_all(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_EQ(read_response(fd).status, 408);
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_EQ(st.stats().body_timeouts, 1u);
  ::close(fd);
}

TEST(HttpServer, OversizeAndSmugglingAreRefusedAndClosed) {
  ServerLimits l = test_limits();
  l.parser.max_header_bytes = 1024;
  l.parser.max_body_bytes = 1000;
  ServerThread st(l);
  struct Case {
    std::string request;
    int status;
    ParseError error;
  };
  const std::vector<Case> cases = {
      {"GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", 431,
       ParseError::kHeadersTooLarge},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413,
       ParseError::kBodyTooLarge},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
       400, ParseError::kContentLengthWithTransferEncoding},
  };
  for (const Case& c : cases) {
    const int fd = connect_to(st.port());
    send_all(fd, c.request);
    const Response r = read_response(fd);
    EXPECT_EQ(r.status, c.status) << c.request.substr(0, 60);
    EXPECT_NE(r.body.find(std::string(parse_error_name(c.error))), std::string::npos);
    EXPECT_NE(r.head.find("Connection: close"), std::string::npos);
    EXPECT_TRUE(closed_by_server(fd));
    ::close(fd);
    EXPECT_EQ(st.stats().parse_errors[static_cast<size_t>(c.error) - 1], 1u);
  }
  EXPECT_EQ(st.stats().requests, 0u);  // the smuggled request never reached the handler
}

TEST(HttpServer, MaxConnectionsAndPerAddressLimit) {
  ServerLimits l = test_limits();
  l.max_connections = 2;
  ServerThread st(l);
  const int a = connect_to(st.port());
  const int b = connect_to(st.port());
  send_all(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  send_all(b, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(a).status, 200);
  EXPECT_EQ(read_response(b).status, 200);
  const int c = connect_to(st.port());
  const Response r = read_response(c);  // 503, or nothing at all if the reset won
  EXPECT_TRUE(r.status == 503 || r.status == 0);
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.rejected_max_connections == 1; }));
  for (int fd : {a, b, c}) ::close(fd);

  ServerLimits p = test_limits();
  p.max_connections_per_address = 1;
  ServerThread st2(p);
  const int x = connect_to(st2.port());
  send_all(x, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(x).status, 200);
  const int y = connect_to(st2.port());
  const Response ry = read_response(y);
  EXPECT_TRUE(ry.status == 503 || ry.status == 0);
  EXPECT_TRUE(st2.wait_for([](const ServerStats& s) { return s.rejected_per_address == 1; }));
  ::close(x);
  ::close(y);
  // Once the first one is gone, the address may connect again.
  EXPECT_TRUE(st2.wait_for([](const ServerStats& s) { return s.live_connections == 0; }));
  const int z = connect_to(st2.port());
  send_all(z, "GET /z HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(z).status, 200);
  ::close(z);
}

TEST(HttpServer, MaxRequestsPerConnectionClosesAfterTheLast) {
  ServerLimits l = test_limits();
  l.max_requests_per_connection = 2;
  ServerThread st(l);
  const int fd = connect_to(st.port());
  std::string buf;
  send_all(fd, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
  Response r = read_response(fd, buf);
  EXPECT_EQ(r.head.find("Connection: close"), std::string::npos);
  send_all(fd, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_EQ(st.stats().max_requests_closes, 1u);
  ::close(fd);
}

TEST(HttpServer, IdleKeepAliveConnectionIsClosed) {
  ServerLimits l = test_limits();
  l.idle_timeout_ms = 200;
  ServerThread st(l);
  const int fd = connect_to(st.port());
  send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(fd).status, 200);
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.idle_timeouts == 1; }));
  ::close(fd);
}

// set_limits() while connections are open: none is dropped for it, a running idle timer is cut
// to the new timeout, and the connection caps apply to the next accept and request.
TEST(HttpServer, NewLimitsApplyToRunningTimersAndTheNextConnections) {
  ServerLimits l = test_limits();
  l.idle_timeout_ms = 60'000;  // far beyond this test: only the new limit can close `a`
  ServerThread st(l);
  const int a = connect_to(st.port());
  send_all(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(a).status, 200);  // `a` is idle now, its timer at 60 s
  const int b = connect_to(st.port());
  send_all(b, "GET /tighten HTTP/1.1\r\nHost: x\r\n\r\n");
  Response r = read_response(b);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "tightened");
  // Both idle connections go at the new 200 ms, not at 60 s.
  EXPECT_TRUE(closed_by_server(a));
  EXPECT_TRUE(closed_by_server(b));
  EXPECT_TRUE(st.wait_for(
      [](const ServerStats& s) { return s.idle_timeouts == 2 && s.live_connections == 0; }));
  ::close(a);
  ::close(b);
  // One connection per address now, and one request on it.
  const int c = connect_to(st.port());
  send_all(c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_response(c);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("Connection: close"), std::string::npos);
  const int d = connect_to(st.port());
  const Response rd = read_response(d);
  EXPECT_TRUE(rd.status == 503 || rd.status == 0);
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.rejected_per_address == 1; }));
  ::close(c);
  ::close(d);
}

TEST(HttpServer, Http10ClosesByDefaultAndKeepsAliveWhenAsked) {
  ServerThread st(test_limits());
  int fd = connect_to(st.port());
  send_all(fd, "GET /old HTTP/1.0\r\n\r\n");
  Response r = read_response(fd);
  EXPECT_EQ(r.body, "GET /old ");
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
  fd = connect_to(st.port());
  std::string buf;
  send_all(fd, "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_NE(r.head.find("Connection: keep-alive"), std::string::npos);
  send_all(fd, "GET /k2 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(read_response(fd, buf).body, "GET /k2 ");
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
}

TEST(HttpServer, ExpectContinueGets100BeforeTheBody) {
  ServerThread st(test_limits());
  const int fd = connect_to(st.port());
  std::string buf;
  send_all(fd, "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  const Response interim = read_response(fd, buf);
  EXPECT_EQ(interim.status, 100);
  send_all(fd, "ok");
  EXPECT_EQ(read_response(fd, buf).body, "POST /c ok");
  ::close(fd);
}

TEST(HttpServer, ExpectContinueBeyondTheBodyLimitGets413Without100) {
  ServerLimits l = test_limits();
  l.parser.max_body_bytes = 10;
  ServerThread st(l);
  const int fd = connect_to(st.port());
  send_all(fd, "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(read_response(fd).status, 413);
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_EQ(st.stats().continues_sent, 0u);
  ::close(fd);
}

TEST(HttpServer, ServesIpv6) {
  ServerThread st(test_limits(), "::1");
  if (st.port() == 0) GTEST_SKIP() << "no IPv6 loopback here";
  const int fd = connect_to(st.port(), /*ipv6=*/true);
  ASSERT_GE(fd, 0);
  send_all(fd, "GET /six HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(fd).body, "GET /six ");
  ::close(fd);
}

TEST(HttpServer, ClientThatStopsReadingIsClosedAfterTheSendTimeout) {
  ServerLimits l = test_limits();
  l.send_timeout_ms = 200;
  ServerThread st(l);
  const int fd = connect_to(st.port());
  const int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  std::string all;
  for (int i = 0; i < 16; ++i) all += "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
  send_all(fd, all);  // 16 MiB of answers; never read
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.send_timeouts == 1; }));
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.live_connections == 0; }));
  // Another client is served meanwhile and afterwards.
  const int other = connect_to(st.port());
  send_all(other, "GET /o HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(other).body, "GET /o ");
  ::close(other);
  ::close(fd);
}

TEST(HttpServer, AnswerAfterTheConnectionWasResetIsDropped) {
  ServerThread st(test_limits());
  const int held = connect_to(st.port());
  send_all(held, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(st.wait_for([](const ServerStats& s) { return s.requests == 1; }));
  const linger reset{.l_onoff = 1, .l_linger = 0};
  ::setsockopt(held, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  ::close(held);  // RST: the server closes while the handler still holds the request
  ASSERT_TRUE(st.wait_for([](const ServerStats& s) { return s.live_connections == 0; }));
  const int fd = connect_to(st.port());  // may reuse the pooled Connection: a new generation
  send_all(fd, "GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(fd).body, "now");
  EXPECT_TRUE(st.wait_for([](const ServerStats& s) { return s.late_responses_dropped == 1; }));
  ::close(fd);
}

TEST(HttpServer, GracefulShutdownFinishesInFlightAndClosesIdle) {
  ServerThread st(test_limits());
  const int idle = connect_to(st.port());
  const int held = connect_to(st.port());
  send_all(idle, "GET /i HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(idle).status, 200);
  send_all(held, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(st.wait_for([](const ServerStats& s) { return s.requests == 2; }));
  const int trigger = connect_to(st.port());
  send_all(trigger, "GET /shutdown HTTP/1.1\r\nHost: x\r\n\r\n");
  const Response bye = read_response(trigger);
  EXPECT_EQ(bye.body, "bye");  // answered before shutdown(): closed after it, as idle
  const Response late = read_response(held);
  EXPECT_EQ(late.body, "late");  // the request in flight was answered
  EXPECT_NE(late.head.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(closed_by_server(held));
  EXPECT_TRUE(closed_by_server(idle));
  EXPECT_TRUE(closed_by_server(trigger));
  EXPECT_EQ(connect_to(st.port()), -1);  // no longer listening
  for (int fd : {idle, held, trigger}) ::close(fd);
  bool finished = false;
  for (int i = 0; i < 500 && !finished; ++i) {
    finished = st.finished();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(finished);
}

}  // namespace
}  // namespace herald::http

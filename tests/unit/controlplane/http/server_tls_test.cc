// Integration tests of the HTTP server over TLS (HTTPS) on 127.0.0.1: the loop runs in its own
// thread; the clients are platform/tls client connections over blocking sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/http/server.h"
#include "platform/tls/certificate.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::http {
namespace {

// Echoes "METHOD PATH BODY".
class EchoHandler : public Handler {
 public:
  void handle(const Request& req, std::string_view body, Responder& r) override {
    std::string echo(req.method_name());
    echo += ' ';
    echo += std::string(req.path());
    echo += ' ';
    echo += body;
    r.respond(200, "text/plain", echo);
  }
};

std::shared_ptr<const tls::CertifiedKey> make_certificate(const std::string& name) {
  tls::CertificateRequest req;
  req.common_name = name;
  req.ip_addresses = {"127.0.0.1"};
  auto pem = tls::generate_certificate(req);
  EXPECT_TRUE(pem.ok()) << pem.status();
  auto key = tls::certified_key_from_pem(pem->cert_pem, pem->key_pem);
  EXPECT_TRUE(key.ok()) << key.status();
  return *key;
}

using TlsServerThread = testing::LoopServer<EchoHandler>;

int connect_to(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data = data.subspan(static_cast<size_t>(n));
  }
  return true;
}

// True when the server closed: EOF (or a reset) rather than the receive timeout. Bytes before
// the end (a TLS alert) are skipped.
bool closed_by_server(int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

// A blocking HTTPS client: one socket, one tls::Connection.
class TlsClient {
 public:
  TlsClient(uint16_t port, std::shared_ptr<tls::ClientContext> context) {
    fd_ = connect_to(port);
    auto c = tls::Connection::client(std::move(context), "127.0.0.1");
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) conn_ = std::move(*c);
  }
  ~TlsClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool handshake() {
    if (fd_ < 0 || conn_ == nullptr) return false;
    while (!conn_->handshake_done()) {
      if (!flush()) return false;
      const bool ok = pump();
      if (!ok || conn_->handshake_state() == tls::HandshakeState::kFailed) {
        (void)flush();  // the alert, so the server learns why
        return false;
      }
    }
    return flush();
  }

  bool write(std::string_view plaintext) {
    const auto* p = reinterpret_cast<const uint8_t*>(plaintext.data());
    size_t done = 0;
    while (done < plaintext.size()) {
      const tls::IoResult r = conn_->write_plaintext(std::span(p + done, plaintext.size() - done));
      if (r.status == tls::IoStatus::kError) return false;
      done += r.bytes;
      if (!flush()) return false;
    }
    return true;
  }

  // One response's head and body (Content-Length bodies); empty on EOF or error.
  std::string read_response() {
    for (;;) {
      const size_t end = plain_.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        const size_t cl = plain_.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) length = std::stoul(plain_.substr(cl + 16));
        if (plain_.size() >= end + 4 + length) {
          std::string r = plain_.substr(0, end + 4 + length);
          plain_.erase(0, end + 4 + length);
          return r;
        }
      }
      if (!pump()) return {};
    }
  }

  const tls::Connection& connection() const { return *conn_; }
  int fd() const { return fd_; }

 private:
  bool flush() {
    const std::vector<uint8_t> out = conn_->take_ciphertext();
    return send_all(fd_, out);
  }
  // One receive, fed in and decrypted into plain_.
  bool pump() {
    uint8_t buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    std::span<const uint8_t> in(buf, static_cast<size_t>(n));
    while (!in.empty()) {
      const size_t took = conn_->feed_ciphertext(in);
      in = in.subspan(took);
      uint8_t plain[16384];
      for (;;) {
        const tls::IoResult r = conn_->read_plaintext(plain);
        if (r.status != tls::IoStatus::kOk) {
          if (r.status == tls::IoStatus::kError) return false;
          break;
        }
        plain_.append(reinterpret_cast<const char*>(plain), r.bytes);
      }
      if (took == 0 && !in.empty()) return false;
    }
    return flush();
  }

  int fd_ = -1;
  std::unique_ptr<tls::Connection> conn_;
  std::string plain_;
};

std::shared_ptr<tls::ClientContext> pinned_client(const tls::CertifiedKey& cert) {
  tls::ClientOptions o;
  o.pin = true;
  o.pinned_sha256 = cert.leaf_sha256();
  auto ctx = tls::ClientContext::create(o);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return *ctx;
}

class ServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = make_certificate("herald-one");
    auto ctx = tls::ServerContext::create(tls::ServerOptions{}, cert_);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    context_ = *ctx;
  }
  std::shared_ptr<const tls::CertifiedKey> cert_;
  std::shared_ptr<tls::ServerContext> context_;
};

TEST_F(ServerTlsTest, GetOverTls13WithKeepAliveAndPipelining) {
  TlsServerThread server(ServerLimits{}, "127.0.0.1", context_);
  ASSERT_NE(server.port(), 0);
  TlsClient client(server.port(), pinned_client(*cert_));
  ASSERT_TRUE(client.handshake());
  EXPECT_EQ(client.connection().protocol_version(), TLS1_3_VERSION);
  EXPECT_EQ(client.connection().peer_certificate().sha256, cert_->leaf_sha256());

  ASSERT_TRUE(client.write("GET /one HTTP/1.1\r\nHost: a\r\n\r\n"));
  std::string r = client.read_response();
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 200");
  EXPECT_NE(r.find("GET /one "), std::string::npos);

  // Keep-alive: the same connection, then two pipelined requests (one with a body) in one
  // write, answered in order.
  ASSERT_TRUE(
      client.write("POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                   "GET /three HTTP/1.1\r\nHost: a\r\n\r\n"));
  r = client.read_response();
  EXPECT_NE(r.find("POST /two hello"), std::string::npos) << r;
  r = client.read_response();
  EXPECT_NE(r.find("GET /three "), std::string::npos) << r;

  EXPECT_TRUE(server.wait_for([](const ServerStats& s) { return s.responses == 3; }));
  const ServerStats s = server.stats();
  EXPECT_EQ(s.tls_handshakes, 1u);
  EXPECT_EQ(s.accepted, 1u);
  for (uint64_t e : s.tls_errors) EXPECT_EQ(e, 0u);
}

TEST_F(ServerTlsTest, LargeBodiesCrossManyRecords) {
  TlsServerThread server(ServerLimits{}, "127.0.0.1", context_);
  TlsClient client(server.port(), pinned_client(*cert_));
  ASSERT_TRUE(client.handshake());
  // Far beyond one record and the engine's output queue (tls::Connection::
  // kMaxBufferedOutputBytes): the response is encrypted and sent in several rounds.
  std::string body(300 * 1024, 'x');
  for (size_t i = 0; i < body.size(); i += 4096) body[i] = static_cast<char>('a' + (i / 4096) % 26);
  std::string req =
      "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  ASSERT_TRUE(client.write(req + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"));
  const std::string r = client.read_response();
  ASSERT_GT(r.size(), body.size());
  EXPECT_EQ(r.substr(r.size() - body.size()), body);
  EXPECT_NE(client.read_response().find("GET /next "), std::string::npos);
}

TEST_F(ServerTlsTest, ConnectionCloseSendsCloseNotify) {
  TlsServerThread server(ServerLimits{}, "127.0.0.1", context_);
  TlsClient client(server.port(), pinned_client(*cert_));
  ASSERT_TRUE(client.handshake());
  ASSERT_TRUE(client.write("GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  const std::string r = client.read_response();
  EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  // After the response: close_notify, then the end of the stream.
  EXPECT_TRUE(client.read_response().empty());
  EXPECT_TRUE(client.connection().close_notify_received());
}

TEST_F(ServerTlsTest, IdleTimeoutSendsCloseNotify) {
  ServerLimits limits;
  limits.idle_timeout_ms = 200;
  TlsServerThread server(limits, "127.0.0.1", context_);
  TlsClient client(server.port(), pinned_client(*cert_));
  ASSERT_TRUE(client.handshake());
  ASSERT_TRUE(client.write("GET /one HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_NE(client.read_response().find("GET /one "), std::string::npos);
  // Then nothing: the server ends the connection cleanly, not by a bare FIN.
  EXPECT_TRUE(client.read_response().empty());
  EXPECT_TRUE(client.connection().close_notify_received());
  EXPECT_TRUE(
      server.wait_for([](const ServerStats& s) { return s.idle_timeouts == 1 && s.closed == 1; }));
}

TEST_F(ServerTlsTest, GarbageInsteadOfClientHelloIsClosedAndCounted) {
  TlsServerThread server(ServerLimits{}, "127.0.0.1", context_);
  const int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  const std::string_view plain = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  ASSERT_TRUE(
      send_all(fd, std::span(reinterpret_cast<const uint8_t*>(plain.data()), plain.size())));
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
  EXPECT_TRUE(server.wait_for([](const ServerStats& s) {
    return s.tls_errors[static_cast<size_t>(tls::TlsError::kProtocol)] == 1 && s.closed == 1;
  }));

  // The loop keeps serving others.
  TlsClient client(server.port(), pinned_client(*cert_));
  ASSERT_TRUE(client.handshake());
  ASSERT_TRUE(client.write("GET /after HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_NE(client.read_response().find("GET /after "), std::string::npos);
  EXPECT_EQ(server.stats().tls_handshakes, 1u);
}

TEST_F(ServerTlsTest, SilentClientIsCutOffByTheHeaderTimeout) {
  ServerLimits limits;
  limits.header_timeout_ms = 200;
  TlsServerThread server(limits, "127.0.0.1", context_);
  const int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  // No ClientHello at all; the receive timeout (5 s) is far beyond the header timeout.
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
  EXPECT_TRUE(server.wait_for([](const ServerStats& s) { return s.header_timeouts == 1; }));
  EXPECT_EQ(server.stats().tls_handshakes, 0u);
}

TEST_F(ServerTlsTest, HalfHandshakeIsCutOffByTheHeaderTimeout) {
  ServerLimits limits;
  limits.header_timeout_ms = 200;
  TlsServerThread server(limits, "127.0.0.1", context_);
  TlsClient client(server.port(), pinned_client(*cert_));
  // The ClientHello alone, never the client's Finished.
  const std::vector<uint8_t> hello =
      const_cast<tls::Connection&>(client.connection()).take_ciphertext();
  ASSERT_FALSE(hello.empty());
  ASSERT_TRUE(send_all(client.fd(), hello));
  EXPECT_TRUE(closed_by_server(client.fd()));
  EXPECT_TRUE(server.wait_for([](const ServerStats& s) { return s.header_timeouts == 1; }));
}

TEST_F(ServerTlsTest, CertificateReloadKeepsConnectionsAndServesTheNewOne) {
  TlsServerThread server(ServerLimits{}, "127.0.0.1", context_);
  TlsClient old_client(server.port(), pinned_client(*cert_));
  ASSERT_TRUE(old_client.handshake());
  ASSERT_TRUE(old_client.write("GET /before HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_NE(old_client.read_response().find("GET /before "), std::string::npos);

  const auto cert2 = make_certificate("herald-two");
  ASSERT_NE(cert2->leaf_sha256(), cert_->leaf_sha256());
  context_->set_certificate(cert2);

  // The established connection goes on.
  ASSERT_TRUE(old_client.write("GET /during HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_NE(old_client.read_response().find("GET /during "), std::string::npos);

  // A new connection sees the new certificate; one pinned to the old one is refused.
  TlsClient new_client(server.port(), pinned_client(*cert2));
  ASSERT_TRUE(new_client.handshake());
  EXPECT_EQ(new_client.connection().peer_certificate().sha256, cert2->leaf_sha256());
  ASSERT_TRUE(new_client.write("GET /after HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_NE(new_client.read_response().find("GET /after "), std::string::npos);

  TlsClient stale_client(server.port(), pinned_client(*cert_));
  EXPECT_FALSE(stale_client.handshake());
  EXPECT_TRUE(server.wait_for([](const ServerStats& s) {
    return s.tls_errors[static_cast<size_t>(tls::TlsError::kPeerAlert)] == 1;
  }));
}

}  // namespace
}  // namespace herald::http

// Tests of the HTTP client over TLS (https://) on 127.0.0.1 against a small blocking BoringSSL
// server on its own thread, with a test CA and leaf certificates generated per test: success
// (TLS 1.3 and 1.2, SNI, name check), refusals (wrong name, untrusted CA), and hostile servers
// (closes mid-handshake, never answers, garbage records, huge response head).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/http/client.h"
#include "platform/tls/certificate.h"
#include "platform/tls/context.h"

namespace herald::http {
namespace {

enum class Mode : uint8_t {
  kRespond,           // handshake, read the request, send `response`, close
  kCloseAfterHello,   // read the ClientHello, then close: a handshake cut short
  kSilent,            // accept and never send a byte
  kGarbageAfterHello  // answer the ClientHello with bytes that are not TLS records
};

// One connection at a time, blocking I/O (with timeouts, so nothing hangs a test run).
class TinyTlsServer {
 public:
  TinyTlsServer(Mode mode, const tls::PemCertificate& leaf, std::string response,
                uint16_t max_version = TLS1_3_VERSION, bool close_notify = true)
      : mode_(mode), response_(std::move(response)), close_notify_(close_notify) {
    ctx_.reset(SSL_CTX_new(TLS_method()));
    auto key = tls::certified_key_from_pem(leaf.cert_pem, leaf.key_pem);
    EXPECT_TRUE(key.ok()) << key.status();
    key_ = *key;
    EXPECT_EQ(SSL_CTX_set_chain_and_key(ctx_.get(), key_->chain_data(), key_->chain_length(),
                                        key_->private_key(), nullptr),
              1);
    EXPECT_EQ(SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION), 1);
    EXPECT_EQ(SSL_CTX_set_max_proto_version(ctx_.get(), max_version), 1);
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TinyTlsServer() {
    stop_.store(true);
    thread_.join();
    ::close(listen_fd_);
  }

  uint16_t port() const { return port_; }
  int handshakes() const { return handshakes_.load(); }
  int accepted() const { return accepted_.load(); }
  int resumed() const { return resumed_.load(); }
  std::string sni() {
    std::lock_guard<std::mutex> lock(mu_);
    return sni_;
  }
  std::string request() {
    std::lock_guard<std::mutex> lock(mu_);
    return request_;
  }
  uint16_t version() const { return version_.load(); }

 private:
  void run() {
    while (!stop_.load()) {
      pollfd p{.fd = listen_fd_, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++accepted_;
      timeval tv{.tv_sec = 5, .tv_usec = 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      serve(fd);
      ::close(fd);
    }
  }

  void serve(int fd) {
    char hello[4096];
    switch (mode_) {
      case Mode::kCloseAfterHello: (void)::recv(fd, hello, sizeof(hello), 0); return;
      case Mode::kGarbageAfterHello: {
        (void)::recv(fd, hello, sizeof(hello), 0);
        // A record header with an unknown content type, then junk.
        const std::string junk = "\x63\x03\x03\x00\x10garbage-garbage!" + std::string(64, '\xff');
        (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
        (void)::recv(fd, hello, sizeof(hello), 0);  // until the client hangs up
        return;
      }
      case Mode::kSilent:
        while (!stop_.load()) {
          pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
          if (::poll(&p, 1, 20) > 0 && ::recv(fd, hello, sizeof(hello), 0) <= 0) return;
        }
        return;
      case Mode::kRespond: break;
    }
    bssl::UniquePtr<SSL> ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), fd);
    if (SSL_accept(ssl.get()) != 1) return;  // the client refused us (or hung up)
    {
      std::lock_guard<std::mutex> lock(mu_);
      const char* name = SSL_get_servername(ssl.get(), TLSEXT_NAMETYPE_host_name);
      sni_ = name != nullptr ? name : "";
    }
    version_.store(static_cast<uint16_t>(SSL_version(ssl.get())));
    ++handshakes_;
    if (SSL_session_reused(ssl.get())) ++resumed_;
    std::string got;
    char buf[4096];
    for (;;) {
      const size_t end = got.find("\r\n\r\n");
      if (end != std::string::npos) {
        const size_t cl = got.find("Content-Length: ");
        const size_t length = cl != std::string::npos ? std::stoul(got.substr(cl + 16)) : 0;
        if (got.size() >= end + 4 + length) break;
      }
      const int n = SSL_read(ssl.get(), buf, sizeof(buf));
      if (n <= 0) return;
      got.append(buf, static_cast<size_t>(n));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      request_ = got;
    }
    (void)SSL_write(ssl.get(), response_.data(), static_cast<int>(response_.size()));
    if (close_notify_) (void)SSL_shutdown(ssl.get());
  }

  Mode mode_;
  std::string response_;
  bool close_notify_;
  bssl::UniquePtr<SSL_CTX> ctx_;
  std::shared_ptr<const tls::CertifiedKey> key_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> handshakes_{0};
  std::atomic<int> resumed_{0};
  std::atomic<uint16_t> version_{0};
  std::mutex mu_;
  std::string sni_;
  std::string request_;
};

constexpr const char* kOk = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"id\":\"m1\"}";

class HttpClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    char dir[] = "/tmp/herald_client_tls_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    ca_ = make_ca("Provider Test CA");
    ca_path_ = write(ca_.cert_pem, "ca.pem");
  }
  void TearDown() override {
    for (const std::string& f : files_) ::unlink(f.c_str());
    ::rmdir(dir_.c_str());
  }

  static tls::PemCertificate make_ca(const std::string& name) {
    tls::CertificateRequest req;
    req.common_name = name;
    req.is_ca = true;
    auto pem = tls::generate_certificate(req);
    EXPECT_TRUE(pem.ok()) << pem.status();
    return *pem;
  }
  static tls::PemCertificate make_leaf(const tls::PemCertificate& ca,
                                       std::vector<std::string> dns_names,
                                       std::vector<std::string> ip_addresses) {
    tls::CertificateRequest req;
    req.common_name = "provider";
    req.dns_names = std::move(dns_names);
    req.ip_addresses = std::move(ip_addresses);
    auto pem = tls::generate_certificate(req, &ca);
    EXPECT_TRUE(pem.ok()) << pem.status();
    return *pem;
  }
  std::string write(const std::string& text, const std::string& name) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }

  // Runs one exchange to the end (bounded at 15 s: a hang fails, speed does not).
  std::optional<absl::StatusOr<ClientResponse>> exchange(HttpClient& client,
                                                         const HttpTarget& target,
                                                         ClientOptions options = {}) {
    ClientRequest request;
    request.target = target;
    request.body = R"({"phone":"+15551234567"})";
    std::optional<absl::StatusOr<ClientResponse>> out;
    absl::Status started =
        client.start(request, options, [&out](absl::StatusOr<ClientResponse> r) { out = r; });
    EXPECT_TRUE(started.ok()) << started;
    if (!started.ok()) return absl::StatusOr<ClientResponse>(started);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!out.has_value() && std::chrono::steady_clock::now() < end) {
      (void)loop_->run_once(10'000'000);
    }
    return out;
  }

  HttpTarget target(uint16_t port, const std::string& server_name = "") {
    auto t = parse_http_url("https://127.0.0.1:" + std::to_string(port) + "/v1/sms");
    EXPECT_TRUE(t.ok()) << t.status();
    if (!server_name.empty()) t->server_name = server_name;  // as if the name had resolved here
    return *t;
  }

  std::shared_ptr<tls::ClientContext> context(const std::string& ca_path) {
    auto c = make_tls_client_context(ca_path);
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }

  std::unique_ptr<uring::EventLoop> loop_;
  std::string dir_;
  std::vector<std::string> files_;
  tls::PemCertificate ca_;
  std::string ca_path_;
};

TEST_F(HttpClientTlsTest, PostsOverTls13WithSniAndTheNameChecked) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {"sms.provider.test"}, {}), kOk);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port(), "sms.provider.test"));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->status();
  EXPECT_EQ((*r)->status, 200);
  EXPECT_EQ((*r)->body, R"({"id":"m1"})");
  EXPECT_FALSE((*r)->body_truncated);
  EXPECT_EQ(server.sni(), "sms.provider.test");
  EXPECT_EQ(server.version(), TLS1_3_VERSION);
  const std::string request = server.request();
  EXPECT_EQ(request.rfind("POST /v1/sms HTTP/1.1\r\n", 0), 0u) << request;
  EXPECT_NE(request.find(R"({"phone":"+15551234567"})"), std::string::npos);
  EXPECT_EQ(client.stats().tls_handshakes, 1u);
  EXPECT_EQ(client.stats().responses, 1u);
  EXPECT_EQ(client.stats().tls_failures, 0u);
  EXPECT_EQ(client.stats().live, 0u);
}

TEST_F(HttpClientTlsTest, LaterExchangesResumeTheSessionOncePerTicket) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {"sms.provider.test"}, {"127.0.0.1"}), kOk);
  HttpClient client(*loop_, context(ca_path_));
  for (int i = 0; i < 3; ++i) {
    auto r = exchange(client, target(server.port(), "sms.provider.test"));
    ASSERT_TRUE(r.has_value() && r->ok()) << i;
  }
  EXPECT_EQ(server.handshakes(), 3);
  EXPECT_EQ(server.resumed(), 2) << "the first is full, each later one uses the ticket before it";
  EXPECT_EQ(client.stats().tls_handshakes, 3u);
  EXPECT_EQ(client.stats().tls_resumed, 2u);
  // Another target (the same server by its IP address) has no ticket yet: a full handshake.
  auto other = exchange(client, target(server.port()));
  ASSERT_TRUE(other.has_value() && other->ok());
  EXPECT_EQ(server.resumed(), 2);
  EXPECT_EQ(client.stats().tls_resumed, 2u);
}

TEST_F(HttpClientTlsTest, TalksTls12ToAnOlderServerAndChecksAnIpAddress) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {}, {"127.0.0.1"}), kOk, TLS1_2_VERSION);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->status();
  EXPECT_EQ((*r)->status, 200);
  EXPECT_EQ(server.version(), TLS1_2_VERSION);
  EXPECT_EQ(server.sni(), "");  // RFC 6066 §3: no SNI for an address
}

TEST_F(HttpClientTlsTest, ARequestLargerThanARecordIsSentWhole) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {}, {"127.0.0.1"}), kOk);
  HttpClient client(*loop_, context(ca_path_));
  ClientRequest request;
  request.target = target(server.port());
  request.body = std::string(100'000, 'x');  // several records, several sends
  std::optional<absl::StatusOr<ClientResponse>> out;
  ASSERT_TRUE(
      client.start(request, {}, [&out](absl::StatusOr<ClientResponse> r) { out = r; }).ok());
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!out.has_value() && std::chrono::steady_clock::now() < end)
    (void)loop_->run_once(10'000'000);
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(out->ok()) << out->status();
  EXPECT_NE(server.request().find(std::string(100'000, 'x')), std::string::npos);
}

TEST_F(HttpClientTlsTest, AWrongHostNameIsRefused) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {"other.provider.test"}, {}), kOk);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port(), "sms.provider.test"));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_TRUE(is_tls_failure(r->status())) << r->status();
  EXPECT_EQ(r->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r->status().message().find("certificate"), std::string::npos) << r->status();
  EXPECT_EQ(client.stats().tls_failures, 1u);
  EXPECT_EQ(client.stats().tls_handshakes, 0u);
  EXPECT_EQ(server.handshakes(), 0);
  EXPECT_EQ(server.request(), "");  // nothing was sent to a server we could not trust
}

TEST_F(HttpClientTlsTest, AnIpAddressNotInTheCertificateIsRefused) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {"sms.provider.test"}, {"127.0.0.2"}), kOk);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_TRUE(is_tls_failure(r->status())) << r->status();
}

TEST_F(HttpClientTlsTest, AnUntrustedCaIsRefused) {
  const tls::PemCertificate rogue = make_ca("Rogue CA");
  TinyTlsServer server(Mode::kRespond, make_leaf(rogue, {"sms.provider.test"}, {}), kOk);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port(), "sms.provider.test"));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_TRUE(is_tls_failure(r->status())) << r->status();
  EXPECT_NE(r->status().message().find("certificate"), std::string::npos) << r->status();
  EXPECT_EQ(client.stats().tls_failures, 1u);
  EXPECT_EQ(server.request(), "");
}

TEST_F(HttpClientTlsTest, AServerThatClosesMidHandshakeIsAnError) {
  TinyTlsServer server(Mode::kCloseAfterHello, make_leaf(ca_, {}, {"127.0.0.1"}), "");
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_TRUE(is_tls_failure(r->status())) << r->status();
  EXPECT_EQ(client.stats().tls_failures, 1u);
  EXPECT_EQ(client.stats().live, 0u);
}

TEST_F(HttpClientTlsTest, GarbageRecordsAreAnError) {
  TinyTlsServer server(Mode::kGarbageAfterHello, make_leaf(ca_, {}, {"127.0.0.1"}), "");
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_TRUE(is_tls_failure(r->status())) << r->status();
  EXPECT_EQ(client.stats().tls_failures, 1u);
}

TEST_F(HttpClientTlsTest, AServerThatNeverAnswersTheHandshakeTimesOut) {
  TinyTlsServer server(Mode::kSilent, make_leaf(ca_, {}, {"127.0.0.1"}), "");
  HttpClient client(*loop_, context(ca_path_));
  ClientOptions options;
  options.timeout_ms = 200;
  auto r = exchange(client, target(server.port()), options);
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->status().code(), absl::StatusCode::kDeadlineExceeded) << r->status();
  EXPECT_NE(r->status().message().find("TLS handshake"), std::string::npos) << r->status();
  EXPECT_FALSE(is_tls_failure(r->status()));
  EXPECT_EQ(client.stats().timeouts, 1u);
  EXPECT_EQ(server.accepted(), 1);
}

TEST_F(HttpClientTlsTest, AHugeResponseHeadIsRefusedAtTheLimit) {
  const std::string huge =
      "HTTP/1.1 200 OK\r\nX-Junk: " + std::string(20'000, 'a') + "\r\nContent-Length: 0\r\n\r\n";
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {}, {"127.0.0.1"}), huge);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->status().code(), absl::StatusCode::kInvalidArgument) << r->status();
  EXPECT_EQ(client.stats().protocol_errors, 1u);
}

TEST_F(HttpClientTlsTest, AReadToCloseBodyEndsAtCloseNotify) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {}, {"127.0.0.1"}),
                       "HTTP/1.1 202 Accepted\r\n\r\nqueued");
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->status();
  EXPECT_EQ((*r)->status, 202);
  EXPECT_EQ((*r)->body, "queued");
  EXPECT_FALSE((*r)->body_truncated);  // the server sent close_notify
}

// RFC 8446 §6.1: without close_notify the end of a read-to-close body may be an attacker's
// doing; the status stands, the body is marked as possibly incomplete.
TEST_F(HttpClientTlsTest, AReadToCloseBodyWithoutCloseNotifyIsMarkedTruncated) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {}, {"127.0.0.1"}),
                       "HTTP/1.1 202 Accepted\r\n\r\nqueued", TLS1_3_VERSION,
                       /*close_notify=*/false);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->status();
  EXPECT_EQ((*r)->status, 202);
  EXPECT_EQ((*r)->body, "queued");
  EXPECT_TRUE((*r)->body_truncated);
}

// A framed body needs no close_notify: it ended where its Content-Length said.
TEST_F(HttpClientTlsTest, AContentLengthBodyWithoutCloseNotifyIsComplete) {
  TinyTlsServer server(Mode::kRespond, make_leaf(ca_, {}, {"127.0.0.1"}), kOk, TLS1_3_VERSION,
                       /*close_notify=*/false);
  HttpClient client(*loop_, context(ca_path_));
  auto r = exchange(client, target(server.port()));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->status();
  EXPECT_EQ((*r)->body, R"({"id":"m1"})");
  EXPECT_FALSE((*r)->body_truncated);
}

TEST_F(HttpClientTlsTest, HttpsNeedsAContextAndAReadableBundle) {
  HttpClient plain_only(*loop_);
  ClientRequest request;
  request.target = target(443);
  EXPECT_EQ(plain_only.start(request, {}, [](absl::StatusOr<ClientResponse>) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(make_tls_client_context(dir_ + "/missing.pem").ok());
  EXPECT_FALSE(make_tls_client_context(write("not a certificate", "junk.pem")).ok());
}

TEST(HttpClientUrl, HttpsDefaultsToPort443) {
  auto t = parse_http_url("HTTPS://127.0.0.1/v1");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->tls);
  EXPECT_EQ(t->server_name, "127.0.0.1");
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&t->addr)->sin_port), 443);
  t = parse_http_url("https://[::1]:8443");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->server_name, "::1");
  EXPECT_EQ(t->host_header, "[::1]:8443");
  t = parse_http_url("http://127.0.0.1/");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->tls);
  EXPECT_FALSE(parse_http_url("https:///x").ok());
  EXPECT_FALSE(parse_http_url("httpss://127.0.0.1/").ok());
}

}  // namespace
}  // namespace herald::http

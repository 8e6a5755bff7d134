// Tests for the webhook code gateway and its HTTP client against a real local HTTP server (an
// http::Server on its own loop thread, plain or HTTPS) that answers as each test tells it:
// errors then success, never, or a refusal.
#include "controlplane/registration/webhook_gateway.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/registration/memory_store.h"
#include "controlplane/registration/registrar.h"
#include "platform/tls/certificate.h"
#include "platform/tls/context.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::registration {
namespace {

constexpr uint64_t kT0 = 1'700'000'000'000;

// How the provider answers, set by the test before it sends.
struct Provider {
  std::atomic<int> fail_first{0};      // answer 500 to this many requests first
  std::atomic<int> final_status{200};  // then this
  std::atomic<bool> never_answer{false};
  std::atomic<int> requests{0};
  std::mutex mu;
  std::vector<std::string> bodies;
  std::vector<std::string> authorizations;
};
Provider* g_provider = nullptr;

struct ProviderHandler : http::Handler {
  std::vector<http::Responder> held;  // never-answered requests (loop thread only)
  void handle(const http::Request& request, std::string_view body,
              http::Responder& responder) override {
    const int n = g_provider->requests.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(g_provider->mu);
      g_provider->bodies.emplace_back(body);
      g_provider->authorizations.emplace_back(request.value("Authorization"));
    }
    if (g_provider->never_answer.load()) {
      held.push_back(responder);
      return;
    }
    if (n < g_provider->fail_first.load()) {
      responder.respond(500, "text/plain", "busy");
      return;
    }
    responder.respond(g_provider->final_status.load(), "application/json", R"({"id":"m1"})");
  }
};
using ProviderServer = http::testing::LoopServer<ProviderHandler>;

class WebhookGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_provider = &provider_;
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
  }
  void TearDown() override { g_provider = nullptr; }

  WebhookOptions options(uint16_t port) {
    WebhookOptions o;
    o.url = "http://127.0.0.1:" + std::to_string(port) + "/v1/sms";
    o.headers = {{"Authorization", "Bearer provider-token"}};
    o.initial_backoff_ms = 10;
    o.max_backoff_ms = 40;
    o.connect_timeout_ms = 2000;
    o.attempt_timeout_ms = 2000;
    o.total_deadline_ms = 20'000;
    return o;
  }
  // Runs the gateway's loop until `pred` holds (bounded at 15 s: a hang fails, speed does not).
  template <typename Pred>
  bool run_until(Pred pred) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      (void)loop_->run_once(10'000'000);
    }
    return true;
  }
  PhoneNumber phone() { return parse_phone_number("+15551234567").number; }

  Provider provider_;
  std::unique_ptr<uring::EventLoop> loop_;
};

TEST_F(WebhookGatewayTest, BodyIsTheDocumentedJson) {
  EXPECT_EQ(WebhookGateway::body_json(phone(), CodeMethod::kVoice, "012345", kT0 + 600'999),
            R"({"phone":"+15551234567","code":"012345","method":"voice","expires_at":1700000600})");
}

TEST_F(WebhookGatewayTest, RetriesAServerErrorThenDelivers) {
  ProviderServer server(http::ServerLimits{});
  ASSERT_NE(server.port(), 0);
  provider_.fail_first = 2;
  auto gateway = WebhookGateway::create(*loop_, options(server.port()));
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  ASSERT_TRUE((*gateway)->send_code(phone(), CodeMethod::kSms, "123456", kT0).ok());
  ASSERT_TRUE(run_until([&] { return (*gateway)->stats().delivered == 1; }));
  const WebhookStats& s = (*gateway)->stats();
  EXPECT_EQ(s.attempts, 3u);
  EXPECT_EQ(s.retries, 2u);
  EXPECT_EQ(s.http_errors, 2u);
  EXPECT_EQ(s.gave_up, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.in_flight, 0u);
  std::lock_guard<std::mutex> lock(provider_.mu);
  ASSERT_EQ(provider_.bodies.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(provider_.bodies[i],
              R"({"phone":"+15551234567","code":"123456","method":"sms","expires_at":1700000600})");
    EXPECT_EQ(provider_.authorizations[i], "Bearer provider-token");
  }
}

TEST_F(WebhookGatewayTest, ARefusalIsNotRetried) {
  ProviderServer server(http::ServerLimits{});
  provider_.final_status = 400;
  auto gateway = WebhookGateway::create(*loop_, options(server.port()));
  ASSERT_TRUE(gateway.ok());
  ASSERT_TRUE((*gateway)->send_code(phone(), CodeMethod::kSms, "123456", kT0).ok());
  ASSERT_TRUE(run_until([&] { return (*gateway)->stats().rejected == 1; }));
  EXPECT_EQ((*gateway)->stats().attempts, 1u);
  EXPECT_EQ((*gateway)->stats().delivered, 0u);
  EXPECT_EQ(provider_.requests.load(), 1);
}

TEST_F(WebhookGatewayTest, AProviderThatNeverAnswersTimesOut) {
  ProviderServer server(http::ServerLimits{});
  provider_.never_answer = true;
  WebhookOptions o = options(server.port());
  o.attempt_timeout_ms = 150;
  o.max_attempts = 2;
  auto gateway = WebhookGateway::create(*loop_, o);
  ASSERT_TRUE(gateway.ok());
  ASSERT_TRUE((*gateway)->send_code(phone(), CodeMethod::kSms, "123456", kT0).ok());
  ASSERT_TRUE(run_until([&] { return (*gateway)->stats().gave_up == 1; }));
  EXPECT_EQ((*gateway)->stats().attempts, 2u);
  EXPECT_EQ((*gateway)->stats().transport_errors, 2u);
  EXPECT_EQ((*gateway)->stats().delivered, 0u);
  EXPECT_EQ(provider_.requests.load(), 2);
}

TEST_F(WebhookGatewayTest, TheTotalDeadlineBoundsRetries) {
  ProviderServer server(http::ServerLimits{});
  provider_.fail_first = 1'000'000;
  WebhookOptions o = options(server.port());
  o.max_attempts = 1000;
  o.initial_backoff_ms = 100;
  o.max_backoff_ms = 100;
  o.total_deadline_ms = 350;  // room for at most 4 attempts 100 ms apart
  auto gateway = WebhookGateway::create(*loop_, o);
  ASSERT_TRUE(gateway.ok());
  ASSERT_TRUE((*gateway)->send_code(phone(), CodeMethod::kSms, "123456", kT0).ok());
  ASSERT_TRUE(run_until([&] { return (*gateway)->stats().gave_up == 1; }));
  EXPECT_GE((*gateway)->stats().attempts, 1u);
  EXPECT_LE((*gateway)->stats().attempts, 4u);
}

TEST_F(WebhookGatewayTest, ConnectionRefusedIsRetriedThenGivenUp) {
  // A port nobody listens on: bind one, learn it, close it.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(fd);
  WebhookOptions o = options(ntohs(a.sin_port));
  o.max_attempts = 3;
  auto gateway = WebhookGateway::create(*loop_, o);
  ASSERT_TRUE(gateway.ok());
  ASSERT_TRUE((*gateway)->send_code(phone(), CodeMethod::kSms, "123456", kT0).ok());
  ASSERT_TRUE(run_until([&] { return (*gateway)->stats().gave_up == 1; }));
  EXPECT_EQ((*gateway)->stats().attempts, 3u);
  EXPECT_EQ((*gateway)->stats().transport_errors, 3u);
}

// A full queue refuses the code at once, and the registrar turns that into gateway_failed (503).
TEST_F(WebhookGatewayTest, AFullQueueFailsTheCodeRequest) {
  ProviderServer server(http::ServerLimits{});
  provider_.never_answer = true;
  WebhookOptions o = options(server.port());
  o.max_queue = 2;
  o.max_in_flight = 1;
  auto gateway = WebhookGateway::create(*loop_, o);
  ASSERT_TRUE(gateway.ok());
  MemoryStore store;
  std::vector<uint8_t> secret(32, 7);
  Registrar registrar({}, store, **gateway, secret);
  SourceAddress source = *SourceAddress::parse("192.0.2.1");
  EXPECT_EQ(registrar.request_code("+15550000001", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kOk);
  EXPECT_EQ(registrar.request_code("+15550000002", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kOk);
  RequestCodeResult third = registrar.request_code("+15550000003", CodeMethod::kSms, source, kT0);
  EXPECT_EQ(third.error, RegistrationError::kGatewayFailed);
  EXPECT_EQ(http_status(third.error), 503);
  EXPECT_EQ((*gateway)->stats().queue_full, 1u);
  EXPECT_EQ((*gateway)->stats().in_flight, 1u);
  ASSERT_TRUE(run_until([&] { return provider_.requests.load() == 1; }));
  // Destroyed with one request in flight and one queued: no leak, no late callback.
  gateway->reset();
}

// HTTPS: a provider whose certificate is issued by a test CA for 127.0.0.1.
class WebhookGatewayTlsTest : public WebhookGatewayTest {
 protected:
  void SetUp() override {
    WebhookGatewayTest::SetUp();
    char dir[] = "/tmp/herald_webhook_tls_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    ca_ = make_certificate("Provider Test CA", nullptr);
    other_ca_ = make_certificate("Some Other CA", nullptr);
    ca_path_ = write(ca_.cert_pem, "ca.pem");
    other_ca_path_ = write(other_ca_.cert_pem, "other_ca.pem");
    const tls::PemCertificate leaf = make_certificate("provider", &ca_);
    auto key = tls::certified_key_from_pem(leaf.cert_pem, leaf.key_pem);
    ASSERT_TRUE(key.ok()) << key.status();
    tls::ServerOptions server_options;
    server_options.min_version = tls::TlsVersion::kTls12;
    auto context = tls::ServerContext::create(server_options, *key);
    ASSERT_TRUE(context.ok()) << context.status();
    server_context_ = *context;
  }
  void TearDown() override {
    for (const std::string& f : files_) ::unlink(f.c_str());
    ::rmdir(dir_.c_str());
    WebhookGatewayTest::TearDown();
  }
  static tls::PemCertificate make_certificate(const std::string& name,
                                              const tls::PemCertificate* issuer) {
    tls::CertificateRequest req;
    req.common_name = name;
    req.is_ca = issuer == nullptr;
    if (issuer != nullptr) req.ip_addresses = {"127.0.0.1"};
    auto pem = tls::generate_certificate(req, issuer);
    EXPECT_TRUE(pem.ok()) << pem.status();
    return *pem;
  }
  std::string write(const std::string& text, const std::string& name) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  WebhookOptions https_options(uint16_t port, const std::string& ca_path) {
    WebhookOptions o = options(port);
    o.url = "https://127.0.0.1:" + std::to_string(port) + "/v1/sms";
    o.ca_path = ca_path;
    return o;
  }

  std::string dir_;
  std::vector<std::string> files_;
  tls::PemCertificate ca_;
  tls::PemCertificate other_ca_;
  std::string ca_path_;
  std::string other_ca_path_;
  std::shared_ptr<tls::ServerContext> server_context_;
};

TEST_F(WebhookGatewayTlsTest, DeliversOverHttps) {
  ProviderServer server(http::ServerLimits{}, "127.0.0.1", server_context_);
  ASSERT_NE(server.port(), 0);
  provider_.fail_first = 1;
  auto gateway = WebhookGateway::create(*loop_, https_options(server.port(), ca_path_));
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  ASSERT_TRUE((*gateway)->send_code(phone(), CodeMethod::kSms, "123456", kT0).ok());
  ASSERT_TRUE(run_until([&] { return (*gateway)->stats().delivered == 1; }));
  EXPECT_EQ((*gateway)->stats().attempts, 2u);  // a 500 over TLS is retried like over TCP
  EXPECT_EQ((*gateway)->stats().tls_failures, 0u);
  EXPECT_EQ((*gateway)->stats().tls_handshakes, 2u);
  EXPECT_EQ((*gateway)->stats().tls_resumed, 1u) << "the retry resumes the first session";
  EXPECT_EQ((*gateway)->stats().transport_errors, 0u);
  std::lock_guard<std::mutex> lock(provider_.mu);
  ASSERT_EQ(provider_.bodies.size(), 2u);
  EXPECT_EQ(provider_.bodies[1],
            R"({"phone":"+15551234567","code":"123456","method":"sms","expires_at":1700000600})");
  EXPECT_EQ(provider_.authorizations[1], "Bearer provider-token");
}

// A certificate from a CA the gateway does not trust fails every attempt as a TLS failure,
// retried like a connect failure, and the provider never sees the code.
TEST_F(WebhookGatewayTlsTest, AnUntrustedCertificateIsRetriedThenGivenUp) {
  ProviderServer server(http::ServerLimits{}, "127.0.0.1", server_context_);
  ASSERT_NE(server.port(), 0);
  WebhookOptions o = https_options(server.port(), other_ca_path_);
  o.max_attempts = 3;
  auto gateway = WebhookGateway::create(*loop_, o);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  ASSERT_TRUE((*gateway)->send_code(phone(), CodeMethod::kSms, "123456", kT0).ok());
  ASSERT_TRUE(run_until([&] { return (*gateway)->stats().gave_up == 1; }));
  const WebhookStats& s = (*gateway)->stats();
  EXPECT_EQ(s.attempts, 3u);
  EXPECT_EQ(s.retries, 2u);
  EXPECT_EQ(s.tls_failures, 3u);
  EXPECT_EQ(s.transport_errors, 3u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(provider_.requests.load(), 0);
}

TEST_F(WebhookGatewayTlsTest, TheCaBundleIsCheckedAtCreate) {
  EXPECT_FALSE(WebhookGateway::create(*loop_, https_options(443, dir_ + "/missing.pem")).ok());
  EXPECT_FALSE(WebhookGateway::create(*loop_, https_options(443, write("junk", "junk.pem"))).ok());
  // An http:// gateway reads no bundle, so a bad path does not stop it.
  WebhookOptions plain = options(80);
  plain.ca_path = dir_ + "/missing.pem";
  EXPECT_TRUE(WebhookGateway::create(*loop_, plain).ok());
}

TEST(HttpClientParse, Urls) {
  auto t = http::parse_http_url("http://127.0.0.1:8080/v1/sms?x=1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host_header, "127.0.0.1:8080");
  EXPECT_EQ(t->path, "/v1/sms?x=1");
  t = http::parse_http_url("http://[::1]");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->path, "/");
  EXPECT_EQ(t->addr.ss_family, AF_INET6);
  t = http::parse_http_url("https://127.0.0.1/");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->tls);
  EXPECT_FALSE(http::parse_http_url("ftp://127.0.0.1/").ok());
  EXPECT_FALSE(http::parse_http_url("http://user@127.0.0.1/").ok());
  EXPECT_FALSE(http::parse_http_url("http://127.0.0.1:0/").ok());
  EXPECT_FALSE(http::parse_http_url("http://127.0.0.1:99999/").ok());
  EXPECT_FALSE(http::parse_http_url("http://127.0.0.1/a\r\nX: y").ok());
  EXPECT_FALSE(http::parse_http_url("http:///path").ok());
}

TEST(HttpClientParse, ResponseHeads) {
  auto h = http::parse_response_head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->status, 200);
  EXPECT_TRUE(h->has_content_length);
  EXPECT_EQ(h->content_length, 5u);
  h = http::parse_response_head(
      "HTTP/1.0 503\r\nTransfer-Encoding: chunked\r\n"
      "Content-Length: 5\r\n\r\n");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->status, 503);
  EXPECT_TRUE(h->chunked);
  EXPECT_FALSE(h->has_content_length);
  EXPECT_FALSE(http::parse_response_head("HTTP/2 200 OK\r\n\r\n").ok());
  EXPECT_FALSE(http::parse_response_head("HTTP/1.1 20 OK\r\n\r\n").ok());
  EXPECT_FALSE(http::parse_response_head("HTTP/1.1 200OK\r\n\r\n").ok());
  EXPECT_FALSE(http::parse_response_head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").ok());
  EXPECT_FALSE(
      http::parse_response_head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
          .ok());
  EXPECT_FALSE(http::parse_response_head("HTTP/1.1 200 OK\r\nBad : x\r\n\r\n").ok());
  EXPECT_FALSE(http::parse_response_head("HTTP/1.1 200 OK\r\n folded\r\n\r\n").ok());
}

}  // namespace
}  // namespace herald::registration

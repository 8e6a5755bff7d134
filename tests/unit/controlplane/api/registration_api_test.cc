// Registration abuse through real HTTP: the public registration API and the admin account
// endpoints on one router, served by an http::Server on a loop thread over MemoryTables behind a
// fault-injecting wrapper, with the log code gateway writing sms.log and time driven by the test.
#include "controlplane/api/registration_api.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/api/accounts_api.h"
#include "controlplane/api/router.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/code_gateway.h"
#include "controlplane/registration/credential.h"
#include "controlplane/storage/tables.h"
#include "platform/assert/assert.h"
#include "tests/unit/controlplane/api/http_client.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::api {
namespace {

using testing::http_request;
using testing::HttpResponse;

constexpr uint64_t kT0 = 1'700'000'000'000;
constexpr std::string_view kPhone = "+15551234567";
constexpr std::string_view kAdmin = "Authorization: Bearer admin-key\r\n";
constexpr std::string_view kRead = "Authorization: Bearer read-key\r\n";

struct Revocation {
  registration::AccountId account;
  std::optional<uint32_t> device;
  uint64_t issued_before_ms = 0;
};

// What the test thread sets before the server starts and reads while it runs.
struct Env {
  std::string sms_log;
  std::atomic<uint64_t> now_ms{kT0};
  std::atomic<bool> fail_apply{false};
  std::atomic<bool> fail_barrier{false};
  std::mutex mu;
  std::vector<Revocation> revocations;
  std::vector<Revocation> take_revocations() {
    std::lock_guard<std::mutex> lock(mu);
    return std::exchange(revocations, {});
  }
};
Env* g_env = nullptr;

class FlakyTables final : public storage::Tables {
 public:
  explicit FlakyTables(storage::MemoryTables::Defer defer) : inner_(std::move(defer)) {}
  absl::Status apply(std::span<const storage::Mutation> batch) override {
    if (g_env->fail_apply.load()) return absl::ResourceExhaustedError("injected: apply refused");
    return inner_.apply(batch);
  }
  const std::string* find(storage::TableId t, std::string_view key) const override {
    return inner_.find(t, key);
  }
  void scan(storage::TableId t, std::string_view from, const storage::ScanFn& fn) const override {
    inner_.scan(t, from, fn);
  }
  size_t size(storage::TableId t) const override { return inner_.size(t); }
  void barrier(storage::BarrierCallback done) override {
    const bool fail = g_env->fail_barrier.load();
    inner_.barrier([done = std::move(done), fail](const absl::Status& s) {
      done(fail ? absl::DataLossError("injected: log write failed") : s);
    });
  }
  const absl::Status& status() const override { return inner_.status(); }

 private:
  storage::MemoryTables inner_;
};

class FixedKeys final : public Authenticator {
 public:
  AuthOutcome authenticate(const http::Request& request, Scope needed) override {
    const std::string_view auth = request.value("Authorization");
    if (auth == "Bearer admin-key") return AuthOutcome::kAllowed;
    if (auth == "Bearer read-key") {
      return needed == Scope::kRead ? AuthOutcome::kAllowed : AuthOutcome::kForbidden;
    }
    return AuthOutcome::kUnauthenticated;
  }
};

RegistrationApiOptions test_options() {
  RegistrationApiOptions o;
  o.registrar.phone_limits.capacity = 1024;
  o.registrar.address_limits.capacity = 1024;
  o.clock = [] { return g_env->now_ms.load(); };
  return o;
}

// Built on the test thread (LoopServer's member), used on the loop thread.
class Node final : public http::Handler {
 public:
  Node()
      : tables_([this](std::function<void()> fn) { deferred_.push_back(std::move(fn)); }),
        gateway_(open_gateway()),
        api_(create_api(tables_, *gateway_)),
        accounts_(tables_, api_->store(), [] { return g_env->now_ms.load(); }),
        router_(&keys_) {
    // The test's stand-in for the connection's peer address.
    api_->set_peer_address_fn([](const http::Request& request, const http::Responder&) {
      return registration::SourceAddress::parse(request.value("X-Test-Peer"));
    });
    auto record = [](const registration::AccountId& account, std::optional<uint32_t> device,
                     uint64_t issued_before_ms) {
      std::lock_guard<std::mutex> lock(g_env->mu);
      g_env->revocations.push_back({account, device, issued_before_ms});
    };
    api_->set_revocation_hook(record);
    accounts_.set_revocation_hook(record);
    api_->add_routes(router_);
    accounts_.add_routes(router_);
  }

  void handle(const http::Request& request, std::string_view body,
              http::Responder& responder) override {
    router_.handle(request, body, responder);
    // The barrier call has returned: running its callback now is "later, outside the call".
    while (!deferred_.empty()) {
      auto fn = std::move(deferred_.front());
      deferred_.pop_front();
      fn();
    }
  }

 private:
  static std::unique_ptr<registration::LogGateway> open_gateway() {
    auto gateway = registration::LogGateway::open(g_env->sms_log);
    HERALD_CHECK(gateway.ok(), "sms.log");
    return std::move(*gateway);
  }
  static std::unique_ptr<RegistrationApi> create_api(storage::Tables& tables,
                                                     registration::CodeGateway& gateway) {
    auto api = RegistrationApi::create(test_options(), tables, gateway);
    HERALD_CHECK(api.ok(), "registration api");
    return std::move(*api);
  }

  std::deque<std::function<void()>> deferred_;
  FlakyTables tables_;
  std::unique_ptr<registration::LogGateway> gateway_;
  std::unique_ptr<RegistrationApi> api_;
  AccountsApi accounts_;
  FixedKeys keys_;
  Router router_;
};

using NodeServer = http::testing::LoopServer<Node>;

// The value of a JSON string or number field in a flat object (the API's own output).
std::string json_field(const std::string& json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  size_t at = json.find(key);
  if (at == std::string::npos) return {};
  at += key.size();
  while (at < json.size() && json[at] == ' ') ++at;
  if (json[at] == '"') {
    const size_t end = json.find('"', at + 1);
    return json.substr(at + 1, end - at - 1);
  }
  const size_t end = json.find_first_of(",}", at);
  return json.substr(at, end - at);
}

// The JSON without the generator's spaces after ':' (the test's bodies hold no spaces).
std::string compact(std::string json) {
  std::erase(json, ' ');
  return json;
}

class RegistrationApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/herald_registration_api_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    env_.sms_log = dir_ + "/sms.log";
    g_env = &env_;
    server_ = std::make_unique<NodeServer>(http::ServerLimits{});
    ASSERT_NE(server_->port(), 0);
  }
  void TearDown() override {
    server_.reset();
    ::unlink(env_.sms_log.c_str());
    ::rmdir(dir_.c_str());
    g_env = nullptr;
  }

  HttpResponse post(std::string_view path, std::string_view body,
                    std::string_view peer = "192.0.2.1") {
    return http_request(server_->port(), "POST", path, body,
                        "X-Test-Peer: " + std::string(peer) + "\r\n");
  }
  HttpResponse request_code(std::string_view phone, std::string_view peer = "192.0.2.1") {
    return post("/v1/accounts/code", R"({"phone":")" + std::string(phone) + R"(","method":"sms"})",
                peer);
  }
  HttpResponse verify(std::string_view phone, std::string_view code,
                      std::string_view device = "pixel") {
    return post("/v1/accounts/verify", R"({"phone":")" + std::string(phone) + R"(","code":")" +
                                           std::string(code) + R"(","device_name":")" +
                                           std::string(device) + R"("})");
  }
  HttpResponse session(std::string_view credential) {
    return post("/v1/sessions", R"({"credential":")" + std::string(credential) + R"("})");
  }
  std::vector<std::string> sms_lines() {
    std::ifstream in(env_.sms_log);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  std::string last_code() {
    std::vector<std::string> lines = sms_lines();
    return lines.empty() ? std::string() : json_field(lines.back(), "code");
  }
  // Requests a code and verifies it: the VerifyResponse.
  HttpResponse register_phone(std::string_view phone, std::string_view device = "pixel") {
    HttpResponse code = request_code(phone);
    EXPECT_EQ(code.status, 200) << code.body;
    return verify(phone, last_code(), device);
  }
  void advance_ms(uint64_t ms) { env_.now_ms.fetch_add(ms); }

  Env env_;
  std::string dir_;
  std::unique_ptr<NodeServer> server_;
};

TEST_F(RegistrationApiTest, CodeVerifySessionFlow) {
  HttpResponse r = request_code(kPhone);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(compact(r.body), R"({"expires_in":600})");
  // The log gateway wrote one JSON line for the code.
  std::vector<std::string> lines = sms_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json_field(lines[0], "phone"), kPhone);
  EXPECT_EQ(json_field(lines[0], "method"), "sms");
  std::string code = json_field(lines[0], "code");
  ASSERT_EQ(code.size(), 6u);

  r = verify(kPhone, code);
  ASSERT_EQ(r.status, 200) << r.body;
  std::string account = json_field(r.body, "account_id");
  EXPECT_TRUE(registration::parse_account_id(account).has_value()) << r.body;
  EXPECT_EQ(json_field(r.body, "device_id"), "1");
  EXPECT_EQ(json_field(r.body, "new_account"), "true");
  std::string credential = json_field(r.body, "credential");
  EXPECT_TRUE(registration::credential_hash(credential).has_value());

  r = session(credential);
  ASSERT_EQ(r.status, 200) << r.body;
  std::optional<registration::TokenBytes> token =
      registration::parse_token_text(json_field(r.body, "token"));
  ASSERT_TRUE(token);
  registration::TokenClaims claims = registration::read_claims(*token);
  EXPECT_EQ(registration::format_account_id(claims.account), account);
  EXPECT_EQ(claims.device_id, 1u);
  EXPECT_EQ(claims.issued_at_ms, kT0);
  EXPECT_EQ(json_field(r.body, "expires_at_ms"), std::to_string(claims.expires_at_ms));
  // The code was consumed.
  EXPECT_EQ(json_field(verify(kPhone, code).body, "error"), "no_code_pending");
}

TEST_F(RegistrationApiTest, RateLimitPerPhone) {
  ASSERT_EQ(request_code(kPhone).status, 200);
  HttpResponse r = request_code(kPhone, "198.51.100.7");  // another address: still the phone
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(json_field(r.body, "error"), "rate_limited");
  EXPECT_FALSE(json_field(r.body, "message").empty());
  const std::string retry_after = json_field(r.body, "retry_after");
  EXPECT_EQ(retry_after, "60");
  EXPECT_EQ(r.header("Retry-After"), retry_after);
  EXPECT_EQ(sms_lines().size(), 1u);  // a refused request sends nothing
  advance_ms(30'000);
  r = request_code(kPhone);
  ASSERT_EQ(r.status, 429);
  EXPECT_EQ(json_field(r.body, "retry_after"), "30");
  advance_ms(30'000);
  EXPECT_EQ(request_code(kPhone).status, 200);
  // Another number is not limited by this one.
  EXPECT_EQ(request_code("+15550000001").status, 200);
}

TEST_F(RegistrationApiTest, RateLimitPerAddress) {
  // 20 at once per address (default_address_limits), then one per 3 min.
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(request_code("+1555000" + std::to_string(1000 + i), "203.0.113.5").status, 200) << i;
  }
  HttpResponse r = request_code("+15559999999", "203.0.113.5");
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.header("Retry-After"), "180");
  // The same number from another address is allowed: the limit was the address's.
  EXPECT_EQ(request_code("+15559999999", "203.0.113.6").status, 200);
  // An IPv6 client is counted per /64.
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(
        request_code("+1555100" + std::to_string(1000 + i), "2001:db8::" + std::to_string(i + 1))
            .status,
        200)
        << i;
  }
  EXPECT_EQ(request_code("+15551009999", "2001:db8::ffff").status, 429);
}

TEST_F(RegistrationApiTest, WrongCodesAndAttemptCap) {
  ASSERT_EQ(request_code(kPhone).status, 200);
  const std::string code = last_code();
  const std::string wrong = code == "000000" ? "111111" : "000000";
  // Not six digits: refused without using up an attempt.
  HttpResponse r = verify(kPhone, "12345");
  ASSERT_EQ(r.status, 403);
  EXPECT_EQ(json_field(r.body, "attempts_left"), "5");
  for (int left = 4; left >= 0; --left) {
    r = verify(kPhone, wrong);
    ASSERT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(json_field(r.body, "error"), "invalid_code");
    EXPECT_EQ(json_field(r.body, "attempts_left"), std::to_string(left));
  }
  // Five wrong guesses burn the code: even the right one is refused now.
  r = verify(kPhone, code);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(json_field(r.body, "error"), "too_many_attempts");
  // A new code (after the phone limit) starts over.
  advance_ms(60'000);
  ASSERT_EQ(request_code(kPhone).status, 200);
  EXPECT_EQ(verify(kPhone, last_code()).status, 200);
}

TEST_F(RegistrationApiTest, ExpiredCode) {
  ASSERT_EQ(request_code(kPhone).status, 200);
  const std::string code = last_code();
  advance_ms(599'999);
  advance_ms(1);
  HttpResponse r = verify(kPhone, code);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json_field(r.body, "error"), "code_expired");
}

TEST_F(RegistrationApiTest, ReRegistrationRevokesOldPrimary) {
  HttpResponse first = register_phone(kPhone, "old");
  ASSERT_EQ(first.status, 200) << first.body;
  const std::string old_credential = json_field(first.body, "credential");
  ASSERT_EQ(session(old_credential).status, 200);
  EXPECT_TRUE(env_.take_revocations().empty());

  advance_ms(60'000);
  HttpResponse second = register_phone(kPhone, "new");
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(json_field(second.body, "account_id"), json_field(first.body, "account_id"));
  EXPECT_EQ(json_field(second.body, "device_id"), "2");
  EXPECT_EQ(json_field(second.body, "new_account"), "false");
  std::vector<Revocation> revocations = env_.take_revocations();
  ASSERT_EQ(revocations.size(), 1u);
  EXPECT_EQ(registration::format_account_id(revocations[0].account),
            json_field(first.body, "account_id"));
  EXPECT_EQ(revocations[0].device, std::optional<uint32_t>(1));
  EXPECT_GT(revocations[0].issued_before_ms, env_.now_ms.load() - 1);

  HttpResponse r = session(old_credential);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json_field(r.body, "error"), "invalid_credential");
  EXPECT_EQ(session(json_field(second.body, "credential")).status, 200);
}

TEST_F(RegistrationApiTest, BadBodies) {
  auto expect_bad = [&](std::string_view path, std::string_view body, std::string_view error) {
    HttpResponse r = post(path, body);
    EXPECT_EQ(r.status, 400) << path << " " << body << " -> " << r.body;
    EXPECT_EQ(json_field(r.body, "error"), error) << body;
    EXPECT_FALSE(json_field(r.body, "message").empty()) << body;
  };
  expect_bad("/v1/accounts/code", "", "bad_request");
  expect_bad("/v1/accounts/code", "{", "bad_request");
  expect_bad("/v1/accounts/code", "[1]", "bad_request");
  expect_bad("/v1/accounts/code", R"({"phone":"+15551234567","method":"sms","x":1})",
             "bad_request");
  expect_bad("/v1/accounts/code", R"({"phone":15551234567,"method":"sms"})", "bad_request");
  expect_bad("/v1/accounts/code", R"({phone:"+15551234567",method:"sms"})", "bad_request");
  expect_bad("/v1/accounts/code", R"({"phone":"+15551234567","method":"fax"})", "invalid_method");
  expect_bad("/v1/accounts/code", R"({"phone":"+15551234567"})", "invalid_method");
  expect_bad("/v1/accounts/code", R"({"phone":"5551234567","method":"sms"})", "invalid_phone");
  expect_bad("/v1/accounts/verify", R"({"phone":"+15551234567","code":123456})", "bad_request");
  expect_bad("/v1/accounts/verify", R"({"phone":"+15551234567","code":"123456","device_name":""})",
             "invalid_device_name");
  expect_bad("/v1/accounts/verify", R"({"phone":"+15551234567","code":"123456","device_name":"a"})",
             "no_code_pending");
  expect_bad("/v1/sessions", R"({"credential":"x","extra":true})", "bad_request");
  EXPECT_EQ(sms_lines().size(), 0u);

  HttpResponse r = session("not-a-credential");
  EXPECT_EQ(r.status, 401);
  // A body over the server's limit never reaches the handler.
  r = post("/v1/accounts/code", std::string(2 << 20, ' '));
  EXPECT_EQ(r.status, 413);
  // Only POST is routed.
  EXPECT_EQ(http_request(server_->port(), "GET", "/v1/sessions").status, 405);
}

TEST_F(RegistrationApiTest, StoreFailureAcknowledgesNothing) {
  env_.fail_apply.store(true);
  HttpResponse r = request_code(kPhone);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_field(r.body, "error"), "store_failed");
  EXPECT_EQ(sms_lines().size(), 0u);  // no code stored, so none sent
  env_.fail_apply.store(false);

  advance_ms(60'000);
  ASSERT_EQ(request_code(kPhone).status, 200);
  // The log write fails: the client never sees the credential.
  env_.fail_barrier.store(true);
  r = verify(kPhone, last_code());
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_field(r.body, "error"), "store_unavailable");
  EXPECT_EQ(r.body.find("credential"), std::string::npos);
  r = request_code("+15550000002");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body.find("expires_in"), std::string::npos);
}

TEST_F(RegistrationApiTest, AdminAccountsAndDisable) {
  HttpResponse reg = register_phone(kPhone);
  ASSERT_EQ(reg.status, 200) << reg.body;
  const std::string id = json_field(reg.body, "account_id");
  const std::string credential = json_field(reg.body, "credential");
  const uint16_t port = server_->port();

  HttpResponse r = http_request(port, "GET", "/v1/accounts?phone=%2B15551234567", {}, kRead);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "account_id"), id);
  EXPECT_EQ(json_field(r.body, "phone"), kPhone);
  EXPECT_EQ(json_field(r.body, "primary_device_id"), "1");
  EXPECT_EQ(json_field(r.body, "disabled"), "false");
  EXPECT_EQ(http_request(port, "GET", "/v1/accounts/" + id, {}, kRead).body, r.body);
  // A raw '+' in the query is the number's own (not a space).
  EXPECT_EQ(http_request(port, "GET", "/v1/accounts?phone=+15551234567", {}, kRead).body, r.body);
  EXPECT_EQ(http_request(port, "GET", "/v1/accounts?phone=%2B15550000000", {}, kRead).status, 404);
  EXPECT_EQ(http_request(port, "GET", "/v1/accounts?phone=nope", {}, kRead).status, 400);
  // Without a phone it is the listing (accounts_api_test.cc covers its pages).
  EXPECT_EQ(http_request(port, "GET", "/v1/accounts", {}, kRead).status, 200);
  EXPECT_EQ(http_request(port, "GET", "/v1/accounts/not-a-uuid", {}, kRead).status, 400);
  EXPECT_EQ(http_request(port, "GET", "/v1/accounts/" + id).status, 401);
  EXPECT_EQ(
      http_request(port, "GET", "/v1/accounts/00000000-0000-4000-8000-000000000000", {}, kRead)
          .status,
      404);

  // Read keys cannot disable.
  EXPECT_EQ(http_request(port, "POST", "/v1/accounts/" + id + "/disable", {}, kRead).status, 403);
  advance_ms(1000);
  r = http_request(port, "POST", "/v1/accounts/" + id + "/disable", {}, kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "disabled"), "true");
  EXPECT_EQ(json_field(r.body, "disabled_ms"), std::to_string(kT0 + 1000));
  std::vector<Revocation> revocations = env_.take_revocations();
  ASSERT_EQ(revocations.size(), 1u);
  EXPECT_FALSE(revocations[0].device.has_value());  // every device
  // Disabling again changes nothing and pushes nothing.
  EXPECT_EQ(http_request(port, "POST", "/v1/accounts/" + id + "/disable", {}, kAdmin).status, 200);
  EXPECT_TRUE(env_.take_revocations().empty());

  r = session(credential);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json_field(r.body, "error"), "account_disabled");
  advance_ms(60'000);
  ASSERT_EQ(request_code(kPhone).status, 200);
  r = verify(kPhone, last_code());
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json_field(r.body, "error"), "account_disabled");
}

TEST_F(RegistrationApiTest, AdminDevicesAndRevoke) {
  HttpResponse first = register_phone(kPhone, "old");
  ASSERT_EQ(first.status, 200);
  advance_ms(60'000);
  HttpResponse second = register_phone(kPhone, "new");
  ASSERT_EQ(second.status, 200);
  (void)env_.take_revocations();
  const std::string id = json_field(first.body, "account_id");
  const uint16_t port = server_->port();

  HttpResponse r = http_request(port, "GET", "/v1/accounts/" + id + "/devices", {}, kRead);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(compact(r.body),
            R"({"account_id":")" + id +
                R"(","devices":[{"device_id":1,"name":"old","primary":false,"created_ms":)" +
                std::to_string(kT0) + R"(,"revoked_ms":)" + std::to_string(kT0 + 60'000) +
                R"(},{"device_id":2,"name":"new","primary":true,"created_ms":)" +
                std::to_string(kT0 + 60'000) + R"(,"revoked_ms":0}]})");

  EXPECT_EQ(http_request(port, "DELETE", "/v1/accounts/" + id + "/devices/2", {}, kRead).status,
            403);
  EXPECT_EQ(http_request(port, "DELETE", "/v1/accounts/" + id + "/devices/9", {}, kAdmin).status,
            404);
  EXPECT_EQ(http_request(port, "DELETE", "/v1/accounts/" + id + "/devices/x", {}, kAdmin).status,
            400);
  advance_ms(5);
  r = http_request(port, "DELETE", "/v1/accounts/" + id + "/devices/2", {}, kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_field(r.body, "revoked_ms"), std::to_string(kT0 + 60'005));
  std::vector<Revocation> revocations = env_.take_revocations();
  ASSERT_EQ(revocations.size(), 1u);
  EXPECT_EQ(revocations[0].device, std::optional<uint32_t>(2));
  EXPECT_EQ(revocations[0].issued_before_ms, kT0 + 60'006);
  EXPECT_EQ(session(json_field(second.body, "credential")).status, 401);
  r = http_request(port, "GET", "/v1/accounts/" + id, {}, kRead);
  EXPECT_EQ(json_field(r.body, "primary_device_id"), "0");
}

// Key rotation and persistence, without HTTP: MemoryTables drained by hand.
TEST(RegistrationApiKeys, RotationIsPersistedAndPublishedWhenDurable) {
  Env env;
  g_env = &env;
  std::deque<std::function<void()>> deferred;
  storage::MemoryTables tables(
      [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); });
  auto drain = [&] {
    while (!deferred.empty()) {
      auto fn = std::move(deferred.front());
      deferred.pop_front();
      fn();
    }
  };
  class NullGateway final : public registration::CodeGateway {
    absl::Status send_code(registration::PhoneNumber, registration::CodeMethod, std::string_view,
                           uint64_t) override {
      return absl::OkStatus();
    }
  } gateway;
  RegistrationApiOptions options = test_options();
  options.key_rotation_interval_ms = 3'600'000;
  auto api = RegistrationApi::create(options, tables, gateway);
  ASSERT_TRUE(api.ok());
  std::vector<uint32_t> published;
  (*api)->set_keys_hook(
      [&](const registration::KeyRing& ring) { published.push_back(ring.signing_key().key_id); });
  const registration::SessionKey first = (*api)->key_ring().signing_key();
  const registration::SessionKey staged = (*api)->key_ring().staged_key();

  ASSERT_TRUE((*api)->rotate_keys_if_due(kT0 + 3'599'999).ok());
  drain();
  EXPECT_TRUE(published.empty());
  EXPECT_EQ((*api)->key_ring().signing_key(), first);

  ASSERT_TRUE((*api)->rotate_keys_if_due(kT0 + 3'600'000).ok());
  // The staged key (already published) signs now; the hook waits for durability.
  EXPECT_EQ((*api)->key_ring().signing_key().key_id, staged.key_id);
  EXPECT_TRUE(published.empty());
  drain();
  ASSERT_EQ(published.size(), 1u);
  EXPECT_EQ(published[0], staged.key_id);
  EXPECT_EQ((*api)->stats().key_rotations, 1u);

  // A restart over the same tables comes back with the same ring and rotation time.
  auto restarted = RegistrationApi::create(options, tables, gateway);
  ASSERT_TRUE(restarted.ok());
  EXPECT_EQ((*restarted)->key_ring().signing_key(), (*api)->key_ring().signing_key());
  EXPECT_EQ((*restarted)->key_ring().staged_key(), (*api)->key_ring().staged_key());
  ASSERT_TRUE((*restarted)->rotate_keys_if_due(kT0 + 3'600'001).ok());
  EXPECT_EQ((*restarted)->stats().key_rotations, 0u);

  // A refused store write keeps the old ring in use.
  tables.fail_for_test(absl::FailedPreconditionError("disk gone"));
  EXPECT_FALSE((*api)->rotate_keys_if_due(kT0 + 7'200'000).ok());
  EXPECT_EQ((*api)->key_ring().signing_key().key_id, staged.key_id);
  drain();
  g_env = nullptr;
}

}  // namespace
}  // namespace herald::api

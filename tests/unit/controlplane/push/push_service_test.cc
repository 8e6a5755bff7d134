// PUT /v1/devices/push-token through a real HTTP server: a stored token answered only after
// the barrier, every refusal with its stable code and field (credential, disabled account,
// platform, token length and alphabet at their edges, unknown fields), store failures as 503,
// and the notifier's lookup skipping revoked devices.
#include "controlplane/push/push_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <string>

#include "controlplane/registration/credential.h"
#include "controlplane/registration/memory_store.h"
#include "controlplane/registration/phone_number.h"
#include "platform/assert/assert.h"
#include "tests/unit/controlplane/api/http_client.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::push {
namespace {

constexpr uint64_t kT0 = 1'700'000'000'000;

struct Env {
  std::atomic<bool> fail_apply{false};
  std::atomic<bool> fail_barrier{false};
  // Made by the test before the server starts.
  registration::MemoryStore devices;
  std::string active_credential, revoked_credential, disabled_credential;
  auth::AccountId active_account;
};
Env* g_env = nullptr;
class Node;
Node* g_node = nullptr;  // the server's handler, for the test's reads between requests

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

// Built on the test thread (LoopServer's member), used on the loop thread.
class Node final : public http::Handler {
 public:
  Node()
      : tables_([this](std::function<void()> fn) { deferred_.push_back(std::move(fn)); }),
        loop_(std::move(*uring::EventLoop::create())),
        router_(nullptr) {
    // No webhook: the notifier only counts (its batching is push_notifier_test's).
    auto service = PushService::create(*loop_, tables_, g_env->devices, PushNotifierOptions{},
                                       [] { return kT0; });
    HERALD_CHECK(service.ok(), "push service");
    service_ = std::move(*service);
    service_->add_routes(router_);
    g_node = this;
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
  PushService& service() { return *service_; }

 private:
  std::deque<std::function<void()>> deferred_;
  FlakyTables tables_;
  std::unique_ptr<uring::EventLoop> loop_;
  api::Router router_;
  std::unique_ptr<PushService> service_;
};
using NodeServer = http::testing::LoopServer<Node>;

// One account with an active and a revoked device, and a disabled account.
void make_devices(Env& env) {
  registration::IssuedCredential active = registration::issue_credential();
  registration::IssuedCredential revoked = registration::issue_credential();
  registration::IssuedCredential disabled = registration::issue_credential();
  registration::Account a;
  a.id = {0x1111111111114111ull, 0x8111111111111111ull};
  a.phone = registration::parse_phone_number("+15550001111").number;
  a.primary_device_id = 2;
  a.next_device_id = 3;
  a.created_ms = kT0;
  registration::Device old_device{a.id, 1, "old", revoked.hash, kT0, 0};
  registration::Device device{a.id, 2, "phone", active.hash, kT0, 0};
  HERALD_CHECK(env.devices.commit_registration({a, true, old_device, {}}).ok(), "1");
  HERALD_CHECK(env.devices.commit_registration({a, false, device, {1u}}).ok(), "2");
  registration::Account b;
  b.id = {0x2222222222224222ull, 0x8222222222222222ull};
  b.phone = registration::parse_phone_number("+15550002222").number;
  b.primary_device_id = 1;
  b.next_device_id = 2;
  b.disabled_ms = kT0;
  HERALD_CHECK(env.devices
                   .commit_registration(
                       {b, true, registration::Device{b.id, 1, "x", disabled.hash, kT0, 0}, {}})
                   .ok(),
               "3");
  env.active_credential = active.text;
  env.revoked_credential = revoked.text;
  env.disabled_credential = disabled.text;
  env.active_account = a.id;
}

class PushServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_env = &env_;
    make_devices(env_);
    server_ = std::make_unique<NodeServer>(http::ServerLimits{});
    ASSERT_NE(server_->port(), 0);
  }
  void TearDown() override {
    server_.reset();
    g_env = nullptr;
  }
  api::testing::HttpResponse put(const std::string& body) {
    return api::testing::http_request(server_->port(), "PUT", "/v1/devices/push-token", body);
  }
  static std::string body(std::string_view credential, std::string_view platform,
                          std::string_view token) {
    return R"({"credential":")" + std::string(credential) + R"(","platform":")" +
           std::string(platform) + R"(","token":")" + std::string(token) + R"("})";
  }
  void expect_error(const api::testing::HttpResponse& r, int status, std::string_view error,
                    std::string_view field = {}) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_NE(r.body.find(R"("error":")" + std::string(error) + "\""), std::string::npos) << r.body;
    if (!field.empty()) {
      EXPECT_NE(r.body.find(R"("field":")" + std::string(field) + "\""), std::string::npos)
          << r.body;
    }
  }
  // The server's loop thread is idle between requests (each answered before the next).
  PushService& service() { return g_node->service(); }

  Env env_;
  std::unique_ptr<NodeServer> server_;
};

TEST_F(PushServiceTest, StoresTheTokenOfTheCredentialsDevice) {
  const std::string token(64, 'a');
  api::testing::HttpResponse r = put(body(env_.active_credential, "apns", token));
  ASSERT_EQ(r.status, 200) << r.body;
  std::string compact = r.body;  // the generator puts a space after each ':'
  std::erase(compact, ' ');
  EXPECT_NE(compact.find(R"("account_id":"11111111-1111-4111-8111-111111111111")"),
            std::string::npos)
      << r.body;
  EXPECT_NE(compact.find(R"("device_id":2)"), std::string::npos) << r.body;
  EXPECT_NE(compact.find(R"("platform":"apns")"), std::string::npos) << r.body;
  std::optional<PushToken> stored = service().tokens().find(env_.active_account, 2);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->token, token);
  EXPECT_EQ(stored->platform, PushPlatform::kApns);
  EXPECT_EQ(stored->updated_ms, kT0);
  // A new one replaces it; the notifier's lookup finds it for the active device only.
  ASSERT_EQ(put(body(env_.active_credential, "webhook", "https://hook.example/d2")).status, 200);
  EXPECT_EQ(service().token_of_active_device(env_.active_account, 2)->token,
            "https://hook.example/d2");
  EXPECT_EQ(service().api_stats().tokens_stored, 2u);
}

TEST_F(PushServiceTest, TokenLengthAndAlphabetAtTheirEdges) {
  EXPECT_EQ(put(body(env_.active_credential, "fcm", std::string(8, 'x'))).status, 200);
  EXPECT_EQ(put(body(env_.active_credential, "fcm", std::string(512, 'x'))).status, 200);
  expect_error(put(body(env_.active_credential, "fcm", std::string(7, 'x'))), 400,
               "invalid_push_token", "token");
  expect_error(put(body(env_.active_credential, "fcm", std::string(513, 'x'))), 400,
               "invalid_push_token", "token");
  expect_error(put(body(env_.active_credential, "fcm", "abcd efgh")), 400, "invalid_push_token",
               "token");
  expect_error(put(body(env_.active_credential, "fcm", R"(abcd\"efgh)")), 400, "invalid_push_token",
               "token");
  expect_error(put(body(env_.active_credential, "fcm", R"(abcd\u0000efgh)")), 400,
               "invalid_push_token", "token");
  expect_error(put(R"({"credential":")" + env_.active_credential + R"(","platform":"fcm"})"), 400,
               "invalid_push_token", "token");
  EXPECT_EQ(service().api_stats().invalid_token, 6u);
  EXPECT_EQ(service().tokens().find(env_.active_account, 2)->token, std::string(512, 'x'));
}

TEST_F(PushServiceTest, RefusalsHaveStableCodes) {
  const std::string token(16, 'b');
  expect_error(put(body(env_.active_credential, "APNS", token)), 400, "invalid_platform",
               "platform");
  expect_error(put(body(env_.active_credential, "", token)), 400, "invalid_platform", "platform");
  expect_error(put(body(std::string(43, 'A'), "apns", token)), 401, "invalid_credential");
  expect_error(put(body("not a credential", "apns", token)), 401, "invalid_credential");
  expect_error(put(body(env_.revoked_credential, "apns", token)), 401, "invalid_credential");
  expect_error(put(body(env_.disabled_credential, "apns", token)), 403, "account_disabled");
  expect_error(put(R"({"credential":"x","platform":"apns","token":"abcdefgh","extra":1})"), 400,
               "bad_request");
  expect_error(put("{"), 400, "bad_request");
  expect_error(put(""), 400, "bad_request");
  // A bad credential is refused before the token is looked at (nothing said to a stranger).
  expect_error(put(body(std::string(43, 'A'), "apns", "bad")), 401, "invalid_credential");
  EXPECT_EQ(service().tokens().size(), 0u);
  EXPECT_EQ(service().api_stats().invalid_credential, 5u);
}

TEST_F(PushServiceTest, NothingIsAcknowledgedThatIsNotDurable) {
  env_.fail_apply = true;
  expect_error(put(body(env_.active_credential, "apns", std::string(16, 'c'))), 503,
               "store_unavailable");
  EXPECT_EQ(service().tokens().size(), 0u);
  env_.fail_apply = false;
  env_.fail_barrier = true;
  expect_error(put(body(env_.active_credential, "apns", std::string(16, 'c'))), 503,
               "store_unavailable");
  EXPECT_EQ(service().api_stats().store_unavailable, 2u);
}

TEST_F(PushServiceTest, RevokedDevicesAreNeverWoken) {
  // The revoked device's token row (left from before its revocation) is not used.
  ASSERT_TRUE(
      service().tokens().put(env_.active_account, 1, {PushPlatform::kFcm, "old-token-1", 0}).ok());
  EXPECT_FALSE(service().token_of_active_device(env_.active_account, 1).has_value());
  EXPECT_FALSE(service().token_of_active_device(env_.active_account, 9).has_value());
}

}  // namespace
}  // namespace herald::push

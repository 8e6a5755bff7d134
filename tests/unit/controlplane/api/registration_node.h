// Test harness for the provisioning and device-linking APIs: the registration, accounts,
// provisioning and devices APIs on one router over MemoryTables behind a fault-injecting
// wrapper, served by a real http::Server on a loop thread, time driven by the test. Revocations
// and device-list changes (the IPC pushes' inputs) are recorded for the test thread.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/api/accounts_api.h"
#include "controlplane/api/devices_api.h"
#include "controlplane/api/provisioning_api.h"
#include "controlplane/api/registration_api.h"
#include "controlplane/api/router.h"
#include "controlplane/registration/code_gateway.h"
#include "controlplane/storage/tables.h"
#include "platform/assert/assert.h"
#include "tests/unit/controlplane/api/http_client.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::api::testing {

inline constexpr uint64_t kT0 = 1'700'000'000'000;
inline constexpr std::string_view kAdminKey = "Authorization: Bearer admin-key\r\n";
inline constexpr std::string_view kReadKey = "Authorization: Bearer read-key\r\n";

struct PushedRevocation {
  registration::AccountId account;
  std::optional<uint32_t> device;
  uint64_t issued_before_ms = 0;
};
struct PushedDeviceList {
  registration::AccountId account;
  std::vector<uint32_t> devices;
  uint64_t version = 0;
};

// Set by the test before the server starts; read and changed while it runs.
struct RegistrationEnv {
  std::string sms_log;
  registration::DeviceLinkerOptions linker;
  std::atomic<uint64_t> now_ms{kT0};
  std::atomic<bool> fail_apply{false};
  std::atomic<bool> fail_barrier{false};
  std::mutex mu;
  std::vector<PushedRevocation> revocations;
  std::vector<PushedDeviceList> device_lists;
  std::vector<PushedRevocation> take_revocations() {
    std::lock_guard<std::mutex> lock(mu);
    return std::exchange(revocations, {});
  }
  std::vector<PushedDeviceList> take_device_lists() {
    std::lock_guard<std::mutex> lock(mu);
    return std::exchange(device_lists, {});
  }
};
inline RegistrationEnv* g_registration_env = nullptr;

class FailingTables final : public storage::Tables {
 public:
  explicit FailingTables(storage::MemoryTables::Defer defer) : inner_(std::move(defer)) {}
  absl::Status apply(std::span<const storage::Mutation> batch) override {
    if (g_registration_env->fail_apply.load()) {
      return absl::ResourceExhaustedError("injected: apply refused");
    }
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
    const bool fail = g_registration_env->fail_barrier.load();
    inner_.barrier([done = std::move(done), fail](const absl::Status& s) {
      done(fail ? absl::DataLossError("injected: log write failed") : s);
    });
  }
  const absl::Status& status() const override { return inner_.status(); }

 private:
  storage::MemoryTables inner_;
};

class TwoKeys final : public Authenticator {
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

// Built on the test thread (LoopServer's member), used on the loop thread.
class RegistrationNode final : public http::Handler {
 public:
  RegistrationNode()
      : tables_([this](std::function<void()> fn) { deferred_.push_back(std::move(fn)); }),
        gateway_(open_gateway()),
        registration_(create_registration(tables_, *gateway_)),
        accounts_(tables_, registration_->store(), clock()),
        provisioning_(tables_, *registration_, clock()),
        devices_(g_registration_env->linker, tables_, registration_->store(), clock()),
        router_(&keys_) {
    auto peer = [](const http::Request& request, const http::Responder&) {
      return registration::SourceAddress::parse(request.value("X-Test-Peer"));
    };
    registration_->set_peer_address_fn(peer);
    devices_.set_peer_address_fn(peer);
    auto record = [](const registration::AccountId& account, std::optional<uint32_t> device,
                     uint64_t issued_before_ms) {
      std::lock_guard<std::mutex> lock(g_registration_env->mu);
      g_registration_env->revocations.push_back({account, device, issued_before_ms});
    };
    registration_->set_revocation_hook(record);
    accounts_.set_revocation_hook(record);
    provisioning_.set_revocation_hook(record);
    registration_->store().set_devices_changed_hook([this](const registration::AccountId& id) {
      const auto list = registration_->store().device_list(id);
      HERALD_CHECK(list.has_value(), "device list of a changed account");
      std::lock_guard<std::mutex> lock(g_registration_env->mu);
      g_registration_env->device_lists.push_back({id, list->devices, list->version});
    });
    registration_->add_routes(router_);
    accounts_.add_routes(router_);
    provisioning_.add_routes(router_);
    devices_.add_routes(router_);
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
  static UnixClock clock() {
    return [] { return g_registration_env->now_ms.load(); };
  }
  static std::unique_ptr<registration::LogGateway> open_gateway() {
    auto gateway = registration::LogGateway::open(g_registration_env->sms_log);
    HERALD_CHECK(gateway.ok(), "sms.log");
    return std::move(*gateway);
  }
  static std::unique_ptr<RegistrationApi> create_registration(storage::Tables& tables,
                                                              registration::CodeGateway& gateway) {
    RegistrationApiOptions o;
    o.registrar.phone_limits.capacity = 1024;
    o.registrar.address_limits.capacity = 1024;
    o.clock = clock();
    auto api = RegistrationApi::create(o, tables, gateway);
    if (!api.ok()) ADD_FAILURE() << api.status().ToString();
    HERALD_CHECK(api.ok(), "registration api");
    return std::move(*api);
  }

  std::deque<std::function<void()>> deferred_;
  FailingTables tables_;
  std::unique_ptr<registration::LogGateway> gateway_;
  std::unique_ptr<RegistrationApi> registration_;
  AccountsApi accounts_;
  ProvisioningApi provisioning_;
  DevicesApi devices_;
  TwoKeys keys_;
  Router router_;
};

// The value of a JSON string or number field (the first with that name), or empty.
inline std::string json_value(const std::string& json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  size_t at = json.find(key);
  if (at == std::string::npos) return {};
  at += key.size();
  while (at < json.size() && json[at] == ' ') ++at;
  if (json[at] == '"') {
    const size_t end = json.find('"', at + 1);
    return json.substr(at + 1, end - at - 1);
  }
  const size_t end = json.find_first_of(",}]", at);
  return json.substr(at, end - at);
}

// Every value of a string or number field, in order.
inline std::vector<std::string> json_values(const std::string& json, std::string_view name) {
  std::vector<std::string> out;
  const std::string key = "\"" + std::string(name) + "\":";
  for (size_t at = json.find(key); at != std::string::npos; at = json.find(key, at + 1)) {
    out.push_back(json_value(json.substr(at), name));
  }
  return out;
}

// Starts the node in a temporary directory; the fixture's tests talk HTTP only.
class RegistrationNodeTest : public ::testing::Test {
 protected:
  using NodeServer = http::testing::LoopServer<RegistrationNode>;

  // Called by SetUp: a test fixture overrides it to change the linker's options.
  virtual void configure(registration::DeviceLinkerOptions&) {}

  void SetUp() override {
    char dir[] = "/tmp/herald_registration_node_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    env_.sms_log = dir_ + "/sms.log";
    configure(env_.linker);
    g_registration_env = &env_;
    server_ = std::make_unique<NodeServer>(http::ServerLimits{});
    ASSERT_NE(server_->port(), 0);
  }
  void TearDown() override {
    server_.reset();
    ::unlink(env_.sms_log.c_str());
    ::rmdir(dir_.c_str());
    g_registration_env = nullptr;
  }

  HttpResponse post(std::string_view path, std::string_view body, std::string_view headers = {},
                    std::string_view peer = "192.0.2.1") {
    return http_request(server_->port(), "POST", path, body,
                        std::string(headers) + "X-Test-Peer: " + std::string(peer) + "\r\n");
  }
  HttpResponse admin(std::string_view method, std::string_view path, std::string_view body = {}) {
    return http_request(server_->port(), method, path, body, kAdminKey);
  }
  HttpResponse session(std::string_view credential) {
    return post("/v1/sessions", R"({"credential":")" + std::string(credential) + R"("})");
  }
  // POST /v1/accounts/provision of `phones` as admin.
  HttpResponse provision(const std::vector<std::string>& phones,
                         std::string_view device_name = "loadgen",
                         std::string_view headers = kAdminKey) {
    std::string body = R"({"phones":[)";
    for (size_t i = 0; i < phones.size(); ++i) {
      if (i != 0) body += ',';
      body += '"' + phones[i] + '"';
    }
    body += R"(],"device_name":")" + std::string(device_name) + R"("})";
    return post("/v1/accounts/provision", body, headers);
  }
  void advance_ms(uint64_t ms) { env_.now_ms.fetch_add(ms); }

  RegistrationEnv env_;
  std::string dir_;
  std::unique_ptr<NodeServer> server_;
};

}  // namespace herald::api::testing

// Device linking through real HTTP: a link code from the primary device, a linked device with
// its own credential and sessions, the device list pushed once durable, every refusal with its
// stable code (not primary, unknown / expired / used codes, the linked-device limit at its
// edge, the pending-code table full, rate limits), revocation by the admin API, store failures.
#include "controlplane/api/devices_api.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "controlplane/registration/auth_names.h"
#include "tests/unit/controlplane/api/registration_node.h"

namespace herald::api::testing {
namespace {

constexpr uint64_t kTtlMs = 60'000;

class DevicesApiTest : public RegistrationNodeTest {
 protected:
  void configure(registration::DeviceLinkerOptions& o) override {
    o.link_code_ttl_ms = kTtlMs;
    o.max_linked_devices = 2;
    o.max_pending_link_codes = 3;
    o.address_limits.capacity = 1024;
  }

  struct Provisioned {
    std::string account_id;
    std::string credential;
  };
  Provisioned provision_one(std::string_view phone) {
    HttpResponse r = provision({std::string(phone)});
    EXPECT_EQ(r.status, 200) << r.body;
    (void)env_.take_device_lists();
    return {json_value(r.body, "account_id"), json_value(r.body, "credential")};
  }
  HttpResponse link_code(std::string_view credential, std::string_view peer = "192.0.2.1") {
    return post("/v1/devices/link-code", R"({"credential":")" + std::string(credential) + R"("})",
                {}, peer);
  }
  HttpResponse link(std::string_view code, std::string_view name = "laptop",
                    std::string_view peer = "192.0.2.1") {
    return post("/v1/devices/link",
                R"({"link_code":")" + std::string(code) + R"(","device_name":")" +
                    std::string(name) + R"("})",
                {}, peer);
  }
};

TEST_F(DevicesApiTest, LinkFlow) {
  const Provisioned primary = provision_one("+15551234567");
  HttpResponse r = link_code(primary.credential);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string code = json_value(r.body, "link_code");
  EXPECT_EQ(code.size(), registration::kLinkCodeTextBytes);
  EXPECT_EQ(json_value(r.body, "expires_in"), "60");

  r = link(code, "laptop");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_value(r.body, "account_id"), primary.account_id);
  EXPECT_EQ(json_value(r.body, "device_id"), "2");
  const std::string credential = json_value(r.body, "credential");

  // The linked device logs in as any device does.
  HttpResponse s = session(credential);
  ASSERT_EQ(s.status, 200) << s.body;
  std::optional<registration::TokenBytes> token =
      registration::parse_token_text(json_value(s.body, "token"));
  ASSERT_TRUE(token);
  EXPECT_EQ(registration::read_claims(*token).device_id, 2u);
  EXPECT_EQ(session(primary.credential).status, 200);  // the primary is untouched

  // The new list went to the dataplane once durable.
  std::vector<PushedDeviceList> lists = env_.take_device_lists();
  ASSERT_EQ(lists.size(), 1u);
  EXPECT_EQ(registration::format_account_id(lists[0].account), primary.account_id);
  EXPECT_EQ(lists[0].devices, (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(env_.take_revocations().empty());

  HttpResponse devices = admin("GET", "/v1/accounts/" + primary.account_id + "/devices");
  EXPECT_EQ(json_values(devices.body, "primary"), (std::vector<std::string>{"true", "false"}));
  EXPECT_EQ(json_values(devices.body, "name"), (std::vector<std::string>{"loadgen", "laptop"}));

  // One time only.
  r = link(code, "tablet");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json_value(r.body, "error"), "link_code_used");
  // A linked device cannot hand out link codes.
  r = link_code(credential);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json_value(r.body, "error"), "not_primary_device");
}

TEST_F(DevicesApiTest, CodeErrors) {
  const Provisioned primary = provision_one("+15551234567");
  HttpResponse r = link_code("not-a-credential");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json_value(r.body, "error"), "invalid_credential");
  r = post("/v1/devices/link-code", R"({"credential":1})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json_value(r.body, "error"), "bad_request");

  r = link("AAAAAAAAAAAAAAAAAAAAAA");  // well formed, never issued
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json_value(r.body, "error"), "unknown_link_code");
  r = link("short");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json_value(r.body, "error"), "unknown_link_code");

  const std::string code = json_value(link_code(primary.credential).body, "link_code");
  r = link(code, "");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json_value(r.body, "error"), "invalid_device_name");
  EXPECT_EQ(json_value(r.body, "field"), "device_name");
  // Valid until the last millisecond of its TTL, expired at it.
  advance_ms(kTtlMs);
  r = link(code);
  EXPECT_EQ(r.status, 410);
  EXPECT_EQ(json_value(r.body, "error"), "link_code_expired");
  EXPECT_TRUE(env_.take_device_lists().empty());

  // A newer code replaces the older one.
  const std::string first = json_value(link_code(primary.credential).body, "link_code");
  const std::string second = json_value(link_code(primary.credential).body, "link_code");
  EXPECT_EQ(link(first).status, 404);
  advance_ms(kTtlMs - 1);
  EXPECT_EQ(link(second).status, 200);
}

TEST_F(DevicesApiTest, MaxLinkedDevicesAndRevoke) {
  const Provisioned primary = provision_one("+15551234567");
  std::vector<std::string> credentials;
  for (int i = 0; i < 2; ++i) {
    HttpResponse r = link(json_value(link_code(primary.credential).body, "link_code"));
    ASSERT_EQ(r.status, 200) << r.body;
    credentials.push_back(json_value(r.body, "credential"));
  }
  (void)env_.take_device_lists();
  advance_ms(60'000);  // the account's link-code burst is 3
  const std::string code = json_value(link_code(primary.credential).body, "link_code");
  HttpResponse r = link(code);
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(json_value(r.body, "error"), "too_many_devices");

  // The admin revokes linked device 2: the revocation and the new list go to the dataplane.
  r = admin("DELETE", "/v1/accounts/" + primary.account_id + "/devices/2");
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<PushedRevocation> revocations = env_.take_revocations();
  ASSERT_EQ(revocations.size(), 1u);
  EXPECT_EQ(revocations[0].device, std::optional<uint32_t>(2));
  std::vector<PushedDeviceList> lists = env_.take_device_lists();
  ASSERT_EQ(lists.size(), 1u);
  EXPECT_EQ(lists[0].devices, (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(session(credentials[0]).status, 401);
  // The refused code was not spent: it links now that there is room.
  r = link(code);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_value(r.body, "device_id"), "4");
  EXPECT_EQ(env_.take_device_lists().back().devices, (std::vector<uint32_t>{1, 3, 4}));
}

// A number that changes hands: the new owner's registration revokes the old primary AND the
// devices linked to it, pushes a revocation for each, and their credentials stop working.
TEST_F(DevicesApiTest, ReRegistrationRevokesLinkedDevicesToo) {
  const Provisioned primary = provision_one("+15551234567");
  HttpResponse r = link(json_value(link_code(primary.credential).body, "link_code"), "laptop");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string linked_credential = json_value(r.body, "credential");
  ASSERT_EQ(session(linked_credential).status, 200);
  (void)env_.take_revocations();

  const Provisioned replaced = provision_one("+15551234567");
  EXPECT_EQ(replaced.account_id, primary.account_id);
  std::vector<uint32_t> revoked;
  for (const PushedRevocation& p : env_.take_revocations()) {
    ASSERT_TRUE(p.device.has_value());
    revoked.push_back(*p.device);
  }
  EXPECT_EQ(revoked, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(session(primary.credential).status, 401);
  EXPECT_EQ(session(linked_credential).status, 401);
  EXPECT_EQ(session(replaced.credential).status, 200);
}

TEST_F(DevicesApiTest, ReRegistrationKillsPendingCodes) {
  const Provisioned primary = provision_one("+15551234567");
  const std::string code = json_value(link_code(primary.credential).body, "link_code");
  ASSERT_FALSE(code.empty());
  const Provisioned replaced = provision_one("+15551234567");
  EXPECT_EQ(link(code).status, 404);
  EXPECT_EQ(link_code(primary.credential).status, 401);
  // A disabled account links nothing.
  const std::string fresh = json_value(link_code(replaced.credential).body, "link_code");
  ASSERT_EQ(admin("POST", "/v1/accounts/" + replaced.account_id + "/disable").status, 200);
  HttpResponse r = link(fresh);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json_value(r.body, "error"), "account_disabled");
  r = link_code(replaced.credential);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json_value(r.body, "error"), "account_disabled");
}

TEST_F(DevicesApiTest, RateLimitsAndFullTable) {
  const Provisioned a = provision_one("+15550000001");
  for (int i = 0; i < 3; ++i) ASSERT_EQ(link_code(a.credential).status, 200);
  HttpResponse r = link_code(a.credential);
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(json_value(r.body, "error"), "rate_limited");
  EXPECT_EQ(r.header("Retry-After"), json_value(r.body, "retry_after"));
  EXPECT_FALSE(r.header("Retry-After").empty());

  // Three pending codes fill the table (a's counts once: a new code replaces the old).
  const Provisioned b = provision_one("+15550000002");
  const Provisioned c = provision_one("+15550000003");
  const Provisioned d = provision_one("+15550000004");
  ASSERT_EQ(link_code(b.credential).status, 200);
  ASSERT_EQ(link_code(c.credential).status, 200);
  r = link_code(d.credential);
  ASSERT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(json_value(r.body, "error"), "link_codes_full");
  // Expired codes make room.
  advance_ms(kTtlMs);
  EXPECT_EQ(link_code(d.credential).status, 200);
}

TEST_F(DevicesApiTest, AddressLimitOnLinks) {
  // Rebuilt with a small per-address limit: 2 at once, then one a minute.
  server_.reset();
  env_.linker.address_limits = registration::RateLimiterOptions{};
  env_.linker.address_limits.rules[0] = {60'000, 2};
  env_.linker.address_limits.rule_count = 1;
  server_ = std::make_unique<NodeServer>(http::ServerLimits{});
  EXPECT_EQ(link("AAAAAAAAAAAAAAAAAAAAAA").status, 404);
  EXPECT_EQ(link("AAAAAAAAAAAAAAAAAAAAAA").status, 404);
  HttpResponse r = link("AAAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(json_value(r.body, "retry_after"), "60");
  EXPECT_EQ(link("AAAAAAAAAAAAAAAAAAAAAA", "laptop", "198.51.100.9").status, 404);
}

TEST_F(DevicesApiTest, StoreFailureSpendsNothing) {
  const Provisioned primary = provision_one("+15551234567");
  const std::string code = json_value(link_code(primary.credential).body, "link_code");
  env_.fail_apply = true;
  HttpResponse r = link(code);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_value(r.body, "error"), "store_failed");
  env_.fail_apply = false;
  env_.fail_barrier = true;
  r = link(code);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_value(r.body, "error"), "store_unavailable");
  EXPECT_TRUE(env_.take_device_lists().empty());  // never pushed: not durable
  env_.fail_barrier = false;
  // The barrier failed after the commit: the code is spent (the device may exist). The lost
  // answer leaves the device unusable without its credential; the admin revokes it.
  EXPECT_EQ(link(code).status, 409);
}

}  // namespace
}  // namespace herald::api::testing

// POST /v1/accounts/provision through real HTTP: accounts with a device and a session token
// each, re-provisioning as a re-registration (old primary revoked and pushed), the phone limit
// at its edge, refusals that change nothing (naming the index), scopes, and store failures.
#include "controlplane/api/provisioning_api.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/credential.h"
#include "tests/unit/controlplane/api/registration_node.h"

namespace herald::api::testing {
namespace {

std::vector<std::string> phones(size_t first, size_t count) {
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) out.push_back("+1555" + std::to_string(1'000'000 + first + i));
  return out;
}

class ProvisioningApiTest : public RegistrationNodeTest {};

TEST_F(ProvisioningApiTest, EachPhoneGetsAnAccountDeviceAndToken) {
  const std::vector<std::string> numbers = phones(0, 3);
  HttpResponse r = provision(numbers);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_values(r.body, "phone"), numbers);
  const std::vector<std::string> ids = json_values(r.body, "account_id");
  const std::vector<std::string> credentials = json_values(r.body, "credential");
  const std::vector<std::string> tokens = json_values(r.body, "token");
  const std::vector<std::string> expiries = json_values(r.body, "token_expires_at_ms");
  ASSERT_EQ(ids.size(), 3u);
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(json_values(r.body, "device_id"), (std::vector<std::string>{"1", "1", "1"}));
  for (size_t i = 0; i < 3; ++i) {
    // The token is POST /v1/sessions' token: it parses and names this account's device 1.
    std::optional<registration::TokenBytes> token = registration::parse_token_text(tokens[i]);
    ASSERT_TRUE(token) << tokens[i];
    const registration::TokenClaims claims = registration::read_claims(*token);
    EXPECT_EQ(registration::format_account_id(claims.account), ids[i]);
    EXPECT_EQ(claims.device_id, 1u);
    EXPECT_EQ(claims.issued_at_ms, kT0);
    EXPECT_EQ(expiries[i], std::to_string(claims.expires_at_ms));
    // The credential is a real one: the session endpoint takes it.
    HttpResponse s = session(credentials[i]);
    ASSERT_EQ(s.status, 200) << s.body;
    EXPECT_EQ(json_value(s.body, "expires_at_ms"), expiries[i]);
    // The account is there for the admin API.
    HttpResponse a = admin("GET", "/v1/accounts/" + ids[i]);
    ASSERT_EQ(a.status, 200) << a.body;
    EXPECT_EQ(json_value(a.body, "phone"), numbers[i]);
    EXPECT_EQ(json_value(a.body, "primary_device_id"), "1");
  }
  EXPECT_NE(ids[0], ids[1]);
  // Every new device list went to the dataplane (once durable), nothing was revoked.
  std::vector<PushedDeviceList> lists = env_.take_device_lists();
  ASSERT_EQ(lists.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(registration::format_account_id(lists[i].account), ids[i]);
    EXPECT_EQ(lists[i].devices, std::vector<uint32_t>{1});
  }
  EXPECT_TRUE(env_.take_revocations().empty());
}

TEST_F(ProvisioningApiTest, AnExistingPhoneIsReRegistered) {
  HttpResponse first = provision({"+15551234567"});
  ASSERT_EQ(first.status, 200) << first.body;
  (void)env_.take_device_lists();
  advance_ms(1000);
  HttpResponse second = provision({"+15551234567", "+15557654321"}, "loadgen-2");
  ASSERT_EQ(second.status, 200) << second.body;
  const std::string id = json_value(first.body, "account_id");
  EXPECT_EQ(json_values(second.body, "account_id")[0], id);  // the same account
  EXPECT_EQ(json_values(second.body, "device_id"), (std::vector<std::string>{"2", "1"}));
  // The old primary is revoked at the dataplane and its credential is dead.
  std::vector<PushedRevocation> revocations = env_.take_revocations();
  ASSERT_EQ(revocations.size(), 1u);
  EXPECT_EQ(registration::format_account_id(revocations[0].account), id);
  EXPECT_EQ(revocations[0].device, std::optional<uint32_t>(1));
  EXPECT_EQ(revocations[0].issued_before_ms, kT0 + 1001);
  EXPECT_EQ(session(json_value(first.body, "credential")).status, 401);
  EXPECT_EQ(session(json_values(second.body, "credential")[0]).status, 200);
  std::vector<PushedDeviceList> lists = env_.take_device_lists();
  ASSERT_EQ(lists.size(), 2u);
  EXPECT_EQ(lists[0].devices, std::vector<uint32_t>{2});
  HttpResponse devices = admin("GET", "/v1/accounts/" + id + "/devices");
  EXPECT_EQ(json_values(devices.body, "name"), (std::vector<std::string>{"loadgen", "loadgen-2"}));
}

TEST_F(ProvisioningApiTest, PhoneLimitAtItsEdge) {
  HttpResponse r = provision(phones(0, kMaxProvisionPhones));
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 200);
  EXPECT_EQ(json_values(r.body, "token").size(), kMaxProvisionPhones);
  EXPECT_EQ(env_.take_device_lists().size(), kMaxProvisionPhones);

  r = provision(phones(5000, kMaxProvisionPhones + 1));
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(json_value(r.body, "error"), "too_many_phones");
  EXPECT_EQ(json_value(r.body, "field"), "phones");
  r = provision({});
  EXPECT_EQ(json_value(r.body, "error"), "too_many_phones");
  EXPECT_EQ(r.status, 400);
  // Nothing of the refused request was created.
  EXPECT_EQ(admin("GET", "/v1/accounts?phone=%2B15551005000").status, 404);
  EXPECT_TRUE(env_.take_device_lists().empty());
}

TEST_F(ProvisioningApiTest, RefusalsNameTheIndexAndChangeNothing) {
  HttpResponse r = provision({"+15550000001", "+15550000002", "12"});
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(json_value(r.body, "error"), "invalid_phone");
  EXPECT_EQ(json_value(r.body, "field"), "phones[2]");
  EXPECT_EQ(admin("GET", "/v1/accounts?phone=%2B15550000001").status, 404);

  r = provision({"+15550000001", "+1 555 000 0001"});
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(json_value(r.body, "error"), "duplicate_phone");
  EXPECT_EQ(json_value(r.body, "field"), "phones[1]");

  r = provision({"+15550000001"}, "");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json_value(r.body, "error"), "invalid_device_name");

  r = post("/v1/accounts/provision", R"({"phones":"+15550000001"})", kAdminKey);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json_value(r.body, "error"), "bad_request");
  r = post("/v1/accounts/provision", R"({"phones":["+15550000001"],"extra":1})", kAdminKey);
  EXPECT_EQ(r.status, 400);

  // Scopes: read keys and no key are refused.
  EXPECT_EQ(provision({"+15550000001"}, "x", kReadKey).status, 403);
  EXPECT_EQ(provision({"+15550000001"}, "x", "").status, 401);

  // A disabled account refuses the whole request.
  r = provision({"+15550000003"});
  ASSERT_EQ(r.status, 200);
  const std::string id = json_value(r.body, "account_id");
  ASSERT_EQ(admin("POST", "/v1/accounts/" + id + "/disable").status, 200);
  r = provision({"+15550000004", "+15550000003"});
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(json_value(r.body, "error"), "account_disabled");
  EXPECT_EQ(json_value(r.body, "field"), "phones[1]");
  EXPECT_EQ(admin("GET", "/v1/accounts?phone=%2B15550000004").status, 404);
  EXPECT_TRUE(env_.take_device_lists().size() == 1);  // only +15550000003's provisioning
}

TEST_F(ProvisioningApiTest, StoreFailuresAcknowledgeNothing) {
  env_.fail_barrier = true;
  HttpResponse r = provision({"+15550000001"});
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_value(r.body, "error"), "store_unavailable");
  EXPECT_TRUE(env_.take_device_lists().empty());  // never pushed: not durable
  env_.fail_barrier = false;
  env_.fail_apply = true;
  r = provision({"+15550000002"});
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_value(r.body, "error"), "store_unavailable");
  env_.fail_apply = false;
  // A retry of the whole request succeeds.
  r = provision({"+15550000001", "+15550000002"});
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace herald::api::testing

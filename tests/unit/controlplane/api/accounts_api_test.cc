// GET /v1/accounts as a paged listing, through a real HTTP server over MemoryTables seeded with
// accounts: page edges (empty table, exactly the limit, one more, cursor past the end, the
// largest page), refused limits and cursors, corrupt records, and the phone lookup beside it.
#include "controlplane/api/accounts_api.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "controlplane/api/router.h"
#include "controlplane/registration/catalog_store.h"
#include "controlplane/storage/tables.h"
#include "platform/assert/assert.h"
#include "tests/unit/controlplane/api/http_client.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::api {
namespace {

using registration::AccountId;
using testing::http_request;
using testing::HttpResponse;

constexpr std::string_view kRead = "Authorization: Bearer read-key\r\n";

// What the node is seeded with, set by the test before the server starts.
struct Seed {
  size_t accounts = 0;
  std::vector<size_t> corrupt;  // indexes whose record is garbage
};
Seed* g_seed = nullptr;

// Account i: ids ascend with i, so the table's order is the order of i.
AccountId account_id(size_t i) {
  return AccountId{(uint64_t{i} << 32) | 0x4000, 0x8000000000000000ull | i};
}
std::string id_text(size_t i) {
  return registration::format_account_id(account_id(i));
}

std::string account_key(const AccountId& id) {
  std::string key;
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(id.hi >> shift));
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(id.lo >> shift));
  return key;
}

class ReadKey final : public Authenticator {
 public:
  AuthOutcome authenticate(const http::Request& request, Scope needed) override {
    if (request.value("Authorization") != "Bearer read-key") return AuthOutcome::kUnauthenticated;
    return needed == Scope::kRead ? AuthOutcome::kAllowed : AuthOutcome::kForbidden;
  }
};

// Lives on the loop thread; barrier callbacks run right after the route returns. GET /test/fail
// makes the store fail.
class Node final : public http::Handler {
 public:
  Node() {
    for (size_t i = 1; i <= g_seed->accounts; ++i) {
      registration::Account a;
      a.id = account_id(i);
      a.phone = registration::PhoneNumber::from_value(15551230000 + i);
      a.primary_device_id = 1;
      a.next_device_id = 2;
      a.created_ms = 1'700'000'000'000 + i;
      a.disabled_ms = i == 2 ? 1'700'000'000'500 : 0;
      const bool corrupt =
          std::find(g_seed->corrupt.begin(), g_seed->corrupt.end(), i) != g_seed->corrupt.end();
      const absl::Status s = tables_.put(
          storage::TableId::kAccounts, account_key(a.id),
          corrupt ? std::string("\x7f junk") : registration::CatalogStore::encode_account(a));
      HERALD_CHECK(s.ok(), "seed");
    }
    drain();
    accounts_.add_routes(router_);
  }
  void handle(const http::Request& request, std::string_view body,
              http::Responder& responder) override {
    if (request.path() == "/test/fail") {
      tables_.fail_for_test(absl::DataLossError("injected"));
      responder.respond(200, "text/plain", "ok");
      return;
    }
    router_.handle(request, body, responder);
    drain();
  }

 private:
  void drain() {
    while (!queue_.empty()) {
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      fn();
    }
  }

  std::deque<std::function<void()>> queue_;
  storage::MemoryTables tables_{
      [this](std::function<void()> fn) { queue_.push_back(std::move(fn)); }};
  registration::CatalogStore store_{tables_};
  AccountsApi accounts_{tables_, store_, [] { return uint64_t{1'700'000'001'000}; }};
  ReadKey keys_;
  Router router_{&keys_};
};

using NodeServer = http::testing::LoopServer<Node>;

// The body without the generator's spaces after ':' and ','.
std::string compact(const std::string& json) {
  std::string out;
  for (size_t i = 0; i < json.size(); ++i) {
    if (json[i] == ' ' && i > 0 && (json[i - 1] == ':' || json[i - 1] == ',')) continue;
    out.push_back(json[i]);
  }
  return out;
}

// Every value of "key":"..." in a body, in order.
std::vector<std::string> all_strings(const std::string& body, std::string_view key) {
  std::vector<std::string> out;
  const std::string text = compact(body);
  const std::string needle = "\"" + std::string(key) + "\":\"";
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    const size_t from = at + needle.size();
    out.push_back(text.substr(from, text.find('"', from) - from));
  }
  return out;
}
std::string string_field(const std::string& body, std::string_view key) {
  std::vector<std::string> values = all_strings(body, key);
  return values.empty() ? std::string() : values.front();
}

std::vector<std::string> ids(size_t first, size_t last) {
  std::vector<std::string> out;
  for (size_t i = first; i <= last; ++i) out.push_back(id_text(i));
  return out;
}

class AccountsListTest : public ::testing::Test {
 protected:
  void start(size_t accounts, std::vector<size_t> corrupt = {}) {
    seed_ = Seed{accounts, std::move(corrupt)};
    g_seed = &seed_;
    server_ = std::make_unique<NodeServer>(http::ServerLimits{});
    ASSERT_NE(server_->port(), 0);
  }
  void TearDown() override {
    server_.reset();
    g_seed = nullptr;
  }
  HttpResponse list(std::string_view query, std::string_view auth = kRead) {
    return http_request(server_->port(), "GET", "/v1/accounts" + std::string(query), {}, auth);
  }

  Seed seed_;
  std::unique_ptr<NodeServer> server_;
};

TEST_F(AccountsListTest, EmptyTableIsAnEmptyLastPage) {
  start(0);
  const HttpResponse r = list("");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(compact(r.body), "{\"accounts\":[]}");
  EXPECT_EQ(r.header("Content-Type"), "application/json");
}

TEST_F(AccountsListTest, PagesAtTheLimitAndOneBeyond) {
  start(3);
  // The default page holds them all; each summary is what GET /v1/accounts/{id} answers.
  HttpResponse r = list("");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(1, 3));
  EXPECT_EQ(r.body.find("\"next\""), std::string::npos) << r.body;
  const std::string one =
      compact(http_request(server_->port(), "GET", "/v1/accounts/" + id_text(2), {}, kRead).body);
  ASSERT_NE(one.find("\"disabled\":true"), std::string::npos) << one;
  EXPECT_NE(compact(r.body).find(one), std::string::npos) << r.body;

  // Exactly the limit: no next.
  r = list("?limit=3");
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(1, 3));
  EXPECT_EQ(r.body.find("\"next\""), std::string::npos) << r.body;
  // One more than the limit: next is the last id of the page, and leads to the rest.
  r = list("?limit=2");
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(1, 2));
  EXPECT_EQ(string_field(r.body, "next"), id_text(2));
  r = list("?limit=2&after=" + id_text(2));
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(3, 3));
  EXPECT_EQ(r.body.find("\"next\""), std::string::npos) << r.body;
  // Pages of one walk the table; a cursor at the last id, past the end, or between ids (an
  // account that does not exist) answers what follows it.
  r = list("?limit=1&after=" + id_text(1));
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(2, 2));
  EXPECT_EQ(string_field(r.body, "next"), id_text(2));
  EXPECT_EQ(compact(list("?after=" + id_text(3)).body), "{\"accounts\":[]}");
  EXPECT_EQ(compact(list("?after=ffffffff-ffff-ffff-ffff-ffffffffffff").body), "{\"accounts\":[]}");
  EXPECT_EQ(all_strings(list("?after=00000000-0000-0000-0000-000000000000").body, "account_id"),
            ids(1, 3));
  // An encoded cursor is decoded.
  std::string encoded = id_text(1);
  encoded.replace(8, 1, "%2D");
  EXPECT_EQ(all_strings(list("?after=" + encoded).body, "account_id"), ids(2, 3));
}

TEST_F(AccountsListTest, LargestPageAndTheOneAfterIt) {
  start(kMaxAccountsPage + 1);
  HttpResponse r = list("?limit=1000");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(1, kMaxAccountsPage));
  EXPECT_EQ(string_field(r.body, "next"), id_text(kMaxAccountsPage));
  r = list("?limit=1000&after=" + string_field(r.body, "next"));
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(kMaxAccountsPage + 1, kMaxAccountsPage + 1));
  EXPECT_EQ(r.body.find("\"next\""), std::string::npos);
  // The default page size.
  r = list("");
  EXPECT_EQ(all_strings(r.body, "account_id").size(), kDefaultAccountsPage);
  EXPECT_EQ(string_field(r.body, "next"), id_text(kDefaultAccountsPage));
}

TEST_F(AccountsListTest, RefusedLimitsCursorsAndParameters) {
  start(2);
  for (std::string_view bad : {"?limit=0", "?limit=1001", "?limit=", "?limit=ten", "?limit=-5",
                               "?limit=18446744073709551617"}) {
    const HttpResponse r = list(bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(string_field(r.body, "error"), "invalid_limit") << bad << " " << r.body;
    EXPECT_EQ(string_field(r.body, "field"), "limit") << bad;
  }
  for (std::string_view bad : {"?after=", "?after=nope", "?after=0123456789abcdef",
                               "?after=00000001-0000-4000-8000-00000000000g"}) {
    const HttpResponse r = list(bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(string_field(r.body, "error"), "invalid_cursor") << bad << " " << r.body;
    EXPECT_EQ(string_field(r.body, "field"), "after") << bad;
  }
  // A lookup is not paged: phone with limit or after is a confused request.
  HttpResponse r = list("?phone=%2B15551230001&limit=1");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(string_field(r.body, "field"), "phone");
  EXPECT_EQ(list("?after=" + id_text(1) + "&phone=%2B15551230001").status, 400);
  // With phone alone it is the lookup (the seed has no phone index, so: not found).
  r = list("?phone=%2B15551230001");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(string_field(r.body, "error"), "account_not_found");
  EXPECT_EQ(list("?phone=").status, 400);
  // Scopes.
  EXPECT_EQ(list("", "").status, 401);
}

TEST_F(AccountsListTest, CorruptRecordsAreSkippedAndPagesStayFull) {
  start(4, {2});
  HttpResponse r = list("?limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(all_strings(r.body, "account_id"), (std::vector<std::string>{id_text(1), id_text(3)}));
  EXPECT_EQ(string_field(r.body, "next"), id_text(3));
  r = list("?limit=2&after=" + id_text(3));
  EXPECT_EQ(all_strings(r.body, "account_id"), ids(4, 4));
  EXPECT_EQ(r.body.find("\"next\""), std::string::npos);
}

TEST_F(AccountsListTest, AnsweredOnlyWhenDurable) {
  start(1);
  ASSERT_EQ(http_request(server_->port(), "GET", "/test/fail").status, 200);
  const HttpResponse r = list("");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(string_field(r.body, "error"), "store_unavailable");
}

}  // namespace
}  // namespace herald::api

// Groups over HTTP: the size limit at its edge, member add and remove, bad input, the
// membership hook, and that nothing is acknowledged before the store made it durable.
#include "controlplane/api/groups.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/unit/controlplane/api/admin_test_node.h"

namespace herald::api {
namespace {

using registration::AccountId;
using testing::call;
using testing::json_string;

TEST(GroupsCodecTest, IdsAndRecordsRoundTrip) {
  EXPECT_EQ(format_group_id(0xabcdef0123456789ull), "abcdef0123456789");
  EXPECT_EQ(parse_group_id("abcdef0123456789").value_or(0), 0xabcdef0123456789ull);
  EXPECT_FALSE(parse_group_id("ABCDEF0123456789").has_value());
  EXPECT_FALSE(parse_group_id("0000000000000000").has_value());
  EXPECT_FALSE(parse_group_id("abc").has_value());

  GroupRecord r{0x1122334455667788ull, "team", AccountId{5, 6}, 99, 3};
  auto back = decode_group_record(group_key(r.id), encode_group_record(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->id, r.id);
  EXPECT_EQ(back->name, "team");
  ASSERT_TRUE(back->owner.has_value());
  EXPECT_EQ(*back->owner, (AccountId{5, 6}));
  EXPECT_EQ(back->created_unix_ms, 99u);
  EXPECT_EQ(back->member_count, 3u);
  // Members of one group are one contiguous, ordered key range.
  EXPECT_LT(member_key(1, AccountId{~0ull, ~0ull}), member_key(2, AccountId{0, 0}));
  EXPECT_EQ(member_key(1, AccountId{1, 2}).substr(0, 8), group_key(1));
}

class GroupsHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.data_dir = dir_.path();
    env_.max_group_members = 3;
    for (uint64_t i = 1; i <= 6; ++i) {
      accounts_.push_back(AccountId{0x1111111111114111ull, 0x8000000000000000ull | i});
      env_.accounts.insert({accounts_.back().hi, accounts_.back().lo});
    }
    testing::g_env = &env_;
    server_ = std::make_unique<testing::NodeServer>(testing::test_limits());
    ASSERT_NE(server_->port(), 0);
    admin_ = testing::admin_key(env_);
  }
  void TearDown() override {
    server_.reset();
    testing::g_env = nullptr;
  }
  std::string acct(size_t i) const { return registration::format_account_id(accounts_[i]); }
  std::string list(std::initializer_list<size_t> indexes) const {
    std::string out = "[";
    for (size_t i : indexes) {
      if (out.size() > 1) out += ",";
      out += "\"" + acct(i) + "\"";
    }
    return out + "]";
  }
  testing::Reply post(std::string_view path, std::string_view body) {
    return call(server_->port(), "POST", path, admin_, body);
  }
  std::string group_rows() { return call(server_->port(), "GET", "/__group_rows").body; }

  testing::TempDir dir_;
  testing::TestEnv env_;
  std::vector<AccountId> accounts_;
  std::unique_ptr<testing::NodeServer> server_;
  std::string admin_;
};

TEST_F(GroupsHttpTest, SizeLimitAtItsEdge) {
  // Exactly the limit: created.
  testing::Reply r = post("/v1/groups", "{\"name\":\"three\",\"members\":" + list({0, 1, 2}) + "}");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = json_string(r.body, "group_id");
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(group_rows(), "1 3");

  // One over the limit: refused, nothing applied.
  r = post("/v1/groups", "{\"name\":\"four\",\"members\":" + list({0, 1, 2, 3}) + "}");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json_string(r.body, "error"), "group_full");
  EXPECT_EQ(group_rows(), "1 3");

  // Adding to a full group: refused, nothing applied; re-adding a member is not growth.
  r = post("/v1/groups/" + id + "/members", "{\"accounts\":" + list({3}) + "}");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json_string(r.body, "error"), "group_full");
  r = post("/v1/groups/" + id + "/members", "{\"accounts\":" + list({2}) + "}");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(testing::compact(r.body).find("\"member_count\":3,\"changed\":0"), std::string::npos)
      << r.body;
  EXPECT_EQ(group_rows(), "1 3");
}

TEST_F(GroupsHttpTest, AddRemoveGetDeleteAndTheHook) {
  testing::Reply r = post("/v1/groups", "{\"name\":\"g\",\"members\":" + list({0}) + "}");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = json_string(r.body, "group_id");
  const uint64_t gid = *parse_group_id(id);
  auto pushes = env_.take_pushes();
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_EQ(pushes[0].first, gid);
  EXPECT_EQ(pushes[0].second, std::vector<AccountId>{accounts_[0]});

  r = post("/v1/groups/" + id + "/members", "{\"accounts\":" + list({2, 1}) + "}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(testing::compact(r.body).find("\"member_count\":3,\"changed\":2"), std::string::npos);
  pushes = env_.take_pushes();
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_EQ(pushes[0].second, (std::vector<AccountId>{accounts_[0], accounts_[1], accounts_[2]}));

  r = call(server_->port(), "DELETE", "/v1/groups/" + id + "/members/" + acct(1), admin_);
  ASSERT_EQ(r.status, 200) << r.body;
  pushes = env_.take_pushes();
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_EQ(pushes[0].second, (std::vector<AccountId>{accounts_[0], accounts_[2]}));
  r = call(server_->port(), "DELETE", "/v1/groups/" + id + "/members/" + acct(1), admin_);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json_string(r.body, "error"), "not_member");

  // A read key reads the group and its members.
  const testing::Reply key = post("/v1/api-keys", R"({"name":"ro","scope":"read"})");
  const std::string read_key = json_string(key.body, "key");
  r = call(server_->port(), "GET", "/v1/groups/" + id, read_key);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string body = testing::compact(r.body);
  EXPECT_NE(body.find("\"name\":\"g\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"member_count\":2"), std::string::npos) << body;
  EXPECT_NE(body.find("\"members\":[\"" + acct(0) + "\",\"" + acct(2) + "\"]"), std::string::npos)
      << body;
  EXPECT_EQ(call(server_->port(), "DELETE", "/v1/groups/" + id, read_key).status, 403);

  r = call(server_->port(), "DELETE", "/v1/groups/" + id, admin_);
  ASSERT_EQ(r.status, 200) << r.body;
  pushes = env_.take_pushes();
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_TRUE(pushes[0].second.empty());
  EXPECT_EQ(group_rows(), "0 0");
  EXPECT_EQ(call(server_->port(), "GET", "/v1/groups/" + id, admin_).status, 404);
}

TEST_F(GroupsHttpTest, BadInputGetsStableErrors) {
  auto create_error = [&](const std::string& body) {
    const testing::Reply r = post("/v1/groups", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    return json_string(r.body, "error");
  };
  EXPECT_EQ(create_error("{"), "bad_json");
  EXPECT_EQ(create_error(R"({"name":"g","colour":"red"})"), "bad_json");
  EXPECT_EQ(create_error(R"({"members":[]})"), "missing_field");
  EXPECT_EQ(create_error(R"({"name":""})"), "empty_name");
  EXPECT_EQ(create_error("{\"name\":\"" + std::string(65, 'n') + "\"}"), "name_too_long");
  EXPECT_EQ(create_error(R"({"name":"a\u0001b"})"), "bad_name");
  EXPECT_EQ(create_error(R"({"name":"g","members":["nope"]})"), "bad_account_id");
  EXPECT_EQ(create_error("{\"name\":\"g\",\"members\":" + list({0, 0}) + "}"), "duplicate_member");
  EXPECT_EQ(create_error(R"({"name":"g","members":["00000000-0000-4000-8000-000000000009"]})"),
            "unknown_account");
  EXPECT_EQ(create_error(R"({"name":"g","owner":"00000000-0000-4000-8000-000000000009"})"),
            "unknown_account");
  EXPECT_EQ(group_rows(), "0 0");

  EXPECT_EQ(json_string(call(server_->port(), "GET", "/v1/groups/xyz", admin_).body, "error"),
            "bad_group_id");
  EXPECT_EQ(call(server_->port(), "GET", "/v1/groups/00000000000000aa", admin_).status, 404);
  const testing::Reply made = post("/v1/groups", "{\"name\":\"ok\",\"owner\":\"" + acct(5) + "\"}");
  ASSERT_EQ(made.status, 201) << made.body;
  const std::string id = json_string(made.body, "group_id");
  EXPECT_EQ(json_string(post("/v1/groups/" + id + "/members", R"({"accounts":[]})").body, "error"),
            "missing_field");
  EXPECT_EQ(
      json_string(post("/v1/groups/" + id + "/members", "{\"accounts\":" + list({1, 1}) + "}").body,
                  "error"),
      "duplicate_member");
  EXPECT_EQ(
      json_string(call(server_->port(), "DELETE", "/v1/groups/" + id + "/members/bad", admin_).body,
                  "error"),
      "bad_account_id");
  const testing::Reply get = call(server_->port(), "GET", "/v1/groups/" + id, admin_);
  EXPECT_EQ(json_string(get.body, "owner"), acct(5));
}

TEST_F(GroupsHttpTest, NothingIsAcknowledgedBeforeTheBarrier) {
  env_.hold_barriers.store(true);
  const int fd = testing::connect_to(server_->port());
  ASSERT_GE(fd, 0);
  testing::send_request(fd, "POST", "/v1/groups", admin_,
                        "{\"name\":\"g\",\"members\":" + list({0}) + "}");
  // The change is applied in memory, but no answer leaves while its barrier is pending.
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 300), 0);
  EXPECT_TRUE(env_.take_pushes().empty());
  EXPECT_EQ(call(server_->port(), "GET", "/__release").status, 200);
  const testing::Reply r = testing::read_reply(fd);
  ::close(fd);
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(env_.take_pushes().size(), 1u);
}

TEST_F(GroupsHttpTest, StoreFailureAnswers503AndRunsNoHook) {
  env_.tables->fail_apply.store(true);
  testing::Reply r = post("/v1/groups", "{\"name\":\"g\",\"members\":" + list({0}) + "}");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_string(r.body, "error"), "store_unavailable");
  EXPECT_EQ(group_rows(), "0 0");  // nothing applied
  env_.tables->fail_apply.store(false);

  env_.tables->fail_barrier.store(true);
  r = post("/v1/groups", "{\"name\":\"g\",\"members\":" + list({0}) + "}");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_string(r.body, "error"), "store_unavailable");
  EXPECT_TRUE(env_.take_pushes().empty());
}

TEST(GroupsSweepTest, OrphanMembersOfDeletedGroupsAreErased) {
  std::deque<std::function<void()>> deferred;
  storage::MemoryTables tables(
      [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); });
  GroupsOptions options;
  options.account_exists = [](const AccountId&) { return true; };
  Groups groups(tables, std::move(options));
  GroupRecord live{7, "live", std::nullopt, 1, 1};
  ASSERT_TRUE(tables.put(storage::TableId::kGroups, group_key(7), encode_group_record(live)).ok());
  ASSERT_TRUE(tables.put(storage::TableId::kGroupMembers, member_key(7, AccountId{1, 1}), "").ok());
  ASSERT_TRUE(tables.put(storage::TableId::kGroupMembers, member_key(8, AccountId{1, 1}), "").ok());
  ASSERT_TRUE(tables.put(storage::TableId::kGroupMembers, member_key(8, AccountId{2, 2}), "").ok());
  auto swept = groups.sweep_orphans();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 2u);
  EXPECT_EQ(tables.size(storage::TableId::kGroupMembers), 1u);
  EXPECT_EQ(groups.members(7), std::vector<AccountId>{(AccountId{1, 1})});
}

// Every value of `"key": "..."` in a body, in order (ids in a listing).
std::vector<std::string> all_strings(const std::string& body, std::string_view key) {
  std::vector<std::string> out;
  const std::string compacted = testing::compact(body);
  const std::string needle = "\"" + std::string(key) + "\":\"";
  for (size_t at = compacted.find(needle); at != std::string::npos;
       at = compacted.find(needle, at + 1)) {
    const size_t from = at + needle.size();
    out.push_back(compacted.substr(from, compacted.find('"', from) - from));
  }
  return out;
}

TEST_F(GroupsHttpTest, ListPagesAtTheirEdges) {
  const uint16_t port = server_->port();
  auto page = [&](std::string_view query) {
    return call(port, "GET", "/v1/groups" + std::string(query), admin_);
  };

  // An empty table: an empty page, no next.
  testing::Reply r = page("");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(testing::compact(r.body), "{\"groups\":[]}");

  std::vector<std::string> ids;
  for (const char* name : {"a", "b", "c"}) {
    r = post("/v1/groups",
             std::string("{\"name\":\"") + name + "\",\"members\":" + list({0}) + "}");
    ASSERT_EQ(r.status, 201) << r.body;
    ids.push_back(json_string(r.body, "group_id"));
  }
  std::sort(ids.begin(), ids.end());

  // The whole table in id order, each summary with its name, owner, time and member count.
  r = page("");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(all_strings(r.body, "group_id"), ids);
  EXPECT_EQ(json_string(r.body, "next"), "");
  EXPECT_NE(testing::compact(r.body).find(
                "\"owner\":\"\",\"created_unix_ms\":1700000000123,\"member_count\":1}"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(r.body.find("\"members\""), std::string::npos);  // a summary, not GroupInfo

  // Exactly the limit: every group, no next.
  r = page("?limit=3");
  EXPECT_EQ(all_strings(r.body, "group_id"), ids);
  EXPECT_EQ(r.body.find("\"next\""), std::string::npos) << r.body;
  // One fewer than there are: a next that leads to the rest.
  r = page("?limit=2");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(all_strings(r.body, "group_id"), (std::vector<std::string>{ids[0], ids[1]}));
  EXPECT_EQ(json_string(r.body, "next"), ids[1]);
  r = page("?limit=2&after=" + ids[1]);
  EXPECT_EQ(all_strings(r.body, "group_id"), (std::vector<std::string>{ids[2]}));
  EXPECT_EQ(r.body.find("\"next\""), std::string::npos) << r.body;
  // Pages of one walk the table.
  std::vector<std::string> walked;
  std::string after;
  for (int i = 0; i < 4; ++i) {
    r = page("?limit=1" + (after.empty() ? std::string() : "&after=" + after));
    ASSERT_EQ(r.status, 200) << r.body;
    for (const std::string& id : all_strings(r.body, "group_id")) walked.push_back(id);
    after = json_string(r.body, "next");
    if (after.empty()) break;
  }
  EXPECT_EQ(walked, ids);
  // A cursor past the end, or one that names no group (deleted since): what follows it.
  r = page("?after=ffffffffffffffff");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(testing::compact(r.body), "{\"groups\":[]}");
  ASSERT_EQ(call(port, "DELETE", "/v1/groups/" + ids[1], admin_).status, 200);
  r = page("?after=" + ids[1]);
  EXPECT_EQ(all_strings(r.body, "group_id"), (std::vector<std::string>{ids[2]}));
  // The largest page is allowed; out-of-range limits and bad cursors are 400 with the field.
  EXPECT_EQ(page("?limit=1000").status, 200);
  for (std::string_view bad : {"?limit=0", "?limit=1001", "?limit=x"}) {
    r = page(bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(json_string(r.body, "error"), "invalid_limit") << bad;
    EXPECT_EQ(json_string(r.body, "field"), "limit") << bad;
  }
  for (std::string_view bad :
       {"?after=xyz", "?after=ABCDEF0123456789", "?after=0000000000000000", "?after=",
        "?after="
        "0123456789abcdef0"}) {
    r = page(bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(json_string(r.body, "error"), "invalid_cursor") << bad;
    EXPECT_EQ(json_string(r.body, "field"), "after") << bad;
  }
  // A read key may list; no key may not.
  const std::string read_key =
      json_string(post("/v1/api-keys", R"({"name":"reader","scope":"read"})").body, "key");
  EXPECT_EQ(call(port, "GET", "/v1/groups", read_key).status, 200);
  EXPECT_EQ(call(port, "GET", "/v1/groups").status, 401);
}

TEST_F(GroupsHttpTest, ListIsAnsweredOnlyWhenDurable) {
  env_.tables->fail_barrier.store(true);
  const testing::Reply r = call(server_->port(), "GET", "/v1/groups", admin_);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_string(r.body, "error"), "store_unavailable");
}

}  // namespace
}  // namespace herald::api

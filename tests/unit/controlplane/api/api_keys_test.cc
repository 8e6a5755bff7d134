// Admin API keys: the key text and Authorization parsing, the stored record, the bootstrap key
// file, and authentication of real HTTP requests (401/403/200) and the /v1/api-keys routes.
#include "controlplane/api/api_keys.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <deque>

#include "controlplane/http/request_parser.h"
#include "platform/log/log.h"
#include "tests/unit/controlplane/api/admin_test_node.h"

namespace herald::api {
namespace {

using testing::call;
using testing::json_string;
using testing::TempDir;

struct DirectFixture {
  DirectFixture()
      : tables([this](std::function<void()> fn) { deferred.push_back(std::move(fn)); }),
        keys(tables, [] { return uint64_t{1000}; }) {}
  void drain() {
    while (!deferred.empty()) {
      auto fn = std::move(deferred.front());
      deferred.pop_front();
      fn();
    }
  }
  std::deque<std::function<void()>> deferred;
  storage::MemoryTables tables;
  ApiKeys keys;
};

TEST(ApiKeysTest, BearerTokenParsing) {
  EXPECT_EQ(bearer_token("Bearer abc").value_or("-"), "abc");
  EXPECT_EQ(bearer_token("bearer abc").value_or("-"), "abc");  // RFC 9110 §11.1
  EXPECT_EQ(bearer_token("BEARER   abc").value_or("-"), "abc");
  EXPECT_FALSE(bearer_token("Bearer").has_value());
  EXPECT_FALSE(bearer_token("Bearer ").has_value());
  EXPECT_FALSE(bearer_token("Basic abc").has_value());
  EXPECT_FALSE(bearer_token("Bearerabc").has_value());
  EXPECT_FALSE(bearer_token("Bearer a b").has_value());
  EXPECT_FALSE(bearer_token("").has_value());
}

TEST(ApiKeysTest, KeyTextIsStrict) {
  DirectFixture f;
  auto created = f.keys.create("ci", Scope::kRead);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string& key = created->key;
  ASSERT_EQ(key.size(), 3u + 16 + 1 + 43);
  auto parsed = parse_api_key(key);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->id, created->record.id);
  EXPECT_TRUE(f.keys.verify(key, Scope::kRead));
  EXPECT_FALSE(f.keys.verify(key, Scope::kAdmin));

  EXPECT_FALSE(parse_api_key(key.substr(1)).has_value());
  EXPECT_FALSE(parse_api_key(key + "A").has_value());
  std::string upper = key;
  upper[3] = 'A';  // the id is lower-case hex only
  EXPECT_FALSE(parse_api_key(upper).has_value());
  std::string other_secret = key;
  other_secret[25] = other_secret[25] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(f.keys.verify(other_secret, Scope::kRead));
}

TEST(ApiKeysTest, StoresOnlyTheHash) {
  DirectFixture f;
  auto created = f.keys.create("ci", Scope::kAdmin);
  ASSERT_TRUE(created.ok());
  const std::string* value = f.tables.find(storage::TableId::kApiKeys, created->record.id);
  ASSERT_NE(value, nullptr);
  const std::string secret = created->key.substr(3 + 16 + 1);
  EXPECT_EQ(value->find(secret), std::string::npos);
  auto decoded = decode_api_key_record(created->record.id, *value);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->name, "ci");
  EXPECT_EQ(decoded->scope, Scope::kAdmin);
  EXPECT_EQ(decoded->created_unix_ms, 1000u);
  EXPECT_EQ(decoded->revoked_unix_ms, 0u);
  EXPECT_EQ(decoded->secret_sha256, created->record.secret_sha256);
  EXPECT_FALSE(decode_api_key_record("x", value->substr(0, 10)).has_value());
}

TEST(ApiKeysTest, CreateRefusesBadNamesAndScopes) {
  DirectFixture f;
  EXPECT_FALSE(f.keys.create("", Scope::kRead).ok());
  EXPECT_FALSE(f.keys.create(std::string(65, 'n'), Scope::kRead).ok());
  EXPECT_TRUE(f.keys.create(std::string(64, 'n'), Scope::kRead).ok());
  EXPECT_FALSE(f.keys.create("a\nb", Scope::kRead).ok());
  EXPECT_FALSE(f.keys.create("pub", Scope::kPublic).ok());
  EXPECT_EQ(f.tables.size(storage::TableId::kApiKeys), 1u);
}

// The request a client sends with `authorization` (none when empty), parsed as the server does.
struct ParsedHead {
  explicit ParsedHead(std::string_view authorization)
      : text("GET /v1/health HTTP/1.1\r\nHost: t\r\n" +
             (authorization.empty() ? std::string()
                                    : "Authorization: " + std::string(authorization) + "\r\n") +
             "\r\n") {
    std::string_view input = text;
    http::ParseStep step;
    do {
      step = parser.parse(input);
      input.remove_prefix(step.consumed_bytes);
    } while (step.event != http::ParseEvent::kMessageComplete &&
             step.event != http::ParseEvent::kError && step.event != http::ParseEvent::kNeedMore);
    complete = step.event == http::ParseEvent::kMessageComplete;
  }
  std::string text;
  http::RequestParser parser{http::Limits{}};
  bool complete = false;
};

TEST(ApiKeysTest, PrincipalIsTheKeysNameOrItsId) {
  DirectFixture f;
  auto named = f.keys.create("ops-alice", Scope::kAdmin);
  ASSERT_TRUE(named.ok());
  ParsedHead alice("Bearer " + named->key);
  ASSERT_TRUE(alice.complete);
  EXPECT_EQ(f.keys.principal(alice.parser.request()), "ops-alice");
  // A record stored without a name (create() refuses one; an older writer might not) is named
  // by its id.
  ApiKeyRecord unnamed = named->record;
  unnamed.name.clear();
  ASSERT_TRUE(
      f.tables.put(storage::TableId::kApiKeys, unnamed.id, encode_api_key_record(unnamed)).ok());
  EXPECT_EQ(f.keys.principal(alice.parser.request()), "key:" + unnamed.id);
  // Nobody: no header, another scheme, a malformed or unknown key.
  for (std::string_view auth :
       {"", "Basic dXNlcjpwYXNz", "Bearer nope",
        "Bearer hk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}) {
    ParsedHead head(auth);
    ASSERT_TRUE(head.complete) << auth;
    EXPECT_EQ(f.keys.principal(head.parser.request()), "") << auth;
  }
}

TEST(ApiKeysTest, LastActiveAdminKeyCannotBeRevoked) {
  DirectFixture f;
  auto a = f.keys.create("a", Scope::kAdmin);
  auto r = f.keys.create("r", Scope::kRead);
  ASSERT_TRUE(a.ok() && r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(f.keys.revoke(a->record.id)));
  EXPECT_TRUE(f.keys.revoke(r->record.id).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(f.keys.revoke(r->record.id)));
  auto b = f.keys.create("b", Scope::kAdmin);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(f.keys.revoke(a->record.id).ok());
  EXPECT_FALSE(f.keys.verify(a->key, Scope::kRead));
  EXPECT_TRUE(absl::IsNotFound(f.keys.revoke("0000000000000000")));
  EXPECT_EQ(f.keys.active_admin_keys(), 1u);
}

TEST(ApiKeysTest, BootstrapKeyFileIsPrivateUsableAndKeptOnSecondStart) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  DirectFixture f;
  ASSERT_TRUE(f.keys.ensure_bootstrap_key(dir.path()).ok());
  const std::string path = dir.path() + "/admin.key";
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string key = testing::read_file(path);
  ASSERT_FALSE(key.empty());
  EXPECT_EQ(key.back(), '\n');
  key.pop_back();
  EXPECT_TRUE(f.keys.verify(key, Scope::kAdmin));
  EXPECT_EQ(f.keys.stats().bootstrap_created, 1u);
  EXPECT_EQ(f.keys.find(parse_api_key(key)->id)->name, "bootstrap");

  // Second start over the same store: nothing minted, the file untouched.
  ApiKeys again(f.tables, [] { return uint64_t{2000}; });
  ASSERT_TRUE(again.ensure_bootstrap_key(dir.path()).ok());
  EXPECT_EQ(again.stats().bootstrap_created, 0u);
  EXPECT_EQ(testing::read_file(path), key + "\n");
  EXPECT_EQ(f.tables.size(storage::TableId::kApiKeys), 1u);
}

TEST(ApiKeysTest, BootstrapReplacesAKeyFileTheStoreDoesNotKnow) {
  TempDir dir;
  std::string old_key;
  {
    DirectFixture f;
    ASSERT_TRUE(f.keys.ensure_bootstrap_key(dir.path()).ok());
    old_key = testing::read_file(dir.path() + "/admin.key");
  }
  DirectFixture wiped;  // a new, empty store
  ASSERT_TRUE(wiped.keys.ensure_bootstrap_key(dir.path()).ok());
  std::string new_key = testing::read_file(dir.path() + "/admin.key");
  ASSERT_NE(new_key, old_key);
  new_key.pop_back();
  EXPECT_TRUE(wiped.keys.verify(new_key, Scope::kAdmin));
  EXPECT_EQ(::access((dir.path() + "/admin.key.tmp").c_str(), F_OK), -1);
}

TEST(ApiKeysTest, BootstrapKeyIsNeverLogged) {
  TempDir dir;
  const std::string log_path = dir.path() + "/log.txt";
  const int log_fd = ::open(log_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  log::set_sink_fd(log_fd);
  DirectFixture f;
  const absl::Status s = f.keys.ensure_bootstrap_key(dir.path());
  log::set_sink_fd(STDERR_FILENO);
  ::close(log_fd);
  ASSERT_TRUE(s.ok());
  const std::string logged = testing::read_file(log_path);
  (void)::unlink(log_path.c_str());
  std::string key = testing::read_file(dir.path() + "/admin.key");
  key.pop_back();
  EXPECT_NE(logged.find(dir.path() + "/admin.key"), std::string::npos) << logged;
  EXPECT_EQ(logged.find(key.substr(3 + 16 + 1)), std::string::npos) << logged;
}

// --- Over HTTP ---------------------------------------------------------------------------

class ApiKeysHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.data_dir = dir_.path();
    testing::g_env = &env_;
    server_ = std::make_unique<testing::NodeServer>(testing::test_limits());
    ASSERT_NE(server_->port(), 0);
    admin_ = testing::admin_key(env_);
    ASSERT_FALSE(admin_.empty());
  }
  void TearDown() override {
    server_.reset();
    testing::g_env = nullptr;
  }
  uint16_t port() const { return server_->port(); }
  std::string create_key(std::string_view scope) {
    const testing::Reply r = call(port(), "POST", "/v1/api-keys", admin_,
                                  "{\"name\":\"k\",\"scope\":\"" + std::string(scope) + "\"}");
    EXPECT_EQ(r.status, 201) << r.body;
    return json_string(r.body, "key");
  }

  TempDir dir_;
  testing::TestEnv env_;
  std::unique_ptr<testing::NodeServer> server_;
  std::string admin_;
};

TEST_F(ApiKeysHttpTest, RefusesMissingMalformedUnknownAndWrongKeys) {
  EXPECT_EQ(call(port(), "GET", "/v1/health").status, 401);
  EXPECT_EQ(call(port(), "GET", "/v1/health", "not-a-key").status, 401);
  // Well-formed, unknown id.
  std::string unknown = admin_;
  unknown.replace(3, 16, "0123456789abcdef");
  EXPECT_EQ(call(port(), "GET", "/v1/health", unknown).status, 401);
  // Known id, wrong secret.
  std::string wrong = admin_;
  wrong[25] = wrong[25] == 'A' ? 'B' : 'A';
  const testing::Reply r = call(port(), "GET", "/v1/health", wrong);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("\"error\""), std::string::npos);
  EXPECT_EQ(call(port(), "GET", "/v1/health", admin_).status, 200);
}

TEST_F(ApiKeysHttpTest, ReadKeyReadsButCannotWrite) {
  const std::string read_key = create_key("read");
  ASSERT_FALSE(read_key.empty());
  EXPECT_EQ(call(port(), "GET", "/v1/health", read_key).status, 200);
  EXPECT_EQ(call(port(), "GET", "/v1/api-keys", read_key).status, 200);
  EXPECT_EQ(
      call(port(), "POST", "/v1/api-keys", read_key, R"({"name":"x","scope":"admin"})").status,
      403);
  EXPECT_EQ(call(port(), "POST", "/v1/groups", read_key, R"({"name":"g"})").status, 403);
}

TEST_F(ApiKeysHttpTest, CreateListRevoke) {
  const testing::Reply created =
      call(port(), "POST", "/v1/api-keys", admin_, R"({"name":"ops","scope":"admin"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string key = json_string(created.body, "key");
  const std::string id = json_string(created.body, "id");
  EXPECT_EQ(json_string(created.body, "scope"), "admin");
  EXPECT_EQ(key.substr(0, 3 + 16), "hk_" + id);

  testing::Reply list = call(port(), "GET", "/v1/api-keys", key);
  list.body = testing::compact(list.body);
  ASSERT_EQ(list.status, 200);
  EXPECT_NE(list.body.find("\"name\":\"bootstrap\""), std::string::npos) << list.body;
  EXPECT_NE(list.body.find("\"id\":\"" + id + "\""), std::string::npos);
  EXPECT_EQ(list.body.find(key.substr(20)), std::string::npos);  // the secret is never shown
  EXPECT_EQ(list.body.find("\"key\""), std::string::npos);

  EXPECT_EQ(call(port(), "DELETE", "/v1/api-keys/" + id, admin_).status, 200);
  EXPECT_EQ(call(port(), "GET", "/v1/health", key).status, 401);                // revoked
  EXPECT_EQ(call(port(), "DELETE", "/v1/api-keys/" + id, admin_).status, 200);  // idempotent
  EXPECT_EQ(call(port(), "DELETE", "/v1/api-keys/0000000000000001", admin_).status, 404);
  const testing::Reply bad = call(port(), "DELETE", "/v1/api-keys/XYZ", admin_);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json_string(bad.body, "error"), "bad_id");

  // The bootstrap key is now the only admin key: revoking it would lock everyone out.
  const std::string boot_id = admin_.substr(3, 16);
  const testing::Reply last = call(port(), "DELETE", "/v1/api-keys/" + boot_id, admin_);
  EXPECT_EQ(last.status, 409);
  EXPECT_EQ(json_string(last.body, "error"), "last_admin_key");
  EXPECT_EQ(call(port(), "GET", "/v1/health", admin_).status, 200);
}

TEST_F(ApiKeysHttpTest, BadBodiesGetStableErrors) {
  auto error_of = [&](std::string_view body) {
    const testing::Reply r = call(port(), "POST", "/v1/api-keys", admin_, body);
    EXPECT_EQ(r.status, 400) << body;
    return json_string(r.body, "error");
  };
  EXPECT_EQ(error_of("{"), "bad_json");
  EXPECT_EQ(error_of(R"({"name":"a","scope":"read","extra":1})"), "bad_json");
  EXPECT_EQ(error_of(R"({"scope":"read"})"), "missing_field");
  EXPECT_EQ(error_of(R"({"name":"a"})"), "missing_field");
  EXPECT_EQ(error_of(R"({"name":"a","scope":"root"})"), "bad_scope");
  EXPECT_EQ(error_of(R"({"name":"","scope":"read"})"), "empty_name");
  EXPECT_EQ(error_of("{\"name\":\"" + std::string(65, 'x') + "\",\"scope\":\"read\"}"),
            "name_too_long");
}

TEST_F(ApiKeysHttpTest, StoreFailureIsNotAcknowledged) {
  env_.tables->fail_barrier.store(true);
  const testing::Reply r =
      call(port(), "POST", "/v1/api-keys", admin_, R"({"name":"x","scope":"read"})");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json_string(r.body, "error"), "store_unavailable");
  EXPECT_EQ(json_string(r.body, "key"), "");  // the key is never shown unless durable
  env_.tables->fail_barrier.store(false);
  env_.tables->fail_apply.store(true);
  EXPECT_EQ(call(port(), "POST", "/v1/api-keys", admin_, R"({"name":"x","scope":"read"})").status,
            503);
}

}  // namespace
}  // namespace herald::api

// HTTP round trips of the /v1/config endpoints through a real http::Server (loop thread) over
// MemoryTables: candidates, invalid configs naming their field, commit with a confirm timeout,
// confirm, rollback, paging, scopes, and 503 when the store fails.
#include "controlplane/config/config_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "controlplane/api/router.h"
#include "controlplane/storage/tables.h"
#include "tests/unit/controlplane/api/http_client.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::config_revisions {
namespace {

using api::testing::http_request;
using api::testing::HttpResponse;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kNowMs = 1'700'000'000'000;

// "Bearer admin" (no name) and "Bearer alice" (named "alice-ops") may do anything, "Bearer
// read" may read; nothing else is a key.
class TestAuthenticator final : public api::Authenticator {
 public:
  api::AuthOutcome authenticate(const http::Request& request, api::Scope needed) override {
    const http::HeaderField* auth = request.find("authorization");
    if (auth == nullptr) return api::AuthOutcome::kUnauthenticated;
    if (auth->value == "Bearer admin" || auth->value == "Bearer alice") {
      return api::AuthOutcome::kAllowed;
    }
    if (auth->value == "Bearer read") {
      return needed == api::Scope::kAdmin ? api::AuthOutcome::kForbidden
                                          : api::AuthOutcome::kAllowed;
    }
    return api::AuthOutcome::kUnauthenticated;
  }
  std::string principal(const http::Request& request) const override {
    const http::HeaderField* auth = request.find("authorization");
    return auth != nullptr && auth->value == "Bearer alice" ? "alice-ops" : "";
  }
};

// Everything lives on the loop thread. Barrier callbacks queued by MemoryTables run right after
// the route returns, as the catalog's would after its group commit. POST /test/fail makes the
// store fail (on the loop thread, where the tables live).
struct ConfigNode final : public http::Handler {
  ConfigNode() {
    Revisions::Options options;
    options.now_unix_ms = [] { return kNowMs; };
    revisions = *Revisions::open(tables, config::default_config(), Revisions::Source::kDefaults,
                                 std::move(options));
    drain();
    api.emplace(*revisions, tables);
    api->add_routes(router);
  }
  void handle(const http::Request& request, std::string_view body,
              http::Responder& responder) override {
    if (request.path() == "/test/fail") {
      tables.fail_for_test(absl::DataLossError("injected"));
      responder.respond(200, "text/plain", "ok");
      return;
    }
    router.handle(request, body, responder);
    drain();
  }
  void drain() {
    while (!queue.empty()) {
      auto fn = std::move(queue.front());
      queue.pop_front();
      fn();
    }
  }

  std::deque<std::function<void()>> queue;
  storage::MemoryTables tables{
      [this](std::function<void()> fn) { queue.push_back(std::move(fn)); }};
  TestAuthenticator authenticator;
  api::Router router{&authenticator};
  std::unique_ptr<Revisions> revisions;
  std::optional<ConfigApi> api;
};

constexpr std::string_view kAdmin = "Authorization: Bearer admin\r\n";
constexpr std::string_view kRead = "Authorization: Bearer read\r\n";

class ConfigApiTest : public ::testing::Test {
 protected:
  HttpResponse get(std::string_view target, std::string_view auth = kRead) {
    return http_request(server_.port(), "GET", target, {}, auth);
  }
  HttpResponse post(std::string_view target, std::string_view body = {},
                    std::string_view auth = kAdmin) {
    return http_request(server_.port(), "POST", target, body, auth);
  }

  http::testing::LoopServer<ConfigNode> server_{http::ServerLimits{}};
};

TEST_F(ConfigApiTest, GetConfigShowsTheActiveRevision) {
  ASSERT_NE(server_.port(), 0);
  const HttpResponse r = get("/v1/config");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"revision\":1,"));
  EXPECT_THAT(r.body, HasSubstr("\"restart_required\":[]"));
  EXPECT_THAT(r.body, HasSubstr("\"dataplane.workers\""));  // in restart_required_fields
  EXPECT_THAT(r.body, HasSubstr("\"max_frame_bytes\": 65536"));
  EXPECT_THAT(r.body, Not(HasSubstr("pending_confirm")));
  // The embedded config is a config the loader accepts back.
  const size_t at = r.body.find("\"config\":");
  ASSERT_NE(at, std::string::npos);
  const std::string config_json = r.body.substr(at + 9, r.body.size() - at - 10);
  EXPECT_TRUE(config::load_config_from_string(config_json).ok()) << config_json;
}

TEST_F(ConfigApiTest, ScopesAreEnforced) {
  EXPECT_EQ(get("/v1/config", "").status, 401);
  EXPECT_EQ(post("/v1/config", "{}", kRead).status, 403);
  EXPECT_EQ(post("/v1/config/1/commit", "", kRead).status, 403);
}

TEST_F(ConfigApiTest, CandidateCommitConfirmRoundTrip) {
  HttpResponse r = post("/v1/config?comment=more%20workers",
                        R"({"dataplane": {"workers": 2}, "limits": {"idle_timeout_ms": 5000}})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body, R"({"revision": 2,"restart_required": ["dataplane.workers"]})")
      << "(exact JSON as JsonCodec writes it)";
  r = get("/v1/config");
  EXPECT_THAT(r.body, HasSubstr("\"revision\":1,"));  // a candidate is not active

  r = post("/v1/config/2/commit", R"({"confirm_timeout_s": 120})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"active\": 2"));
  EXPECT_THAT(r.body, HasSubstr("\"dataplane.workers\""));
  EXPECT_THAT(r.body, HasSubstr("\"confirm_deadline_unix_ms\": 1700000120000"));

  r = get("/v1/config");
  EXPECT_THAT(r.body, HasSubstr("\"revision\":2,"));
  EXPECT_THAT(r.body, HasSubstr("\"pending_confirm\":{\"revision\":2,\"previous_revision\":1"));
  EXPECT_THAT(r.body, HasSubstr("\"restart_required\":[\"dataplane.workers\"]"));

  EXPECT_EQ(post("/v1/config/1/confirm").status, 409);
  EXPECT_EQ(post("/v1/config/7/confirm").status, 404);
  r = post("/v1/config/2/confirm");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"active\": 2"));
  EXPECT_THAT(r.body, HasSubstr("\"confirm_deadline_unix_ms\": null"));
  EXPECT_EQ(post("/v1/config/2/confirm").status, 409);

  // Rollback: commit the old revision.
  r = post("/v1/config/1/commit");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"active\": 1"));
  EXPECT_THAT(r.body, HasSubstr("\"restart_required\": []"));
}

TEST_F(ConfigApiTest, InvalidConfigsNameTheField) {
  HttpResponse r = post("/v1/config", R"({"limits": {"max_frame_bytes": 100}})");
  ASSERT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("\"error\":\"invalid_config\""));
  EXPECT_THAT(r.body, HasSubstr("\"field\":\"limits.max_frame_bytes\""));
  EXPECT_THAT(r.body, HasSubstr("below the minimum 1024"));

  r = post("/v1/config", R"({"limits": {"max_frame": 4096}})");
  ASSERT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("\"field\":\"limits.max_frame\""));

  r = post("/v1/config", R"({"code_gateway": {"kind": "webhook"}})");
  ASSERT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("\"field\":\"code_gateway.webhook_url\""));

  r = post("/v1/config", "not json");
  ASSERT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("invalid_config"));
  // Nothing was stored.
  EXPECT_THAT(get("/v1/config/revisions").body, Not(HasSubstr("\"revision\": 2")));
}

TEST_F(ConfigApiTest, CommitErrors) {
  EXPECT_EQ(post("/v1/config/9/commit").status, 404);
  EXPECT_EQ(post("/v1/config/abc/commit").status, 400);
  EXPECT_EQ(post("/v1/config/0/commit").status, 400);
  HttpResponse r = post("/v1/config/1/commit", R"({"confirm_timeout_s": 0})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("\"field\":\"confirm_timeout_s\""));
  EXPECT_EQ(post("/v1/config/1/commit", R"({"confirm_timeout_s": 86401})").status, 400);
  EXPECT_EQ(post("/v1/config/1/commit", R"({"confirm_timeout": 5})").status, 400);
  EXPECT_EQ(post("/v1/config/1/commit", R"({"confirm_timeout_s": 86400})").status, 200);
}

TEST_F(ConfigApiTest, RevisionsAreListedNewestFirstAndPaged) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(post("/v1/config?comment=c" + std::to_string(i), "{}").status, 201);
  }
  HttpResponse r = get("/v1/config/revisions?limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"revision\": 4"));
  EXPECT_THAT(r.body, HasSubstr("\"comment\": \"c2\""));
  EXPECT_THAT(r.body, HasSubstr("\"revision\": 3"));
  EXPECT_THAT(r.body, Not(HasSubstr("\"revision\": 2,")));
  EXPECT_THAT(r.body, HasSubstr("\"next_before\": 3"));
  EXPECT_LT(r.body.find("\"revision\": 4"), r.body.find("\"revision\": 3"));

  r = get("/v1/config/revisions?limit=2&before=3");
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("\"revision\": 2"));
  EXPECT_THAT(r.body, HasSubstr("\"revision\": 1"));
  EXPECT_THAT(r.body, HasSubstr("\"author\": \"boot\""));
  EXPECT_THAT(r.body, HasSubstr("\"active\": true"));
  EXPECT_THAT(r.body, HasSubstr("\"next_before\": null"));

  EXPECT_EQ(get("/v1/config/revisions?limit=0").status, 400);
  EXPECT_EQ(get("/v1/config/revisions?limit=501").status, 400);
  EXPECT_EQ(get("/v1/config/revisions?before=x").status, 400);
}

TEST_F(ConfigApiTest, GetOneRevision) {
  ASSERT_EQ(post("/v1/config", R"({"shm": {"counters_capacity": 8192}})").status, 201);
  HttpResponse r = get("/v1/config/revisions/2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"revision\":2,"));
  EXPECT_THAT(r.body, HasSubstr("\"author\":\"admin-api\""));
  EXPECT_THAT(r.body, HasSubstr("\"active\":false"));
  EXPECT_THAT(r.body, HasSubstr("\"restart_required\":[\"shm.counters_capacity\"]"));
  EXPECT_THAT(r.body, HasSubstr("\"counters_capacity\": 8192"));
  EXPECT_EQ(get("/v1/config/revisions/3").status, 404);
  EXPECT_EQ(get("/v1/config/revisions/-1").status, 400);
}

TEST_F(ConfigApiTest, CandidateAuthorIsTheCallersKeyName) {
  ASSERT_EQ(post("/v1/config?comment=by%20alice", "{}", "Authorization: Bearer alice\r\n").status,
            201);
  HttpResponse r = get("/v1/config/revisions/2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"author\":\"alice-ops\""));
  EXPECT_THAT(r.body, HasSubstr("\"comment\":\"by alice\""));
  // A caller the authenticator does not name: the fixed author.
  ASSERT_EQ(post("/v1/config", "{}").status, 201);
  r = get("/v1/config/revisions?limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"author\": \"admin-api\""));
  EXPECT_THAT(r.body, HasSubstr("\"author\": \"alice-ops\""));
  EXPECT_LT(r.body.find("\"author\": \"admin-api\""), r.body.find("\"author\": \"alice-ops\""));
  // Committing (or rolling back) records no author: the revision keeps its own.
  ASSERT_EQ(post("/v1/config/2/commit", "", "Authorization: Bearer admin\r\n").status, 200);
  EXPECT_THAT(get("/v1/config/revisions/2").body, HasSubstr("\"author\":\"alice-ops\""));
}

TEST_F(ConfigApiTest, StoreFailureAnswers503) {
  ASSERT_EQ(post("/v1/config", "{}").status, 201);
  ASSERT_EQ(post("/test/fail").status, 200);
  HttpResponse r = post("/v1/config", "{}");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("store_unavailable"));
  EXPECT_EQ(post("/v1/config/2/commit").status, 503);
  EXPECT_EQ(post("/v1/config/1/commit", R"({"confirm_timeout_s": 5})").status, 503);
  EXPECT_EQ(get("/v1/config").status, 503);  // reads answer after a barrier too
}

}  // namespace
}  // namespace herald::config_revisions

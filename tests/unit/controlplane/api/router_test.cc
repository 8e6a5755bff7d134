// api::Router through a real HTTP server: routing by method and pattern, path parameters,
// 404/405/401/403, HEAD through GET, and the query and percent-decoding helpers.
#include "controlplane/api/router.h"

#include <gtest/gtest.h>

#include <string>

#include "controlplane/api/json_codec.h"
#include "tests/unit/controlplane/api/http_client.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::api {
namespace {

using testing::http_request;

// "[principal]", built by appends: `"[" + std::string(...)` trips GCC 12's -Wrestrict false
// positive at -O3 (a release build of the tests).
std::string bracketed(std::string_view principal) {
  std::string out = "[";
  out += principal;
  out += ']';
  return out;
}

// Keys "read-key" and "admin-key"; anything else is unknown.
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
  // The admin key is named; the read key is not (its calls carry an empty principal).
  std::string principal(const http::Request& request) const override {
    return request.value("Authorization") == "Bearer admin-key" ? "ops-admin" : "";
  }
};

struct RoutedHandler : http::Handler {
  FixedKeys keys;
  Router router{&keys};
  RoutedHandler() {
    router.add(http::Method::kGet, "/v1/health", Scope::kRead,
               [](Call& call) { call.respond_json(200, R"({"status":"ok"})"); });
    router.add(http::Method::kPost, "/v1/config/{rev}/commit", Scope::kAdmin, [](Call& call) {
      call.respond_json(200, "{\"rev\":\"" + std::string(call.param(0)) + "\",\"body\":\"" +
                                 std::string(call.body) + "\"}");
    });
    router.add(
        http::Method::kGet, "/v1/accounts/{id}/devices/{device}", Scope::kRead, [](Call& call) {
          call.respond_json(200, std::string(call.param(0)) + "|" + std::string(call.param(1)));
        });
    router.add(http::Method::kGet, "/v1/accounts/{id}", Scope::kRead,
               [](Call& call) { call.respond_json(200, "by-id"); });
    // Added after the parameter route, still preferred for its literal segment.
    router.add(http::Method::kGet, "/v1/accounts/by-phone", Scope::kRead,
               [](Call& call) { call.respond_json(200, "by-phone"); });
    router.add(http::Method::kPost, "/v1/open", Scope::kPublic,
               [](Call& call) { call.respond_error(400, "bad_thing", "a \"quoted\" message"); });
    router.add(http::Method::kGet, "/v1/whoami", Scope::kRead,
               [](Call& call) { call.respond_json(200, bracketed(call.principal)); });
    router.add(http::Method::kGet, "/v1/public-whoami", Scope::kPublic,
               [](Call& call) { call.respond_json(200, bracketed(call.principal)); });
    // Echoes page_query(): "<limit>|<after or ->", default 100, largest 1000.
    router.add(http::Method::kGet, "/v1/page", Scope::kPublic, [](Call& call) {
      std::optional<PageQuery> page = page_query(call, 100, 1000);
      if (!page) return;
      call.respond_json(200, std::to_string(page->limit) + "|" + page->after.value_or("-"));
    });
  }
  void handle(const http::Request& request, std::string_view body,
              http::Responder& responder) override {
    router.handle(request, body, responder);
  }
};

using Server = http::testing::LoopServer<RoutedHandler>;

TEST(Router, RoutesByMethodAndPatternWithParameters) {
  Server server{http::ServerLimits{}};
  ASSERT_NE(server.port(), 0);
  auto r =
      http_request(server.port(), "GET", "/v1/health", {}, "Authorization: Bearer read-key\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"status":"ok"})");
  EXPECT_EQ(r.header("Content-Type"), "application/json");

  r = http_request(server.port(), "POST", "/v1/config/42/commit", "x",
                   "Authorization: Bearer admin-key\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"rev":"42","body":"x"})");

  r = http_request(server.port(), "GET", "/v1/accounts/%2B1555/devices/7", {},
                   "Authorization: Bearer read-key\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "+1555|7");
}

TEST(Router, LiteralSegmentWinsOverParameter) {
  Server server{http::ServerLimits{}};
  const std::string_view key = "Authorization: Bearer read-key\r\n";
  EXPECT_EQ(http_request(server.port(), "GET", "/v1/accounts/by-phone", {}, key).body, "by-phone");
  EXPECT_EQ(http_request(server.port(), "GET", "/v1/accounts/abc", {}, key).body, "by-id");
}

TEST(Router, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  Server server{http::ServerLimits{}};
  auto r = http_request(server.port(), "GET", "/v1/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("\"error\":\"not_found\""), std::string::npos) << r.body;
  // One segment more or less than a pattern is not a match either.
  EXPECT_EQ(http_request(server.port(), "POST", "/v1/config/42").status, 404);
  EXPECT_EQ(http_request(server.port(), "POST", "/v1/config/42/commit/x").status, 404);

  r = http_request(server.port(), "DELETE", "/v1/health", {},
                   "Authorization: Bearer admin-key\r\n");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "GET, HEAD");
  EXPECT_NE(r.body.find("method_not_allowed"), std::string::npos);
}

TEST(Router, MissingOrBadKeyIs401AndMissingScopeIs403) {
  Server server{http::ServerLimits{}};
  auto r = http_request(server.port(), "GET", "/v1/health");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer realm=\"herald\"");
  EXPECT_NE(r.body.find("\"error\":\"unauthenticated\""), std::string::npos);
  EXPECT_EQ(
      http_request(server.port(), "GET", "/v1/health", {}, "Authorization: Bearer nope\r\n").status,
      401);
  r = http_request(server.port(), "POST", "/v1/config/1/commit", {},
                   "Authorization: Bearer read-key\r\n");
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("'admin' scope"), std::string::npos) << r.body;
  // The scope is checked before the handler runs: nothing routed.
}

TEST(Router, HeadIsAnsweredByTheGetRoute) {
  Server server{http::ServerLimits{}};
  auto r =
      http_request(server.port(), "HEAD", "/v1/health", {}, "Authorization: Bearer read-key\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.header("Content-Length"), "15");
}

TEST(Router, BadPercentEncodingInAParameterIs400) {
  Server server{http::ServerLimits{}};
  // The parser validates percent-encoding of the target already; an encoded NUL passes it and
  // is refused here.
  auto r = http_request(server.port(), "GET", "/v1/accounts/a%00b/devices/1", {},
                        "Authorization: Bearer read-key\r\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad_path"), std::string::npos);
}

TEST(Router, PublicRouteNeedsNoKeyAndErrorsAreEscapedJson) {
  Server server{http::ServerLimits{}};
  auto r = http_request(server.port(), "POST", "/v1/open", "{}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, R"({"error":"bad_thing","message":"a \"quoted\" message"})");
}

TEST(Router, PrincipalOfTheAuthenticatorReachesTheHandler) {
  Server server{http::ServerLimits{}};
  EXPECT_EQ(
      http_request(server.port(), "GET", "/v1/whoami", {}, "Authorization: Bearer admin-key\r\n")
          .body,
      "[ops-admin]");
  EXPECT_EQ(
      http_request(server.port(), "GET", "/v1/whoami", {}, "Authorization: Bearer read-key\r\n")
          .body,
      "[]");
  // A public route asks nobody: even a named key's request carries no principal there.
  EXPECT_EQ(http_request(server.port(), "GET", "/v1/public-whoami", {},
                         "Authorization: Bearer admin-key\r\n")
                .body,
            "[]");
}

TEST(Router, PageQueryLimitsAndCursorAtTheirEdges) {
  Server server{http::ServerLimits{}};
  auto page = [&](std::string_view query) {
    return http_request(server.port(), "GET", "/v1/page" + std::string(query));
  };
  EXPECT_EQ(page("").body, "100|-");
  EXPECT_EQ(page("?limit=1").body, "1|-");
  EXPECT_EQ(page("?limit=1000").body, "1000|-");
  EXPECT_EQ(page("?limit=0001000&after=%61b").body, "1000|ab");
  for (std::string_view bad : {"?limit=0", "?limit=1001", "?limit=", "?limit", "?limit=-1",
                               "?limit=1x", "?limit=99999999999999999999"}) {
    auto r = page(bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.body.find("\"error\":\"invalid_limit\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"field\":\"limit\""), std::string::npos) << r.body;
  }
  // A bad escape ("%zz") is refused by the HTTP parser before any route; an encoded NUL
  // passes it and is refused here.
  for (std::string_view bad : {"?after=", "?after", "?after=%00"}) {
    auto r = page(bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.body.find("\"error\":\"invalid_cursor\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"field\":\"after\""), std::string::npos) << r.body;
  }
}

TEST(RouterHelpers, PercentDecode) {
  EXPECT_EQ(percent_decode("%2B15551234567"), "+15551234567");
  EXPECT_EQ(percent_decode("a+b"), "a+b");
  EXPECT_EQ(percent_decode("%41%62"), "Ab");
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_FALSE(percent_decode("%"));
  EXPECT_FALSE(percent_decode("%4"));
  EXPECT_FALSE(percent_decode("%zz"));
  EXPECT_FALSE(percent_decode("%00"));
}

TEST(RouterHelpers, QueryParam) {
  EXPECT_EQ(query_param("phone=%2B1555&limit=10", "phone"), "+1555");
  EXPECT_EQ(query_param("phone=%2B1555&limit=10", "limit"), "10");
  EXPECT_EQ(query_param("flag&x=1", "flag"), "");
  EXPECT_FALSE(query_param("phone=1", "limit"));
  EXPECT_FALSE(query_param("", "limit"));
  EXPECT_FALSE(query_param("limit=%zz", "limit"));
  EXPECT_TRUE(has_query_param("limit=%zz", "limit"));
  EXPECT_TRUE(has_query_param("a=1&flag", "flag"));
  EXPECT_FALSE(has_query_param("flagged=1", "flag"));
  EXPECT_FALSE(has_query_param("", "flag"));
}

TEST(RouterDeathTest, DuplicateRouteAborts) {
  FixedKeys keys;
  Router router(&keys);
  router.add(http::Method::kGet, "/v1/x/{id}", Scope::kRead, [](Call&) {});
  EXPECT_DEATH(router.add(http::Method::kGet, "/v1/x/{other}", Scope::kRead, [](Call&) {}),
               "route added twice");
}

TEST(RouterDeathTest, ScopedRouteWithoutAuthenticatorAborts) {
  Router router(nullptr);
  EXPECT_DEATH(router.add(http::Method::kGet, "/v1/x", Scope::kRead, [](Call&) {}),
               "needs an authenticator");
}

}  // namespace
}  // namespace herald::api

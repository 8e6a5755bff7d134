// Routes the requests of one listener to handlers by method and path pattern, and enforces the
// admin API's authentication: each route names the scope it needs, and an Authenticator (the
// API key store) decides. Answers 404, 405 (with Allow), 401 and 403 itself, with the JSON
// error body every API error has.
//
//   Router router(&api_keys);
//   router.add(http::Method::kGet, "/v1/health", Scope::kRead, [&](Call& call) {
//     call.respond_json(200, health_json());
//   });
//   router.add(http::Method::kPost, "/v1/config/{rev}/commit", Scope::kAdmin, [&](Call& call) {
//     std::string_view rev = call.param(0);   // percent-decoded
//     ...
//   });
//   http::Server::create(loop, router, limits);
//
// A GET route also answers HEAD (the server sends the head only). Single-threaded (the loop).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/http/request.h"
#include "controlplane/http/server.h"
#include "controlplane/storage/tables.h"

namespace herald::api {

// What a route needs. Public routes (the registration API) need nothing; admin routes need an
// API key with at least the route's scope (kAdmin includes kRead).
enum class Scope : uint8_t { kPublic = 0, kRead = 1, kAdmin = 2 };
std::string_view scope_name(Scope scope);

enum class AuthOutcome : uint8_t {
  kAllowed,
  kUnauthenticated,  // no key, a malformed one, or an unknown or revoked one: 401
  kForbidden,        // a valid key without the scope: 403
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Decides from the request's credentials (Authorization: Bearer <key>, or the mTLS peer).
  virtual AuthOutcome authenticate(const http::Request& request, Scope needed) = 0;
  // Who the request's credentials name, for what the API records about its caller (a config
  // revision's author). Asked only after authenticate() allowed the same request; empty means
  // "nobody in particular" and handlers fall back to a fixed name.
  virtual std::string principal(const http::Request& /*request*/) const { return {}; }
};

inline constexpr size_t kMaxPathParams = 4;

// One routed request. Valid during the route's call only, except `responder`, which may be
// copied to answer later (after a storage barrier).
struct Call {
  const http::Request& request;
  std::string_view body;
  http::Responder responder;
  std::array<std::string, kMaxPathParams> params;  // percent-decoded, in pattern order
  size_t param_count = 0;
  // Authenticator::principal() of an allowed request (empty on public routes).
  std::string_view principal;

  std::string_view param(size_t index) const { return params[index]; }
  void respond_json(int status, std::string_view json) {
    responder.respond(status, "application/json", json);
  }
  void respond_error(int status, std::string_view error, std::string_view message,
                     std::string_view field = {});
};

// Answers through a Responder copied out of a Call (after an asynchronous step).
void respond_json(http::Responder& responder, int status, std::string_view json);
void respond_error(http::Responder& responder, int status, std::string_view error,
                   std::string_view message, std::string_view field = {});

// Answers a write's JSON `body` with `status` once everything written before this call is
// durable (tables.h: one barrier, not a callback per write). When the barrier fails: 503
// store_unavailable, and `on_store_failure` (a counter's bump; may be empty) runs. A non-zero
// `retry_after_s` adds Retry-After (RFC 9110 §10.2.3, delay-seconds).
void respond_json_when_durable(storage::Tables& tables, const http::Responder& responder,
                               int status, std::string body, uint64_t retry_after_s = 0,
                               std::function<void()> on_store_failure = {});

using RouteFn = std::function<void(Call& call)>;

struct RouterStats {
  uint64_t routed = 0;
  uint64_t not_found = 0;
  uint64_t method_not_allowed = 0;
  uint64_t bad_path = 0;  // a path parameter that does not percent-decode
  uint64_t unauthenticated = 0;
  uint64_t forbidden = 0;
};

class Router final : public http::Handler {
 public:
  // `authenticator` decides for routes above kPublic; nullptr means the listener serves public
  // routes only (adding another is a programming error and aborts).
  explicit Router(Authenticator* authenticator);

  // `pattern`: segments separated by '/', each a literal or "{name}" (one whole segment, at
  // most kMaxPathParams of them). A pattern given twice for one method aborts.
  void add(http::Method method, std::string_view pattern, Scope scope, RouteFn fn);

  void handle(const http::Request& request, std::string_view body,
              http::Responder& responder) override;

  const RouterStats& stats() const { return stats_; }

 private:
  struct Route {
    http::Method method;
    std::vector<std::string> segments;  // "{...}" for a parameter
    std::string pattern;
    Scope scope;
    RouteFn fn;
  };

  Authenticator* authenticator_;
  std::vector<Route> routes_;
  RouterStats stats_;
};

// Percent-decodes `text` (RFC 3986 §2.1); nullopt for a bad escape or an encoded NUL. '+' is
// kept as is (it is literal in a path, and phone numbers start with it).
std::optional<std::string> percent_decode(std::string_view text);

// The value of `name` in a query string ("a=1&b=2"), percent-decoded; nullopt when absent or
// badly encoded.
std::optional<std::string> query_param(std::string_view query, std::string_view name);
// Whether the query string has `name` at all (with any value, or none).
bool has_query_param(std::string_view query, std::string_view name);

// ?limit=N&after=<cursor> of a paged listing (GET /v1/accounts, GET /v1/groups): the page
// answers the first `limit` items whose key is above `after` (from the start without it) and a
// "next" cursor while more remain.
struct PageQuery {
  size_t limit = 0;
  std::optional<std::string> after;  // percent-decoded; the listing checks its syntax
};
// Parses both parameters; answers 400 itself (`invalid_limit` for anything but a decimal in
// 1..max_limit, `invalid_cursor` for an empty or badly encoded `after`, each naming its field)
// and returns nullopt.
std::optional<PageQuery> page_query(Call& call, size_t default_limit, size_t max_limit);

}  // namespace herald::api

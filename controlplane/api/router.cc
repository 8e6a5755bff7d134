// Path routing and the admin API's scope checks (router.h).
#include "controlplane/api/router.h"

#include <string>

#include "controlplane/api/json_codec.h"
#include "platform/assert/assert.h"

namespace herald::api {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  if (path.empty() || path.front() != '/') return segments;
  path.remove_prefix(1);
  while (true) {
    const size_t slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segments;
}

bool is_param(std::string_view segment) {
  return segment.size() >= 3 && segment.front() == '{' && segment.back() == '}';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view method_token(http::Method method) {
  switch (method) {
    case http::Method::kGet: return "GET";
    case http::Method::kHead: return "HEAD";
    case http::Method::kPost: return "POST";
    case http::Method::kPut: return "PUT";
    case http::Method::kDelete: return "DELETE";
    case http::Method::kPatch: return "PATCH";
    case http::Method::kOptions: return "OPTIONS";
    case http::Method::kTrace: return "TRACE";
    case http::Method::kOther: break;
  }
  return "";
}

// The raw (still percent-encoded) value of `name`; "" for "name" or "name=", nullopt when the
// query has no such parameter.
std::optional<std::string_view> raw_query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace

std::string_view scope_name(Scope scope) {
  switch (scope) {
    case Scope::kPublic: return "public";
    case Scope::kRead: return "read";
    case Scope::kAdmin: return "admin";
  }
  return "unknown";
}

void respond_json(http::Responder& responder, int status, std::string_view json) {
  responder.respond(status, "application/json", json);
}

void respond_error(http::Responder& responder, int status, std::string_view error,
                   std::string_view message, std::string_view field) {
  responder.respond(status, "application/json", error_json(error, message, field));
}

void respond_json_when_durable(storage::Tables& tables, const http::Responder& responder,
                               int status, std::string body, uint64_t retry_after_s,
                               std::function<void()> on_store_failure) {
  tables.barrier([responder = http::Responder(responder), status, body = std::move(body),
                  retry_after_s,
                  on_store_failure = std::move(on_store_failure)](const absl::Status& s) mutable {
    if (!s.ok()) {
      if (on_store_failure) on_store_failure();
      respond_error(responder, 503, "store_unavailable", "internal storage error; try again later");
      return;
    }
    if (retry_after_s != 0) {
      std::string seconds = std::to_string(retry_after_s);
      http::HeaderField retry_after{"Retry-After", seconds};
      responder.respond(status, "application/json", body, std::span(&retry_after, 1));
      return;
    }
    respond_json(responder, status, body);
  });
}

void Call::respond_error(int status, std::string_view error, std::string_view message,
                         std::string_view field) {
  api::respond_error(responder, status, error, message, field);
}

Router::Router(Authenticator* authenticator) : authenticator_(authenticator) {}

void Router::add(http::Method method, std::string_view pattern, Scope scope, RouteFn fn) {
  HERALD_CHECK(scope == Scope::kPublic || authenticator_ != nullptr,
               "a scoped route needs an authenticator");
  Route route{method, {}, std::string(pattern), scope, std::move(fn)};
  size_t params = 0;
  for (std::string_view segment : split_path(pattern)) {
    HERALD_CHECK(!segment.empty(), "empty segment in a route pattern");
    if (is_param(segment)) ++params;
    route.segments.emplace_back(segment);
  }
  HERALD_CHECK(!route.segments.empty() && params <= kMaxPathParams, "bad route pattern");
  auto same_shape = [](const std::vector<std::string>& a, const std::vector<std::string>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (is_param(a[i]) != is_param(b[i]) || (!is_param(a[i]) && a[i] != b[i])) return false;
    }
    return true;
  };
  for (const Route& other : routes_) {
    HERALD_CHECK(!(other.method == method && same_shape(other.segments, route.segments)),
                 "route added twice");
  }
  routes_.push_back(std::move(route));
}

void Router::handle(const http::Request& request, std::string_view body,
                    http::Responder& responder) {
  const std::vector<std::string_view> segments = split_path(request.path());
  // HEAD is answered by the GET route (the server drops the body).
  const http::Method method =
      request.method() == http::Method::kHead ? http::Method::kGet : request.method();

  // The route with the most literal segments wins ("/v1/accounts/by-phone" before
  // "/v1/accounts/{id}"), whatever the order they were added in.
  const Route* match = nullptr;
  size_t match_literals = 0;
  std::string allow;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    bool same_path = true;
    for (size_t i = 0; i < segments.size() && same_path; ++i) {
      same_path =
          is_param(route.segments[i]) ? !segments[i].empty() : route.segments[i] == segments[i];
    }
    if (!same_path) continue;
    if (route.method == method) {
      size_t literals = 0;
      for (const std::string& segment : route.segments) literals += is_param(segment) ? 0 : 1;
      if (match == nullptr || literals > match_literals) {
        match = &route;
        match_literals = literals;
      }
      continue;
    }
    if (!allow.empty()) allow += ", ";
    allow += method_token(route.method);
    if (route.method == http::Method::kGet) allow += ", HEAD";
  }

  if (match == nullptr) {
    if (allow.empty()) {
      ++stats_.not_found;
      respond_error(responder, 404, "not_found", "no such endpoint");
    } else {
      ++stats_.method_not_allowed;
      const http::HeaderField headers[] = {{"Allow", allow}};
      responder.respond(405, "application/json",
                        error_json("method_not_allowed", "the endpoint does not take this method"),
                        headers);
    }
    return;
  }

  std::string principal;
  if (match->scope != Scope::kPublic) {
    switch (authenticator_->authenticate(request, match->scope)) {
      case AuthOutcome::kAllowed: principal = authenticator_->principal(request); break;
      case AuthOutcome::kUnauthenticated: {
        ++stats_.unauthenticated;
        const http::HeaderField headers[] = {{"WWW-Authenticate", "Bearer realm=\"herald\""}};
        responder.respond(
            401, "application/json",
            error_json("unauthenticated", "an API key is needed: Authorization: Bearer <key>"),
            headers);
        return;
      }
      case AuthOutcome::kForbidden:
        ++stats_.forbidden;
        respond_error(responder, 403, "forbidden",
                      std::string("this endpoint needs an API key with the '") +
                          std::string(scope_name(match->scope)) + "' scope");
        return;
    }
  }

  Call call{request, body, responder, {}, 0, principal};
  for (size_t i = 0; i < segments.size(); ++i) {
    if (!is_param(match->segments[i])) continue;
    std::optional<std::string> decoded = percent_decode(segments[i]);
    if (!decoded) {
      ++stats_.bad_path;
      respond_error(responder, 400, "bad_path", "a path segment is not valid percent-encoding");
      return;
    }
    call.params[call.param_count++] = std::move(*decoded);
  }
  ++stats_.routed;
  match->fn(call);
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hex_value(text[i + 1]);
    const int lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    const char c = static_cast<char>(hi << 4 | lo);
    if (c == '\0') return std::nullopt;
    out.push_back(c);
    i += 2;
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  const std::optional<std::string_view> raw = raw_query_param(query, name);
  if (!raw) return std::nullopt;
  return percent_decode(*raw);
}

bool has_query_param(std::string_view query, std::string_view name) {
  return raw_query_param(query, name).has_value();
}

std::optional<PageQuery> page_query(Call& call, size_t default_limit, size_t max_limit) {
  const std::string_view query = call.request.query();
  PageQuery page{default_limit, std::nullopt};
  // Present but badly encoded is an error, not "absent": a client must not get the default
  // page size, or the first page, for a parameter it did send.
  if (const std::optional<std::string_view> raw = raw_query_param(query, "limit")) {
    const std::optional<std::string> text = percent_decode(*raw);
    size_t value = 0;
    bool ok = text && !text->empty() && text->size() <= 7;
    for (size_t i = 0; ok && i < text->size(); ++i) {
      const char c = (*text)[i];
      ok = c >= '0' && c <= '9';
      value = value * 10 + static_cast<size_t>(c - '0');
    }
    if (!ok || value < 1 || value > max_limit) {
      call.respond_error(400, "invalid_limit",
                         "limit must be a whole number from 1 to " + std::to_string(max_limit),
                         "limit");
      return std::nullopt;
    }
    page.limit = value;
  }
  if (const std::optional<std::string_view> raw = raw_query_param(query, "after")) {
    page.after = percent_decode(*raw);
    if (!page.after || page.after->empty()) {
      call.respond_error(400, "invalid_cursor", "after must be the next cursor of a page", "after");
      return std::nullopt;
    }
  }
  return page;
}

}  // namespace herald::api

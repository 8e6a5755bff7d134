// Handlers of the /v1/config endpoints (see config_api.h). Bodies that embed a whole NodeConfig
// are written here around config_to_json(); the others go through config_api.fbs.
#include "controlplane/config/config_api.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "schemas/config_api_fbs.h"
#include "schemas/config_api_generated.h"

namespace herald::config_revisions {
namespace {

// The author of a candidate whose caller the authenticator does not name (a revision made
// through an API key records the key's name instead).
constexpr std::string_view kAnonymousAuthor = "admin-api";

// A revision in a path: decimal, no sign, no leading '+', at most 20 digits.
std::optional<uint64_t> parse_revision(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(std::string(text), &value) || value == 0) return std::nullopt;
  return value;
}

void append_string_array(std::string& out, const std::vector<std::string>& items) {
  out += '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i != 0) out += ',';
    api::append_json_string(out, items[i]);
  }
  out += ']';
}

flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>> string_vector(
    flatbuffers::FlatBufferBuilder& fbb, const std::vector<std::string>& items) {
  std::vector<flatbuffers::Offset<flatbuffers::String>> offsets;
  offsets.reserve(items.size());
  for (const std::string& item : items) offsets.push_back(fbb.CreateString(item));
  return fbb.CreateVector(offsets);
}

// Maps an error of Revisions to an HTTP answer. The store's own failure comes first: once it
// has failed every apply() reports FailedPrecondition, which is not a 409.
void respond_status(api::Call& call, const storage::Tables& tables, const absl::Status& status) {
  if (!tables.status().ok() || absl::IsUnavailable(status) || absl::IsResourceExhausted(status)) {
    call.respond_error(503, "store_unavailable", "the store could not make this durable");
  } else if (absl::IsNotFound(status)) {
    call.respond_error(404, "not_found", std::string(status.message()));
  } else if (absl::IsInvalidArgument(status)) {
    call.respond_error(400, "invalid_request", std::string(status.message()));
  } else if (absl::IsFailedPrecondition(status)) {
    call.respond_error(409, "conflict", std::string(status.message()));
  } else {
    call.respond_error(500, "internal", std::string(status.message()));
  }
}

}  // namespace

ConfigApi::ConfigApi(Revisions& revisions, storage::Tables& tables)
    : revisions_(revisions), tables_(tables), codec_(schemas::kConfigApiFbs, "config_api.fbs") {}

void ConfigApi::add_routes(api::Router& router) {
  using api::Scope;
  using http::Method;
  router.add(Method::kGet, "/v1/config", Scope::kRead, [this](api::Call& c) { get_config(c); });
  router.add(Method::kPost, "/v1/config", Scope::kAdmin, [this](api::Call& c) { post_config(c); });
  router.add(Method::kGet, "/v1/config/revisions", Scope::kRead,
             [this](api::Call& c) { list_revisions(c); });
  router.add(Method::kGet, "/v1/config/revisions/{rev}", Scope::kRead,
             [this](api::Call& c) { get_revision(c); });
  router.add(Method::kPost, "/v1/config/{rev}/commit", Scope::kAdmin,
             [this](api::Call& c) { commit(c); });
  router.add(Method::kPost, "/v1/config/{rev}/confirm", Scope::kAdmin,
             [this](api::Call& c) { confirm(c); });
}

void ConfigApi::respond_after_barrier(api::Call& call, int status, std::string json) {
  tables_.barrier(
      [responder = call.responder, status, json = std::move(json)](const absl::Status& s) mutable {
        if (!s.ok()) {
          api::respond_error(responder, 503, "store_unavailable",
                             "the store could not make this durable");
          return;
        }
        api::respond_json(responder, status, json);
      });
}

// {"revision": N, "pending_confirm": {...}?, "restart_required": [...],
//  "restart_required_fields": [...], "config": {...}}
//   restart_required: committed changes that wait for a restart (active vs running);
//   restart_required_fields: every field that needs a restart when it changes.
void ConfigApi::get_config(api::Call& call) {
  absl::StatusOr<std::string> config_json = config::config_to_json(revisions_.active());
  if (!config_json.ok()) {
    call.respond_error(500, "internal", std::string(config_json.status().message()));
    return;
  }
  std::string out = absl::StrCat("{\"revision\":", revisions_.active_revision());
  if (std::optional<PendingConfirm> pending = revisions_.pending()) {
    absl::StrAppend(&out, ",\"pending_confirm\":{\"revision\":", pending->revision,
                    ",\"previous_revision\":", pending->previous_revision,
                    ",\"deadline_unix_ms\":", pending->deadline_unix_ms, "}");
  }
  out += ",\"restart_required\":";
  append_string_array(out,
                      config::restart_required_changes(revisions_.running(), revisions_.active()));
  out += ",\"restart_required_fields\":";
  append_string_array(out, config::restart_required_fields());
  absl::StrAppend(&out, ",\"config\":", *config_json, "}");
  respond_after_barrier(call, 200, std::move(out));
}

void ConfigApi::post_config(api::Call& call) {
  absl::StatusOr<config::Config> candidate = config::load_config_from_string(call.body, "body");
  if (!candidate.ok()) {
    if (absl::IsInvalidArgument(candidate.status())) {
      call.respond_error(400, "invalid_config", std::string(candidate.status().message()),
                         config::error_field(candidate.status()));
    } else {
      call.respond_error(500, "internal", std::string(candidate.status().message()));
    }
    return;
  }
  std::string comment;
  if (!call.request.query().empty()) {
    std::optional<std::string> value = api::query_param(call.request.query(), "comment");
    if (value) comment = *std::move(value);
  }
  const std::string_view author = call.principal.empty() ? kAnonymousAuthor : call.principal;
  absl::StatusOr<uint64_t> revision = revisions_.add_candidate(*candidate, author, comment);
  if (!revision.ok()) {
    respond_status(call, tables_, revision.status());
    return;
  }
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto restart =
      string_vector(fbb, config::restart_required_changes(revisions_.active(), *candidate));
  fbb.Finish(config_api::CreateCandidateCreated(fbb, *revision, restart));
  respond_after_barrier(call, 201, codec_.to_json("herald.config_api.CandidateCreated", fbb));
}

void ConfigApi::list_revisions(api::Call& call) {
  size_t limit = kDefaultPageSize;
  uint64_t before = 0;
  const std::string_view query = call.request.query();
  if (std::optional<std::string> text = api::query_param(query, "limit")) {
    uint64_t value = 0;
    if (!absl::SimpleAtoi(*text, &value) || value < 1 || value > kMaxPageSize) {
      call.respond_error(400, "invalid_request", absl::StrCat("limit must be 1..", kMaxPageSize),
                         "limit");
      return;
    }
    limit = static_cast<size_t>(value);
  }
  if (std::optional<std::string> text = api::query_param(query, "before")) {
    std::optional<uint64_t> value = parse_revision(*text);
    if (!value) {
      call.respond_error(400, "invalid_request", "before must be a revision number", "before");
      return;
    }
    before = *value;
  }
  // One more than asked: whether there is a next page.
  std::vector<RevisionInfo> page = revisions_.list(before, limit + 1);
  const bool more = page.size() > limit;
  if (more) page.resize(limit);
  const std::optional<PendingConfirm> pending = revisions_.pending();

  flatbuffers::FlatBufferBuilder fbb(256 + page.size() * 128);
  std::vector<flatbuffers::Offset<config_api::ConfigRevision>> items;
  items.reserve(page.size());
  for (const RevisionInfo& info : page) {
    items.push_back(config_api::CreateConfigRevisionDirect(
        fbb, info.revision, info.created_unix_ms, info.author.c_str(), info.comment.c_str(),
        info.crc32c, info.revision == revisions_.active_revision(),
        pending && pending->revision == info.revision));
  }
  const auto vector = fbb.CreateVector(items);
  config_api::ConfigRevisionListBuilder list(fbb);
  list.add_revisions(vector);
  if (more) list.add_next_before(page.back().revision);
  fbb.Finish(list.Finish());
  respond_after_barrier(call, 200, codec_.to_json("herald.config_api.ConfigRevisionList", fbb));
}

// {"revision": N, "created_unix_ms": .., "author": "..", "comment": "..", "crc32c": ..,
//  "active": bool, "restart_required": [... vs the active revision], "config": {...}}
void ConfigApi::get_revision(api::Call& call) {
  const std::optional<uint64_t> revision = parse_revision(call.param(0));
  if (!revision) {
    call.respond_error(400, "invalid_request", "a revision is a positive decimal number");
    return;
  }
  const std::optional<RevisionInfo> info = revisions_.info(*revision);
  if (!info) {
    call.respond_error(404, "not_found", absl::StrCat("no config revision ", *revision));
    return;
  }
  absl::StatusOr<config::Config> config = revisions_.config(*revision);
  if (!config.ok()) {
    respond_status(call, tables_, config.status());
    return;
  }
  absl::StatusOr<std::string> config_json = config::config_to_json(*config);
  if (!config_json.ok()) {
    call.respond_error(500, "internal", std::string(config_json.status().message()));
    return;
  }
  std::string out = absl::StrCat("{\"revision\":", info->revision,
                                 ",\"created_unix_ms\":", info->created_unix_ms, ",\"author\":");
  api::append_json_string(out, info->author);
  out += ",\"comment\":";
  api::append_json_string(out, info->comment);
  absl::StrAppend(&out, ",\"crc32c\":", info->crc32c,
                  ",\"active\":", info->revision == revisions_.active_revision() ? "true" : "false",
                  ",\"restart_required\":");
  append_string_array(out, config::restart_required_changes(revisions_.active(), *config));
  absl::StrAppend(&out, ",\"config\":", *config_json, "}");
  respond_after_barrier(call, 200, std::move(out));
}

void ConfigApi::commit(api::Call& call) {
  const std::optional<uint64_t> revision = parse_revision(call.param(0));
  if (!revision) {
    call.respond_error(400, "invalid_request", "a revision is a positive decimal number");
    return;
  }
  std::optional<uint32_t> timeout_s;
  if (!call.body.empty()) {
    absl::StatusOr<const config_api::CommitRequest*> request =
        codec_.parse<config_api::CommitRequest>("herald.config_api.CommitRequest", call.body);
    if (!request.ok()) {
      call.respond_error(400, "invalid_request", std::string(request.status().message()));
      return;
    }
    if (const flatbuffers::Optional<uint32_t> t = (*request)->confirm_timeout_s(); t.has_value()) {
      if (*t < 1 || *t > kMaxConfirmTimeoutS) {
        call.respond_error(400, "invalid_request",
                           absl::StrCat("confirm_timeout_s must be 1..", kMaxConfirmTimeoutS),
                           "confirm_timeout_s");
        return;
      }
      timeout_s = *t;
    }
  }
  absl::StatusOr<CommitOutcome> outcome = revisions_.commit(*revision, timeout_s);
  if (!outcome.ok()) {
    respond_status(call, tables_, outcome.status());
    return;
  }
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto restart = string_vector(fbb, outcome->restart_required);
  config_api::CommitResponseBuilder response(fbb);
  response.add_active(outcome->active);
  response.add_restart_required(restart);
  if (outcome->confirm_deadline_unix_ms) {
    response.add_confirm_deadline_unix_ms(*outcome->confirm_deadline_unix_ms);
  }
  fbb.Finish(response.Finish());
  respond_after_barrier(call, 200, codec_.to_json("herald.config_api.CommitResponse", fbb));
}

void ConfigApi::confirm(api::Call& call) {
  const std::optional<uint64_t> revision = parse_revision(call.param(0));
  if (!revision) {
    call.respond_error(400, "invalid_request", "a revision is a positive decimal number");
    return;
  }
  if (absl::Status status = revisions_.confirm(*revision); !status.ok()) {
    respond_status(call, tables_, status);
    return;
  }
  flatbuffers::FlatBufferBuilder fbb(256);
  const auto restart = string_vector(
      fbb, config::restart_required_changes(revisions_.running(), revisions_.active()));
  fbb.Finish(config_api::CreateCommitResponse(fbb, revisions_.active_revision(), restart));
  respond_after_barrier(call, 200, codec_.to_json("herald.config_api.CommitResponse", fbb));
}

}  // namespace herald::config_revisions

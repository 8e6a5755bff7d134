// Account and group provisioning over the admin and public APIs (provision.h).
#include "tools/loadgen/provision.h"

#include <algorithm>
#include <functional>

#include "absl/strings/numbers.h"
#include "flatbuffers/idl.h"
#include "platform/auth/session_token.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"
#include "tools/client/public_api.h"

namespace herald::tools::loadgen {
namespace {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

absl::Status http_error(const AdminResponse& r, const std::string& what) {
  std::string text = what + ": HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 400);
  if (r.status == 401 || r.status == 403) return absl::PermissionDeniedError(text);
  if (r.status == 404) return absl::NotFoundError(text);
  if (r.status >= 500) return absl::UnavailableError(text);
  return absl::FailedPreconditionError(text);
}

// The value of "name": "..." in a flat JSON object (the group id of a GroupChanged).
std::string string_field(const std::string& json, const std::string& name) {
  const std::string key = "\"" + name + "\"";
  size_t at = json.find(key);
  if (at == std::string::npos) return {};
  at = json.find('"', json.find(':', at + key.size()));
  if (at == std::string::npos) return {};
  const size_t end = json.find('"', at + 1);
  return end == std::string::npos ? std::string() : json.substr(at + 1, end - at - 1);
}

}  // namespace

absl::StatusOr<std::vector<ProvisionedAccount>> parse_provision_response(
    std::string_view body, const std::vector<std::string>& expected) {
  flatbuffers::IDLOptions options;
  options.skip_unexpected_fields_in_json = true;
  flatbuffers::Parser parser(options);
  const std::string schema(schemas::kAdminFbs);
  if (!parser.Parse(schema.c_str())) return absl::InternalError("admin.fbs: " + parser.error_);
  if (!parser.SetRootType("herald.admin.ProvisionResponse")) {
    return absl::InternalError("admin.fbs has no ProvisionResponse");
  }
  const std::string json(body);
  if (!parser.ParseJson(json.c_str())) {
    return absl::DataLossError("provision response: " + parser.error_);
  }
  const auto* response =
      flatbuffers::GetRoot<admin::ProvisionResponse>(parser.builder_.GetBufferPointer());
  if (response->accounts() == nullptr || response->accounts()->size() != expected.size()) {
    return absl::DataLossError(
        "provision response: " + std::to_string(expected.size()) + " accounts asked, " +
        std::to_string(response->accounts() == nullptr ? 0 : response->accounts()->size()) +
        " returned");
  }
  std::vector<ProvisionedAccount> out;
  out.reserve(expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const admin::ProvisionedAccount* a = response->accounts()->Get(i);
    const std::string where = "provision response entry " + std::to_string(i);
    if (a->phone() == nullptr || a->phone()->str() != expected[i]) {
      return absl::DataLossError(where + ": not " + expected[i]);
    }
    if (a->account_id() == nullptr || a->token() == nullptr || a->device_id() == 0) {
      return absl::DataLossError(where + ": no account_id, device_id or token");
    }
    const auto id = auth::parse_account_id(a->account_id()->string_view());
    if (!id.has_value()) return absl::DataLossError(where + ": bad account_id");
    const auto token = auth::parse_token_text(a->token()->string_view());
    if (!token.has_value()) return absl::DataLossError(where + ": bad token");
    out.push_back({expected[i], *id, a->device_id(),
                   std::vector<uint8_t>(token->begin(), token->end()), a->token_expires_at_ms()});
  }
  return out;
}

absl::StatusOr<std::vector<ProvisionedAccount>> provision_admin(
    const AdminEndpoint& admin, const std::vector<std::string>& phones,
    const std::string& device_name, const std::function<void(size_t)>& progress) {
  std::vector<ProvisionedAccount> out;
  out.reserve(phones.size());
  for (size_t at = 0; at < phones.size(); at += kProvisionBatch) {
    const size_t n = std::min(kProvisionBatch, phones.size() - at);
    const std::vector<std::string> batch(phones.begin() + static_cast<ptrdiff_t>(at),
                                         phones.begin() + static_cast<ptrdiff_t>(at + n));
    std::string body = "{\"phones\": [";
    for (size_t i = 0; i < n; ++i) body += (i ? ", " : "") + json_string(batch[i]);
    body += "], \"device_name\": " + json_string(device_name) + "}";
    auto r = admin_request(admin, "POST", "/v1/accounts/provision", body);
    if (!r.ok()) return r.status();
    if (r->status != 200) return http_error(*r, "POST /v1/accounts/provision");
    auto accounts = parse_provision_response(r->body, batch);
    if (!accounts.ok()) return accounts.status();
    for (auto& a : *accounts) out.push_back(std::move(a));
    if (progress) progress(out.size());
  }
  return out;
}

absl::StatusOr<ProvisionedAccount> provision_public(const TlsStreamOptions& api,
                                                    const std::string& sms_log_path,
                                                    const std::string& phone,
                                                    const std::string& device_name) {
  if (auto expires = request_code(api, phone); !expires.ok()) return expires.status();
  auto code = code_from_sms_log(sms_log_path, phone);
  if (!code.ok()) return code.status();
  auto registration = verify_code(api, phone, *code, device_name);
  if (!registration.ok()) return registration.status();
  auto session = create_session(api, registration->credential);
  if (!session.ok()) return session.status();
  const auto id = auth::parse_account_id(registration->account_id);
  if (!id.has_value()) return absl::DataLossError("bad account id " + registration->account_id);
  return ProvisionedAccount{phone, *id, registration->device_id, std::move(session->token),
                            session->expires_at_ms};
}

absl::StatusOr<uint64_t> create_group(const AdminEndpoint& admin, const std::string& name,
                                      const std::vector<auth::AccountId>& members) {
  constexpr size_t kPerCall = 1024;  // GroupCreateRequest / GroupMembersRequest maxItems
  auto list = [&](size_t from, size_t to) {
    std::string out = "[";
    for (size_t i = from; i < to; ++i) {
      out += (i > from ? ", " : "") + json_string(auth::format_account_id(members[i]));
    }
    return out + "]";
  };
  const size_t first = std::min(kPerCall, members.size());
  auto r =
      admin_request(admin, "POST", "/v1/groups",
                    "{\"name\": " + json_string(name) + ", \"members\": " + list(0, first) + "}");
  if (!r.ok()) return r.status();
  if (r->status != 201 && r->status != 200) return http_error(*r, "POST /v1/groups");
  const std::string id_text = string_field(r->body, "group_id");
  uint64_t id = 0;
  if (id_text.size() != 16 || !absl::SimpleHexAtoi(id_text, &id)) {
    return absl::DataLossError("POST /v1/groups: no group_id in " + r->body.substr(0, 200));
  }
  for (size_t at = first; at < members.size(); at += kPerCall) {
    const size_t to = std::min(members.size(), at + kPerCall);
    auto add = admin_request(admin, "POST", "/v1/groups/" + id_text + "/members",
                             "{\"accounts\": " + list(at, to) + "}");
    if (!add.ok()) return add.status();
    if (add->status != 200) return http_error(*add, "POST /v1/groups/{id}/members");
  }
  return id;
}

}  // namespace herald::tools::loadgen

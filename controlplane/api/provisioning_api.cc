// The admin API's bulk provisioning (see provisioning_api.h).
#include "controlplane/api/provisioning_api.h"

#include <string>
#include <unordered_set>
#include <vector>

#include "controlplane/registration/auth_names.h"
#include "platform/log/log.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"

namespace herald::api {

namespace {

using registration::RegistrationError;

std::string_view view_of(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : std::string_view(s->data(), s->size());
}

}  // namespace

ProvisioningApi::ProvisioningApi(storage::Tables& tables, RegistrationApi& registration,
                                 UnixClock clock)
    : tables_(tables),
      registration_(registration),
      clock_(std::move(clock)),
      codec_(schemas::kAdminFbs, "admin.fbs") {}

void ProvisioningApi::add_routes(Router& router) {
  router.add(http::Method::kPost, "/v1/accounts/provision", Scope::kAdmin,
             [this](Call& call) { handle_provision(call); });
}

void ProvisioningApi::handle_provision(Call& call) {
  absl::StatusOr<const admin::ProvisionRequest*> req =
      codec_.parse<admin::ProvisionRequest>("herald.admin.ProvisionRequest", call.body);
  if (!req.ok()) {
    ++stats_->refused;
    call.respond_error(400, "bad_request", std::string(req.status().message()));
    return;
  }
  const auto* phones = (*req)->phones();
  const size_t count = phones == nullptr ? 0 : phones->size();
  if (count == 0 || count > kMaxProvisionPhones) {
    ++stats_->refused;
    call.respond_error(400, "too_many_phones",
                       "phones must hold 1 to " + std::to_string(kMaxProvisionPhones) + " numbers",
                       "phones");
    return;
  }
  const std::string_view device_name = view_of((*req)->device_name());
  if (!registration::is_valid_device_name(device_name)) {
    ++stats_->refused;
    call.respond_error(400, registration::error_name(RegistrationError::kInvalidDeviceName),
                       registration::error_message(RegistrationError::kInvalidDeviceName),
                       "device_name");
    return;
  }
  // All checked before anything is written, so a refusal changes nothing.
  registration::CatalogStore& store = registration_.store();
  std::unordered_set<uint64_t> seen;
  seen.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const std::string field = "phones[" + std::to_string(i) + "]";
    registration::PhoneParse phone = registration::parse_phone_number(view_of(phones->Get(i)));
    if (phone.error != registration::PhoneError::kOk) {
      ++stats_->refused;
      call.respond_error(
          400, registration::error_name(RegistrationError::kInvalidPhone),
          field + ": " +
              std::string(registration::error_message(RegistrationError::kInvalidPhone)) + " (" +
              std::string(registration::phone_error_name(phone.error)) + ")",
          field);
      return;
    }
    if (!seen.insert(phone.number.value()).second) {
      ++stats_->refused;
      call.respond_error(400, "duplicate_phone",
                         field + ": the number appears earlier in the request", field);
      return;
    }
    std::optional<registration::Account> existing = store.find_account_by_phone(phone.number);
    if (existing && existing->disabled_ms != 0) {
      ++stats_->refused;
      call.respond_error(
          409, registration::error_name(RegistrationError::kAccountDisabled),
          field + ": " +
              std::string(registration::error_message(RegistrationError::kAccountDisabled)),
          field);
      return;
    }
  }

  const uint64_t now_ms = clock_();
  flatbuffers::FlatBufferBuilder fbb(256 + count * 256);
  std::vector<flatbuffers::Offset<admin::ProvisionedAccount>> accounts;
  accounts.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const std::string_view phone_text = view_of(phones->Get(i));
    registration::VerifyResult verified =
        registration_.registrar().provision(phone_text, device_name, now_ms);
    if (verified.error == RegistrationError::kOk && revocation_hook_) {
      // As a verify does: revoking early is always safe.
      for (uint32_t revoked : verified.revoked_device_ids) {
        revocation_hook_(verified.account, revoked, now_ms + 1);
      }
    }
    registration::SessionResult session;
    if (verified.error == RegistrationError::kOk) {
      session = registration_.registrar().create_session(verified.credential,
                                                         registration_.key_ring(), now_ms);
    }
    if (verified.error != RegistrationError::kOk || session.error != RegistrationError::kOk) {
      // Checked above, so only the store can refuse now. What was committed before stays
      // (each phone is its own batch); the caller retries the request, which re-registers
      // those phones.
      const RegistrationError error =
          verified.error != RegistrationError::kOk ? verified.error : session.error;
      ++stats_->store_unavailable;
      HLOG_RATE_LIMITED(kError, "provisioning.failed", 1)
          .kv("index", i)
          .kv("error", std::string(registration::error_name(error)));
      call.respond_error(
          503, "store_unavailable",
          "internal storage error after " + std::to_string(i) + " of the phones; try again later");
      return;
    }
    if (verified.new_account) {
      ++stats_->accounts_created;
    } else {
      ++stats_->accounts_reregistered;
    }
    auto phone = fbb.CreateString(registration::parse_phone_number(phone_text).number.to_string());
    auto account = fbb.CreateString(registration::format_account_id(verified.account));
    auto credential = fbb.CreateString(verified.credential);
    auto token = fbb.CreateString(registration::token_text(session.token));
    accounts.push_back(admin::CreateProvisionedAccount(
        fbb, phone, account, verified.device_id, credential, token, session.claims.expires_at_ms));
  }
  fbb.Finish(admin::CreateProvisionResponse(fbb, fbb.CreateVector(accounts)));
  std::string body = codec_.to_json("herald.admin.ProvisionResponse", fbb);
  HLOG_INFO("provisioning.done").kv("accounts", count);
  std::shared_ptr<ProvisioningApiStats> stats = stats_;
  // Answered once every account, device and the key ring that signed the tokens is durable.
  tables_.barrier([responder = http::Responder(call.responder), body = std::move(body),
                   stats](const absl::Status& s) mutable {
    if (!s.ok()) {
      ++stats->store_unavailable;
      respond_error(responder, 503, "store_unavailable", "internal storage error; try again later");
      return;
    }
    ++stats->requests;
    respond_json(responder, 200, body);
  });
}

}  // namespace herald::api

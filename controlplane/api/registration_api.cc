// The public registration API's handlers (see registration_api.h).
#include "controlplane/api/registration_api.h"

#include <chrono>
#include <utility>

#include "controlplane/registration/auth_names.h"
#include "platform/log/log.h"
#include "schemas/public_api_fbs.h"
#include "schemas/public_api_generated.h"

namespace herald::api {

namespace {

using registration::RegistrationError;

std::string_view view_of(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : std::string_view(s->data(), s->size());
}

}  // namespace

uint64_t system_unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

absl::StatusOr<std::unique_ptr<RegistrationApi>> RegistrationApi::create(
    const RegistrationApiOptions& options, storage::Tables& tables,
    registration::CodeGateway& gateway) {
  if (options.key_rotation_interval_ms == 0) {
    return absl::InvalidArgumentError("key_rotation_interval_ms must be positive");
  }
  auto store = std::make_unique<registration::CatalogStore>(tables);
  absl::StatusOr<std::vector<uint8_t>> secret = store->load_or_create_node_secret();
  if (!secret.ok()) return secret.status();
  absl::StatusOr<registration::StoredKeyRing> ring =
      store->load_or_create_key_ring(options.keys, options.clock());
  if (!ring.ok()) return ring.status();
  return std::unique_ptr<RegistrationApi>(
      new RegistrationApi(options, tables, gateway, std::move(store), *secret, std::move(*ring)));
}

RegistrationApi::RegistrationApi(const RegistrationApiOptions& options, storage::Tables& tables,
                                 registration::CodeGateway& gateway,
                                 std::unique_ptr<registration::CatalogStore> store,
                                 std::span<const uint8_t> node_secret,
                                 registration::StoredKeyRing ring)
    : options_(options),
      tables_(tables),
      store_(std::move(store)),
      registrar_(std::make_unique<registration::Registrar>(options.registrar, *store_, gateway,
                                                           node_secret)),
      ring_(std::move(ring.ring)),
      rotated_at_ms_(ring.rotated_at_ms),
      codec_(schemas::kPublicApiFbs, "public_api.fbs") {}

void RegistrationApi::add_routes(Router& router) {
  router.add(http::Method::kPost, "/v1/accounts/code", Scope::kPublic,
             [this](Call& call) { handle_code(call); });
  router.add(http::Method::kPost, "/v1/accounts/verify", Scope::kPublic,
             [this](Call& call) { handle_verify(call); });
  router.add(http::Method::kPost, "/v1/sessions", Scope::kPublic,
             [this](Call& call) { handle_session(call); });
}

registration::SourceAddress RegistrationApi::peer_of(const Call& call) {
  if (peer_address_) {
    if (std::optional<registration::SourceAddress> peer =
            peer_address_(call.request, call.responder)) {
      return *peer;
    }
  }
  ++stats_->unknown_peer;
  HLOG_RATE_LIMITED(kWarn, "registration.unknown_peer_address", 1);
  return registration::SourceAddress::ipv4(0);
}

void RegistrationApi::answer_after_barrier(const http::Responder& responder, int status,
                                           std::string body, uint64_t retry_after_s) {
  respond_json_when_durable(tables_, responder, status, std::move(body), retry_after_s,
                            [stats = stats_] { ++stats->store_unavailable; });
}

void RegistrationApi::answer_error(const http::Responder& responder, RegistrationError error,
                                   std::string_view detail, std::string_view field) {
  std::string message(registration::error_message(error));
  if (!detail.empty()) {
    message += " (";
    message += detail;
    message += ")";
  }
  answer_after_barrier(responder, registration::http_status(error),
                       error_json(registration::error_name(error), message, field));
}

void RegistrationApi::handle_code(Call& call) {
  absl::StatusOr<const public_api::CodeRequest*> req =
      codec_.parse<public_api::CodeRequest>("herald.public_api.CodeRequest", call.body);
  if (!req.ok()) {
    // Nothing read or written: answered at once.
    ++stats_->bad_request;
    call.respond_error(400, "bad_request", std::string(req.status().message()));
    return;
  }
  std::optional<registration::CodeMethod> method =
      registration::parse_code_method(view_of((*req)->method()));
  if (!method) {
    call.respond_error(400, registration::error_name(RegistrationError::kInvalidMethod),
                       registration::error_message(RegistrationError::kInvalidMethod), "method");
    return;
  }
  const uint64_t now_ms = options_.clock();
  registration::RequestCodeResult result =
      registrar_->request_code(view_of((*req)->phone()), *method, peer_of(call), now_ms);
  switch (result.error) {
    case RegistrationError::kOk: {
      flatbuffers::FlatBufferBuilder fbb(64);
      fbb.Finish(public_api::CreateCodeResponse(fbb, result.expires_in_s));
      answer_after_barrier(call.responder, 200,
                           codec_.to_json("herald.public_api.CodeResponse", fbb));
      return;
    }
    case RegistrationError::kRateLimited: {
      flatbuffers::FlatBufferBuilder fbb(256);
      auto error = fbb.CreateString(std::string(registration::error_name(result.error)));
      auto message = fbb.CreateString(std::string(registration::error_message(result.error)));
      fbb.Finish(public_api::CreateRateLimitedBody(fbb, error, message, result.retry_after_s));
      answer_after_barrier(call.responder, 429,
                           codec_.to_json("herald.public_api.RateLimitedBody", fbb),
                           result.retry_after_s);
      return;
    }
    case RegistrationError::kInvalidPhone:
      answer_error(call.responder, result.error, registration::phone_error_name(result.phone_error),
                   "phone");
      return;
    default: answer_error(call.responder, result.error); return;
  }
}

void RegistrationApi::handle_verify(Call& call) {
  absl::StatusOr<const public_api::VerifyRequest*> req =
      codec_.parse<public_api::VerifyRequest>("herald.public_api.VerifyRequest", call.body);
  if (!req.ok()) {
    ++stats_->bad_request;
    call.respond_error(400, "bad_request", std::string(req.status().message()));
    return;
  }
  const uint64_t now_ms = options_.clock();
  registration::VerifyResult result = registrar_->verify(
      view_of((*req)->phone()), view_of((*req)->code()), view_of((*req)->device_name()), now_ms);
  switch (result.error) {
    case RegistrationError::kOk: {
      if (revocation_hook_) {
        // Pushed now rather than after the barrier: revoking early is always safe, and the old
        // devices must not keep logging in while the commit becomes durable.
        for (uint32_t revoked : result.revoked_device_ids) {
          ++stats_->revocations_pushed;
          revocation_hook_(result.account, revoked, now_ms + 1);
        }
      }
      flatbuffers::FlatBufferBuilder fbb(256);
      auto account = fbb.CreateString(registration::format_account_id(result.account));
      auto credential = fbb.CreateString(result.credential);
      fbb.Finish(public_api::CreateVerifyResponse(fbb, account, result.device_id, credential,
                                                  result.new_account));
      answer_after_barrier(call.responder, 200,
                           codec_.to_json("herald.public_api.VerifyResponse", fbb));
      return;
    }
    case RegistrationError::kInvalidCode: {
      flatbuffers::FlatBufferBuilder fbb(256);
      auto error = fbb.CreateString(std::string(registration::error_name(result.error)));
      auto message = fbb.CreateString(std::string(registration::error_message(result.error)));
      fbb.Finish(public_api::CreateInvalidCodeBody(fbb, error, message, result.attempts_left));
      answer_after_barrier(call.responder, registration::http_status(result.error),
                           codec_.to_json("herald.public_api.InvalidCodeBody", fbb));
      return;
    }
    case RegistrationError::kInvalidPhone:
      answer_error(call.responder, result.error, registration::phone_error_name(result.phone_error),
                   "phone");
      return;
    case RegistrationError::kInvalidDeviceName:
      answer_error(call.responder, result.error, {}, "device_name");
      return;
    default: answer_error(call.responder, result.error); return;
  }
}

void RegistrationApi::handle_session(Call& call) {
  absl::StatusOr<const public_api::SessionRequest*> req =
      codec_.parse<public_api::SessionRequest>("herald.public_api.SessionRequest", call.body);
  if (!req.ok()) {
    ++stats_->bad_request;
    call.respond_error(400, "bad_request", std::string(req.status().message()));
    return;
  }
  const uint64_t now_ms = options_.clock();
  registration::SessionResult result =
      registrar_->create_session(view_of((*req)->credential()), ring_, now_ms);
  if (result.error != RegistrationError::kOk) {
    answer_error(call.responder, result.error);
    return;
  }
  flatbuffers::FlatBufferBuilder fbb(256);
  auto token = fbb.CreateString(registration::token_text(result.token));
  fbb.Finish(public_api::CreateSessionResponse(fbb, token, result.claims.key_id,
                                               result.claims.expires_at_ms));
  // After a barrier too: the token is signed with a key whose ring record must be durable, and
  // the device it names may have been created a moment ago.
  answer_after_barrier(call.responder, 200,
                       codec_.to_json("herald.public_api.SessionResponse", fbb));
}

absl::Status RegistrationApi::update_options(const registration::RegistrarOptions& registrar,
                                             uint64_t token_ttl_ms,
                                             uint64_t key_rotation_interval_ms) {
  if (key_rotation_interval_ms == 0 || token_ttl_ms == 0) {
    return absl::InvalidArgumentError("token ttl and key rotation period must be positive");
  }
  if (absl::Status s = registrar_->update_options(registrar); !s.ok()) return s;
  options_.registrar = registrar_->options();
  ring_.set_token_ttl(token_ttl_ms, options_.clock());
  options_.keys.token_ttl_ms = token_ttl_ms;
  options_.key_rotation_interval_ms = key_rotation_interval_ms;
  return absl::OkStatus();
}

absl::Status RegistrationApi::rotate_keys_if_due(uint64_t now_ms) {
  registration::KeyRing next = ring_;
  uint64_t rotated_at_ms = rotated_at_ms_;
  bool changed = false;
  if (now_ms >= rotated_at_ms_ + options_.key_rotation_interval_ms) {
    if (absl::Status s = next.rotate(now_ms); !s.ok()) {
      ++stats_->key_rotation_failures;
      HLOG_RATE_LIMITED(kError, "registration.key_rotation_failed", 1).kv("status", s.ToString());
      return s;
    }
    rotated_at_ms = now_ms;
    changed = true;
  }
  if (next.drop_expired(now_ms) > 0) changed = true;
  if (!changed) return absl::OkStatus();
  // Stored before it signs anything: a restart must come back with the keys the dataplane
  // was given, never a re-generated key under an id it already holds.
  if (absl::Status s = store_->save_key_ring(next, rotated_at_ms); !s.ok()) {
    ++stats_->key_rotation_failures;
    HLOG_RATE_LIMITED(kError, "registration.key_ring_save_failed", 1).kv("status", s.ToString());
    return s;
  }
  if (rotated_at_ms != rotated_at_ms_) {
    ++stats_->key_rotations;
    HLOG_INFO("registration.key_rotated").kv("signing_key_id", next.signing_key().key_id);
  }
  ring_ = std::move(next);
  rotated_at_ms_ = rotated_at_ms;
  if (keys_hook_) {
    // The dataplane learns the new staged key only once its record is durable (see above).
    tables_.barrier([hook = keys_hook_, ring = ring_](const absl::Status& s) {
      if (s.ok()) hook(ring);
    });
  }
  return absl::OkStatus();
}

}  // namespace herald::api

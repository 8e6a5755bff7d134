// The push token API and the hint path to the notifier (see push_service.h).
#include "controlplane/push/push_service.h"

#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/credential.h"
#include "controlplane/registration/registrar.h"
#include "platform/log/log.h"
#include "schemas/public_api_fbs.h"
#include "schemas/public_api_generated.h"

namespace herald::push {
namespace {

std::string_view view_of(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : s->string_view();
}

}  // namespace

PushNotifierOptions notifier_options_from_config(const config::Config& config) {
  const config::Push& push = *config->push();
  PushNotifierOptions o;
  o.url = push.webhook_url()->str();
  o.ca_path = push.webhook_ca_path()->str();
  o.batch_size = push.batch_size();
  o.interval_ms = push.interval_ms();
  o.timeout_ms = push.timeout_ms();
  o.max_attempts = push.max_attempts();
  o.initial_backoff_ms = push.initial_backoff_ms();
  o.max_backoff_ms = std::max<uint64_t>(push.max_backoff_ms(), push.initial_backoff_ms());
  o.max_queued_hints = push.max_queued_hints();
  return o;
}

absl::StatusOr<std::unique_ptr<PushService>> PushService::create(
    uring::EventLoop& loop, storage::Tables& tables, registration::RegistrationStore& devices,
    const PushNotifierOptions& options, UnixClock clock) {
  std::unique_ptr<PushService> service(new PushService(tables, devices, std::move(clock)));
  PushService* self = service.get();
  auto notifier =
      PushNotifier::create(loop, options, [self](const auth::AccountId& account, uint32_t device) {
        return self->token_of_active_device(account, device);
      });
  if (!notifier.ok()) return notifier.status();
  service->notifier_ = std::move(*notifier);
  return service;
}

PushService::PushService(storage::Tables& tables, registration::RegistrationStore& devices,
                         UnixClock clock)
    : tables_(tables),
      devices_(devices),
      clock_(std::move(clock)),
      tokens_(tables),
      codec_(schemas::kPublicApiFbs, "public_api.fbs") {}

std::optional<PushToken> PushService::token_of_active_device(const auth::AccountId& account,
                                                             uint32_t device) {
  // A revoked device keeps its record (and its token row) but must not be woken any more.
  std::optional<registration::Device> d = devices_.find_device(account, device);
  if (!d || d->revoked_ms != 0) return std::nullopt;
  return tokens_.find(account, device);
}

void PushService::add_routes(api::Router& router) {
  router.add(http::Method::kPut, "/v1/devices/push-token", api::Scope::kPublic,
             [this](api::Call& call) { handle_put(call); });
}

void PushService::handle_put(api::Call& call) {
  absl::StatusOr<const public_api::PushTokenRequest*> req =
      codec_.parse<public_api::PushTokenRequest>("herald.public_api.PushTokenRequest", call.body);
  if (!req.ok()) {
    ++api_stats_.bad_request;
    call.respond_error(400, "bad_request", std::string(req.status().message()));
    return;
  }
  // The credential first: nothing about the token is said to someone who is not the device.
  const std::string_view credential = view_of((*req)->credential());
  std::optional<registration::Digest> hash = registration::credential_hash(credential);
  std::optional<registration::Device> device;
  if (hash) device = devices_.find_device_by_credential(*hash);
  if (!device || device->revoked_ms != 0 ||
      !registration::constant_time_equal(device->credential_hash, *hash)) {
    ++api_stats_.invalid_credential;
    call.respond_error(
        401, registration::error_name(registration::RegistrationError::kInvalidCredential),
        registration::error_message(registration::RegistrationError::kInvalidCredential));
    return;
  }
  std::optional<registration::Account> account = devices_.find_account(device->account);
  if (!account || account->disabled_ms != 0) {
    ++api_stats_.invalid_credential;
    const auto error = account ? registration::RegistrationError::kAccountDisabled
                               : registration::RegistrationError::kInvalidCredential;
    call.respond_error(registration::http_status(error), registration::error_name(error),
                       registration::error_message(error));
    return;
  }
  std::optional<PushPlatform> platform = parse_platform(view_of((*req)->platform()));
  if (!platform) {
    ++api_stats_.invalid_platform;
    call.respond_error(400, "invalid_platform", "platform must be apns, fcm or webhook",
                       "platform");
    return;
  }
  const std::string_view token = view_of((*req)->token());
  if (const TokenProblem problem = check_push_token(token); problem != TokenProblem::kNone) {
    ++api_stats_.invalid_token;
    call.respond_error(400, "invalid_push_token", token_problem_message(problem), "token");
    return;
  }
  if (absl::Status s = tokens_.put(device->account, device->device_id,
                                   PushToken{*platform, std::string(token), clock_()});
      !s.ok()) {
    ++api_stats_.store_unavailable;
    call.respond_error(503, "store_unavailable", "internal storage error; try again later");
    return;
  }
  flatbuffers::FlatBufferBuilder fbb(256);
  auto account_id = fbb.CreateString(auth::format_account_id(device->account));
  auto platform_text = fbb.CreateString(std::string(platform_name(*platform)));
  fbb.Finish(
      public_api::CreatePushTokenResponse(fbb, account_id, device->device_id, platform_text));
  // Answered once the token is durable: a device told "stored" is woken after any restart.
  ++api_stats_.tokens_stored;
  PushApiStats* stats = &api_stats_;
  tables_.barrier([responder = http::Responder(call.responder),
                   body = codec_.to_json("herald.public_api.PushTokenResponse", fbb),
                   stats](const absl::Status& s) mutable {
    if (!s.ok()) {
      ++stats->store_unavailable;
      api::respond_error(responder, 503, "store_unavailable",
                         "internal storage error; try again later");
      return;
    }
    api::respond_json(responder, 200, body);
  });
}

std::vector<std::pair<std::string, std::function<uint64_t()>>> PushService::counters() const {
  const PushNotifier* n = notifier_.get();
  const PushApiStats* a = &api_stats_;
  const PushTokenStore* t = &tokens_;
  return {
      {"push.hints", [n] { return n->stats().hints; }},
      {"push.coalesced", [n] { return n->stats().coalesced; }},
      {"push.disabled", [n] { return n->stats().disabled; }},
      {"push.no_token", [n] { return n->stats().no_token; }},
      {"push.sent", [n] { return n->stats().sent; }},
      {"push.batches_sent", [n] { return n->stats().batches_sent; }},
      {"push.failed", [n] { return n->stats().failed; }},
      {"push.retries", [n] { return n->stats().retries; }},
      {"push.dropped_queue_full", [n] { return n->stats().dropped_queue_full; }},
      {"push.dropped_gave_up", [n] { return n->stats().dropped_gave_up; }},
      {"push.dropped_rejected", [n] { return n->stats().dropped_rejected; }},
      {"push.tokens_stored", [a] { return a->tokens_stored; }},
      {"push.api.bad_request", [a] { return a->bad_request; }},
      {"push.api.invalid_platform", [a] { return a->invalid_platform; }},
      {"push.api.invalid_token", [a] { return a->invalid_token; }},
      {"push.api.invalid_credential", [a] { return a->invalid_credential; }},
      {"push.api.store_unavailable", [a] { return a->store_unavailable; }},
      {"push.token_decode_errors", [t] { return t->decode_errors(); }},
  };
}

std::vector<std::pair<std::string, std::function<uint64_t()>>> PushService::gauges() const {
  const PushNotifier* n = notifier_.get();
  const PushTokenStore* t = &tokens_;
  return {
      {"push.queued", [n] { return n->stats().queued; }},
      {"push.in_flight", [n] { return n->stats().in_flight; }},
      {"push.tokens", [t] { return static_cast<uint64_t>(t->size()); }},
  };
}

}  // namespace herald::push

// The public device-linking API's handlers (see devices_api.h).
#include "controlplane/api/devices_api.h"

#include <string>

#include "controlplane/registration/auth_names.h"
#include "platform/log/log.h"
#include "schemas/public_api_fbs.h"
#include "schemas/public_api_generated.h"

namespace herald::api {

namespace {

using registration::LinkError;

std::string_view view_of(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : std::string_view(s->data(), s->size());
}

}  // namespace

DevicesApi::DevicesApi(const registration::DeviceLinkerOptions& options, storage::Tables& tables,
                       registration::CatalogStore& store, UnixClock clock)
    : tables_(tables),
      linker_(options, store),
      clock_(std::move(clock)),
      codec_(schemas::kPublicApiFbs, "public_api.fbs") {}

void DevicesApi::add_routes(Router& router) {
  router.add(http::Method::kPost, "/v1/devices/link-code", Scope::kPublic,
             [this](Call& call) { handle_link_code(call); });
  router.add(http::Method::kPost, "/v1/devices/link", Scope::kPublic,
             [this](Call& call) { handle_link(call); });
}

registration::SourceAddress DevicesApi::peer_of(const Call& call) {
  if (peer_address_) {
    if (std::optional<registration::SourceAddress> peer =
            peer_address_(call.request, call.responder)) {
      return *peer;
    }
  }
  // Fail closed: every unknown peer shares one rate-limit key.
  ++stats_->unknown_peer;
  return registration::SourceAddress::ipv4(0);
}

void DevicesApi::answer_after_barrier(const http::Responder& responder, int status,
                                      std::string body, uint64_t retry_after_s) {
  respond_json_when_durable(tables_, responder, status, std::move(body), retry_after_s,
                            [stats = stats_] { ++stats->store_unavailable; });
}

void DevicesApi::answer_error(const http::Responder& responder, LinkError error,
                              uint64_t retry_after_s, std::string_view field) {
  if (error == LinkError::kRateLimited) {
    flatbuffers::FlatBufferBuilder fbb(256);
    auto name = fbb.CreateString(std::string(registration::link_error_name(error)));
    auto message = fbb.CreateString(std::string(registration::link_error_message(error)));
    fbb.Finish(public_api::CreateRateLimitedBody(fbb, name, message, retry_after_s));
    answer_after_barrier(responder, 429, codec_.to_json("herald.public_api.RateLimitedBody", fbb),
                         retry_after_s);
    return;
  }
  answer_after_barrier(responder, registration::link_http_status(error),
                       error_json(registration::link_error_name(error),
                                  registration::link_error_message(error), field));
}

void DevicesApi::handle_link_code(Call& call) {
  absl::StatusOr<const public_api::LinkCodeRequest*> req =
      codec_.parse<public_api::LinkCodeRequest>("herald.public_api.LinkCodeRequest", call.body);
  if (!req.ok()) {
    ++stats_->bad_request;
    call.respond_error(400, "bad_request", std::string(req.status().message()));
    return;
  }
  registration::LinkCodeResult result =
      linker_.request_link_code(view_of((*req)->credential()), peer_of(call), clock_());
  if (result.error != LinkError::kOk) {
    answer_error(call.responder, result.error, result.retry_after_s);
    return;
  }
  flatbuffers::FlatBufferBuilder fbb(128);
  auto code = fbb.CreateString(result.link_code);
  fbb.Finish(public_api::CreateLinkCodeResponse(fbb, code, result.expires_in_s));
  // After a barrier although the code lives in memory: the credential it was asked with may
  // belong to a device created a moment ago, not yet durable.
  answer_after_barrier(call.responder, 200,
                       codec_.to_json("herald.public_api.LinkCodeResponse", fbb));
}

void DevicesApi::handle_link(Call& call) {
  absl::StatusOr<const public_api::LinkRequest*> req =
      codec_.parse<public_api::LinkRequest>("herald.public_api.LinkRequest", call.body);
  if (!req.ok()) {
    ++stats_->bad_request;
    call.respond_error(400, "bad_request", std::string(req.status().message()));
    return;
  }
  const uint64_t now_ms = clock_();
  registration::LinkResult result = linker_.link(
      view_of((*req)->link_code()), view_of((*req)->device_name()), peer_of(call), now_ms);
  if (result.error != LinkError::kOk) {
    answer_error(call.responder, result.error, result.retry_after_s,
                 result.error == LinkError::kInvalidDeviceName ? "device_name" : "");
    return;
  }
  HLOG_INFO("registration.device_linked")
      .kv("account", registration::format_account_id(result.account))
      .kv("device", result.device_id);
  flatbuffers::FlatBufferBuilder fbb(256);
  auto account = fbb.CreateString(registration::format_account_id(result.account));
  auto credential = fbb.CreateString(result.credential);
  fbb.Finish(public_api::CreateLinkResponse(fbb, account, result.device_id, credential));
  answer_after_barrier(call.responder, 200, codec_.to_json("herald.public_api.LinkResponse", fbb));
}

}  // namespace herald::api

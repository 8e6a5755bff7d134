// Push for stored messages, as the control plane runs it: devices register a push token on the
// public API, and the dataplane's PushHints go to the push notifier with the device's token.
//
//   PUT /v1/devices/push-token  {"credential","platform","token"}
//       -> 200 {"account_id","device_id","platform"} once the token is durable
//       400 bad_request | invalid_platform (field platform) | invalid_push_token (field token)
//       401 invalid_credential   403 account_disabled   503 store_unavailable
//
// Bodies are public_api.fbs PushTokenRequest / PushTokenResponse. Single-threaded (the control
// plane's loop).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/api/json_codec.h"
#include "controlplane/api/router.h"
#include "controlplane/push/push_notifier.h"
#include "controlplane/push/push_tokens.h"
#include "controlplane/registration/store.h"
#include "controlplane/storage/tables.h"
#include "platform/config/config.h"
#include "platform/uring/event_loop.h"

namespace herald::push {

struct PushApiStats {
  uint64_t tokens_stored = 0;
  uint64_t bad_request = 0;  // JSON the schema refused
  uint64_t invalid_platform = 0;
  uint64_t invalid_token = 0;       // length or alphabet
  uint64_t invalid_credential = 0;  // 401, and 403 for a disabled account
  uint64_t store_unavailable = 0;   // the batch refused or the barrier failed: 503
};

// The notifier's settings from the node config's `push` section.
PushNotifierOptions notifier_options_from_config(const config::Config& config);

class PushService {
 public:
  using UnixClock = std::function<uint64_t()>;
  // `tables` and `devices` (the registration store) must outlive the service.
  static absl::StatusOr<std::unique_ptr<PushService>> create(
      uring::EventLoop& loop, storage::Tables& tables, registration::RegistrationStore& devices,
      const PushNotifierOptions& options, UnixClock clock);
  PushService(const PushService&) = delete;
  PushService& operator=(const PushService&) = delete;

  void add_routes(api::Router& router);
  // From the store service: `device` is offline and has a new stored message.
  void on_push_hint(const auth::AccountId& account, uint32_t device) {
    notifier_->on_hint(account, device);
  }

  // Every counter (push.*) with its current value, for the counters segment.
  std::vector<std::pair<std::string, std::function<uint64_t()>>> counters() const;
  std::vector<std::pair<std::string, std::function<uint64_t()>>> gauges() const;

  // What the notifier sends for a device: its token while the device is active (a revoked
  // device keeps its token row but is never woken again).
  std::optional<PushToken> token_of_active_device(const auth::AccountId& account, uint32_t device);

  const PushApiStats& api_stats() const { return api_stats_; }
  const PushNotifier& notifier() const { return *notifier_; }
  PushTokenStore& tokens() { return tokens_; }

 private:
  PushService(storage::Tables& tables, registration::RegistrationStore& devices, UnixClock clock);
  void handle_put(api::Call& call);

  storage::Tables& tables_;
  registration::RegistrationStore& devices_;
  UnixClock clock_;
  PushTokenStore tokens_;
  api::JsonCodec codec_;  // public_api.fbs
  PushApiStats api_stats_;
  std::unique_ptr<PushNotifier> notifier_;
};

}  // namespace herald::push

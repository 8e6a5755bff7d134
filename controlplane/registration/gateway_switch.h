// The code gateway the registrar sends through, swappable while the node runs: a committed
// config revision may change the gateway kind or the webhook's URL, timeout or retries.
// A replaced webhook gateway is not destroyed at once (its destructor drops what it still
// queues): it finishes the codes it accepted and is destroyed by reap() once idle.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/registration/code_gateway.h"
#include "controlplane/registration/webhook_gateway.h"

namespace herald::registration {

class GatewaySwitch final : public CodeGateway {
 public:
  // `initial` must not be null.
  explicit GatewaySwitch(std::unique_ptr<CodeGateway> initial);
  ~GatewaySwitch() override;
  GatewaySwitch(const GatewaySwitch&) = delete;
  GatewaySwitch& operator=(const GatewaySwitch&) = delete;

  // Sends through the current gateway.
  absl::Status send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                         uint64_t now_ms) override;

  // Makes `next` (not null) the current gateway; the previous one retires (see above).
  void install(std::unique_ptr<CodeGateway> next);
  // Destroys retired gateways that have nothing left to deliver; returns how many. From the
  // owner's periodic tick, on the loop thread outside the gateways' callbacks.
  size_t reap();

  CodeGateway& current() { return *current_; }
  // The current gateway as a webhook, or null when it is another kind.
  WebhookGateway* current_webhook() const;
  size_t retiring() const { return retiring_.size(); }
  // Every webhook gateway's counters added up (current, retiring and destroyed ones), so the
  // exported counters never go back when a gateway is replaced. queued and in_flight are
  // gauges over the live ones.
  WebhookStats webhook_stats() const;

 private:
  static bool idle(const CodeGateway& gateway);

  std::unique_ptr<CodeGateway> current_;
  std::vector<std::unique_ptr<CodeGateway>> retiring_;
  WebhookStats destroyed_;  // counters of the webhook gateways reap() destroyed
};

}  // namespace herald::registration

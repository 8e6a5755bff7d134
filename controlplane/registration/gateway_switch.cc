// Swappable code gateway with draining retirement (see gateway_switch.h).
#include "controlplane/registration/gateway_switch.h"

#include <utility>

#include "platform/assert/assert.h"

namespace herald::registration {
namespace {

void add_counters(WebhookStats& to, const WebhookStats& from) {
  to.accepted += from.accepted;
  to.queue_full += from.queue_full;
  to.delivered += from.delivered;
  to.attempts += from.attempts;
  to.retries += from.retries;
  to.http_errors += from.http_errors;
  to.transport_errors += from.transport_errors;
  to.rejected += from.rejected;
  to.gave_up += from.gave_up;
  to.tls_failures += from.tls_failures;
  to.tls_handshakes += from.tls_handshakes;
  to.tls_resumed += from.tls_resumed;
}

}  // namespace

GatewaySwitch::GatewaySwitch(std::unique_ptr<CodeGateway> initial) : current_(std::move(initial)) {
  HERALD_CHECK(current_ != nullptr, "gateway switch needs a gateway");
}

GatewaySwitch::~GatewaySwitch() = default;

absl::Status GatewaySwitch::send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                                      uint64_t now_ms) {
  return current_->send_code(phone, method, code, now_ms);
}

void GatewaySwitch::install(std::unique_ptr<CodeGateway> next) {
  HERALD_CHECK(next != nullptr, "gateway switch needs a gateway");
  retiring_.push_back(std::move(current_));
  current_ = std::move(next);
  reap();  // a log gateway, or an idle webhook, goes at once
}

size_t GatewaySwitch::reap() {
  size_t destroyed = 0;
  std::erase_if(retiring_, [&](std::unique_ptr<CodeGateway>& gateway) {
    if (!idle(*gateway)) return false;
    if (const auto* webhook = dynamic_cast<const WebhookGateway*>(gateway.get())) {
      add_counters(destroyed_, webhook->stats());
    }
    ++destroyed;
    return true;
  });
  return destroyed;
}

bool GatewaySwitch::idle(const CodeGateway& gateway) {
  const auto* webhook = dynamic_cast<const WebhookGateway*>(&gateway);
  return webhook == nullptr || (webhook->stats().queued == 0 && webhook->stats().in_flight == 0);
}

WebhookGateway* GatewaySwitch::current_webhook() const {
  return dynamic_cast<WebhookGateway*>(current_.get());
}

WebhookStats GatewaySwitch::webhook_stats() const {
  WebhookStats total = destroyed_;
  auto add_live = [&](const CodeGateway& gateway) {
    if (const auto* webhook = dynamic_cast<const WebhookGateway*>(&gateway)) {
      add_counters(total, webhook->stats());
      total.queued += webhook->stats().queued;
      total.in_flight += webhook->stats().in_flight;
    }
  };
  add_live(*current_);
  for (const auto& gateway : retiring_) add_live(*gateway);
  return total;
}

}  // namespace herald::registration

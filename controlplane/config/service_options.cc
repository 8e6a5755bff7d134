// Node config -> service option structs (see service_options.h).
#include "controlplane/config/service_options.h"

#include <algorithm>

namespace herald::config_revisions {

http::ServerLimits server_limits(const config::HttpListener& listener) {
  http::ServerLimits limits;
  limits.max_connections = listener.max_connections();
  limits.max_connections_per_address = listener.max_connections_per_address();
  limits.max_requests_per_connection = listener.max_requests_per_connection();
  limits.header_timeout_ms = listener.header_timeout_ms();
  limits.body_timeout_ms = listener.body_timeout_ms();
  limits.idle_timeout_ms = listener.idle_timeout_ms();
  limits.parser.max_body_bytes = listener.max_body_bytes();
  return limits;
}

registration::RegistrarOptions registrar_options(const config::Registration& r) {
  registration::RegistrarOptions options;
  options.code_ttl_ms = uint64_t{r.code_ttl_s()} * 1000;
  options.max_verify_attempts = r.max_verify_attempts();
  options.phone_limits.rules[0] = {r.phone_short_interval_ms(), r.phone_short_burst()};
  options.phone_limits.rules[1] = {r.phone_hour_interval_ms(), r.phone_hour_burst()};
  options.phone_limits.rules[2] = {r.phone_day_interval_ms(), r.phone_day_burst()};
  options.phone_limits.rule_count = 3;
  options.phone_limits.capacity = r.phone_table_capacity();
  options.address_limits.rules = {};
  options.address_limits.rules[0] = {r.address_short_interval_ms(), r.address_short_burst()};
  options.address_limits.rules[1] = {r.address_day_interval_ms(), r.address_day_burst()};
  options.address_limits.rule_count = 2;
  options.address_limits.capacity = r.address_table_capacity();
  return options;
}

registration::KeyRingOptions key_ring_options(const config::SessionTokens& tokens) {
  registration::KeyRingOptions options;
  options.token_ttl_ms = uint64_t{tokens.token_ttl_s()} * 1000;
  return options;
}

registration::TokenVerifierOptions token_verifier_options(const config::SessionTokens& tokens) {
  registration::TokenVerifierOptions options;
  options.max_token_ttl_ms = uint64_t{tokens.token_ttl_s()} * 1000;
  options.max_clock_skew_ms = key_ring_options(tokens).max_clock_skew_ms;
  return options;
}

uint64_t key_rotation_period_ms(const config::SessionTokens& tokens) {
  return uint64_t{tokens.key_rotation_s()} * 1000;
}

registration::WebhookOptions webhook_options(const config::CodeGateway& gateway,
                                             const config::Registration& registration) {
  registration::WebhookOptions webhook;
  webhook.url = gateway.webhook_url()->str();
  webhook.ca_path = gateway.webhook_ca_path()->str();
  webhook.code_ttl_ms = uint64_t{registration.code_ttl_s()} * 1000;
  webhook.attempt_timeout_ms = gateway.webhook_timeout_ms();
  webhook.connect_timeout_ms =
      std::min<uint64_t>(webhook.connect_timeout_ms, gateway.webhook_timeout_ms());
  webhook.max_attempts = gateway.webhook_retries() + 1;
  return webhook;
}

}  // namespace herald::config_revisions

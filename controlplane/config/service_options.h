// The control-plane services' option structs made from the node config, so the values that
// used to be C++ defaults come from config.fbs (one source of defaults and ranges). The lead's
// wiring calls these at start-up and from the revisions apply hook for the hot fields.
#pragma once

#include "controlplane/http/server.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/registrar.h"
#include "controlplane/registration/webhook_gateway.h"
#include "platform/config/config.h"

namespace herald::config_revisions {

// Connection, request and timeout limits of one listener (admin_http or public_http). Fields
// the config does not carry (pipeline depth, receive buffers, send timeout, parser line and
// header limits) keep ServerLimits' defaults.
http::ServerLimits server_limits(const config::HttpListener& listener);

// Code TTL, verify attempts and both rate limiters' rules and capacities.
registration::RegistrarOptions registrar_options(const config::Registration& registration);

// Token lifetime for issuing, and the verifier's matching bound.
registration::KeyRingOptions key_ring_options(const config::SessionTokens& tokens);
registration::TokenVerifierOptions token_verifier_options(const config::SessionTokens& tokens);

// How often the key ring rotates.
uint64_t key_rotation_period_ms(const config::SessionTokens& tokens);

// The webhook code gateway's URL, timeouts and attempts, and the code TTL its expires_at
// carries (code_gateway.kind must be webhook for it to be used).
registration::WebhookOptions webhook_options(const config::CodeGateway& gateway,
                                             const config::Registration& registration);

}  // namespace herald::config_revisions

// The service option structs made from the default config equal the C++ defaults they replace,
// and each config field reaches its option.
#include "controlplane/config/service_options.h"

#include <gtest/gtest.h>

namespace herald::config_revisions {
namespace {

config::Config load(const std::string& json) {
  absl::StatusOr<config::Config> c = config::load_config_from_string(json, "test");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : config::default_config();
}

void expect_same_rules(const registration::RateLimiterOptions& a,
                       const registration::RateLimiterOptions& b) {
  ASSERT_EQ(a.rule_count, b.rule_count);
  EXPECT_EQ(a.capacity, b.capacity);
  for (size_t i = 0; i < a.rule_count; ++i) {
    EXPECT_EQ(a.rules[i].interval_ms, b.rules[i].interval_ms) << i;
    EXPECT_EQ(a.rules[i].burst, b.rules[i].burst) << i;
  }
}

TEST(ServiceOptions, DefaultsEqualTheFormerCppDefaults) {
  const config::Config& c = config::default_config();
  const http::ServerLimits cpp;
  for (const config::HttpListener* listener : {&c.admin_http(), &c.public_http()}) {
    const http::ServerLimits limits = server_limits(*listener);
    EXPECT_EQ(limits.max_connections, cpp.max_connections);
    EXPECT_EQ(limits.max_connections_per_address, cpp.max_connections_per_address);
    EXPECT_EQ(limits.max_requests_per_connection, cpp.max_requests_per_connection);
    EXPECT_EQ(limits.header_timeout_ms, cpp.header_timeout_ms);
    EXPECT_EQ(limits.body_timeout_ms, cpp.body_timeout_ms);
    EXPECT_EQ(limits.idle_timeout_ms, cpp.idle_timeout_ms);
    EXPECT_EQ(limits.parser.max_body_bytes, cpp.parser.max_body_bytes);
  }
  const registration::RegistrarOptions cpp_registrar;
  const registration::RegistrarOptions registrar = registrar_options(c.registration());
  EXPECT_EQ(registrar.code_ttl_ms, cpp_registrar.code_ttl_ms);
  EXPECT_EQ(registrar.max_verify_attempts, cpp_registrar.max_verify_attempts);
  expect_same_rules(registrar.phone_limits, registration::default_phone_limits());
  expect_same_rules(registrar.address_limits, registration::default_address_limits());
  EXPECT_EQ(key_ring_options(c.session_tokens()).token_ttl_ms,
            registration::KeyRingOptions{}.token_ttl_ms);
  EXPECT_EQ(token_verifier_options(c.session_tokens()).max_token_ttl_ms,
            registration::TokenVerifierOptions{}.max_token_ttl_ms);
  EXPECT_EQ(key_rotation_period_ms(c.session_tokens()), 86'400'000u);
}

TEST(ServiceOptions, ConfigValuesReachTheirOptions) {
  const config::Config c = load(R"({
    "public_http": {"max_connections": 7, "max_connections_per_address": 3,
                    "max_requests_per_connection": 9, "header_timeout_ms": 101,
                    "body_timeout_ms": 102, "idle_timeout_ms": 103, "max_body_bytes": 2048},
    "registration": {"code_ttl_s": 60, "max_verify_attempts": 2,
                     "phone_short_interval_ms": 1001, "phone_short_burst": 2,
                     "phone_hour_interval_ms": 1002, "phone_hour_burst": 3,
                     "phone_day_interval_ms": 1003, "phone_day_burst": 4,
                     "phone_table_capacity": 1024,
                     "address_short_interval_ms": 1004, "address_short_burst": 5,
                     "address_day_interval_ms": 1005, "address_day_burst": 6,
                     "address_table_capacity": 2048},
    "session_tokens": {"token_ttl_s": 600, "key_rotation_s": 7200}})");
  const http::ServerLimits limits = server_limits(c.public_http());
  EXPECT_EQ(limits.max_connections, 7u);
  EXPECT_EQ(limits.max_connections_per_address, 3u);
  EXPECT_EQ(limits.max_requests_per_connection, 9u);
  EXPECT_EQ(limits.header_timeout_ms, 101u);
  EXPECT_EQ(limits.body_timeout_ms, 102u);
  EXPECT_EQ(limits.idle_timeout_ms, 103u);
  EXPECT_EQ(limits.parser.max_body_bytes, 2048u);
  EXPECT_EQ(server_limits(c.admin_http()).max_connections, 10000u);  // untouched

  const registration::RegistrarOptions r = registrar_options(c.registration());
  EXPECT_EQ(r.code_ttl_ms, 60'000u);
  EXPECT_EQ(r.max_verify_attempts, 2u);
  EXPECT_EQ(r.phone_limits.rules[0].interval_ms, 1001u);
  EXPECT_EQ(r.phone_limits.rules[0].burst, 2u);
  EXPECT_EQ(r.phone_limits.rules[1].interval_ms, 1002u);
  EXPECT_EQ(r.phone_limits.rules[1].burst, 3u);
  EXPECT_EQ(r.phone_limits.rules[2].interval_ms, 1003u);
  EXPECT_EQ(r.phone_limits.rules[2].burst, 4u);
  EXPECT_EQ(r.phone_limits.capacity, 1024u);
  EXPECT_EQ(r.address_limits.rules[0].interval_ms, 1004u);
  EXPECT_EQ(r.address_limits.rules[0].burst, 5u);
  EXPECT_EQ(r.address_limits.rules[1].interval_ms, 1005u);
  EXPECT_EQ(r.address_limits.rules[1].burst, 6u);
  EXPECT_EQ(r.address_limits.capacity, 2048u);
  EXPECT_EQ(key_ring_options(c.session_tokens()).token_ttl_ms, 600'000u);
  EXPECT_EQ(token_verifier_options(c.session_tokens()).max_token_ttl_ms, 600'000u);
  EXPECT_EQ(key_rotation_period_ms(c.session_tokens()), 7'200'000u);
}

}  // namespace
}  // namespace herald::config_revisions

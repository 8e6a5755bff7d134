// Tests for what the config revisions API needs from platform/config: the field an error is
// about (error_field), the new formats and cross-field rules, and the schema-driven diff of two
// configs (changed_fields, restart_required_changes, restart_required_fields).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "flatbuffers/idl.h"
#include "platform/config/config.h"
#include "schemas/config_fbs.h"

namespace herald::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Config load_ok(const std::string& json) {
  absl::StatusOr<Config> config = load_config_from_string(json, "test.json");
  EXPECT_TRUE(config.ok()) << json << ": " << config.status();
  return config.ok() ? *std::move(config) : default_config();
}

// The error's field, or "<accepted>".
std::string field_of(const std::string& json) {
  absl::StatusOr<Config> config = load_config_from_string(json, "test.json");
  if (config.ok()) return "<accepted>";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  return error_field(config.status());
}

TEST(ConfigErrorField, RangeAndFormatErrorsNameTheirPath) {
  EXPECT_EQ(field_of(R"({"limits": {"max_frame_bytes": 100}})"), "limits.max_frame_bytes");
  EXPECT_EQ(field_of(R"({"node": {"data_dir": "rel"}})"), "node.data_dir");
  EXPECT_EQ(field_of(R"({"dataplane": {"cores": [1, 5000]}})"), "dataplane.cores[1]");
  EXPECT_EQ(field_of(R"({"shm": {"ring_bytes_per_worker": 100000}})"), "shm.ring_bytes_per_worker");
  EXPECT_EQ(field_of(R"({"admin_http": {"idle_timeout_ms": 99}})"), "admin_http.idle_timeout_ms");
}

TEST(ConfigErrorField, ParserErrorsNameTheEnclosingPath) {
  // Unknown field: the key itself.
  EXPECT_EQ(field_of(R"({"limits": {"max_frame": 1}})"), "limits.max_frame");
  // A wrong type, on a later line, after a nested object that closed.
  EXPECT_EQ(field_of("{\n \"node\": {\"id\": 2},\n \"limits\": {\"dedup_window\": \"x\"}\n}"),
            "limits.dedup_window");
  // A value that does not fit the type.
  EXPECT_EQ(field_of(R"({"node": {"id": 70000}})"), "node.id");
  // Reported at the end of its table, after a later field.
  EXPECT_EQ(field_of(R"({"node": {"id": 70000, "name": "n70000"}, "shm": {}})"), "node.id");
  EXPECT_EQ(field_of(R"({"limits": {"dedup_window": 16, "max_ids_per_ack": -1}})"),
            "limits.max_ids_per_ack");
  EXPECT_EQ(field_of(R"({"node": {"log_level": "loud"}})"), "node.log_level");
}

TEST(ConfigErrorField, CrossFieldRulesNameTheFieldToChange) {
  EXPECT_EQ(field_of(R"({"dataplane": {"workers": 3, "cores": [1, 2]}})"), "dataplane.cores");
  EXPECT_EQ(field_of(R"({"limits": {"max_frame_bytes": 4096, "max_body_bytes": 4000}})"),
            "limits.max_body_bytes");
}

TEST(ConfigErrorField, NoFieldForWholeDocumentErrors) {
  EXPECT_EQ(field_of("[]"), "");
  EXPECT_EQ(error_field(absl::OkStatus()), "");
}

TEST(ConfigRules, SessionKeysMustOutliveTheirTokens) {
  // (3600 + 30) / 6 = 605: 605 s is enough, 604 s is not.
  load_ok(R"({"session_tokens": {"token_ttl_s": 3600, "key_rotation_s": 605}})");
  EXPECT_EQ(field_of(R"({"session_tokens": {"token_ttl_s": 3600, "key_rotation_s": 604}})"),
            "session_tokens.key_rotation_s");
}

TEST(ConfigRules, WebhookGatewayNeedsAnHttpUrl) {
  EXPECT_EQ(field_of(R"({"code_gateway": {"kind": "webhook"}})"), "code_gateway.webhook_url");
  EXPECT_EQ(field_of(R"({"code_gateway": {"kind": "webhook", "webhook_url": "ftp://x"}})"),
            "code_gateway.webhook_url");
  EXPECT_EQ(field_of(R"({"code_gateway": {"webhook_url": "https://"}})"),
            "code_gateway.webhook_url");
  const Config c =
      load_ok(R"({"code_gateway": {"kind": "webhook", "webhook_url": "https://sms.example/v1"}})");
  EXPECT_EQ(c.code_gateway().kind(), CodeGatewayKind::webhook);
  load_ok(R"({"code_gateway": {"webhook_url": "http://10.0.0.1:8000/sms"}})");
}

TEST(ConfigRules, TlsCertAndKeyGoTogether) {
  EXPECT_EQ(field_of(R"({"tls": {"public_cert_path": "/etc/herald/cert.pem"}})"),
            "tls.public_key_path");
  EXPECT_EQ(field_of(R"({"tls": {"public_key_path": "/etc/herald/key.pem"}})"),
            "tls.public_cert_path");
  EXPECT_EQ(field_of(R"({"tls": {"admin_client_ca_path": "ca.pem"}})"), "tls.admin_client_ca_path");
  const Config c = load_ok(
      R"({"tls": {"public_cert_path": "/c.pem", "public_key_path": "/k.pem",
                  "admin_client_ca_path": "/ca.pem"}})");
  EXPECT_EQ(c.tls().admin_client_ca_path()->str(), "/ca.pem");
}

TEST(ConfigChanges, IdenticalConfigsHaveNoChanges) {
  const Config a = load_ok(R"({"dataplane": {"workers": 2, "cores": [3, 4]}})");
  const Config b = load_ok(R"({"dataplane": {"cores": [3, 4], "workers": 2}})");
  EXPECT_THAT(changed_fields(a, b), IsEmpty());
  EXPECT_THAT(restart_required_changes(a, b), IsEmpty());
}

TEST(ConfigChanges, HotChangesNeedNoRestart) {
  const Config to = load_ok(
      R"({"node": {"log_level": "debug"}, "limits": {"idle_timeout_ms": 5000},
          "registration": {"phone_hour_burst": 3}, "public_http": {"header_timeout_ms": 500}})");
  EXPECT_THAT(changed_fields(default_config(), to),
              ElementsAre("node.log_level", "limits.idle_timeout_ms",
                          "public_http.header_timeout_ms", "registration.phone_hour_burst"));
  EXPECT_THAT(restart_required_changes(default_config(), to), IsEmpty());
}

TEST(ConfigChanges, RestartFieldsAreReportedByPath) {
  const Config to = load_ok(
      R"({"node": {"log_level": "debug", "data_dir": "/srv"},
          "controlplane": {"admin_port": 9000},
          "dataplane": {"workers": 2, "cores": [1, 2], "dpdk_eal_args": ["-a", "x"]},
          "limits": {"max_connections": 20, "idle_timeout_ms": 5000},
          "registration": {"phone_table_capacity": 2048},
          "tls": {"admin_client_ca_path": "/ca.pem"}})");
  EXPECT_THAT(restart_required_changes(default_config(), to),
              ElementsAre("node.data_dir", "controlplane.admin_port", "dataplane.workers",
                          "dataplane.cores", "dataplane.dpdk_eal_args", "limits.max_connections",
                          "registration.phone_table_capacity", "tls.admin_client_ca_path"));
  // Symmetric: going back needs the same restarts.
  EXPECT_EQ(restart_required_changes(to, default_config()),
            restart_required_changes(default_config(), to));
}

TEST(ConfigChanges, AMarkedTableCoversEveryFieldInIt) {
  const Config to = load_ok(R"({"shm": {"counters_capacity": 8192}})");
  EXPECT_THAT(restart_required_changes(default_config(), to), ElementsAre("shm.counters_capacity"));
  const std::vector<std::string>& fields = restart_required_fields();
  EXPECT_NE(std::find(fields.begin(), fields.end(), "shm.ring_bytes_per_worker"), fields.end());
  EXPECT_NE(std::find(fields.begin(), fields.end(), "dataplane.workers"), fields.end());
  EXPECT_EQ(std::find(fields.begin(), fields.end(), "limits.max_frame_bytes"), fields.end());
  EXPECT_EQ(std::find(fields.begin(), fields.end(), "node.log_level"), fields.end());
}

TEST(ConfigChanges, VectorElementChangesAreSeen) {
  const Config a = load_ok(R"({"dataplane": {"dpdk_eal_args": ["-a", "x"]}})");
  const Config b = load_ok(R"({"dataplane": {"dpdk_eal_args": ["-a", "y"]}})");
  EXPECT_THAT(restart_required_changes(a, b), ElementsAre("dataplane.dpdk_eal_args"));
  const Config c = load_ok(R"({"dataplane": {"workers": 2, "cores": [1, 2]}})");
  const Config d = load_ok(R"({"dataplane": {"workers": 2, "cores": [1, 3]}})");
  EXPECT_THAT(changed_fields(c, d), ElementsAre("dataplane.cores"));
}

// Every leaf field path of the schema, with whether it needs a restart.
void leaf_fields(const flatbuffers::StructDef& def, const std::string& path, bool restart,
                 std::vector<std::pair<std::string, bool>>& out) {
  for (const flatbuffers::FieldDef* field : def.fields.vec) {
    const std::string name = path.empty() ? field->name : path + "." + field->name;
    const bool r = restart || field->attributes.Lookup("herald_restart") != nullptr;
    if (field->value.type.base_type == flatbuffers::BASE_TYPE_STRUCT) {
      leaf_fields(*field->value.type.struct_def, name, r, out);
    } else {
      out.emplace_back(name, r);
    }
  }
}

// docs/CONFIG.md lists every field with "restart" or "hot": a field added to the schema
// without its line there, or with the wrong one, fails here.
TEST(ConfigDocs, EveryFieldIsDocumentedWithItsRestartClass) {
  std::ifstream file(std::string(HERALD_SOURCE_DIR) + "/docs/CONFIG.md");
  ASSERT_TRUE(file.good());
  std::stringstream text;
  text << file.rdbuf();
  const std::string whole = text.str();
  const size_t section = whole.find("## Every field");
  ASSERT_NE(section, std::string::npos);
  const std::string doc = whole.substr(section);
  flatbuffers::Parser parser;
  const std::string schema(schemas::kConfigFbs);
  ASSERT_TRUE(parser.Parse(schema.c_str())) << parser.error_;
  std::vector<std::pair<std::string, bool>> fields;
  leaf_fields(*parser.root_struct_def_, "", false, fields);
  EXPECT_GE(fields.size(), 70u);
  size_t restart_count = 0;
  for (const auto& [path, restart] : fields) {
    SCOPED_TRACE(path);
    const size_t at = doc.find("| `" + path + "` |");
    ASSERT_NE(at, std::string::npos) << "not in docs/CONFIG.md";
    const std::string line = doc.substr(at, doc.find('\n', at) - at);
    EXPECT_THAT(line, HasSubstr(restart ? "| restart |" : "| hot |"));
    restart_count += restart ? 1 : 0;
  }
  EXPECT_EQ(restart_count, restart_required_fields().size());
}

}  // namespace
}  // namespace herald::config

// Tests for the node config loader: defaults, every section, strict JSON errors that name the
// field and line, and every schema range at its edges (driven by the schema's own attributes,
// so a range added to config.fbs is tested without touching this file).
#include "platform/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "flatbuffers/idl.h"
#include "flatbuffers/util.h"
#include "platform/log/log.h"
#include "schemas/config_fbs.h"

namespace herald::config {
namespace {

using ::testing::HasSubstr;

// node.log_level and node.log_format are handed to the logger by value: the enums must agree.
static_assert(static_cast<int>(LogLevel::debug) == static_cast<int>(log::Level::kDebug));
static_assert(static_cast<int>(LogLevel::info) == static_cast<int>(log::Level::kInfo));
static_assert(static_cast<int>(LogLevel::warn) == static_cast<int>(log::Level::kWarn));
static_assert(static_cast<int>(LogLevel::error) == static_cast<int>(log::Level::kError));
static_assert(static_cast<int>(LogFormat::text) == static_cast<int>(log::Format::kText));
static_assert(static_cast<int>(LogFormat::json) == static_cast<int>(log::Format::kJson));

std::string message(const absl::Status& status) {
  return std::string(status.message());
}

// Loads `json` and expects an InvalidArgument whose message contains every `needle`.
void expect_rejected(const std::string& json, std::initializer_list<std::string> needles) {
  SCOPED_TRACE(json);
  absl::StatusOr<Config> config = load_config_from_string(json, "test.json");
  ASSERT_FALSE(config.ok()) << "accepted";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  for (const std::string& needle : needles) {
    EXPECT_THAT(message(config.status()), HasSubstr(needle));
  }
}

Config load_ok(const std::string& json) {
  absl::StatusOr<Config> config = load_config_from_string(json, "test.json");
  EXPECT_TRUE(config.ok()) << json << ": " << config.status();
  return config.ok() ? *std::move(config) : default_config();
}

TEST(Config, DefaultsAreTheSchemaDefaults) {
  const Config& c = default_config();
  EXPECT_EQ(c.node().id(), 1);
  EXPECT_EQ(c.node().name()->str(), "herald");
  EXPECT_EQ(c.node().data_dir()->str(), "/var/lib/herald");
  EXPECT_EQ(c.node().log_level(), LogLevel::info);
  EXPECT_EQ(c.node().log_format(), LogFormat::text);
  EXPECT_EQ(c.controlplane().public_address()->str(), "0.0.0.0");
  EXPECT_EQ(c.controlplane().public_port(), 8443);
  EXPECT_EQ(c.controlplane().admin_address()->str(), "127.0.0.1");
  EXPECT_EQ(c.controlplane().admin_port(), 8080);
  EXPECT_EQ(c.controlplane().ipc_socket_path()->str(), "/run/herald/ipc.sock");
  EXPECT_EQ(c.dataplane().backend(), Backend::kernel);
  EXPECT_EQ(c.dataplane().workers(), 1);
  EXPECT_EQ(c.dataplane().chat_port(), 5222);
  EXPECT_EQ(c.dataplane().poll_mode(), PollMode::adaptive);
  EXPECT_EQ(c.dataplane().cores()->size(), 0u);
  EXPECT_EQ(c.dataplane().dpdk_eal_args()->size(), 0u);
  EXPECT_EQ(c.limits().max_frame_bytes(), 65536u);
  EXPECT_EQ(c.limits().max_body_bytes(), 64000u);
  EXPECT_EQ(c.limits().max_group_members(), 1024u);
  EXPECT_EQ(c.limits().max_linked_devices(), 4u);
  EXPECT_EQ(c.limits().send_queue_bytes_per_session(), 262144u);
  EXPECT_EQ(c.limits().dedup_window(), 1024u);
  EXPECT_EQ(c.profiler().sample_interval_ms(), 100u);
  EXPECT_EQ(c.shm().ring_bytes_per_worker(), 4u << 20);
  EXPECT_EQ(c.shm().counters_capacity(), 4096u);
}

// The options that were C++ defaults before they moved into the schema keep their values
// (controlplane/http/server.h, registration/registrar.h, rate_limiter.cc, key_ring.h).
TEST(Config, ControlPlaneDefaultsMatchTheirFormerCppDefaults) {
  const Config& c = default_config();
  for (const HttpListener* http : {&c.admin_http(), &c.public_http()}) {
    EXPECT_EQ(http->max_connections(), 10000u);
    EXPECT_EQ(http->max_connections_per_address(), 256u);
    EXPECT_EQ(http->max_requests_per_connection(), 1000u);
    EXPECT_EQ(http->header_timeout_ms(), 10000u);
    EXPECT_EQ(http->body_timeout_ms(), 30000u);
    EXPECT_EQ(http->idle_timeout_ms(), 60000u);
    EXPECT_EQ(http->max_body_bytes(), 1u << 20);
  }
  const Registration& r = c.registration();
  EXPECT_EQ(r.code_ttl_s(), 600u);
  EXPECT_EQ(r.max_verify_attempts(), 5u);
  EXPECT_EQ(r.phone_short_interval_ms(), 60000u);
  EXPECT_EQ(r.phone_short_burst(), 1u);
  EXPECT_EQ(r.phone_hour_interval_ms(), 720000u);
  EXPECT_EQ(r.phone_hour_burst(), 5u);
  EXPECT_EQ(r.phone_day_interval_ms(), 8640000u);
  EXPECT_EQ(r.phone_day_burst(), 10u);
  EXPECT_EQ(r.phone_table_capacity(), 1u << 20);
  EXPECT_EQ(r.address_short_interval_ms(), 180000u);
  EXPECT_EQ(r.address_short_burst(), 20u);
  EXPECT_EQ(r.address_day_interval_ms(), 864000u);
  EXPECT_EQ(r.address_day_burst(), 100u);
  EXPECT_EQ(r.address_table_capacity(), 1u << 18);
  EXPECT_EQ(c.session_tokens().token_ttl_s(), 3600u);
  EXPECT_EQ(c.session_tokens().key_rotation_s(), 86400u);
  EXPECT_EQ(c.code_gateway().kind(), CodeGatewayKind::log);
  EXPECT_EQ(c.code_gateway().webhook_url()->str(), "");
  EXPECT_EQ(c.code_gateway().webhook_timeout_ms(), 5000u);
  EXPECT_EQ(c.code_gateway().webhook_retries(), 2u);
  EXPECT_EQ(c.tls().public_cert_path()->str(), "");
  EXPECT_EQ(c.tls().public_key_path()->str(), "");
  EXPECT_EQ(c.tls().admin_client_ca_path()->str(), "");
  EXPECT_EQ(c.catalog().snapshot_after_bytes(), 64u << 20);
}

TEST(Config, EmptyObjectLoadsToTheDefaults) {
  const Config c = load_ok("{}");
  ASSERT_EQ(c.bytes().size(), default_config().bytes().size());
  EXPECT_TRUE(std::equal(c.bytes().begin(), c.bytes().end(), default_config().bytes().begin()));
  // Empty sections are filled in the same way.
  const Config sections = load_ok(R"({"node": {}, "limits": {}, "shm": {}})");
  EXPECT_TRUE(std::equal(sections.bytes().begin(), sections.bytes().end(),
                         default_config().bytes().begin(), default_config().bytes().end()));
}

TEST(Config, EverySectionIsRead) {
  const Config c = load_ok(R"({
    "node": {"id": 7, "name": "edge-7", "data_dir": "/srv/herald", "log_level": "debug",
             "log_format": "json"},
    "controlplane": {"public_address": "::", "public_port": 443, "admin_address": "10.0.0.2",
                     "admin_port": 9090, "ipc_socket_path": "/tmp/h.sock",
                     "group_commit_max_delay_us": 0},
    "dataplane": {"backend": "dpdk", "workers": 2, "cores": [2, 3],
                  "listen_address": "192.0.2.1", "chat_port": 15222, "poll_mode": "busy",
                  "adaptive_idle_polls": 5, "dpdk_eal_args": ["-a", "0000:01:00.0"]},
    "limits": {"max_frame_bytes": 131072, "max_body_bytes": 100000, "max_group_members": 50,
               "max_linked_devices": 2, "send_queue_bytes_per_session": 8192,
               "dedup_window": 64, "max_unacked_messages": 10, "frame_max_depth": 8,
               "frame_max_tables": 64},
    "profiler": {"sample_interval_ms": 10, "history_samples": 600},
    "shm": {"ring_bytes_per_worker": 1048576, "counters_capacity": 512}
  })");
  EXPECT_EQ(c.node().id(), 7);
  EXPECT_EQ(c.node().name()->str(), "edge-7");
  EXPECT_EQ(c.node().data_dir()->str(), "/srv/herald");
  EXPECT_EQ(c.node().log_level(), LogLevel::debug);
  EXPECT_EQ(c.node().log_format(), LogFormat::json);
  EXPECT_EQ(c.controlplane().public_address()->str(), "::");
  EXPECT_EQ(c.controlplane().public_port(), 443);
  EXPECT_EQ(c.controlplane().admin_address()->str(), "10.0.0.2");
  EXPECT_EQ(c.controlplane().admin_port(), 9090);
  EXPECT_EQ(c.controlplane().ipc_socket_path()->str(), "/tmp/h.sock");
  EXPECT_EQ(c.controlplane().group_commit_max_delay_us(), 0u);
  EXPECT_EQ(c.dataplane().backend(), Backend::dpdk);
  EXPECT_EQ(c.dataplane().workers(), 2);
  ASSERT_EQ(c.dataplane().cores()->size(), 2u);
  EXPECT_EQ(c.dataplane().cores()->Get(1), 3);
  EXPECT_EQ(c.dataplane().listen_address()->str(), "192.0.2.1");
  EXPECT_EQ(c.dataplane().chat_port(), 15222);
  EXPECT_EQ(c.dataplane().poll_mode(), PollMode::busy);
  EXPECT_EQ(c.dataplane().adaptive_idle_polls(), 5u);
  ASSERT_EQ(c.dataplane().dpdk_eal_args()->size(), 2u);
  EXPECT_EQ(c.dataplane().dpdk_eal_args()->Get(1)->str(), "0000:01:00.0");
  EXPECT_EQ(c.limits().max_frame_bytes(), 131072u);
  EXPECT_EQ(c.limits().max_body_bytes(), 100000u);
  EXPECT_EQ(c.limits().max_group_members(), 50u);
  EXPECT_EQ(c.limits().max_linked_devices(), 2u);
  EXPECT_EQ(c.limits().send_queue_bytes_per_session(), 8192u);
  EXPECT_EQ(c.limits().dedup_window(), 64u);
  EXPECT_EQ(c.limits().max_unacked_messages(), 10u);
  EXPECT_EQ(c.limits().frame_max_depth(), 8u);
  EXPECT_EQ(c.limits().frame_max_tables(), 64u);
  EXPECT_EQ(c.limits().idle_timeout_ms(), 300000u);  // untouched fields keep their defaults
  EXPECT_EQ(c.profiler().sample_interval_ms(), 10u);
  EXPECT_EQ(c.profiler().history_samples(), 600u);
  EXPECT_EQ(c.shm().ring_bytes_per_worker(), 1048576u);
  EXPECT_EQ(c.shm().counters_capacity(), 512u);

  const std::unique_ptr<NodeConfigT> object = c.unpack();
  EXPECT_EQ(object->node->name, "edge-7");
  EXPECT_EQ(object->dataplane->cores, (std::vector<uint16_t>{2, 3}));
}

TEST(Config, UnknownFieldIsAnErrorNamingFieldAndLine) {
  expect_rejected("{\n  \"bogus\": 1\n}", {"test.json:2", "unknown field: bogus"});
  expect_rejected("{\"limits\": {\n\"max_frame\": 4096}}", {"test.json:2", "max_frame"});
}

TEST(Config, WrongTypesAreErrors) {
  expect_rejected(R"({"dataplane": {"chat_port": "abc"}})", {"test.json:1", "\"chat_port\""});
  expect_rejected("{\"dataplane\": {\n  \"chat_port\": 70000}}",
                  {"test.json:2", "does not fit", "near field \"chat_port\""});
  expect_rejected(R"({"node": {"name": 5}})", {"expecting: string constant"});
  expect_rejected(R"({"node": 5})", {"expecting: {"});
  expect_rejected(R"({"node": {"id": 1.5}})", {"test.json:1"});
  expect_rejected(R"({"dataplane": {"cores": 3}})", {"test.json:1"});
  expect_rejected(R"({"node": {"log_level": "loud"}})", {"unknown enum value: loud"});
  expect_rejected(R"({"node": {"log_level": 7}})", {"node.log_level = 7", "LogLevel"});
  expect_rejected(R"({"dataplane": {"backend": 2}})", {"dataplane.backend = 2"});
}

TEST(Config, MalformedJsonIsAnError) {
  for (const char* json : {"", "{", "{\"node\": }", "{node: {}}", "[]", "{} trailing", "nul",
                           "{\"node\": {\"id\": 1, \"id\": 2}}", "{\"node\": {\"name\": \"x}}"}) {
    SCOPED_TRACE(json);
    absl::StatusOr<Config> config = load_config_from_string(json);
    ASSERT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(message(config.status()), HasSubstr("config:"));
  }
  expect_rejected(std::string("{\"node\": {}}\0{\"x\": 1}", 22), {"NUL"});
  expect_rejected(std::string(kMaxConfigBytes + 1, ' '), {"larger than"});
}

TEST(Config, FormatsAreChecked) {
  expect_rejected(R"({"controlplane": {"admin_address": "localhost"}})",
                  {"controlplane.admin_address", "not an IPv4 or IPv6 address"});
  expect_rejected(R"({"dataplane": {"listen_address": "1.2.3.256"}})",
                  {"dataplane.listen_address"});
  expect_rejected(R"({"node": {"data_dir": "var/lib"}})", {"node.data_dir", "absolute path"});
  expect_rejected(R"({"node": {"data_dir": ""}})", {"node.data_dir"});
  load_ok(R"({"controlplane": {"admin_address": "fe80::1"}})");
}

TEST(Config, PowerOfTwoIsChecked) {
  expect_rejected(R"({"shm": {"ring_bytes_per_worker": 100000}})",
                  {"shm.ring_bytes_per_worker = 100000", "power of two"});
  load_ok(R"({"shm": {"ring_bytes_per_worker": 131072}})");
}

TEST(Config, CrossFieldRules) {
  expect_rejected(R"({"dataplane": {"workers": 3, "cores": [1, 2]}})",
                  {"dataplane.cores", "3 workers"});
  load_ok(R"({"dataplane": {"workers": 2, "cores": [1, 2]}})");
  expect_rejected(R"({"limits": {"max_frame_bytes": 4096, "max_body_bytes": 4000}})",
                  {"limits.max_body_bytes = 4000", "3584"});
  load_ok(R"({"limits": {"max_frame_bytes": 4096, "max_body_bytes": 3584}})");
}

TEST(Config, VectorElementsAreRangeChecked) {
  load_ok(R"({"dataplane": {"cores": [4095]}})");
  expect_rejected(R"({"dataplane": {"cores": [4096]}})",
                  {"dataplane.cores[0] = 4096", "maximum 4095"});
}

// One range from the schema: the field, its bounds, and its type's own limits.
struct Range {
  std::string section;
  std::string field;
  int64_t min;
  int64_t max;
  int64_t type_min;
  int64_t type_max;
};

// Reads every herald_min / herald_max from the embedded schema.
std::vector<Range> schema_ranges() {
  flatbuffers::Parser parser;
  const std::string schema(schemas::kConfigFbs);
  EXPECT_TRUE(parser.Parse(schema.c_str())) << parser.error_;
  std::vector<Range> ranges;
  for (const flatbuffers::FieldDef* section : parser.root_struct_def_->fields.vec) {
    const flatbuffers::StructDef* def = section->value.type.struct_def;
    for (const flatbuffers::FieldDef* field : def->fields.vec) {
      const auto* min = field->attributes.Lookup("herald_min");
      const auto* max = field->attributes.Lookup("herald_max");
      if (min == nullptr || max == nullptr || !flatbuffers::IsScalar(field->value.type.base_type)) {
        continue;
      }
      Range r{section->name, field->name, 0, 0, 0, 0};
      EXPECT_TRUE(flatbuffers::StringToNumber(min->constant.c_str(), &r.min));
      EXPECT_TRUE(flatbuffers::StringToNumber(max->constant.c_str(), &r.max));
      switch (field->value.type.base_type) {
        case flatbuffers::BASE_TYPE_USHORT: r.type_max = 0xffff; break;
        case flatbuffers::BASE_TYPE_UINT: r.type_max = 0xffffffff; break;
        case flatbuffers::BASE_TYPE_UCHAR: r.type_max = 0xff; break;
        default: ADD_FAILURE() << "range test needs the limits of the type of " << field->name;
      }
      ranges.push_back(r);
    }
  }
  return ranges;
}

// Fields whose edge values need another field moved out of the way (cross-field rules).
const std::map<std::string, std::string>& companions() {
  static const auto* map = new std::map<std::string, std::string>{
      {"limits.max_frame_bytes", R"(, "max_body_bytes": 256)"},
      {"limits.max_body_bytes", R"(, "max_frame_bytes": 16777216)"},
      {"session_tokens.key_rotation_s", R"(, "token_ttl_s": 60)"},
  };
  return *map;
}

std::string json_with(const Range& r, int64_t value) {
  const std::string name = absl::StrCat(r.section, ".", r.field);
  const auto companion = companions().find(name);
  return absl::StrCat("{\"", r.section, "\": {\"", r.field, "\": ", value,
                      companion != companions().end() ? companion->second : "", "}}");
}

// Every range in the schema: the value at each edge loads, one past it does not (and the error
// names the field, or, when the value does not even fit the type, comes from the parser).
TEST(Config, EveryRangeAcceptsItsEdgesAndRejectsOnePast) {
  const std::vector<Range> ranges = schema_ranges();
  EXPECT_GE(ranges.size(), 55u);
  for (const Range& r : ranges) {
    const std::string name = absl::StrCat(r.section, ".", r.field);
    SCOPED_TRACE(name);
    load_ok(json_with(r, r.min));
    load_ok(json_with(r, r.max));
    if (r.min > r.type_min) {
      expect_rejected(json_with(r, r.min - 1),
                      {absl::StrCat(name, " = ", r.min - 1), "below the minimum"});
    } else {
      expect_rejected(json_with(r, r.min - 1), {"does not fit"});
    }
    if (r.max < r.type_max) {
      expect_rejected(json_with(r, r.max + 1),
                      {absl::StrCat(name, " = ", r.max + 1), "above the maximum"});
    } else {
      expect_rejected(json_with(r, r.max + 1), {"does not fit"});
    }
  }
}

std::string write_temp(const std::string& contents) {
  char path[] = "/tmp/herald_config_test_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
  close(fd);
  return path;
}

TEST(Config, LoadsFromAFile) {
  const std::string path = write_temp("{\n  \"node\": {\"id\": 42}\n}\n");
  absl::StatusOr<Config> config = load_config(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->node().id(), 42);
  unlink(path.c_str());
}

TEST(Config, FileErrorsNameTheFile) {
  const std::string path = write_temp("{\n  \"node\": {\"idd\": 42}\n}\n");
  absl::StatusOr<Config> config = load_config(path);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(message(config.status()), HasSubstr(path + ":2"));
  EXPECT_THAT(message(config.status()), HasSubstr("unknown field: idd"));
  unlink(path.c_str());
}

TEST(Config, MissingFileIsNotFound) {
  absl::StatusOr<Config> config = load_config("/nonexistent/herald/node.json");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(message(config.status()), HasSubstr("/nonexistent/herald/node.json"));
}

TEST(Config, OversizedFileIsRefused) {
  const std::string path = write_temp(std::string(kMaxConfigBytes + 10, ' '));
  absl::StatusOr<Config> config = load_config(path);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(message(config.status()), HasSubstr("larger than"));
  unlink(path.c_str());
}

TEST(Config, JsonRoundTrip) {
  const Config c = load_ok(R"({"node": {"id": 9, "log_level": "warn"},
                               "dataplane": {"workers": 2, "cores": [4, 5],
                                             "dpdk_eal_args": ["--in-memory"]}})");
  absl::StatusOr<std::string> json = config_to_json(c);
  ASSERT_TRUE(json.ok()) << json.status();
  // Every field is written out, defaults included, with enum names.
  EXPECT_THAT(*json, HasSubstr("\"log_level\": \"warn\""));
  EXPECT_THAT(*json, HasSubstr("\"chat_port\": 5222"));
  EXPECT_THAT(*json, HasSubstr("\"data_dir\": \"/var/lib/herald\""));
  const Config again = load_ok(*json);
  EXPECT_TRUE(
      std::equal(c.bytes().begin(), c.bytes().end(), again.bytes().begin(), again.bytes().end()));
}

TEST(Config, FromBufferVerifiesAndNormalises) {
  absl::StatusOr<Config> copy = config_from_buffer(default_config().bytes());
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->limits().max_frame_bytes(), 65536u);

  // A sparse buffer (no sections at all) gets every default.
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(CreateNodeConfig(fbb), NodeConfigIdentifier());
  absl::StatusOr<Config> sparse =
      config_from_buffer({fbb.GetBufferPointer(), static_cast<size_t>(fbb.GetSize())});
  ASSERT_TRUE(sparse.ok()) << sparse.status();
  EXPECT_EQ(sparse->node().data_dir()->str(), "/var/lib/herald");

  std::vector<uint8_t> corrupt(default_config().bytes().begin(), default_config().bytes().end());
  corrupt[0] = 0xff;
  EXPECT_FALSE(config_from_buffer(corrupt).ok());
  EXPECT_FALSE(config_from_buffer({}).ok());
}

}  // namespace
}  // namespace herald::config

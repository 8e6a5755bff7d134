// The admin API's system endpoints over HTTP: health (degraded when the dataplane is away,
// failing with the store), node info, /metrics in the Prometheus text format and /v1/stats.
#include "controlplane/api/system_api.h"

#include <gtest/gtest.h>

#include "tests/unit/controlplane/api/admin_test_node.h"

namespace herald::api {
namespace {

using testing::call;
using testing::compact;

class SystemApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.data_dir = dir_.path();
    testing::g_env = &env_;
    server_ = std::make_unique<testing::NodeServer>(testing::test_limits());
    ASSERT_NE(server_->port(), 0);
    admin_ = testing::admin_key(env_);
    const testing::Reply r =
        call(server_->port(), "POST", "/v1/api-keys", admin_, R"({"name":"ro","scope":"read"})");
    read_key_ = testing::json_string(r.body, "key");
    ASSERT_FALSE(read_key_.empty());
  }
  void TearDown() override {
    server_.reset();
    testing::g_env = nullptr;
  }
  testing::Reply get(std::string_view path) {
    return call(server_->port(), "GET", path, read_key_);
  }

  testing::TempDir dir_;
  testing::TestEnv env_;
  std::unique_ptr<testing::NodeServer> server_;
  std::string admin_;
  std::string read_key_;
};

TEST_F(SystemApiTest, HealthOkThenDegradedWhenTheDataplaneIsAway) {
  testing::Reply r = get("/v1/health");
  ASSERT_EQ(r.status, 200);
  std::string body = compact(r.body);
  EXPECT_EQ(body.rfind("{\"status\":\"ok\"", 0), 0u) << body;
  EXPECT_NE(body.find("{\"name\":\"controlplane\",\"status\":\"ok\""), std::string::npos) << body;
  EXPECT_NE(body.find("{\"name\":\"store\",\"status\":\"ok\""), std::string::npos) << body;
  EXPECT_NE(body.find("{\"name\":\"dataplane\",\"status\":\"ok\""), std::string::npos) << body;

  env_.dataplane_connected.store(false);
  r = get("/v1/health");
  EXPECT_EQ(r.status, 200);  // degraded still serves
  body = compact(r.body);
  EXPECT_EQ(body.rfind("{\"status\":\"degraded\"", 0), 0u) << body;
  EXPECT_NE(body.find("{\"name\":\"dataplane\",\"status\":\"degraded\""), std::string::npos);
}

TEST_F(SystemApiTest, HealthFailingWhenTheStoreFailed) {
  env_.tables->inner().fail_for_test(absl::DataLossError("disk gone"));
  const testing::Reply r = get("/v1/health");
  EXPECT_EQ(r.status, 503);
  const std::string body = compact(r.body);
  EXPECT_EQ(body.rfind("{\"status\":\"failing\"", 0), 0u) << body;
  EXPECT_NE(body.find("{\"name\":\"store\",\"status\":\"failing\""), std::string::npos) << body;
}

TEST_F(SystemApiTest, NodeInfo) {
  const testing::Reply r = get("/v1/node");
  ASSERT_EQ(r.status, 200);
  const std::string body = compact(r.body);
  for (const char* part : {"\"node_id\":7", "\"name\":\"node-a\"", "\"version\":\"1.2.3-test\"",
                           "\"uptime_s\":42", "\"started_unix_ms\":1700000000000",
                           "\"config_revision\":9", "\"roles\":[\"controlplane\",\"dataplane\"]",
                           "{\"name\":\"admin\",\"address\":\"127.0.0.1\",\"port\":8080}",
                           "{\"name\":\"public\",\"address\":\"0.0.0.0\",\"port\":8443}"}) {
    EXPECT_NE(body.find(part), std::string::npos) << part << " in " << body;
  }
}

TEST_F(SystemApiTest, MetricsAndStats) {
  testing::Reply r = get("/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4");
  EXPECT_EQ(r.body,
            "# TYPE herald_tcp_rx_packets_total counter\n"
            "herald_tcp_rx_packets_total 42\n");
  r = get("/v1/stats");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_NE(r.body.find("\"counters\":{\"tcp.rx_packets\":42}"), std::string::npos) << r.body;
  // Every system endpoint needs a key.
  EXPECT_EQ(call(server_->port(), "GET", "/metrics").status, 401);
  EXPECT_EQ(call(server_->port(), "GET", "/v1/node").status, 401);
}

TEST(SystemApiDirectTest, UnwiredDataplaneIsReportedAway) {
  std::deque<std::function<void()>> deferred;
  storage::MemoryTables tables(
      [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); });
  SystemApi api(tables, SystemSources{});
  int status = 0;
  const std::string body = compact(api.health_json(&status));
  EXPECT_EQ(status, 200);
  // No dataplane callback wired: reported as away.
  EXPECT_EQ(body.rfind("{\"status\":\"degraded\"", 0), 0u) << body;
}

}  // namespace
}  // namespace herald::api

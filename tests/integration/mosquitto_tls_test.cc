// MqttSession (tools/loadgen) against a real Mosquitto with TLS (tools/mosquitto/start-broker):
// two clients on their own topics exchange QoS 1 messages both ways over tools/client TlsStream,
// with PUBACKs both ways; a refused CONNECT; DISCONNECT closes the stream; a broker that
// cannot start.
// Argument: the path of tools/mosquitto/start-broker.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tools/client/tls_stream.h"
#include "tools/loadgen/mqtt_session.h"
#include "tools/mosquitto/broker.h"

namespace herald::tools::mqtt {
namespace {

std::string g_start_broker;

using Kind = MqttEvent::Kind;

struct Received {
  Kind kind;
  uint8_t return_code;
  uint16_t packet_id;
  std::string topic;
  std::string payload;
};

// One blocking client: a TLS stream and its MQTT session.
struct Client {
  std::unique_ptr<TlsStream> stream;
  MqttSession session;
  std::vector<Received> events;

  // Reads once (up to `timeout_ms`), parses, and sends what parsing produced (PUBACKs).
  absl::Status pump(uint32_t timeout_ms) {
    uint8_t buffer[16 * 1024];
    absl::StatusOr<size_t> n = stream->read_some(buffer, timeout_ms);
    if (!n.ok()) return n.status();
    std::vector<uint8_t> out;
    absl::Status status = session.feed(std::span(buffer, *n), out, [&](const MqttEvent& e) {
      events.push_back({e.kind, e.return_code, e.packet_id, std::string(e.topic),
                        std::string(e.payload.begin(), e.payload.end())});
    });
    if (!status.ok()) return status;
    return out.empty() ? absl::OkStatus() : stream->write_all(out);
  }

  size_t count(Kind kind) const {
    size_t n = 0;
    for (const Received& e : events) n += e.kind == kind ? 1 : 0;
    return n;
  }
};

class MosquittoTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (absl::StatusOr<std::string> binary = mosquitto::find_mosquitto(); !binary.ok()) {
      GTEST_SKIP() << "mosquitto is not installed (tools/bootstrap installs it): "
                   << binary.status();
    }
    auto broker = mosquitto::MosquittoBroker::start({.script = g_start_broker});
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = std::move(*broker);
    auto cert = read_pem_file(broker_->cert_file());
    ASSERT_TRUE(cert.ok()) << cert.status();
    cert_pem_ = *cert;
  }

  absl::StatusOr<std::unique_ptr<Client>> open(MqttSessionOptions options) {
    auto stream = TlsStream::connect(
        {.host = "127.0.0.1", .port = broker_->port(), .trust = Trust::pinned(cert_pem_)});
    if (!stream.ok()) return stream.status();
    return std::unique_ptr<Client>(
        new Client{std::move(*stream), MqttSession(std::move(options)), {}});
  }

  // Connects and subscribes to `topic` (pipelined), until the CONNACK and the SUBACK are in.
  std::unique_ptr<Client> connect_and_subscribe(const std::string& client_id,
                                                const std::string& topic) {
    auto client = open({.client_id = client_id});
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return nullptr;
    std::vector<uint8_t> out;
    (*client)->session.connect(out);
    const uint16_t subscribe_id = (*client)->session.subscribe(topic, out);
    EXPECT_TRUE((*client)->stream->write_all(out).ok());
    while ((*client)->count(Kind::kSubAck) == 0) {
      const absl::Status status = (*client)->pump(5'000);
      EXPECT_TRUE(status.ok()) << status;
      if (!status.ok()) return nullptr;
    }
    const std::vector<Received>& events = (*client)->events;
    EXPECT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].kind, Kind::kConnAck);
    EXPECT_EQ(events[0].return_code, 0);
    EXPECT_EQ(events[1].kind, Kind::kSubAck);
    EXPECT_EQ(events[1].packet_id, subscribe_id);
    EXPECT_EQ(events[1].return_code, 1);  // QoS 1 granted
    (*client)->events.clear();
    return std::move(*client);
  }

  std::unique_ptr<mosquitto::MosquittoBroker> broker_;
  std::string cert_pem_;
};

TEST_F(MosquittoTlsTest, TwoClientsExchangeQos1MessagesBothWays) {
  std::unique_ptr<Client> a = connect_and_subscribe("herald-test-a", "herald/a");
  std::unique_ptr<Client> b = connect_and_subscribe("herald-test-b", "herald/b");
  ASSERT_TRUE(a && b);

  // More messages than Mosquitto keeps in flight to one subscriber (max_inflight_messages, 20 by
  // default): every one arriving shows the broker took the PUBACKs the sessions sent.
  constexpr int kMessages = 200;
  std::vector<uint8_t> out_a;
  std::vector<uint8_t> out_b;
  for (int i = 0; i < kMessages; ++i) {
    const std::string to_b = absl::StrCat("a->b ", i);
    const std::string to_a = absl::StrCat("b->a ", i);
    ASSERT_NE(a->session.publish(
                  "herald/b", std::span(reinterpret_cast<const uint8_t*>(to_b.data()), to_b.size()),
                  out_a),
              0);
    ASSERT_NE(b->session.publish(
                  "herald/a", std::span(reinterpret_cast<const uint8_t*>(to_a.data()), to_a.size()),
                  out_b),
              0);
  }
  ASSERT_TRUE(a->stream->write_all(out_a).ok());
  ASSERT_TRUE(b->stream->write_all(out_b).ok());

  auto done = [&](const Client& c) {
    return c.count(Kind::kPublish) == kMessages && c.count(Kind::kPubAck) == kMessages;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!(done(*a) && done(*b))) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << "a: " << a->events.size() << " events, b: " << b->events.size();
    ASSERT_TRUE(a->pump(1).ok());
    ASSERT_TRUE(b->pump(1).ok());
  }

  for (const auto& [client, from, topic] :
       {std::tuple{a.get(), "b->a ", "herald/a"}, std::tuple{b.get(), "a->b ", "herald/b"}}) {
    int next = 0;
    for (const Received& e : client->events) {
      if (e.kind != Kind::kPublish) continue;
      // One publisher, one subscriber, QoS 1: Mosquitto keeps the publisher's order.
      EXPECT_EQ(e.topic, topic);
      EXPECT_EQ(e.payload, absl::StrCat(from, next));
      EXPECT_NE(e.packet_id, 0);
      ++next;
    }
    const MqttSessionStats& stats = client->session.stats();
    EXPECT_EQ(stats.publishes_sent, uint64_t{kMessages});
    EXPECT_EQ(stats.pubacks_received, uint64_t{kMessages});
    EXPECT_EQ(stats.pubacks_unknown, 0u);
    EXPECT_EQ(stats.publishes_received, uint64_t{kMessages});
    EXPECT_EQ(stats.pubacks_sent, uint64_t{kMessages});
    EXPECT_EQ(client->session.publishes_in_flight(), 0u);
  }

  // Keep-alive: PINGREQ answered by PINGRESP.
  std::vector<uint8_t> out;
  a->session.ping(out);
  ASSERT_TRUE(a->stream->write_all(out).ok());
  a->events.clear();
  while (a->events.empty()) ASSERT_TRUE(a->pump(5'000).ok());
  EXPECT_EQ(a->events[0].kind, Kind::kPingResp);

  // DISCONNECT: the broker closes the connection.
  out.clear();
  a->session.disconnect(out);
  ASSERT_TRUE(a->stream->write_all(out).ok());
  absl::Status status;
  for (int i = 0; i < 50 && status.ok(); ++i) status = a->pump(100);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
}

TEST_F(MosquittoTlsTest, RefusedConnectIsAnError) {
  // §3.1.3.1 [MQTT-3.1.3-8]: an empty client id without a clean session is refused with
  // return code 2, identifier rejected.
  auto client = open({.client_id = "", .clean_session = false});
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<uint8_t> out;
  (*client)->session.connect(out);
  ASSERT_TRUE((*client)->stream->write_all(out).ok());
  absl::Status status;
  while (status.ok() && (*client)->events.empty()) status = (*client)->pump(5'000);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  ASSERT_EQ((*client)->events.size(), 1u);
  EXPECT_EQ((*client)->events[0].kind, Kind::kConnAck);
  EXPECT_EQ((*client)->events[0].return_code, 2);
}

// The harness reports a broker that cannot start, with the reason, instead of hanging.
TEST(MosquittoHarnessTest, BrokerThatCannotStartIsAnError) {
  if (!mosquitto::find_mosquitto().ok()) GTEST_SKIP() << "mosquitto is not installed";
  auto broker = mosquitto::MosquittoBroker::start(
      {.script = g_start_broker, .settings = {"no_such_option 1"}});
  ASSERT_FALSE(broker.ok());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kUnavailable) << broker.status();
  EXPECT_NE(broker.status().message().find("no_such_option"), std::string_view::npos)
      << broker.status();

  // A port another socket listens on: the reason the auto-picked port is retried.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  auto taken =
      mosquitto::MosquittoBroker::start({.script = g_start_broker, .port = ntohs(addr.sin_port)});
  ::close(fd);
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.status().message().find("Address already in use"), std::string_view::npos)
      << taken.status();

  auto missing = mosquitto::MosquittoBroker::start({.script = "/nonexistent/start-broker"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
}

}  // namespace
}  // namespace herald::tools::mqtt

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    fprintf(stderr, "usage: %s START_BROKER_SCRIPT\n", argv[0]);
    return 2;
  }
  herald::tools::mqtt::g_start_broker = argv[1];
  return RUN_ALL_TESTS();
}

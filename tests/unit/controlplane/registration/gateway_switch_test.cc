// Tests for GatewaySwitch: codes go through the gateway installed last, and a replaced webhook
// gateway lives until it has finished the codes it accepted (its counters survive it).
#include "controlplane/registration/gateway_switch.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

namespace herald::registration {
namespace {

constexpr uint64_t kT0 = 1'700'000'000'000;

struct Sent {
  std::string phone;
  std::string code;
};

class RecordingGateway final : public CodeGateway {
 public:
  explicit RecordingGateway(std::vector<Sent>* sent) : sent_(sent) {}
  absl::Status send_code(PhoneNumber phone, CodeMethod, std::string_view code, uint64_t) override {
    sent_->push_back({phone.to_string(), std::string(code)});
    return absl::OkStatus();
  }

 private:
  std::vector<Sent>* sent_;
};

PhoneNumber phone(const char* text) {
  return parse_phone_number(text).number;
}

// A TCP listener that never accepts: connects complete in the kernel and requests are never
// answered, so a webhook attempt stays in flight until its timeout.
class SilentProvider {
 public:
  SilentProvider() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentProvider() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST(GatewaySwitchTest, CodesGoThroughTheGatewayInstalledLast) {
  std::vector<Sent> first, second;
  GatewaySwitch gateways(std::make_unique<RecordingGateway>(&first));
  ASSERT_TRUE(gateways.send_code(phone("+15550000001"), CodeMethod::kSms, "111111", kT0).ok());
  gateways.install(std::make_unique<RecordingGateway>(&second));
  // A gateway with nothing in flight is destroyed at once.
  EXPECT_EQ(gateways.retiring(), 0u);
  ASSERT_TRUE(gateways.send_code(phone("+15550000002"), CodeMethod::kSms, "222222", kT0).ok());
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].phone, "+15550000002");
  EXPECT_EQ(gateways.current_webhook(), nullptr);
  EXPECT_EQ(gateways.webhook_stats().accepted, 0u);
}

TEST(GatewaySwitchTest, AReplacedWebhookFinishesItsCodesBeforeItIsDestroyed) {
  auto loop = uring::EventLoop::create();
  ASSERT_TRUE(loop.ok());
  SilentProvider provider;
  WebhookOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(provider.port()) + "/sms";
  options.connect_timeout_ms = 200;
  options.attempt_timeout_ms = 200;
  options.max_attempts = 1;
  auto webhook = WebhookGateway::create(**loop, options);
  ASSERT_TRUE(webhook.ok()) << webhook.status();
  std::vector<Sent> sent;
  {
    GatewaySwitch gateways(std::move(*webhook));
    ASSERT_NE(gateways.current_webhook(), nullptr);
    ASSERT_TRUE(gateways.send_code(phone("+15550000003"), CodeMethod::kSms, "333333", kT0).ok());
    (*loop)->run_once(10'000'000);
    EXPECT_EQ(gateways.webhook_stats().queued, 1u);

    gateways.install(std::make_unique<RecordingGateway>(&sent));
    EXPECT_EQ(gateways.current_webhook(), nullptr);
    EXPECT_EQ(gateways.retiring(), 1u);  // its code is still in flight
    EXPECT_EQ(gateways.reap(), 0u);
    ASSERT_TRUE(gateways.send_code(phone("+15550000004"), CodeMethod::kSms, "444444", kT0).ok());
    ASSERT_EQ(sent.size(), 1u);  // new codes go to the new gateway

    // The retired webhook runs its attempt to the end (the provider never answers).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (gateways.webhook_stats().queued > 0 && std::chrono::steady_clock::now() < deadline) {
      (*loop)->run_once(50'000'000);
    }
    EXPECT_EQ(gateways.webhook_stats().queued, 0u);
    EXPECT_EQ(gateways.reap(), 1u);
    EXPECT_EQ(gateways.retiring(), 0u);
    // Its counters outlive it.
    const WebhookStats stats = gateways.webhook_stats();
    EXPECT_EQ(stats.accepted, 1u);
    EXPECT_EQ(stats.gave_up, 1u);
    EXPECT_EQ(stats.delivered, 0u);
  }
}

}  // namespace
}  // namespace herald::registration

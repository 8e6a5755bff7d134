// The push notifier against a real local HTTP server (an http::Server on its own loop thread)
// that receives the batches and answers as each test tells it: batching and coalescing per
// interval, the exact JSON, devices without a token, retries then a drop when the webhook is
// down or failing, a final 4xx, the queue limit at its edge; and push token validation and
// records.
#include "controlplane/push/push_notifier.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/push/push_tokens.h"
#include "controlplane/storage/tables.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::push {
namespace {

// How the push gateway answers, set by the test before hints go.
struct Gateway {
  std::atomic<int> fail_first{0};  // answer 503 to this many requests first
  std::atomic<int> final_status{200};
  std::atomic<int> requests{0};
  std::mutex mu;
  std::vector<std::string> bodies;
};
Gateway* g_gateway = nullptr;

struct GatewayHandler : http::Handler {
  void handle(const http::Request&, std::string_view body, http::Responder& responder) override {
    const int n = g_gateway->requests.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(g_gateway->mu);
      g_gateway->bodies.emplace_back(body);
    }
    if (n < g_gateway->fail_first.load()) {
      responder.respond(503, "text/plain", "busy");
      return;
    }
    responder.respond(g_gateway->final_status.load(), "application/json", "{}");
  }
};
using GatewayServer = http::testing::LoopServer<GatewayHandler>;

const auth::AccountId kAlice{0x1111111111114111ull, 0x8111111111111111ull};
const auth::AccountId kBob{0x2222222222224222ull, 0x8222222222222222ull};

uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

class PushNotifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_gateway = &gateway_;
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
  }
  void TearDown() override {
    notifier_.reset();
    g_gateway = nullptr;
  }

  PushNotifierOptions options(uint16_t port) {
    PushNotifierOptions o;
    o.url = "http://127.0.0.1:" + std::to_string(port) + "/push";
    o.batch_size = 10;
    o.interval_ms = 20;
    o.timeout_ms = 2000;
    o.max_attempts = 3;
    o.initial_backoff_ms = 10;
    o.max_backoff_ms = 40;
    o.max_queued_hints = 100;
    return o;
  }
  void make(const PushNotifierOptions& o) {
    auto n = PushNotifier::create(*loop_, o, [this](const auth::AccountId& a, uint32_t d) {
      ++lookups_;
      auto it = tokens_.find({a.hi, d});
      return it == tokens_.end() ? std::nullopt : std::optional<PushToken>(it->second);
    });
    ASSERT_TRUE(n.ok()) << n.status();
    notifier_ = std::move(*n);
  }
  // Runs the loop until `pred` holds (bounded: a hang fails, speed does not).
  template <typename Pred>
  bool run_until(Pred pred) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      (void)loop_->run_once(5'000'000);
    }
    return true;
  }
  std::vector<std::string> bodies() {
    std::lock_guard<std::mutex> lock(gateway_.mu);
    return gateway_.bodies;
  }
  const PushNotifierStats& stats() { return notifier_->stats(); }

  Gateway gateway_;
  std::unique_ptr<uring::EventLoop> loop_;
  std::map<std::pair<uint64_t, uint32_t>, PushToken> tokens_;
  int lookups_ = 0;
  std::unique_ptr<PushNotifier> notifier_;
};

TEST_F(PushNotifierTest, BodyIsTheDocumentedJson) {
  const PushEntry entries[] = {{kAlice, 1, PushPlatform::kApns, "0a1b2c3d4e5f6a7b", 2},
                               {kBob, 7, PushPlatform::kFcm, "fcm:tok_en-1", 1}};
  EXPECT_EQ(PushNotifier::batch_json(entries),
            R"({"hints":[{"account":"11111111-1111-4111-8111-111111111111","device":1,)"
            R"("platform":"apns","token":"0a1b2c3d4e5f6a7b","count":2},)"
            R"({"account":"22222222-2222-4222-8222-222222222222","device":7,)"
            R"("platform":"fcm","token":"fcm:tok_en-1","count":1}]})");
  EXPECT_EQ(PushNotifier::batch_json({}), R"({"hints":[]})");
}

TEST_F(PushNotifierTest, HintsOfAnIntervalGoInOneBatchWithTheirCounts) {
  GatewayServer server(http::ServerLimits{});
  ASSERT_NE(server.port(), 0);
  tokens_[{kAlice.hi, 1}] = {PushPlatform::kApns, "aaaaaaaaaaaaaaaa", 0};
  tokens_[{kBob.hi, 2}] = {PushPlatform::kWebhook, "https://hook.example/b", 0};
  make(options(server.port()));
  ASSERT_TRUE(notifier_->enabled());
  notifier_->on_hint(kAlice, 1);
  notifier_->on_hint(kBob, 2);
  notifier_->on_hint(kAlice, 1);
  notifier_->on_hint(kAlice, 1);
  notifier_->on_hint(kAlice, 3);  // no token: counted, not sent
  EXPECT_EQ(stats().queued, 3u);
  EXPECT_EQ(stats().coalesced, 2u);
  ASSERT_TRUE(run_until([&] { return stats().batches_sent == 1; }));
  EXPECT_EQ(stats().hints, 5u);
  EXPECT_EQ(stats().sent, 2u);
  EXPECT_EQ(stats().no_token, 1u);
  EXPECT_EQ(stats().queued, 0u);
  EXPECT_EQ(stats().in_flight, 0u);
  const auto b = bodies();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0], R"({"hints":[{"account":"11111111-1111-4111-8111-111111111111","device":1,)"
                  R"("platform":"apns","token":"aaaaaaaaaaaaaaaa","count":3},)"
                  R"({"account":"22222222-2222-4222-8222-222222222222","device":2,)"
                  R"("platform":"webhook","token":"https://hook.example/b","count":1}]})");
  // A later hint starts a new interval.
  notifier_->on_hint(kAlice, 1);
  ASSERT_TRUE(run_until([&] { return stats().batches_sent == 2; }));
  EXPECT_NE(bodies()[1].find(R"("count":1)"), std::string::npos);
}

TEST_F(PushNotifierTest, ABacklogGoesOutInBatchesOfBatchSize) {
  GatewayServer server(http::ServerLimits{});
  for (uint32_t d = 0; d < 25; ++d)
    tokens_[{kAlice.hi, d}] = {PushPlatform::kFcm, "token-12345", 0};
  make(options(server.port()));  // batch_size 10
  for (uint32_t d = 0; d < 25; ++d) notifier_->on_hint(kAlice, d);
  ASSERT_TRUE(run_until([&] { return stats().sent == 25; }));
  EXPECT_EQ(stats().batches_sent, 3u);
  const auto b = bodies();
  ASSERT_EQ(b.size(), 3u);
  auto entries = [](const std::string& body) {
    size_t n = 0;
    for (size_t at = body.find("\"account\""); at != std::string::npos;
         at = body.find("\"account\"", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(entries(b[0]), 10u);
  EXPECT_EQ(entries(b[1]), 10u);
  EXPECT_EQ(entries(b[2]), 5u);
}

TEST_F(PushNotifierTest, AFailingWebhookIsRetriedWithBackoffThenSucceeds) {
  GatewayServer server(http::ServerLimits{});
  gateway_.fail_first = 2;
  tokens_[{kAlice.hi, 1}] = {PushPlatform::kApns, "aaaaaaaaaaaaaaaa", 0};
  make(options(server.port()));  // 3 attempts
  notifier_->on_hint(kAlice, 1);
  ASSERT_TRUE(run_until([&] { return stats().batches_sent == 1; }));
  EXPECT_EQ(stats().failed, 2u);
  EXPECT_EQ(stats().retries, 2u);
  EXPECT_EQ(stats().sent, 1u);
  EXPECT_EQ(stats().dropped_gave_up, 0u);
  const auto b = bodies();
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0], b[2]);  // the same batch each time
}

TEST_F(PushNotifierTest, AWebhookThatIsDownDropsTheBatchAfterItsAttemptsWithoutBlocking) {
  tokens_[{kAlice.hi, 1}] = {PushPlatform::kApns, "aaaaaaaaaaaaaaaa", 0};
  tokens_[{kBob.hi, 2}] = {PushPlatform::kApns, "bbbbbbbbbbbbbbbb", 0};
  make(options(closed_port()));
  notifier_->on_hint(kAlice, 1);
  // Wait until the first batch is failing; meanwhile hints keep arriving and queue, at once.
  ASSERT_TRUE(run_until([&] { return stats().failed >= 1; }));
  // on_hint only queues: it never runs the loop or waits on the webhook (nothing moved).
  const uint64_t failed_before = stats().failed;
  const uint64_t retries_before = stats().retries;
  for (int i = 0; i < 50; ++i) notifier_->on_hint(kBob, 2);
  EXPECT_EQ(stats().failed, failed_before);
  EXPECT_EQ(stats().retries, retries_before);
  EXPECT_EQ(stats().queued, 1u);  // Bob, once, with his count
  ASSERT_TRUE(run_until([&] { return stats().dropped_gave_up == 2; }));
  EXPECT_EQ(stats().failed, 6u);  // two batches, three attempts each
  EXPECT_EQ(stats().retries, 4u);
  EXPECT_EQ(stats().sent, 0u);
  EXPECT_EQ(stats().queued, 0u);
  EXPECT_EQ(stats().in_flight, 0u);
}

TEST_F(PushNotifierTest, AFinalRefusalDropsTheBatchAtOnce) {
  GatewayServer server(http::ServerLimits{});
  gateway_.final_status = 400;
  tokens_[{kAlice.hi, 1}] = {PushPlatform::kApns, "aaaaaaaaaaaaaaaa", 0};
  make(options(server.port()));
  notifier_->on_hint(kAlice, 1);
  ASSERT_TRUE(run_until([&] { return stats().dropped_rejected == 1; }));
  EXPECT_EQ(gateway_.requests.load(), 1);
  EXPECT_EQ(stats().retries, 0u);
}

TEST_F(PushNotifierTest, TheQueueLimitIsPerDeviceAndHoldsAtItsEdge) {
  PushNotifierOptions o = options(closed_port());
  o.max_queued_hints = 3;
  o.interval_ms = 60'000;  // nothing leaves during the test
  make(o);
  notifier_->on_hint(kAlice, 1);
  notifier_->on_hint(kAlice, 2);
  notifier_->on_hint(kAlice, 3);  // the limit: accepted
  EXPECT_EQ(stats().queued, 3u);
  EXPECT_EQ(stats().dropped_queue_full, 0u);
  notifier_->on_hint(kAlice, 4);  // one device over: dropped
  EXPECT_EQ(stats().dropped_queue_full, 1u);
  notifier_->on_hint(kAlice, 2);  // a queued device still counts up
  EXPECT_EQ(stats().coalesced, 1u);
  EXPECT_EQ(stats().queued, 3u);
  EXPECT_EQ(stats().hints, 5u);
  EXPECT_EQ(lookups_, 0);  // tokens are looked up only when a batch is made
}

TEST_F(PushNotifierTest, WithoutAUrlHintsAreCountedAndNothingIsSent) {
  PushNotifierOptions o;
  make(o);
  EXPECT_FALSE(notifier_->enabled());
  notifier_->on_hint(kAlice, 1);
  EXPECT_EQ(stats().hints, 1u);
  EXPECT_EQ(stats().disabled, 1u);
  EXPECT_EQ(stats().queued, 0u);
}

TEST_F(PushNotifierTest, BadOptionsAreRefused) {
  PushNotifierOptions o = options(1);
  o.batch_size = 0;
  EXPECT_FALSE(PushNotifier::create(*loop_, o, [](const auth::AccountId&, uint32_t) {
                 return std::optional<PushToken>();
               }).ok());
  o = options(1);
  o.url = "ftp://x/";
  EXPECT_FALSE(PushNotifier::create(*loop_, o, [](const auth::AccountId&, uint32_t) {
                 return std::optional<PushToken>();
               }).ok());
}

TEST(PushTokens, LengthAndAlphabetAtTheirEdges) {
  EXPECT_EQ(check_push_token(std::string(kMinPushTokenBytes - 1, 'a')), TokenProblem::kTooShort);
  EXPECT_EQ(check_push_token(std::string(kMinPushTokenBytes, 'a')), TokenProblem::kNone);
  EXPECT_EQ(check_push_token(std::string(kMaxPushTokenBytes, 'a')), TokenProblem::kNone);
  EXPECT_EQ(check_push_token(std::string(kMaxPushTokenBytes + 1, 'a')), TokenProblem::kTooLong);
  EXPECT_EQ(check_push_token(""), TokenProblem::kTooShort);
  EXPECT_EQ(check_push_token("AZaz09-_.:/+=~"), TokenProblem::kNone);
  for (const std::string& bad :
       std::vector<std::string>{"abcdefg\"h", "abcdefg\\h", "abcd efgh", "abcdefgh\n", "abcdéfgh",
                                std::string("abcdefg\0h", 9), "abc<defgh", "abc{defgh"}) {
    EXPECT_EQ(check_push_token(bad), TokenProblem::kBadCharacter) << bad;
  }
  EXPECT_EQ(parse_platform("apns"), PushPlatform::kApns);
  EXPECT_EQ(parse_platform("fcm"), PushPlatform::kFcm);
  EXPECT_EQ(parse_platform("webhook"), PushPlatform::kWebhook);
  EXPECT_FALSE(parse_platform("APNS").has_value());
  EXPECT_FALSE(parse_platform("").has_value());
}

TEST(PushTokens, RecordsRoundTripAndBadOnesAreRefused) {
  std::vector<std::function<void()>> deferred;
  storage::MemoryTables tables([&](std::function<void()> f) { deferred.push_back(std::move(f)); });
  PushTokenStore store(tables);
  const PushToken token{PushPlatform::kFcm, "fcm-token:abc", 1234};
  ASSERT_TRUE(store.put(kAlice, 5, token).ok());
  std::optional<PushToken> back = store.find(kAlice, 5);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->platform, PushPlatform::kFcm);
  EXPECT_EQ(back->token, "fcm-token:abc");
  EXPECT_EQ(back->updated_ms, 1234u);
  EXPECT_FALSE(store.find(kAlice, 6).has_value());
  EXPECT_FALSE(store.find(kBob, 5).has_value());
  // A new token replaces the old one.
  ASSERT_TRUE(store.put(kAlice, 5, {PushPlatform::kApns, "0123456789abcdef", 99}).ok());
  EXPECT_EQ(store.find(kAlice, 5)->token, "0123456789abcdef");
  EXPECT_EQ(store.size(), 1u);
  // A token the API would refuse is refused here too.
  EXPECT_FALSE(store.put(kAlice, 5, {PushPlatform::kApns, "short", 0}).ok());
  // Corrupt records read as absent, counted.
  std::string record = PushTokenStore::encode(token);
  EXPECT_FALSE(PushTokenStore::decode(record.substr(0, 9)).has_value());
  std::string bad_version = record;
  bad_version[0] = 2;
  EXPECT_FALSE(PushTokenStore::decode(bad_version).has_value());
  std::string bad_platform = record;
  bad_platform[1] = 9;
  EXPECT_FALSE(PushTokenStore::decode(bad_platform).has_value());
  ASSERT_TRUE(
      tables.put(storage::TableId::kPushTokens, PushTokenStore::key(kBob, 1), record + "\"").ok());
  EXPECT_FALSE(store.find(kBob, 1).has_value());
  EXPECT_EQ(store.decode_errors(), 1u);
  ASSERT_TRUE(store.erase(kAlice, 5).ok());
  EXPECT_FALSE(store.find(kAlice, 5).has_value());
}

}  // namespace
}  // namespace herald::push

// The profiler service on a real io_uring loop behind the admin router over HTTP: status, a
// capture started, finished by its duration and downloaded (and decodable), stop, and every
// error answer (bad interval/duration, already running, nothing to stop or download, scopes).
#include "controlplane/profiler/profiler_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>

#include "controlplane/http/server.h"
#include "tests/unit/controlplane/api/http_client.h"

namespace herald::profiler {
namespace {

using api::testing::http_request;
using api::testing::HttpResponse;

class FixedKeys final : public api::Authenticator {
 public:
  api::AuthOutcome authenticate(const http::Request& request, api::Scope needed) override {
    const std::string_view auth = request.value("Authorization");
    if (auth == "Bearer admin-key") return api::AuthOutcome::kAllowed;
    if (auth == "Bearer read-key") {
      return needed == api::Scope::kRead ? api::AuthOutcome::kAllowed
                                         : api::AuthOutcome::kForbidden;
    }
    return api::AuthOutcome::kUnauthenticated;
  }
};

constexpr std::string_view kAdmin = "Authorization: Bearer admin-key\r\n";
constexpr std::string_view kRead = "Authorization: Bearer read-key\r\n";

class ProfilerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    ProfilerOptions options;
    options.sampler.node_name = "node-t";
    options.sampler.ring_samples = 100;
    options.max_duration_s = 60;
    options.enabled = false;  // only captures sample: the test controls what runs
    profiler_ = std::make_unique<ProfilerService>(*loop_, options, clock::Clock::monotonic());
    profiler_->sampler().set_processes([] {
      return std::vector<ProcessRef>{{"controlplane", static_cast<int>(getpid())}};
    });
    profiler_->add_routes(router_);
    profiler_->start();
    auto server = http::Server::create(*loop_, router_, http::ServerLimits{});
    ASSERT_TRUE(server.ok());
    server_ = std::move(*server);
    ASSERT_TRUE(server_->listen("127.0.0.1", 0).ok());
  }
  void TearDown() override {
    server_.reset();
    profiler_.reset();
  }

  // The request runs on another thread while this one runs the loop.
  HttpResponse request(std::string_view method, std::string target, std::string_view auth) {
    const uint16_t port = server_->port();
    auto reply =
        std::async(std::launch::async, [=, m = std::string(method), a = std::string(auth)] {
          return http_request(port, m, target, {}, a);
        });
    while (reply.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
      loop_->run_once(5'000'000);
    }
    return reply.get();
  }

  FixedKeys keys_;
  api::Router router_{&keys_};
  std::unique_ptr<uring::EventLoop> loop_;
  std::unique_ptr<ProfilerService> profiler_;
  std::unique_ptr<http::Server> server_;
};

TEST_F(ProfilerServiceTest, CaptureRunsForItsDurationAndDownloads) {
  HttpResponse r = request("GET", "/v1/profiler", kRead);
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"state\":\"idle\""), std::string::npos) << r.body;

  r = request("GET", "/v1/profiler/capture", kRead);
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("\"error\":\"no_capture\""), std::string::npos) << r.body;

  r = request("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=100", kAdmin);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_NE(r.body.find("\"state\":\"running\""), std::string::npos) << r.body;

  r = request("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=100", kAdmin);
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("\"error\":\"capture_running\""), std::string::npos) << r.body;
  r = request("GET", "/v1/profiler/capture", kRead);
  EXPECT_EQ(r.status, 409);

  // Bounded wait for the duration to pass (at most 5 s, whatever the machine's speed).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (profiler_->state() == CaptureState::kRunning &&
         std::chrono::steady_clock::now() < deadline) {
    loop_->run_once(10'000'000);
  }
  ASSERT_EQ(profiler_->state(), CaptureState::kDone);
  EXPECT_EQ(profiler_->stats().captures_finished, 1u);

  r = request("GET", "/v1/profiler/capture", kRead);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "application/octet-stream");
  absl::StatusOr<Capture> c = decode_capture(r.body);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->meta.node, "node-t");
  EXPECT_EQ(c->meta.interval_ns, 10'000'000u);
  EXPECT_GE(c->samples.size(), 2u);
  bool has_cpu = false, has_rss = false;
  for (const SeriesInfo& s : c->series) {
    has_cpu = has_cpu || s.name == "os.cpu.user";
    has_rss = has_rss || s.name == "proc.controlplane.rss";
  }
  EXPECT_TRUE(has_cpu);
  EXPECT_TRUE(has_rss);

  r = request("POST", "/v1/profiler/capture/stop", kAdmin);
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("\"error\":\"no_capture_running\""), std::string::npos) << r.body;
}

TEST_F(ProfilerServiceTest, StopEndsACaptureEarly) {
  HttpResponse r = request("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=60000", kAdmin);
  EXPECT_EQ(r.status, 400);  // 6000 samples: more than the ring's 100
  EXPECT_NE(r.body.find("ring"), std::string::npos) << r.body;
  r = request("POST", "/v1/profiler/capture?interval_ms=100&duration_ms=9000", kAdmin);
  ASSERT_EQ(r.status, 202) << r.body;
  r = request("POST", "/v1/profiler/capture/stop", kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"state\":\"done\""), std::string::npos) << r.body;
  r = request("GET", "/v1/profiler/capture", kRead);
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(decode_capture(r.body).ok());
  EXPECT_EQ(profiler_->stats().captures_stopped, 1u);
}

TEST_F(ProfilerServiceTest, BadParametersAndScopes) {
  struct Case {
    const char* target;
    const char* error;
  } cases[] = {
      {"/v1/profiler/capture?duration_ms=100", "invalid_interval"},
      {"/v1/profiler/capture?interval_ms=9&duration_ms=100", "invalid_interval"},  // below min
      {"/v1/profiler/capture?interval_ms=60001&duration_ms=100", "invalid_interval"},
      {"/v1/profiler/capture?interval_ms=1x&duration_ms=100", "invalid_interval"},
      {"/v1/profiler/capture?interval_ms=10", "invalid_duration"},
      {"/v1/profiler/capture?interval_ms=10&duration_ms=0", "invalid_duration"},
      {"/v1/profiler/capture?interval_ms=1000&duration_ms=60001", "invalid_duration"},
      {"/v1/profiler/capture?interval_ms=10&duration_ms=-5", "invalid_duration"},
  };
  for (const Case& c : cases) {
    const HttpResponse r = request("POST", c.target, kAdmin);
    EXPECT_EQ(r.status, 400) << c.target;
    EXPECT_NE(r.body.find(std::string("\"error\":\"") + c.error + "\""), std::string::npos)
        << c.target << ": " << r.body;
  }
  // The edges that are allowed: the minimum interval, the maximum duration.
  HttpResponse r =
      request("POST", "/v1/profiler/capture?interval_ms=1000&duration_ms=60000", kAdmin);
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(request("POST", "/v1/profiler/capture/stop", kAdmin).status, 200);
  EXPECT_EQ(request("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=10", kAdmin).status,
            202);
  EXPECT_EQ(request("POST", "/v1/profiler/capture/stop", kAdmin).status, 200);

  EXPECT_EQ(request("POST", "/v1/profiler/capture?interval_ms=10&duration_ms=10", kRead).status,
            403);
  EXPECT_EQ(request("GET", "/v1/profiler", "").status, 401);
  EXPECT_GE(profiler_->stats().rejected, 8u);
}

}  // namespace
}  // namespace herald::profiler

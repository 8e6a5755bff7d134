// The profiler service on a real io_uring loop behind the admin router over HTTP: status, a
// capture started, finished by its duration and downloaded (and decodable), stop, and every
// error answer (bad interval/duration, already running, nothing to stop or download, scopes).
#include "controlplane/profiler/profiler_service.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>

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
    // The flame tests start children; their SIGCHLD would interrupt the test HTTP client's
    // recv (it does not retry EINTR). Blocked here, inherited by the client threads.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, nullptr);
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    ProfilerOptions options;
    options.sampler.node_name = "node-t";
    options.sampler.ring_samples = 100;
    options.max_duration_s = 60;
    options.enabled = false;  // only captures sample: the test controls what runs
    customize(options);
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

  virtual void customize(ProfilerOptions& options) { (void)options; }

  // Runs the loop until the capture is done (flame graph included), at most 60 s.
  void wait_done() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (profiler_->state() != CaptureState::kDone &&
           std::chrono::steady_clock::now() < deadline) {
      loop_->run_once(10'000'000);
    }
  }
  Capture download_capture() {
    const HttpResponse r = request("GET", "/v1/profiler/capture", kRead);
    EXPECT_EQ(r.status, 200) << r.body;
    absl::StatusOr<Capture> c = decode_capture(r.body);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Capture{};
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

TEST_F(ProfilerServiceTest, FlameParameters) {
  struct Case {
    const char* query;
    const char* error;
  } cases[] = {
      {"&flame_hz=0", "invalid_flame_hz"},
      {"&flame_hz=10001", "invalid_flame_hz"},  // above max_flame_hz
      {"&flame_hz=x", "invalid_flame_hz"},
      {"&flame=2", "invalid_flame"},
      {"&flame=yes", "invalid_flame"},
  };
  for (const Case& c : cases) {
    const std::string target =
        std::string("/v1/profiler/capture?interval_ms=100&duration_ms=100") + c.query;
    const HttpResponse r = request("POST", target, kAdmin);
    EXPECT_EQ(r.status, 400) << target;
    EXPECT_NE(r.body.find(std::string("\"error\":\"") + c.error + "\""), std::string::npos)
        << target << ": " << r.body;
  }
  // flame=0: none asked for, no section in the file.
  HttpResponse r =
      request("POST", "/v1/profiler/capture?interval_ms=100&duration_ms=100&flame=0", kAdmin);
  ASSERT_EQ(r.status, 202) << r.body;
  wait_done();
  EXPECT_FALSE(download_capture().flame.has_value());
  // The maximum frequency is allowed; without a dataplane the capture says why.
  r = request("POST", "/v1/profiler/capture?interval_ms=100&duration_ms=100&flame_hz=10000",
              kAdmin);
  ASSERT_EQ(r.status, 202) << r.body;
  wait_done();
  const Capture c = download_capture();
  ASSERT_TRUE(c.flame.has_value());
  EXPECT_EQ(c.flame->status, "no dataplane pid (the dataplane is not connected)");
  EXPECT_EQ(c.flame->frequency_hz, 10000u);
  EXPECT_TRUE(c.flame->stacks.empty());
  EXPECT_GE(c.samples.size(), 1u);  // the samples are there either way
  EXPECT_EQ(profiler_->stats().flames_failed, 1u);
}

class FlameWithoutPerf : public ProfilerServiceTest {
  void customize(ProfilerOptions& options) override {
    options.perf_path = "herald-no-such-perf-binary";
  }
};

TEST_F(FlameWithoutPerf, SaysPerfIsNotInstalled) {
  profiler_->set_flame_target([] { return static_cast<int>(getpid()); });
  ASSERT_EQ(request("POST", "/v1/profiler/capture?interval_ms=100&duration_ms=100&flame=1", kAdmin)
                .status,
            202);
  wait_done();
  const Capture c = download_capture();
  ASSERT_TRUE(c.flame.has_value());
  EXPECT_EQ(c.flame->status, "perf not installed");
  const HttpResponse status = request("GET", "/v1/profiler", kRead);
  EXPECT_NE(status.body.find("\"flame\":\"perf not installed\""), std::string::npos) << status.body;
  EXPECT_EQ(c.flame->frequency_hz, 499u);  // flame=1: the default
  EXPECT_EQ(c.flame->pid, static_cast<uint64_t>(getpid()));
}

// A "perf" that fails the way a refused perf does: the capture carries its stderr's first line,
// and the temporary files are gone.
class FlameWithFailingPerf : public ProfilerServiceTest {
 protected:
  void customize(ProfilerOptions& options) override {
    char dir[] = "/tmp/flame_fake_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    const std::string script = dir_ + "/perf";
    std::ofstream(script) << "#!/bin/sh\necho 'Error: no access to perf_event_open' >&2\nexit 1\n";
    ::chmod(script.c_str(), 0755);
    options.perf_path = script;
    options.flame_dir = dir_;
  }
  void TearDown() override {
    ProfilerServiceTest::TearDown();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(FlameWithFailingPerf, CarriesPerfsError) {
  profiler_->set_flame_target([] { return static_cast<int>(getpid()); });
  ASSERT_EQ(
      request("POST", "/v1/profiler/capture?interval_ms=50&duration_ms=300&flame_hz=99", kAdmin)
          .status,
      202);
  wait_done();
  const Capture c = download_capture();
  ASSERT_TRUE(c.flame.has_value());
  EXPECT_EQ(c.flame->status, "perf record failed (exited 1): Error: no access to perf_event_open");
  // Only the fake perf is left in its directory.
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

// A fake perf that records until SIGINT and scripts a fixed text: the whole pipeline (SIGINT at
// the capture's end, perf script, folding) without a PMU, and max_script_bytes at its edge.
class FlameWithFakePerf : public ProfilerServiceTest {
 protected:
  void customize(ProfilerOptions& options) override {
    char dir[] = "/tmp/flame_fake_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    const std::string script = dir_ + "/perf";
    // "record": wait for SIGINT, then exit 0 as perf does; "script": two samples, 10 bytes
    // each ("p 1\n\t1 a\n\n").
    std::ofstream(script) << "#!/bin/sh\n"
                             "if [ \"$1\" = record ]; then\n"
                             "  trap 'exit 0' INT\n"
                             "  while :; do sleep 0.02; done\n"
                             "fi\n"
                             "printf 'p 1\\n\\t1 a\\n\\np 1\\n\\t1 b\\n\\n'\n";
    ::chmod(script.c_str(), 0755);
    options.perf_path = script;
    options.flame_dir = dir_;
    // The first sample and the first byte of the second: only whole samples are folded.
    options.flame_limits.max_script_bytes = 11;
  }
  void TearDown() override {
    ProfilerServiceTest::TearDown();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(FlameWithFakePerf, StopsRecordingAtTheEndAndFoldsTheScript) {
  profiler_->set_flame_target([] { return static_cast<int>(getpid()); });
  ASSERT_EQ(
      request("POST", "/v1/profiler/capture?interval_ms=50&duration_ms=300&flame_hz=99", kAdmin)
          .status,
      202);
  wait_done();
  const Capture c = download_capture();
  ASSERT_TRUE(c.flame.has_value());
  EXPECT_EQ(c.flame->status, "ok");
  EXPECT_EQ(c.flame->frequency_hz, 99u);
  // max_script_bytes: the second sample is past the limit.
  ASSERT_EQ(c.flame->stacks.size(), 1u);
  EXPECT_EQ(c.flame->stacks[0], (FoldedStack{"p;a", 1}));
  EXPECT_EQ(profiler_->stats().flames_ok, 1u);
}

// The real perf on this test process while a thread burns CPU: folded stacks come back in the
// capture. Skipped where perf is missing or refused (the status says which).
TEST_F(ProfilerServiceTest, RealPerfProfileOfThisProcess) {
  if (::access("/usr/bin/perf", X_OK) != 0) GTEST_SKIP() << "perf not installed";
  profiler_->set_flame_target([] { return static_cast<int>(getpid()); });
  std::atomic<bool> stop{false};
  std::thread burner([&stop] {
    volatile uint64_t x = 0;
    while (!stop.load(std::memory_order_relaxed)) x = x + 1;
  });
  const HttpResponse r =
      request("POST", "/v1/profiler/capture?interval_ms=100&duration_ms=1500&flame_hz=499", kAdmin);
  ASSERT_EQ(r.status, 202) << r.body;
  wait_done();
  stop = true;
  burner.join();
  const Capture c = download_capture();
  ASSERT_TRUE(c.flame.has_value());
  if (c.flame->status.rfind("perf record failed", 0) == 0) GTEST_SKIP() << c.flame->status;
  ASSERT_EQ(c.flame->status, "ok");
  ASSERT_FALSE(c.flame->stacks.empty());
  uint64_t samples = 0;
  for (const FoldedStack& s : c.flame->stacks) samples += s.samples;
  EXPECT_GT(samples, 10u);
  EXPECT_EQ(profiler_->stats().flames_ok, 1u);
}

}  // namespace
}  // namespace herald::profiler

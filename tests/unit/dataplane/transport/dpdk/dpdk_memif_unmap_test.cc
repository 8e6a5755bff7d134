// A memif peer leaving while the other end polls (unmap_guard.h). DPDK 22.11's memif PMD
// unmaps the departed peer's rings on the EAL interrupt thread right after clearing its
// "connected" flag; a poller inside a burst then read unmapped memory (a dataplane SIGSEGV in
// CI). Here a server and a client port share this process: stopping the client makes the
// server's interrupt thread unmap. The test holds a registered poller "inside a burst" (online,
// no quiescent state) and sees that unmap wait for it and go on once it passes one; then a
// poller spinning on the server's rx queue lives through disconnect after disconnect.
#include <gtest/gtest.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "dataplane/transport/dpdk/unmap_guard.h"
#include "tests/unit/dataplane/transport/dpdk/eal_test_util.h"

namespace herald::dataplane::dpdk {
namespace {

using testing::test_settings;
using testing::wait_until;

constexpr uint16_t kServer = 0;
constexpr uint16_t kClient = 1;

std::string socket_path() {
  return testing::memif_socket_path("memif-unmap");
}

class DpdkMemifPeerLeaving : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DpdkSettings s = test_settings("memif-unmap");
    s.ports = testing::memif_port_pair(socket_path());
    absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
    ASSERT_TRUE(rt.ok()) << rt.status();
    runtime_ = std::move(*rt);
  }
  static void TearDownTestSuite() {
    runtime_.reset();
    unlink(socket_path().c_str());
  }
  void SetUp() override {
    ASSERT_NE(runtime_, nullptr);
    ASSERT_TRUE(both_up()) << "the memif pair did not connect";
  }

  static bool both_up() {
    return wait_until(
        [] { return runtime_->port(kServer).link().up && runtime_->port(kClient).link().up; });
  }
  // The client leaves: its stop tells the server, whose interrupt thread then unmaps.
  static void client_leaves() { ASSERT_EQ(rte_eth_dev_stop(runtime_->port(kClient).port_id()), 0); }
  static void client_returns() {
    ASSERT_EQ(rte_eth_dev_start(runtime_->port(kClient).port_id()), 0);
    ASSERT_TRUE(both_up()) << "the client did not connect again";
  }

  static std::unique_ptr<DpdkRuntime> runtime_;
};
std::unique_ptr<DpdkRuntime> DpdkMemifPeerLeaving::runtime_;

TEST_F(DpdkMemifPeerLeaving, UnmapWaitsForAPollerInsideABurst) {
  const UnmapGuardStats before = unmap_guard_stats();
  enum Phase : int { kStarting, kInBurst, kRelease, kDone };
  std::atomic<int> phase{kStarting};
  std::thread poller([&] {
    PmdPoller registration;  // online
    registration.quiescent();
    phase = kInBurst;  // from here, as if preempted inside rte_eth_rx_burst
    while (phase.load() != kRelease) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    registration.quiescent();
    phase = kDone;
  });
  ASSERT_TRUE(wait_until([&] { return phase.load() == kInBurst; }));
  client_leaves();
  // The server's interrupt thread is in munmap, waiting for the poller...
  ASSERT_TRUE(wait_until([] { return unmap_guard_stats().waiting > 0; }))
      << "the PMD's unmap did not go through the guard (is munmap exported?)";
  const auto held_from = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // ...and still is while the poller has not passed a quiescent state.
  EXPECT_GT(unmap_guard_stats().waiting, 0u);
  EXPECT_EQ(unmap_guard_stats().grace_periods, before.grace_periods);
  phase = kRelease;
  ASSERT_TRUE(wait_until([&] { return phase.load() == kDone; }));
  poller.join();
  EXPECT_TRUE(wait_until([] { return unmap_guard_stats().waiting == 0; }));
  EXPECT_TRUE(wait_until([] { return !runtime_->port(kServer).link().up; }));
  const UnmapGuardStats after = unmap_guard_stats();
  EXPECT_GT(after.grace_periods, before.grace_periods);
  const auto held_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::steady_clock::now() - held_from)
                           .count();
  EXPECT_GE(after.waited_ns - before.waited_ns, 50'000'000u);  // at least what it was held
  EXPECT_LE(after.waited_ns - before.waited_ns, static_cast<uint64_t>(held_ns) + 1'000'000'000u);
  client_returns();
}

TEST_F(DpdkMemifPeerLeaving, OfflinePollerIsNotWaitedFor) {
  const UnmapGuardStats before = unmap_guard_stats();
  PmdPoller registration;
  registration.offline();  // asleep: holds no ring
  client_leaves();
  EXPECT_TRUE(wait_until([] { return !runtime_->port(kServer).link().up; }));
  EXPECT_TRUE(wait_until([&] { return unmap_guard_stats().grace_periods > before.grace_periods; }));
  EXPECT_EQ(unmap_guard_stats().waiting, 0u);
  client_returns();
  registration.online();
}

// A poller spinning on the server's rx queue (a burst almost all the time) through repeated
// departures: every unmap waits for it to leave its burst; none lands under one.
TEST_F(DpdkMemifPeerLeaving, SpinningPollerLivesThroughDepartures) {
  constexpr int kDepartures = 20;
  const UnmapGuardStats before = unmap_guard_stats();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bursts{0};
  const uint16_t server_port = runtime_->port(kServer).port_id();
  std::thread poller([&] {
    PmdPoller registration;
    rte_mbuf* mbufs[32];
    while (!stop.load(std::memory_order_relaxed)) {
      registration.quiescent();
      const uint16_t n = rte_eth_rx_burst(server_port, 0, mbufs, 32);
      rte_pktmbuf_free_bulk(mbufs, n);
      bursts.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (int i = 0; i < kDepartures; ++i) {
    const uint64_t bursts_before = bursts.load();
    ASSERT_TRUE(wait_until([&] { return bursts.load() > bursts_before; }));
    client_leaves();
    ASSERT_TRUE(wait_until([] { return !runtime_->port(kServer).link().up; })) << i;
    client_returns();
  }
  stop = true;
  poller.join();
  const UnmapGuardStats after = unmap_guard_stats();
  // At least one waited unmap per departure (memif unmaps each region it mapped).
  EXPECT_GE(after.grace_periods - before.grace_periods, uint64_t{kDepartures});
  EXPECT_EQ(after.waiting, 0u);
  runtime_->shutdown();
}

}  // namespace
}  // namespace herald::dataplane::dpdk

int main(int argc, char** argv) {
  return herald::dataplane::dpdk::testing::run_or_skip(argc, argv, "");
}

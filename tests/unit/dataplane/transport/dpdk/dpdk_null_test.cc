// The DPDK port layer on net_null with --no-huge (runs anywhere, no root): EAL init from
// settings, mempool sizing, port setup, the port loop on a worker lcore moving real mbufs (rx ->
// handler -> tx) with counters that add up, the adaptive backoff, the tx refusals and
// allocation failures at their edges, no mbuf leaked, and a clean shutdown.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <functional>
#include <vector>

#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "tests/unit/dataplane/transport/dpdk/eal_test_util.h"

namespace herald::dataplane::dpdk {
namespace {

using testing::test_settings;
using testing::wait_until;

// Sends every received frame back out of the port it came from; counts on the loop's lcore.
class Reflector : public FrameHandler {
 public:
  void on_frames(std::span<const RxFrame> frames, TxBatch& tx) override {
    for (const RxFrame& frame : frames) {
      ++frames_;
      bytes_ += frame.bytes.size();
      if (frame.ip_checksum != RxChecksum::kUnknown) ++verdicts_;
      if (tx.send(frame.port, frame.bytes)) ++sent_;
    }
  }
  bool on_turn(uint64_t now_tsc, TxBatch&) override {
    if (now_tsc <= last_tsc_) ++tsc_not_rising_;
    last_tsc_ = now_tsc;
    ++turns_;
    return false;
  }
  uint64_t frames_ = 0, bytes_ = 0, sent_ = 0, verdicts_ = 0, turns_ = 0, tsc_not_rising_ = 0;
  uint64_t last_tsc_ = 0;
};

// Runs `fn` with the loop's TxBatch from on_turn.
class TurnHandler : public FrameHandler {
 public:
  explicit TurnHandler(std::function<void(TxBatch&)> fn) : fn_(std::move(fn)) {}
  void on_frames(std::span<const RxFrame>, TxBatch&) override {}
  bool on_turn(uint64_t, TxBatch& tx) override {
    if (fn_) fn_(tx);
    return false;
  }
  std::function<void(TxBatch&)> fn_;
};

class DpdkNull : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DpdkSettings s = test_settings("null");
    // Port 1 never receives: an idle port for the backoff and tx tests.
    s.ports = {"net_null0,size=128", "net_null1,no-rx=1"};
    absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
    ASSERT_TRUE(rt.ok()) << rt.status();
    runtime_ = std::move(*rt);
  }
  static void TearDownTestSuite() { runtime_.reset(); }

  // A loop on this (main) thread over port `port` alone, shown to the loop as index 0. Queue 0
  // is the launched loop's too, so only before the launch.
  static std::unique_ptr<PortLoop> manual_loop(uint16_t port, LoopPollMode mode,
                                               FrameHandler& handler) {
    LoopConfig config;
    config.queue = 0;
    config.burst_size = runtime_->settings().burst_size;
    config.poll_mode = mode;
    config.idle_polls = 10;
    config.idle_sleep_us = 1;
    const Port& p = runtime_->port(port);
    return std::make_unique<PortLoop>(config,
                                      std::vector<LoopPort>{LoopPort{0, p.port_id(), p.offloads()}},
                                      runtime_->mempool(), handler);
  }

  static std::unique_ptr<DpdkRuntime> runtime_;
};
std::unique_ptr<DpdkRuntime> DpdkNull::runtime_;

TEST_F(DpdkNull, PortsAndPoolAreSetUpFromTheSettings) {
  ASSERT_EQ(runtime_->port_count(), 2u);
  EXPECT_EQ(runtime_->port(0).driver(), "net_null");
  EXPECT_EQ(runtime_->port(1).index(), 1);
  EXPECT_EQ(runtime_->port(0).rx_descriptors(), 256);
  EXPECT_TRUE(runtime_->port(0).link().up);
  // net_null has no checksum offload: the stack gets kUnknown and the loop sums in software.
  EXPECT_FALSE(runtime_->port(0).offloads().tx_tcp_checksum);
  EXPECT_EQ(runtime_->port(0).mac_string().size(), 17u);
  const MempoolSize& size = runtime_->mempool_size();
  // 2 ports x (256 + 256) + 1 loop x 32 x 3 + 1 x 48 + 16 x 4 = 1232 -> 2047.
  EXPECT_EQ(size.needed, 1024u + 96 + 48 + 64);
  EXPECT_EQ(size.mbufs, 2047u);
  EXPECT_EQ(rte_mempool_avail_count(runtime_->mempool()), 2047u);
}

TEST_F(DpdkNull, NoPortIsRefusedWithoutTouchingTheEal) {
  DpdkSettings s = test_settings("null-noport");
  absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rt.status().message()), ::testing::HasSubstr("dataplane.dpdk.ports"));
}

TEST_F(DpdkNull, AdaptiveLoopPausesThenSleepsAfterIdlePolls) {
  Reflector idle;
  PmdPoller poller;
  for (LoopPollMode mode :
       {LoopPollMode::kBusy, LoopPollMode::kAdaptive, LoopPollMode::kBlocking}) {
    std::unique_ptr<PortLoop> loop = manual_loop(1, mode, idle);
    for (int i = 0; i < 100; ++i) {
      ASSERT_FALSE(loop->poll_once());
      loop->idle(poller);
    }
    const LoopStatsSnapshot s = snapshot(loop->stats());
    EXPECT_EQ(s.polls, 100u);
    EXPECT_EQ(s.empty_polls, 100u);
    // idle_polls = 10: turns 1..9 pause, turns 10..100 sleep.
    const uint64_t sleeps = mode == LoopPollMode::kBusy       ? 0
                            : mode == LoopPollMode::kAdaptive ? 91
                                                              : 100;
    EXPECT_EQ(s.sleeps, sleeps) << static_cast<int>(mode);
  }
  EXPECT_EQ(idle.frames_, 0u);
  EXPECT_EQ(idle.tsc_not_rising_, 0u);
}

TEST_F(DpdkNull, TxRefusalsAreCountedAtTheirEdges) {
  const uint16_t room =
      static_cast<uint16_t>(rte_pktmbuf_data_room_size(runtime_->mempool()) - RTE_PKTMBUF_HEADROOM);
  std::vector<size_t> sizes;
  TurnHandler handler([&](TxBatch& tx) {
    sizes.push_back(tx.append(0, room).size());      // the largest frame: fits
    sizes.push_back(tx.append(0, room + 1).size());  // one byte more: refused
    sizes.push_back(tx.append(0, 0).size());         // empty: refused
    sizes.push_back(tx.append(1, 60).size());        // no such port in this loop
    TxOffload bad;
    bad.l2_len = 14;
    bad.l3_len = 19;  // shorter than an IPv4 header
    bad.ipv4_checksum = true;
    sizes.push_back(tx.append(0, 60, bad).size());
    TxOffload both;
    both.l2_len = 14;
    both.l3_len = 20;
    both.tcp_checksum = both.udp_checksum = true;
    sizes.push_back(tx.append(0, 60, both).size());
    TxOffload tcp;
    tcp.l2_len = 14;
    tcp.l3_len = 20;
    tcp.tcp_checksum = true;
    sizes.push_back(tx.append(0, 53, tcp).size());  // 14 + 20 + 20 = 54 needed
    // Headers that do not say what the request says (an empty IPv4 header): dropped at send.
    std::span<uint8_t> zeros = tx.append(0, 54, tcp);
    std::fill(zeros.begin(), zeros.end(), 0);
    sizes.push_back(zeros.size());
  });
  std::unique_ptr<PortLoop> loop = manual_loop(1, LoopPollMode::kBusy, handler);
  EXPECT_TRUE(loop->poll_once());  // two frames went out
  EXPECT_THAT(sizes, ::testing::ElementsAre(room, 0, 0, 0, 0, 0, 0, 54));
  const LoopStatsSnapshot s = snapshot(loop->stats());
  EXPECT_EQ(s.tx_oversize_drops, 2u);
  EXPECT_EQ(s.tx_bad_offload_drops, 4u);  // three at append, one at send
  EXPECT_EQ(s.tx_packets, 1u);
  EXPECT_EQ(s.tx_bytes, room);
  loop.reset();
  EXPECT_EQ(rte_mempool_avail_count(runtime_->mempool()), runtime_->mempool_size().mbufs);
}

TEST_F(DpdkNull, EmptyMempoolIsAnAllocationFailureNotACrash) {
  rte_mempool* pool = runtime_->mempool();
  std::vector<rte_mbuf*> taken;
  while (rte_mbuf* m = rte_pktmbuf_alloc(pool)) taken.push_back(m);
  ASSERT_EQ(taken.size(), runtime_->mempool_size().mbufs);
  bool got = true;
  TurnHandler handler([&](TxBatch& tx) { got = !tx.append(0, 64).empty(); });
  std::unique_ptr<PortLoop> loop = manual_loop(1, LoopPollMode::kBusy, handler);
  EXPECT_FALSE(loop->poll_once());
  EXPECT_FALSE(got);
  EXPECT_EQ(snapshot(loop->stats()).alloc_failures, 1u);
  for (rte_mbuf* m : taken) rte_pktmbuf_free(m);
  got = false;
  EXPECT_TRUE(loop->poll_once());
  EXPECT_TRUE(got);
}

// Last: it launches the loop on lcore 1 (queue 0 of every port is then its own).
TEST_F(DpdkNull, ZzLaunchedLoopReflectsFramesAndCountersAddUp) {
  Reflector reflector;
  FrameHandler* handlers[] = {&reflector};
  ASSERT_TRUE(runtime_->launch(handlers).ok());
  EXPECT_FALSE(runtime_->launch(handlers).ok());  // once
  const PortLoop& loop = runtime_->loop(0);
  EXPECT_TRUE(wait_until([&] {
    return loop.stats().rx_packets.get() >= 100'000 && loop.stats().tx_packets.get() >= 100'000;
  }));
  runtime_->stop_loops();  // the lcore's writes are visible after it is joined
  const LoopStatsSnapshot s = snapshot(loop.stats());
  EXPECT_EQ(s.rx_packets, reflector.frames_);
  EXPECT_EQ(s.rx_bytes, reflector.bytes_);
  EXPECT_EQ(s.rx_bytes, s.rx_packets * 128);  // net_null0,size=128
  EXPECT_EQ(s.rx_multi_segment_drops, 0u);
  EXPECT_EQ(reflector.verdicts_, 0u);
  // Every reflected frame was taken by the port or counted as dropped.
  EXPECT_EQ(s.tx_packets + s.tx_ring_full_drops, reflector.sent_);
  EXPECT_EQ(reflector.sent_ + s.alloc_failures, reflector.frames_);
  EXPECT_EQ(s.tx_bytes, s.tx_packets * 128);
  EXPECT_GE(s.polls, reflector.turns_);
  EXPECT_EQ(reflector.tsc_not_rising_, 0u);
  // The port's own counters saw the same traffic.
  uint64_t good = 0;
  ASSERT_TRUE(runtime_->port(0).xstat("rx_good_packets", &good));
  EXPECT_GE(good, s.rx_packets);
  EXPECT_FALSE(runtime_->port(0).xstats().empty());
  // No mbuf leaked: rx bursts freed, tx frames sent (net_null frees them) or dropped and freed.
  EXPECT_EQ(runtime_->mempool_available(), runtime_->mempool_size().mbufs);

  runtime_->shutdown();
  runtime_->shutdown();  // idempotent
  absl::StatusOr<std::unique_ptr<DpdkRuntime>> again = DpdkRuntime::start(runtime_->settings());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace herald::dataplane::dpdk

int main(int argc, char** argv) {
  return herald::dataplane::dpdk::testing::run_or_skip(argc, argv, "");
}

// Packets per second through the DPDK port layer's PortLoop (not a test: it prints figures for
// docs/PERFORMANCE.md). Two scenarios:
//   fwd    one lcore: rx burst on net_null0 -> handler copies each frame -> tx on net_null1
//          (the loop's own per-packet cost: net_null makes and eats mbufs, no device work);
//   memif  tx-only on lcore 1 into a memif client port, rx on lcore 0 from its server port in the
//          same process (frames cross shared memory, copied at each end by the memif driver).
// Usage: port_loop_bench [fwd|memif] [seconds=5] [frame_bytes=64] [burst=32] [huge=0|1]
#include <rte_launch.h>
#include <rte_lcore.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "platform/log/log.h"

namespace herald::dataplane::dpdk {
namespace {

// fwd: every frame received goes out of port `out`, copied.
class Forward : public FrameHandler {
 public:
  explicit Forward(uint16_t out) : out_(out) {}
  void on_frames(std::span<const RxFrame> frames, TxBatch& tx) override {
    for (const RxFrame& f : frames) tx.send(out_, f.bytes);
  }
  bool on_turn(uint64_t, TxBatch&) override { return false; }

 private:
  uint16_t out_;
};

// memif sender: a full burst of frames built in place every turn.
class TxOnly : public FrameHandler {
 public:
  TxOnly(uint16_t port, uint16_t frame_bytes, uint16_t burst)
      : port_(port), frame_bytes_(frame_bytes), burst_(burst) {}
  void on_frames(std::span<const RxFrame>, TxBatch&) override {}
  bool on_turn(uint64_t, TxBatch& tx) override {
    for (uint16_t i = 0; i < burst_; ++i) {
      std::span<uint8_t> f = tx.append(port_, frame_bytes_);
      if (f.empty()) break;
      std::memset(f.data(), 0x02, 12);  // addresses
      f[12] = 0x88;
      f[13] = 0xb5;
    }
    return true;
  }

 private:
  uint16_t port_, frame_bytes_, burst_;
};

// memif receiver: counting is done by the loop's own rx counters.
class Sink : public FrameHandler {
 public:
  void on_frames(std::span<const RxFrame>, TxBatch&) override {}
  bool on_turn(uint64_t, TxBatch&) override { return false; }
};

struct Remote {
  PortLoop* loop;
  std::atomic<bool>* stop;
};
int run_remote(void* arg) {
  auto* r = static_cast<Remote*>(arg);
  r->loop->run(*r->stop);
  return 0;
}

int run(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "fwd";
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 5;
  const uint16_t frame_bytes = static_cast<uint16_t>(argc > 3 ? std::atoi(argv[3]) : 64);
  const uint16_t burst = static_cast<uint16_t>(argc > 4 ? std::atoi(argv[4]) : 32);
  const bool huge = argc > 5 && std::atoi(argv[5]) != 0;
  if ((mode != "fwd" && mode != "memif") || seconds <= 0 || frame_bytes < 60 || burst == 0) {
    std::fprintf(stderr, "usage: %s [fwd|memif] [seconds] [frame_bytes>=60] [burst] [huge]\n",
                 argv[0]);
    return 2;
  }
  log::set_min_level(log::Level::kWarn);
  DpdkSettings s;
  s.lcores = {0, 1};
  s.huge_pages = huge;
  s.memory_mb = 512;
  s.file_prefix = absl::StrCat("herald-bench-", getpid());
  s.burst_size = burst;
  s.max_connections = 0;
  s.poll_mode = LoopPollMode::kBusy;
  const std::string sock = absl::StrCat("/tmp/herald-bench-", getpid(), ".sock");
  if (mode == "fwd") {
    s.ports = {absl::StrCat("net_null0,size=", frame_bytes), "net_null1,no-rx=1"};
  } else {
    s.ports = {absl::StrCat("net_memif0,role=server,id=0,socket=", sock),
               absl::StrCat("net_memif1,role=client,id=0,socket=", sock)};
  }
  s.extra_eal_args = {"--log-level", "lib.eal:warning"};
  absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
  if (!rt.ok()) {
    std::fprintf(stderr, "%s\n", rt.status().ToString().c_str());
    return 1;
  }
  DpdkRuntime& runtime = **rt;
  LoopConfig config;
  config.burst_size = burst;
  config.poll_mode = LoopPollMode::kBusy;
  const Port& p0 = runtime.port(0);
  const Port& p1 = runtime.port(1);
  std::atomic<bool> stop{false};

  if (mode == "fwd") {
    // One loop, on lcore 1; the main lcore only sleeps and reads counters.
    Forward forward(1);
    PortLoop loop(
        config,
        {LoopPort{0, p0.port_id(), p0.offloads()}, LoopPort{1, p1.port_id(), p1.offloads()}},
        runtime.mempool(), forward);
    Remote remote{&loop, &stop};
    rte_eal_remote_launch(run_remote, &remote, rte_get_next_lcore(-1, 1, 0));
    std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up
    const LoopStatsSnapshot a = snapshot(loop.stats());
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    const LoopStatsSnapshot b = snapshot(loop.stats());
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stop.store(true);
    rte_eal_mp_wait_lcore();
    std::printf(
        "mode=fwd frame_bytes=%u burst=%u seconds=%.2f rx_mpps=%.2f tx_mpps=%.2f "
        "drops=%llu\n",
        frame_bytes, burst, secs, (b.rx_packets - a.rx_packets) / secs / 1e6,
        (b.tx_packets - a.tx_packets) / secs / 1e6,
        static_cast<unsigned long long>(b.tx_ring_full_drops + b.alloc_failures));
  } else {
    while (!(p0.link().up && p1.link().up))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    TxOnly tx_only(1, frame_bytes, burst);
    Sink sink;
    PortLoop sender(config, {LoopPort{1, p1.port_id(), p1.offloads()}}, runtime.mempool(), tx_only);
    PortLoop receiver(config, {LoopPort{0, p0.port_id(), p0.offloads()}}, runtime.mempool(), sink);
    Remote remote{&sender, &stop};
    rte_eal_remote_launch(run_remote, &remote, rte_get_next_lcore(-1, 1, 0));
    // The receiver runs on this (main) lcore; it reads the clock every 1M turns.
    const auto warm = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (std::chrono::steady_clock::now() < warm) {
      for (int i = 0; i < 1000; ++i) receiver.poll_once();
    }
    const LoopStatsSnapshot ra = snapshot(receiver.stats());
    const LoopStatsSnapshot sa = snapshot(sender.stats());
    const auto t0 = std::chrono::steady_clock::now();
    const auto end = t0 + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
      for (int i = 0; i < 1000; ++i) receiver.poll_once();
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const LoopStatsSnapshot rb = snapshot(receiver.stats());
    const LoopStatsSnapshot sb = snapshot(sender.stats());
    stop.store(true);
    rte_eal_mp_wait_lcore();
    std::printf(
        "mode=memif frame_bytes=%u burst=%u seconds=%.2f tx_mpps=%.2f rx_mpps=%.2f "
        "tx_ring_full_drops_per_s=%.0f rx_gbit_s=%.2f\n",
        frame_bytes, burst, secs, (sb.tx_packets - sa.tx_packets) / secs / 1e6,
        (rb.rx_packets - ra.rx_packets) / secs / 1e6,
        (sb.tx_ring_full_drops - sa.tx_ring_full_drops) / secs,
        (rb.rx_bytes - ra.rx_bytes) * 8 / secs / 1e9);
  }
  return 0;
}

}  // namespace
}  // namespace herald::dataplane::dpdk

int main(int argc, char** argv) {
  return herald::dataplane::dpdk::run(argc, argv);
}

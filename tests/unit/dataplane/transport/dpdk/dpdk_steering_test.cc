// Several port loops sharing a port (flow_steering.h, PortLoop's hand-off rings) on net_memif:
// a client port sends on one queue only, as a port without RSS would deliver, and the server's
// two loops (driven from this thread, deterministically) must each get exactly their own flows,
// ARP copied to both (the copy marked a replica), the hand-off ring's limit hit at its exact
// capacity with the rest counted as drops, and every mbuf back in the pool afterwards.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "dataplane/transport/dpdk/flow_steering.h"
#include "dataplane/transport/dpdk/mempool_sizing.h"
#include "tests/unit/dataplane/transport/dpdk/eal_test_util.h"

namespace herald::dataplane::dpdk {
namespace {

using testing::test_settings;
using testing::wait_until;

constexpr uint16_t kServer = 0;
constexpr uint16_t kClient = 1;
constexpr uint16_t kQueues = 2;
constexpr uint32_t kServerIp = 0x0a000001;  // 10.0.0.1
constexpr uint32_t kClientIp = 0x0a000002;
constexpr uint16_t kChatPort = 5222;
constexpr uint16_t kTcpFrameBytes = 14 + 20 + 20;

// A frame to send: a TCP segment client:port -> server:5222 (the port says whose flow it
// is), or an ARP request.
struct Outgoing {
  bool arp = false;
  uint16_t client_port = 0;
};

// Sends its list from the client port, a burst per turn (tx queue 0 only: the loop's queue).
class Sender final : public FrameHandler {
 public:
  void on_frames(std::span<const RxFrame>, TxBatch&) override {}
  bool on_turn(uint64_t, TxBatch& tx) override {
    bool work = false;
    for (int i = 0; i < 32 && next_ < frames_.size(); ++i) {
      const Outgoing& o = frames_[next_];
      std::span<uint8_t> f = tx.append(kClient, o.arp ? 60 : kTcpFrameBytes);
      if (f.empty()) break;
      std::memset(f.data(), 0, f.size());
      std::memset(f.data(), 0xff, 6);
      if (o.arp) {
        f[12] = 0x08;
        f[13] = 0x06;
      } else {
        f[12] = 0x08;
        uint8_t* ip = f.data() + 14;
        ip[0] = 0x45;
        ip[3] = 40;
        ip[8] = 64;
        ip[9] = 6;
        for (int b = 0; b < 4; ++b) {
          ip[12 + b] = static_cast<uint8_t>(kClientIp >> (24 - 8 * b));
          ip[16 + b] = static_cast<uint8_t>(kServerIp >> (24 - 8 * b));
        }
        ip[20] = static_cast<uint8_t>(o.client_port >> 8);
        ip[21] = static_cast<uint8_t>(o.client_port);
        ip[22] = kChatPort >> 8;
        ip[23] = kChatPort & 0xff;
      }
      ++next_;
      work = true;
    }
    return work;
  }
  std::vector<Outgoing> frames_;
  size_t next_ = 0;
};

// One server loop's stack: what it was given.
class Receiver final : public FrameHandler {
 public:
  explicit Receiver(uint16_t queue, const FlowSteering& steering)
      : queue_(queue), steering_(steering) {}
  void on_frames(std::span<const RxFrame> frames, TxBatch&) override {
    for (const RxFrame& f : frames) {
      if (f.port != kServer) ++wrong_port_;
      const FlowSteering::Owner o = steering_.owner(f.bytes);
      if (o.kind == FlowSteering::Owner::Kind::kEvery) {
        ++(f.replica ? arp_replicas_ : arp_);
      } else if (o.kind == FlowSteering::Owner::Kind::kQueue && o.queue == queue_ && !f.replica) {
        ++own_;
      } else {
        ++foreign_;
      }
    }
  }
  bool on_turn(uint64_t, TxBatch&) override { return false; }
  uint16_t queue_;
  const FlowSteering& steering_;
  uint64_t own_ = 0, foreign_ = 0, arp_ = 0, arp_replicas_ = 0, wrong_port_ = 0;
};

std::string socket_path() {
  return testing::memif_socket_path("steering");
}

class DpdkSteering : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DpdkSettings s = test_settings("steering");
    s.lcores = {0, 1, 2};  // main + one per rx queue (mapped onto this machine's CPUs)
    s.rx_queues = kQueues;
    s.tx_queues = kQueues;
    s.ports = testing::memif_port_pair(socket_path());
    absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
    ASSERT_TRUE(rt.ok()) << rt.status();
    runtime_ = std::move(*rt);
  }
  static void TearDownTestSuite() {
    runtime_.reset();
    unlink(socket_path().c_str());
  }

  LoopConfig loop_config(uint16_t queue) const {
    LoopConfig c;
    c.queue = queue;
    c.burst_size = 32;
    c.poll_mode = LoopPollMode::kBusy;
    return c;
  }
  LoopPort loop_port(uint16_t index) const {
    const Port& p = runtime_->port(index);
    return LoopPort{index, p.port_id(), p.offloads()};
  }
  // A client port whose flow to the chat port the steering gives to `queue`, from `from` on.
  uint16_t port_of_queue(uint16_t queue, uint16_t from) const {
    const FlowSteering& st = *runtime_->flow_steering();
    while (st.queue_for(kClientIp, kServerIp, from, kChatPort) != queue) ++from;
    return from;
  }

  static std::unique_ptr<DpdkRuntime> runtime_;
};
std::unique_ptr<DpdkRuntime> DpdkSteering::runtime_;

TEST_F(DpdkSteering, PortsUseSoftwareSteeringAndConnect) {
  ASSERT_NE(runtime_->steering(), nullptr);
  ASSERT_EQ(runtime_->flow_steering()->queues(), kQueues);
  EXPECT_EQ(runtime_->port(kServer).rx_spread(), RxSpread::kSoftware);  // memif has no RSS
  EXPECT_EQ(runtime_->mempool_size().handoffs,
            uint64_t{kQueues} * handoff_ring_slots(2, runtime_->settings().rx_descriptors, 2));
  EXPECT_TRUE(wait_until([&] {
    return runtime_->port(kServer).link().up && runtime_->port(kClient).link().up;
  })) << "the memif pair did not connect";
}

// Everything arrives on server queue 0; loop 0 keeps its flows, hands loop 1 its own, copies
// ARP to it. Loop 1 sees exactly its flows plus the ARP copy, marked a replica.
TEST_F(DpdkSteering, EachLoopGetsExactlyItsOwnFlowsAndEveryLoopTheArp) {
  const FlowSteering& st = *runtime_->flow_steering();
  Sender sender;
  uint16_t next_port = 40000;
  for (int i = 0; i < 200; ++i) {
    const uint16_t p = port_of_queue(static_cast<uint16_t>(i % 2), next_port);
    next_port = static_cast<uint16_t>(p + 1);
    sender.frames_.push_back(Outgoing{false, p});
  }
  sender.frames_.push_back(Outgoing{true, 0});
  Receiver r0(0, st), r1(1, st);
  {
    PortLoop client(loop_config(0), {loop_port(kClient)}, runtime_->mempool(), sender);
    PortLoop loop0(loop_config(0), {loop_port(kServer)}, runtime_->mempool(), r0,
                   runtime_->steering());
    PortLoop loop1(loop_config(1), {loop_port(kServer)}, runtime_->mempool(), r1,
                   runtime_->steering());
    ASSERT_TRUE(wait_until([&] {
      client.poll_once();
      loop0.poll_once();
      loop1.poll_once();
      return r0.own_ + r0.arp_ + r1.own_ + r1.arp_replicas_ >= 202;
    }));
    const LoopStatsSnapshot s0 = snapshot(loop0.stats()), s1 = snapshot(loop1.stats());
    EXPECT_EQ(s0.rx_packets, 201u);
    EXPECT_EQ(s1.rx_packets, 0u);  // nothing arrived on queue 1
    EXPECT_EQ(s0.steered_out, 101u);
    EXPECT_EQ(s0.steered_copies, 1u);
    EXPECT_EQ(s1.steered_in, 101u);
    EXPECT_EQ(s0.steer_ring_full_drops, 0u);
  }
  EXPECT_EQ(r0.own_, 100u);
  EXPECT_EQ(r0.arp_, 1u);
  EXPECT_EQ(r0.arp_replicas_, 0u);
  EXPECT_EQ(r1.own_, 100u);
  EXPECT_EQ(r1.arp_, 0u);
  EXPECT_EQ(r1.arp_replicas_, 1u);
  EXPECT_EQ(r0.foreign_ + r1.foreign_, 0u);
  EXPECT_EQ(r0.wrong_port_ + r1.wrong_port_, 0u);  // memif stamps its port on the mbuf
  EXPECT_EQ(runtime_->handoff_frames(), 0u);
  EXPECT_EQ(runtime_->mempool_available(), runtime_->mempool_size().mbufs);
}

// Loop 1 never polls: loop 0 fills its hand-off ring to exactly its capacity (slots - 1) and
// drops the rest, counted; then loop 1 takes exactly what the ring held. Nothing leaks.
TEST_F(DpdkSteering, AFullHandOffRingDropsAtItsExactCapacityAndLeaksNothing) {
  const FlowSteering& st = *runtime_->flow_steering();
  const uint32_t capacity = handoff_ring_slots(2, runtime_->settings().rx_descriptors, kQueues) - 1;
  const uint32_t total = capacity + 300;
  Sender sender;
  const uint16_t port = port_of_queue(1, 50000);  // one flow, loop 1's
  for (uint32_t i = 0; i < total; ++i) sender.frames_.push_back(Outgoing{false, port});
  Receiver r0(0, st), r1(1, st);
  {
    PortLoop client(loop_config(0), {loop_port(kClient)}, runtime_->mempool(), sender);
    PortLoop loop0(loop_config(0), {loop_port(kServer)}, runtime_->mempool(), r0,
                   runtime_->steering());
    // The client's ring is smaller than the total: send and receive in turns.
    ASSERT_TRUE(wait_until([&] {
      client.poll_once();
      loop0.poll_once();
      return loop0.stats().rx_packets.get() >= total;
    }));
    const LoopStatsSnapshot s0 = snapshot(loop0.stats());
    EXPECT_EQ(s0.steered_out, capacity);
    EXPECT_EQ(s0.steer_ring_full_drops, total - capacity);
    EXPECT_EQ(runtime_->handoff_frames(), capacity);
    PortLoop loop1(loop_config(1), {loop_port(kServer)}, runtime_->mempool(), r1,
                   runtime_->steering());
    while (loop1.poll_once()) {
    }
    EXPECT_EQ(snapshot(loop1.stats()).steered_in, capacity);
  }
  EXPECT_EQ(r1.own_, capacity);
  EXPECT_EQ(r0.own_ + r0.foreign_, 0u);
  EXPECT_EQ(runtime_->handoff_frames(), 0u);
  EXPECT_EQ(runtime_->mempool_available(), runtime_->mempool_size().mbufs);
}

// Frames left in a ring when the loops stop go back to the pool at shutdown.
TEST_F(DpdkSteering, ShutdownFreesFramesStillInTheRings) {
  Sender sender;
  const uint16_t port = port_of_queue(1, 60000);
  for (int i = 0; i < 50; ++i) sender.frames_.push_back(Outgoing{false, port});
  const FlowSteering& st = *runtime_->flow_steering();
  Receiver r0(0, st);
  {
    PortLoop client(loop_config(0), {loop_port(kClient)}, runtime_->mempool(), sender);
    PortLoop loop0(loop_config(0), {loop_port(kServer)}, runtime_->mempool(), r0,
                   runtime_->steering());
    ASSERT_TRUE(wait_until([&] {
      client.poll_once();
      loop0.poll_once();
      return loop0.stats().rx_packets.get() >= 50;
    }));
  }
  EXPECT_EQ(runtime_->handoff_frames(), 50u);
  EXPECT_EQ(runtime_->mempool_available() + 50, runtime_->mempool_size().mbufs);
  runtime_->shutdown();  // frees the rings' frames, then the pool: ASan / LSan would see a leak
  EXPECT_EQ(access(socket_path().c_str(), F_OK), -1);
}

}  // namespace
}  // namespace herald::dataplane::dpdk

int main(int argc, char** argv) {
  return herald::dataplane::dpdk::testing::run_or_skip(argc, argv, "");
}

// The DPDK port layer on net_tap, the one virtual port here with checksum offloads (the tap
// driver computes and verifies sums itself): checksum requests take the port's path
// (tx_hw_checksums, the RTE_MBUF_F_TX_* flags and l2/l3 lengths) and Linux accepts the
// datagrams; datagrams from Linux arrive with the port's rx verdicts (kGood). The tap driver
// recomputes the whole L4 sum, so the pseudo-header value a NIC needs in the field is not
// checked here (it is DPDK's rte_ipv4_phdr_cksum). The tap interface is moved into a network
// namespace this test creates and deletes. Needs root: otherwise skipped (exit 77).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "tests/unit/dataplane/transport/dpdk/eal_test_util.h"

namespace herald::dataplane::dpdk {
namespace {

using testing::sh;
using testing::test_settings;
using testing::wait_until;

constexpr int kLinuxDatagrams = 20;
constexpr int kLoopDatagrams = 5;
constexpr uint16_t kUdpPort = 39998;
const uint8_t kOurIp[4] = {10, 202, 0, 2};
const uint8_t kPeerIp[4] = {10, 202, 0, 1};

const std::string& ns_name() {
  static const std::string name = absl::StrCat("hdtap-", getpid());
  return name;
}
const std::string& tap_if() {
  static const std::string name = absl::StrCat("hdt", getpid());
  return name;
}

// Counts Linux's datagrams and the port's verdicts on them; once told, sends kLoopDatagrams.
class UdpExchange : public FrameHandler {
 public:
  void on_frames(std::span<const RxFrame> frames, TxBatch&) override {
    for (const RxFrame& f : frames) {
      const auto& b = f.bytes;
      const bool ours = b.size() >= 14 + 20 + 8 + 10 && b[12] == 0x08 && b[13] == 0x00 &&
                        b[14 + 9] == 17 && std::memcmp(&b[14 + 16], kOurIp, 4) == 0 &&
                        std::memcmp(&b[14 + 28], "HERALD-LNX", 10) == 0;
      if (!ours) continue;
      std::memcpy(peer_mac_, &b[6], 6);
      if (f.ip_checksum == RxChecksum::kGood) ip_good_.fetch_add(1);
      if (f.l4_checksum == RxChecksum::kGood) l4_good_.fetch_add(1);
      datagrams_.fetch_add(1, std::memory_order_release);
    }
  }
  bool on_turn(uint64_t, TxBatch& tx) override {
    if (!go_.load(std::memory_order_acquire) || sent_) return false;
    sent_ = true;
    for (int i = 0; i < kLoopDatagrams; ++i) {
      const std::string payload = absl::StrCat("HERALD-UDP ", i);
      std::span<uint8_t> f =
          tx.append(0, testing::udp_frame_bytes(payload), testing::udp_checksums());
      if (f.empty()) continue;
      testing::write_udp_frame(f, peer_mac_, our_mac_, kOurIp, kPeerIp, kUdpPort,
                               static_cast<uint16_t>(i), payload);
    }
    return true;
  }
  uint8_t our_mac_[6] = {};
  uint8_t peer_mac_[6] = {};  // learnt from Linux's datagrams (on the loop's lcore)
  std::atomic<bool> go_{false};
  std::atomic<int> datagrams_{0}, ip_good_{0}, l4_good_{0};

 private:
  bool sent_ = false;
};

TEST(DpdkTap, HardwareChecksumPathBothWays) {
  sh("ip netns del " + ns_name());
  ASSERT_EQ(sh("ip netns add " + ns_name()), 0);
  DpdkSettings s = test_settings("tap");
  s.ports = {absl::StrCat("net_tap0,iface=", tap_if())};
  absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
  ASSERT_TRUE(rt.ok()) << rt.status();
  DpdkRuntime& runtime = **rt;
  const PortOffloads& off = runtime.port(0).offloads();
  ASSERT_TRUE(off.tx_ipv4_checksum && off.tx_udp_checksum && off.rx_ipv4_checksum &&
              off.rx_udp_checksum)
      << "net_tap is expected to offer checksum offloads";

  // The tap keeps working from its queues' file descriptors once its netdev is in the namespace.
  const std::string in_ns = "ip netns exec " + ns_name() + " ";
  ASSERT_EQ(sh(absl::StrCat("ip link set ", tap_if(), " netns ", ns_name())), 0);
  ASSERT_EQ(sh(absl::StrCat(in_ns, "ip addr add 10.202.0.1/24 dev ", tap_if())), 0);
  ASSERT_EQ(sh(absl::StrCat(in_ns, "ip link set ", tap_if(), " up")), 0);
  ASSERT_EQ(sh(absl::StrCat(in_ns, "ip neigh add 10.202.0.2 lladdr ", runtime.port(0).mac_string(),
                            " dev ", tap_if())),
            0);

  UdpExchange exchange;
  std::memcpy(exchange.our_mac_, runtime.port(0).mac().data(), 6);
  FrameHandler* handlers[] = {&exchange};
  ASSERT_TRUE(runtime.launch(handlers).ok());
  FILE* peer = popen(absl::StrCat(in_ns, "/usr/bin/python3 ", HERALD_DPDK_TAP_PEER_SCRIPT,
                                  " 10.202.0.1 10.202.0.2 ", kUdpPort, " ", kLinuxDatagrams, " ",
                                  kLoopDatagrams, " 15")
                         .c_str(),
                     "r");
  ASSERT_NE(peer, nullptr);
  char line[4096];
  ASSERT_NE(std::fgets(line, sizeof(line), peer), nullptr);
  EXPECT_EQ(std::string(line), "ready\n");
  EXPECT_TRUE(wait_until([&] { return exchange.datagrams_.load() == kLinuxDatagrams; }))
      << exchange.datagrams_.load();
  exchange.go_.store(true, std::memory_order_release);
  ASSERT_NE(std::fgets(line, sizeof(line), peer), nullptr);
  const std::string result(line);
  EXPECT_EQ(pclose(peer), 0);
  EXPECT_EQ(result, "{\"udp\": [0, 1, 2, 3, 4]}\n");

  runtime.stop_loops();
  // Rx: the port checked Linux's checksums itself.
  EXPECT_EQ(exchange.ip_good_.load(), kLinuxDatagrams);
  EXPECT_EQ(exchange.l4_good_.load(), kLinuxDatagrams);
  // Tx: the port did the sums.
  const LoopStatsSnapshot st = snapshot(runtime.loop(0).stats());
  EXPECT_EQ(st.tx_hw_checksums, static_cast<uint64_t>(kLoopDatagrams));
  EXPECT_EQ(st.tx_sw_checksums, 0u);
  EXPECT_EQ(st.tx_packets, static_cast<uint64_t>(kLoopDatagrams));
  runtime.shutdown();  // closes the tap, which removes its netdev
  EXPECT_EQ(sh("ip netns del " + ns_name()), 0);
}

}  // namespace
}  // namespace herald::dataplane::dpdk

int main(int argc, char** argv) {
  std::string skip;
  if (geteuid() != 0) {
    skip = "not root: a tap device and a network namespace need root";
  } else if (access("/usr/bin/python3", X_OK) != 0) {
    skip = "no /usr/bin/python3 for the namespace's peer";
  } else if (access("/dev/net/tun", R_OK | W_OK) != 0) {
    skip = "no /dev/net/tun";
  } else if (herald::dataplane::dpdk::testing::sh("ip netns list") != 0) {
    skip = "iproute2's 'ip netns' is not available";
  }
  return herald::dataplane::dpdk::testing::run_or_skip(argc, argv, skip);
}

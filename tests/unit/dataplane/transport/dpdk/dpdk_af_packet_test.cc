// The DPDK port layer on net_af_packet over a veth pair whose peer is in a network namespace
// this test creates and deletes: raw Ethernet frames a Linux process sends reach the port loop's
// handler, and frames the loop sends (raw, and UDP/IPv4 with checksums the loop fills in) reach
// the Linux side, where the kernel accepts the UDP datagrams only if those checksums are right.
// Needs root (namespaces, veth): otherwise reported to meson as skipped (exit 77).
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

constexpr uint16_t kEtherType = 0x88b5;  // IEEE local experimental
constexpr int kPeerFrames = 50;
constexpr int kLoopFrames = 20;
constexpr int kLoopDatagrams = 5;
constexpr uint16_t kUdpPort = 39999;
const uint8_t kOurIp[4] = {10, 201, 0, 2};
const uint8_t kPeerIp[4] = {10, 201, 0, 1};

const std::string& ns_name() {
  static const std::string name = absl::StrCat("hdpdk-", getpid());
  return name;
}
const std::string& host_if() {
  static const std::string name = absl::StrCat("hdp", getpid(), "a");
  return name;
}
const std::string& peer_if() {
  static const std::string name = absl::StrCat("hdp", getpid(), "b");
  return name;
}

// Counts the peer's frames; once told, sends kLoopFrames raw frames and kLoopDatagrams UDP
// datagrams to the peer (on the loop's lcore).
class PeerExchange : public FrameHandler {
 public:
  void on_frames(std::span<const RxFrame> frames, TxBatch&) override {
    for (const RxFrame& f : frames) {
      const std::string_view body(reinterpret_cast<const char*>(f.bytes.data()), f.bytes.size());
      if (f.bytes.size() >= 60 && f.bytes[12] == (kEtherType >> 8) &&
          f.bytes[13] == (kEtherType & 0xff) && body.substr(14, 10) == "HERALD-RX ") {
        const int seq = std::atoi(std::string(body.substr(24, 6)).c_str());
        if (seq >= 0 && seq < kPeerFrames && !seen_[seq]) {
          seen_[seq] = true;
          peer_frames_.fetch_add(1);
        }
      } else {
        other_frames_.fetch_add(1);  // the kernel's own chatter (IPv6 ND, ...)
      }
    }
  }

  bool on_turn(uint64_t, TxBatch& tx) override {
    if (!go_.load(std::memory_order_acquire) || sent_) return false;
    sent_ = true;
    for (int i = 0; i < kLoopFrames; ++i) {
      std::span<uint8_t> f = tx.append(0, 60);
      if (f.empty()) continue;
      std::memset(f.data(), 0, f.size());
      std::memcpy(f.data(), peer_mac_, 6);
      std::memcpy(f.data() + 6, our_mac_, 6);
      f[12] = kEtherType >> 8;
      f[13] = kEtherType & 0xff;
      const std::string payload = absl::StrCat("HERALD-TX ", i);
      std::memcpy(f.data() + 14, payload.data(), payload.size());
    }
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
  uint8_t peer_mac_[6] = {};
  std::atomic<bool> go_{false};
  std::atomic<int> peer_frames_{0};
  std::atomic<int> other_frames_{0};

 private:
  bool seen_[kPeerFrames] = {};
  bool sent_ = false;
};

class DpdkAfPacket : public ::testing::Test {
 protected:
  void SetUp() override {
    sh("ip netns del " + ns_name());
    ASSERT_EQ(sh("ip netns add " + ns_name()), 0);
    ASSERT_EQ(sh(absl::StrCat("ip link add ", host_if(), " type veth peer name ", peer_if())), 0);
    ASSERT_EQ(sh(absl::StrCat("ip link set ", peer_if(), " netns ", ns_name())), 0);
    ASSERT_EQ(sh(absl::StrCat("ip link set ", host_if(), " up")), 0);
    const std::string in_ns = "ip netns exec " + ns_name() + " ";
    ASSERT_EQ(sh(in_ns + "ip link set lo up"), 0);
    ASSERT_EQ(sh(absl::StrCat(in_ns, "ip addr add 10.201.0.1/24 dev ", peer_if())), 0);
    ASSERT_EQ(sh(absl::StrCat(in_ns, "ip link set ", peer_if(), " up")), 0);
  }
  // Deleting the namespace deletes the veth pair with it.
  void TearDown() override { EXPECT_EQ(sh("ip netns del " + ns_name()), 0); }
};

TEST_F(DpdkAfPacket, FramesCrossTheVethBothWaysAndChecksumsAreRight) {
  DpdkSettings s = test_settings("afp");
  s.ports = {absl::StrCat("net_af_packet0,iface=", host_if())};
  s.promiscuous = true;
  absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
  ASSERT_TRUE(rt.ok()) << rt.status();
  DpdkRuntime& runtime = **rt;
  ASSERT_EQ(runtime.port(0).driver(), "net_af_packet");
  EXPECT_TRUE(runtime.port(0).promiscuous());

  PeerExchange exchange;
  std::memcpy(exchange.our_mac_, runtime.port(0).mac().data(), 6);
  FrameHandler* handlers[] = {&exchange};
  ASSERT_TRUE(runtime.launch(handlers).ok());

  const std::string command =
      absl::StrCat("ip netns exec ", ns_name(), " /usr/bin/python3 ", HERALD_DPDK_PEER_SCRIPT, " ",
                   peer_if(), " ", runtime.port(0).mac_string(), " ", kPeerFrames, " ", kUdpPort,
                   " 15 ", kLoopFrames, " ", kLoopDatagrams);
  FILE* peer = popen(command.c_str(), "r");
  ASSERT_NE(peer, nullptr);
  char line[4096];
  ASSERT_NE(std::fgets(line, sizeof(line), peer), nullptr);
  std::string ready(line);
  ASSERT_EQ(ready.substr(0, 6), "ready ") << ready;
  unsigned mac[6];
  ASSERT_EQ(std::sscanf(ready.c_str() + 6, "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3],
                        &mac[4], &mac[5]),
            6);
  for (int i = 0; i < 6; ++i) exchange.peer_mac_[i] = static_cast<uint8_t>(mac[i]);

  // Linux -> DPDK: every frame the peer sent.
  EXPECT_TRUE(wait_until([&] { return exchange.peer_frames_.load() == kPeerFrames; }))
      << exchange.peer_frames_.load();
  // DPDK -> Linux: raw frames and checksummed UDP datagrams.
  exchange.go_.store(true, std::memory_order_release);
  ASSERT_NE(std::fgets(line, sizeof(line), peer), nullptr);
  const std::string result(line);
  EXPECT_EQ(pclose(peer), 0);
  std::string expected_raw = "\"raw\": [";
  for (int i = 0; i < kLoopFrames; ++i) absl::StrAppend(&expected_raw, i == 0 ? "" : ", ", i);
  EXPECT_THAT(result, ::testing::HasSubstr(expected_raw + "]"));
  EXPECT_THAT(result, ::testing::HasSubstr(absl::StrCat("\"udp\": ", kLoopDatagrams)));

  runtime.stop_loops();
  const LoopStatsSnapshot st = snapshot(runtime.loop(0).stats());
  EXPECT_GE(st.rx_packets, static_cast<uint64_t>(kPeerFrames));
  EXPECT_EQ(st.rx_packets,
            static_cast<uint64_t>(exchange.peer_frames_.load() + exchange.other_frames_.load()));
  EXPECT_EQ(st.tx_packets, static_cast<uint64_t>(kLoopFrames + kLoopDatagrams));
  EXPECT_EQ(st.tx_ring_full_drops, 0u);
  // af_packet sums nothing itself: the loop did it in software; a port that could, would have.
  const PortOffloads& off = runtime.port(0).offloads();
  EXPECT_EQ(st.tx_sw_checksums, off.tx_udp_checksum && off.tx_ipv4_checksum ? 0u : 5u);
  EXPECT_EQ(st.tx_hw_checksums, off.tx_udp_checksum || off.tx_ipv4_checksum ? 5u : 0u);
  // Idle between the exchanges: the adaptive loop slept rather than spun.
  EXPECT_GT(st.sleeps, 0u);
  // af_packet copies from its kernel ring into fresh mbufs and holds none: all are back.
  EXPECT_EQ(runtime.mempool_available(), runtime.mempool_size().mbufs);
  runtime.shutdown();
}

}  // namespace
}  // namespace herald::dataplane::dpdk

int main(int argc, char** argv) {
  std::string skip;
  if (geteuid() != 0) {
    skip = "not root: creating a network namespace and a veth pair needs root";
  } else if (access("/usr/bin/python3", X_OK) != 0) {
    skip = "no /usr/bin/python3 for the namespace's peer";
  } else if (herald::dataplane::dpdk::testing::sh("ip netns list") != 0) {
    skip = "iproute2's 'ip netns' is not available";
  }
  return herald::dataplane::dpdk::testing::run_or_skip(argc, argv, skip);
}

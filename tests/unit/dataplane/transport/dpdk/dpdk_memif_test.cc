// The DPDK port layer on net_memif: a server and a client port in one process, joined by a
// memif socket of this test's own. Frames built by the port loop on the server port arrive
// byte-exact on the client port; IPv4 and TCP checksums the loop fills in (memif has no offload)
// verify with an independent RFC 1071 sum; a tx ring nobody drains fills, and the frames past
// it are counted as ring-full drops after the retries, never leaked.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "tests/unit/dataplane/transport/dpdk/eal_test_util.h"

namespace herald::dataplane::dpdk {
namespace {

using testing::test_settings;
using testing::wait_until;

// The client sends and the server receives: in memif the client (slave) owns the buffers of
// both rings, so its tx needs nothing from the server, while a server's tx can use only the
// slots the client's rx has handed back (none until the client polls).
constexpr uint16_t kServer = 0;
constexpr uint16_t kClient = 1;
constexpr uint16_t kSender = kClient;
constexpr uint16_t kReceiver = kServer;
constexpr uint16_t kFrameBytes = 14 + 20 + 20 + 64;  // Ethernet, IPv4, TCP, payload

// Frames the full-ring test left in the client's ring (the stream test receives them first).
uint64_t accepted_ = 0;

// RFC 1071 one's-complement sum over `bytes`, folded, starting from `sum`.
uint32_t add_words(uint32_t sum, const uint8_t* bytes, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t{bytes[i]} << 8) | bytes[i + 1];
  if (n % 2 == 1) sum += uint32_t{bytes[n - 1]} << 8;
  return sum;
}
uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}
// True when the IPv4 header and TCP checksums of `f` verify.
bool checksums_verify(std::span<const uint8_t> f) {
  const uint8_t* ip = f.data() + 14;
  if (fold(add_words(0, ip, 20)) != 0xffff) return false;
  const uint16_t tcp_len = static_cast<uint16_t>(((ip[2] << 8) | ip[3]) - 20);
  uint32_t sum = add_words(0, ip + 12, 8);  // pseudo header: addresses, zero, protocol, length
  sum += 6 + tcp_len;
  return fold(add_words(sum, ip + 20, tcp_len)) == 0xffff;
}

// Builds frame `seq` (a TCP/IPv4 segment whose payload is derived from seq) into `f`.
void build(std::span<uint8_t> f, uint32_t seq) {
  std::memset(f.data(), 0, f.size());
  for (int i = 0; i < 6; ++i) f[i] = 0x02;   // destination
  for (int i = 6; i < 12; ++i) f[i] = 0x04;  // source
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  const uint16_t ip_len = kFrameBytes - 14;
  ip[2] = ip_len >> 8;
  ip[3] = ip_len & 0xff;
  ip[8] = 64;
  ip[9] = 6;
  const uint8_t addrs[8] = {192, 0, 2, 1, 198, 51, 100, 7};
  std::memcpy(ip + 12, addrs, 8);
  uint8_t* tcp = ip + 20;
  std::memcpy(tcp + 4, &seq, 4);
  tcp[12] = 5 << 4;
  for (int i = 0; i < 64; ++i) tcp[20 + i] = static_cast<uint8_t>(seq * 7 + i);
}

// The sender port gets `to_send` frames (a burst per turn); the receiver port checks each.
class Stream : public FrameHandler {
 public:
  void on_frames(std::span<const RxFrame> frames, TxBatch&) override {
    for (const RxFrame& f : frames) {
      if (f.port != kReceiver || f.bytes.size() != kFrameBytes) {
        ++wrong_;
        continue;
      }
      uint32_t seq = 0;
      std::memcpy(&seq, f.bytes.data() + 14 + 20 + 4, 4);
      bool payload_ok = true;
      for (int i = 0; i < 64; ++i) {
        payload_ok &= f.bytes[14 + 40 + i] == static_cast<uint8_t>(seq * 7 + i);
      }
      if (!payload_ok || !checksums_verify(f.bytes)) {
        ++corrupt_;
        continue;
      }
      if (seq < last_seq_ && received_ != 0) ++reordered_;
      last_seq_ = seq;
      ++received_;
    }
  }
  bool on_turn(uint64_t, TxBatch& tx) override {
    bool work = false;
    for (int i = 0; i < burst_ && next_ < to_send_; ++i, ++next_) {
      TxOffload off;
      off.l2_len = 14;
      off.l3_len = 20;
      off.ipv4_checksum = true;
      off.tcp_checksum = true;
      std::span<uint8_t> f = tx.append(kSender, kFrameBytes, off);
      if (f.empty()) break;
      build(f, next_);
      work = true;
    }
    return work;
  }
  int burst_ = 32;
  uint32_t to_send_ = 0, next_ = 0, last_seq_ = 0;
  uint64_t received_ = 0, wrong_ = 0, corrupt_ = 0, reordered_ = 0;
};

std::string socket_path() {
  return testing::memif_socket_path("memif");
}

class DpdkMemif : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DpdkSettings s = test_settings("memif");
    s.ports = testing::memif_port_pair(socket_path());
    absl::StatusOr<std::unique_ptr<DpdkRuntime>> rt = DpdkRuntime::start(s);
    ASSERT_TRUE(rt.ok()) << rt.status();
    runtime_ = std::move(*rt);
  }
  static void TearDownTestSuite() {
    runtime_.reset();
    unlink(socket_path().c_str());
  }
  static std::unique_ptr<DpdkRuntime> runtime_;
};
std::unique_ptr<DpdkRuntime> DpdkMemif::runtime_;

TEST_F(DpdkMemif, PortsConnect) {
  ASSERT_EQ(runtime_->port_count(), 2u);
  EXPECT_EQ(runtime_->port(kServer).driver(), "net_memif");
  EXPECT_TRUE(wait_until([&] {
    return runtime_->port(kServer).link().up && runtime_->port(kClient).link().up;
  })) << "the memif pair did not connect";
}

// On this thread, the loop polling only the sender port: nobody drains the receiver's ring.
TEST_F(DpdkMemif, FullTxRingDropsAfterRetriesAndLeaksNothing) {
  Stream stream;
  stream.to_send_ = 4096;  // more than a memif ring (1024 slots by default)
  LoopConfig config;
  config.burst_size = 32;
  config.poll_mode = LoopPollMode::kBusy;
  const Port& sender = runtime_->port(kSender);
  {
    PortLoop loop(config, {LoopPort{kSender, sender.port_id(), sender.offloads()}},
                  runtime_->mempool(), stream);
    while (stream.next_ < stream.to_send_) loop.poll_once();
    const LoopStatsSnapshot s = snapshot(loop.stats());
    EXPECT_GT(s.tx_packets, 0u);
    EXPECT_LT(s.tx_packets, 4096u);
    EXPECT_EQ(s.tx_packets + s.tx_ring_full_drops, 4096u);
    EXPECT_GT(s.tx_retries, 0u);
    EXPECT_EQ(s.tx_sw_checksums, 4096u);  // memif has no checksum offload
    accepted_ = s.tx_packets;
  }
  // memif copies into its shared ring at tx: every mbuf is back, sent or dropped.
  EXPECT_EQ(runtime_->mempool_available(), runtime_->mempool_size().mbufs);
}

// The launched loop on lcore 1 over both ports: first the frames the ring held, then a stream
// sent while the client drains, all byte-exact with checksums that verify.
TEST_F(DpdkMemif, StreamArrivesByteExactWithSoftwareChecksums) {
  Stream stream;
  stream.to_send_ = 50'000;
  FrameHandler* handlers[] = {&stream};
  ASSERT_TRUE(runtime_->launch(handlers).ok());
  const PortLoop& loop = runtime_->loop(0);
  // Done when everything the port took has arrived (drops, if any, are counted).
  EXPECT_TRUE(wait_until([&] {
    const uint64_t tx = loop.stats().tx_packets.get();
    return loop.stats().polls.get() > 0 &&
           tx + loop.stats().tx_ring_full_drops.get() + loop.stats().alloc_failures.get() >=
               50'000 &&
           loop.stats().rx_packets.get() == tx + accepted_;
  }));
  runtime_->stop_loops();
  const LoopStatsSnapshot s = snapshot(loop.stats());
  EXPECT_EQ(stream.wrong_, 0u);
  EXPECT_EQ(stream.corrupt_, 0u);
  EXPECT_EQ(stream.received_, s.tx_packets + accepted_);
  EXPECT_EQ(s.rx_packets, stream.received_);
  EXPECT_EQ(s.rx_bytes, stream.received_ * kFrameBytes);
  // The client drains as the server sends: few or no drops in the stream itself.
  EXPECT_EQ(s.tx_packets + s.tx_ring_full_drops + s.alloc_failures, 50'000u);
  EXPECT_EQ(runtime_->mempool_available(), runtime_->mempool_size().mbufs);
  runtime_->shutdown();
  EXPECT_EQ(access(socket_path().c_str(), F_OK), -1) << "the memif socket file was left behind";
}

}  // namespace
}  // namespace herald::dataplane::dpdk

int main(int argc, char** argv) {
  return herald::dataplane::dpdk::testing::run_or_skip(argc, argv, "");
}

// Helpers shared by the EAL tests (one EAL per process, so one scenario per executable): a
// file prefix no other test or process uses, bounded waits, settings for --no-huge runs, and a
// main() that reports "skipped" to meson (exit 77) when the machine cannot run the scenario.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "dataplane/transport/dpdk/frame.h"

namespace herald::dataplane::dpdk::testing {

// Unique per process: DPDK keeps its runtime files under /var/run/dpdk/<prefix>.
inline std::string unique_prefix(const std::string& test) {
  return absl::StrCat("herald-", test, "-", getpid());
}

// Test settings: ordinary memory, one port loop on lcore 1 (main lcore 0), small rings, the
// adaptive poll mode (this machine has 2 cores shared by everything).
inline DpdkSettings test_settings(const std::string& test) {
  DpdkSettings s;
  s.lcores = {0, 1};
  s.huge_pages = false;
  s.memory_mb = 256;
  s.file_prefix = unique_prefix(test);
  s.rx_descriptors = 256;
  s.tx_descriptors = 256;
  s.burst_size = 32;
  s.mempool_cache_size = 32;
  s.mbufs_per_connection = 4;
  s.max_connections = 16;
  s.poll_mode = LoopPollMode::kAdaptive;
  s.idle_polls = 100;
  s.idle_sleep_us = 50;
  s.extra_eal_args = {"--log-level", "lib.eal:warning"};
  return s;
}

// A memif socket path of this process's own for `test` (under /tmp, removed by the caller).
inline std::string memif_socket_path(const std::string& test) {
  return absl::StrCat("/tmp/herald-", test, "-test-", getpid(), ".sock");
}

// Two ports joined in this process by a memif socket at `socket` (an old file there removed):
// port 0 the server, port 1 its client. In memif the client owns the buffers of both rings.
inline std::vector<std::string> memif_port_pair(const std::string& socket) {
  unlink(socket.c_str());
  return {absl::StrCat("net_memif0,role=server,id=0,socket=", socket),
          absl::StrCat("net_memif1,role=client,id=0,socket=", socket)};
}

// Polls `done` every millisecond for up to `timeout`; true once it held.
inline bool wait_until(const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

// Runs a shell command quietly; its exit status (-1 when it did not exit).
inline int sh(const std::string& command) {
  const int rc = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Bytes of an Ethernet + IPv4 + UDP frame carrying `payload`.
inline uint16_t udp_frame_bytes(std::string_view payload) {
  return static_cast<uint16_t>(14 + 20 + 8 + payload.size());
}

// Writes that frame into `f` (udp_frame_bytes long) with both checksums left 0: the port loop
// fills them in (TxOffload{14, 20, ipv4, udp}).
inline void write_udp_frame(std::span<uint8_t> f, const uint8_t dst_mac[6],
                            const uint8_t src_mac[6], const uint8_t src_ip[4],
                            const uint8_t dst_ip[4], uint16_t port, uint16_t ident,
                            std::string_view payload) {
  std::memset(f.data(), 0, f.size());
  std::memcpy(f.data(), dst_mac, 6);
  std::memcpy(f.data() + 6, src_mac, 6);
  f[12] = 0x08;  // IPv4
  const uint16_t udp_len = static_cast<uint16_t>(8 + payload.size());
  const uint16_t ip_len = static_cast<uint16_t>(20 + udp_len);
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  ip[2] = static_cast<uint8_t>(ip_len >> 8);
  ip[3] = static_cast<uint8_t>(ip_len);
  ip[4] = static_cast<uint8_t>(ident >> 8);
  ip[5] = static_cast<uint8_t>(ident);
  ip[6] = 0x40;  // don't fragment
  ip[8] = 64;    // TTL
  ip[9] = 17;    // UDP
  std::memcpy(ip + 12, src_ip, 4);
  std::memcpy(ip + 16, dst_ip, 4);
  uint8_t* udp = ip + 20;
  udp[0] = udp[2] = static_cast<uint8_t>(port >> 8);
  udp[1] = udp[3] = static_cast<uint8_t>(port);
  udp[4] = static_cast<uint8_t>(udp_len >> 8);
  udp[5] = static_cast<uint8_t>(udp_len);
  std::memcpy(udp + 8, payload.data(), payload.size());
}

inline TxOffload udp_checksums() {
  TxOffload off;
  off.l2_len = 14;
  off.l3_len = 20;
  off.ipv4_checksum = true;
  off.udp_checksum = true;
  return off;
}

// meson counts exit code 77 as a skipped test.
inline constexpr int kSkipExitCode = 77;

inline int run_or_skip(int argc, char** argv, const std::string& skip_reason) {
  if (!skip_reason.empty()) {
    std::printf("SKIP: %s\n", skip_reason.c_str());
    return kSkipExitCode;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

}  // namespace herald::dataplane::dpdk::testing

// The /proc parsers on fixture text taken from real hosts, with malformed lines mixed in: the
// good lines are read, the bad ones counted, nothing crashes.
#include "controlplane/profiler/proc_stats.h"

#include <gtest/gtest.h>

#include <map>

namespace herald::profiler {
namespace {

std::map<std::string, Reading> by_name(const std::vector<Reading>& readings) {
  std::map<std::string, Reading> out;
  for (const Reading& r : readings) out[r.name] = r;
  return out;
}

TEST(ProcStats, Stat) {
  constexpr std::string_view kStat =
      "cpu  7587407 90043 806081 1679672 332959 0 24991 1481 0 0\n"
      "cpu0 3796461 46321 388792 870416 149135 0 10614 727 0 0\n"
      "cpu1 3790945 43721 417289 809255 183824 5 14376 754 0 0\n"
      "cpux 1 2 3 4 5 6 7\n"  // malformed: not a CPU number
      "cpu2 1 2\n"            // malformed: too short
      "intr 123456 1 2 3 4\n"
      "ctxt 987654321\n"
      "btime 1700000000\n"
      "processes 4242\n"
      "procs_running 3\n"
      "procs_blocked zz\n";  // malformed value
  std::vector<Reading> out;
  const ParseResult r = parse_proc_stat(kStat, &out);
  EXPECT_EQ(r.malformed_lines, 3u);
  auto m = by_name(out);
  EXPECT_EQ(m["os.cpu.user"].value, 7587407 + 90043);  // user + nice
  EXPECT_EQ(m["os.cpu.system"].value, 806081);
  EXPECT_EQ(m["os.cpu.idle"].value, 1679672);
  EXPECT_EQ(m["os.cpu1.irq"].value, 5);
  EXPECT_EQ(m["os.cpu1.softirq"].value, 14376);
  EXPECT_EQ(m["os.cpu0.user"].kind, SeriesKind::kCounter);
  EXPECT_EQ(m["os.interrupts"].value, 123456);
  EXPECT_EQ(m["os.context_switches"].value, 987654321);
  EXPECT_EQ(m["os.forks"].value, 4242);
  EXPECT_EQ(m["os.procs_running"].kind, SeriesKind::kGauge);
  EXPECT_EQ(m.count("os.procs_blocked"), 0u);
  EXPECT_EQ(m.count("os.cpu2.user"), 0u);
}

TEST(ProcStats, Meminfo) {
  constexpr std::string_view kMeminfo =
      "MemTotal:       24576000 kB\n"
      "MemFree:         1000000 kB\n"
      "MemAvailable:    2000000 kB\n"
      "Buffers:             100 kB\n"
      "Cached:          oops kB\n"  // malformed
      "HugePages_Total:     512\n"
      "HugePages_Free:      500\n"
      "Hugepagesize:       2048 kB\n";
  std::vector<Reading> out;
  EXPECT_EQ(parse_meminfo(kMeminfo, &out).malformed_lines, 1u);
  auto m = by_name(out);
  EXPECT_EQ(m["os.mem.total"].value, 24576000ll * 1024);
  EXPECT_EQ(m["os.mem.available"].unit, "bytes");
  EXPECT_EQ(m["os.hugepages.total"].value, 512);
  EXPECT_EQ(m["os.hugepages.free"].unit, "pages");
  EXPECT_EQ(m["os.hugepages.size"].value, 2048 * 1024);
  EXPECT_EQ(m.count("os.mem.cached"), 0u);
}

TEST(ProcStats, NetDev) {
  constexpr std::string_view kNetDev =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
      "drop fifo colls carrier compressed\n"
      "    lo: 78493828688 75576441    0 3775    0     0          0         0 78493828688 "
      "75576441    0    9    0     0       0          0\n"
      "  eth0.100:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
      "  bad: 1 2 3\n"
      "no colon here\n";
  std::vector<Reading> out;
  EXPECT_EQ(parse_net_dev(kNetDev, &out).malformed_lines, 2u);
  auto m = by_name(out);
  EXPECT_EQ(m["os.net.lo.rx_bytes"].value, 78493828688ll);
  EXPECT_EQ(m["os.net.lo.rx_drops"].value, 3775);
  EXPECT_EQ(m["os.net.lo.tx_drops"].value, 9);
  EXPECT_EQ(m["os.net.eth0_100.rx_packets"].value, 2);  // '.' sanitized
  EXPECT_EQ(m["os.net.eth0_100.tx_bytes"].value, 9);
  EXPECT_EQ(m["os.net.eth0_100.tx_packets"].value, 10);
}

TEST(ProcStats, Diskstats) {
  constexpr std::string_view kDisk =
      "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
      " 259       0 nvme0n1 1000 5 8000 300 2000 7 16000 900 0 1200 1500 0 0 0 0 0 0\n"
      " 259       1 nvme0n1p1 x 5 8000\n";
  std::vector<Reading> out;
  EXPECT_EQ(parse_diskstats(kDisk, &out).malformed_lines, 1u);
  auto m = by_name(out);
  EXPECT_EQ(m.count("os.disk.loop0.reads"), 0u);  // never did I/O
  EXPECT_EQ(m["os.disk.nvme0n1.reads"].value, 1000);
  EXPECT_EQ(m["os.disk.nvme0n1.read_bytes"].value, 8000 * 512);
  EXPECT_EQ(m["os.disk.nvme0n1.writes"].value, 2000);
  EXPECT_EQ(m["os.disk.nvme0n1.write_bytes"].value, 16000 * 512);
  EXPECT_EQ(m["os.disk.nvme0n1.io_ms"].value, 1200);
}

TEST(ProcStats, Sockstat) {
  constexpr std::string_view kSock =
      "sockets: used 12\n"
      "TCP: inuse 1 orphan 0 tw 7 alloc 3 mem 186\n"
      "UDP: inuse 0 mem 0\n"
      "TCP: inuse\n";  // malformed: odd pairs
  std::vector<Reading> out;
  EXPECT_EQ(parse_sockstat(kSock, "os", &out).malformed_lines, 1u);
  auto m = by_name(out);
  EXPECT_EQ(m["os.sockets_used"].value, 12);
  EXPECT_EQ(m["os.tcp.inuse"].value, 1);
  EXPECT_EQ(m["os.tcp.tw"].value, 7);
  EXPECT_EQ(m["os.tcp.alloc"].value, 3);
  EXPECT_EQ(m.count("os.tcp.mem"), 0u);
}

TEST(ProcStats, PidStatWithSpacesAndParensInComm) {
  constexpr std::string_view kStat =
      "4242 (herald (cp) x) S 1 4242 4242 0 -1 4194560 1500 0 7 0 250 125 0 0 20 0 9 0 "
      "123456 1000000 2000 18446744073709551615\n";
  std::vector<Reading> out;
  EXPECT_EQ(parse_pid_stat(kStat, "controlplane", &out).malformed_lines, 0u);
  auto m = by_name(out);
  EXPECT_EQ(m["proc.controlplane.minor_faults"].value, 1500);
  EXPECT_EQ(m["proc.controlplane.major_faults"].value, 7);
  EXPECT_EQ(m["proc.controlplane.cpu_user"].value, 250);
  EXPECT_EQ(m["proc.controlplane.cpu_system"].value, 125);
  EXPECT_EQ(m["proc.controlplane.threads"].value, 9);

  out.clear();
  EXPECT_EQ(parse_pid_stat("4242 (x S 1 2", "cp", &out).malformed_lines, 1u);
  EXPECT_EQ(parse_pid_stat("4242 (x) S 1 2", "cp", &out).malformed_lines, 1u);
  EXPECT_EQ(parse_pid_stat("", "cp", &out).malformed_lines, 1u);
  EXPECT_TRUE(out.empty());
}

TEST(ProcStats, PidStatus) {
  constexpr std::string_view kStatus =
      "Name:\therald\n"
      "VmSize:\t  100000 kB\n"
      "VmRSS:\t   20000 kB\n"
      "HugetlbPages:\t       0 kB\n"
      "voluntary_ctxt_switches:\t55\n"
      "nonvoluntary_ctxt_switches:\tbad\n";
  std::vector<Reading> out;
  EXPECT_EQ(parse_pid_status(kStatus, "dataplane", &out).malformed_lines, 1u);
  auto m = by_name(out);
  EXPECT_EQ(m["proc.dataplane.rss"].value, 20000 * 1024);
  EXPECT_EQ(m["proc.dataplane.vm_size"].value, 100000 * 1024);
  EXPECT_EQ(m["proc.dataplane.ctx_switches_voluntary"].value, 55);
  EXPECT_EQ(m["proc.dataplane.ctx_switches_voluntary"].kind, SeriesKind::kCounter);
}

TEST(ProcStats, GarbageNeverCrashes) {
  std::string junk;
  for (int i = 0; i < 2000; ++i) junk.push_back(static_cast<char>((i * 131 + 7) % 256));
  std::vector<Reading> out;
  (void)parse_proc_stat(junk, &out);
  (void)parse_meminfo(junk, &out);
  (void)parse_net_dev(junk, &out);
  (void)parse_diskstats(junk, &out);
  (void)parse_sockstat(junk, "os", &out);
  (void)parse_pid_stat(junk, "x", &out);
  (void)parse_pid_status(junk, "x", &out);
}

}  // namespace
}  // namespace herald::profiler

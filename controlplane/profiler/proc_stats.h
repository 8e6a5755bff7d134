// Parsers of the /proc files the profiler samples, from text to named integer series. Pure
// functions over the file's bytes, so tests feed fixtures (and malformed lines) directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/profiler/capture.h"

namespace herald::profiler {

// One value read from a source, named as it is in the capture's directory.
struct Reading {
  std::string name;
  std::string unit;
  SeriesKind kind = SeriesKind::kGauge;
  int64_t value = 0;
};

// Appends to `out`; every parser skips a line it cannot read (and counts it in *malformed) and
// keeps the rest, so one odd kernel line never hides the others.
struct ParseResult {
  uint32_t malformed_lines = 0;
};

// /proc/stat: os.cpu.{user,system,softirq,idle,iowait} (all CPUs) and os.cpuN.* (jiffies,
// counters), os.context_switches, os.interrupts, os.forks (counters), os.procs_running (gauge).
ParseResult parse_proc_stat(std::string_view text, std::vector<Reading>* out);
// /proc/meminfo: os.mem.{total,free,available,cached,buffers,dirty} in bytes,
// os.hugepages.{total,free,size_bytes}.
ParseResult parse_meminfo(std::string_view text, std::vector<Reading>* out);
// /proc/net/dev: os.net.<if>.{rx_bytes,rx_packets,rx_drops,tx_bytes,tx_packets,tx_drops}.
ParseResult parse_net_dev(std::string_view text, std::vector<Reading>* out);
// /proc/diskstats, whole disks and partitions with I/O: os.disk.<dev>.{reads,writes,
// read_bytes,write_bytes,io_ms}. Devices that never did I/O (loop, ram) are left out.
ParseResult parse_diskstats(std::string_view text, std::vector<Reading>* out);
// /proc/net/sockstat (and sockstat6 with prefix "os.tcp6"): os.tcp.{inuse,orphan,tw,alloc},
// os.sockets.used.
ParseResult parse_sockstat(std::string_view text, std::string_view prefix,
                           std::vector<Reading>* out);
// /proc/PID/stat: proc.<label>.{cpu_user,cpu_system} (jiffies), {minor_faults,major_faults},
// threads. The comm field may hold spaces and ')' : the parse starts after the last ')'.
ParseResult parse_pid_stat(std::string_view text, std::string_view label,
                           std::vector<Reading>* out);
// /proc/PID/status: proc.<label>.{rss,vm_size,hugetlb} in bytes, ctx_switches_voluntary,
// ctx_switches_involuntary (counters).
ParseResult parse_pid_status(std::string_view text, std::string_view label,
                             std::vector<Reading>* out);

// A series name component from an interface or device name: characters outside [A-Za-z0-9_-]
// become '_', so names stay one token in CSV and reports.
std::string sanitize_component(std::string_view text);

}  // namespace herald::profiler

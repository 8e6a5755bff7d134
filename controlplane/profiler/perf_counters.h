// Hardware counters per CPU through perf_event_open(2): cycles, instructions, cache misses and
// branch misses of each dataplane core. A host that refuses (perf_event_paranoid, no PMU in a
// VM, seccomp) makes them unavailable, reported as missing values, never as zeros.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controlplane/profiler/proc_stats.h"

namespace herald::profiler {

class PerfCounters {
 public:
  explicit PerfCounters(std::vector<int> cpus);
  ~PerfCounters();
  PerfCounters(const PerfCounters&) = delete;
  PerfCounters& operator=(const PerfCounters&) = delete;

  // Series names this object reports (hw.cpuN.{cycles,instructions,cache_misses,
  // branch_misses}), available or not, so the directory lists them either way.
  const std::vector<std::string>& names() const { return names_; }
  // Appends a reading for each counter that is open and reads.
  void read(std::vector<Reading>* out);
  // Why counters are unavailable ("" when all opened): the first errno's text.
  const std::string& unavailable_reason() const { return reason_; }
  size_t open_count() const;

 private:
  std::vector<std::string> names_;
  std::vector<int> fds_;  // -1: unavailable
  std::string reason_;
};

}  // namespace herald::profiler

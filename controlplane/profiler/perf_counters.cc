// perf_event_open(2) hardware counters per CPU (perf_counters.h).
#include "controlplane/profiler/perf_counters.h"

#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace herald::profiler {
namespace {

struct Event {
  uint64_t config;
  const char* name;
  const char* unit;
};
constexpr Event kEvents[] = {
    {PERF_COUNT_HW_CPU_CYCLES, "cycles", "cycles"},
    {PERF_COUNT_HW_INSTRUCTIONS, "instructions", "instructions"},
    {PERF_COUNT_HW_CACHE_MISSES, "cache_misses", "misses"},
    {PERF_COUNT_HW_BRANCH_MISSES, "branch_misses", "misses"},
};

int open_event(uint64_t config, int cpu) {
  perf_event_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_HARDWARE;
  attr.config = config;
  attr.exclude_hv = 1;
  // Every task on that CPU (pid -1): the dataplane worker pinned there.
  return static_cast<int>(
      syscall(SYS_perf_event_open, &attr, /*pid=*/-1, cpu, /*group_fd=*/-1, PERF_FLAG_FD_CLOEXEC));
}

}  // namespace

PerfCounters::PerfCounters(std::vector<int> cpus) {
  for (const int cpu : cpus) {
    for (const Event& e : kEvents) {
      names_.push_back(absl::StrCat("hw.cpu", cpu, ".", e.name));
      const int fd = open_event(e.config, cpu);
      if (fd < 0 && reason_.empty()) {
        reason_ =
            absl::StrCat("perf_event_open(cpu ", cpu, ", ", e.name, "): ", std::strerror(errno));
      }
      fds_.push_back(fd);
    }
  }
}

PerfCounters::~PerfCounters() {
  for (const int fd : fds_) {
    if (fd >= 0) ::close(fd);
  }
}

size_t PerfCounters::open_count() const {
  size_t n = 0;
  for (const int fd : fds_) n += fd >= 0 ? 1 : 0;
  return n;
}

void PerfCounters::read(std::vector<Reading>* out) {
  for (size_t i = 0; i < fds_.size(); ++i) {
    if (fds_[i] < 0) continue;
    uint64_t value = 0;
    if (::read(fds_[i], &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) continue;
    out->push_back(Reading{names_[i], kEvents[i % std::size(kEvents)].unit, SeriesKind::kCounter,
                           static_cast<int64_t>(value)});
  }
}

}  // namespace herald::profiler

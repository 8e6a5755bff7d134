// The profiler's sampler: one call to sample() reads the OS (/proc), each Herald process, the
// counters segment and the hardware counters into one Sample of a bounded in-memory ring, on
// whatever thread calls it (the control plane's loop, through ProfilerService). Rates come from
// the ring's deltas against the monotonic clock the sampler was given.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/profiler/capture.h"
#include "controlplane/profiler/perf_counters.h"
#include "controlplane/profiler/proc_stats.h"
#include "platform/clock/clock.h"
#include "platform/counters/reader.h"

namespace herald::profiler {

// The largest /proc file read: /proc/stat on a 256-CPU host is ~40 KiB; more is cut off (the
// parsers then see a truncated last line and count it as malformed).
inline constexpr size_t kMaxProcFileBytes = 256 * 1024;

struct SamplerOptions {
  // Where /proc is; tests point it at a fixture directory.
  std::string proc_root = "/proc";
  std::string node_name;
  // Samples kept in the ring (config profiler.history_samples); memory is at most
  // ring_samples x series x 8 bytes, filled as samples come.
  uint32_t ring_samples = 3000;
  // Series in the directory; names past this are dropped (and counted), never grown without
  // bound by a writer registering counters.
  uint32_t max_series = 4096;
  // Dataplane cores whose hardware counters are read (perf_event_open per CPU).
  std::vector<int> perf_cpus;
  // Which sources to read (tests switch the OS off to isolate the counters segment).
  bool read_os = true;
};

// A Herald process to sample: its label in series names ("controlplane", "dataplane").
struct ProcessRef {
  std::string label;
  int pid = 0;
};

struct SamplerStats {
  uint64_t samples = 0;
  uint64_t source_errors = 0;    // a /proc file that could not be read
  uint64_t malformed_lines = 0;  // lines the parsers skipped
  uint64_t counters_errors = 0;  // a counters-segment read that failed (series left missing)
  uint64_t series_dropped = 0;   // readings past max_series
  uint64_t last_sample_cpu_ns = 0;
  uint64_t total_sample_cpu_ns = 0;  // CLOCK_THREAD_CPUTIME_ID spent inside sample()
};

class Sampler {
 public:
  Sampler(SamplerOptions options, clock::Clock clock);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // One consistent read of the counters segment; empty: no counters series.
  void set_counters_source(std::function<absl::Status(counters::Snapshot*)> read);
  // The Herald processes to sample, asked at each sample (the dataplane's pid comes and goes).
  void set_processes(std::function<std::vector<ProcessRef>()> processes);

  // Takes one sample now. Never fails as a whole: a source that fails leaves its series
  // missing in this sample and bumps a stat.
  void sample();

  const std::vector<SeriesInfo>& series() const { return series_; }
  size_t ring_size() const { return ring_count_; }
  const SamplerStats& stats() const { return stats_; }
  const SamplerOptions& options() const { return options_; }
  const PerfCounters& perf() const { return *perf_; }

  // The latest value of `name`, and its rate per second over the last two samples (counters:
  // delta / dt; nullopt without two samples that both have it).
  std::optional<int64_t> latest(std::string_view name) const;
  std::optional<double> rate(std::string_view name) const;

  // The ring's samples taken at or after `since_ns` (monotonic), as a capture with the current
  // directory (older samples get missing values for series that appeared later).
  Capture capture_since(uint64_t since_ns, const CaptureMeta& meta) const;

 private:
  struct RingSlot {
    uint64_t mono_ns = 0;
    std::vector<int64_t> values;  // kMissing where absent
  };
  static constexpr int64_t kMissing = INT64_MIN;

  void read_os(std::vector<Reading>* out);
  void read_processes(std::vector<Reading>* out);
  void read_counters();
  // The series of `name`, added to the directory when new; kNoSeries past max_series.
  size_t series_index(std::string_view name, std::string_view unit, SeriesKind kind);
  static constexpr size_t kNoSeries = SIZE_MAX;
  // Reads a /proc file (kept open; procfs regenerates it on pread at offset 0).
  bool read_proc(std::string_view relative, std::string_view* text);
  const RingSlot* slot_back(size_t age) const;  // 0 = newest
  std::optional<size_t> index_of(std::string_view name) const;

  SamplerOptions options_;
  clock::Clock clock_;
  std::function<absl::Status(counters::Snapshot*)> read_counters_;
  std::function<std::vector<ProcessRef>()> processes_;
  std::unique_ptr<PerfCounters> perf_;

  std::vector<SeriesInfo> series_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<RingSlot> ring_;
  size_t ring_head_ = 0;  // next slot to write
  size_t ring_count_ = 0;

  // Kept across samples so a steady sample allocates nothing new.
  std::vector<Reading> readings_;
  std::string_view text_;  // into read_buffer_
  std::unique_ptr<char[]> read_buffer_;
  counters::Snapshot snapshot_;
  // Series of each counters-segment metric, for the layout epoch they were resolved in.
  struct CounterSlots {
    size_t value = kNoSeries, sum = kNoSeries, max = kNoSeries, p50 = kNoSeries, p99 = kNoSeries;
  };
  std::vector<CounterSlots> counter_slots_;
  uint64_t counter_slots_epoch_ = UINT64_MAX;
  std::vector<std::pair<size_t, int64_t>> direct_;  // (series, value) of this sample
  counters::HistogramData interval_;
  std::vector<uint64_t> delta_;
  // Previous cumulative buckets of each histogram, for per-interval percentiles.
  std::unordered_map<std::string, std::vector<uint64_t>> last_buckets_;
  std::unordered_map<std::string, int> open_files_;
  SamplerStats stats_;
};

}  // namespace herald::profiler

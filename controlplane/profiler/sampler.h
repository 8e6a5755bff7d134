// The profiler's sampler: one call to sample() reads the OS (/proc), each Herald process, the
// counters segment and the hardware counters into one Sample of a bounded in-memory ring, on
// whatever thread calls it (the control plane's loop, through ProfilerService). Rates come from
// the ring's deltas against the monotonic clock the sampler was given.
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
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
  // The /proc files that move slowly and cost the most to generate (meminfo, diskstats,
  // net/sockstat, PID/status) are read at most this often, whatever the sampling interval;
  // between two reads their series are unavailable (missing), never a repeated old value.
  uint64_t slow_period_ns = 100'000'000;
  // The process whose CPU time and the counters whose deltas make the derived.* figures.
  std::string dataplane_label = "dataplane";
  // The derived ratios compare a sample with the newest one at least this much older: the
  // dataplane mirrors its counters about every 100 ms, so over 1 s a publication more or less
  // moves a ratio by ~10%, where over one 10 ms interval it would swing from nothing to 10x.
  uint64_t derive_window_ns = 1'000'000'000;
  // The counters segment's first dataplane worker block: worker N publishes into block
  // first_worker_block + N (dataplane::kFirstWorkerCounterBlock; block 0 is the control
  // plane's). The per-worker series and derived figures come from these blocks.
  uint32_t first_worker_block = 1;
};

// The counters-segment names the derived.* series are computed from (the dataplane's stats
// mirror publishes them; dataplane/stats_mirror.cc).
inline constexpr char kDerivedMessagesCounter[] = "ctr.dp.router.messages";
inline constexpr char kDerivedDpdkPolls[] = "ctr.dp.dpdk.polls";
inline constexpr char kDerivedDpdkEmptyPolls[] = "ctr.dp.dpdk.empty_polls";
inline constexpr char kDerivedWorkerTurns[] = "ctr.dp.worker.loop_turns";
inline constexpr char kDerivedWorkerEmptyTurns[] = "ctr.dp.worker.empty_turns";
inline constexpr char kStoreCommitHistogram[] = "dp.store.append_latency_ns";
// The counters read per worker block (unsummed), in this order: each gives a
// `ctr.worker<N>.<name>` series and feeds the `derived.worker<N>.*` figures.
inline constexpr const char* kPerWorkerCounters[] = {"dp.router.messages", "dp.dpdk.polls",
                                                     "dp.dpdk.empty_polls", "dp.worker.loop_turns",
                                                     "dp.worker.empty_turns"};
inline constexpr size_t kPerWorkerCounterCount = std::size(kPerWorkerCounters);

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
  uint64_t slow_reads = 0;       // samples that also read the slow /proc files
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

  void read_os(bool slow, std::vector<Reading>* out);
  void read_processes(bool slow, std::vector<Reading>* out);
  void read_counters();
  // The ctr.worker<N>.* series of each worker block in snapshot_ (created when first seen).
  void read_worker_counters();
  // The derived.* gauges of `slot` (not yet in the ring) from it and the newest ring sample at
  // least derive_window_ns older (missing when an input is, or the ring is younger).
  void derive(RingSlot& slot);
  // The series of `name` once it exists (cached: the directory only grows).
  size_t cached_index(size_t* cache, std::string_view name) const;
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
  uint64_t last_slow_ns_ = 0;
  bool slow_read_once_ = false;

  // Kept across samples so a steady sample allocates nothing new.
  std::vector<Reading> readings_;
  std::string_view text_;  // into read_buffer_
  std::unique_ptr<char[]> read_buffer_;
  counters::Snapshot snapshot_;
  // Series of each counters-segment metric, for the layout epoch they were resolved in.
  struct CounterSlots {
    size_t value = kNoSeries, sum = kNoSeries, max = kNoSeries, p50 = kNoSeries, p99 = kNoSeries,
           p999 = kNoSeries;
    bool store_commit = false;  // also the derived.store.commit_ns.* percentiles
  };
  // Inputs and outputs of derive(), resolved once they exist.
  struct DerivedSlots {
    size_t messages = kNoSeries, dp_cpu_user = kNoSeries, dp_cpu_system = kNoSeries;
    size_t dpdk_polls = kNoSeries, dpdk_empty = kNoSeries;
    size_t turns = kNoSeries, empty_turns = kNoSeries;
    std::vector<size_t> cycles;  // hw.cpuN.cycles of every perf CPU
    std::vector<std::string> cycles_names;
    std::string dp_cpu_user_name, dp_cpu_system_name;
    size_t out_cycles_per_message = kNoSeries, out_cpu_ns_per_message = kNoSeries;
    size_t out_dpdk_useful = kNoSeries, out_dpdk_empty = kNoSeries,  // per second
        out_dpdk_empty_permille = kNoSeries;
    size_t out_useful_turns = kNoSeries, out_empty_turns = kNoSeries,  // per second
        out_empty_turns_permille = kNoSeries;
    size_t out_commit_p50 = kNoSeries, out_commit_p99 = kNoSeries, out_commit_p999 = kNoSeries;
  };
  DerivedSlots derived_;
  // One dataplane worker's series: its per-block counters (kPerWorkerCounters order) and its
  // derived figures.
  struct WorkerSlots {
    size_t inputs[kPerWorkerCounterCount];
    size_t out_messages = kNoSeries;
    size_t out_useful_turns = kNoSeries, out_empty_turns = kNoSeries,
           out_empty_turns_permille = kNoSeries;
    size_t out_useful_polls = kNoSeries, out_empty_polls = kNoSeries,
           out_empty_poll_permille = kNoSeries;
    // hw.cpuC.cycles and derived.cpuC.cycles_per_message of the core the worker is pinned to
    // (perf_cpus[N] when there is one core per worker, as the dataplane pins them).
    size_t cycles = kNoSeries, out_cycles_per_message = kNoSeries;
  };
  std::vector<WorkerSlots> workers_;
  // derived.cpuC.cycles_per_message of each perf CPU, in perf_cpus order (listed from the start).
  std::vector<size_t> cpu_cycles_per_message_;
  void derive_workers(RingSlot& slot, const RingSlot* previous, double seconds);
  int64_t ns_per_jiffy_ = 10'000'000;
  std::vector<CounterSlots> counter_slots_;
  uint64_t counter_slots_epoch_ = UINT64_MAX;
  std::vector<std::pair<size_t, int64_t>> direct_;  // (series, value) of this sample
  // The series of the k-th reading of the previous sample of the same kind (fast or slow): the
  // sources list their readings in a stable order, so a steady sample resolves each reading by
  // comparing its name with the cached one instead of hashing it.
  struct ReadingSlot {
    std::string name;
    size_t index = SIZE_MAX;
  };
  std::vector<ReadingSlot> reading_slots_[2];
  counters::HistogramData interval_;
  std::vector<uint64_t> delta_;
  // Previous cumulative buckets of each histogram, for per-interval percentiles.
  std::unordered_map<std::string, std::vector<uint64_t>> last_buckets_;
  std::unordered_map<std::string, int> open_files_;
  std::vector<int> last_pids_;  // the process list of the previous sample
  SamplerStats stats_;
};

}  // namespace herald::profiler

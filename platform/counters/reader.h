// Counters segment, reader side: what the control plane's /metrics and the profiler use, from
// another process, over a read-only mapping. Lists the directory and sums every entry over the
// writer threads, consistently with respect to layout changes (VPP stat_client's protocol:
// read the epoch, skip while in_progress, read, check the epoch again, retry).
//
// The writer is another process and may be buggy: every count, offset and name read from the
// segment is validated against the geometry this reader checked at attach, so a bad segment
// yields kDataLoss, never an out-of-bounds read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/counters/histogram.h"
#include "platform/counters/layout.h"

namespace herald::counters {

struct ReaderOptions {
  // How long read() waits out a layout change before returning kUnavailable; a registration
  // takes microseconds, so running out means a writer died mid-change or is broken.
  uint32_t layout_wait_timeout_ms = 100;
};

struct EntryInfo {
  std::string name;
  Kind kind = Kind::kCounter;
  uint32_t first_slot = 0;
  uint32_t slot_count = 0;
  HistogramSpec spec{};  // histograms only
};

struct Metric {
  std::string name;
  Kind kind = Kind::kCounter;
  uint64_t counter = 0;     // kCounter: sum over threads
  int64_t gauge = 0;        // kGauge: sum of the threads' contributions
  HistogramData histogram;  // kHistogram: merged over threads
};

// One consistent read. Reuse the same Snapshot across read() calls: when the layout has not
// changed, names and bucket vectors are kept and only values are rewritten.
struct Snapshot {
  uint64_t epoch = 0;
  uint32_t threads = 0;         // thread blocks summed (read_thread: blocks in use)
  std::vector<Metric> metrics;  // directory (registration) order

  // Opt-in, unsummed: read() also reports these counters' and gauges' values in each thread
  // block, from the same consistent read as `metrics`. Empty (the default) costs nothing; a few
  // names cost one load per name per block (the profiler's per-worker figures).
  std::vector<std::string> per_thread_names;
  // per_thread[t * per_thread_names.size() + i]: name i's value in block t, t < threads (a
  // gauge's contribution as its two's complement). Filled by read() only; 0 where absent.
  std::vector<uint64_t> per_thread;
  // Per name: whether it is a counter or gauge in the directory (a histogram or an unknown
  // name is not, and its per_thread values are 0).
  std::vector<bool> per_thread_present;

  const Metric* find(std::string_view name) const;
  // Name i's value in block t; nullopt when the name is absent or t is not a block read.
  std::optional<uint64_t> thread_value(uint32_t t, size_t i) const;

 private:
  friend class CounterReader;
  uint64_t source_id_ = 0;  // which reader and directory load filled `metrics`' names
  uint64_t directory_generation_ = 0;
  // per_thread_names resolved to slots (0: absent) for this reader's directory generation.
  std::vector<std::string> resolved_names_;
  std::vector<uint32_t> resolved_slots_;
  uint64_t resolved_source_id_ = 0;
  uint64_t resolved_generation_ = 0;
};

class CounterReader {
 public:
  // `region` is usually a read-only mapping; this class never writes to it. Errors as
  // read_geometry().
  static absl::StatusOr<CounterReader> attach(std::span<const std::byte> region,
                                              ReaderOptions options = {});

  // Fills `out` with every entry, summed over the blocks in use, and out->per_thread for the
  // names in out->per_thread_names. kDataLoss: the segment is corrupt (in a stable layout, so
  // not a torn read); kUnavailable: a layout change did not finish within the timeout.
  absl::Status read(Snapshot* out);
  // Like read(), for one thread block alone, unsummed (histograms: that block's buckets and
  // max); same consistency and validation. kOutOfRange: `thread_index` is not a block in use.
  // Leaves per_thread empty.
  absl::Status read_thread(uint32_t thread_index, Snapshot* out);

  // The directory alone (names, kinds, slots), consistent like read().
  absl::StatusOr<std::vector<EntryInfo>> list();

  uint64_t epoch() const;  // the segment's current epoch
  // Attempts that waited out, or were discarded because of, a layout change (diagnostics).
  uint64_t retries() const { return retries_; }
  const Geometry& geometry() const { return geometry_; }

 private:
  CounterReader(const std::byte* base, const Geometry& geometry, ReaderOptions options);

  // Runs `attempt(epoch)` until it ran inside one stable layout epoch.
  template <typename Attempt>
  absl::Status consistent(Attempt&& attempt);
  struct Counts {
    uint64_t entries = 0;
    uint64_t slots_used = 0;
    uint64_t threads = 0;
  };
  // The header's mutable counts, checked against the geometry.
  absl::StatusOr<Counts> read_counts() const;
  // Loads and validates the directory for `epoch` unless the cached one is for it.
  absl::Status ensure_directory(uint64_t epoch, const Counts& counts);
  absl::Status load_directory(uint64_t epoch, uint64_t count, uint64_t slots_used);
  // Fills `out` summed over every block in use, or from `only_thread` alone.
  absl::Status read_values(uint64_t epoch, Snapshot* out, std::optional<uint32_t> only_thread);
  void read_per_thread(uint64_t threads, Snapshot* out);
  const layout::Header* header() const { return reinterpret_cast<const layout::Header*>(base_); }
  const uint64_t* block(uint32_t thread_index) const;

  const std::byte* base_;
  Geometry geometry_;
  ReaderOptions options_;
  uint64_t id_;  // distinguishes readers, for Snapshot reuse
  std::vector<EntryInfo> directory_;
  bool directory_valid_ = false;
  uint64_t directory_epoch_ = 0;
  uint64_t directory_generation_ = 0;
  std::vector<uint64_t> sums_;  // per-slot sums, scratch
  uint64_t retries_ = 0;
};

}  // namespace herald::counters

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
  uint32_t threads = 0;         // thread blocks summed
  std::vector<Metric> metrics;  // directory (registration) order

  const Metric* find(std::string_view name) const;

 private:
  friend class CounterReader;
  uint64_t source_id_ = 0;  // which reader and directory load filled `metrics`' names
  uint64_t directory_generation_ = 0;
};

class CounterReader {
 public:
  // `region` is usually a read-only mapping; this class never writes to it. Errors as
  // read_geometry().
  static absl::StatusOr<CounterReader> attach(std::span<const std::byte> region,
                                              ReaderOptions options = {});

  // Fills `out` with every entry. kDataLoss: the segment is corrupt (in a stable layout, so not
  // a torn read); kUnavailable: a layout change did not finish within the timeout.
  absl::Status read(Snapshot* out);

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
  absl::Status read_values(uint64_t epoch, Snapshot* out);
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

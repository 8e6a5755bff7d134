// Counters segment, writer side: registering named counters, gauges and histograms (start-up,
// control-plane style, absl::Status) and the handles the hot path bumps per packet.
//
//   auto reg = CounterRegistry::format(region, Capacity{});          // or CountersSegment
//   CounterHandle rx = *reg->counter("tcp.rx_packets");               // at start-up
//   ThreadCounters tc = *reg->thread(worker_index);                   // once per thread
//   tc.add(rx, burst_size);                                           // hot path: one add
//
// The model is VPP's stats segment: every writer thread owns one block of slots, and only that
// thread ever stores into it, with relaxed atomic load + store (no read-modify-write, no lock).
// Readers in other processes sum the blocks. Registration takes a cross-process lock word in
// the header (the VPP "in_progress" flag) and bumps the epoch, so readers retry around it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/assert/assert.h"
#include "platform/counters/histogram.h"
#include "platform/counters/layout.h"

namespace herald::counters {

// Handles are slot indices, valid in every thread block of the registry that made them. A
// default-constructed handle points into the block's discard line: bumping it is harmless,
// so code can keep running (and count nothing) when a registration failed.
class CounterHandle {
 public:
  constexpr CounterHandle() = default;
  constexpr uint32_t slot() const { return slot_; }

 private:
  friend class CounterRegistry;
  friend class ThreadCounters;
  constexpr explicit CounterHandle(uint32_t slot) : slot_(slot) {}
  uint32_t slot_ = 0;
};

// A gauge has one slot per thread; its value is the sum of the threads' slots, read as int64.
// Per-thread gauges (connections a worker holds) are set or adjusted by each thread; a global
// gauge (config revision) is simply set by one thread only, so the others contribute 0.
class GaugeHandle {
 public:
  constexpr GaugeHandle() = default;
  constexpr uint32_t slot() const { return slot_; }

 private:
  friend class CounterRegistry;
  friend class ThreadCounters;
  constexpr explicit GaugeHandle(uint32_t slot) : slot_(slot) {}
  uint32_t slot_ = 0;
};

class HistogramHandle {
 public:
  // The discard default uses the smallest spec, {1, 2}: 2 + 5 slots fit in the discard line.
  constexpr HistogramHandle() = default;
  constexpr uint32_t first_slot() const { return first_slot_; }
  constexpr HistogramSpec spec() const { return spec_; }

 private:
  friend class CounterRegistry;
  friend class ThreadCounters;
  constexpr HistogramHandle(uint32_t first_slot, HistogramSpec spec)
      : first_slot_(first_slot), overflow_index_(overflow_bucket(spec)), spec_(spec) {}
  uint32_t first_slot_ = 0;
  uint32_t overflow_index_ = overflow_bucket(HistogramSpec{1, 2});
  HistogramSpec spec_{1, 2};
};
static_assert(layout::kHistFirstBucketSlot + bucket_count(HistogramSpec{1, 2}) <= kReservedSlots);

// One writer thread's view of its own block. Cheap to copy, but every copy must be used from
// the one thread that owns the block: that single-writer rule is what makes load + store (not
// an atomic add) correct, and it is what keeps the increment at the cost of a plain add.
class ThreadCounters {
 public:
  void add(CounterHandle c, uint64_t n = 1) { bump(c.slot_, n); }
  // Gauge contributions are int64 in two's complement; sums wrap the same way.
  void set(GaugeHandle g, int64_t value) {
    HERALD_DCHECK(g.slot_ < slot_count_, "gauge handle from another registry");
    layout::store_relaxed(slots_ + g.slot_, static_cast<uint64_t>(value));
  }
  void add(GaugeHandle g, int64_t delta) { bump(g.slot_, static_cast<uint64_t>(delta)); }
  void record(HistogramHandle h, uint64_t value) {
    HERALD_DCHECK(h.first_slot_ + layout::kHistFirstBucketSlot + h.overflow_index_ < slot_count_,
                  "histogram handle from another registry");
    uint64_t* s = slots_ + h.first_slot_;
    const uint32_t bucket = bucket_index(value, h.spec_.sub_bucket_bits, h.overflow_index_);
    bump_ptr(s + layout::kHistFirstBucketSlot + bucket, 1);
    bump_ptr(s + layout::kHistSumSlot, value);
    if (value > layout::load_relaxed(s + layout::kHistMaxSlot)) {
      layout::store_relaxed(s + layout::kHistMaxSlot, value);
    }
  }

  // This thread's own contribution (the segment-wide value is the reader's sum).
  uint64_t value(CounterHandle c) const { return layout::load_relaxed(slots_ + c.slot_); }
  int64_t value(GaugeHandle g) const {
    return static_cast<int64_t>(layout::load_relaxed(slots_ + g.slot_));
  }
  uint32_t thread_index() const { return thread_index_; }

 private:
  friend class CounterRegistry;
  ThreadCounters(uint64_t* slots, uint32_t slot_count, uint32_t thread_index)
      : slots_(slots), slot_count_(slot_count), thread_index_(thread_index) {}

  void bump(uint32_t slot, uint64_t n) {
    HERALD_DCHECK(slot < slot_count_, "counter handle from another registry");
    bump_ptr(slots_ + slot, n);
  }
  // Not fetch_add: this thread is the slot's only writer, so a relaxed load and store cannot
  // lose an update, and they compile to a plain load/add/store (no lock prefix). The atomics
  // are there so a concurrent reader sees whole 64-bit values and the compiler keeps the store.
  static void bump_ptr(uint64_t* p, uint64_t n) {
    layout::store_relaxed(p, layout::load_relaxed(p) + n);
  }

  uint64_t* slots_;
  uint32_t slot_count_;
  uint32_t thread_index_;
};

struct RegistryOptions {
  // How long a registration waits for another registrant (thread or process) before failing
  // with kDeadlineExceeded. A lock held by a process that no longer exists is taken over.
  uint32_t layout_lock_timeout_ms = 1000;
};

// The writer side of a counters region. Movable; the region must outlive it.
class CounterRegistry {
 public:
  // Formats `region` for `capacity` (the segment's creator).
  static absl::StatusOr<CounterRegistry> format(std::span<std::byte> region,
                                                const Capacity& capacity,
                                                RegistryOptions options = {});
  // Joins a region another process formatted (a dataplane attaching the control plane's
  // segment, or restarting): existing entries keep their slots and values.
  static absl::StatusOr<CounterRegistry> attach(std::span<std::byte> region,
                                                RegistryOptions options = {});

  CounterRegistry(CounterRegistry&&) noexcept;
  CounterRegistry& operator=(CounterRegistry&&) noexcept;
  ~CounterRegistry();

  // Registers `name`, or returns the existing entry of that name. Errors: kInvalidArgument (bad
  // name or spec), kAlreadyExists (the name has another kind or histogram spec),
  // kResourceExhausted (directory or slots full), kDeadlineExceeded (layout lock busy),
  // kDataLoss (the directory in the segment is corrupt).
  absl::StatusOr<CounterHandle> counter(std::string_view name);
  absl::StatusOr<GaugeHandle> gauge(std::string_view name);
  absl::StatusOr<HistogramHandle> histogram(std::string_view name, HistogramSpec spec = {});

  // The block of thread `thread_index` (< max_threads). Each index has one writer thread: a
  // second claim in this process fails with kAlreadyExists. Indices are assigned by whoever
  // creates the threads (dataplane worker i, control plane after the workers).
  absl::StatusOr<ThreadCounters> thread(uint32_t thread_index);

  uint64_t epoch() const;
  uint32_t entry_count() const;
  uint32_t slots_used() const;
  const Geometry& geometry() const { return geometry_; }

 private:
  struct LocalState;
  CounterRegistry(std::byte* base, const Geometry& geometry, RegistryOptions options);

  struct Registered {
    uint32_t first_slot;
    uint32_t slot_count;
  };
  absl::StatusOr<Registered> register_entry(std::string_view name, Kind kind, HistogramSpec spec);
  absl::Status lock_layout();
  void unlock_layout();
  layout::Header* header() const { return reinterpret_cast<layout::Header*>(base_); }
  uint64_t* directory_words(uint32_t index) const;

  std::byte* base_ = nullptr;
  Geometry geometry_;
  RegistryOptions options_;
  std::unique_ptr<LocalState> local_;  // thread claims; heap so the registry stays movable
};

}  // namespace herald::counters

// CounterReader: consistent, bounds-checked reads of a counters segment written by another
// process (the epoch/in_progress retry protocol of VPP's stat_client).
#include "platform/counters/reader.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace herald::counters {
namespace {

std::atomic<uint64_t> g_next_reader_id{1};

}  // namespace

const Metric* Snapshot::find(std::string_view name) const {
  for (const Metric& m : metrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

CounterReader::CounterReader(const std::byte* base, const Geometry& geometry, ReaderOptions options)
    : base_(base),
      geometry_(geometry),
      options_(options),
      id_(g_next_reader_id.fetch_add(1, std::memory_order_relaxed)) {}

absl::StatusOr<CounterReader> CounterReader::attach(std::span<const std::byte> region,
                                                    ReaderOptions options) {
  auto geometry = read_geometry(region.data(), region.size());
  if (!geometry.ok()) return geometry.status();
  return CounterReader(region.data(), *geometry, options);
}

uint64_t CounterReader::epoch() const {
  return layout::load_acquire(&header()->epoch);
}

const uint64_t* CounterReader::block(uint32_t thread_index) const {
  return reinterpret_cast<const uint64_t*>(base_ + geometry_.values_offset +
                                           uint64_t{thread_index} * geometry_.thread_stride_bytes);
}

template <typename Attempt>
absl::Status CounterReader::consistent(Attempt&& attempt) {
  const layout::Header* h = header();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.layout_wait_timeout_ms);
  for (uint32_t spin = 0;; ++spin) {
    const uint64_t epoch_before = layout::load_acquire(&h->epoch);
    if (layout::load_acquire(&h->in_progress) == 0) {
      absl::Status st = attempt(epoch_before);
      // Pairs with the writer's release fence after it set in_progress: if any load above saw
      // a store of a layout change, the loads below see that change's in_progress or epoch.
      // in_progress is read before the epoch: its release clear follows the epoch bump.
      __atomic_thread_fence(__ATOMIC_ACQUIRE);
      const uint64_t in_progress_after = layout::load_acquire(&h->in_progress);
      const uint64_t epoch_after = layout::load_acquire(&h->epoch);
      // An error inside a stable epoch is real corruption; inside a moving one it may be a
      // torn read, so it is retried like any other result.
      if (in_progress_after == 0 && epoch_after == epoch_before) return st;
      directory_valid_ = false;
    }
    ++retries_;
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::UnavailableError(
          absl::StrCat("counters: layout still changing after ", options_.layout_wait_timeout_ms,
                       " ms (in_progress=", layout::load_relaxed(&h->in_progress), ")"));
    }
    if (spin < 64) {
      __builtin_ia32_pause();
    } else {
      // Past a short spin, sleep: a registration holds the lock for microseconds, and the
      // reader must not steal a core from the writer it is waiting for (2-core machines).
      timespec ts{};
      ts.tv_nsec = 20'000;
      ::nanosleep(&ts, nullptr);
    }
  }
}

absl::Status CounterReader::load_directory(uint64_t epoch, uint64_t count, uint64_t slots_used) {
  directory_valid_ = false;
  directory_.resize(count);
  uint64_t slots_end = kReservedSlots;
  for (uint64_t i = 0; i < count; ++i) {
    const auto* words = reinterpret_cast<const uint64_t*>(base_ + geometry_.directory_offset +
                                                          i * sizeof(layout::DirEntry));
    const layout::DirEntry e = layout::load_entry(words);
    const void* nul = std::memchr(e.name, '\0', kNameBytes);
    if (nul == nullptr) return absl::DataLossError(absl::StrCat("counters: entry ", i, " name"));
    const std::string_view name(e.name, static_cast<const char*>(nul) - e.name);
    if (!validate_name(name).ok()) {
      return absl::DataLossError(absl::StrCat("counters: entry ", i, " has an invalid name"));
    }
    if (e.kind < static_cast<uint8_t>(Kind::kCounter) ||
        e.kind > static_cast<uint8_t>(Kind::kHistogram)) {
      return absl::DataLossError(absl::StrCat("counters: entry ", i, " kind ", int{e.kind}));
    }
    const uint64_t end = uint64_t{e.first_slot} + e.slot_count;
    if (e.first_slot < kReservedSlots || e.slot_count == 0 || end > slots_used) {
      return absl::DataLossError(absl::StrCat("counters: entry ", i, " slots [", e.first_slot, ", ",
                                              end, ") outside [", kReservedSlots, ", ", slots_used,
                                              ")"));
    }
    const Kind kind = static_cast<Kind>(e.kind);
    const HistogramSpec spec{e.sub_bucket_bits, e.max_value_bits};
    if (kind == Kind::kHistogram) {
      if (!is_valid(spec) || e.slot_count != layout::kHistFirstBucketSlot + bucket_count(spec)) {
        return absl::DataLossError(absl::StrCat("counters: histogram entry ", i, " bad spec"));
      }
    } else if (e.slot_count != 1) {
      return absl::DataLossError(absl::StrCat("counters: entry ", i, " slot count"));
    }
    EntryInfo& info = directory_[i];
    info.name.assign(name);
    info.kind = kind;
    info.first_slot = e.first_slot;
    info.slot_count = e.slot_count;
    info.spec = kind == Kind::kHistogram ? spec : HistogramSpec{};
    slots_end = std::max(slots_end, end);
  }
  // Two entries of one name would be two series of one metric in /metrics.
  std::unordered_set<std::string_view> names;
  names.reserve(directory_.size());
  for (const EntryInfo& info : directory_) {
    if (!names.insert(info.name).second) {
      return absl::DataLossError(absl::StrCat("counters: duplicate entry '", info.name, "'"));
    }
  }
  sums_.resize(slots_end);
  directory_valid_ = true;
  directory_epoch_ = epoch;
  ++directory_generation_;
  return absl::OkStatus();
}

absl::StatusOr<CounterReader::Counts> CounterReader::read_counts() const {
  const layout::Header* h = header();
  Counts c;
  c.entries = layout::load_relaxed(&h->entry_count);
  c.slots_used = layout::load_relaxed(&h->slots_used);
  c.threads = layout::load_relaxed(&h->threads_in_use);
  if (c.entries > geometry_.max_entries || c.slots_used < kReservedSlots ||
      c.slots_used > geometry_.slots_per_thread || c.threads > geometry_.max_threads) {
    return absl::DataLossError(absl::StrCat("counters: header counts out of bounds (entries ",
                                            c.entries, ", slots ", c.slots_used, ", threads ",
                                            c.threads, ")"));
  }
  return c;
}

absl::Status CounterReader::ensure_directory(uint64_t epoch, const Counts& counts) {
  if (directory_valid_ && directory_epoch_ == epoch && directory_.size() == counts.entries) {
    return absl::OkStatus();
  }
  return load_directory(epoch, counts.entries, counts.slots_used);
}

std::optional<uint64_t> Snapshot::thread_value(uint32_t t, size_t i) const {
  const size_t n = per_thread_names.size();
  if (i >= n || i >= per_thread_present.size() || !per_thread_present[i]) return std::nullopt;
  const size_t at = size_t{t} * n + i;
  if (at >= per_thread.size()) return std::nullopt;
  return per_thread[at];
}

absl::Status CounterReader::read_values(uint64_t epoch, Snapshot* out,
                                        std::optional<uint32_t> only_thread) {
  auto counts = read_counts();
  if (!counts.ok()) return counts.status();
  if (only_thread && *only_thread >= counts->threads) {
    return absl::OutOfRangeError(absl::StrCat("counters: thread block ", *only_thread,
                                              " not in use (", counts->threads, " in use)"));
  }
  if (absl::Status st = ensure_directory(epoch, *counts); !st.ok()) return st;
  const uint64_t threads = counts->threads;
  const uint32_t first_thread = only_thread ? *only_thread : 0;
  const uint64_t end_thread = only_thread ? *only_thread + uint64_t{1} : threads;
  // Only slots the (validated) directory covers are read; sums_ is sized to them.
  const size_t slots_end = sums_.size();
  std::fill(sums_.begin(), sums_.end(), 0);
  // Thread-major: each block is scanned sequentially, which the prefetcher likes far better
  // than hopping between blocks per entry.
  for (uint32_t t = first_thread; t < end_thread; ++t) {
    const uint64_t* b = block(t);
    for (size_t s = kReservedSlots; s < slots_end; ++s) sums_[s] += layout::load_relaxed(b + s);
  }
  const bool rebuild = out->source_id_ != id_ ||
                       out->directory_generation_ != directory_generation_ ||
                       out->metrics.size() != directory_.size();
  if (rebuild) out->metrics.resize(directory_.size());
  for (size_t i = 0; i < directory_.size(); ++i) {
    const EntryInfo& info = directory_[i];
    Metric& m = out->metrics[i];
    if (rebuild) {
      m.name = info.name;
      m.kind = info.kind;
    }
    switch (info.kind) {
      case Kind::kCounter: m.counter = sums_[info.first_slot]; break;
      case Kind::kGauge: m.gauge = static_cast<int64_t>(sums_[info.first_slot]); break;
      case Kind::kHistogram: {
        uint64_t max = 0;  // the one slot merged by max, not summed
        for (uint32_t t = first_thread; t < end_thread; ++t) {
          max = std::max(max,
                         layout::load_relaxed(block(t) + info.first_slot + layout::kHistMaxSlot));
        }
        m.histogram.reset(info.spec);
        m.histogram.add(
            sums_[info.first_slot + layout::kHistSumSlot], max,
            std::span<const uint64_t>(sums_.data() + info.first_slot + layout::kHistFirstBucketSlot,
                                      info.slot_count - layout::kHistFirstBucketSlot));
        break;
      }
    }
  }
  out->epoch = epoch;
  out->threads = static_cast<uint32_t>(threads);
  out->source_id_ = id_;
  out->directory_generation_ = directory_generation_;
  if (only_thread) {
    out->per_thread.clear();
  } else {
    read_per_thread(threads, out);
  }
  return absl::OkStatus();
}

void CounterReader::read_per_thread(uint64_t threads, Snapshot* out) {
  const size_t n = out->per_thread_names.size();
  if (n == 0) {
    out->per_thread.clear();
    out->per_thread_present.clear();
    return;
  }
  // Names are resolved once per directory load (and when the caller changes them), so a steady
  // read hashes and compares nothing.
  if (out->resolved_source_id_ != id_ || out->resolved_generation_ != directory_generation_ ||
      out->resolved_names_ != out->per_thread_names) {
    out->resolved_names_ = out->per_thread_names;
    out->resolved_slots_.assign(n, 0);
    out->per_thread_present.assign(n, false);
    for (size_t i = 0; i < n; ++i) {
      for (const EntryInfo& info : directory_) {
        if (info.name != out->per_thread_names[i]) continue;
        // Validated at load: first_slot < sums_.size() <= slots_per_thread.
        if (info.kind != Kind::kHistogram) {
          out->resolved_slots_[i] = info.first_slot;
          out->per_thread_present[i] = true;
        }
        break;
      }
    }
    out->resolved_source_id_ = id_;
    out->resolved_generation_ = directory_generation_;
  }
  out->per_thread.assign(threads * n, 0);
  for (uint32_t t = 0; t < threads; ++t) {
    const uint64_t* b = block(t);
    for (size_t i = 0; i < n; ++i) {
      if (out->per_thread_present[i]) {
        out->per_thread[t * n + i] = layout::load_relaxed(b + out->resolved_slots_[i]);
      }
    }
  }
}

absl::Status CounterReader::read(Snapshot* out) {
  return consistent([&](uint64_t epoch) { return read_values(epoch, out, std::nullopt); });
}

absl::Status CounterReader::read_thread(uint32_t thread_index, Snapshot* out) {
  return consistent([&](uint64_t epoch) { return read_values(epoch, out, thread_index); });
}

absl::StatusOr<std::vector<EntryInfo>> CounterReader::list() {
  absl::Status st = consistent([&](uint64_t epoch) -> absl::Status {
    auto counts = read_counts();
    if (!counts.ok()) return counts.status();
    return ensure_directory(epoch, *counts);
  });
  if (!st.ok()) return st;
  return directory_;
}

}  // namespace herald::counters

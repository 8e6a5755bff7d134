// CounterRegistry: formatting/attaching a counters region, registering entries under the
// cross-process layout lock (VPP's in_progress flag + epoch), and handing out thread blocks.
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "platform/counters/counters.h"
#include "platform/log/log.h"

namespace herald::counters {

struct CounterRegistry::LocalState {
  std::mutex mu;
  std::vector<bool> claimed;  // thread indices handed out by this process
};

CounterRegistry::CounterRegistry(std::byte* base, const Geometry& geometry, RegistryOptions options)
    : base_(base), geometry_(geometry), options_(options), local_(new LocalState) {
  local_->claimed.assign(geometry.max_threads, false);
}

CounterRegistry::CounterRegistry(CounterRegistry&&) noexcept = default;
CounterRegistry& CounterRegistry::operator=(CounterRegistry&&) noexcept = default;
CounterRegistry::~CounterRegistry() = default;

absl::StatusOr<CounterRegistry> CounterRegistry::format(std::span<std::byte> region,
                                                        const Capacity& capacity,
                                                        RegistryOptions options) {
  if (absl::Status st = format_region(region, capacity); !st.ok()) return st;
  auto geometry = read_geometry(region.data(), region.size());
  HERALD_CHECK(geometry.ok(), "a region we just formatted must validate");
  HLOG_INFO("counters.formatted")
      .kv("bytes", geometry->region_bytes)
      .kv("max_entries", capacity.max_entries)
      .kv("max_threads", capacity.max_threads)
      .kv("slots_per_thread", capacity.slots_per_thread);
  return CounterRegistry(region.data(), *geometry, options);
}

absl::StatusOr<CounterRegistry> CounterRegistry::attach(std::span<std::byte> region,
                                                        RegistryOptions options) {
  auto geometry = read_geometry(region.data(), region.size());
  if (!geometry.ok()) return geometry.status();
  return CounterRegistry(region.data(), *geometry, options);
}

uint64_t* CounterRegistry::directory_words(uint32_t index) const {
  return reinterpret_cast<uint64_t*>(base_ + geometry_.directory_offset +
                                     uint64_t{index} * sizeof(layout::DirEntry));
}

uint64_t CounterRegistry::epoch() const {
  return layout::load_acquire(&header()->epoch);
}

uint32_t CounterRegistry::entry_count() const {
  return static_cast<uint32_t>(layout::load_acquire(&header()->entry_count));
}

uint32_t CounterRegistry::slots_used() const {
  return static_cast<uint32_t>(layout::load_acquire(&header()->slots_used));
}

namespace {

// A registrant that died holding the lock would block every later registration and make
// readers time out. kill(pid, 0) tells a dead pid from a live one (EPERM means alive). Both
// planes run in one pid namespace on the appliance, so the pid means the same thing to both.
bool holder_is_dead(uint64_t holder) {
  if (holder == 0) return false;
  if (holder > static_cast<uint64_t>(INT_MAX)) return true;  // not a pid: garbage
  return ::kill(static_cast<pid_t>(holder), 0) == -1 && errno == ESRCH;
}

inline void cpu_relax() {
  __builtin_ia32_pause();
}

}  // namespace

absl::Status CounterRegistry::lock_layout() {
  uint64_t* in_progress = &header()->in_progress;
  const uint64_t me = static_cast<uint64_t>(::getpid());
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.layout_lock_timeout_ms);
  for (uint32_t spin = 0;; ++spin) {
    uint64_t holder = 0;
    if (__atomic_compare_exchange_n(in_progress, &holder, me, /*weak=*/false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
      break;
    }
    // `holder` == me is another thread of this process: wait for it like for anyone else.
    if (holder != me && holder_is_dead(holder) &&
        __atomic_compare_exchange_n(in_progress, &holder, me, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
      // Safe to take over: a registration publishes entry_count last, so a half-written entry
      // past it is invisible and is overwritten now; at worst a few slots are leaked.
      HLOG_WARN("counters.layout_lock_taken_over").kv("dead_pid", holder);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("counters: layout lock held by pid ", holder,
                                                      " for over ", options_.layout_lock_timeout_ms,
                                                      " ms"));
    }
    if (spin < 128) {
      cpu_relax();
    } else {
      ::sched_yield();
    }
  }
  // Orders the in_progress store before the directory stores that follow: a reader that sees
  // any of them (and then issues its acquire fence) must also see in_progress != 0.
  __atomic_thread_fence(__ATOMIC_RELEASE);
  return absl::OkStatus();
}

void CounterRegistry::unlock_layout() {
  layout::store_release(&header()->in_progress, 0);
}

absl::StatusOr<CounterRegistry::Registered> CounterRegistry::register_entry(std::string_view name,
                                                                            Kind kind,
                                                                            HistogramSpec spec) {
  if (absl::Status st = validate_name(name); !st.ok()) return st;
  if (kind == Kind::kHistogram && !is_valid(spec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "counters: histogram '", std::string(name), "' spec out of range (sub_bucket_bits ",
        int{kMinSubBucketBits}, "..", int{kMaxSubBucketBits}, ", max_value_bits up to ",
        int{kMaxValueBitsLimit}, ")"));
  }
  if (absl::Status st = lock_layout(); !st.ok()) return st;
  struct Unlock {
    CounterRegistry* self;
    ~Unlock() { self->unlock_layout(); }
  } unlock{this};

  layout::Header* h = header();
  // The segment may have been written by another process (another dataplane incarnation), so
  // what it says is checked before any handle derived from it reaches the hot path.
  const uint64_t count = layout::load_relaxed(&h->entry_count);
  const uint64_t used = layout::load_relaxed(&h->slots_used);
  if (count > geometry_.max_entries || used < kReservedSlots || used > geometry_.slots_per_thread) {
    return absl::DataLossError("counters: header counts out of bounds");
  }
  for (uint32_t i = 0; i < count; ++i) {
    const layout::DirEntry e = layout::load_entry(directory_words(i));
    if (std::memchr(e.name, '\0', kNameBytes) == nullptr) {
      return absl::DataLossError(absl::StrCat("counters: entry ", i, " name not terminated"));
    }
    if (std::string_view(e.name) != name) continue;
    if (uint64_t{e.first_slot} < kReservedSlots || e.slot_count == 0 ||
        uint64_t{e.first_slot} + e.slot_count > used) {
      return absl::DataLossError(
          absl::StrCat("counters: entry '", std::string(name), "' slots out of bounds"));
    }
    const HistogramSpec found_spec{e.sub_bucket_bits, e.max_value_bits};
    if (e.kind != static_cast<uint8_t>(kind) || (kind == Kind::kHistogram && found_spec != spec)) {
      return absl::AlreadyExistsError(absl::StrCat("counters: '", std::string(name),
                                                   "' is already registered",
                                                   " as another kind or histogram spec"));
    }
    const uint32_t expected_slots =
        kind == Kind::kHistogram ? layout::kHistFirstBucketSlot + bucket_count(spec) : 1;
    if (e.slot_count != expected_slots) {
      return absl::DataLossError(
          absl::StrCat("counters: entry '", std::string(name), "' has bad slot count"));
    }
    return Registered{e.first_slot, e.slot_count};
  }
  if (count == geometry_.max_entries) {
    return absl::ResourceExhaustedError(
        absl::StrCat("counters: directory full (", geometry_.max_entries, " entries)"));
  }
  layout::DirEntry e{};
  std::memcpy(e.name, name.data(), name.size());
  e.kind = static_cast<uint8_t>(kind);
  uint64_t first = used;
  if (kind == Kind::kHistogram) {
    e.sub_bucket_bits = spec.sub_bucket_bits;
    e.max_value_bits = spec.max_value_bits;
    e.slot_count = layout::kHistFirstBucketSlot + bucket_count(spec);
    // A histogram starts on a cache line: record() then touches its sum/max line and one
    // bucket line, never a line shared with unrelated counters.
    constexpr uint64_t kSlotsPerLine = kCacheLineBytes / sizeof(uint64_t);
    first = (first + kSlotsPerLine - 1) / kSlotsPerLine * kSlotsPerLine;
  } else {
    e.slot_count = 1;
  }
  if (first + e.slot_count > geometry_.slots_per_thread) {
    return absl::ResourceExhaustedError(absl::StrCat("counters: no room for '", std::string(name),
                                                     "' (", geometry_.slots_per_thread,
                                                     " slots per thread, ", used, " used)"));
  }
  e.first_slot = static_cast<uint32_t>(first);
  // Publication order: the entry, then slots_used, then entry_count (what makes it visible),
  // then the epoch; unlock (in_progress = 0) comes last, with release, in ~Unlock.
  layout::store_entry(directory_words(static_cast<uint32_t>(count)), e);
  layout::store_release(&h->slots_used, first + e.slot_count);
  layout::store_release(&h->entry_count, count + 1);
  layout::store_release(&h->epoch, layout::load_relaxed(&h->epoch) + 1);
  return Registered{e.first_slot, e.slot_count};
}

absl::StatusOr<CounterHandle> CounterRegistry::counter(std::string_view name) {
  auto r = register_entry(name, Kind::kCounter, {});
  if (!r.ok()) return r.status();
  return CounterHandle(r->first_slot);
}

absl::StatusOr<GaugeHandle> CounterRegistry::gauge(std::string_view name) {
  auto r = register_entry(name, Kind::kGauge, {});
  if (!r.ok()) return r.status();
  return GaugeHandle(r->first_slot);
}

absl::StatusOr<HistogramHandle> CounterRegistry::histogram(std::string_view name,
                                                           HistogramSpec spec) {
  auto r = register_entry(name, Kind::kHistogram, spec);
  if (!r.ok()) return r.status();
  return HistogramHandle(r->first_slot, spec);
}

absl::StatusOr<ThreadCounters> CounterRegistry::thread(uint32_t thread_index) {
  if (thread_index >= geometry_.max_threads) {
    return absl::InvalidArgumentError(absl::StrCat("counters: thread index ", thread_index,
                                                   " >= max_threads ", geometry_.max_threads));
  }
  {
    std::lock_guard<std::mutex> lock(local_->mu);
    if (local_->claimed[thread_index]) {
      return absl::AlreadyExistsError(
          absl::StrCat("counters: thread block ", thread_index, " already has a writer"));
    }
    local_->claimed[thread_index] = true;
  }
  // threads_in_use only grows (a CAS max), so readers sum every block that may hold values.
  uint64_t* in_use = &header()->threads_in_use;
  uint64_t seen = layout::load_relaxed(in_use);
  while (seen < thread_index + 1ull &&
         !__atomic_compare_exchange_n(in_use, &seen, thread_index + 1ull, /*weak=*/true,
                                      __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
  }
  auto* slots = reinterpret_cast<uint64_t*>(base_ + geometry_.values_offset +
                                            uint64_t{thread_index} * geometry_.thread_stride_bytes);
  return ThreadCounters(slots, geometry_.slots_per_thread, thread_index);
}

}  // namespace herald::counters

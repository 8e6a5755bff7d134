// Counters segment format: geometry from a Capacity, formatting a region, and validating a
// header read from a segment another (possibly buggy) process wrote.
#include "platform/counters/layout.h"

#include <cstddef>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace herald::counters {
namespace {

constexpr uint64_t round_up(uint64_t v, uint64_t align) {
  return (v + align - 1) / align * align;
}

}  // namespace

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::kCounter: return "counter";
    case Kind::kGauge: return "gauge";
    case Kind::kHistogram: return "histogram";
  }
  return "unknown";
}

absl::Status validate_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("counters: name must be 1..", kMaxNameLength, " characters"));
  }
  for (char c : name) {
    if (c < '!' || c > '~') {
      return absl::InvalidArgumentError(absl::StrCat("counters: name '", std::string(name),
                                                     "' has a character outside '!'..'~'"));
    }
  }
  return absl::OkStatus();
}

namespace layout {

void store_entry(uint64_t* dst_words, const DirEntry& entry) {
  uint64_t words[kEntryWords];
  std::memcpy(words, &entry, sizeof(entry));
  for (size_t i = 0; i < kEntryWords; ++i) store_relaxed(dst_words + i, words[i]);
}

DirEntry load_entry(const uint64_t* src_words) {
  uint64_t words[kEntryWords];
  for (size_t i = 0; i < kEntryWords; ++i) words[i] = load_relaxed(src_words + i);
  DirEntry entry;
  std::memcpy(&entry, words, sizeof(entry));
  return entry;
}

}  // namespace layout

absl::StatusOr<Geometry> geometry_for(const Capacity& capacity) {
  if (capacity.max_entries == 0 || capacity.max_entries > kMaxEntriesLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("counters: max_entries must be in [1, ", kMaxEntriesLimit, "]"));
  }
  if (capacity.max_threads == 0 || capacity.max_threads > kMaxThreadsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("counters: max_threads must be in [1, ", kMaxThreadsLimit, "]"));
  }
  if (capacity.slots_per_thread <= kReservedSlots ||
      capacity.slots_per_thread > kMaxSlotsPerThreadLimit) {
    return absl::InvalidArgumentError(absl::StrCat("counters: slots_per_thread must be in [",
                                                   kReservedSlots + 1, ", ",
                                                   kMaxSlotsPerThreadLimit, "]"));
  }
  // With the limits above every product fits easily in 64 bits (< 2^45).
  Geometry g;
  g.max_entries = capacity.max_entries;
  g.max_threads = capacity.max_threads;
  g.slots_per_thread = capacity.slots_per_thread;
  g.directory_offset = sizeof(layout::Header);
  // Thread blocks start on a page so a block never shares a page with the directory, which
  // only the registering thread writes.
  g.values_offset = round_up(
      g.directory_offset + uint64_t{capacity.max_entries} * sizeof(layout::DirEntry), kPageBytes);
  g.thread_stride_bytes =
      round_up(uint64_t{capacity.slots_per_thread} * sizeof(uint64_t), kThreadAlignBytes);
  g.region_bytes = round_up(
      g.values_offset + uint64_t{capacity.max_threads} * g.thread_stride_bytes, kPageBytes);
  return g;
}

size_t region_size_bytes(const Capacity& capacity) {
  auto g = geometry_for(capacity);
  return g.ok() ? g->region_bytes : 0;
}

absl::Status format_region(std::span<std::byte> region, const Capacity& capacity) {
  auto g = geometry_for(capacity);
  if (!g.ok()) return g.status();
  if (reinterpret_cast<uintptr_t>(region.data()) % kCacheLineBytes != 0) {
    return absl::InvalidArgumentError("counters: region must be 64-byte aligned");
  }
  if (region.size() < g->region_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("counters: region of ", region.size(),
                                                   " bytes is smaller than the ", g->region_bytes,
                                                   " the capacity needs"));
  }
  // Zero everything we own: the region may be reused memory. A fresh memfd is already zero,
  // but touching it here also commits the pages at start-up instead of on the hot path.
  std::memset(region.data(), 0, g->region_bytes);
  auto* h = reinterpret_cast<layout::Header*>(region.data());
  h->version = kVersion;
  h->header_bytes = sizeof(layout::Header);
  h->region_bytes = g->region_bytes;
  h->max_entries = g->max_entries;
  h->max_threads = g->max_threads;
  h->entry_bytes = sizeof(layout::DirEntry);
  h->slots_per_thread = g->slots_per_thread;
  h->directory_offset = g->directory_offset;
  h->values_offset = g->values_offset;
  h->thread_stride_bytes = g->thread_stride_bytes;
  h->slots_used = kReservedSlots;
  // A reader that sees the magic (acquire) sees every field above.
  layout::store_release(&h->magic, kMagic);
  return absl::OkStatus();
}

absl::StatusOr<Geometry> read_geometry(const std::byte* data, size_t size_bytes) {
  if (data == nullptr || size_bytes < sizeof(layout::Header)) {
    return absl::InvalidArgumentError("counters: region too small for a header");
  }
  if (reinterpret_cast<uintptr_t>(data) % kCacheLineBytes != 0) {
    return absl::InvalidArgumentError("counters: region must be 64-byte aligned");
  }
  const auto* h = reinterpret_cast<const layout::Header*>(data);
  if (layout::load_acquire(&h->magic) != kMagic) {
    return absl::InvalidArgumentError("counters: bad magic (not a counters segment)");
  }
  // The geometry fields are immutable after the magic's release store, so plain reads of a
  // well-behaved writer's header are race-free; a misbehaving one is caught by the checks.
  layout::Header copy{};
  std::memcpy(&copy, h, offsetof(layout::Header, epoch));
  if (copy.version != kVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("counters: segment version ", copy.version, ", expected ", kVersion));
  }
  if (copy.header_bytes != sizeof(layout::Header) || copy.entry_bytes != sizeof(layout::DirEntry)) {
    return absl::DataLossError("counters: header or entry size mismatch");
  }
  const Capacity capacity{copy.max_entries, copy.max_threads, copy.slots_per_thread};
  auto expected = geometry_for(capacity);
  if (!expected.ok()) {
    return absl::DataLossError(
        absl::StrCat("counters: header capacity invalid: ", expected.status().message()));
  }
  // The layout is a pure function of the capacity; anything else is corruption. Checking for
  // equality (not just bounds) also rules out overlapping directory and blocks.
  if (copy.directory_offset != expected->directory_offset ||
      copy.values_offset != expected->values_offset ||
      copy.thread_stride_bytes != expected->thread_stride_bytes ||
      copy.region_bytes != expected->region_bytes) {
    return absl::DataLossError("counters: header offsets do not match its capacity");
  }
  if (expected->region_bytes > size_bytes) {
    return absl::DataLossError(absl::StrCat("counters: header claims ", expected->region_bytes,
                                            " bytes, mapping has ", size_bytes));
  }
  return *expected;
}

}  // namespace herald::counters

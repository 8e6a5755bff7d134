// The counters segment in shared memory: a memfd/hugetlbfs shm::Segment formatted as a
// counters region. The writer side (create, or attach read-write) owns a CounterRegistry; the
// reader side (control plane /metrics, profiler) attaches the same descriptor read-only.
#pragma once

#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "platform/counters/counters.h"
#include "platform/counters/reader.h"
#include "platform/shm/segment.h"

namespace herald::counters {

class CountersSegment {
 public:
  // A new segment sized for `capacity` (rounded up to the backing's page size) and formatted.
  static absl::StatusOr<CountersSegment> create(std::string_view name, const Capacity& capacity,
                                                shm::Backing backing = shm::Backing::kMemfd,
                                                RegistryOptions options = {});
  // Maps a segment another process created (read-write) and joins its registry.
  static absl::StatusOr<CountersSegment> attach(shm::UniqueFd fd, RegistryOptions options = {});

  CounterRegistry& registry() { return registry_; }
  const shm::Segment& segment() const { return segment_; }
  int fd() const { return segment_.fd(); }  // still owned; pass to shm::send_fds()

 private:
  CountersSegment(shm::Segment segment, CounterRegistry registry)
      : segment_(std::move(segment)), registry_(std::move(registry)) {}

  shm::Segment segment_;  // declared first: outlives the registry that points into it
  CounterRegistry registry_;
};

class CountersReadView {
 public:
  // Maps `fd` read-only (PROT_READ) and validates the header.
  static absl::StatusOr<CountersReadView> attach(shm::UniqueFd fd, ReaderOptions options = {});

  CounterReader& reader() { return reader_; }
  const shm::Segment& segment() const { return segment_; }

 private:
  CountersReadView(shm::Segment segment, CounterReader reader)
      : segment_(std::move(segment)), reader_(std::move(reader)) {}

  shm::Segment segment_;
  CounterReader reader_;
};

}  // namespace herald::counters

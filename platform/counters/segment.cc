// CountersSegment / CountersReadView: counters regions over shm::Segment mappings.
#include "platform/counters/segment.h"

#include <utility>

namespace herald::counters {

absl::StatusOr<CountersSegment> CountersSegment::create(std::string_view name,
                                                        const Capacity& capacity,
                                                        shm::Backing backing,
                                                        RegistryOptions options) {
  const size_t size_bytes = region_size_bytes(capacity);
  if (size_bytes == 0) return geometry_for(capacity).status();
  auto segment = shm::Segment::create(name, size_bytes, backing);
  if (!segment.ok()) return segment.status();
  auto registry = CounterRegistry::format(segment->bytes(), capacity, options);
  if (!registry.ok()) return registry.status();
  return CountersSegment(*std::move(segment), *std::move(registry));
}

absl::StatusOr<CountersSegment> CountersSegment::attach(shm::UniqueFd fd, RegistryOptions options) {
  auto segment = shm::Segment::attach(std::move(fd), /*read_only=*/false);
  if (!segment.ok()) return segment.status();
  auto registry = CounterRegistry::attach(segment->bytes(), options);
  if (!registry.ok()) return registry.status();
  return CountersSegment(*std::move(segment), *std::move(registry));
}

absl::StatusOr<CountersReadView> CountersReadView::attach(shm::UniqueFd fd, ReaderOptions options) {
  auto segment = shm::Segment::attach(std::move(fd), /*read_only=*/true);
  if (!segment.ok()) return segment.status();
  auto reader = CounterReader::attach(segment->bytes(), options);
  if (!reader.ok()) return reader.status();
  return CountersReadView(*std::move(segment), *std::move(reader));
}

}  // namespace herald::counters

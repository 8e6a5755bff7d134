// Cross-worker hand-off rings (worker_mesh.h): ring layout in ordinary memory, batching per
// loop turn, overflow queues and the sleep announcement of an adaptive worker.
#include "dataplane/routing/worker_mesh.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/ipc/segment.h"

namespace herald::dataplane {
namespace {

constexpr size_t kRegionAlignBytes = 128;  // as ipc segment rings: no adjacent-line sharing
constexpr uint32_t kOverflowWrap = shm::kRingWrapType;

// Overflow entry header: kind, payload length, connection, tag.
struct OverflowHeader {
  uint32_t kind;
  uint32_t length;
  uint64_t connection;
  uint64_t tag;
};
static_assert(sizeof(OverflowHeader) == 24);

constexpr uint64_t align8(uint64_t n) {
  return (n + 7) & ~uint64_t{7};
}

}  // namespace

OverflowQueue::OverflowQueue(uint64_t capacity_bytes)
    : buf_(align8(capacity_bytes)), capacity_(align8(capacity_bytes)) {}

bool OverflowQueue::push(const MeshHandoff& h) {
  const uint64_t need = sizeof(OverflowHeader) + align8(h.payload.size());
  // As ring.h: a record is at most half the buffer, so an empty queue always takes one.
  if (capacity_ == 0 || need > capacity_ / 2) return false;
  uint64_t offset = tail_ % capacity_;
  const uint64_t to_end = capacity_ - offset;
  const uint64_t total = need <= to_end ? need : to_end + need;
  if (tail_ + total - head_ > capacity_) return false;
  if (total != need) {
    const uint32_t wrap = kOverflowWrap;
    std::memcpy(buf_.data() + offset, &wrap, sizeof(wrap));
    tail_ += to_end;
    offset = 0;
  }
  const OverflowHeader header{h.kind, static_cast<uint32_t>(h.payload.size()), h.connection, h.tag};
  std::memcpy(buf_.data() + offset, &header, sizeof(header));
  if (!h.payload.empty()) {
    std::memcpy(buf_.data() + offset + sizeof(header), h.payload.data(), h.payload.size());
  }
  tail_ += need;
  ++records_;
  return true;
}

bool OverflowQueue::front(MeshHandoff& out) {
  if (head_ == tail_) return false;
  uint64_t offset = head_ % capacity_;
  uint32_t kind;
  std::memcpy(&kind, buf_.data() + offset, sizeof(kind));
  if (kind == kOverflowWrap) {
    head_ += capacity_ - offset;
    offset = 0;
  }
  OverflowHeader header;
  std::memcpy(&header, buf_.data() + offset, sizeof(header));
  out.kind = header.kind;
  out.connection = header.connection;
  out.tag = header.tag;
  out.payload = {reinterpret_cast<const uint8_t*>(buf_.data() + offset + sizeof(header)),
                 header.length};
  return true;
}

void OverflowQueue::pop() {
  MeshHandoff h;
  if (!front(h)) return;  // front() also steps over a wrap marker
  head_ += sizeof(OverflowHeader) + align8(h.payload.size());
  --records_;
}

// ---- MeshEndpoint ---------------------------------------------------------------------------

bool MeshEndpoint::put(Out& out, const MeshHandoff& h) {
  const shm::Reservation r = out.ring.reserve(h.kind, sizeof(MeshRecordHeader) + h.payload.size());
  if (r.status != shm::RingStatus::kOk) {
    if (r.status == shm::RingStatus::kCorrupt) ++stats_.ring_corrupt;
    return false;
  }
  const MeshRecordHeader header{h.connection, h.tag};
  std::memcpy(r.payload.data(), &header, sizeof(header));
  if (!h.payload.empty()) {
    std::memcpy(r.payload.data() + sizeof(header), h.payload.data(), h.payload.size());
  }
  out.dirty = true;
  return true;
}

MeshRefusal MeshEndpoint::send(uint16_t to_worker, const MeshHandoff& handoff) {
  HERALD_CHECK(to_worker < out_.size() && to_worker != worker_,
               "mesh send to itself or to an unknown worker");
  Out& out = *out_[to_worker];
  if (handoff.kind == shm::kRingWrapType) {
    ++stats_.refused_bad_kind;
    return MeshRefusal::kBadKind;
  }
  if (sizeof(MeshRecordHeader) + handoff.payload.size() > out.ring.max_payload_bytes()) {
    ++stats_.refused_too_large;
    return MeshRefusal::kTooLarge;
  }
  // Older records waiting in the overflow queue go first: per-destination order holds.
  if (out.overflow.empty() && put(out, handoff)) {
    ++stats_.sent;
    ++stats_.sent_direct;
    return MeshRefusal::kNone;
  }
  if (!out.overflow.push(handoff)) {
    ++stats_.refused_overflow_full;
    return MeshRefusal::kOverflowFull;
  }
  ++stats_.sent;
  ++stats_.overflowed;
  ++stats_.overflow_records;  // the gauges are recomputed exactly by flush()
  return MeshRefusal::kNone;
}

size_t MeshEndpoint::commit(Out& out) {
  if (!out.dirty) return 0;
  out.dirty = false;
  const size_t n = out.ring.commit();
  if (n > 0) ++stats_.commits;
  return n;
}

size_t MeshEndpoint::flush() {
  size_t published = 0;
  uint64_t overflow_records = 0;
  uint64_t overflow_bytes = 0;
  for (auto& slot : out_) {
    if (!slot) continue;
    Out& out = *slot;
    published += commit(out);
    MeshHandoff h;
    while (out.overflow.front(h) && put(out, h)) {
      out.overflow.pop();
      ++stats_.overflow_moved;
    }
    published += commit(out);
    overflow_records += out.overflow.records();
    overflow_bytes += out.overflow.bytes();
  }
  stats_.overflow_records = overflow_records;
  stats_.overflow_bytes = overflow_bytes;
  return published;
}

bool MeshEndpoint::decode(uint16_t from, const shm::RecordView& view, MeshRecord& record) {
  if (view.payload.size() < sizeof(MeshRecordHeader)) {
    ++stats_.malformed;
    return false;
  }
  MeshRecordHeader header;
  std::memcpy(&header, view.payload.data(), sizeof(header));
  record.from_worker = from;
  record.kind = view.type;
  record.connection = header.connection;
  record.tag = header.tag;
  record.payload = {reinterpret_cast<const uint8_t*>(view.payload.data()) + sizeof(header),
                    view.payload.size() - sizeof(header)};
  ++stats_.received;
  return true;
}

bool MeshEndpoint::has_incoming() const {
  for (const auto& in : in_) {
    if (in && in->ring.has_data()) return true;
  }
  return false;
}

bool MeshEndpoint::prepare_to_sleep() {
  // Drain the doorbell first: a ring from before this announcement must not wake us at once.
  (void)doorbell_.drain();
  bool arrived = false;
  for (const auto& in : in_) {
    if (in && ipc::announce_sleep(in->region, in->ring)) arrived = true;
  }
  if (arrived) {
    woke();
    ++stats_.sleeps_aborted;
    return false;
  }
  ++stats_.sleeps;
  return true;
}

void MeshEndpoint::woke() {
  for (const auto& in : in_) {
    if (in) ipc::set_consumer_waiting(in->region, false);
  }
}

// ---- WorkerMesh -----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<WorkerMesh>> WorkerMesh::create(const WorkerMeshOptions& options) {
  if (options.workers == 0) return absl::InvalidArgumentError("worker mesh: workers is 0");
  std::unique_ptr<WorkerMesh> mesh(new WorkerMesh(options));
  const uint16_t n = options.workers;
  mesh->region_bytes_ =
      (shm::ring_region_bytes(options.ring_capacity_bytes) + kRegionAlignBytes - 1) &
      ~(kRegionAlignBytes - 1);
  const size_t total = mesh->region_bytes_ * n * n;  // the diagonal stays unused: simpler math
  if (n > 1) {
    mesh->memory_ = static_cast<std::byte*>(
        ::operator new (total, std::align_val_t{kRegionAlignBytes}, std::nothrow));
    if (mesh->memory_ == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("worker mesh: cannot allocate ", total, " bytes of rings"));
    }
    std::memset(mesh->memory_, 0, total);
  }
  for (uint16_t w = 0; w < n; ++w) {
    auto doorbell = shm::Doorbell::create();
    if (!doorbell.ok()) return doorbell.status();
    mesh->endpoints_.push_back(
        std::unique_ptr<MeshEndpoint>(new MeshEndpoint(w, std::move(*doorbell))));
  }
  const shm::RingConfig config{.capacity_bytes = options.ring_capacity_bytes};
  for (uint16_t from = 0; from < n; ++from) {
    mesh->endpoints_[from]->out_.resize(n);
    mesh->endpoints_[from]->in_.resize(n);
  }
  for (uint16_t from = 0; from < n; ++from) {
    for (uint16_t to = 0; to < n; ++to) {
      if (from == to) continue;
      const std::span<std::byte> region = mesh->region(from, to);
      if (absl::Status s = shm::ring_init(region, config); !s.ok()) return s;
      auto producer = shm::RingProducer::attach(region);
      if (!producer.ok()) return producer.status();
      auto consumer = shm::RingConsumer::attach(region);
      if (!consumer.ok()) return consumer.status();
      producer->set_doorbell(mesh->endpoints_[to]->doorbell_fd());
      mesh->endpoints_[from]->out_[to] = std::make_unique<MeshEndpoint::Out>(
          std::move(*producer), options.overflow_bytes_per_peer);
      mesh->endpoints_[to]->in_[from] =
          std::unique_ptr<MeshEndpoint::In>(new MeshEndpoint::In{std::move(*consumer), region});
    }
  }
  return mesh;
}

WorkerMesh::~WorkerMesh() {
  endpoints_.clear();
  if (memory_ != nullptr) ::operator delete (memory_, std::align_val_t{kRegionAlignBytes});
}

std::span<std::byte> WorkerMesh::region(uint16_t from, uint16_t to) const {
  const size_t index = size_t{from} * options_.workers + to;
  return {memory_ + index * region_bytes_, shm::ring_region_bytes(options_.ring_capacity_bytes)};
}

}  // namespace herald::dataplane

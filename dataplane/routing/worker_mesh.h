// Hand-offs between dataplane workers: one SPSC ring (platform/shm ring layout, in ordinary
// process memory) per ordered pair of workers, batched per loop turn, a doorbell for a worker
// that sleeps (adaptive polling), and a bounded private overflow queue per destination when its
// ring is full. No locks: each ring has exactly one producer thread and one consumer thread.
//
//   auto mesh = WorkerMesh::create({.workers = 4});
//   // worker thread i:
//   MeshEndpoint& me = (*mesh)->endpoint(i);
//   me.send(j, {.kind = kDeliverFrame, .connection = conn, .payload = frame});  // any number
//   me.flush();                                   // end of the loop turn: one commit per ring
//   me.poll([&](const MeshRecord& r) { ... }, 256);
//   if (idle && me.prepare_to_sleep()) { poll(me.doorbell_fd()); me.woke(); }
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/transport/transport.h"
#include "platform/shm/doorbell.h"
#include "platform/shm/ring.h"

namespace herald::dataplane {

struct WorkerMeshOptions {
  uint16_t workers = 1;
  // Data bytes of each of the workers * (workers - 1) rings (a power of two, ring.h limits).
  // Memory: workers * (workers - 1) * (ring_capacity_bytes + overflow_bytes_per_peer), all
  // allocated by create(): 16 workers with the defaults take 75 MB.
  uint64_t ring_capacity_bytes = 256 << 10;
  // Private queue per destination, used when its ring is full; beyond it send() refuses.
  uint64_t overflow_bytes_per_peer = 64 << 10;
};

// One hand-off as the sender gives it. `kind` is the router's (what the payload is); the
// payload is copied, so the caller's buffer is free when send() returns.
struct MeshHandoff {
  uint32_t kind = 0;  // any value but shm::kRingWrapType
  ConnectionId connection = kNoConnection;
  uint64_t tag = 0;  // the router's (an append id, a device, ...)
  std::span<const uint8_t> payload;
};

// One hand-off as the receiver sees it; `payload` is valid only during the poll callback.
struct MeshRecord {
  uint16_t from_worker = 0;
  uint32_t kind = 0;
  ConnectionId connection = kNoConnection;
  uint64_t tag = 0;
  std::span<const uint8_t> payload;
};

// Why send() refused a hand-off; each is a counter.
enum class MeshRefusal : uint8_t {
  kNone = 0,
  kOverflowFull,  // the ring and the destination's overflow queue are full
  kTooLarge,      // larger than a ring record can ever be
  kBadKind,       // shm::kRingWrapType
};

struct MeshEndpointStats {
  uint64_t sent = 0;            // hand-offs taken by send()
  uint64_t sent_direct = 0;     // of those, straight into the ring
  uint64_t overflowed = 0;      // of those, into the overflow queue (ring full or queue busy)
  uint64_t overflow_moved = 0;  // overflow records later moved into the ring
  uint64_t refused_overflow_full = 0;
  uint64_t refused_too_large = 0;
  uint64_t refused_bad_kind = 0;
  uint64_t commits = 0;  // ring tail publications (at most two per ring per flush)
  uint64_t received = 0;
  uint64_t malformed = 0;         // a record shorter than its header (a bug: counted, skipped)
  uint64_t ring_corrupt = 0;      // ring.h faults seen on an incoming or outgoing ring
  uint64_t sleeps = 0;            // prepare_to_sleep() said yes
  uint64_t sleeps_aborted = 0;    // records arrived while announcing the sleep
  uint64_t overflow_records = 0;  // gauge: records waiting in overflow queues
  uint64_t overflow_bytes = 0;    // gauge
};

class WorkerMesh;

// A bounded FIFO of hand-offs in one preallocated buffer (records never split: a wrap marker
// skips the tail end, as in ring.h). Single-threaded: the sending worker's.
class OverflowQueue {
 public:
  explicit OverflowQueue(uint64_t capacity_bytes);
  [[nodiscard]] bool push(const MeshHandoff& h);
  // The oldest record, or false when empty.
  [[nodiscard]] bool front(MeshHandoff& out);
  void pop();
  bool empty() const { return head_ == tail_; }
  size_t records() const { return records_; }
  uint64_t bytes() const { return tail_ - head_; }

 private:
  std::vector<std::byte> buf_;
  uint64_t capacity_;
  uint64_t head_ = 0;  // positions only grow; offset = position % capacity
  uint64_t tail_ = 0;
  size_t records_ = 0;
};

// One worker's view of the mesh: producer of its rings to every other worker, consumer of every
// other worker's ring to it. Used by that worker's thread only.
class MeshEndpoint {
 public:
  MeshEndpoint(const MeshEndpoint&) = delete;
  MeshEndpoint& operator=(const MeshEndpoint&) = delete;

  uint16_t worker() const { return worker_; }

  // Queues one hand-off for `to_worker` (!= worker()). Reserved in the ring but not visible
  // until flush(); when the ring is full (or older records still wait in the overflow queue,
  // which keeps per-destination order) it goes to the overflow queue. kNone when taken.
  [[nodiscard]] MeshRefusal send(uint16_t to_worker, const MeshHandoff& handoff);
  // End of a loop turn: publishes every ring written since the last flush (one commit each,
  // doorbell rung only if that worker sleeps), then moves overflow records into rings with
  // room. Returns the records published.
  size_t flush();
  // Reads up to max_records hand-offs from the incoming rings, calling fn(const MeshRecord&)
  // for each; returns how many. Releases what it read before returning.
  template <typename Fn>
  size_t poll(Fn&& fn, size_t max_records);

  // Adaptive mode: announce on every incoming ring that this worker is going to sleep on
  // doorbell_fd(). False (do not sleep) when a record arrived meanwhile. Call woke() after.
  [[nodiscard]] bool prepare_to_sleep();
  void woke();
  int doorbell_fd() const { return doorbell_.fd(); }
  // Whether an incoming ring holds records (cheap: one load per ring).
  bool has_incoming() const;

  const MeshEndpointStats& stats() const { return stats_; }
  const shm::RingProducerStats& ring_out_stats(uint16_t to_worker) const {
    return out_[to_worker]->ring.stats();
  }

 private:
  friend class WorkerMesh;
  struct Out {
    Out(shm::RingProducer r, uint64_t overflow_bytes)
        : ring(std::move(r)), overflow(overflow_bytes) {}
    shm::RingProducer ring;
    OverflowQueue overflow;
    bool dirty = false;  // reservations not yet committed
  };
  struct In {
    shm::RingConsumer ring;
    std::span<std::byte> region;
  };
  MeshEndpoint(uint16_t worker, shm::Doorbell doorbell)
      : worker_(worker), doorbell_(std::move(doorbell)) {}
  bool put(Out& out, const MeshHandoff& h);
  size_t commit(Out& out);
  bool decode(uint16_t from, const shm::RecordView& view, MeshRecord& record);

  uint16_t worker_;
  shm::Doorbell doorbell_;
  std::vector<std::unique_ptr<Out>> out_;  // by destination; out_[worker_] is null (no ring)
  std::vector<std::unique_ptr<In>> in_;    // by source; in_[worker_] is null
  uint16_t next_in_ = 0;  // round-robin start, so one busy peer cannot starve the others
  // poll()'s views, kept here: a local array is zeroed on every call, and poll runs every loop
  // turn (poll's callback never polls again).
  shm::RecordView poll_views_[32];
  MeshEndpointStats stats_;
};

class WorkerMesh {
 public:
  // Allocates and lays out workers * (workers - 1) rings and one doorbell per worker. Done at
  // start-up, before the worker threads run.
  static absl::StatusOr<std::unique_ptr<WorkerMesh>> create(const WorkerMeshOptions& options);
  ~WorkerMesh();
  WorkerMesh(const WorkerMesh&) = delete;
  WorkerMesh& operator=(const WorkerMesh&) = delete;

  uint16_t workers() const { return options_.workers; }
  MeshEndpoint& endpoint(uint16_t worker) { return *endpoints_[worker]; }

 private:
  explicit WorkerMesh(const WorkerMeshOptions& options) : options_(options) {}
  std::span<std::byte> region(uint16_t from, uint16_t to) const;

  WorkerMeshOptions options_;
  size_t region_bytes_ = 0;
  std::byte* memory_ = nullptr;  // all rings, 128-byte aligned each
  std::vector<std::unique_ptr<MeshEndpoint>> endpoints_;
};

// Ring payload: this header, then the hand-off's payload.
struct MeshRecordHeader {
  uint64_t connection;
  uint64_t tag;
};
static_assert(sizeof(MeshRecordHeader) == 16);

template <typename Fn>
size_t MeshEndpoint::poll(Fn&& fn, size_t max_records) {
  const uint16_t n = static_cast<uint16_t>(in_.size());
  size_t done = 0;
  std::span<shm::RecordView> views(poll_views_);
  for (uint16_t k = 0; k < n && done < max_records; ++k) {
    const uint16_t from = static_cast<uint16_t>((next_in_ + k) % n);
    if (from == worker_) continue;
    In& in = *in_[from];
    while (done < max_records) {
      const size_t want = std::min<size_t>(views.size(), max_records - done);
      const shm::ReadResult r = in.ring.read_batch(views.first(want));
      for (size_t i = 0; i < r.count; ++i) {
        MeshRecord record;
        if (!decode(from, views[i], record)) continue;  // malformed, counted
        fn(static_cast<const MeshRecord&>(record));
      }
      done += r.count;
      in.ring.release();
      if (r.status == shm::RingStatus::kCorrupt) ++stats_.ring_corrupt;
      if (r.count < want) break;
    }
  }
  next_in_ = static_cast<uint16_t>((next_in_ + 1) % n);
  return done;
}

}  // namespace herald::dataplane

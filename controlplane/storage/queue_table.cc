// The offline message queues over the durable log: record encoding, the in-memory index
// (bodies once, per-device FIFOs keyed by the QueueAppend record's sequence) and its recovery.
#include "controlplane/storage/queue_table.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {

constexpr size_t kIdBytes = 16;
constexpr size_t kDeviceBytes = 20;
constexpr size_t kCountBytes = 4;
constexpr size_t kPositionBytes = 8;

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_id(std::vector<uint8_t>& out, const MessageId& id) {
  put_u64(out, id.hi);
  put_u64(out, id.lo);
}
void put_device(std::vector<uint8_t>& out, const DeviceKey& d) {
  put_u64(out, d.account_hi);
  put_u64(out, d.account_lo);
  put_u32(out, d.device);
}

// Little-endian reads from a payload whose bounds the caller has checked (one load each on
// this little-endian target; the byte loop compiled to a dozen instructions on the restart path).
static_assert(std::endian::native == std::endian::little, "records are little-endian");
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
MessageId get_id(const uint8_t* p) {
  return {get_u64(p), get_u64(p + 8)};
}
DeviceKey get_device(const uint8_t* p) {
  return {get_u64(p), get_u64(p + 8), get_u32(p + 16)};
}

absl::Status malformed(const RecoveredRecord& record) {
  return absl::DataLossError("malformed queue record type " + std::to_string(record.type) +
                             " at sequence " + std::to_string(record.location.sequence));
}

}  // namespace

QueueTable::QueueTable(const QueueTableOptions& options) : options_(options) {}

// --- Recovery ---------------------------------------------------------------------------------

absl::Status QueueTable::recover(const RecoveredRecord& record) {
  HERALD_CHECK(log_ == nullptr, "recover() after start()");
  const std::span<const uint8_t> p = record.payload;
  switch (record.type) {
    case kRecordTypeBodyPut: {
      // From a segment summary only the id is here; the body's size is the payload's, less it.
      if (p.size() < kIdBytes) return malformed(record);
      note_location(record.location);
      const MessageId id = get_id(p.data());
      Body& body = *bodies_.try_emplace(id).first;
      // A later BodyPut for the same id is a copy made by compaction, or follows an append whose
      // QueueAppend was refused or lost; either way the same message: the last one wins.
      body_bytes_ -= body.size_bytes;
      body.where = record.location;
      body.durable = true;
      body.size_bytes = static_cast<uint32_t>(record.payload_size() - kIdBytes);
      body_bytes_ += body.size_bytes;
      ++stats_.recovered_bodies;
      return absl::OkStatus();
    }
    case kRecordTypeQueueAppend:
    case kRecordTypeQueueAppendCopy: {
      if (record.payload_truncated()) return malformed(record);  // summaries keep these whole
      const bool copy = record.type == kRecordTypeQueueAppendCopy;
      const size_t fixed = kIdBytes + (copy ? kPositionBytes : 0) + kCountBytes;
      if (p.size() < fixed) return malformed(record);
      const MessageId id = get_id(p.data());
      const uint64_t position = copy ? get_u64(p.data() + kIdBytes) : record.location.sequence;
      const uint32_t n = get_u32(p.data() + fixed - kCountBytes);
      if (n == 0 || p.size() != fixed + uint64_t{n} * kDeviceBytes ||
          position > record.location.sequence || position == 0) {
        return malformed(record);
      }
      note_location(record.location);
      // The BodyPut may come later (a copy made by compaction after this record): the body is
      // a placeholder until then; start() drops entries whose body never came.
      Body& body = *bodies_.try_emplace(id).first;
      if (body.refs > 0 && body.position != position) {
        // The id again, after its first entries: append() takes an id only once all of them
        // were deleted, and their tombstones were staged before the new records; compaction may
        // have copied those tombstones past this record. So the older entries are dead: they
        // leave the index in start(), and a later tombstone of them still depends on their
        // records (recovery_stale_). An older position after a newer one is not our writing.
        if (position < body.position) {
          return absl::DataLossError("queue append at sequence " +
                                     std::to_string(record.location.sequence) +
                                     " older than the entries of its id");
        }
        StaleIncarnation stale{body.position, {}};
        carrying_sequences(id, body, stale.sequences);
        recovery_stale_.try_emplace(id).first->push_back(std::move(stale));
        if (body.superseded) superseded_.erase(id);
        body.superseded = false;
        body.refs = 0;
        stale_entries_ = true;
      }
      if (body.refs > 0 && body.append_durable) {
        // A copy while the record it replaces is still here (a crash before that segment was
        // retired): tombstones of these entries depend on both.
        superseded_.try_emplace(id).first->push_back(body.append_where.sequence);
        body.superseded = true;
      }
      body.position = position;
      body.append_where = record.location;
      body.append_durable = true;
      for (uint32_t i = 0; i < n; ++i) {
        const DeviceKey device = get_device(p.data() + fixed + i * kDeviceBytes);
        absl::Status added = add_entry(device, id, position, /*durable=*/true, body);
        if (!added.ok()) return added;
        ++stats_.recovered_entries;
      }
      return absl::OkStatus();
    }
    case kRecordTypeQueueDelete: {
      if (record.payload_truncated()) return malformed(record);
      constexpr size_t kItemBytes = kIdBytes + kPositionBytes;
      if (p.size() < kDeviceBytes + kCountBytes) return malformed(record);
      const DeviceKey device = get_device(p.data());
      const uint32_t n = get_u32(p.data() + kDeviceBytes);
      if (n == 0 || p.size() != kDeviceBytes + kCountBytes + uint64_t{n} * kItemBytes) {
        return malformed(record);
      }
      note_location(record.location);
      std::vector<uint64_t> carrying;
      for (uint32_t i = 0; i < n; ++i) {
        const uint8_t* item = p.data() + kDeviceBytes + kCountBytes + i * kItemBytes;
        const MessageId id = get_id(item);
        const uint64_t position = get_u64(item + kIdBytes);
        // Kills only the entry at that position: a later message with the same id is another
        // entry, which a tombstone copied forward past it must not touch.
        Body* body = bodies_.find(id);
        Queue* queue = queues_.find(device);
        if (body != nullptr && body->position == position && queue != nullptr &&
            locate(*queue, id) >= 0) {
          carrying_sequences(id, *body, carrying);
          erase_entry(device, id);
          ++stats_.recovered_deletes;
        } else {
          ++stats_.recovered_deletes_unknown;  // its entry was never recovered, or is compacted
          if (const auto* stale = recovery_stale_.find(id); stale != nullptr) {
            // It kills an older incarnation whose records may still be on disk: still needed.
            for (const StaleIncarnation& s : *stale) {
              if (s.position == position) {
                carrying.insert(carrying.end(), s.sequences.begin(), s.sequences.end());
              }
            }
          }
        }
      }
      add_tombstone(record.location, carrying);
      return absl::OkStatus();
    }
    default: ++stats_.recovered_foreign; return absl::OkStatus();
  }
}

absl::Status QueueTable::recover(std::span<const RecoveredRecord> records) {
  // Two stages ahead of the record being applied: the body and queue slots of record i + 16,
  // then (those slots now in cache) the end of the queue's entry vector for record i + 8, which
  // add_entry appends to. Only hints: a stale guess costs a wasted prefetch, nothing else.
  constexpr size_t kSlotsAhead = 16;
  constexpr size_t kEntriesAhead = 8;
  const auto device_of = [](const RecoveredRecord& r, DeviceKey* device) {
    if (r.type != kRecordTypeQueueAppend ||
        r.payload.size() < kIdBytes + kCountBytes + kDeviceBytes)
      return false;
    *device = get_device(r.payload.data() + kIdBytes + kCountBytes);
    return true;
  };
  for (size_t i = 0; i < records.size(); ++i) {
    if (i + kSlotsAhead < records.size()) {
      const RecoveredRecord& ahead = records[i + kSlotsAhead];
      if (ahead.type >= kRecordTypeBodyPut && ahead.payload.size() >= kIdBytes) {
        bodies_.prefetch(get_id(ahead.payload.data()));
      }
      if (DeviceKey device; device_of(ahead, &device)) queues_.prefetch(device);
    }
    if (i + kEntriesAhead < records.size()) {
      if (DeviceKey device; device_of(records[i + kEntriesAhead], &device)) {
        if (const Queue* queue = queues_.find(device); queue != nullptr) {
          prefetch_line(queue->entries.data() + queue->entries.size());
        }
      }
    }
    if (absl::Status s = recover(records[i]); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void QueueTable::expect_records(uint64_t records) {
  HERALD_CHECK(log_ == nullptr, "expect_records() after start()");
  bodies_.reserve(static_cast<size_t>(records / 2));
}

uint32_t QueueTable::summary_payload_bytes(uint8_t type, std::span<const uint8_t> payload) {
  if (type == kRecordTypeBodyPut) return static_cast<uint32_t>(std::min(payload.size(), kIdBytes));
  return static_cast<uint32_t>(payload.size());
}

void QueueTable::start(Log& log) {
  HERALD_CHECK(log_ == nullptr, "start() twice");
  // Entries whose body never came (its BodyPut lost, which the log would have reported, or a
  // log not written by us): nothing to send, so they go. Rare, hence the separate pass.
  if (stale_entries_) {
    // Entries of an id appended again later (recover()): dead, out of the queues.
    std::vector<DeviceKey> emptied;
    queues_.for_each_mutable([&](const DeviceKey& device, Queue& q) {
      for (size_t i = q.head; i < q.entries.size(); ++i) {
        Entry& e = q.entries[i];
        if (e.state == EntryState::kRemoved) continue;
        const Body* body = bodies_.find(e.id);
        if (body == nullptr || body->position != e.position) {
          e.state = EntryState::kRemoved;
          --q.live;
        }
      }
      if (q.live == 0) emptied.push_back(device);
    });
    for (const DeviceKey& device : emptied) queues_.erase(device);
    queues_.for_each_mutable([](const DeviceKey&, Queue& q) {
      std::erase_if(q.entries, [](const Entry& e) { return e.state == EntryState::kRemoved; });
      q.head = 0;
    });
    stale_entries_ = false;
  }
  recovery_stale_ = {};
  // Recovery noted every segment its records are in (note_location): a dense table of them
  // for the passes below, which look one up twice per body in hash order (a std::map lookup
  // each was a visible share of a 10 M-message restart).
  const uint64_t first_segment = segments_.empty() ? 0 : segments_.begin()->first;
  std::vector<SegmentState*> by_index(
      segments_.empty() ? 0 : segments_.rbegin()->first - first_segment + 1, nullptr);
  for (auto& [index, segment] : segments_) by_index[index - first_segment] = &segment;
  const auto state_of = [&](uint64_t index) -> SegmentState& {
    return *by_index[index - first_segment];
  };
  // One pass: whether the two rare clean-ups below are needed at all, and how long each
  // segment's lists will be (reserved once; with millions of bodies their doublings showed).
  // After a clean-up the sizes are an upper bound, which is all a reservation needs.
  uint64_t no_body = 0;
  uint64_t unreferenced = 0;
  std::vector<std::pair<size_t, size_t>> list_sizes(by_index.size());
  bodies_.for_each([&](const MessageId&, const Body& body) {
    if (!body.durable && body.refs > 0) ++no_body;
    if (body.refs == 0) ++unreferenced;
    if (body.durable) ++list_sizes[body.where.segment_index - first_segment].first;
    if (body.append_durable) ++list_sizes[body.append_where.segment_index - first_segment].second;
  });
  if (no_body > 0) {
    std::vector<std::pair<DeviceKey, MessageId>> drop;
    queues_.for_each([&](const DeviceKey& device, const Queue& queue) {
      for (size_t i = queue.head; i < queue.entries.size(); ++i) {
        const Entry& e = queue.entries[i];
        if (e.state != EntryState::kRemoved && !bodies_.find(e.id)->durable) {
          drop.emplace_back(device, e.id);
        }
      }
    });
    for (const auto& [device, id] : drop) erase_entry(device, id);
    stats_.recovered_appends_no_body += drop.size();
  }
  // A BodyPut whose QueueAppend never became durable (crash between them, or the second append
  // refused) is referenced by nothing: never acknowledged, so it goes.
  if (unreferenced > 0) {
    bodies_.erase_if([this](const MessageId& id, const Body& body) {
      if (body.refs != 0) return false;
      body_bytes_ -= body.size_bytes;
      ++stats_.orphan_bodies_dropped;
      if (body.superseded) superseded_.erase(id);
      return true;
    });
  }
  // Compaction's view: each body's BodyPut and carrying record are live.
  for (size_t k = 0; k < by_index.size(); ++k) {
    if (by_index[k] == nullptr) continue;
    by_index[k]->bodies.reserve(by_index[k]->bodies.size() + list_sizes[k].first);
    by_index[k]->appends.reserve(by_index[k]->appends.size() + list_sizes[k].second);
  }
  bodies_.for_each([&](const MessageId& id, const Body& body) {
    SegmentState& body_segment = state_of(body.where.segment_index);
    body_segment.live_bytes += body.where.size_bytes;
    ++body_segment.live_records;
    body_segment.bodies.push_back(id);
    SegmentState& append_segment = state_of(body.append_where.segment_index);
    append_segment.live_bytes += body.append_where.size_bytes;
    ++append_segment.live_records;
    append_segment.appends.push_back(id);
  });
  log_ = &log;
  HLOG_INFO("queue_table_recovered")
      .kv("bodies", static_cast<uint64_t>(bodies_.size()))
      .kv("body_bytes", body_bytes_)
      .kv("entries", stats_.recovered_entries - stats_.recovered_deletes)
      .kv("devices", static_cast<uint64_t>(queues_.size()))
      .kv("orphan_bodies", stats_.orphan_bodies_dropped)
      .kv("tombstones", static_cast<uint64_t>(tombstones_.size()));
}

// --- Index --------------------------------------------------------------------------------------

int64_t QueueTable::locate(const Queue& queue, const MessageId& id) const {
  const Body* body = bodies_.find(id);
  if (body == nullptr || body->refs == 0) return -1;
  if (queue.head == queue.entries.size()) return -1;
  const auto begin = queue.entries.begin() + queue.head;
  auto it = queue.entries.end();
  // The common cases first: an ack of the oldest entry, a durable callback of the newest.
  if (begin->position == body->position) {
    it = begin;
  } else if (queue.entries.back().position == body->position) {
    it = queue.entries.end() - 1;
  } else {
    it = std::lower_bound(begin, queue.entries.end(), body->position,
                          [](const Entry& e, uint64_t p) { return e.position < p; });
  }
  if (it == queue.entries.end() || it->position != body->position || it->id != id ||
      it->state == EntryState::kRemoved) {
    return -1;
  }
  return it - queue.entries.begin();
}

absl::Status QueueTable::add_entry(const DeviceKey& device, const MessageId& id, uint64_t position,
                                   bool durable, Body& body) {
  Queue& queue = *queues_.try_emplace(device).first;
  const Entry entry{id, position, durable ? EntryState::kDurable : EntryState::kPending};
  if (queue.entries.size() == queue.head || queue.entries.back().position < position) {
    queue.entries.push_back(entry);  // the normal case: appends come in sequence order
  } else {
    // Only recovery meets an older position (records copied forward keep theirs).
    auto it = std::lower_bound(queue.entries.begin() + queue.head, queue.entries.end(), position,
                               [](const Entry& e, uint64_t p) { return e.position < p; });
    if (it->position == position) {
      if (it->id != id) {
        return absl::DataLossError("two queue entries at sequence " + std::to_string(position));
      }
      if (it->state != EntryState::kRemoved) return absl::OkStatus();  // already there
      *it = entry;
    } else {
      queue.entries.insert(it, entry);
    }
  }
  ++queue.live;
  ++body.refs;
  return absl::OkStatus();
}

void QueueTable::erase_at(Queue& queue, size_t index) {
  queue.entries[index].state = EntryState::kRemoved;
  --queue.live;
  while (queue.head < queue.entries.size() &&
         queue.entries[queue.head].state == EntryState::kRemoved) {
    ++queue.head;
  }
  const size_t used = queue.entries.size() - queue.head;
  if (used == 0) {
    queue.entries.clear();
    queue.head = 0;
  } else if (queue.head >= 64 && queue.head * 2 >= queue.entries.size()) {
    // Acks at the head (the usual order): drop the consumed prefix, amortized O(1).
    queue.entries.erase(queue.entries.begin(), queue.entries.begin() + queue.head);
    queue.head = 0;
  } else if (used >= 64 && used > 2 * size_t{queue.live}) {
    // Out-of-order acks left more holes than entries: squeeze them out.
    auto end = std::remove_if(queue.entries.begin() + queue.head, queue.entries.end(),
                              [](const Entry& e) { return e.state == EntryState::kRemoved; });
    queue.entries.erase(end, queue.entries.end());
    queue.entries.erase(queue.entries.begin(), queue.entries.begin() + queue.head);
    queue.head = 0;
  }
}

bool QueueTable::erase_entry(const DeviceKey& device, const MessageId& id) {
  Queue* queue = queues_.find(device);
  if (queue == nullptr) return false;
  const int64_t index = locate(*queue, id);
  if (index < 0) return false;
  erase_at(*queue, static_cast<size_t>(index));
  if (queue->live == 0) queues_.erase(device);
  unref_body(id);
  return true;
}

void QueueTable::unref_body(const MessageId& id) {
  Body* body = bodies_.find(id);
  HERALD_CHECK(body != nullptr && body->refs > 0, "body reference count");
  if (--body->refs > 0) return;
  body_bytes_ -= body->size_bytes;
  if (log_ != nullptr) {  // recovery counts at start()
    if (body->durable) count(body->where, -1);
    if (body->append_durable) count(body->append_where, -1);
  }
  if (body->superseded) superseded_.erase(id);
  bodies_.erase(id);
}

uint32_t QueueTable::queued(const DeviceKey& device) const {
  const Queue* queue = queues_.find(device);
  return queue == nullptr ? 0 : queue->live;
}

// --- Serving ------------------------------------------------------------------------------------

absl::StatusOr<AppendOutcome> QueueTable::append(const MessageId& id, std::span<const uint8_t> body,
                                                 std::span<const DeviceKey> recipients,
                                                 DoneCallback done) {
  HERALD_CHECK(log_ != nullptr, "used before start()");
  if (recipients.empty()) return absl::InvalidArgumentError("no recipients");
  const uint64_t max_payload = log_->options().max_payload_bytes;
  if (kIdBytes + body.size() > max_payload) {
    return absl::InvalidArgumentError("message body too large for the log");
  }
  if (kIdBytes + kCountBytes + recipients.size() * kDeviceBytes > max_payload) {
    return absl::InvalidArgumentError("too many recipients for one record");
  }
  for (size_t i = 0; i < recipients.size(); ++i) {
    if (recipients[i].device == 0) return absl::InvalidArgumentError("device 0");
    for (size_t j = 0; j < i; ++j) {
      if (recipients[j] == recipients[i]) return absl::InvalidArgumentError("duplicate recipient");
    }
  }
  if (bodies_.find(id) != nullptr) return absl::AlreadyExistsError("message id already queued");

  AppendOutcome outcome;
  std::vector<DeviceKey> accepted;
  accepted.reserve(recipients.size());
  for (const DeviceKey& r : recipients) {
    if (queued(r) >= options_.max_queued_messages_per_device) {
      outcome.queue_full.push_back(r);
      ++stats_.refused_queue_full;
    } else {
      accepted.push_back(r);
    }
  }
  if (accepted.empty()) return outcome;

  std::vector<uint8_t> payload;
  payload.reserve(kIdBytes + body.size());
  put_id(payload, id);
  payload.insert(payload.end(), body.begin(), body.end());
  // The BodyPut's completion records where the body lives. It runs before the QueueAppend's
  // (callbacks in sequence order), so a body is located before any entry is drainable; a failure
  // fails both. The sequence check skips a body freed (and its id appended again) meanwhile.
  auto body_seq = log_->append(kRecordTypeBodyPut, payload,
                               [this, id](const absl::Status& status, const RecordLocation& at) {
                                 if (!status.ok()) return;
                                 note_location(at);
                                 Body* b = bodies_.find(id);
                                 if (b == nullptr || b->where.sequence != at.sequence) return;
                                 b->where = at;
                                 b->durable = true;
                                 count(at, +1);
                                 segments_[at.segment_index].bodies.push_back(id);
                               });
  if (!body_seq.ok()) return body_seq.status();

  payload.clear();
  put_id(payload, id);
  put_u32(payload, static_cast<uint32_t>(accepted.size()));
  for (const DeviceKey& d : accepted) put_device(payload, d);
  // The position is the QueueAppend's sequence, known only after append() returns; the callback
  // never runs inside append(), so it can read it from the shared slot.
  auto position = std::make_shared<uint64_t>(0);
  auto seq = log_->append(kRecordTypeQueueAppend, payload,
                          [this, id, position, devices = accepted, cb = std::move(done)](
                              const absl::Status& status, const RecordLocation& at) {
                            on_append_durable(status, at, id, *position, devices, cb);
                          });
  if (!seq.ok()) {
    // The BodyPut stays staged with nothing referencing it; recovery drops it (orphan).
    return seq.status();
  }
  *position = *seq;

  Body& b = *bodies_.try_emplace(id).first;
  b.where.sequence = *body_seq;
  b.append_where.sequence = *seq;
  b.position = *seq;
  b.size_bytes = static_cast<uint32_t>(body.size());
  body_bytes_ += b.size_bytes;
  for (const DeviceKey& d : accepted) {
    // Cannot fail: the position is the newest sequence, so it goes at the back.
    HERALD_CHECK(add_entry(d, id, *seq, /*durable=*/false, b).ok(), "append at the back");
  }
  ++stats_.appends;
  stats_.entries_appended += accepted.size();
  outcome.written = true;
  return outcome;
}

void QueueTable::on_append_durable(const absl::Status& status, const RecordLocation& at,
                                   const MessageId& id, uint64_t position,
                                   const std::vector<DeviceKey>& devices,
                                   const DoneCallback& done) {
  if (status.ok()) {
    note_location(at);
    Body* body = bodies_.find(id);
    if (body != nullptr && body->append_where.sequence == at.sequence) {
      body->append_where = at;
      body->append_durable = true;
      count(at, +1);
      segments_[at.segment_index].appends.push_back(id);
    }
  }
  for (const DeviceKey& d : devices) {
    Queue* queue = queues_.find(d);
    if (queue == nullptr) continue;
    const int64_t index = locate(*queue, id);
    // Absent: removed while pending (and the id perhaps appended again since: other position).
    if (index < 0 || queue->entries[static_cast<size_t>(index)].position != position) continue;
    if (status.ok()) {
      queue->entries[static_cast<size_t>(index)].state = EntryState::kDurable;
    } else {
      // The log failed (fail-stop): whether this record survived is for recovery to say; the
      // table serves nothing it cannot vouch for.
      erase_entry(d, id);
    }
  }
  if (done) done(status);
}

absl::StatusOr<uint32_t> QueueTable::remove(const DeviceKey& device, std::span<const MessageId> ids,
                                            DoneCallback done) {
  HERALD_CHECK(log_ != nullptr, "used before start()");
  constexpr size_t kItemBytes = kIdBytes + kPositionBytes;
  if (kDeviceBytes + kCountBytes + ids.size() * kItemBytes > log_->options().max_payload_bytes) {
    return absl::InvalidArgumentError("too many ids for one record");
  }
  const Queue* queue = queues_.find(device);
  std::vector<MessageId> present;
  if (queue != nullptr) {
    for (const MessageId& id : ids) {
      if (locate(*queue, id) >= 0 &&
          std::find(present.begin(), present.end(), id) == present.end()) {
        present.push_back(id);
      }
    }
  }
  stats_.deletes_unknown += ids.size() - present.size();
  if (present.empty()) return 0u;

  std::vector<uint8_t> payload;
  payload.reserve(kDeviceBytes + kCountBytes + present.size() * kItemBytes);
  put_device(payload, device);
  put_u32(payload, static_cast<uint32_t>(present.size()));
  // The records that carry these entries: the tombstone is needed while any of them is on disk
  // in another segment (compaction; resolved to segments once the tombstone is durable).
  std::vector<uint64_t> carrying;
  for (const MessageId& id : present) {
    Body* body = bodies_.find(id);
    put_id(payload, id);
    put_u64(payload, body->position);
    carrying_sequences(id, *body, carrying);
  }
  auto seq = log_->append(kRecordTypeQueueDelete, payload,
                          [this, carrying = std::move(carrying), cb = std::move(done)](
                              const absl::Status& status, const RecordLocation& at) {
                            if (status.ok()) {
                              note_location(at);
                              add_tombstone(at, carrying);
                            }
                            if (cb) cb(status);
                          });
  if (!seq.ok()) return seq.status();
  // Out of the index at once: the device has these messages, so hiding them early is safe, and
  // a tombstone lost in a crash only means redelivery (ids are deduplicated by the client).
  for (const MessageId& id : present) erase_entry(device, id);
  stats_.entries_deleted += present.size();
  return static_cast<uint32_t>(present.size());
}

std::vector<QueueTable::Selected> QueueTable::select(const DeviceKey& device,
                                                     std::optional<MessageId> after,
                                                     uint32_t max_messages,
                                                     uint64_t max_bytes) const {
  std::vector<Selected> out;
  const Queue* queue = queues_.find(device);
  if (queue == nullptr || max_messages == 0) return out;
  size_t i = queue->head;
  if (after.has_value()) {
    const int64_t index = locate(*queue, *after);
    if (index >= 0) i = static_cast<size_t>(index) + 1;
  }
  uint64_t bytes = 0;
  for (; i < queue->entries.size() && out.size() < max_messages; ++i) {
    const Entry& entry = queue->entries[i];
    if (entry.state == EntryState::kRemoved) continue;
    // Durable entries form a prefix of each queue: the log completes appends in sequence order
    // and positions are those sequences.
    if (entry.state == EntryState::kPending) break;
    const Body* body = bodies_.find(entry.id);
    HERALD_CHECK(body != nullptr && body->durable, "a durable entry's BodyPut is durable first");
    if (!out.empty() && bytes + body->size_bytes > max_bytes) break;
    bytes += body->size_bytes;
    out.push_back({entry.id, body->where});
  }
  return out;
}

std::vector<MessageId> QueueTable::peek(const DeviceKey& device, std::optional<MessageId> after,
                                        uint32_t max_messages, uint64_t max_bytes) const {
  std::vector<MessageId> out;
  for (const Selected& s : select(device, after, max_messages, max_bytes)) out.push_back(s.id);
  return out;
}

// The reads of one drain complete in any order; the answer goes out once all have, in queue
// order. The state is shared by the reads alone, so the table may be gone by then.
struct QueueTable::DrainState {
  std::vector<DrainedMessage> messages;
  size_t outstanding = 0;
  absl::Status status;
  DrainCallback done;
};

void QueueTable::drain(const DeviceKey& device, std::optional<MessageId> after,
                       uint32_t max_messages, uint64_t max_bytes, DrainCallback done) {
  HERALD_CHECK(log_ != nullptr, "used before start()");
  ++stats_.drains;
  auto d = std::make_shared<DrainState>();
  d->done = std::move(done);
  const std::vector<Selected> selected = select(device, after, max_messages, max_bytes);
  d->messages.resize(selected.size());
  d->outstanding = selected.size();
  if (selected.empty()) {
    log_->read(RecordLocation{}, [d](absl::StatusOr<ReadRecord>) {
      // A refused read is the cheapest way to complete later, never inside this call.
      d->done(std::vector<DrainedMessage>{});
    });
    return;
  }
  stats_.body_reads += selected.size();
  for (size_t i = 0; i < selected.size(); ++i) {
    d->messages[i].id = selected[i].id;
    read_for_drain(d, i, selected[i].where, /*retry=*/true);
  }
}

void QueueTable::read_for_drain(const std::shared_ptr<DrainState>& d, size_t i,
                                const RecordLocation& where, bool retry) {
  std::weak_ptr<bool> alive = alive_;
  log_->read(where, [this, alive, d, i, where, retry](absl::StatusOr<ReadRecord> record) {
    if (!record.ok() && absl::IsNotFound(record.status()) && retry && !alive.expired()) {
      // Compaction moved the body and retired its segment after this drain chose it: read it
      // where it is now (once; a body moves again only after a whole cleaning round).
      const Body* body = bodies_.find(d->messages[i].id);
      if (body != nullptr && body->durable && body->where.sequence != where.sequence) {
        return read_for_drain(d, i, body->where, /*retry=*/false);
      }
    }
    if (d->status.ok()) {
      if (!record.ok()) {
        d->status = record.status();
      } else if (record->type != kRecordTypeBodyPut || record->payload.size() < kIdBytes ||
                 get_id(record->payload.data()) != d->messages[i].id) {
        d->status = absl::DataLossError("queue body record does not match its entry");
      } else {
        d->messages[i].body.assign(record->payload.begin() + kIdBytes, record->payload.end());
      }
    }
    if (--d->outstanding > 0) return;
    if (d->status.ok()) {
      d->done(std::move(d->messages));
    } else {
      d->done(d->status);
    }
  });
}

// --- Compaction ---------------------------------------------------------------------------------

void QueueTable::note_location(const RecordLocation& at) {
  // Records reach the table in sequence order (recovery, then durable callbacks), and segment
  // indices grow with sequences, so the first sequence seen in a segment starts it here.
  if (segment_starts_.empty() || segment_starts_.back().first < at.segment_index) {
    segment_starts_.emplace_back(at.segment_index, at.sequence);
  }
  segment_state(at.segment_index).total_bytes += at.size_bytes;
}

QueueTable::SegmentState& QueueTable::segment_state(uint64_t index) {
  // Records arrive in runs within one segment: remember the last one (std::map's nodes stay put
  // until erased, and on_retired forgets it then).
  if (cached_segment_ == nullptr || cached_segment_index_ != index) {
    cached_segment_ = &segments_[index];
    cached_segment_index_ = index;
  }
  return *cached_segment_;
}

uint64_t QueueTable::segment_of(uint64_t sequence) const {
  // The last segment whose first seen sequence is <= sequence. Only asked about sequences of
  // this table's durable records, each of which was noted.
  auto it = std::upper_bound(
      segment_starts_.begin(), segment_starts_.end(), sequence,
      [](uint64_t s, const std::pair<uint64_t, uint64_t>& start) { return s < start.second; });
  HERALD_CHECK(it != segment_starts_.begin(), "sequence before every known segment");
  return std::prev(it)->first;
}

void QueueTable::count(const RecordLocation& at, int64_t sign) {
  SegmentState& segment = segment_state(at.segment_index);
  HERALD_DCHECK(sign > 0 || (segment.live_records > 0 && segment.live_bytes >= at.size_bytes),
                "segment live count");
  segment.live_bytes += static_cast<uint64_t>(sign * int64_t{at.size_bytes});
  segment.live_records += static_cast<uint64_t>(sign);
}

void QueueTable::carrying_sequences(const MessageId& id, const Body& body,
                                    std::vector<uint64_t>& out) {
  out.push_back(body.append_where.sequence);
  if (body.copy_sequence != 0) out.push_back(body.copy_sequence);
  if (body.superseded) {
    std::vector<uint64_t>& old = *superseded_.find(id);
    // Superseded records in retired segments are gone: prune them.
    std::erase_if(old, [this](uint64_t s) { return retired_.contains(segment_of(s)); });
    out.insert(out.end(), old.begin(), old.end());
  }
}

void QueueTable::add_tombstone(const RecordLocation& at, const std::vector<uint64_t>& sequences) {
  std::vector<uint64_t> depends_on;
  for (uint64_t s : sequences) {
    const uint64_t segment = segment_of(s);
    // A record in the tombstone's own segment goes with it; a retired one is gone already.
    if (segment == at.segment_index || retired_.contains(segment)) continue;
    if (std::find(depends_on.begin(), depends_on.end(), segment) == depends_on.end()) {
      depends_on.push_back(segment);
    }
  }
  if (depends_on.empty()) return;  // nothing it kills can come back: dead at once
  for (uint64_t segment : depends_on) segments_[segment].dependents.push_back(at.sequence);
  segments_[at.segment_index].tombstones.push_back(at.sequence);
  count(at, +1);
  Tombstone& tombstone = *tombstones_.try_emplace(at.sequence).first;
  tombstone.where = at;
  tombstone.depends_on = std::move(depends_on);
}

void QueueTable::drop_tombstone(uint64_t sequence) {
  Tombstone* tombstone = tombstones_.find(sequence);
  if (tombstone == nullptr) return;
  count(tombstone->where, -1);
  tombstones_.erase(sequence);
}

std::vector<SegmentUsage> QueueTable::segment_usage() const {
  std::vector<SegmentUsage> out;
  for (const auto& [index, segment] : segments_) {
    if (segment.live_records > 0)
      out.push_back({index, segment.total_bytes, segment.live_bytes, segment.live_records});
  }
  return out;
}

bool QueueTable::compact_step() {
  if (log_ == nullptr || log_->failed() || stats_.recovered_foreign > 0) return false;
  if (cleaning_.active) {
    clean_some();
    return true;
  }
  // Sealed segments with nothing live go first (no copying needed).
  const std::vector<SegmentInfo> sealed = log_->sealed_segments();
  for (const SegmentInfo& info : sealed) {
    if (retired_.contains(info.index)) continue;
    auto it = segments_.find(info.index);
    if (it == segments_.end() || (it->second.live_records == 0 && !it->second.retiring)) {
      retire(info.index);
    }
  }
  if (retiring_ > 0) return true;
  if (options_.clean_below_live_fraction <= 0) return false;
  // Then the first sealed segment (oldest first: its records are the likeliest to be dead)
  // whose live share of the bytes it holds is below the threshold. Measured against what was
  // written there (not the segment's size), so a segment of live copies is never cleaned again.
  for (const SegmentInfo& info : sealed) {
    auto it = segments_.find(info.index);
    if (it == segments_.end() || it->second.retiring || it->second.unreadable) continue;
    if (static_cast<double>(it->second.live_bytes) >=
        options_.clean_below_live_fraction * static_cast<double>(it->second.total_bytes)) {
      continue;
    }
    cleaning_ = Cleaning{};
    cleaning_.segment = info.index;
    cleaning_.active = true;
    clean_some();
    return true;
  }
  return false;
}

void QueueTable::retire(uint64_t segment) {
  segments_[segment].retiring = true;
  ++retiring_;
  std::weak_ptr<bool> alive = alive_;
  log_->retire_segment(segment, [this, alive, segment](const absl::Status& status) {
    if (alive.expired()) return;
    on_retired(segment, status);
  });
}

void QueueTable::on_retired(uint64_t segment, const absl::Status& status) {
  --retiring_;
  auto it = segments_.find(segment);
  if (!status.ok()) {
    ++stats_.compaction_errors;
    HLOG_RATE_LIMITED(kWarn, "queue_table_retire_failed", 1)
        .kv("segment", segment)
        .kv("error", std::string(status.message()));
    if (it != segments_.end()) it->second.retiring = false;
    if (cleaning_.active && cleaning_.segment == segment) cleaning_.active = false;
    return;
  }
  ++stats_.segments_retired;
  retired_.insert(segment);
  if (it != segments_.end()) {
    HERALD_DCHECK(it->second.live_records == 0, "retired a segment with live records");
    // Tombstones that waited for this segment's records to be gone.
    for (uint64_t sequence : it->second.dependents) {
      Tombstone* tombstone = tombstones_.find(sequence);
      if (tombstone == nullptr) continue;
      std::erase(tombstone->depends_on, segment);
      if (tombstone->depends_on.empty()) drop_tombstone(sequence);
    }
    segments_.erase(it);
    cached_segment_ = nullptr;
  }
  if (cleaning_.active && cleaning_.segment == segment) cleaning_.active = false;
}

void QueueTable::clean_some() {
  auto it = segments_.find(cleaning_.segment);
  if (it == segments_.end()) {
    cleaning_.active = false;
    return;
  }
  SegmentState& segment = it->second;  // std::map: stays valid while others are added
  if (segment.retiring) return;        // waiting for on_retired
  uint32_t budget = options_.compaction_records_per_step;
  while (budget > 0 && cleaning_.body_cursor < segment.bodies.size()) {
    copy_body(segment.bodies[cleaning_.body_cursor++]);
    --budget;
  }
  while (budget > 0 && cleaning_.append_cursor < segment.appends.size()) {
    copy_append(segment.appends[cleaning_.append_cursor++]);
    --budget;
  }
  while (budget > 0 && cleaning_.tombstone_cursor < segment.tombstones.size()) {
    copy_tombstone(segment.tombstones[cleaning_.tombstone_cursor++]);
    --budget;
  }
  if (cleaning_.body_cursor < segment.bodies.size() ||
      cleaning_.append_cursor < segment.appends.size() ||
      cleaning_.tombstone_cursor < segment.tombstones.size() || cleaning_.in_flight > 0) {
    return;
  }
  if (segment.live_records == 0) {
    // Every live record has a durable copy: the segment can go.
    ++stats_.segments_cleaned;
    retire(cleaning_.segment);
    return;
  }
  if (cleaning_.failed) {
    ++stats_.compaction_errors;
    segment.unreadable = true;
    HLOG_RATE_LIMITED(kWarn, "queue_table_clean_failed", 1).kv("segment", cleaning_.segment);
  }
  cleaning_.active = false;  // something refused (backpressure): tried again later
}

void QueueTable::copy_done(bool failed) {
  HERALD_CHECK(cleaning_.in_flight > 0, "compaction copies in flight");
  --cleaning_.in_flight;
  if (failed) cleaning_.failed = true;
}

void QueueTable::copy_body(const MessageId& id) {
  const Body* body = bodies_.find(id);
  if (body == nullptr || !body->durable || body->where.segment_index != cleaning_.segment) return;
  const RecordLocation from = body->where;
  ++cleaning_.in_flight;
  std::weak_ptr<bool> alive = alive_;
  log_->read(from, [this, alive, id, from](absl::StatusOr<ReadRecord> record) {
    if (alive.expired()) return;
    const Body* b = bodies_.find(id);
    if (b == nullptr || b->where.sequence != from.sequence) return copy_done(false);  // freed
    if (!record.ok() || record->type != kRecordTypeBodyPut || record->payload.size() < kIdBytes ||
        get_id(record->payload.data()) != id) {
      return copy_done(true);
    }
    // The same bytes again: recovery keeps the last BodyPut of an id.
    auto seq = log_->append(kRecordTypeBodyPut, record->payload,
                            [this, id, from](const absl::Status& status, const RecordLocation& at) {
                              if (status.ok()) {
                                note_location(at);
                                Body* moved = bodies_.find(id);
                                if (moved != nullptr && moved->where.sequence == from.sequence) {
                                  count(from, -1);
                                  moved->where = at;
                                  count(at, +1);
                                  segments_[at.segment_index].bodies.push_back(id);
                                }
                              }
                              copy_done(!status.ok());
                            });
    if (!seq.ok()) return copy_done(false);
    ++stats_.records_copied;
    stats_.bytes_copied += record->payload.size();
  });
}

void QueueTable::copy_append(const MessageId& id) {
  const Body* body = bodies_.find(id);
  if (body == nullptr || !body->append_durable || body->copy_sequence != 0 ||
      body->append_where.segment_index != cleaning_.segment) {
    return;
  }
  const RecordLocation from = body->append_where;
  ++cleaning_.in_flight;
  std::weak_ptr<bool> alive = alive_;
  log_->read(from, [this, alive, id, from](absl::StatusOr<ReadRecord> record) {
    if (alive.expired()) return;
    Body* b = bodies_.find(id);
    if (b == nullptr || b->append_where.sequence != from.sequence || b->copy_sequence != 0) {
      return copy_done(false);
    }
    if (!record.ok() ||
        (record->type != kRecordTypeQueueAppend && record->type != kRecordTypeQueueAppendCopy)) {
      return copy_done(true);
    }
    const bool copy = record->type == kRecordTypeQueueAppendCopy;
    const std::vector<uint8_t>& p = record->payload;
    const size_t fixed = kIdBytes + (copy ? kPositionBytes : 0) + kCountBytes;
    if (p.size() < fixed || get_id(p.data()) != id) return copy_done(true);
    const uint32_t n = get_u32(p.data() + fixed - kCountBytes);
    if (p.size() != fixed + uint64_t{n} * kDeviceBytes) return copy_done(true);
    // The recipients still queued now (at the same position): a copy re-adds no deleted entry.
    std::vector<uint8_t> payload;
    put_id(payload, id);
    put_u64(payload, b->position);
    put_u32(payload, 0);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const DeviceKey device = get_device(p.data() + fixed + i * kDeviceBytes);
      const Queue* queue = queues_.find(device);
      if (queue == nullptr || locate(*queue, id) < 0) continue;
      put_device(payload, device);
      ++kept;
    }
    if (kept == 0) return copy_done(false);
    for (int i = 0; i < 4; ++i) {
      payload[kIdBytes + kPositionBytes + i] = static_cast<uint8_t>(kept >> (8 * i));
    }
    auto seq = log_->append(kRecordTypeQueueAppendCopy, payload,
                            [this, id, from](const absl::Status& status, const RecordLocation& at) {
                              if (status.ok()) {
                                note_location(at);
                                Body* moved = bodies_.find(id);
                                if (moved != nullptr && moved->copy_sequence == at.sequence) {
                                  // The original stays on disk until its segment is retired:
                                  // tombstones of these entries keep depending on it until then.
                                  superseded_.try_emplace(id).first->push_back(from.sequence);
                                  moved->superseded = true;
                                  count(from, -1);
                                  moved->append_where = at;
                                  moved->copy_sequence = 0;
                                  count(at, +1);
                                  segments_[at.segment_index].appends.push_back(id);
                                }
                              }
                              copy_done(!status.ok());
                            });
    if (!seq.ok()) return copy_done(false);
    b->copy_sequence = *seq;
    ++stats_.records_copied;
    stats_.bytes_copied += payload.size();
  });
}

void QueueTable::copy_tombstone(uint64_t sequence) {
  const Tombstone* tombstone = tombstones_.find(sequence);
  if (tombstone == nullptr || tombstone->where.segment_index != cleaning_.segment) return;
  const RecordLocation from = tombstone->where;
  ++cleaning_.in_flight;
  std::weak_ptr<bool> alive = alive_;
  log_->read(from, [this, alive, sequence](absl::StatusOr<ReadRecord> record) {
    if (alive.expired()) return;
    if (tombstones_.find(sequence) == nullptr) return copy_done(false);  // no longer needed
    if (!record.ok() || record->type != kRecordTypeQueueDelete) return copy_done(true);
    // The same bytes again: it kills entries at exact positions, so even placed after a later
    // message with the same id it touches only the entries it killed the first time.
    auto seq =
        log_->append(kRecordTypeQueueDelete, record->payload,
                     [this, sequence](const absl::Status& status, const RecordLocation& at) {
                       if (status.ok()) {
                         note_location(at);
                         Tombstone* old = tombstones_.find(sequence);
                         if (old != nullptr) {
                           std::vector<uint64_t> depends_on = std::move(old->depends_on);
                           drop_tombstone(sequence);
                           std::erase(depends_on, at.segment_index);  // goes with its own segment
                           if (!depends_on.empty()) {
                             for (uint64_t segment : depends_on) {
                               segments_[segment].dependents.push_back(at.sequence);
                             }
                             segments_[at.segment_index].tombstones.push_back(at.sequence);
                             count(at, +1);
                             Tombstone& moved = *tombstones_.try_emplace(at.sequence).first;
                             moved.where = at;
                             moved.depends_on = std::move(depends_on);
                           }
                         }
                       }
                       copy_done(!status.ok());
                     });
    if (!seq.ok()) return copy_done(false);
    ++stats_.tombstones_copied;
    ++stats_.records_copied;
    stats_.bytes_copied += record->payload.size();
  });
}

}  // namespace herald::storage

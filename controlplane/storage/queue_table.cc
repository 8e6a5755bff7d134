// The offline message queues over the durable log: record encoding, the in-memory index
// (bodies once, per-device FIFOs keyed by the QueueAppend record's sequence) and its recovery.
#include "controlplane/storage/queue_table.h"

#include <algorithm>
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

uint64_t mix(uint64_t x) {
  // splitmix64's finalizer: ids are time-ordered and account ids random, so spread both.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

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

// Little-endian reads from a payload whose bounds the caller has checked.
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
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

size_t MessageIdHash::operator()(const MessageId& id) const {
  return static_cast<size_t>(mix(id.hi ^ mix(id.lo)));
}
size_t DeviceKeyHash::operator()(const DeviceKey& key) const {
  return static_cast<size_t>(mix(key.account_hi ^ mix(key.account_lo ^ mix(key.device))));
}

QueueTable::QueueTable(const QueueTableOptions& options) : options_(options) {}

// --- Recovery ---------------------------------------------------------------------------------

absl::Status QueueTable::recover(const RecoveredRecord& record) {
  HERALD_CHECK(log_ == nullptr, "recover() after start()");
  const std::span<const uint8_t> p = record.payload;
  switch (record.type) {
    case kRecordTypeBodyPut: {
      if (p.size() < kIdBytes) return malformed(record);
      const MessageId id = get_id(p.data());
      Body& body = bodies_[id];
      // A second BodyPut for the same id follows an append whose QueueAppend was refused or
      // lost; the bytes are the same message, the references carry over.
      body_bytes_ -= body.size_bytes;
      body.where = record.location;
      body.durable = true;
      body.size_bytes = static_cast<uint32_t>(p.size() - kIdBytes);
      body_bytes_ += body.size_bytes;
      ++stats_.recovered_bodies;
      return absl::OkStatus();
    }
    case kRecordTypeQueueAppend: {
      if (p.size() < kIdBytes + kCountBytes) return malformed(record);
      const MessageId id = get_id(p.data());
      const uint32_t n = get_u32(p.data() + kIdBytes);
      if (n == 0 || p.size() != kIdBytes + kCountBytes + uint64_t{n} * kDeviceBytes) {
        return malformed(record);
      }
      if (!bodies_.contains(id)) {
        // The log orders the BodyPut before its QueueAppend, so this needs a lost record, which
        // the log would have reported; ignore rather than index an entry with nothing to send.
        ++stats_.recovered_appends_no_body;
        return absl::OkStatus();
      }
      for (uint32_t i = 0; i < n; ++i) {
        const DeviceKey device = get_device(p.data() + kIdBytes + kCountBytes + i * kDeviceBytes);
        add_entry(device, id, record.location.sequence, /*durable=*/true);
        ++stats_.recovered_entries;
      }
      return absl::OkStatus();
    }
    case kRecordTypeQueueDelete: {
      if (p.size() < kDeviceBytes + kCountBytes) return malformed(record);
      const DeviceKey device = get_device(p.data());
      const uint32_t n = get_u32(p.data() + kDeviceBytes);
      if (n == 0 || p.size() != kDeviceBytes + kCountBytes + uint64_t{n} * kIdBytes) {
        return malformed(record);
      }
      for (uint32_t i = 0; i < n; ++i) {
        const MessageId id = get_id(p.data() + kDeviceBytes + kCountBytes + i * kIdBytes);
        if (erase_entry(device, id)) {
          ++stats_.recovered_deletes;
        } else {
          ++stats_.recovered_deletes_unknown;  // e.g. its entry was compacted away (later)
        }
      }
      return absl::OkStatus();
    }
    default: ++stats_.recovered_foreign; return absl::OkStatus();
  }
}

void QueueTable::start(Log& log) {
  HERALD_CHECK(log_ == nullptr, "start() twice");
  // A BodyPut whose QueueAppend never became durable (crash between them, or the second append
  // refused) is referenced by nothing: never acknowledged, so it goes.
  for (auto it = bodies_.begin(); it != bodies_.end();) {
    if (it->second.refs == 0) {
      body_bytes_ -= it->second.size_bytes;
      ++stats_.orphan_bodies_dropped;
      it = bodies_.erase(it);
    } else {
      ++it;
    }
  }
  log_ = &log;
  HLOG_INFO("queue_table_recovered")
      .kv("bodies", static_cast<uint64_t>(bodies_.size()))
      .kv("body_bytes", body_bytes_)
      .kv("entries", stats_.recovered_entries - stats_.recovered_deletes)
      .kv("devices", static_cast<uint64_t>(queues_.size()))
      .kv("orphan_bodies", stats_.orphan_bodies_dropped);
}

// --- Index --------------------------------------------------------------------------------------

void QueueTable::add_entry(const DeviceKey& device, const MessageId& id, uint64_t position,
                           bool durable) {
  ++bodies_.at(id).refs;  // first, so dropping a replaced entry below cannot free the body
  Queue& queue = queues_[device];
  auto [pos_it, inserted] = queue.position_of.emplace(id, position);
  if (!inserted) {
    // The same id twice in one queue can only come from a re-append after the first entry was
    // deleted by a tombstone this recovery has not reached; keep the newer position.
    queue.entries.erase(pos_it->second);
    pos_it->second = position;
    unref_body(id);
  }
  queue.entries.emplace(position, Entry{id, durable});
}

bool QueueTable::erase_entry(const DeviceKey& device, const MessageId& id) {
  auto q = queues_.find(device);
  if (q == queues_.end()) return false;
  auto pos = q->second.position_of.find(id);
  if (pos == q->second.position_of.end()) return false;
  q->second.entries.erase(pos->second);
  q->second.position_of.erase(pos);
  if (q->second.entries.empty()) queues_.erase(q);
  unref_body(id);
  return true;
}

void QueueTable::unref_body(const MessageId& id) {
  auto it = bodies_.find(id);
  HERALD_CHECK(it != bodies_.end() && it->second.refs > 0, "body reference count");
  if (--it->second.refs == 0) {
    body_bytes_ -= it->second.size_bytes;
    bodies_.erase(it);
  }
}

uint32_t QueueTable::queued(const DeviceKey& device) const {
  auto q = queues_.find(device);
  return q == queues_.end() ? 0 : static_cast<uint32_t>(q->second.entries.size());
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
  if (bodies_.contains(id)) return absl::AlreadyExistsError("message id already queued");

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
  auto body_seq =
      log_->append(kRecordTypeBodyPut, payload,
                   [this, id](const absl::Status& status, const RecordLocation& at) {
                     if (!status.ok()) return;
                     auto it = bodies_.find(id);
                     if (it == bodies_.end() || it->second.where.sequence != at.sequence) return;
                     it->second.where = at;
                     it->second.durable = true;
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
                              const absl::Status& status, const RecordLocation&) {
                            on_append_durable(status, id, *position, devices, cb);
                          });
  if (!seq.ok()) {
    // The BodyPut stays staged with nothing referencing it; recovery drops it (orphan).
    return seq.status();
  }
  *position = *seq;

  Body& b = bodies_[id];
  b.where.sequence = *body_seq;
  b.size_bytes = static_cast<uint32_t>(body.size());
  body_bytes_ += b.size_bytes;
  for (const DeviceKey& d : accepted) add_entry(d, id, *seq, /*durable=*/false);
  ++stats_.appends;
  stats_.entries_appended += accepted.size();
  outcome.written = true;
  return outcome;
}

void QueueTable::on_append_durable(const absl::Status& status, const MessageId& id,
                                   uint64_t position, const std::vector<DeviceKey>& devices,
                                   const DoneCallback& done) {
  for (const DeviceKey& d : devices) {
    auto q = queues_.find(d);
    if (q == queues_.end()) continue;
    auto e = q->second.entries.find(position);
    if (e == q->second.entries.end()) continue;  // removed while pending
    if (status.ok()) {
      e->second.durable = true;
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
  if (kDeviceBytes + kCountBytes + ids.size() * kIdBytes > log_->options().max_payload_bytes) {
    return absl::InvalidArgumentError("too many ids for one record");
  }
  auto q = queues_.find(device);
  std::vector<MessageId> present;
  if (q != queues_.end()) {
    for (const MessageId& id : ids) {
      if (q->second.position_of.contains(id) &&
          std::find(present.begin(), present.end(), id) == present.end()) {
        present.push_back(id);
      }
    }
  }
  stats_.deletes_unknown += ids.size() - present.size();
  if (present.empty()) return 0u;

  std::vector<uint8_t> payload;
  payload.reserve(kDeviceBytes + kCountBytes + present.size() * kIdBytes);
  put_device(payload, device);
  put_u32(payload, static_cast<uint32_t>(present.size()));
  for (const MessageId& id : present) put_id(payload, id);
  auto seq =
      log_->append(kRecordTypeQueueDelete, payload,
                   [cb = std::move(done)](const absl::Status& status, const RecordLocation&) {
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
  auto q = queues_.find(device);
  if (q == queues_.end() || max_messages == 0) return out;
  const Queue& queue = q->second;
  auto it = queue.entries.begin();
  if (after.has_value()) {
    auto pos = queue.position_of.find(*after);
    if (pos != queue.position_of.end()) it = queue.entries.upper_bound(pos->second);
  }
  uint64_t bytes = 0;
  for (; it != queue.entries.end() && out.size() < max_messages; ++it) {
    // Durable entries form a prefix of each queue: the log completes appends in sequence order
    // and positions are those sequences.
    if (!it->second.durable) break;
    const Body& body = bodies_.at(it->second.id);
    HERALD_CHECK(body.durable, "a durable entry's BodyPut is durable before it");
    if (!out.empty() && bytes + body.size_bytes > max_bytes) break;
    bytes += body.size_bytes;
    out.push_back({it->second.id, body.where});
  }
  return out;
}

std::vector<MessageId> QueueTable::peek(const DeviceKey& device, std::optional<MessageId> after,
                                        uint32_t max_messages, uint64_t max_bytes) const {
  std::vector<MessageId> out;
  for (const Selected& s : select(device, after, max_messages, max_bytes)) out.push_back(s.id);
  return out;
}

void QueueTable::drain(const DeviceKey& device, std::optional<MessageId> after,
                       uint32_t max_messages, uint64_t max_bytes, DrainCallback done) {
  HERALD_CHECK(log_ != nullptr, "used before start()");
  ++stats_.drains;
  // The reads complete in any order; the answer goes out once all have, in queue order. The
  // state is shared by the reads alone, so the table may be gone by then.
  struct Drain {
    std::vector<DrainedMessage> messages;
    size_t outstanding = 0;
    absl::Status status;
    DrainCallback done;
  };
  auto d = std::make_shared<Drain>();
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
    log_->read(selected[i].where, [d, i](absl::StatusOr<ReadRecord> record) {
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
}

}  // namespace herald::storage

// The offline message queues: one FIFO per device over the durable log, a group message's body
// stored once (a BodyPut record) and referenced by each recipient's entry (one QueueAppend
// record), entries deleted on the device's ack (a QueueDelete tombstone), a cap per queue.
//
//   QueueTable table(options);
//   Log::open(device, log_options, [&](const RecoveredRecord& r) { return table.recover(r); },
//             [&](absl::StatusOr<std::unique_ptr<Log>> log) { table.start(**log); ... });
//   table.append(id, body, recipients, [](const absl::Status& s) { /* durable: ServerAck */ });
//   table.drain(device, after, max_messages, max_bytes, [](auto messages) {...});
//   table.remove(device, ids, [](const absl::Status& s) { /* tombstone durable */ });
//
// Single-threaded: every call and callback runs on the thread driving the log's device. The
// log's pending callbacks point at the table: destroy the Log first (or let it go idle).
//
// Design (record formats, visibility, cap policy, memory cost, what is not built):
// Records (little-endian; ids are wire.fbs ServerMsgId hi/lo, devices are
// DeviceAddress account hi/lo + device):
//
// | type | record | payload |
// | --- | --- | --- |
// | 16 | BodyPut | `[msg id 16][body]` |
// | 17 | QueueAppend | `[msg id 16][n u32][n x (account 16, device u32)]` |
// | 18 | QueueDelete | `[account 16, device u32][n u32][n x msg id 16]` |
//
// - **One QueueAppend per message, for all its accepted recipients.** The log recovers a prefix,
//   so a message is in all of those queues after a crash or in none; a BodyPut without its
//   QueueAppend (crash between them, or the second append refused by backpressure) is an orphan
//   that `start()` drops.
// - **Order is append order**, not id order: an entry's position is its QueueAppend's sequence
//   number. Server message ids are ordered only per (node, worker), so ordering by id could put a
//   late message before a drain cursor and skip it.
// - **Visibility: entries are drainable only once durable** (the QueueAppend's durable callback,
//   which is also when `append`'s completion fires: the sender's ServerAck, DESIGN.md's durability
//   rule). Durable callbacks run in sequence order, so the durable entries are a prefix of each
//   queue and `drain` stops at the first pending one; a cursor never jumps past an entry that is
//   still to come.
// - **Deletes leave the index at once**, and their tombstone is staged; its completion fires when
//   durable. The device has the message, so hiding it early is safe; a tombstone lost in a crash
//   brings the entry back and the device gets it again, dropping it by id (at least once).
//   Deletes of ids not queued write nothing; on recovery, tombstones of unknown entries are
//   ignored (counted).
// - **Drain cursor**: `after` is the last id the device was sent; if it is no longer queued (acked
//   and deleted) the drain starts at the head, since everything still queued is unacknowledged.
//   Out-of-order acks can cause a duplicate, never a skip. At least one message is returned even
//   if it exceeds `max_bytes`, or a large body would block its queue.
// - **Cap** (`max_queued_messages_per_device`, pending entries included): a full queue refuses the
//   append for that recipient only (`AppendOutcome::queue_full`, reported to the sender as
//   QueueFull); the other recipients still get it. Nothing queued is ever dropped to make room:
//   queued messages are ones the server has acknowledged.
// - **Bodies stay on disk**: the index keeps each body's BodyPut `RecordLocation` (known from its
//   durable callback, or from recovery) and `drain` reads them back with `Log::read`, which
//   checks CRC, sequence and size; the id inside the BodyPut is checked too. A corrupt body fails
//   the drain with DataLoss, never returns wrong bytes. Memory: about 80 B per message plus about
//   100 B per entry (a map node and a hash node), whatever the body size. Every read opens its
//   segment (no handle cache yet) and there is no body cache or read-ahead yet.
// - **A log failure** (fail-stop) completes pending appends with the error and removes their
//   entries from the index: whether they survived is for recovery to say.
// - Not built yet: compaction (dead BodyPut/QueueAppend/QueueDelete records are never reclaimed;
//   a live entry pins its segment), snapshots of the index for fast restart, and a shared
//   record-type registry once other tables use the same log (types 16-18 are taken).
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/storage/log.h"
#include "controlplane/storage/record.h"

namespace herald::storage {

// The engine's record types (>= kFirstEngineRecordType) used by this table. Other tables take
// the numbers after these; they share one log, so the numbers are part of the on-disk format.
inline constexpr uint8_t kRecordTypeBodyPut = 16;      // [id 16][body]
inline constexpr uint8_t kRecordTypeQueueAppend = 17;  // [id 16][n u32][n x device 20]
inline constexpr uint8_t kRecordTypeQueueDelete = 18;  // [device 20][n u32][n x id 16]

// wire.fbs ServerMsgId: (unix_time_ms << 16 | node, worker << 56 | sequence).
struct MessageId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const MessageId&, const MessageId&) = default;
  friend auto operator<=>(const MessageId&, const MessageId&) = default;
};

// wire.fbs DeviceAddress: a 128-bit account id and a device number (never 0).
struct DeviceKey {
  uint64_t account_hi = 0;
  uint64_t account_lo = 0;
  uint32_t device = 0;
  friend bool operator==(const DeviceKey&, const DeviceKey&) = default;
  friend auto operator<=>(const DeviceKey&, const DeviceKey&) = default;
};

struct MessageIdHash {
  size_t operator()(const MessageId& id) const;
};
struct DeviceKeyHash {
  size_t operator()(const DeviceKey& key) const;
};

struct QueueTableOptions {
  // Entries per device queue, durable and pending alike. When a queue is full, the append is
  // refused for that recipient (QueueFull, reported to the sender); nothing already queued is
  // ever dropped to make room, since queued messages are ones the server acknowledged.
  uint32_t max_queued_messages_per_device = 10'000;
};

struct QueueTableStats {
  uint64_t appends = 0;  // append() calls that wrote records
  uint64_t entries_appended = 0;
  uint64_t refused_queue_full = 0;  // recipients refused by the cap
  uint64_t entries_deleted = 0;
  uint64_t deletes_unknown = 0;  // ids in remove() that were not queued (no record written)
  // Recovery.
  uint64_t recovered_bodies = 0;
  uint64_t recovered_entries = 0;
  uint64_t recovered_deletes = 0;
  uint64_t recovered_deletes_unknown = 0;  // tombstones of entries not in the index: ignored
  uint64_t recovered_appends_no_body = 0;  // QueueAppend whose BodyPut is absent: ignored
  uint64_t orphan_bodies_dropped = 0;      // BodyPut without any live entry at the end
  uint64_t recovered_foreign = 0;          // records of other types, not this table's
  uint64_t drains = 0;
  uint64_t body_reads = 0;
};

// What append() did synchronously.
struct AppendOutcome {
  // True when records were staged: `done` will run once. False when every recipient was refused.
  bool written = false;
  // Recipients refused because their queue is at max_queued_messages_per_device.
  std::vector<DeviceKey> queue_full;
};

struct DrainedMessage {
  MessageId id;
  std::vector<uint8_t> body;
};

class QueueTable {
 public:
  using DoneCallback = std::function<void(const absl::Status& status)>;
  using DrainCallback = std::function<void(absl::StatusOr<std::vector<DrainedMessage>> messages)>;

  explicit QueueTable(const QueueTableOptions& options);
  QueueTable(const QueueTable&) = delete;
  QueueTable& operator=(const QueueTable&) = delete;

  // --- Recovery: feed every record of Log::open's visitor here, then start(). -------------
  // Applies this table's records to the index; returns OK (and counts) for other types. Fails
  // only for a malformed payload of one of its own types (DataLoss: a record that passed its
  // CRC but is not what this table writes).
  absl::Status recover(const RecoveredRecord& record);
  // Ends recovery (drops bodies no entry references: an append whose QueueAppend never became
  // durable) and starts serving on `log`, which must outlive the table's use of it.
  void start(Log& log);

  // --- Serving ------------------------------------------------------------------------------
  // Stages the body (once) and one entry per recipient (one record, so a message is in all of
  // its accepted queues after a crash or in none). `done` runs once both records are durable,
  // or with the log's error. Entries become visible to drain() only when durable.
  // Errors (nothing staged, `done` never runs): InvalidArgument (no recipients, duplicate
  // recipients, device 0, too large for the log), AlreadyExists (the id is queued or pending),
  // the log's refusal (FailedPrecondition after a failure, ResourceExhausted: backpressure).
  absl::StatusOr<AppendOutcome> append(const MessageId& id, std::span<const uint8_t> body,
                                       std::span<const DeviceKey> recipients, DoneCallback done);

  // The device acknowledged `ids`: their entries leave the index at once (a drain no longer
  // returns them; the cap counts them no more) and one tombstone record is staged; `done` runs
  // when it is durable. Ids not queued for the device are skipped. Returns how many entries
  // were removed; when 0 nothing is written and `done` never runs. A tombstone lost in a crash
  // brings its entries back: the device gets them again and drops them by id (at least once).
  absl::StatusOr<uint32_t> remove(const DeviceKey& device, std::span<const MessageId> ids,
                                  DoneCallback done);

  // The oldest durable entries of `device` in append order, strictly after `after` (from the
  // head when absent, or when `after` is no longer queued: everything still queued is
  // unacknowledged). Stops at max_messages, before max_bytes of bodies would be exceeded (but
  // always returns at least one message if one is there, or a large body would block the
  // queue), and at the first entry not yet durable. The entries are chosen now; their bodies are
  // read from the log and `done` runs later (never inside this call) with all of them, or with
  // the first read error (DataLoss for a corrupt body). `done` may run after the table is gone.
  void drain(const DeviceKey& device, std::optional<MessageId> after, uint32_t max_messages,
             uint64_t max_bytes, DrainCallback done);
  // The ids drain() would return now, without reading bodies.
  std::vector<MessageId> peek(const DeviceKey& device, std::optional<MessageId> after,
                              uint32_t max_messages, uint64_t max_bytes) const;

  // Entries queued for `device` (durable and pending).
  uint32_t queued(const DeviceKey& device) const;
  // Bodies referenced (each once) and their total size on disk.
  size_t bodies() const { return bodies_.size(); }
  uint64_t body_bytes() const { return body_bytes_; }
  bool has_body(const MessageId& id) const { return bodies_.contains(id); }
  const QueueTableStats& stats() const { return stats_; }

 private:
  struct Body {
    RecordLocation where;     // of the BodyPut; where.sequence is set when it is staged
    bool durable = false;     // `where` is complete (set by the BodyPut's durable callback)
    uint32_t size_bytes = 0;  // of the body alone
    uint32_t refs = 0;        // entries (durable or pending) referencing it
  };
  struct Selected {
    MessageId id;
    RecordLocation where;
  };
  std::vector<Selected> select(const DeviceKey& device, std::optional<MessageId> after,
                               uint32_t max_messages, uint64_t max_bytes) const;
  struct Entry {
    MessageId id;
    bool durable = false;
  };
  struct Queue {
    // Keyed by the sequence of the QueueAppend record: the order appends were accepted in.
    std::map<uint64_t, Entry> entries;
    std::unordered_map<MessageId, uint64_t, MessageIdHash> position_of;
  };

  void add_entry(const DeviceKey& device, const MessageId& id, uint64_t position, bool durable);
  // Removes the entry and drops the body's reference; false if it was not there.
  bool erase_entry(const DeviceKey& device, const MessageId& id);
  void unref_body(const MessageId& id);
  void on_append_durable(const absl::Status& status, const MessageId& id, uint64_t position,
                         const std::vector<DeviceKey>& devices, const DoneCallback& done);

  const QueueTableOptions options_;
  Log* log_ = nullptr;
  std::unordered_map<MessageId, Body, MessageIdHash> bodies_;
  uint64_t body_bytes_ = 0;
  std::unordered_map<DeviceKey, Queue, DeviceKeyHash> queues_;
  QueueTableStats stats_;
};

}  // namespace herald::storage

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
//   every few ms from a timer: table.compact_step();  // bounded: retire and clean segments
//
// Single-threaded: every call and callback runs on the thread driving the log's device. The
// log's pending callbacks point at the table: destroy the Log first (or let it go idle), after
// compaction_idle() (compaction's reads would otherwise complete into a table with a dead log).
// The table must own its log: with other tables' records in it, compaction stays off.
//
// Design (record formats, visibility, cap policy, memory cost, what is not built):
// Records (little-endian; ids are wire.fbs ServerMsgId hi/lo, devices are
// DeviceAddress account hi/lo + device):
//
// | type | record | payload |
// | --- | --- | --- |
// | 16 | BodyPut | `[msg id 16][body]` |
// | 17 | QueueAppend | `[msg id 16][n u32][n x (account 16, device u32)]` |
// | 18 | QueueDelete | `[account 16, device u32][n u32][n x (msg id 16, position u64)]` |
// | 22 | QueueAppendCopy | `[msg id 16][position u64][n u32][n x (account 16, device u32)]` |
//
// - **One QueueAppend per message, for all its accepted recipients.** The log recovers a prefix,
//   so a message is in all of those queues after a crash or in none; a BodyPut without its
//   QueueAppend (crash between them, or the second append refused by backpressure) is an orphan
//   that `start()` drops.
// - **Order is append order**, not id order: an entry's position is its QueueAppend's sequence
//   number (a copy carries the original's). Server message ids are ordered only per (node,
//   worker), so ordering by id could put a late message before a drain cursor and skip it.
// - **Visibility: entries are drainable only once durable** (the QueueAppend's durable callback,
//   which is also when `append`'s completion fires: the sender's ServerAck, DESIGN.md's durability
//   rule). Durable callbacks run in sequence order, so the durable entries are a prefix of each
//   queue and `drain` stops at the first pending one; a cursor never jumps past an entry that is
//   still to come.
// - **Deletes leave the index at once**, and their tombstone is staged; its completion fires when
//   durable. The device has the message, so hiding it early is safe; a tombstone lost in a crash
//   brings the entry back and the device gets it again, dropping it by id (at least once).
//   Deletes of ids not queued write nothing; on recovery, tombstones of unknown entries are
//   ignored (counted). A tombstone names each entry's position, so it kills that entry only,
//   never a later message with the same id (which matters once compaction moves tombstones).
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
//   the drain with DataLoss, never returns wrong bytes. Every read opens its segment (no handle
//   cache yet) and there is no body cache or read-ahead yet.
// - **The index is flat** (docs/PERFORMANCE.md had the node-based maps at ~55% of CPU): bodies in
//   a DenseMap by id (hash_maps.h: 112 B cells in insertion order holding the id, the locations
//   of the BodyPut and of the record carrying its entries, position, size, refs; 4/3 to 8/3
//   index slots of 5 bytes per body, on huge pages); per device a vector of 32 B entries sorted by
//   position with a head index (acks at the head pop in O(1); an ack in the middle leaves a
//   hole, squeezed out once holes outnumber entries). An id's entry in a queue is found by
//   binary search on its body's position (all entries of a message share it), so no per-entry
//   hash node exists. Memory: about 120-130 B per message plus 32-64 B per entry, plus 16 B per
//   record in compaction's per-segment lists until the segment is retired (10 M one-recipient
//   messages: 1.8 GB peak at restart).
// - **A log failure** (fail-stop) completes pending appends with the error and removes their
//   entries from the index: whether they survived is for recovery to say.
//
// Compaction (`compact_step`, driven by the owner's timer; bounded work per call):
// - **Live records.** A BodyPut is live while its body is referenced and it is the body's current
//   location; the record carrying a message's entries (QueueAppend or its latest copy) while any
//   entry is queued; a tombstone while a record carrying an entry it killed may still exist in a
//   segment other than its own (the tombstone's dependencies: the carrying record at delete
//   time, a copy in flight, and superseded carriers whose segments are not retired yet). The
//   table counts live bytes per segment and keeps, per segment, the ids and tombstone sequences
//   that may be live there (checked again when used).
// - **Retire**: a sealed segment with no live record is retired (`Log::retire_segment`, durable
//   through the log's manifest). Retiring resolves the dependencies of tombstones on it.
// - **Clean**: the oldest sealed segment whose live bytes are below `clean_below_live_fraction`
//   of the bytes the table wrote there has its live records copied forward: the BodyPut re-
//   appended unchanged, the carrying record as a QueueAppendCopy that keeps the original position
//   and lists only recipients still queued at copy time, a tombstone re-appended unchanged (it
//   names positions). Each copy takes effect in the index at its durable callback; once the
//   segment has no live record (every copy durable), it is retired. One segment at a time.
// - **Why order and the cursor rules hold**: positions never change (a copy carries the
//   original's), so each queue's order, `locate` and the drain cursor are as before; only sealed
//   segments are cleaned and everything in them is durable, so a copy never makes a pending
//   entry visible, and visibility is unchanged.
// - **Why no acknowledged entry disappears, at any crash**: (1) a copy only adds entries at
//   their original positions, for recipients still queued when it was staged; a recipient deleted
//   before has its tombstone earlier in the log, one deleted after has its tombstone later and
//   depending on the copy. (2) A segment is retired only once every live record in it has a
//   durable copy (or is dead); the retirement itself is made durable (manifest) before the file
//   goes. A crash before leaves original and copy: recovery applies both, idempotently (same
//   position; the last BodyPut of an id wins, same bytes). (3) A tombstone leaves the disk only
//   when no segment other than its own still holds a record carrying what it killed, or after a
//   durable copy of it (same payload) exists; so a deleted entry never comes back either.
//   (4) Recovery no longer requires a body before its entries (a BodyPut copy may come after the
//   QueueAppend it serves): entries whose body never comes are dropped at `start()`.
//   (5) The same id appended again after its entries were deleted: recovery may now meet the
//   new QueueAppend before a copied tombstone of the old entries. The old entries are dead by
//   construction (append() takes an id only once all its entries are deleted and their tombstones
//   staged before), so recovery drops them there, and a later tombstone of them still depends on
//   their records. `tests/sim/storage/queue_sim_test` crashes during cleaning and retirement.
// - A drain that chose a body just before its segment was retired re-reads it at its new
//   location (NotFound from the log, once).
// - Restart reads sealed segments through their summaries (the log's summary_payload_bytes set
//   to summary_payload_bytes(): a BodyPut's id, not its body; README.md "Segment summaries"),
//   so a BodyPut may arrive with its payload cut to the id (RecoveredRecord::payload_size()
//   gives the body's size); the other records always come whole.
// - Not built yet: sharing one log with other tables (a record-type registry and combined
//   liveness), and a bound on copy amplification beyond the live-fraction threshold.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/storage/log.h"
#include "controlplane/storage/record.h"
#include "platform/containers/hash_maps.h"

namespace herald::storage {

// The engine's record types used by this table. The queue table owns its log (<data-dir>/queues/);
// the catalog (19, catalog.h) has its own, but the numbers stay distinct across the engine so a
// record is never ambiguous. Part of the on-disk format.
inline constexpr uint8_t kRecordTypeBodyPut = 16;          // [id 16][body]
inline constexpr uint8_t kRecordTypeQueueAppend = 17;      // [id 16][n u32][n x device 20]
inline constexpr uint8_t kRecordTypeQueueDelete = 18;      // [device 20][n u32][n x (id 16, pos 8)]
inline constexpr uint8_t kRecordTypeQueueAppendCopy = 22;  // [id 16][pos 8][n u32][n x device 20]

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

// Inline: the index's probes call them in their inner loops (out of line they were 4% of a
// 10 M-message restart).
struct MessageIdHash {
  size_t operator()(const MessageId& id) const { return hash_mix(id.hi ^ hash_mix(id.lo)); }
};
struct DeviceKeyHash {
  size_t operator()(const DeviceKey& key) const {
    return hash_mix(key.account_hi ^ hash_mix(key.account_lo ^ hash_mix(key.device)));
  }
};
struct SequenceHash {
  size_t operator()(uint64_t sequence) const { return hash_mix(sequence); }
};

struct QueueTableOptions {
  // Entries per device queue, durable and pending alike. When a queue is full, the append is
  // refused for that recipient (QueueFull, reported to the sender); nothing already queued is
  // ever dropped to make room, since queued messages are ones the server acknowledged.
  uint32_t max_queued_messages_per_device = 10'000;
  // Compaction (compact_step): a sealed segment whose live bytes fall below this fraction of
  // the bytes the table wrote there is cleaned (its live records copied forward, then it is
  // retired); one with no live record is retired at once. 0 disables cleaning (dead segments are
  // still retired).
  double clean_below_live_fraction = 0.5;
  // Records read and copied forward per compact_step() call: the bound on one step's work.
  uint32_t compaction_records_per_step = 256;
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
  // Compaction.
  uint64_t segments_retired = 0;
  uint64_t segments_cleaned = 0;   // cleaning finished: live records copied, segment retiring
  uint64_t records_copied = 0;     // BodyPut, QueueAppendCopy and QueueDelete records re-appended
  uint64_t tombstones_copied = 0;  // of those, QueueDelete
  uint64_t bytes_copied = 0;
  uint64_t compaction_errors = 0;  // a read or retirement failed (logged; the segment stays)
};

// The table's live records in one segment (compaction's view; tests and metrics).
struct SegmentUsage {
  uint64_t index = 0;
  uint64_t total_bytes = 0;  // of the table's records written there, dead ones included
  uint64_t live_bytes = 0;
  uint64_t live_records = 0;
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
  // The same for a run of records (Log::open_batched), prefetching the index slots the next
  // records touch: restart time is dominated by cache misses in the index (docs/PERFORMANCE.md).
  absl::Status recover(std::span<const RecoveredRecord> records);
  // Sizes the index for a recovery of about `records` records (Log::open_batched's
  // expect_records): one allocation instead of a chain of doublings, each of which touches and
  // copies the whole table. Assumes two records per message (BodyPut and QueueAppend).
  void expect_records(uint64_t records);
  // What the log's segment summaries keep of each of this table's records (LogOptions::
  // summary_payload_bytes): a BodyPut's message id, not its body; everything of the others.
  static uint32_t summary_payload_bytes(uint8_t type, std::span<const uint8_t> payload);
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

  // The cap from now on (a committed config revision). Queues already above it keep every
  // entry (they are acknowledged) and refuse appends until they drain below it.
  void set_max_queued_messages_per_device(uint32_t cap) {
    options_.max_queued_messages_per_device = cap;
  }
  uint32_t max_queued_messages_per_device() const {
    return options_.max_queued_messages_per_device;
  }
  // Entries queued for `device` (durable and pending).
  uint32_t queued(const DeviceKey& device) const;
  // Bodies referenced (each once) and their total size on disk.
  size_t bodies() const { return bodies_.size(); }
  uint64_t body_bytes() const { return body_bytes_; }
  bool has_body(const MessageId& id) const { return bodies_.find(id) != nullptr; }
  const QueueTableStats& stats() const { return stats_; }

  // --- Compaction -----------------------------------------------------------------------------
  // One bounded step: retires sealed segments with no live record, or continues cleaning one
  // segment (at most compaction_records_per_step records read and copied forward). Returns true
  // while there is more to do (call again soon); false when idle. The owner calls it from a
  // timer on the log's thread. Does nothing on a failed log or while foreign records (another
  // table's) share the log: the table cannot tell whether those are live.
  bool compact_step();
  // No compaction read, copy or retirement in flight: wait for it (driving the loop) before
  // destroying the Log, whose reads would otherwise complete into a table using a dead log.
  bool compaction_idle() const { return cleaning_.in_flight == 0 && retiring_ == 0; }
  // Live records per segment that holds any, oldest first.
  std::vector<SegmentUsage> segment_usage() const;

 private:
  struct Body {
    RecordLocation where;  // of the BodyPut; where.sequence is set when it is staged
    // The record carrying its entries (QueueAppend or its latest durable copy): complete once
    // durable (append_durable). Live while refs > 0.
    RecordLocation append_where;
    uint64_t position = 0;  // the original QueueAppend's sequence: all its entries share it
    // A copy of the carrying record staged but not yet durable (0: none). It, the carrying
    // record and the superseded ones (superseded_) are what a tombstone of an entry depends on.
    uint64_t copy_sequence = 0;
    uint32_t size_bytes = 0;  // of the body alone
    uint32_t refs = 0;        // entries (durable or pending) referencing it
    bool durable = false;     // `where` is complete (set by the BodyPut's durable callback)
    bool append_durable = false;
    bool superseded = false;  // superseded_ holds carrying records replaced by copies
  };
  // A QueueDelete record that is still needed: some segment other than its own may still hold
  // a record carrying an entry it kills. Keyed by its sequence.
  struct Tombstone {
    RecordLocation where;
    std::vector<uint64_t> depends_on;  // segment indices, not retired yet
  };
  // This table's view of one segment: live bytes and records, and the records that may be live
  // (checked again when cleaning: ids whose BodyPut or carrying record was seen here, tombstone
  // sequences), and the tombstones elsewhere that depend on it.
  struct SegmentState {
    uint64_t total_bytes = 0;  // of this table's records written there
    uint64_t live_bytes = 0;
    uint64_t live_records = 0;
    std::vector<MessageId> bodies;
    std::vector<MessageId> appends;
    std::vector<uint64_t> tombstones;
    std::vector<uint64_t> dependents;  // tombstone sequences
    bool retiring = false;
    bool unreadable = false;  // a copy's read failed: left alone (logged)
  };
  // The segment being cleaned: cursors into its lists, copies in flight.
  struct Cleaning {
    uint64_t segment = 0;
    bool active = false;
    size_t body_cursor = 0;
    size_t append_cursor = 0;
    size_t tombstone_cursor = 0;
    uint32_t in_flight = 0;  // reads and copies not yet durable
    bool failed = false;     // a read failed or found a record that does not match
  };
  struct Selected {
    MessageId id;
    RecordLocation where;
  };
  std::vector<Selected> select(const DeviceKey& device, std::optional<MessageId> after,
                               uint32_t max_messages, uint64_t max_bytes) const;
  struct DrainState;
  void read_for_drain(const std::shared_ptr<DrainState>& d, size_t i, const RecordLocation& where,
                      bool retry);
  enum class EntryState : uint8_t { kPending, kDurable, kRemoved };
  struct Entry {
    MessageId id;
    uint64_t position = 0;  // the QueueAppend's sequence: the order appends were accepted in
    EntryState state = EntryState::kPending;
  };
  // One device's FIFO: entries[head, end) sorted by position. A delete marks its entry kRemoved
  // (a hole, skipped) and advances `head` past removed entries; holes are squeezed out once
  // they outnumber the live entries, so the vector stays within about twice the cap.
  struct Queue {
    std::vector<Entry> entries;
    uint32_t head = 0;
    uint32_t live = 0;  // entries not kRemoved
  };

  // Index in queue.entries of `id`'s live entry, or -1. The body gives the position (one per
  // message), a binary search in the sorted queue finds it.
  int64_t locate(const Queue& queue, const MessageId& id) const;
  // Adds an entry at `position` (at the back unless recovery meets an older position).
  absl::Status add_entry(const DeviceKey& device, const MessageId& id, uint64_t position,
                         bool durable, Body& body);
  // Removes the entry and drops the body's reference; false if it was not there.
  bool erase_entry(const DeviceKey& device, const MessageId& id);
  void erase_at(Queue& queue, size_t index);
  void unref_body(const MessageId& id);
  void on_append_durable(const absl::Status& status, const RecordLocation& at, const MessageId& id,
                         uint64_t position, const std::vector<DeviceKey>& devices,
                         const DoneCallback& done);

  // Compaction's bookkeeping.
  void note_location(const RecordLocation& at);  // learns where segments start
  uint64_t segment_of(uint64_t sequence) const;
  SegmentState& segment_state(uint64_t index);  // segments_[index], remembering the last one
  void count(const RecordLocation& at, int64_t sign);
  // Sequences of the records that may carry `body`'s entries (for a tombstone's dependencies).
  void carrying_sequences(const MessageId& id, const Body& body, std::vector<uint64_t>& out);
  // Registers a durable tombstone at `at` killing entries carried by `sequences`.
  void add_tombstone(const RecordLocation& at, const std::vector<uint64_t>& sequences);
  void drop_tombstone(uint64_t sequence);
  void retire(uint64_t segment);
  void on_retired(uint64_t segment, const absl::Status& status);
  void clean_some();
  void copy_body(const MessageId& id);
  void copy_append(const MessageId& id);
  void copy_tombstone(uint64_t sequence);
  void copy_done(bool read_failed);

  QueueTableOptions options_;  // max_queued_messages_per_device changes live
  Log* log_ = nullptr;
  DenseMap<MessageId, Body, MessageIdHash> bodies_;
  uint64_t body_bytes_ = 0;
  FlatMap<DeviceKey, Queue, DeviceKeyHash> queues_;
  QueueTableStats stats_;
  // Compaction.
  std::map<uint64_t, SegmentState> segments_;
  SegmentState* cached_segment_ = nullptr;  // segment_state()'s last answer
  uint64_t cached_segment_index_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> segment_starts_;  // (index, first sequence seen)
  std::set<uint64_t> retired_;
  uint32_t retiring_ = 0;
  // Sequences of carrying records replaced by a durable copy whose segments may not be retired
  // yet, per message (only for the few being compacted; pruned as segments retire).
  FlatMap<MessageId, std::vector<uint64_t>, MessageIdHash> superseded_;
  FlatMap<uint64_t, Tombstone, SequenceHash> tombstones_;
  Cleaning cleaning_;
  // Recovery only: older incarnations of ids appended again (recover()), by id.
  struct StaleIncarnation {
    uint64_t position = 0;
    std::vector<uint64_t> sequences;  // records that carried its entries
  };
  FlatMap<MessageId, std::vector<StaleIncarnation>, MessageIdHash> recovery_stale_;
  bool stale_entries_ = false;
  // Read callbacks may outlive the table (Log::read's contract); they check this first.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herald::storage

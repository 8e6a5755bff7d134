// The durable log at the bottom of the storage engine: fixed-size preallocated segments of
// CRC32C-framed records with increasing sequence numbers, group commit by size and by time,
// fail-stop on any write or sync error, and recovery that rebuilds state from the segments.
//
//   Log::open(device, options, visitor, [&](absl::StatusOr<std::unique_ptr<Log>> log) {...});
//   log->append(type, payload, [](const absl::Status& s, const RecordLocation& where) {...});
//
// The durable callback of an append runs only after the write and the sync that cover the
// record have both succeeded; then the record survives any crash. README.md has the format and
// the argument.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/storage/device.h"
#include "controlplane/storage/record.h"

namespace herald::storage {

struct LogOptions {
  // Size of every new segment file (a multiple of kBlockBytes). Existing segments keep theirs.
  uint64_t segment_size_bytes = 64ull << 20;
  // Group commit: a batch goes out once it holds this many bytes...
  uint32_t group_commit_bytes = 256u << 10;
  // ...or once its oldest append has waited this long, whichever comes first. One batch is in
  // flight at a time; appends meanwhile gather for the next one.
  uint64_t group_commit_delay_us = 200;
  // Largest single write (tail block included). Bounds how far a torn write can reach, which
  // recovery relies on; stored in each segment header.
  uint32_t max_write_bytes = 1u << 20;
  uint32_t max_payload_bytes = 64u << 10;
  // Appends staged and not yet durable, in bytes; beyond it append() refuses (backpressure).
  uint64_t max_staged_bytes = 64ull << 20;
  // Segment summaries (summary.h, README.md): when set, every sealed segment gets a summary
  // file listing its records with each payload cut to the bytes this returns (at most the
  // payload's size), and open reads a segment's summary instead of the segment when it
  // verifies. Unset: no summaries (the catalog: its snapshots bound what it replays).
  std::function<uint32_t(uint8_t type, std::span<const uint8_t> payload)> summary_payload_bytes;
};
absl::Status validate(const LogOptions& options);

// Called once per appended record, in sequence order: OK and where the record lives once it is
// durable, or the error that failed the log.
using DurableCallback = std::function<void(const absl::Status& status, const RecordLocation&)>;

// A segment as the log knows it. An empty segment has record_count 0 and
// last_sequence == first_sequence - 1.
struct SegmentInfo {
  uint64_t index;
  uint64_t first_sequence;
  uint64_t last_sequence;
  uint64_t record_count;
};

// The log's manifest (file `log.manifest`): which segments were retired on purpose, so recovery
// accepts the gaps they leave and still detects a segment that vanished (README.md,
// "Retirement"). Every segment with index < low_index is retired, and the first live segment
// at or after it starts at low_next_sequence (0: unknown, any); `retired` lists the retired
// segments at or above low_index, by index.
struct LogManifest {
  uint64_t low_index = 0;
  uint64_t low_next_sequence = 0;
  std::vector<SegmentInfo> retired;
};
inline constexpr char kManifestFileName[] = "log.manifest";
inline constexpr char kManifestTempFileName[] = "log.manifest.tmp";
inline constexpr uint32_t kMaxManifestEntries = 1u << 16;
// Adds `segments`, then folds retired segments contiguous with low_index into it.
void manifest_add(LogManifest& manifest, std::span<const SegmentInfo> segments);
// Whole blocks: [magic "HRLDMAN1" u64][version u32][count u32][low_index u64]
// [low_next_sequence u64] then count x [index, first, last, count u64] then crc32c u32 of all
// before it, zero padded.
std::vector<uint8_t> encode_manifest(const LogManifest& manifest);
// Bytes needed to decode a manifest whose first block is `first_block` (0 if it is invalid).
uint64_t manifest_size_bytes(std::span<const uint8_t> first_block);
absl::Status decode_manifest(std::span<const uint8_t> bytes, LogManifest* out);

struct LogStats {
  uint64_t appends = 0;
  uint64_t appends_refused = 0;  // backpressure (max_staged_bytes)
  uint64_t batches = 0;
  uint64_t batches_by_size = 0;
  uint64_t batches_by_time = 0;
  uint64_t bytes_written = 0;  // whole blocks, tail blocks rewritten included
  uint64_t syncs = 0;
  uint64_t segments_created = 0;
  uint64_t rotation_waits = 0;  // a batch waited for the next segment's preallocation
  // Recovery.
  uint64_t recovered_records = 0;
  uint64_t recovered_segments = 0;
  uint64_t torn_tails = 0;
  // Retirement.
  uint64_t segments_retired = 0;
  uint64_t manifest_writes = 0;
  uint64_t stale_segments_removed = 0;  // retired, still present at open (crash mid-retire)
  // Segment summaries.
  uint64_t summaries_written = 0;
  uint64_t summary_bytes_written = 0;
  uint64_t summary_write_errors = 0;     // not fail-stop: the segment is scanned at open instead
  uint64_t segments_from_summaries = 0;  // at open: read through their summary
  uint64_t summary_fallbacks = 0;        // at open: a summary that did not verify (scanned)
  uint64_t stale_summaries_removed = 0;  // at open: of retired segments, or temporary files
};

// A record read back by Log::read.
struct ReadRecord {
  uint8_t type = 0;
  std::vector<uint8_t> payload;
};

class Log {
 public:
  using OpenCallback = std::function<void(absl::StatusOr<std::unique_ptr<Log>> log)>;

  // Scans every segment on `device` in order, calls `visitor` for each valid record (the index
  // above rebuilds from these), then prepares a segment to append to and completes. Fails with
  // DataLoss on corruption (never truncates past it), or with the device's error. `device` must
  // outlive the Log.
  static void open(Device& device, const LogOptions& options, RecordVisitor visitor,
                   OpenCallback done);
  // The same, with records handed over in runs (each at most one segment's). With summaries,
  // `expect_records` (if set) is called once before the first run with the number of records
  // the summaries hold (a lower bound on what follows), so the index can size itself once.
  static void open_batched(Device& device, const LogOptions& options, RecordBatchVisitor visitor,
                           OpenCallback done,
                           std::function<void(uint64_t records)> expect_records = nullptr);

  // Dropping a Log with I/O in flight is allowed only when the device will never complete it
  // (a simulated crash); otherwise wait for idle() first.
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // Stages a record and returns its sequence number; `on_durable` runs later (never inside this
  // call). Errors here mean the record was not taken and `on_durable` will never run:
  // FailedPrecondition once the log has failed, InvalidArgument for a bad type or size,
  // ResourceExhausted when max_staged_bytes are waiting (retry after some callbacks ran).
  // Callbacks may append; they must not destroy the Log.
  absl::StatusOr<uint64_t> append(uint8_t type, std::span<const uint8_t> payload,
                                  DurableCallback on_durable);
  // Sends whatever is staged without waiting for the size or time limit.
  void flush();

  // Reads back one durable record by the location its durable callback (or recovery) gave.
  // Opens its segment for this read alone (rotation may close the log's own handle meanwhile),
  // reads the blocks covering it and checks framing, CRC32C, sequence and size: a mismatch is
  // DataLoss, never wrong bytes. `done` runs later (never inside this call), may outlive the Log
  // (it needs only the device). InvalidArgument for a location that is not durable or not sane.
  using ReadCallback = std::function<void(absl::StatusOr<ReadRecord> record)>;
  void read(const RecordLocation& where, ReadCallback done) const;

  // Sealed segments (every one except the segment being appended to), oldest first.
  std::vector<SegmentInfo> sealed_segments() const;
  // Deletes a sealed segment whose records the caller no longer needs; durable when `done` runs
  // with OK. Any sealed segment may go, not only the oldest. The retirement is first recorded
  // in the manifest (written to a temporary file, synced, renamed over log.manifest, directory
  // synced), then the file is removed; from this call on, read() of its records is NotFound
  // and recovery never returns them. NotFound for a segment that is not sealed (current,
  // unknown, already retired); an I/O error fails the log (fail-stop). `done` never runs
  // inside this call.
  void retire_segment(uint64_t index, std::function<void(const absl::Status&)> done);
  const LogManifest& manifest() const { return manifest_; }

  // The first error the log met; after it every append fails (fail-stop, README.md).
  const absl::Status& status() const { return status_; }
  bool failed() const { return !status_.ok(); }
  // Nothing staged, nothing in flight (segment preallocation and summary writes included).
  bool idle() const;
  uint64_t next_sequence() const { return next_sequence_; }
  // Every record up to this one is durable.
  uint64_t durable_sequence() const { return durable_sequence_; }
  const LogStats& stats() const { return stats_; }
  const LogOptions& options() const { return options_; }

 private:
  struct Pending {
    uint64_t sequence;
    uint32_t size_bytes;
    uint64_t append_ns;
    DurableCallback on_durable;
  };
  struct Segment {
    FileHandle file = -1;
    uint64_t index = 0;
    uint64_t size_bytes = 0;
    uint64_t tail_offset = 0;  // where the next record goes
  };
  enum class NextState : uint8_t { kNone, kCreating, kReady };
  class Recovery;

  Log(Device& device, const LogOptions& options);

  void maybe_flush();
  void start_batch();
  void on_batch_written(int32_t result);
  void on_batch_synced(int32_t result);
  void prepare_next_segment();
  void on_next_created(int32_t result);
  void on_next_header_written(int32_t result);
  void on_next_header_synced(int32_t result);
  void fail(absl::Status status);
  bool is_retired(uint64_t segment_index) const;
  void start_retirement();
  void remove_next_retired();
  void finish_retirement(absl::Status status);
  // Segment summaries: entries gathered as records become durable, written once sealed.
  void summarize_batch(uint64_t first_record_offset);
  void seal_summary(uint64_t segment_index, uint64_t first_sequence, uint64_t records,
                    uint64_t end_offset);
  void write_next_summary();
  void summary_written(absl::Status status);

  Device& device_;
  const LogOptions options_;
  absl::Status status_;
  LogStats stats_;

  uint64_t next_sequence_ = 1;
  uint64_t durable_sequence_ = 0;

  // Staged records, encoded, in sequence order; staged_[staged_head_, end) are not yet durable.
  std::vector<uint8_t> staged_;
  size_t staged_head_ = 0;
  std::deque<Pending> pending_;
  uint64_t oldest_staged_ns_ = 0;
  bool timer_armed_ = false;
  bool flush_requested_ = false;

  Segment current_;
  // The block holding current_.tail_offset, as written: the next batch rewrites it whole.
  std::unique_ptr<uint8_t, void (*)(void*)> tail_block_;
  std::unique_ptr<uint8_t, void (*)(void*)> write_buffer_;
  std::unique_ptr<uint8_t, void (*)(void*)> header_block_;

  // The batch in flight.
  bool batch_in_flight_ = false;
  bool waiting_for_segment_ = false;
  uint32_t batch_records_ = 0;
  uint32_t batch_write_bytes_ = 0;
  uint64_t batch_write_offset_ = 0;
  uint64_t batch_record_bytes_ = 0;

  Segment next_;
  NextState next_state_ = NextState::kNone;
  uint64_t next_segment_index_ = 0;

  // What the current segment holds (durable records only).
  uint64_t current_first_sequence_ = 0;
  uint64_t current_last_sequence_ = 0;
  uint64_t current_records_ = 0;
  std::vector<SegmentInfo> sealed_;

  // Retirement: the durable manifest, the retirements waiting, and the one being written.
  using RetireCallback = std::function<void(const absl::Status&)>;
  struct Retirement {
    SegmentInfo segment;
    RetireCallback done;
  };
  LogManifest manifest_;
  std::set<uint64_t> retiring_;  // queued or in flight: read() refuses them already
  std::vector<Retirement> retire_queue_;
  std::vector<Retirement> retire_batch_;  // in flight
  LogManifest retire_manifest_;           // what the batch in flight writes
  std::vector<uint8_t> retire_bytes_;     // its encoding
  std::unique_ptr<uint8_t, void (*)(void*)> retire_buffer_{nullptr, &std::free};
  size_t retire_removed_ = 0;  // segment files of the batch removed so far
  bool retire_in_flight_ = false;

  // Segment summaries. summary_body_ holds the entries of the current segment's durable
  // records; a sealed segment's file waits in summary_queue_ and is written one at a time.
  struct SummaryWrite {
    uint64_t segment_index = 0;
    std::vector<uint8_t> file;  // encode_summary_file()
  };
  std::vector<uint8_t> summary_body_;
  std::deque<SummaryWrite> summary_queue_;
  std::unique_ptr<uint8_t, void (*)(void*)> summary_buffer_{nullptr, &std::free};
  bool summary_in_flight_ = false;
};

}  // namespace herald::storage

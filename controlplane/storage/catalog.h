// storage::Catalog: the durable implementation of storage::Tables. Each apply() batch is one
// log record (type 19) on the catalog's own Log; in memory a TableMaps. Snapshots of the whole
// map, written in the background in chunks, bound restart time and let the log retire the
// segments they cover (README.md, "Catalog").
//
//   storage::Catalog::open(device, CatalogOptions{}, [&](absl::StatusOr<std::unique_ptr<Catalog>>
//   c) {...}); catalog->apply(batch);  catalog->barrier([](const absl::Status& s) {...});
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/storage/device.h"
#include "controlplane/storage/log.h"
#include "controlplane/storage/tables.h"

namespace herald::storage {

// Log record types of the catalog (16-18 are the queue table's).
inline constexpr uint8_t kRecordTypeCatalogBatch = 19;
// Types inside a snapshot file (its own framing; numbers kept apart from the log's anyway).
inline constexpr uint8_t kSnapshotRecordEntry = 20;
inline constexpr uint8_t kSnapshotRecordEnd = 21;

struct CatalogOptions {
  LogOptions log;
  // A snapshot starts once the log has grown by this much since the last one began.
  uint64_t snapshot_after_bytes = 64ull << 20;
  // Bytes serialized per step of a snapshot (one write each); bounds how long one step holds
  // the loop.
  uint32_t snapshot_chunk_bytes = 256u << 10;
  // Snapshots kept (>= 1). With 2, a newest snapshot that fails verification falls back to
  // the previous one: segments are retired only once the oldest kept snapshot covers them.
  uint32_t snapshots_kept = 2;
  bool snapshots_enabled = true;
};
absl::Status validate(const CatalogOptions& options);

struct CatalogStats {
  uint64_t batches_applied = 0;
  uint64_t batches_refused = 0;  // backpressure, validation, fail-stop
  uint64_t barriers = 0;
  uint64_t snapshots_started = 0;
  uint64_t snapshots_written = 0;
  uint64_t snapshot_bytes = 0;    // of the last snapshot written
  uint64_t snapshot_entries = 0;  // of the last snapshot written
  uint64_t snapshot_steps = 0;    // chunks serialized, all snapshots
  uint64_t segments_retired = 0;
  uint64_t snapshots_removed = 0;
  // Recovery.
  uint64_t recovery_ns = 0;               // the device's clock: virtual time on the simulated disk
  uint64_t snapshot_loaded_sequence = 0;  // 0: none
  uint64_t snapshot_entries_loaded = 0;
  uint64_t snapshot_fallbacks = 0;  // snapshots that failed verification at open
  uint64_t records_replayed = 0;
  uint64_t records_skipped = 0;  // in the log, already covered by the snapshot
};

// Encodes a batch as the payload of one kRecordTypeCatalogBatch record:
// [count u32] then per mutation [table u8][op u8: 1 put, 2 erase][key_len u16][value_len u32]
// [key][value]. Little-endian.
std::vector<uint8_t> encode_catalog_batch(std::span<const Mutation> batch);
// Fails with DataLoss on anything malformed (it passed a CRC, so it is corruption or a bug).
absl::Status decode_catalog_batch(std::span<const uint8_t> payload, std::vector<Mutation>* out);

// "snapshot-<16 hex digits>.snap", and its temporary name while written.
std::string snapshot_file_name(uint64_t sequence);
bool parse_snapshot_file_name(const std::string& name, uint64_t* sequence);

class Catalog final : public Tables {
 public:
  using OpenCallback = std::function<void(absl::StatusOr<std::unique_ptr<Catalog>>)>;

  // Loads the newest snapshot that verifies (falling back to an older one), replays the log
  // records after it, and completes. DataLoss when committed data cannot be recovered whole.
  // `device` (the node's <data-dir>/catalog/) must outlive the catalog.
  static void open(Device& device, const CatalogOptions& options, OpenCallback done);

  // With I/O in flight only when the device will never complete it (a simulated crash);
  // otherwise wait for idle().
  ~Catalog() override;
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  absl::Status apply(std::span<const Mutation> batch) override;
  const std::string* find(TableId table, std::string_view key) const override {
    return maps_.find(table, key);
  }
  void scan(TableId table, std::string_view from, const ScanFn& fn) const override {
    maps_.scan(table, from, fn);
  }
  size_t size(TableId table) const override { return maps_.size(table); }
  void barrier(BarrierCallback done) override;
  const absl::Status& status() const override { return status_; }

  // The log growth that starts the next snapshot, from now on (a committed config revision);
  // a value at or below what has grown already starts one at the next apply. 0 is refused.
  void set_snapshot_after_bytes(uint64_t bytes) {
    if (bytes > 0) options_.snapshot_after_bytes = bytes;
  }
  uint64_t snapshot_after_bytes() const { return options_.snapshot_after_bytes; }
  // Starts a snapshot now if none is being written (tests, and an operator's command).
  void snapshot_now();
  bool snapshot_in_progress() const { return snapshot_ != nullptr; }
  // Nothing in flight: the log idle, no snapshot, no barrier waiting.
  bool idle() const;
  const CatalogStats& stats() const { return stats_; }
  const Log& log() const { return *log_; }
  Log& log_for_test() { return *log_; }
  // Sequences of the snapshots on disk, oldest first.
  const std::vector<uint64_t>& snapshots() const { return snapshots_; }

 private:
  class Opener;
  struct SnapshotWriter;
  struct Waiter {
    uint64_t sequence;
    BarrierCallback done;
  };

  Catalog(Device& device, const CatalogOptions& options);

  void on_durable(const absl::Status& status, uint64_t sequence);
  void fail(const absl::Status& status);
  void maybe_snapshot();
  void snapshot_step();
  void snapshot_written_chunk(int32_t result);
  void snapshot_finish_file();
  void snapshot_commit();
  void snapshot_cleanup();
  void snapshot_retire_next();
  void snapshot_done(absl::Status status);

  Device& device_;
  CatalogOptions options_;  // snapshot_after_bytes changes live
  std::unique_ptr<Log> log_;
  TableMaps maps_;
  absl::Status status_;
  CatalogStats stats_;
  uint64_t last_applied_sequence_ = 0;
  std::deque<Waiter> waiters_;  // barriers, by sequence
  uint64_t bytes_since_snapshot_ = 0;
  std::vector<uint64_t> snapshots_;  // on disk, oldest first
  std::unique_ptr<SnapshotWriter> snapshot_;
};

}  // namespace herald::storage

// Catalog: batches as log records, barriers on the log's durable sequence, fuzzy snapshots
// written in chunks on the loop, segment retirement behind them, and recovery (snapshot, then
// the log after it). README.md ("Catalog") has the format and the argument.
#include "controlplane/storage/catalog.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/crc32c/crc32c.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {

constexpr uint64_t kSnapshotMagic = 0x31504e53444c5248ULL;  // "HRLDSNP1"
constexpr uint32_t kSnapshotVersion = 1;
constexpr size_t kSnapshotHeaderCrcAt = 24;  // after magic, version, flags, replay_from
// An entry's payload: [table u8][key_len u16][key][value]; the end's: [entries u64]
// [replay_from u64][covers_through u64].
constexpr uint32_t kSnapshotMaxPayloadBytes = 3 + kMaxKeyBytes + kMaxValueBytes;
constexpr uint32_t kSnapshotEndPayloadBytes = 24;
constexpr uint32_t kSnapshotReadBytes = 1u << 20;
constexpr char kSnapshotPrefix[] = "snapshot-";
constexpr char kSnapshotSuffix[] = ".snap";
constexpr char kTempSuffix[] = ".tmp";
constexpr char kCorruptSuffix[] = ".corrupt";

template <typename T>
void append_le(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  store_le<T>(out.data() + at, value);
}

using AlignedBuffer = std::unique_ptr<uint8_t, void (*)(void*)>;
AlignedBuffer aligned_buffer(size_t size_bytes) {
  void* p = std::aligned_alloc(kBlockBytes, align_up(size_bytes, kBlockBytes));
  HERALD_CHECK(p != nullptr, "out of memory for a catalog buffer");
  std::memset(p, 0, size_bytes);
  return {static_cast<uint8_t*>(p), &std::free};
}

absl::Status io_error(const std::string& what, int32_t result) {
  return absl::InternalError(
      absl::StrCat(what, ": ", result < 0 ? std::strerror(-result) : "short transfer"));
}

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Appends one framed snapshot record (the log's framing: length, CRC32C, ordinal, type).
void append_framed(std::vector<uint8_t>& out, uint64_t ordinal, uint8_t type,
                   std::span<const uint8_t> payload) {
  const size_t at = out.size();
  out.resize(at + record_size_bytes(payload.size()));
  encode_record(out.data() + at, ordinal, type, payload);
}

}  // namespace

// --- Batch records ----------------------------------------------------------------------------

std::vector<uint8_t> encode_catalog_batch(std::span<const Mutation> batch) {
  std::vector<uint8_t> out;
  size_t size = 4;
  for (const Mutation& m : batch) size += 8 + m.key.size() + (m.value ? m.value->size() : 0);
  out.reserve(size);
  append_le<uint32_t>(out, static_cast<uint32_t>(batch.size()));
  for (const Mutation& m : batch) {
    append_le<uint8_t>(out, static_cast<uint8_t>(m.table));
    append_le<uint8_t>(out, m.value ? 1 : 2);
    append_le<uint16_t>(out, static_cast<uint16_t>(m.key.size()));
    append_le<uint32_t>(out, m.value ? static_cast<uint32_t>(m.value->size()) : 0);
    out.insert(out.end(), m.key.begin(), m.key.end());
    if (m.value) out.insert(out.end(), m.value->begin(), m.value->end());
  }
  return out;
}

absl::Status decode_catalog_batch(std::span<const uint8_t> p, std::vector<Mutation>* out) {
  out->clear();
  const auto bad = [](const char* why) {
    return absl::DataLossError(absl::StrCat("catalog batch record: ", why));
  };
  if (p.size() < 4) return bad("too short");
  const uint32_t count = load_le<uint32_t>(p.data());
  size_t at = 4;
  if (count == 0 || count > p.size()) return bad("bad count");
  out->reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    if (p.size() - at < 8) return bad("truncated mutation");
    const uint8_t table = p[at];
    const uint8_t op = p[at + 1];
    const uint16_t key_bytes = load_le<uint16_t>(p.data() + at + 2);
    const uint32_t value_bytes = load_le<uint32_t>(p.data() + at + 4);
    at += 8;
    if (!is_valid_table(table) || (op != 1 && op != 2) || key_bytes > kMaxKeyBytes ||
        value_bytes > kMaxValueBytes || (op == 2 && value_bytes != 0)) {
      return bad("bad mutation header");
    }
    if (p.size() - at < size_t{key_bytes} + value_bytes) return bad("truncated key or value");
    Mutation m;
    m.table = static_cast<TableId>(table);
    m.key.assign(reinterpret_cast<const char*>(p.data() + at), key_bytes);
    at += key_bytes;
    if (op == 1) {
      m.value.emplace(reinterpret_cast<const char*>(p.data() + at), value_bytes);
      at += value_bytes;
    }
    out->push_back(std::move(m));
  }
  if (at != p.size()) return bad("trailing bytes");
  return absl::OkStatus();
}

std::string snapshot_file_name(uint64_t sequence) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, sequence);
  return absl::StrCat(kSnapshotPrefix, hex, kSnapshotSuffix);
}

bool parse_snapshot_file_name(const std::string& name, uint64_t* sequence) {
  const size_t prefix = sizeof(kSnapshotPrefix) - 1;
  const size_t suffix = sizeof(kSnapshotSuffix) - 1;
  if (name.size() != prefix + 16 + suffix || name.compare(0, prefix, kSnapshotPrefix) != 0 ||
      !ends_with(name, kSnapshotSuffix)) {
    return false;
  }
  return parse_hex16(std::span<const char>(name.data() + prefix, 16), sequence);
}

absl::Status validate(const CatalogOptions& o) {
  if (absl::Status s = validate(o.log); !s.ok()) return s;
  if (o.snapshot_chunk_bytes < kBlockBytes || o.snapshots_kept == 0 ||
      o.snapshot_after_bytes == 0) {
    return absl::InvalidArgumentError(
        "catalog: snapshot_chunk_bytes >= 4096, snapshots_kept >= 1, snapshot_after_bytes > 0");
  }
  return absl::OkStatus();
}

// --- The catalog --------------------------------------------------------------------------------

// A snapshot being written: a fuzzy scan of the live maps in chunks (README.md, "Snapshots").
struct Catalog::SnapshotWriter {
  uint64_t replay_from = 0;     // S: every batch <= S is wholly in the snapshot
  uint64_t covers_through = 0;  // batches applied by the last chunk: must be durable first
  std::string temp_name;
  std::string final_name;
  FileHandle file = -1;
  size_t table = 1;          // resume point: table slot...
  std::string resume_after;  // ...and the last key written in it
  bool started_table = false;
  bool serialized = false;  // the end record is in `stream`
  uint64_t entries = 0;
  uint64_t file_offset = 0;
  std::vector<uint8_t> stream;  // serialized, not yet written
  AlignedBuffer buffer{nullptr, &std::free};
  uint32_t write_bytes = 0;
  uint32_t retirements_pending = 0;
  absl::Status retire_status;
};

Catalog::Catalog(Device& device, const CatalogOptions& options)
    : device_(device), options_(options) {}

Catalog::~Catalog() {
  if (snapshot_ && snapshot_->file >= 0) device_.close(snapshot_->file);
}

bool Catalog::idle() const {
  return log_->idle() && snapshot_ == nullptr && waiters_.empty();
}

absl::Status Catalog::apply(std::span<const Mutation> batch) {
  if (!status_.ok()) {
    ++stats_.batches_refused;
    return absl::FailedPreconditionError(
        absl::StrCat("catalog failed: ", std::string(status_.message())));
  }
  if (absl::Status s = validate_batch(batch); !s.ok()) {
    ++stats_.batches_refused;
    return s;
  }
  const std::vector<uint8_t> payload = encode_catalog_batch(batch);
  if (payload.size() > options_.log.max_payload_bytes) {
    ++stats_.batches_refused;
    return absl::InvalidArgumentError("catalog: batch too large for one log record");
  }
  absl::StatusOr<uint64_t> sequence = log_->append(
      kRecordTypeCatalogBatch, payload, [this](const absl::Status& s, const RecordLocation& where) {
        on_durable(s, where.sequence);
      });
  if (!sequence.ok()) {
    ++stats_.batches_refused;
    if (log_->failed()) fail(log_->status());
    return sequence.status();  // ResourceExhausted: backpressure, nothing applied
  }
  maps_.apply(batch);
  last_applied_sequence_ = *sequence;
  bytes_since_snapshot_ += record_size_bytes(payload.size());
  ++stats_.batches_applied;
  maybe_snapshot();
  return absl::OkStatus();
}

void Catalog::barrier(BarrierCallback done) {
  ++stats_.barriers;
  if (!status_.ok()) {
    device_.after(0, [done = std::move(done), s = status_] { done(s); });
    return;
  }
  if (last_applied_sequence_ <= log_->durable_sequence()) {
    device_.after(0, [done = std::move(done)] { done(absl::OkStatus()); });
    return;
  }
  // The log makes records durable in order, so waiting for the last applied one covers all.
  waiters_.push_back(Waiter{last_applied_sequence_, std::move(done)});
}

void Catalog::on_durable(const absl::Status& status, uint64_t sequence) {
  if (!status.ok()) return fail(status);
  while (!waiters_.empty() && waiters_.front().sequence <= sequence) {
    BarrierCallback done = std::move(waiters_.front().done);
    waiters_.pop_front();
    done(absl::OkStatus());
    if (!status_.ok()) return;
  }
}

void Catalog::fail(const absl::Status& status) {
  if (!status_.ok()) return;
  // Fail-stop, as the log: what is in memory may be ahead of the disk and nothing is retried;
  // the process restarts and recovers from what the disk holds.
  status_ = status;
  HLOG_ERROR("storage.catalog.failed").kv("error", std::string(status_.message()));
  std::deque<Waiter> waiters;
  waiters.swap(waiters_);
  for (Waiter& w : waiters) w.done(status_);
}

// --- Snapshots ----------------------------------------------------------------------------------
//
// Fuzzy: the live maps are serialized in chunks while applies go on, so an entry may show its
// value at S (the last batch applied when the snapshot began) or a later one. Recovery replays
// every log record after S over it; a batch is a list of blind puts and erases, so replaying a
// record whose effect is already in the snapshot leaves the same result, and after the replay
// each key holds the value of its last write. The snapshot is published only once the log has
// made durable every batch its chunks could have seen (covers_through), so it never holds
// state the log could lose. No copy of a million entries, no pause: each step serializes
// snapshot_chunk_bytes and returns to the loop while its write is in flight.

void Catalog::maybe_snapshot() {
  if (options_.snapshots_enabled && bytes_since_snapshot_ >= options_.snapshot_after_bytes) {
    snapshot_now();
  }
}

void Catalog::snapshot_now() {
  if (snapshot_ || !status_.ok()) return;
  if (last_applied_sequence_ == 0 ||
      (!snapshots_.empty() && snapshots_.back() >= last_applied_sequence_)) {
    return;  // nothing new to cover
  }
  ++stats_.snapshots_started;
  bytes_since_snapshot_ = 0;
  snapshot_ = std::make_unique<SnapshotWriter>();
  SnapshotWriter& w = *snapshot_;
  w.replay_from = last_applied_sequence_;
  w.final_name = snapshot_file_name(w.replay_from);
  w.temp_name = w.final_name + kTempSuffix;
  w.buffer = aligned_buffer(align_up(options_.snapshot_chunk_bytes, kBlockBytes) +
                            record_size_bytes(kSnapshotMaxPayloadBytes) + kBlockBytes);
  // Header block: identifies the file and S.
  w.stream.assign(kBlockBytes, 0);
  store_le<uint64_t>(w.stream.data(), kSnapshotMagic);
  store_le<uint32_t>(w.stream.data() + 8, kSnapshotVersion);
  store_le<uint32_t>(w.stream.data() + 12, 0);
  store_le<uint64_t>(w.stream.data() + 16, w.replay_from);
  store_le<uint32_t>(w.stream.data() + kSnapshotHeaderCrcAt,
                     crc32c::extend(0, w.stream.data(), kSnapshotHeaderCrcAt));
  HLOG_INFO("storage.catalog.snapshot_started").kv("sequence", w.replay_from);
  device_.create(w.temp_name, kBlockBytes, [this](int32_t fd) {
    if (!status_.ok()) {
      if (fd >= 0) device_.close(fd);
      return snapshot_done(status_);
    }
    if (fd < 0) return snapshot_done(io_error("create snapshot", fd));
    snapshot_->file = fd;
    snapshot_step();
  });
}

void Catalog::snapshot_step() {
  SnapshotWriter& w = *snapshot_;
  ++stats_.snapshot_steps;
  // Serialize up to a chunk, resuming after the last key written (the maps may have changed
  // since: the fuzzy scan above).
  std::vector<uint8_t> payload;
  while (!w.serialized && w.stream.size() < options_.snapshot_chunk_bytes) {
    if (w.table >= kTableSlots) {
      payload.clear();
      append_le<uint64_t>(payload, w.entries);
      append_le<uint64_t>(payload, w.replay_from);
      append_le<uint64_t>(payload, last_applied_sequence_);
      w.covers_through = last_applied_sequence_;
      append_framed(w.stream, w.entries + 1, kSnapshotRecordEnd, payload);
      w.serialized = true;
      break;
    }
    std::string from;
    if (w.started_table) {
      from = w.resume_after;
      from.push_back('\0');  // the smallest key after resume_after
    }
    bool table_done = true;
    maps_.scan(static_cast<TableId>(w.table), from,
               [&](std::string_view key, std::string_view value) {
                 if (w.stream.size() >= options_.snapshot_chunk_bytes) {
                   table_done = false;
                   return false;
                 }
                 payload.clear();
                 append_le<uint8_t>(payload, static_cast<uint8_t>(w.table));
                 append_le<uint16_t>(payload, static_cast<uint16_t>(key.size()));
                 payload.insert(payload.end(), key.begin(), key.end());
                 payload.insert(payload.end(), value.begin(), value.end());
                 ++w.entries;
                 append_framed(w.stream, w.entries, kSnapshotRecordEntry, payload);
                 w.resume_after.assign(key);
                 w.started_table = true;
                 return true;
               });
    if (table_done) {
      ++w.table;
      w.started_table = false;
      w.resume_after.clear();
    }
  }
  // Write whole blocks; the rest waits for the next step (or is padded with zeros at the end).
  size_t bytes = w.serialized ? align_up(w.stream.size(), kBlockBytes)
                              : align_down(w.stream.size(), kBlockBytes);
  HERALD_CHECK(bytes > 0, "a snapshot step produced no block");
  const size_t from_stream = std::min(bytes, w.stream.size());
  std::memcpy(w.buffer.get(), w.stream.data(), from_stream);
  std::memset(w.buffer.get() + from_stream, 0, bytes - from_stream);
  w.stream.erase(w.stream.begin(), w.stream.begin() + static_cast<ptrdiff_t>(from_stream));
  w.write_bytes = static_cast<uint32_t>(bytes);
  device_.write(w.file, w.file_offset, w.buffer.get(), w.write_bytes,
                [this](int32_t r) { snapshot_written_chunk(r); });
}

void Catalog::snapshot_written_chunk(int32_t result) {
  SnapshotWriter& w = *snapshot_;
  if (!status_.ok()) return snapshot_done(status_);
  if (result != static_cast<int32_t>(w.write_bytes)) {
    return snapshot_done(io_error("write snapshot", result));
  }
  w.file_offset += w.write_bytes;
  if (!w.serialized) return snapshot_step();
  device_.sync(w.file, [this](int32_t r) {
    if (!status_.ok()) return snapshot_done(status_);
    if (r < 0) return snapshot_done(io_error("sync snapshot", r));
    snapshot_finish_file();
  });
}

void Catalog::snapshot_finish_file() {
  SnapshotWriter& w = *snapshot_;
  device_.close(w.file);
  w.file = -1;
  stats_.snapshot_bytes = w.file_offset;
  stats_.snapshot_entries = w.entries;
  if (log_->durable_sequence() >= w.covers_through) return snapshot_commit();
  // Publish only once every batch a chunk could have seen is durable in the log.
  waiters_.push_back(Waiter{w.covers_through, [this](const absl::Status& s) {
                              if (!s.ok()) return snapshot_done(s);
                              snapshot_commit();
                            }});
}

void Catalog::snapshot_commit() {
  SnapshotWriter& w = *snapshot_;
  device_.rename(w.temp_name, w.final_name, [this](int32_t r) {
    if (!status_.ok()) return snapshot_done(status_);
    if (r < 0) return snapshot_done(io_error("rename snapshot", r));
    snapshots_.push_back(snapshot_->replay_from);
    ++stats_.snapshots_written;
    HLOG_INFO("storage.catalog.snapshot_written")
        .kv("sequence", snapshot_->replay_from)
        .kv("entries", snapshot_->entries)
        .kv("bytes", snapshot_->file_offset);
    snapshot_cleanup();
  });
}

// Older snapshots beyond snapshots_kept go first, then the segments the oldest kept snapshot
// covers: a fallback snapshot always has the log records it needs.
void Catalog::snapshot_cleanup() {
  if (snapshots_.size() > options_.snapshots_kept) {
    const uint64_t oldest = snapshots_.front();
    device_.remove(snapshot_file_name(oldest), [this](int32_t r) {
      if (!status_.ok()) return snapshot_done(status_);
      if (r < 0 && r != -ENOENT) return snapshot_done(io_error("remove snapshot", r));
      snapshots_.erase(snapshots_.begin());
      ++stats_.snapshots_removed;
      snapshot_cleanup();
    });
    return;
  }
  const uint64_t covered = snapshots_.front();
  std::vector<uint64_t> retire;
  for (const SegmentInfo& s : log_->sealed_segments()) {
    if (s.last_sequence <= covered) retire.push_back(s.index);
  }
  SnapshotWriter& w = *snapshot_;
  if (retire.empty()) return snapshot_done(absl::OkStatus());
  w.retirements_pending = static_cast<uint32_t>(retire.size());
  for (uint64_t index : retire) {
    log_->retire_segment(index, [this](const absl::Status& s) {
      SnapshotWriter& writer = *snapshot_;
      if (s.ok()) {
        ++stats_.segments_retired;
      } else if (writer.retire_status.ok()) {
        writer.retire_status = s;
      }
      if (--writer.retirements_pending == 0) snapshot_done(writer.retire_status);
    });
  }
}

void Catalog::snapshot_done(absl::Status status) {
  if (snapshot_ && snapshot_->file >= 0) device_.close(snapshot_->file);
  snapshot_.reset();
  if (!status.ok()) {
    // A snapshot's I/O error is treated as the log's: the directory's state is unknown after a
    // failed rename or sync (README.md, "Fail-stop").
    fail(status);
    return;
  }
  maybe_snapshot();
}

// --- Recovery -----------------------------------------------------------------------------------

class Catalog::Opener : public std::enable_shared_from_this<Catalog::Opener> {
 public:
  Opener(Device& device, const CatalogOptions& options, OpenCallback done)
      : device_(device),
        done_(std::move(done)),
        catalog_(new Catalog(device, options)),
        start_ns_(device.now_ns()) {}

  void start() {
    absl::StatusOr<std::vector<std::string>> names = device_.list_files();
    if (!names.ok()) {
      device_.after(0, [self = shared_from_this(), s = names.status()] { self->finish(s); });
      return;
    }
    for (const std::string& name : *names) {
      uint64_t sequence;
      if (parse_snapshot_file_name(name, &sequence)) {
        candidates_.push_back(sequence);
      } else if (ends_with(name, kTempSuffix) &&
                 name.compare(0, sizeof(kSnapshotPrefix) - 1, kSnapshotPrefix) == 0) {
        temps_.push_back(name);  // an interrupted snapshot: never published
      }
    }
    std::sort(candidates_.begin(), candidates_.end());
    had_snapshots_ = !candidates_.empty();
    try_newest();
  }

 private:
  // Loads the newest candidate; one that fails verification is set aside and the next older
  // one is tried.
  void try_newest() {
    catalog_->maps_.clear();
    if (candidates_.empty()) {
      if (had_snapshots_) {
        return finish(absl::DataLossError("catalog: no snapshot verifies"));
      }
      return open_log();
    }
    sequence_ = candidates_.back();
    carry_.clear();
    carry_at_ = 0;
    read_offset_ = 0;
    entries_ = 0;
    header_seen_ = false;
    ended_ = false;
    device_.open(snapshot_file_name(sequence_),
                 [self = shared_from_this()](int32_t r) { self->on_snapshot_opened(r); });
  }

  void on_snapshot_opened(int32_t fd) {
    if (fd < 0) return finish(io_error("open snapshot", fd));
    file_ = fd;
    if (!buffer_) buffer_ = aligned_buffer(kSnapshotReadBytes);
    read_next();
  }

  void read_next() {
    device_.read(file_, read_offset_, buffer_.get(), kSnapshotReadBytes,
                 [self = shared_from_this()](int32_t r) { self->on_snapshot_read(r); });
  }

  void on_snapshot_read(int32_t result) {
    if (result < 0) {
      device_.close(file_);
      file_ = -1;
      return finish(io_error("read snapshot", result));
    }
    read_offset_ += static_cast<uint32_t>(result);
    carry_.insert(carry_.end(), buffer_.get(), buffer_.get() + result);
    absl::Status s = decode_available();
    if (s.ok() && !ended_ && result == 0) s = absl::DataLossError("snapshot ends before its end");
    if (!s.ok()) {
      device_.close(file_);
      file_ = -1;
      ++catalog_->stats_.snapshot_fallbacks;
      HLOG_ERROR("storage.catalog.snapshot_invalid")
          .kv("sequence", sequence_)
          .kv("error", std::string(s.message()));
      quarantine_.push_back(sequence_);
      candidates_.pop_back();
      return try_newest();
    }
    if (ended_) {
      device_.close(file_);
      file_ = -1;
      catalog_->stats_.snapshot_loaded_sequence = sequence_;
      catalog_->stats_.snapshot_entries_loaded = entries_;
      return open_log();
    }
    read_next();
  }

  absl::Status decode_available() {
    if (!header_seen_) {
      if (carry_.size() < kBlockBytes) return absl::OkStatus();
      const uint8_t* h = carry_.data();
      if (load_le<uint64_t>(h) != kSnapshotMagic || load_le<uint32_t>(h + 8) != kSnapshotVersion ||
          load_le<uint32_t>(h + kSnapshotHeaderCrcAt) !=
              crc32c::extend(0, h, kSnapshotHeaderCrcAt) ||
          load_le<uint64_t>(h + 16) != sequence_) {
        return absl::DataLossError("snapshot header invalid");
      }
      header_seen_ = true;
      carry_at_ = kBlockBytes;
    }
    while (!ended_ && carry_.size() - carry_at_ >= kRecordHeaderBytes) {
      const uint8_t* p = carry_.data() + carry_at_;
      const uint32_t length = load_le<uint32_t>(p);
      if (length > kSnapshotMaxPayloadBytes) return absl::DataLossError("snapshot record length");
      const uint64_t size = record_size_bytes(length);
      if (carry_.size() - carry_at_ < size) break;
      DecodedRecord record;
      if (decode_record(std::span<const uint8_t>(p, size), kSnapshotMaxPayloadBytes, &record) !=
              DecodeStatus::kOk ||
          record.sequence != entries_ + 1) {
        return absl::DataLossError("snapshot record invalid");
      }
      const std::span<const uint8_t> payload = record.payload;
      if (record.type == kSnapshotRecordEntry) {
        if (payload.size() < 3) return absl::DataLossError("snapshot entry too short");
        const uint8_t table = payload[0];
        const uint16_t key_bytes = load_le<uint16_t>(payload.data() + 1);
        if (!is_valid_table(table) || key_bytes > kMaxKeyBytes || payload.size() - 3 < key_bytes ||
            payload.size() - 3 - key_bytes > kMaxValueBytes) {
          return absl::DataLossError("snapshot entry invalid");
        }
        const char* key = reinterpret_cast<const char*>(payload.data() + 3);
        const Mutation m =
            Mutation::put(static_cast<TableId>(table), std::string_view(key, key_bytes),
                          std::string_view(key + key_bytes, payload.size() - 3 - key_bytes));
        catalog_->maps_.apply(std::span(&m, 1));
        ++entries_;
      } else if (record.type == kSnapshotRecordEnd) {
        if (payload.size() != kSnapshotEndPayloadBytes ||
            load_le<uint64_t>(payload.data()) != entries_ ||
            load_le<uint64_t>(payload.data() + 8) != sequence_ ||
            load_le<uint64_t>(payload.data() + 16) < sequence_) {
          return absl::DataLossError("snapshot end record invalid");
        }
        covers_through_ = load_le<uint64_t>(payload.data() + 16);
        ended_ = true;
      } else {
        return absl::DataLossError("snapshot record type unknown");
      }
      carry_at_ += size;
    }
    // Keep only the undecoded tail.
    if (carry_at_ > 0) {
      carry_.erase(carry_.begin(), carry_.begin() + static_cast<ptrdiff_t>(carry_at_));
      carry_at_ = 0;
    }
    return absl::OkStatus();
  }

  void open_log() {
    const uint64_t base = candidates_.empty() ? 0 : sequence_;
    base_ = base;
    Catalog* catalog = catalog_.get();
    auto self = shared_from_this();
    Log::open(
        device_, catalog->options_.log,
        [this, catalog, base, self](const RecoveredRecord& r) -> absl::Status {
          if (r.type != kRecordTypeCatalogBatch) {
            return absl::DataLossError(
                absl::StrCat("catalog log: unknown record type ", static_cast<int>(r.type)));
          }
          if (r.location.sequence <= base) {
            ++catalog->stats_.records_skipped;
            return absl::OkStatus();
          }
          if (first_replayed_ == 0) first_replayed_ = r.location.sequence;
          if (absl::Status s = decode_catalog_batch(r.payload, &batch_); !s.ok()) return s;
          catalog->maps_.apply(batch_);
          catalog->bytes_since_snapshot_ += r.location.size_bytes;
          ++catalog->stats_.records_replayed;
          return absl::OkStatus();
        },
        [self](absl::StatusOr<std::unique_ptr<Log>> log) { self->on_log_opened(std::move(log)); });
  }

  void on_log_opened(absl::StatusOr<std::unique_ptr<Log>> log) {
    if (!log.ok()) return finish(log.status());
    Catalog& c = *catalog_;
    c.log_ = std::move(*log);
    const uint64_t last = c.log_->next_sequence() - 1;
    // Every batch after the snapshot must be in the log, from base_+1 on without a gap (the
    // log checks continuity within itself), through what the snapshot's chunks saw.
    if (last < covers_through_ || (last > base_ && first_replayed_ != base_ + 1)) {
      return finish(absl::DataLossError(
          absl::StrCat("catalog: the log does not continue the snapshot at ", base_,
                       " (log ends at ", last, ", first record after it ", first_replayed_, ")")));
    }
    c.last_applied_sequence_ = last;
    for (uint64_t s : candidates_) c.snapshots_.push_back(s);
    cleanup();
  }

  // Set failed snapshots aside for inspection, remove unpublished temporaries.
  void cleanup() {
    if (!quarantine_.empty()) {
      const std::string name = snapshot_file_name(quarantine_.back());
      quarantine_.pop_back();
      device_.rename(name, name + kCorruptSuffix, [self = shared_from_this()](int32_t r) {
        if (r < 0) return self->finish(io_error("set aside invalid snapshot", r));
        self->cleanup();
      });
      return;
    }
    if (!temps_.empty()) {
      const std::string name = temps_.back();
      temps_.pop_back();
      device_.remove(name, [self = shared_from_this()](int32_t r) {
        if (r < 0 && r != -ENOENT) return self->finish(io_error("remove snapshot temp", r));
        self->cleanup();
      });
      return;
    }
    Catalog& c = *catalog_;
    c.stats_.recovery_ns = device_.now_ns() - start_ns_;
    HLOG_INFO("storage.catalog.opened")
        .kv("snapshot", c.stats_.snapshot_loaded_sequence)
        .kv("snapshot_entries", c.stats_.snapshot_entries_loaded)
        .kv("records_replayed", c.stats_.records_replayed)
        .kv("next_sequence", c.log_->next_sequence())
        .kv("recovery_ms", c.stats_.recovery_ns / 1'000'000);
    OpenCallback done = std::move(done_);
    std::unique_ptr<Catalog> catalog = std::move(catalog_);
    done(std::move(catalog));
  }

  void finish(absl::Status status) {
    // An opened log may still be preparing its next segment: it is dropped only once that I/O
    // has completed (its callbacks point at it).
    if (catalog_ && catalog_->log_ && !catalog_->log_->idle()) {
      device_.after(1'000'000, [self = shared_from_this(), status = std::move(status)] {
        self->finish(status);
      });
      return;
    }
    HLOG_ERROR("storage.catalog.open_failed").kv("error", std::string(status.message()));
    if (catalog_ && catalog_->log_) catalog_->log_.reset();
    catalog_.reset();
    OpenCallback done = std::move(done_);
    done(std::move(status));
  }

  Device& device_;
  OpenCallback done_;
  std::unique_ptr<Catalog> catalog_;
  const uint64_t start_ns_;
  std::vector<uint64_t> candidates_;  // snapshots not yet rejected, oldest first
  std::vector<uint64_t> quarantine_;
  std::vector<std::string> temps_;
  bool had_snapshots_ = false;
  // The snapshot being loaded.
  uint64_t sequence_ = 0;
  FileHandle file_ = -1;
  AlignedBuffer buffer_{nullptr, &std::free};
  std::vector<uint8_t> carry_;
  size_t carry_at_ = 0;
  uint64_t read_offset_ = 0;
  uint64_t entries_ = 0;
  uint64_t covers_through_ = 0;
  bool header_seen_ = false;
  bool ended_ = false;
  // The log replay.
  uint64_t base_ = 0;
  uint64_t first_replayed_ = 0;
  std::vector<Mutation> batch_;
};

void Catalog::open(Device& device, const CatalogOptions& options, OpenCallback done) {
  if (absl::Status s = validate(options); !s.ok()) {
    device.after(0, [done = std::move(done), s] { done(s); });
    return;
  }
  auto opener = std::make_shared<Opener>(device, options, std::move(done));
  opener->start();
}

}  // namespace herald::storage

// Log::open: reads every segment in index order, validates and reports its records, checks
// sequence continuity across segments, then picks the segment new records go to.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/storage/log.h"
#include "controlplane/storage/summary.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {
// Recovery reads a segment in pieces of this size (one read per piece, in order).
constexpr uint32_t kRecoveryReadBytes = 1u << 20;
constexpr uint32_t kRecoveryReadsInFlight = 8;
// Records handed to the visitor per call (the layer above prefetches across a run).
constexpr size_t kRecordsPerRun = 1024;
// Records applied from a summary before going back to the loop (so the next summary's read,
// already asked for, gets submitted and proceeds meanwhile).
constexpr size_t kRecordsPerSlice = 32 * 1024;
}  // namespace

class Log::Recovery : public std::enable_shared_from_this<Log::Recovery> {
 public:
  Recovery(Device& device, const LogOptions& options, RecordBatchVisitor visitor, OpenCallback done,
           std::function<void(uint64_t)> expect_records)
      : device_(device),
        options_(options),
        visitor_(std::move(visitor)),
        expect_records_(std::move(expect_records)),
        done_(std::move(done)),
        log_(new Log(device, options)) {}

  ~Recovery() {
    if (buffer_ != nullptr) std::free(buffer_);
  }

  void start() {
    absl::StatusOr<std::vector<std::string>> names = device_.list_files();
    if (!names.ok()) {
      // Completions never run inside the call that started the work.
      device_.after(0,
                    [self = shared_from_this(), status = names.status()] { self->finish(status); });
      return;
    }
    bool has_manifest = false;
    for (const std::string& name : *names) {
      uint64_t index;
      if (parse_segment_file_name(std::span<const char>(name.data(), name.size()), &index)) {
        indices_.push_back(index);
      } else if (name == kManifestFileName) {
        has_manifest = true;
      } else if (parse_summary_file_name(name, &index)) {
        summaries_.insert(index);
      } else if (is_summary_temp_file_name(name)) {
        stale_files_.push_back(name);  // a crash while it was written
      }
    }
    std::sort(indices_.begin(), indices_.end());
    if (!has_manifest) return after_manifest();
    device_.open(kManifestFileName,
                 [self = shared_from_this()](int32_t r) { self->on_manifest_opened(r); });
  }

 private:
  // --- The manifest: which segments were retired on purpose -------------------------------
  void on_manifest_opened(int32_t result) {
    if (result < 0) {
      return finish(
          absl::InternalError(absl::StrCat("open log manifest: ", std::strerror(-result))));
    }
    file_ = result;
    ensure_buffer(kBlockBytes);
    device_.read(file_, 0, buffer_, kBlockBytes,
                 [self = shared_from_this()](int32_t r) { self->on_manifest_head(r); });
  }

  void on_manifest_head(int32_t result) {
    if (result < 0) return finish(manifest_error(result));
    if (static_cast<uint32_t>(result) < kBlockBytes)
      std::memset(buffer_ + result, 0, kBlockBytes - result);
    const uint64_t size = manifest_size_bytes(std::span<const uint8_t>(buffer_, kBlockBytes));
    if (size == 0) return finish(absl::DataLossError("log manifest: bad header"));
    if (size == kBlockBytes) return on_manifest_read(static_cast<int32_t>(size));
    ensure_buffer(size);
    device_.read(file_, 0, buffer_, static_cast<uint32_t>(size),
                 [self = shared_from_this()](int32_t r) { self->on_manifest_read(r); });
  }

  void on_manifest_read(int32_t result) {
    device_.close(file_);
    file_ = -1;
    if (result < 0) return finish(manifest_error(result));
    LogManifest manifest;
    absl::Status status = decode_manifest(
        std::span<const uint8_t>(buffer_, static_cast<uint32_t>(result)), &manifest);
    if (!status.ok()) return finish(status);
    log_->manifest_ = std::move(manifest);
    after_manifest();
  }

  absl::Status manifest_error(int32_t result) {
    return absl::InternalError(absl::StrCat("read log manifest: ", std::strerror(-result)));
  }

  const SegmentInfo* retired_entry(uint64_t index) const {
    const auto& retired = log_->manifest_.retired;
    auto it = std::lower_bound(retired.begin(), retired.end(), index,
                               [](const SegmentInfo& s, uint64_t i) { return s.index < i; });
    return it != retired.end() && it->index == index ? &*it : nullptr;
  }

  // Retired segments still on disk (a crash between the manifest's rename and the unlink) are
  // never read: their records are gone for the layers above. They are removed before the open
  // completes.
  void after_manifest() {
    const LogManifest& m = log_->manifest_;
    std::vector<uint64_t> live;
    for (uint64_t index : indices_) {
      if (index < m.low_index || retired_entry(index) != nullptr) {
        stale_.push_back(index);
      } else {
        live.push_back(index);
      }
    }
    indices_ = std::move(live);
    // Summaries of segments that are gone or retired: leftovers of a crash mid-retirement.
    for (uint64_t index : summaries_) {
      if (!std::binary_search(indices_.begin(), indices_.end(), index)) {
        stale_files_.push_back(summary_file_name(index));
      }
    }
    expected_index_ = m.low_index;
    expected_sequence_ = m.low_next_sequence;
    for (uint64_t index : indices_) {
      if (summaries_.contains(index)) to_count_.push_back(index);
    }
    if (!options_.summary_payload_bytes) to_count_.clear();
    count_summaries();
  }

  // Reads the header of every summary first (one block each) and tells the layer above how
  // many records they hold. A header that does not decode counts nothing: it is dealt with
  // when its segment's turn comes.
  void count_summaries() {
    if (count_position_ == to_count_.size()) {
      if (expect_records_ && summary_records_ > 0) expect_records_(summary_records_);
      return next_segment();
    }
    const uint64_t index = to_count_[count_position_++];
    device_.open(summary_file_name(index), [self = shared_from_this(), index](int32_t r) {
      if (r < 0) return self->count_summaries();
      self->file_ = r;
      self->ensure_buffer(kBlockBytes);
      self->device_.read(self->file_, 0, self->buffer_, kBlockBytes, [self, index](int32_t n) {
        self->device_.close(self->file_);
        self->file_ = -1;
        SummaryHeader header;
        if (n == static_cast<int32_t>(kBlockBytes) &&
            decode_summary_header(std::span<const uint8_t>(self->buffer_, kBlockBytes), &header)
                .ok()) {
          self->summary_records_ += header.record_count;
          // Under the file's own index: a header naming another segment is caught when used.
          self->summary_file_bytes_[index] = kBlockBytes + summary_body_read_bytes(header);
        }
        self->count_summaries();
      });
    });
  }

  // Steps expected_index_ up to `index` over retired segments; any other missing segment
  // vanished without being retired: records may be lost, so the open fails.
  absl::Status skip_retired_until(uint64_t index) {
    while (expected_index_ < index) {
      const SegmentInfo* retired = retired_entry(expected_index_);
      if (retired == nullptr) {
        return absl::DataLossError(
            absl::StrCat("log segment ", expected_index_, " is missing and was not retired"));
      }
      if (retired->record_count > 0) expected_sequence_ = retired->last_sequence + 1;
      ++expected_index_;
    }
    return absl::OkStatus();
  }

  void next_segment() {
    if (position_ == indices_.size()) return remove_stale();
    if (absl::Status s = skip_retired_until(indices_[position_]); !s.ok()) return finish(s);
    expected_index_ = indices_[position_] + 1;
    if (options_.summary_payload_bytes && summaries_.contains(indices_[position_])) {
      if (summary_file_bytes_.contains(indices_[position_])) return open_summary();
      return summary_unusable(absl::DataLossError("summary header does not verify"));
    }
    open_segment();
  }

  void open_segment() {
    char name[kSegmentNameBytes + 1];
    segment_file_name(indices_[position_], name);
    device_.open(name, [self = shared_from_this()](int32_t r) { self->on_opened(r); });
  }

  // --- A segment read through its summary ----------------------------------------------------
  // Each summary file is read whole (its size known from count_summaries), and while one is
  // applied the next one is already being read: applying yields to the loop between chunks of
  // records, so the read is submitted and runs beside it (otherwise reading and applying took
  // turns, and the disk sat idle for most of a restart).
  // A summary's buffer is reused by a later one that fits (sizes are rounded up so that
  // summaries of full segments do): allocating each afresh faulted in and unmapped 640 MB for
  // a 10 M-message restart.
  using Buffer = std::unique_ptr<uint8_t, void (*)(void*)>;
  static constexpr uint64_t kBufferRounding = uint64_t{1} << 20;
  struct SummaryLoad {
    uint64_t index = 0;
    uint64_t bytes = 0;
    Buffer buffer{nullptr, &std::free};
    uint64_t buffer_bytes = 0;
    bool done = false;
    int32_t result = 0;
  };

  // Keeps the buffer of a load nothing else refers to (no read in flight into it).
  void recycle(std::shared_ptr<SummaryLoad>& load) {
    if (load != nullptr && load.use_count() == 1 && load->buffer_bytes > spare_bytes_) {
      spare_ = std::move(load->buffer);
      spare_bytes_ = load->buffer_bytes;
    }
    load.reset();
  }

  std::shared_ptr<SummaryLoad> start_load(uint64_t index) {
    auto load = std::make_shared<SummaryLoad>();
    load->index = index;
    load->bytes = summary_file_bytes_.at(index);
    if (spare_ != nullptr && spare_bytes_ >= load->bytes) {
      load->buffer = std::move(spare_);
      load->buffer_bytes = spare_bytes_;
      spare_bytes_ = 0;
    } else {
      load->buffer_bytes = (load->bytes + kBufferRounding - 1) / kBufferRounding * kBufferRounding;
      load->buffer.reset(
          static_cast<uint8_t*>(std::aligned_alloc(kBlockBytes, load->buffer_bytes)));
      HERALD_CHECK(load->buffer != nullptr, "out of memory for a summary");
    }
    device_.open(summary_file_name(index), [self = shared_from_this(), load](int32_t fd) {
      if (fd < 0) return self->load_done(load, fd);
      self->device_.read(fd, 0, load->buffer.get(), static_cast<uint32_t>(load->bytes),
                         [self, load, fd](int32_t n) {
                           self->device_.close(fd);
                           self->load_done(load, n);
                         });
    });
    return load;
  }

  void load_done(const std::shared_ptr<SummaryLoad>& load, int32_t result) {
    load->done = true;
    load->result = result;
    if (finished_ || load != current_load_) return;  // a read ahead: used when its turn comes
    apply_summary();
  }

  bool has_usable_summary(uint64_t index) const {
    return options_.summary_payload_bytes && summaries_.contains(index) &&
           summary_file_bytes_.contains(index);
  }

  void open_summary() {
    const uint64_t index = indices_[position_];
    if (next_load_ != nullptr && next_load_->index == index) {
      current_load_ = std::move(next_load_);
    } else {
      current_load_ = start_load(index);
    }
    next_load_.reset();
    if (current_load_->done) apply_summary();
  }

  void apply_summary() {
    const std::shared_ptr<SummaryLoad> load = current_load_;
    if (load->result != static_cast<int32_t>(load->bytes)) {
      return summary_unusable(load->result < 0 ? absl::InternalError(std::strerror(-load->result))
                                               : absl::DataLossError("short summary"));
    }
    const std::span<const uint8_t> file(load->buffer.get(), load->bytes);
    absl::Status status = decode_summary_header(file.first(kBlockBytes), &summary_);
    if (status.ok() && summary_.segment_index != load->index) {
      status = absl::DataLossError("summary names another segment");
    }
    // It must continue the log exactly where the segments before it ended.
    if (status.ok() && expected_sequence_ != 0 && summary_.first_sequence != expected_sequence_) {
      status = absl::DataLossError("summary does not continue the log's sequence");
    }
    run_.clear();
    if (status.ok() && kBlockBytes + summary_body_read_bytes(summary_) != load->bytes) {
      status = absl::DataLossError("summary changed size since it was counted");
    }
    const std::span<const uint8_t> body = file.subspan(kBlockBytes);
    if (status.ok()) status = SummaryRecords::check(body, summary_, options_.max_payload_bytes);
    if (!status.ok()) return summary_unusable(status);
    applying_.emplace(body, summary_, options_.max_payload_bytes);
    // Read the next segment's summary while this one is applied.
    if (position_ + 1 < indices_.size() && has_usable_summary(indices_[position_ + 1])) {
      next_load_ = start_load(indices_[position_ + 1]);
    }
    apply_some();
  }

  // Hands the summary's records to the visitor a run at a time, going back to the loop after
  // each slice.
  void apply_some() {
    if (finished_) return;
    for (size_t applied = 0; applied < kRecordsPerSlice && !applying_->done();) {
      applying_->next(kRecordsPerRun, &run_);
      applied += run_.size();
      log_->stats_.recovered_records += run_.size();
      absl::Status status = visitor_(run_);
      if (!status.ok()) return finish(status);
    }
    if (!applying_->done()) {
      device_.after(0, [self = shared_from_this()] { self->apply_some(); });
      return;
    }
    run_.clear();
    applying_.reset();
    recycle(current_load_);  // the spans pointed into it
    ++log_->stats_.recovered_segments;
    ++log_->stats_.segments_from_summaries;
    const uint64_t last = summary_.first_sequence + summary_.record_count - 1;
    log_->sealed_.push_back(
        SegmentInfo{summary_.segment_index, summary_.first_sequence, last, summary_.record_count});
    expected_sequence_ = last + 1;
    ++position_;
    next_segment();
  }

  // The summary is damaged, stale or unreadable: read the segment itself (and write a new
  // summary for it once open).
  void summary_unusable(const absl::Status& why) {
    current_load_.reset();
    run_.clear();
    ++log_->stats_.summary_fallbacks;
    HLOG_WARN("storage.log.summary_unusable")
        .kv("segment", indices_[position_])
        .kv("error", std::string(why.message()));
    summaries_.erase(indices_[position_]);
    open_segment();
  }

  void on_opened(int32_t result) {
    if (result < 0) {
      return finish(absl::InternalError(
          absl::StrCat("open segment ", indices_[position_], ": ", std::strerror(-result))));
    }
    file_ = result;
    ensure_buffer(kBlockBytes);
    device_.read(file_, 0, buffer_, kBlockBytes,
                 [self = shared_from_this()](int32_t r) { self->on_header_read(r); });
  }

  void on_header_read(int32_t result) {
    if (result < 0) return finish(read_error(result));
    if (static_cast<uint32_t>(result) < kBlockBytes)
      std::memset(buffer_ + result, 0, kBlockBytes - result);
    absl::Status status =
        decode_segment_header(std::span<const uint8_t>(buffer_, kBlockBytes), &header_);
    if (status.ok() && header_.segment_index != indices_[position_]) {
      status = absl::DataLossError("segment header names another segment");
    }
    if (!status.ok()) {
      if (position_ + 1 == indices_.size()) {
        // The newest segment's creation did not finish (its header is written and synced
        // before anything else goes in), so it holds nothing: create it again.
        device_.close(file_);
        file_ = -1;
        incomplete_last_ = true;
        HLOG_WARN("storage.log.incomplete_segment").kv("segment", indices_[position_]);
        ++position_;
        return remove_stale();
      }
      return finish(absl::DataLossError(
          absl::StrCat("segment ", indices_[position_], ": ", std::string(status.message()))));
    }
    ensure_buffer(header_.segment_size_bytes);
    read_offset_ = kBlockBytes;
    read_more();
  }

  // Keeps up to kRecoveryReadsInFlight reads of the segment going (the disk serves several
  // at once far faster than one after another); scans once all have landed.
  void read_more() {
    while (reads_in_flight_ < kRecoveryReadsInFlight && read_offset_ < header_.segment_size_bytes) {
      const uint64_t offset = read_offset_;
      const uint32_t size = static_cast<uint32_t>(
          std::min<uint64_t>(kRecoveryReadBytes, header_.segment_size_bytes - offset));
      read_offset_ += size;
      ++reads_in_flight_;
      device_.read(
          file_, offset, buffer_ + offset, size,
          [self = shared_from_this(), offset, size](int32_t r) { self->on_read(r, offset, size); });
    }
  }

  void on_read(int32_t result, uint64_t offset, uint32_t size) {
    --reads_in_flight_;
    if (finished_) return;
    if (result < 0) return finish(read_error(result));
    // A file shorter than its header says: what is missing was never written.
    if (static_cast<uint32_t>(result) < size)
      std::memset(buffer_ + offset + result, 0, size - result);
    if (read_offset_ < header_.segment_size_bytes) return read_more();
    if (reads_in_flight_ == 0) scan();
  }

  void scan() {
    SegmentScanResult result;
    run_.clear();
    summary_body_.clear();
    const bool summarize =
        options_.summary_payload_bytes && !summaries_.contains(header_.segment_index);
    // The spans point into buffer_, which holds the whole segment: runs of records can wait.
    auto visit = [this, summarize](const RecoveredRecord& record) {
      ++log_->stats_.recovered_records;
      if (summarize) {
        const uint32_t kept =
            std::min<uint32_t>(options_.summary_payload_bytes(record.type, record.payload),
                               static_cast<uint32_t>(record.payload.size()));
        append_summary_entry(summary_body_, record.type,
                             static_cast<uint32_t>(record.payload.size()),
                             record.payload.first(kept));
      }
      run_.push_back(record);
      if (run_.size() < kRecordsPerRun) return absl::OkStatus();
      absl::Status s = visitor_(run_);
      run_.clear();
      return s;
    };
    absl::Status status =
        scan_segment(std::span<const uint8_t>(buffer_, header_.segment_size_bytes), header_,
                     expected_sequence_, visit, &result);
    if (status.ok() && !run_.empty()) status = visitor_(run_);
    run_.clear();
    if (!status.ok()) return finish(status);
    ++log_->stats_.recovered_segments;
    if (result.torn) {
      ++log_->stats_.torn_tails;
      HLOG_INFO("storage.log.torn_tail")
          .kv("segment", header_.segment_index)
          .kv("offset", result.end_offset);
    }
    SegmentInfo info{header_.segment_index, std::max<uint64_t>(expected_sequence_, 1), 0, 0};
    if (result.records > 0) {
      info.first_sequence = result.last_sequence - result.records + 1;
      info.last_sequence = result.last_sequence;
      info.record_count = result.records;
      expected_sequence_ = result.last_sequence + 1;
    } else {
      info.last_sequence = info.first_sequence - 1;
    }
    const bool last = position_ + 1 == indices_.size();
    // The newest segment is appended to again only if nothing at all was written after its
    // header. Otherwise new records go to a fresh segment: they must never land in front of
    // stale bytes of a torn batch that a later tear could expose next to them.
    if (last && result.data_all_zero && header_.segment_size_bytes == options_.segment_size_bytes &&
        header_.max_write_bytes == options_.max_write_bytes &&
        header_.max_payload_bytes == options_.max_payload_bytes) {
      reuse_last_ = true;
    } else {
      device_.close(file_);
      file_ = -1;
      log_->sealed_.push_back(info);
      if (summarize && result.records > 0) {
        // Sealed without a usable summary (written before summaries existed, its write lost in
        // a crash, or damaged): one is written once the log is open, so the next open reads it.
        SummaryHeader h;
        h.segment_index = info.index;
        h.first_sequence = info.first_sequence;
        h.record_count = info.record_count;
        h.end_offset = result.end_offset;
        backfill_.push_back(Log::SummaryWrite{info.index, encode_summary_file(h, summary_body_)});
      }
    }
    summary_body_.clear();
    ++position_;
    next_segment();
  }

  void remove_stale() {
    if (!stale_files_.empty()) {
      const std::string name = stale_files_.back();
      stale_files_.pop_back();
      // A leftover summary is never read, so failing to remove it is only logged.
      return device_.remove(name, [self = shared_from_this(), name](int32_t r) {
        if (r == 0) ++self->log_->stats_.stale_summaries_removed;
        if (r < 0 && r != -ENOENT) {
          HLOG_WARN("storage.log.summary_remove_failed").kv("file", name);
        }
        self->remove_stale();
      });
    }
    if (stale_.empty()) return choose_segment_for_appends();
    const uint64_t index = stale_.back();
    stale_.pop_back();
    char name[kSegmentNameBytes + 1];
    segment_file_name(index, name);
    device_.remove(name, [self = shared_from_this(), index](int32_t r) {
      if (r < 0 && r != -ENOENT) {
        return self->finish(absl::InternalError(
            absl::StrCat("remove retired segment ", index, ": ", std::strerror(-r))));
      }
      ++self->log_->stats_.stale_segments_removed;
      self->remove_stale();
    });
  }

  void choose_segment_for_appends() {
    Log& log = *log_;
    // Retired segments after the last live one still move the sequence on: numbering never
    // restarts below what was retired (a snapshot above may cover it).
    if (!log.manifest_.retired.empty()) {
      const uint64_t top = log.manifest_.retired.back().index + 1;
      if (top > expected_index_) {
        if (absl::Status s = skip_retired_until(top); !s.ok()) return finish(s);
      }
    }
    log.next_sequence_ = expected_sequence_ == 0 ? 1 : expected_sequence_;
    log.durable_sequence_ = log.next_sequence_ - 1;
    if (reuse_last_) {
      log.current_.file = file_;
      log.current_.index = header_.segment_index;
      log.current_.size_bytes = header_.segment_size_bytes;
      log.current_.tail_offset = kBlockBytes;
      log.next_segment_index_ = header_.segment_index + 1;
      file_ = -1;
    } else if (incomplete_last_) {
      // An incomplete newest segment is created again under its own index.
      log.next_segment_index_ = indices_.back();
    } else {
      log.next_segment_index_ = expected_index_;
    }
    if (reuse_last_) {
      log.current_first_sequence_ = 0;
      log.current_records_ = 0;
    }
    // With no segment to append to, preallocate one now (the first batch waits for it if it
    // is not ready). A reused empty segment has room: its successor is prepared once it is half
    // full, so restarts without appends do not leave a trail of empty segments, each of which
    // the next open would read whole.
    if (!reuse_last_) log.prepare_next_segment();
    for (Log::SummaryWrite& write : backfill_) log.summary_queue_.push_back(std::move(write));
    backfill_.clear();
    log.write_next_summary();
    HLOG_INFO("storage.log.opened")
        .kv("segments", log.stats_.recovered_segments)
        .kv("records", log.stats_.recovered_records)
        .kv("next_sequence", log.next_sequence_)
        .kv("torn_tails", log.stats_.torn_tails);
    OpenCallback done = std::move(done_);
    done(std::move(log_));
  }

  void finish(absl::Status status) {
    finished_ = true;
    if (file_ >= 0) device_.close(file_);
    file_ = -1;
    HLOG_ERROR("storage.log.open_failed").kv("error", std::string(status.message()));
    log_.reset();
    OpenCallback done = std::move(done_);
    done(std::move(status));
  }

  absl::Status read_error(int32_t result) {
    return absl::InternalError(
        absl::StrCat("read segment ", indices_[position_], ": ", std::strerror(-result)));
  }

  void ensure_buffer(uint64_t size_bytes) {
    if (size_bytes <= buffer_bytes_) return;
    if (buffer_ != nullptr) std::free(buffer_);
    buffer_ = static_cast<uint8_t*>(std::aligned_alloc(kBlockBytes, size_bytes));
    HERALD_CHECK(buffer_ != nullptr, "out of memory for the recovery buffer");
    buffer_bytes_ = size_bytes;
  }

  Device& device_;
  const LogOptions options_;
  RecordBatchVisitor visitor_;
  std::function<void(uint64_t)> expect_records_;
  OpenCallback done_;
  std::unique_ptr<Log> log_;
  std::vector<uint64_t> indices_;
  size_t position_ = 0;
  FileHandle file_ = -1;
  SegmentHeader header_;
  uint8_t* buffer_ = nullptr;
  uint64_t buffer_bytes_ = 0;
  uint64_t read_offset_ = 0;
  uint64_t expected_sequence_ = 0;
  uint64_t expected_index_ = 0;  // the next segment index continuity expects
  std::vector<uint64_t> stale_;  // retired segments still present, to remove
  bool reuse_last_ = false;
  bool incomplete_last_ = false;
  uint32_t reads_in_flight_ = 0;
  bool finished_ = false;  // the open failed; reads still in flight are ignored
  // Segment summaries.
  std::set<uint64_t> summaries_;             // segments with a summary file (until one fails)
  std::vector<std::string> stale_files_;     // leftover summaries to remove before completing
  SummaryHeader summary_;                    // of the summary being read
  std::vector<RecoveredRecord> run_;         // records waiting for the visitor
  std::vector<uint8_t> summary_body_;        // built while scanning a segment without a summary
  std::vector<Log::SummaryWrite> backfill_;  // written once the log is open
  std::vector<uint64_t> to_count_;           // summaries whose headers count_summaries() reads
  size_t count_position_ = 0;
  uint64_t summary_records_ = 0;
  std::map<uint64_t, uint64_t> summary_file_bytes_;  // by segment, from the counted headers
  std::shared_ptr<SummaryLoad> current_load_;        // being applied (run_ points into it)
  std::shared_ptr<SummaryLoad> next_load_;           // read ahead
  Buffer spare_{nullptr, &std::free};                // a finished load's buffer, for the next
  uint64_t spare_bytes_ = 0;
  std::optional<SummaryRecords> applying_;  // current_load_'s records, being applied
};

void Log::open(Device& device, const LogOptions& options, RecordVisitor visitor,
               OpenCallback done) {
  open_batched(
      device, options,
      [visitor = std::move(visitor)](std::span<const RecoveredRecord> records) {
        for (const RecoveredRecord& record : records) {
          if (absl::Status s = visitor(record); !s.ok()) return s;
        }
        return absl::OkStatus();
      },
      std::move(done));
}

void Log::open_batched(Device& device, const LogOptions& options, RecordBatchVisitor visitor,
                       OpenCallback done, std::function<void(uint64_t records)> expect_records) {
  if (absl::Status s = validate(options); !s.ok()) {
    device.after(0, [done = std::move(done), s] { done(s); });
    return;
  }
  auto recovery = std::make_shared<Recovery>(device, options, std::move(visitor), std::move(done),
                                             std::move(expect_records));
  recovery->start();
}

}  // namespace herald::storage

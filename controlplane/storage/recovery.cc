// Log::open: reads every segment in index order, validates and reports its records, checks
// sequence continuity across segments, then picks the segment new records go to.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "controlplane/storage/log.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {
// Recovery reads a segment in pieces of this size (one read per piece, in order).
constexpr uint32_t kRecoveryReadBytes = 1u << 20;
constexpr uint32_t kRecoveryReadsInFlight = 8;
}  // namespace

class Log::Recovery : public std::enable_shared_from_this<Log::Recovery> {
 public:
  Recovery(Device& device, const LogOptions& options, RecordVisitor visitor, OpenCallback done)
      : device_(device),
        options_(options),
        visitor_(std::move(visitor)),
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
    expected_index_ = m.low_index;
    expected_sequence_ = m.low_next_sequence;
    next_segment();
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
    char name[kSegmentNameBytes + 1];
    segment_file_name(indices_[position_], name);
    device_.open(name, [self = shared_from_this()](int32_t r) { self->on_opened(r); });
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
    auto visit = [this](const RecoveredRecord& record) {
      ++log_->stats_.recovered_records;
      return visitor_(record);
    };
    absl::Status status =
        scan_segment(std::span<const uint8_t>(buffer_, header_.segment_size_bytes), header_,
                     expected_sequence_, visit, &result);
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
    }
    ++position_;
    next_segment();
  }

  void remove_stale() {
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
    // Preallocate now; the first batch waits for it if it is not ready.
    log.prepare_next_segment();
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
  RecordVisitor visitor_;
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
};

void Log::open(Device& device, const LogOptions& options, RecordVisitor visitor,
               OpenCallback done) {
  if (absl::Status s = validate(options); !s.ok()) {
    device.after(0, [done = std::move(done), s] { done(s); });
    return;
  }
  auto recovery = std::make_shared<Recovery>(device, options, std::move(visitor), std::move(done));
  recovery->start();
}

}  // namespace herald::storage

// Group commit, segment rotation and preallocation, and the fail-stop rule of the durable log.
// Recovery (the open path) is in recovery.cc.
#include "controlplane/storage/log.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "controlplane/storage/summary.h"
#include "platform/assert/assert.h"
#include "platform/crc32c/crc32c.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {

std::unique_ptr<uint8_t, void (*)(void*)> aligned_buffer(size_t size_bytes) {
  void* p = std::aligned_alloc(kBlockBytes, align_up(size_bytes, kBlockBytes));
  HERALD_CHECK(p != nullptr, "out of memory for a log buffer");
  std::memset(p, 0, size_bytes);
  return {static_cast<uint8_t*>(p), &std::free};
}

absl::Status io_error(const char* what, int32_t result, uint32_t expected) {
  if (result < 0) {
    return absl::InternalError(absl::StrCat(what, ": ", std::strerror(-result)));
  }
  return absl::InternalError(
      absl::StrCat(what, ": short transfer (", result, " of ", expected, " bytes)"));
}

constexpr uint64_t kManifestMagic = 0x314e414d444c5248ULL;  // "HRLDMAN1"
constexpr uint32_t kManifestVersion = 1;
constexpr size_t kManifestHeaderBytes = 32;
constexpr size_t kManifestEntryBytes = 32;

uint64_t manifest_bytes_for(uint64_t count) {
  return align_up(kManifestHeaderBytes + count * kManifestEntryBytes + 4, kBlockBytes);
}

}  // namespace

void manifest_add(LogManifest& m, std::span<const SegmentInfo> segments) {
  for (const SegmentInfo& s : segments) {
    if (s.index >= m.low_index) m.retired.push_back(s);
  }
  std::sort(m.retired.begin(), m.retired.end(),
            [](const SegmentInfo& a, const SegmentInfo& b) { return a.index < b.index; });
  // Retired segments contiguous with the low mark fold into it, so the manifest holds only the
  // holes in the middle of the log (bounded by the live segments, not by the log's history).
  size_t folded = 0;
  while (folded < m.retired.size() && m.retired[folded].index == m.low_index) {
    if (m.retired[folded].record_count > 0) {
      m.low_next_sequence = m.retired[folded].last_sequence + 1;
    }
    ++m.low_index;
    ++folded;
  }
  m.retired.erase(m.retired.begin(), m.retired.begin() + static_cast<ptrdiff_t>(folded));
}

std::vector<uint8_t> encode_manifest(const LogManifest& m) {
  std::vector<uint8_t> out(manifest_bytes_for(m.retired.size()), 0);
  uint8_t* p = out.data();
  store_le<uint64_t>(p, kManifestMagic);
  store_le<uint32_t>(p + 8, kManifestVersion);
  store_le<uint32_t>(p + 12, static_cast<uint32_t>(m.retired.size()));
  store_le<uint64_t>(p + 16, m.low_index);
  store_le<uint64_t>(p + 24, m.low_next_sequence);
  size_t at = kManifestHeaderBytes;
  for (const SegmentInfo& s : m.retired) {
    store_le<uint64_t>(p + at, s.index);
    store_le<uint64_t>(p + at + 8, s.first_sequence);
    store_le<uint64_t>(p + at + 16, s.last_sequence);
    store_le<uint64_t>(p + at + 24, s.record_count);
    at += kManifestEntryBytes;
  }
  store_le<uint32_t>(p + at, crc32c::extend(0, p, at));
  return out;
}

uint64_t manifest_size_bytes(std::span<const uint8_t> first_block) {
  if (first_block.size() < kManifestHeaderBytes ||
      load_le<uint64_t>(first_block.data()) != kManifestMagic) {
    return 0;
  }
  const uint32_t count = load_le<uint32_t>(first_block.data() + 12);
  if (count > kMaxManifestEntries) return 0;
  return manifest_bytes_for(count);
}

absl::Status decode_manifest(std::span<const uint8_t> bytes, LogManifest* out) {
  const uint64_t size = manifest_size_bytes(bytes);
  if (size == 0 || bytes.size() < size) {
    return absl::DataLossError("log manifest: bad magic, count or size");
  }
  const uint8_t* p = bytes.data();
  if (load_le<uint32_t>(p + 8) != kManifestVersion) {
    return absl::DataLossError("log manifest: unknown version");
  }
  const uint32_t count = load_le<uint32_t>(p + 12);
  const size_t end = kManifestHeaderBytes + size_t{count} * kManifestEntryBytes;
  if (load_le<uint32_t>(p + end) != crc32c::extend(0, p, end)) {
    return absl::DataLossError("log manifest: checksum mismatch");
  }
  LogManifest m;
  m.low_index = load_le<uint64_t>(p + 16);
  m.low_next_sequence = load_le<uint64_t>(p + 24);
  for (size_t at = kManifestHeaderBytes; at < end; at += kManifestEntryBytes) {
    SegmentInfo s{load_le<uint64_t>(p + at), load_le<uint64_t>(p + at + 8),
                  load_le<uint64_t>(p + at + 16), load_le<uint64_t>(p + at + 24)};
    const bool sane =
        s.index >= m.low_index && (m.retired.empty() || s.index > m.retired.back().index) &&
        (s.record_count == 0 ? s.last_sequence + 1 == s.first_sequence
                             : s.last_sequence - s.first_sequence + 1 == s.record_count);
    if (!sane) return absl::DataLossError("log manifest: inconsistent entry");
    m.retired.push_back(s);
  }
  *out = std::move(m);
  return absl::OkStatus();
}

absl::Status validate(const LogOptions& o) {
  if (o.segment_size_bytes % kBlockBytes != 0 || o.segment_size_bytes < 2 * kBlockBytes) {
    return absl::InvalidArgumentError("segment_size_bytes must be a multiple of 4096, >= 8192");
  }
  if (o.max_write_bytes % kBlockBytes != 0 || o.max_write_bytes < 2 * kBlockBytes) {
    return absl::InvalidArgumentError("max_write_bytes must be a multiple of 4096, >= 8192");
  }
  // The largest record must fit in one write after a partly filled tail block, and in a segment
  // after its header block, or it could never be written.
  const uint64_t largest = record_size_bytes(o.max_payload_bytes);
  if (largest + kBlockBytes > o.max_write_bytes) {
    return absl::InvalidArgumentError("max_payload_bytes too large for max_write_bytes");
  }
  if (largest + kBlockBytes > o.segment_size_bytes) {
    return absl::InvalidArgumentError("max_payload_bytes too large for segment_size_bytes");
  }
  if (o.group_commit_bytes == 0 || o.max_staged_bytes < largest) {
    return absl::InvalidArgumentError(
        "group_commit_bytes must be > 0 and max_staged_bytes must "
        "hold the largest record");
  }
  return absl::OkStatus();
}

Log::Log(Device& device, const LogOptions& options)
    : device_(device),
      options_(options),
      tail_block_(aligned_buffer(kBlockBytes)),
      write_buffer_(aligned_buffer(options.max_write_bytes)),
      header_block_(aligned_buffer(kBlockBytes)) {}

Log::~Log() {
  if (current_.file >= 0) device_.close(current_.file);
  if (next_state_ == NextState::kReady) device_.close(next_.file);
}

bool Log::idle() const {
  return pending_.empty() && !batch_in_flight_ && !timer_armed_ &&
         next_state_ != NextState::kCreating && !retire_in_flight_ && retire_queue_.empty() &&
         !summary_in_flight_ && summary_queue_.empty();
}

absl::StatusOr<uint64_t> Log::append(uint8_t type, std::span<const uint8_t> payload,
                                     DurableCallback on_durable) {
  if (failed()) {
    return absl::FailedPreconditionError(
        absl::StrCat("log failed: ", std::string(status_.message())));
  }
  if (type == kRecordTypeInvalid) return absl::InvalidArgumentError("record type 0 is invalid");
  if (payload.size() > options_.max_payload_bytes) {
    return absl::InvalidArgumentError("record payload larger than max_payload_bytes");
  }
  const uint32_t size = static_cast<uint32_t>(record_size_bytes(payload.size()));
  if (staged_.size() - staged_head_ + size > options_.max_staged_bytes) {
    ++stats_.appends_refused;
    return absl::ResourceExhaustedError("log staging full; retry after durable callbacks");
  }
  const uint64_t sequence = next_sequence_++;
  const size_t offset = staged_.size();
  staged_.resize(offset + size);
  encode_record(staged_.data() + offset, sequence, type, payload);
  pending_.push_back(Pending{sequence, size, device_.now_ns(), std::move(on_durable)});
  ++stats_.appends;
  maybe_flush();
  return sequence;
}

void Log::flush() {
  flush_requested_ = true;
  maybe_flush();
}

void Log::maybe_flush() {
  if (failed() || batch_in_flight_ || waiting_for_segment_) return;
  if (pending_.empty()) {
    flush_requested_ = false;
    return;
  }
  const uint64_t now_ns = device_.now_ns();
  const uint64_t delay_ns = options_.group_commit_delay_us * 1000;
  const uint64_t oldest_ns = pending_.front().append_ns;
  const bool by_size = staged_.size() - staged_head_ >= options_.group_commit_bytes;
  const bool by_time = now_ns - oldest_ns >= delay_ns;
  if (by_size || by_time || flush_requested_) {
    if (by_size) {
      ++stats_.batches_by_size;
    } else if (by_time) {
      ++stats_.batches_by_time;
    }
    start_batch();
    return;
  }
  if (!timer_armed_) {
    timer_armed_ = true;
    device_.after(oldest_ns + delay_ns - now_ns, [this] {
      timer_armed_ = false;
      maybe_flush();
    });
  }
}

void Log::start_batch() {
  const Pending& first = pending_.front();
  if (current_.file < 0 || current_.tail_offset + first.size_bytes > current_.size_bytes) {
    // Rotate. Only now, with no batch in flight, so the old segment's last write is durable
    // before the new segment's first: a crash never leaves a hole followed by newer records.
    if (next_state_ != NextState::kReady) {
      waiting_for_segment_ = true;
      ++stats_.rotation_waits;
      prepare_next_segment();
      return;
    }
    if (current_.file >= 0) {
      device_.close(current_.file);
      SegmentInfo sealed{current_.index, current_first_sequence_, current_last_sequence_,
                         current_records_};
      if (current_records_ == 0) {
        sealed.first_sequence = durable_sequence_ + 1;
        sealed.last_sequence = durable_sequence_;
      }
      sealed_.push_back(sealed);
      if (options_.summary_payload_bytes && current_records_ > 0) {
        seal_summary(current_.index, current_first_sequence_, current_records_,
                     current_.tail_offset);
      }
    }
    summary_body_.clear();
    current_first_sequence_ = 0;
    current_last_sequence_ = 0;
    current_records_ = 0;
    current_ = next_;
    current_.tail_offset = kBlockBytes;
    next_ = Segment{};
    next_state_ = NextState::kNone;
    std::memset(tail_block_.get(), 0, kBlockBytes);
    prepare_next_segment();
  }
  flush_requested_ = false;
  const uint64_t block_start = align_down(current_.tail_offset, kBlockBytes);
  const uint64_t prefix = current_.tail_offset - block_start;
  const uint64_t room = std::min<uint64_t>(options_.max_write_bytes - prefix,
                                           current_.size_bytes - current_.tail_offset);
  uint64_t bytes = 0;
  uint32_t records = 0;
  for (const Pending& p : pending_) {
    if (bytes + p.size_bytes > room) break;
    bytes += p.size_bytes;
    ++records;
  }
  HERALD_CHECK(records > 0, "a record larger than a write or a segment was staged");
  uint8_t* out = write_buffer_.get();
  std::memcpy(out, tail_block_.get(), prefix);
  std::memcpy(out + prefix, staged_.data() + staged_head_, bytes);
  const uint64_t write_bytes = align_up(prefix + bytes, kBlockBytes);
  // Zeros after the last record: the scan stops at a zero header, and a stale byte here could
  // otherwise be mistaken for data (this is also how a truncated torn tail gets cleared).
  std::memset(out + prefix + bytes, 0, write_bytes - prefix - bytes);

  batch_in_flight_ = true;
  batch_records_ = records;
  batch_record_bytes_ = bytes;
  batch_write_offset_ = block_start;
  batch_write_bytes_ = static_cast<uint32_t>(write_bytes);
  ++stats_.batches;
  stats_.bytes_written += write_bytes;
  device_.write(current_.file, block_start, out, batch_write_bytes_,
                [this](int32_t result) { on_batch_written(result); });
}

void Log::on_batch_written(int32_t result) {
  if (failed()) {
    batch_in_flight_ = false;
    return;
  }
  if (result != static_cast<int32_t>(batch_write_bytes_)) {
    batch_in_flight_ = false;
    fail(io_error("log write", result, batch_write_bytes_));
    return;
  }
  if (device_.writes_are_durable()) {
    on_batch_synced(0);
    return;
  }
  ++stats_.syncs;
  device_.sync(current_.file, [this](int32_t r) { on_batch_synced(r); });
}

void Log::on_batch_synced(int32_t result) {
  if (failed()) {
    batch_in_flight_ = false;
    return;
  }
  if (result < 0) {
    batch_in_flight_ = false;
    fail(io_error("log sync", result, 0));
    return;
  }
  if (options_.summary_payload_bytes) summarize_batch(staged_head_);
  uint64_t offset = current_.tail_offset;
  const uint64_t new_tail = offset + batch_record_bytes_;
  current_.tail_offset = new_tail;
  // The successor of a segment reused at open is prepared once this one is half full.
  if (next_state_ == NextState::kNone && new_tail * 2 >= current_.size_bytes) {
    prepare_next_segment();
  }
  const uint64_t tail_block_start = align_down(new_tail, kBlockBytes);
  if (new_tail < current_.size_bytes) {
    std::memcpy(tail_block_.get(), write_buffer_.get() + (tail_block_start - batch_write_offset_),
                new_tail - tail_block_start);
  }
  staged_head_ += batch_record_bytes_;
  if (staged_head_ == staged_.size()) {
    staged_.clear();
    staged_head_ = 0;
  } else if (staged_head_ >= (1u << 20) && staged_head_ * 2 >= staged_.size()) {
    staged_.erase(staged_.begin(), staged_.begin() + static_cast<ptrdiff_t>(staged_head_));
    staged_head_ = 0;
  }
  // batch_in_flight_ stays set while callbacks run, so appends they make only stage.
  for (uint32_t i = 0; i < batch_records_; ++i) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    durable_sequence_ = p.sequence;
    if (current_records_++ == 0) current_first_sequence_ = p.sequence;
    current_last_sequence_ = p.sequence;
    const RecordLocation location{p.sequence, current_.index, offset, p.size_bytes};
    offset += p.size_bytes;
    if (p.on_durable) p.on_durable(absl::OkStatus(), location);
    if (failed()) break;
  }
  batch_in_flight_ = false;
  maybe_flush();
}

void Log::prepare_next_segment() {
  if (failed() || next_state_ != NextState::kNone) return;
  next_ = Segment{};
  next_.index = next_segment_index_++;
  next_.size_bytes = options_.segment_size_bytes;
  next_state_ = NextState::kCreating;
  char name[kSegmentNameBytes + 1];
  segment_file_name(next_.index, name);
  device_.create(name, next_.size_bytes, [this](int32_t r) { on_next_created(r); });
}

void Log::on_next_created(int32_t result) {
  if (failed()) {
    if (result >= 0) device_.close(result);
    next_state_ = NextState::kNone;
    return;
  }
  if (result < 0) {
    fail(io_error("create segment", result, 0));
    next_state_ = NextState::kNone;
    return;
  }
  next_.file = result;
  SegmentHeader header;
  header.segment_index = next_.index;
  header.segment_size_bytes = next_.size_bytes;
  header.max_write_bytes = options_.max_write_bytes;
  header.max_payload_bytes = options_.max_payload_bytes;
  encode_segment_header(header, header_block_.get());
  device_.write(next_.file, 0, header_block_.get(), kBlockBytes,
                [this](int32_t r) { on_next_header_written(r); });
}

void Log::on_next_header_written(int32_t result) {
  if (!failed() && result != static_cast<int32_t>(kBlockBytes)) {
    fail(io_error("write segment header", result, kBlockBytes));
  }
  if (failed()) {
    device_.close(next_.file);
    next_state_ = NextState::kNone;
    return;
  }
  if (device_.writes_are_durable()) {
    on_next_header_synced(0);
    return;
  }
  ++stats_.syncs;
  device_.sync(next_.file, [this](int32_t r) { on_next_header_synced(r); });
}

void Log::on_next_header_synced(int32_t result) {
  if (!failed() && result < 0) fail(io_error("sync segment header", result, 0));
  if (failed()) {
    device_.close(next_.file);
    next_state_ = NextState::kNone;
    return;
  }
  next_state_ = NextState::kReady;
  ++stats_.segments_created;
  if (waiting_for_segment_) {
    waiting_for_segment_ = false;
    maybe_flush();
  }
}

void Log::fail(absl::Status status) {
  if (failed()) return;
  // Fail-stop (README.md): after a failed write or fsync the kernel may already have dropped
  // the dirty pages and marked them clean, so a retry could "succeed" over lost data. Nothing
  // is retried; every append not yet durable fails, and so does every later one. The process
  // recovers from what the log holds on disk, by reopening it.
  status_ = std::move(status);
  HLOG_ERROR("storage.log.failed")
      .kv("error", std::string(status_.message()))
      .kv("durable_sequence", durable_sequence_)
      .kv("pending", static_cast<uint64_t>(pending_.size()));
  std::deque<Pending> pending;
  pending.swap(pending_);
  staged_.clear();
  staged_head_ = 0;
  waiting_for_segment_ = false;
  for (Pending& p : pending) {
    if (p.on_durable) p.on_durable(status_, RecordLocation{p.sequence, 0, 0, p.size_bytes});
  }
  // Queued retirements fail too (the batch in flight finishes with the error at its next step).
  std::vector<Retirement> queued;
  queued.swap(retire_queue_);
  for (Retirement& r : queued) {
    if (r.done) r.done(status_);
  }
}

std::vector<SegmentInfo> Log::sealed_segments() const {
  return sealed_;
}

bool Log::is_retired(uint64_t segment_index) const {
  if (segment_index < manifest_.low_index || retiring_.count(segment_index) != 0) return true;
  auto it = std::lower_bound(manifest_.retired.begin(), manifest_.retired.end(), segment_index,
                             [](const SegmentInfo& s, uint64_t index) { return s.index < index; });
  return it != manifest_.retired.end() && it->index == segment_index;
}

void Log::retire_segment(uint64_t index, RetireCallback done) {
  const auto refuse = [&](absl::Status status) {
    device_.after(0, [cb = std::move(done), status = std::move(status)] { cb(status); });
  };
  if (failed()) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("log failed: ", std::string(status_.message()))));
  }
  auto it = std::find_if(sealed_.begin(), sealed_.end(),
                         [index](const SegmentInfo& s) { return s.index == index; });
  if (it == sealed_.end()) {
    return refuse(absl::NotFoundError(absl::StrCat("segment ", index, " is not sealed")));
  }
  if (manifest_.retired.size() + retiring_.size() + 1 > kMaxManifestEntries) {
    return refuse(absl::ResourceExhaustedError("log manifest full"));
  }
  retire_queue_.push_back(Retirement{*it, std::move(done)});
  retiring_.insert(index);
  sealed_.erase(it);
  start_retirement();
}

// Retirements queued meanwhile go out together: one manifest write covers them all.
void Log::start_retirement() {
  if (retire_in_flight_ || retire_queue_.empty() || failed()) return;
  retire_in_flight_ = true;
  retire_batch_.swap(retire_queue_);
  retire_queue_.clear();
  retire_removed_ = 0;
  retire_manifest_ = manifest_;
  std::vector<SegmentInfo> segments;
  for (const Retirement& r : retire_batch_) segments.push_back(r.segment);
  manifest_add(retire_manifest_, segments);
  retire_bytes_ = encode_manifest(retire_manifest_);
  retire_buffer_ = aligned_buffer(retire_bytes_.size());
  std::memcpy(retire_buffer_.get(), retire_bytes_.data(), retire_bytes_.size());
  const uint32_t size = static_cast<uint32_t>(retire_bytes_.size());
  // 1. The new manifest under a temporary name, synced; 2. renamed over the old one (the
  // directory synced: now the retirement is durable); 3. only then the segment files go. A
  // crash before 2 leaves the old manifest and the segment; after 2, recovery skips the segment
  // and removes it if it is still there.
  device_.create(kManifestTempFileName, size, [this, size](int32_t fd) {
    if (failed()) {
      if (fd >= 0) device_.close(fd);
      return finish_retirement(status_);
    }
    if (fd < 0) return finish_retirement(io_error("create log manifest", fd, 0));
    device_.write(fd, 0, retire_buffer_.get(), size, [this, fd, size](int32_t written) {
      if (failed() || written != static_cast<int32_t>(size)) {
        device_.close(fd);
        return finish_retirement(failed() ? status_
                                          : io_error("write log manifest", written, size));
      }
      device_.sync(fd, [this, fd](int32_t synced) {
        device_.close(fd);
        if (failed() || synced < 0) {
          return finish_retirement(failed() ? status_ : io_error("sync log manifest", synced, 0));
        }
        device_.rename(kManifestTempFileName, kManifestFileName, [this](int32_t renamed) {
          if (renamed < 0) return finish_retirement(io_error("rename log manifest", renamed, 0));
          manifest_ = retire_manifest_;  // durable now, whatever happens next
          ++stats_.manifest_writes;
          remove_next_retired();
        });
      });
    });
  });
}

void Log::remove_next_retired() {
  if (retire_removed_ == retire_batch_.size()) return finish_retirement(absl::OkStatus());
  char name[kSegmentNameBytes + 1];
  segment_file_name(retire_batch_[retire_removed_].segment.index, name);
  device_.remove(name, [this](int32_t removed) {
    // ENOENT: already gone; the manifest says it is retired, which is what counts.
    if (removed < 0 && removed != -ENOENT) {
      return finish_retirement(io_error("remove retired segment", removed, 0));
    }
    // Its summary too, if it has one (a leftover is removed at the next open anyway).
    const uint64_t index = retire_batch_[retire_removed_].segment.index;
    ++retire_removed_;
    if (!options_.summary_payload_bytes) return remove_next_retired();
    device_.remove(summary_file_name(index), [this](int32_t) { remove_next_retired(); });
  });
}

void Log::finish_retirement(absl::Status status) {
  if (!status.ok()) fail(status);
  std::vector<Retirement> batch;
  batch.swap(retire_batch_);
  retire_in_flight_ = false;
  for (const Retirement& r : batch) {
    if (status.ok()) {
      retiring_.erase(r.segment.index);
      ++stats_.segments_retired;
      HLOG_INFO("storage.log.segment_retired")
          .kv("segment", r.segment.index)
          .kv("first_sequence", r.segment.first_sequence)
          .kv("last_sequence", r.segment.last_sequence);
    }
  }
  for (Retirement& r : batch) {
    if (r.done) r.done(status.ok() ? status : status_);
  }
  start_retirement();
}

void Log::read(const RecordLocation& where, ReadCallback done) const {
  const auto refuse = [&](const char* why) {
    // Completions never run inside the call: defer the refusal like any other completion.
    device_.after(0, [cb = std::move(done), why] { cb(absl::InvalidArgumentError(why)); });
  };
  if (where.sequence == 0 || where.sequence > durable_sequence_) {
    return refuse("log read: record not durable");
  }
  if (is_retired(where.segment_index)) {
    device_.after(0, [cb = std::move(done), index = where.segment_index] {
      cb(absl::NotFoundError(absl::StrCat("log read: segment ", index, " is retired")));
    });
    return;
  }
  if (where.offset < kBlockBytes || where.offset % kRecordAlignBytes != 0 ||
      where.size_bytes < kRecordHeaderBytes ||
      where.size_bytes > record_size_bytes(options_.max_payload_bytes)) {
    return refuse("log read: bad location");
  }
  struct Read {
    Device* device;
    RecordLocation where;
    uint32_t max_payload_bytes;
    uint64_t start;  // first block read
    uint32_t length_bytes;
    std::unique_ptr<uint8_t, void (*)(void*)> buffer{nullptr, &std::free};
    FileHandle file = -1;
    ReadCallback done;
  };
  auto r = std::make_shared<Read>();
  r->device = &device_;
  r->where = where;
  r->max_payload_bytes = options_.max_payload_bytes;
  r->start = align_down(where.offset, kBlockBytes);
  r->length_bytes =
      static_cast<uint32_t>(align_up(where.offset + where.size_bytes, kBlockBytes) - r->start);
  r->buffer = aligned_buffer(r->length_bytes);
  r->done = std::move(done);
  char name[kSegmentNameBytes + 1];
  segment_file_name(where.segment_index, name);
  device_.open(name, [r](int32_t opened) {
    if (opened < 0) {
      r->done(absl::DataLossError(absl::StrCat("log read: segment ", r->where.segment_index, ": ",
                                               std::strerror(-opened))));
      return;
    }
    r->file = opened;
    r->device->read(r->file, r->start, r->buffer.get(), r->length_bytes, [r](int32_t result) {
      r->device->close(r->file);
      if (result < 0 || static_cast<uint32_t>(result) != r->length_bytes) {
        r->done(io_error("log read", result, r->length_bytes));
        return;
      }
      DecodedRecord record;
      const std::span<const uint8_t> bytes(r->buffer.get() + (r->where.offset - r->start),
                                           r->where.size_bytes);
      if (decode_record(bytes, r->max_payload_bytes, &record) != DecodeStatus::kOk ||
          record.sequence != r->where.sequence || record.size_bytes != r->where.size_bytes) {
        r->done(absl::DataLossError(absl::StrCat("log read: record ", r->where.sequence,
                                                 " at segment ", r->where.segment_index, " offset ",
                                                 r->where.offset, " is corrupt")));
        return;
      }
      r->done(ReadRecord{record.type, {record.payload.begin(), record.payload.end()}});
    });
  });
}

// --- Segment summaries ----------------------------------------------------------------------

// Called when a batch is durable, before staged_ lets go of its bytes: one summary entry per
// record, the payload cut to what the layer above asked to keep.
void Log::summarize_batch(uint64_t first_record_offset) {
  const uint8_t* record = staged_.data() + first_record_offset;
  for (uint32_t i = 0; i < batch_records_; ++i) {
    uint32_t payload_bytes;
    std::memcpy(&payload_bytes, record, sizeof(payload_bytes));
    const uint8_t type = record[16];
    const std::span<const uint8_t> payload(record + kRecordHeaderBytes, payload_bytes);
    const uint32_t kept = std::min(options_.summary_payload_bytes(type, payload), payload_bytes);
    append_summary_entry(summary_body_, type, payload_bytes, payload.first(kept));
    record += pending_[i].size_bytes;
  }
}

void Log::seal_summary(uint64_t segment_index, uint64_t first_sequence, uint64_t records,
                       uint64_t end_offset) {
  SummaryHeader header;
  header.segment_index = segment_index;
  header.first_sequence = first_sequence;
  header.record_count = records;
  header.end_offset = end_offset;
  summary_queue_.push_back(SummaryWrite{segment_index, encode_summary_file(header, summary_body_)});
  summary_body_.clear();
  write_next_summary();
}

// One at a time, in the background: temporary file, written, synced, renamed into place (the
// rename syncs the directory). A summary is only ever an optimization, so a failure here is
// counted and logged, never fail-stop: the segment is scanned at the next open instead.
void Log::write_next_summary() {
  if (summary_in_flight_ || summary_queue_.empty()) return;
  summary_in_flight_ = true;
  const SummaryWrite& next = summary_queue_.front();
  const uint32_t size = static_cast<uint32_t>(next.file.size());
  summary_buffer_ = aligned_buffer(size);
  std::memcpy(summary_buffer_.get(), next.file.data(), size);
  const std::string temp = summary_temp_file_name(next.segment_index);
  device_.create(temp, size, [this, size](int32_t fd) {
    if (fd < 0) return summary_written(io_error("create segment summary", fd, 0));
    device_.write(fd, 0, summary_buffer_.get(), size, [this, fd, size](int32_t written) {
      if (written != static_cast<int32_t>(size)) {
        device_.close(fd);
        return summary_written(io_error("write segment summary", written, size));
      }
      device_.sync(fd, [this, fd](int32_t synced) {
        device_.close(fd);
        if (synced < 0) return summary_written(io_error("sync segment summary", synced, 0));
        const uint64_t index = summary_queue_.front().segment_index;
        device_.rename(
            summary_temp_file_name(index), summary_file_name(index), [this](int32_t renamed) {
              summary_written(renamed < 0 ? io_error("rename segment summary", renamed, 0)
                                          : absl::OkStatus());
            });
      });
    });
  });
}

void Log::summary_written(absl::Status status) {
  const SummaryWrite done = std::move(summary_queue_.front());
  summary_queue_.pop_front();
  summary_in_flight_ = false;
  summary_buffer_.reset();
  if (status.ok()) {
    ++stats_.summaries_written;
    stats_.summary_bytes_written += done.file.size();
  } else {
    ++stats_.summary_write_errors;
    HLOG_RATE_LIMITED(kWarn, "storage.log.summary_write_failed", 1)
        .kv("segment", done.segment_index)
        .kv("error", std::string(status.message()));
    // The temporary file, if any, is removed at the next open.
  }
  write_next_summary();
}

}  // namespace herald::storage

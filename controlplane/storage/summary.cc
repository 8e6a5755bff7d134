// Segment summary files: names, encoding and the strict decoding recovery relies on.
#include "controlplane/storage/summary.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "platform/assert/assert.h"
#include "platform/crc32c/crc32c.h"

namespace herald::storage {
namespace {

constexpr uint64_t kSummaryMagic = 0x314d5553444c5248ULL;  // "HRLDSUM1"
constexpr uint32_t kSummaryVersion = 1;
constexpr size_t kHeaderCrcOffset = 60;
constexpr char kSuffix[] = ".sum";
constexpr char kTempSuffix[] = ".sum.tmp";

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

// LEB128 of at most 5 bytes (values below 2^32); false when malformed or past `end`.
bool get_varint32(const uint8_t*& p, const uint8_t* end, uint32_t* value) {
  uint64_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (p == end) return false;
    const uint8_t byte = *p++;
    v |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) {
      if (v > UINT32_MAX) return false;
      *value = static_cast<uint32_t>(v);
      return true;
    }
  }
  return false;
}

// "log-<16 hex>" then `suffix`, exactly.
bool parse_name(const std::string& name, const char* suffix, uint64_t* segment_index) {
  const size_t suffix_bytes = std::strlen(suffix);
  if (name.size() != 4 + 16 + suffix_bytes || name.compare(0, 4, "log-") != 0 ||
      name.compare(20, suffix_bytes, suffix) != 0) {
    return false;
  }
  return parse_hex16(std::span<const char>(name.data() + 4, 16), segment_index);
}

std::string name_with(uint64_t segment_index, const char* suffix) {
  char name[kSegmentNameBytes + 1];
  segment_file_name(segment_index, name);
  // "log-<hex>.seg" -> "log-<hex>" + suffix
  return std::string(name, 4 + 16) + suffix;
}

}  // namespace

std::string summary_file_name(uint64_t segment_index) {
  return name_with(segment_index, kSuffix);
}
std::string summary_temp_file_name(uint64_t segment_index) {
  return name_with(segment_index, kTempSuffix);
}
bool parse_summary_file_name(const std::string& name, uint64_t* segment_index) {
  return parse_name(name, kSuffix, segment_index);
}
bool is_summary_temp_file_name(const std::string& name) {
  uint64_t index;
  return parse_name(name, kTempSuffix, &index);
}

void append_summary_entry(std::vector<uint8_t>& body, uint8_t type, uint32_t payload_bytes,
                          std::span<const uint8_t> kept) {
  body.push_back(type);
  put_varint(body, payload_bytes);
  put_varint(body, kept.size());
  body.insert(body.end(), kept.begin(), kept.end());
}

std::vector<uint8_t> encode_summary_file(SummaryHeader header, std::span<const uint8_t> body) {
  header.body_bytes = body.size();
  header.body_crc = crc32c::value(body.data(), body.size());
  std::vector<uint8_t> out(kBlockBytes + align_up(body.size(), kBlockBytes), 0);
  uint8_t* p = out.data();
  store_le<uint64_t>(p, kSummaryMagic);
  store_le<uint32_t>(p + 8, kSummaryVersion);
  store_le<uint64_t>(p + 16, header.segment_index);
  store_le<uint64_t>(p + 24, header.first_sequence);
  store_le<uint64_t>(p + 32, header.record_count);
  store_le<uint64_t>(p + 40, header.end_offset);
  store_le<uint64_t>(p + 48, header.body_bytes);
  store_le<uint32_t>(p + 56, header.body_crc);
  store_le<uint32_t>(p + kHeaderCrcOffset, crc32c::value(p, kHeaderCrcOffset));
  if (!body.empty()) std::memcpy(p + kBlockBytes, body.data(), body.size());
  return out;
}

absl::Status decode_summary_header(std::span<const uint8_t> block, SummaryHeader* out) {
  if (block.size() < kBlockBytes) return absl::DataLossError("summary: short header");
  const uint8_t* p = block.data();
  if (load_le<uint64_t>(p) != kSummaryMagic) return absl::DataLossError("summary: bad magic");
  if (load_le<uint32_t>(p + 8) != kSummaryVersion)
    return absl::DataLossError("summary: bad version");
  if (load_le<uint32_t>(p + kHeaderCrcOffset) != crc32c::value(p, kHeaderCrcOffset)) {
    return absl::DataLossError("summary: header checksum mismatch");
  }
  SummaryHeader h;
  h.segment_index = load_le<uint64_t>(p + 16);
  h.first_sequence = load_le<uint64_t>(p + 24);
  h.record_count = load_le<uint64_t>(p + 32);
  h.end_offset = load_le<uint64_t>(p + 40);
  h.body_bytes = load_le<uint64_t>(p + 48);
  h.body_crc = load_le<uint32_t>(p + 56);
  // Every entry takes at least 3 bytes of body, every record at least one 8-byte unit past
  // its header on disk.
  if (h.first_sequence == 0 || h.record_count == 0 || h.body_bytes > kMaxSummaryBodyBytes ||
      h.record_count * 3 > h.body_bytes || h.end_offset < kBlockBytes ||
      h.end_offset % kRecordAlignBytes != 0 ||
      h.record_count > (h.end_offset - kBlockBytes) / record_size_bytes(0)) {
    return absl::DataLossError("summary: header values out of range");
  }
  *out = h;
  return absl::OkStatus();
}

uint64_t summary_body_read_bytes(const SummaryHeader& header) {
  return align_up(header.body_bytes, kBlockBytes);
}

// Decodes the entry at p_, checking it as decode_summary_body documents; false (with `why`)
// when it is not one this version wrote.
bool SummaryRecords::decode_next(RecoveredRecord* record, const char** why) {
  if (p_ == end_) return *why = "fewer entries than records", false;
  const uint8_t type = *p_++;
  uint32_t payload_bytes = 0;
  uint32_t kept_bytes = 0;
  if (type == kRecordTypeInvalid || !get_varint32(p_, end_, &payload_bytes) ||
      !get_varint32(p_, end_, &kept_bytes)) {
    return *why = "malformed entry", false;
  }
  if (payload_bytes > max_payload_bytes_ || kept_bytes > payload_bytes ||
      kept_bytes > static_cast<uint64_t>(end_ - p_)) {
    return *why = "entry sizes out of range", false;
  }
  const uint64_t size = record_size_bytes(payload_bytes);
  if (offset_ + size > header_.end_offset) return *why = "records beyond the segment's end", false;
  record->location = RecordLocation{header_.first_sequence + next_, header_.segment_index, offset_,
                                    static_cast<uint32_t>(size)};
  record->type = type;
  record->payload = std::span<const uint8_t>(p_, kept_bytes);
  record->truncated_payload_bytes = kept_bytes < payload_bytes ? payload_bytes : 0;
  p_ += kept_bytes;
  offset_ += size;
  ++next_;
  return true;
}

SummaryRecords::SummaryRecords(std::span<const uint8_t> body, const SummaryHeader& header,
                               uint32_t max_payload_bytes)
    : header_(header),
      max_payload_bytes_(max_payload_bytes),
      p_(body.data()),
      end_(body.data() + std::min<uint64_t>(body.size(), header.body_bytes)),
      offset_(kBlockBytes) {}

absl::Status SummaryRecords::check(std::span<const uint8_t> body, const SummaryHeader& header,
                                   uint32_t max_payload_bytes) {
  if (body.size() < header.body_bytes) return absl::DataLossError("summary: short body");
  if (crc32c::value(body.data(), header.body_bytes) != header.body_crc) {
    return absl::DataLossError("summary: body checksum mismatch");
  }
  SummaryRecords walk(body, header, max_payload_bytes);
  RecoveredRecord record;
  const char* why = nullptr;
  while (!walk.done()) {
    if (!walk.decode_next(&record, &why))
      return absl::DataLossError(std::string("summary: ") + why);
  }
  if (walk.p_ != walk.end_ || walk.offset_ != header.end_offset) {
    return absl::DataLossError("summary: entries do not fill the summary");
  }
  return absl::OkStatus();
}

void SummaryRecords::next(size_t max, std::vector<RecoveredRecord>* out) {
  out->clear();
  RecoveredRecord record;
  const char* why = nullptr;
  while (out->size() < max && !done()) {
    // check() accepted this body: every entry decodes.
    HERALD_CHECK(decode_next(&record, &why), "summary entry changed after it was checked");
    out->push_back(record);
  }
}

absl::Status decode_summary_body(std::span<const uint8_t> body, const SummaryHeader& header,
                                 uint32_t max_payload_bytes, std::vector<RecoveredRecord>* out) {
  if (absl::Status s = SummaryRecords::check(body, header, max_payload_bytes); !s.ok()) return s;
  SummaryRecords records(body, header, max_payload_bytes);
  std::vector<RecoveredRecord> run;
  while (!records.done()) {
    records.next(1024, &run);
    out->insert(out->end(), run.begin(), run.end());
  }
  return absl::OkStatus();
}

}  // namespace herald::storage

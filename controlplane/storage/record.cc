// Record framing, segment headers and the per-segment recovery scan.
#include "controlplane/storage/record.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "platform/crc32c/crc32c.h"

namespace herald::storage {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the on-disk format is little-endian and written with memcpy");

constexpr uint64_t kSegmentMagic = 0x31474553444c5248ULL;  // "HRLDSEG1"
constexpr uint32_t kSegmentVersion = 1;
constexpr size_t kSegmentHeaderBytes = 64;

// The CRC covers the header except its own field, then the payload.
uint32_t record_crc(const uint8_t* header, std::span<const uint8_t> payload) {
  uint32_t crc = crc32c::extend(0, header, 4);
  crc = crc32c::extend(crc, header + 8, kRecordHeaderBytes - 8);
  return crc32c::extend(crc, payload.data(), payload.size());
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// The signature of a torn write (README.md, "Torn tail or corruption"): a sector the failed
// record covers reads, from the record's start (or the sector's) to the sector's end, as the
// zeros that were there before the write. A bit flip leaves no such sector.
bool looks_torn(std::span<const uint8_t> segment, uint64_t offset, uint64_t extent_end) {
  extent_end = std::min<uint64_t>(extent_end, segment.size());
  for (uint64_t sector = align_down(offset, kSectorBytes); sector < extent_end;
       sector += kSectorBytes) {
    const uint64_t from = std::max(sector, offset);
    const uint64_t to = std::min<uint64_t>(sector + kSectorBytes, segment.size());
    if (from < to && all_zero(segment.data() + from, to - from)) return true;
  }
  return false;
}

std::string where(const SegmentHeader& header, uint64_t offset) {
  return absl::StrCat("segment ", header.segment_index, " offset ", offset);
}

}  // namespace

void encode_record(uint8_t* out, uint64_t sequence, uint8_t type,
                   std::span<const uint8_t> payload) {
  const uint64_t size = record_size_bytes(payload.size());
  store_le<uint32_t>(out, static_cast<uint32_t>(payload.size()));
  store_le<uint64_t>(out + 8, sequence);
  out[16] = type;
  if (!payload.empty()) std::memcpy(out + kRecordHeaderBytes, payload.data(), payload.size());
  std::memset(out + kRecordHeaderBytes + payload.size(), 0,
              size - kRecordHeaderBytes - payload.size());
  store_le<uint32_t>(out + 4, record_crc(out, payload));
}

DecodeStatus decode_record(std::span<const uint8_t> bytes, uint32_t max_payload_bytes,
                           DecodedRecord* out) {
  if (bytes.size() < kRecordHeaderBytes) {
    return all_zero(bytes.data(), bytes.size()) ? DecodeStatus::kZero : DecodeStatus::kBadLength;
  }
  const uint8_t* p = bytes.data();
  if (all_zero(p, kRecordHeaderBytes)) return DecodeStatus::kZero;
  const uint32_t length = load_le<uint32_t>(p);
  if (length > max_payload_bytes || record_size_bytes(length) > bytes.size()) {
    return DecodeStatus::kBadLength;
  }
  if (p[16] == kRecordTypeInvalid) return DecodeStatus::kBadType;
  const std::span<const uint8_t> payload = bytes.subspan(kRecordHeaderBytes, length);
  if (record_crc(p, payload) != load_le<uint32_t>(p + 4)) return DecodeStatus::kBadChecksum;
  out->sequence = load_le<uint64_t>(p + 8);
  out->type = p[16];
  out->payload = payload;
  out->size_bytes = static_cast<uint32_t>(record_size_bytes(length));
  return DecodeStatus::kOk;
}

void encode_segment_header(const SegmentHeader& header, uint8_t* block) {
  std::memset(block, 0, kBlockBytes);
  store_le<uint64_t>(block, kSegmentMagic);
  store_le<uint32_t>(block + 8, kSegmentVersion);
  store_le<uint64_t>(block + 16, header.segment_index);
  store_le<uint64_t>(block + 24, header.segment_size_bytes);
  store_le<uint32_t>(block + 32, header.max_write_bytes);
  store_le<uint32_t>(block + 36, header.max_payload_bytes);
  uint32_t crc = crc32c::extend(0, block, 12);
  crc = crc32c::extend(crc, block + 16, kSegmentHeaderBytes - 16);
  store_le<uint32_t>(block + 12, crc);
}

absl::Status decode_segment_header(std::span<const uint8_t> block, SegmentHeader* out) {
  if (block.size() < kBlockBytes) return absl::DataLossError("segment shorter than its header");
  const uint8_t* p = block.data();
  if (load_le<uint64_t>(p) != kSegmentMagic) return absl::DataLossError("bad segment magic");
  if (load_le<uint32_t>(p + 8) != kSegmentVersion) {
    return absl::DataLossError("unknown segment version");
  }
  uint32_t crc = crc32c::extend(0, p, 12);
  crc = crc32c::extend(crc, p + 16, kSegmentHeaderBytes - 16);
  if (crc != load_le<uint32_t>(p + 12)) return absl::DataLossError("bad segment header checksum");
  SegmentHeader h;
  h.segment_index = load_le<uint64_t>(p + 16);
  h.segment_size_bytes = load_le<uint64_t>(p + 24);
  h.max_write_bytes = load_le<uint32_t>(p + 32);
  h.max_payload_bytes = load_le<uint32_t>(p + 36);
  // A header that passed its checksum was written by us; these still guard the scan's arithmetic.
  if (h.segment_size_bytes < 2 * kBlockBytes || h.segment_size_bytes % kBlockBytes != 0 ||
      h.max_write_bytes < kBlockBytes || h.max_write_bytes % kBlockBytes != 0 ||
      record_size_bytes(h.max_payload_bytes) > h.segment_size_bytes - kBlockBytes) {
    return absl::DataLossError("inconsistent segment header limits");
  }
  *out = h;
  return absl::OkStatus();
}

void segment_file_name(uint64_t segment_index, char (&name)[kSegmentNameBytes + 1]) {
  std::snprintf(name, sizeof(name), "log-%016llx.seg",
                static_cast<unsigned long long>(segment_index));
}

bool parse_segment_file_name(std::span<const char> name, uint64_t* segment_index) {
  if (name.size() != kSegmentNameBytes) return false;
  if (std::memcmp(name.data(), "log-", 4) != 0) return false;
  if (std::memcmp(name.data() + 20, ".seg", 4) != 0) return false;
  return parse_hex16(name.subspan(4, 16), segment_index);
}

bool parse_hex16(std::span<const char> digits, uint64_t* value) {
  if (digits.size() != 16) return false;
  uint64_t result = 0;
  for (const char c : digits) {
    uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return false;
    }
    result = result << 4 | digit;
  }
  *value = result;
  return true;
}

absl::Status scan_segment(std::span<const uint8_t> segment, const SegmentHeader& header,
                          uint64_t expected_sequence, const RecordVisitor& visit,
                          SegmentScanResult* result) {
  *result = SegmentScanResult{};
  const uint64_t end = std::min<uint64_t>(segment.size(), header.segment_size_bytes);
  uint64_t offset = kBlockBytes;
  uint64_t next_sequence = expected_sequence;
  DecodedRecord record;
  DecodeStatus status = DecodeStatus::kZero;
  while (offset < end) {
    status =
        decode_record(segment.subspan(offset, end - offset), header.max_payload_bytes, &record);
    if (status != DecodeStatus::kOk) break;
    if (next_sequence != 0 && record.sequence != next_sequence) {
      // A record that passes its CRC was written whole by us; a wrong sequence is never a tear.
      return absl::DataLossError(absl::StrCat("sequence ", record.sequence, " where ",
                                              next_sequence, " was due at ",
                                              where(header, offset)));
    }
    if (record.sequence == 0) {
      return absl::DataLossError(absl::StrCat("sequence 0 at ", where(header, offset)));
    }
    RecoveredRecord recovered;
    recovered.location = {record.sequence, header.segment_index, offset, record.size_bytes};
    recovered.type = record.type;
    recovered.payload = record.payload;
    if (absl::Status s = visit(recovered); !s.ok()) return s;
    ++result->records;
    result->last_sequence = record.sequence;
    next_sequence = record.sequence + 1;
    offset += record.size_bytes;
  }
  result->end_offset = offset;
  if (offset >= end) return absl::OkStatus();

  if (status != DecodeStatus::kZero) {
    // How far the failed record claims to reach, if its length can be believed at all.
    const uint32_t length = offset + 4 <= end ? load_le<uint32_t>(segment.data() + offset) : 0;
    uint64_t extent_end = offset + kRecordHeaderBytes;
    if (length <= header.max_payload_bytes) extent_end = offset + record_size_bytes(length);
    if (!looks_torn(segment, offset, extent_end)) {
      return absl::DataLossError(
          absl::StrCat("corrupt record (no torn-write signature) at ", where(header, offset)));
    }
    result->torn = true;
  }

  // Everything past the stop must be explained by the one write that was in flight: it began at
  // or before the block holding `offset` and was at most max_write_bytes long. A valid record
  // with a newer sequence beyond that reach means records were lost in the middle of the log.
  const uint64_t reach = align_down(offset, kBlockBytes) + header.max_write_bytes;
  const uint64_t last = result->records > 0 ? result->last_sequence
                                            : (expected_sequence == 0 ? 0 : expected_sequence - 1);
  bool zero = result->records == 0 && !result->torn;
  for (uint64_t q = offset; q + kRecordHeaderBytes <= end; q += kRecordAlignBytes) {
    const uint8_t* p = segment.data() + q;
    if (load_le<uint64_t>(p) == 0 && load_le<uint64_t>(p + 8) == 0 && p[16] == 0) continue;
    zero = false;
    if (q < reach) continue;
    const uint32_t length = load_le<uint32_t>(p);
    if (length > header.max_payload_bytes || p[16] == kRecordTypeInvalid) continue;
    if (load_le<uint64_t>(p + 8) <= last) continue;
    if (decode_record(segment.subspan(q, end - q), header.max_payload_bytes, &record) ==
        DecodeStatus::kOk) {
      return absl::DataLossError(absl::StrCat("valid record ", record.sequence,
                                              " beyond the end of the log at ", where(header, q),
                                              " (log stops at ", offset, ")"));
    }
  }
  // Trailing bytes shorter than a header are zero padding in every segment we write.
  result->data_all_zero = zero;
  return absl::OkStatus();
}

}  // namespace herald::storage

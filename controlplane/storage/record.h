// The on-disk format of the log: segment header blocks, record framing and the recovery scan
// that validates one segment and tells a torn tail from corruption (README.md has the rules).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>

#include "absl/status/status.h"

namespace herald::storage {

// Group commit writes whole blocks (O_DIRECT's unit); tearing is judged per sector, the unit a
// disk writes atomically (512 B logical sectors are the smallest in use, so the strictest).
inline constexpr uint32_t kBlockBytes = 4096;
inline constexpr uint32_t kSectorBytes = 512;
// [length u32][crc32c u32][sequence u64][type u8] then the payload, padded with zeros so the
// next record starts on a multiple of kRecordAlignBytes (the recovery scan steps by it).
inline constexpr uint32_t kRecordHeaderBytes = 17;
inline constexpr uint32_t kRecordAlignBytes = 8;
// Segment file names: "log-" + 16 hex digits of the segment index + ".seg".
inline constexpr size_t kSegmentNameBytes = 4 + 16 + 4;
static_assert(kBlockBytes % kSectorBytes == 0 && kSectorBytes % kRecordAlignBytes == 0);

// Record types. 0 never appears in a valid record (so a zero header is never a record); 1-15
// belong to the log itself; 16 and up are the engine's (table puts and deletes, snapshots
// markers, queue operations), defined by the layers above.
inline constexpr uint8_t kRecordTypeInvalid = 0;
inline constexpr uint8_t kRecordTypeNoop = 1;
inline constexpr uint8_t kFirstEngineRecordType = 16;

// Little-endian fixed-width fields of the on-disk formats (this target is little-endian:
// static_assert in record.cc), through memcpy so unaligned offsets are fine.
template <typename T>
[[nodiscard]] T load_le(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(value));
  return value;
}
template <typename T>
void store_le(uint8_t* p, T value) {
  std::memcpy(p, &value, sizeof(value));
}

[[nodiscard]] constexpr uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}
[[nodiscard]] constexpr uint64_t align_down(uint64_t value, uint64_t alignment) {
  return value / alignment * alignment;
}
// Bytes a record with `payload_bytes` of payload takes in a segment, padding included.
[[nodiscard]] constexpr uint64_t record_size_bytes(uint64_t payload_bytes) {
  return align_up(kRecordHeaderBytes + payload_bytes, kRecordAlignBytes);
}

// Writes the framed record into out[0, record_size_bytes(payload.size())), padding zeroed.
void encode_record(uint8_t* out, uint64_t sequence, uint8_t type, std::span<const uint8_t> payload);

enum class DecodeStatus : uint8_t {
  kOk,
  kZero,         // an all-zero header: never-written space
  kBadLength,    // length beyond the limit or beyond the bytes given
  kBadType,      // type 0 with a non-zero header
  kBadChecksum,  // CRC32C mismatch
};

struct DecodedRecord {
  uint64_t sequence = 0;
  uint8_t type = 0;
  std::span<const uint8_t> payload;
  uint32_t size_bytes = 0;  // record_size_bytes(payload.size())
};

// Decodes the record at the start of `bytes`. Never trusts the length before bounds checks.
[[nodiscard]] DecodeStatus decode_record(std::span<const uint8_t> bytes, uint32_t max_payload_bytes,
                                         DecodedRecord* out);

// Block 0 of every segment file: identifies it and records the limits its writer used, which
// the recovery scan needs (the largest single write bounds where a torn write can reach).
struct SegmentHeader {
  uint64_t segment_index = 0;
  uint64_t segment_size_bytes = 0;
  uint32_t max_write_bytes = 0;
  uint32_t max_payload_bytes = 0;
};
void encode_segment_header(const SegmentHeader& header, uint8_t* block /* kBlockBytes */);
// Fails on a bad magic, version, checksum or inconsistent limits.
[[nodiscard]] absl::Status decode_segment_header(std::span<const uint8_t> block,
                                                 SegmentHeader* out);

// "log-00000000000000a3.seg"; parse returns false for any other name.
void segment_file_name(uint64_t segment_index, char (&name)[kSegmentNameBytes + 1]);
[[nodiscard]] bool parse_segment_file_name(std::span<const char> name, uint64_t* segment_index);
// Exactly 16 lower-case hex digits (the numbers in segment and snapshot file names).
[[nodiscard]] bool parse_hex16(std::span<const char> digits, uint64_t* value);

// Where a record lives; the index above the log keeps these.
struct RecordLocation {
  uint64_t sequence = 0;
  uint64_t segment_index = 0;
  uint64_t offset = 0;  // of the record header within the segment file
  uint32_t size_bytes = 0;
};

struct RecoveredRecord {
  RecordLocation location;
  uint8_t type = 0;
  // Valid only during the visitor call. From a segment summary (summary.h) only the prefix the
  // log's summary_payload_bytes kept is here; truncated_payload_bytes then holds the full size.
  std::span<const uint8_t> payload;
  uint32_t truncated_payload_bytes = 0;  // 0: `payload` is the whole payload

  bool payload_truncated() const { return truncated_payload_bytes != 0; }
  // The size of the whole payload as written.
  uint64_t payload_size() const {
    return truncated_payload_bytes != 0 ? truncated_payload_bytes : payload.size();
  }
};
// Returning an error stops recovery and fails the open with that error.
using RecordVisitor = std::function<absl::Status(const RecoveredRecord& record)>;
// The same, a run of records at a time (in sequence order), so the layer above can prefetch
// what the next records will touch; the spans are valid only during the call.
using RecordBatchVisitor = std::function<absl::Status(std::span<const RecoveredRecord> records)>;

struct SegmentScanResult {
  uint64_t records = 0;
  uint64_t last_sequence = 0;  // meaningful when records > 0
  uint64_t end_offset = 0;     // where valid records end
  bool torn = false;           // stopped at a torn record rather than at zeros
  bool data_all_zero = false;  // nothing but zeros after the header block
};

// Validates the records of one segment (its whole contents in `segment`, header included),
// calling `visit` for each valid one in order. `expected_sequence` is the sequence the first
// record must carry (0: any, for the oldest segment). Returns DataLoss for corruption: a record
// that fails validation without the signature of a torn write, a valid record with an
// unexpected sequence, or a valid record beyond the reach of the last write.
[[nodiscard]] absl::Status scan_segment(std::span<const uint8_t> segment,
                                        const SegmentHeader& header, uint64_t expected_sequence,
                                        const RecordVisitor& visit, SegmentScanResult* result);

}  // namespace herald::storage

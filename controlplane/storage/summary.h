// Segment summaries: a sidecar file per sealed log segment (`log-<index>.sum`) listing its
// records with their payloads cut to what the layer above needs at recovery (the queue table
// keeps a body's id, not its bytes). Recovery reads a segment's summary instead of the segment,
// which is what lets a queue log of 10 M stored messages (3.6 GB) restart in seconds
// (README.md, "Segment summaries").
//
// A summary is an optimization, never the source of truth: it is written after its segment is
// sealed and every record in it is durable, published by an atomic rename, and used at open only
// if it verifies completely and matches the segment's place in the log; otherwise the segment
// itself is scanned. Body reads (Log::read) always check the record's own CRC.
//
// File layout (little-endian), whole blocks:
//   block 0: [magic "HRLDSUM1" u64][version u32][0 u32][segment_index u64][first_sequence u64]
//            [record_count u64][end_offset u64][body_bytes u64][body_crc32c u32]
//            [header_crc32c u32 of the 60 bytes before it], zeros to the block's end
//   then the body, zero padded to a block: per record, in sequence order,
//            [type u8][payload_bytes varint][kept_bytes varint][kept payload prefix]
// Records are contiguous in a segment (each starts where the previous one ends, the first at
// kBlockBytes), so offsets and sizes follow from payload_bytes; sequences are consecutive.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/storage/record.h"

namespace herald::storage {

struct SummaryHeader {
  uint64_t segment_index = 0;
  uint64_t first_sequence = 0;
  uint64_t record_count = 0;
  uint64_t end_offset = 0;  // where the segment's records end
  uint64_t body_bytes = 0;
  uint32_t body_crc = 0;
};

// Largest summary body accepted at open: far above what a segment's records can need (a
// record is at least 24 bytes on disk and its summary entry at most 11 + kept bytes, kept
// bounded by the payload), so a larger value is corruption.
inline constexpr uint64_t kMaxSummaryBodyBytes = 1ull << 30;

// "log-00000000000000a3.sum" and its temporary name while written ("...sum.tmp").
std::string summary_file_name(uint64_t segment_index);
std::string summary_temp_file_name(uint64_t segment_index);
// True for "log-<16 hex>.sum" (not the temporary name).
[[nodiscard]] bool parse_summary_file_name(const std::string& name, uint64_t* segment_index);
// True for "log-<16 hex>.sum.tmp": left over by a crash while one was written.
[[nodiscard]] bool is_summary_temp_file_name(const std::string& name);

// Adds one record's entry to a summary body under construction.
void append_summary_entry(std::vector<uint8_t>& body, uint8_t type, uint32_t payload_bytes,
                          std::span<const uint8_t> kept);

// The whole file: header block then the body padded to a block. `header.body_bytes` and
// `header.body_crc` are filled from `body`.
std::vector<uint8_t> encode_summary_file(SummaryHeader header, std::span<const uint8_t> body);

// Block 0 of a summary file. DataLoss for anything that is not a summary header this version
// wrote (magic, version, checksum, counts out of range).
[[nodiscard]] absl::Status decode_summary_header(std::span<const uint8_t> block,
                                                 SummaryHeader* out);
// Bytes to read for the body (body_bytes rounded up to a block).
[[nodiscard]] uint64_t summary_body_read_bytes(const SummaryHeader& header);

// A summary body's records, a run at a time. A summary is used whole or not at all (a segment
// whose summary is damaged is scanned instead), so check() walks every entry before the first
// record is applied; then the records are decoded again in runs small enough to stay in cache
// between decoding and applying (a whole segment's 370 k records, 64 B each, do not).
//
//   if (SummaryRecords::check(body, header, max).ok()) {
//     SummaryRecords records(body, header, max);
//     while (!records.done()) { records.next(1024, &run); apply(run); }
//   }
//
// Each record's payload span points into `body` (the kept prefix only; truncated_payload_bytes
// holds the full size when cut), which must outlive the records.
class SummaryRecords {
 public:
  // The body's CRC and every entry: types, sizes, records contiguous up to end_offset, exactly
  // record_count entries filling body_bytes. DataLoss on any mismatch.
  [[nodiscard]] static absl::Status check(std::span<const uint8_t> body,
                                          const SummaryHeader& header, uint32_t max_payload_bytes);
  // Over a body check() accepted (a body that changed since fails a HERALD_CHECK).
  SummaryRecords(std::span<const uint8_t> body, const SummaryHeader& header,
                 uint32_t max_payload_bytes);
  bool done() const { return next_ == header_.record_count; }
  // Replaces `out` with the next (up to) `max` records.
  void next(size_t max, std::vector<RecoveredRecord>* out);

 private:
  bool decode_next(RecoveredRecord* record, const char** why);

  SummaryHeader header_;
  uint32_t max_payload_bytes_;
  const uint8_t* p_;
  const uint8_t* end_;
  uint64_t offset_;    // of the next record in the segment
  uint64_t next_ = 0;  // records decoded
};

// check() and every record appended to `out` (`out` left as it was on DataLoss).
[[nodiscard]] absl::Status decode_summary_body(std::span<const uint8_t> body,
                                               const SummaryHeader& header,
                                               uint32_t max_payload_bytes,
                                               std::vector<RecoveredRecord>* out);

}  // namespace herald::storage

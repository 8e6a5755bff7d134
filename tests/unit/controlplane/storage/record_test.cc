// Tests of the log's on-disk format: record framing, segment headers, file names, and the
// recovery scan's rule for telling a torn tail from corruption.
#include "controlplane/storage/record.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace herald::storage {
namespace {

std::vector<uint8_t> bytes_of(const char* s) {
  return std::vector<uint8_t>(s, s + std::strlen(s));
}

TEST(RecordTest, RoundTripAndPadding) {
  const std::vector<uint8_t> payload = bytes_of("hello, durable world");
  const uint64_t size = record_size_bytes(payload.size());
  EXPECT_EQ(size % kRecordAlignBytes, 0u);
  std::vector<uint8_t> buf(size + 8, 0xee);
  encode_record(buf.data(), 42, 17, payload);
  for (uint64_t i = kRecordHeaderBytes + payload.size(); i < size; ++i) EXPECT_EQ(buf[i], 0);
  EXPECT_EQ(buf[size], 0xee);  // nothing written past the record
  DecodedRecord r;
  ASSERT_EQ(decode_record(buf, 1024, &r), DecodeStatus::kOk);
  EXPECT_EQ(r.sequence, 42u);
  EXPECT_EQ(r.type, 17);
  EXPECT_EQ(r.size_bytes, size);
  EXPECT_EQ(std::vector<uint8_t>(r.payload.begin(), r.payload.end()), payload);
}

TEST(RecordTest, EmptyPayloadIsValid) {
  std::vector<uint8_t> buf(record_size_bytes(0));
  encode_record(buf.data(), 1, kRecordTypeNoop, {});
  DecodedRecord r;
  EXPECT_EQ(decode_record(buf, 16, &r), DecodeStatus::kOk);
  EXPECT_TRUE(r.payload.empty());
}

TEST(RecordTest, EveryBitFlipIsDetected) {
  const std::vector<uint8_t> payload = bytes_of("0123456789abcdef0123");
  std::vector<uint8_t> buf(record_size_bytes(payload.size()));
  encode_record(buf.data(), 7, 20, payload);
  const size_t covered = kRecordHeaderBytes + payload.size();
  for (size_t i = 0; i < covered; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> bad = buf;
      bad[i] ^= static_cast<uint8_t>(1 << bit);
      DecodedRecord r;
      EXPECT_NE(decode_record(bad, 1024, &r), DecodeStatus::kOk) << "byte " << i << " bit " << bit;
    }
  }
}

TEST(RecordTest, LengthIsBoundsCheckedBeforeUse) {
  std::vector<uint8_t> buf(record_size_bytes(100));
  const std::vector<uint8_t> payload(100, 'x');
  encode_record(buf.data(), 1, 20, payload);
  DecodedRecord r;
  EXPECT_EQ(decode_record(buf, 99, &r), DecodeStatus::kBadLength);  // over the limit
  EXPECT_EQ(decode_record(std::span<const uint8_t>(buf).first(60), 1024, &r),
            DecodeStatus::kBadLength);  // past the bytes given
  std::vector<uint8_t> zero(64, 0);
  EXPECT_EQ(decode_record(zero, 1024, &r), DecodeStatus::kZero);
}

TEST(SegmentHeaderTest, RoundTripAndCorruption) {
  SegmentHeader h{5, 1 << 20, 64 << 10, 4096};
  std::vector<uint8_t> block(kBlockBytes);
  encode_segment_header(h, block.data());
  SegmentHeader out;
  ASSERT_TRUE(decode_segment_header(block, &out).ok());
  EXPECT_EQ(out.segment_index, 5u);
  EXPECT_EQ(out.segment_size_bytes, 1u << 20);
  EXPECT_EQ(out.max_write_bytes, 64u << 10);
  block[20] ^= 1;
  EXPECT_EQ(decode_segment_header(block, &out).code(), absl::StatusCode::kDataLoss);
  std::vector<uint8_t> zero(kBlockBytes, 0);
  EXPECT_FALSE(decode_segment_header(zero, &out).ok());
}

TEST(SegmentNameTest, FormatAndParse) {
  char name[kSegmentNameBytes + 1];
  segment_file_name(0xa3, name);
  EXPECT_STREQ(name, "log-00000000000000a3.seg");
  uint64_t index = 0;
  EXPECT_TRUE(parse_segment_file_name(std::span<const char>(name, kSegmentNameBytes), &index));
  EXPECT_EQ(index, 0xa3u);
  for (const char* bad : {"log-00000000000000A3.seg", "log-00000000000000a3.se", "x.seg",
                          "log-00000000000000g3.seg", "LOG-00000000000000a3.seg"}) {
    EXPECT_FALSE(parse_segment_file_name(std::span<const char>(bad, std::strlen(bad)), &index))
        << bad;
  }
}

// A segment image built in memory, for the scan.
class ScanTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSegmentBytes = 64 * 1024;
  static constexpr uint32_t kMaxWriteBytes = 16 * 1024;

  ScanTest() : segment_(kSegmentBytes, 0) {
    header_ = SegmentHeader{3, kSegmentBytes, kMaxWriteBytes, 2048};
    encode_segment_header(header_, segment_.data());
  }
  // Appends records with sequences first.. of `payload_bytes` each; returns their offsets.
  std::vector<uint64_t> fill(uint64_t first, int count, size_t payload_bytes) {
    std::vector<uint64_t> offsets;
    for (int i = 0; i < count; ++i) {
      std::vector<uint8_t> payload(payload_bytes, static_cast<uint8_t>(0x41 + i % 26));
      offsets.push_back(offset_);
      encode_record(segment_.data() + offset_, first + static_cast<uint64_t>(i), 20, payload);
      offset_ += record_size_bytes(payload_bytes);
    }
    return offsets;
  }
  absl::Status scan(uint64_t expected, SegmentScanResult* result) {
    seen_.clear();
    return scan_segment(
        segment_, header_, expected,
        [this](const RecoveredRecord& r) {
          seen_.push_back(r.location.sequence);
          return absl::OkStatus();
        },
        result);
  }

  std::vector<uint8_t> segment_;
  SegmentHeader header_;
  uint64_t offset_ = kBlockBytes;
  std::vector<uint64_t> seen_;
};

TEST_F(ScanTest, CleanTail) {
  fill(10, 20, 100);
  SegmentScanResult r;
  ASSERT_TRUE(scan(10, &r).ok());
  EXPECT_EQ(r.records, 20u);
  EXPECT_EQ(r.last_sequence, 29u);
  EXPECT_EQ(r.end_offset, offset_);
  EXPECT_FALSE(r.torn);
  EXPECT_FALSE(r.data_all_zero);
  EXPECT_EQ(seen_.size(), 20u);
}

TEST_F(ScanTest, EmptySegmentIsAllZero) {
  SegmentScanResult r;
  ASSERT_TRUE(scan(0, &r).ok());
  EXPECT_EQ(r.records, 0u);
  EXPECT_TRUE(r.data_all_zero);
}

TEST_F(ScanTest, ContinuityIsEnforced) {
  fill(10, 3, 100);
  SegmentScanResult r;
  EXPECT_EQ(scan(11, &r).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(scan(0, &r).ok());  // the oldest segment may start anywhere
}

TEST_F(ScanTest, TornSectorAtTheTailIsTruncated) {
  const std::vector<uint64_t> offsets = fill(1, 40, 300);
  // Pick a record near the end whose header and last byte lie in different sectors, and let
  // its write lose the last sector: it reads as the zeros that were there before.
  size_t victim = 35;
  while (align_down(offsets[victim] + 319, kSectorBytes) <= offsets[victim] + kRecordHeaderBytes) {
    ++victim;
  }
  ASSERT_LT(victim, 40u);
  std::memset(segment_.data() + align_down(offsets[victim] + 319, kSectorBytes), 0, kSectorBytes);
  SegmentScanResult r;
  ASSERT_TRUE(scan(1, &r).ok());
  EXPECT_TRUE(r.torn);
  EXPECT_EQ(r.last_sequence, victim);  // sequences 1..victim kept; victim + 1 torn
  EXPECT_EQ(r.end_offset, offsets[victim]);
}

TEST_F(ScanTest, BitFlipIsCorruptionNotATear) {
  const std::vector<uint64_t> offsets = fill(1, 40, 300);
  segment_[offsets[39] + kRecordHeaderBytes + 5] ^= 0x10;  // even in the very last record
  SegmentScanResult r;
  EXPECT_EQ(scan(1, &r).code(), absl::StatusCode::kDataLoss);
}

TEST_F(ScanTest, ValidRecordsBeyondTheLastWriteAreCorruption) {
  const std::vector<uint64_t> offsets = fill(1, 150, 300);
  ASSERT_GT(offsets[149] - offsets[10], kMaxWriteBytes + kBlockBytes);
  // Record 11's header sector zeroed (looks torn), but records far beyond it are intact: that
  // is lost data in the middle of the log, not a torn tail.
  std::memset(segment_.data() + align_down(offsets[10], kSectorBytes), 0, kSectorBytes);
  SegmentScanResult r;
  const absl::Status s = scan(1, &r);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

TEST_F(ScanTest, StaleRecordsWithinTheLastWriteAreIgnored) {
  const std::vector<uint64_t> offsets = fill(1, 20, 300);
  // The lost sector holds record 16's header; 17.. made it to disk but were never acknowledged
  // (their batch's sync never completed), so they are dropped with the tear.
  // Zeros from the record's start to its sector's end, as a torn write would leave them.
  const uint64_t sector_end = align_down(offsets[15], kSectorBytes) + kSectorBytes;
  std::memset(segment_.data() + offsets[15], 0, sector_end - offsets[15]);
  SegmentScanResult r;
  ASSERT_TRUE(scan(1, &r).ok());
  EXPECT_EQ(r.last_sequence, 15u);
}

TEST_F(ScanTest, WrongSequenceWithValidChecksumIsCorruption) {
  fill(1, 5, 100);
  fill(7, 1, 100);  // 6 skipped
  SegmentScanResult r;
  EXPECT_EQ(scan(1, &r).code(), absl::StatusCode::kDataLoss);
}

TEST_F(ScanTest, VisitorErrorStopsTheScan) {
  fill(1, 5, 100);
  SegmentScanResult r;
  int calls = 0;
  const absl::Status s = scan_segment(
      segment_, header_, 1,
      [&](const RecoveredRecord&) {
        return ++calls == 3 ? absl::AbortedError("stop") : absl::OkStatus();
      },
      &r);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace herald::storage

// Segment summaries (summary.h): the file format's strict decoding, and the log writing them at
// rotation, reading segments through them at open, falling back to the segment when one is
// damaged or misplaced, rewriting it, and removing leftovers.
#include "controlplane/storage/summary.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "controlplane/storage/log.h"
#include "controlplane/storage/sim_disk.h"

namespace herald::storage {
namespace {

std::vector<uint8_t> bytes_of(size_t size, uint8_t seed) {
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(seed + i * 13);
  return out;
}
// The first `n` bytes of bytes_of(size, seed).
std::vector<uint8_t> prefix_of(size_t size, uint8_t seed, size_t n) {
  std::vector<uint8_t> out = bytes_of(size, seed);
  out.resize(n);
  return out;
}

// A body of three entries describing records of payload 10 (kept 4), 0 and 300 (kept whole).
struct Sample {
  SummaryHeader header;
  std::vector<uint8_t> body;
  std::vector<uint8_t> file;
};
Sample sample() {
  Sample s;
  const std::vector<uint8_t> a = bytes_of(10, 1);
  const std::vector<uint8_t> c = bytes_of(300, 7);
  append_summary_entry(s.body, 16, 10, std::span<const uint8_t>(a).first(4));
  append_summary_entry(s.body, 17, 0, {});
  append_summary_entry(s.body, 18, 300, c);
  s.header.segment_index = 5;
  s.header.first_sequence = 100;
  s.header.record_count = 3;
  s.header.end_offset =
      kBlockBytes + record_size_bytes(10) + record_size_bytes(0) + record_size_bytes(300);
  s.file = encode_summary_file(s.header, s.body);
  return s;
}

absl::Status decode_file(std::span<const uint8_t> file, std::vector<RecoveredRecord>* out) {
  SummaryHeader header;
  if (absl::Status st = decode_summary_header(file.first(kBlockBytes), &header); !st.ok()) {
    return st;
  }
  return decode_summary_body(file.subspan(kBlockBytes), header, 4096, out);
}

TEST(SummaryFormat, RoundTrip) {
  const Sample s = sample();
  EXPECT_EQ(s.file.size() % kBlockBytes, 0u);
  std::vector<RecoveredRecord> records;
  ASSERT_TRUE(decode_file(s.file, &records).ok());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].location.sequence, 100u);
  EXPECT_EQ(records[0].location.segment_index, 5u);
  EXPECT_EQ(records[0].location.offset, kBlockBytes);
  EXPECT_EQ(records[0].location.size_bytes, record_size_bytes(10));
  EXPECT_EQ(records[0].type, 16);
  EXPECT_TRUE(records[0].payload_truncated());
  EXPECT_EQ(records[0].payload_size(), 10u);
  EXPECT_EQ(std::vector<uint8_t>(records[0].payload.begin(), records[0].payload.end()),
            prefix_of(10, 1, 4));
  EXPECT_EQ(records[1].location.offset, kBlockBytes + record_size_bytes(10));
  EXPECT_FALSE(records[1].payload_truncated());
  EXPECT_EQ(records[1].payload_size(), 0u);
  EXPECT_EQ(records[2].location.sequence, 102u);
  EXPECT_FALSE(records[2].payload_truncated());
  EXPECT_EQ(std::vector<uint8_t>(records[2].payload.begin(), records[2].payload.end()),
            bytes_of(300, 7));
}

// Recovery decodes a checked body a run at a time (SummaryRecords::next): runs of any length
// give the records decode_summary_body gives, in order, and end exactly at the last one.
TEST(SummaryFormat, RunsOfAnyLengthGiveTheSameRecords) {
  const Sample s = sample();
  std::vector<RecoveredRecord> whole;
  ASSERT_TRUE(decode_file(s.file, &whole).ok());
  SummaryHeader header;
  ASSERT_TRUE(
      decode_summary_header(std::span<const uint8_t>(s.file).first(kBlockBytes), &header).ok());
  const std::span<const uint8_t> body = std::span<const uint8_t>(s.file).subspan(kBlockBytes);
  ASSERT_TRUE(SummaryRecords::check(body, header, 4096).ok());
  for (size_t run_length : {1, 2, 3, 1024}) {
    SummaryRecords records(body, header, 4096);
    std::vector<RecoveredRecord> run;
    size_t seen = 0;
    while (!records.done()) {
      records.next(run_length, &run);
      ASSERT_FALSE(run.empty());
      ASSERT_LE(run.size(), run_length);
      for (const RecoveredRecord& r : run) {
        ASSERT_LT(seen, whole.size());
        EXPECT_EQ(r.location.sequence, whole[seen].location.sequence);
        EXPECT_EQ(r.location.offset, whole[seen].location.offset);
        EXPECT_EQ(r.type, whole[seen].type);
        EXPECT_EQ(r.payload.data(), whole[seen].payload.data());
        EXPECT_EQ(r.payload_size(), whole[seen].payload_size());
        ++seen;
      }
    }
    EXPECT_EQ(seen, whole.size()) << run_length;
  }
}

TEST(SummaryFormat, EveryFlippedBitIsCaught) {
  const Sample s = sample();
  const size_t used = kBlockBytes + s.body.size();
  for (size_t byte = 0; byte < used; ++byte) {
    if (byte >= 64 && byte < kBlockBytes) continue;  // the header block's zero padding
    std::vector<uint8_t> bad = s.file;
    bad[byte] ^= 0x10;
    std::vector<RecoveredRecord> records;
    EXPECT_EQ(decode_file(bad, &records).code(), absl::StatusCode::kDataLoss) << byte;
    EXPECT_TRUE(records.empty());
  }
}

TEST(SummaryFormat, EntriesMustMatchTheHeaderExactly) {
  const Sample s = sample();
  const auto rejects = [](SummaryHeader header, const std::vector<uint8_t>& body) {
    const std::vector<uint8_t> file = encode_summary_file(header, body);  // a valid CRC
    std::vector<RecoveredRecord> records;
    const absl::Status st = decode_file(file, &records);
    return st.code() == absl::StatusCode::kDataLoss && records.empty();
  };
  SummaryHeader h = s.header;
  h.record_count = 2;  // an entry left over
  EXPECT_TRUE(rejects(h, s.body));
  h = s.header;
  h.record_count = 4;  // one missing
  EXPECT_TRUE(rejects(h, s.body));
  h = s.header;
  h.end_offset -= kRecordAlignBytes;  // the last record reaches past the segment's end
  EXPECT_TRUE(rejects(h, s.body));
  h = s.header;
  h.end_offset += kRecordAlignBytes;  // a gap after the last record
  EXPECT_TRUE(rejects(h, s.body));
  std::vector<uint8_t> body;
  append_summary_entry(body, 16, 3, bytes_of(4, 0));  // more kept than the payload
  h = s.header;
  h.record_count = 1;
  h.end_offset = kBlockBytes + record_size_bytes(3);
  EXPECT_TRUE(rejects(h, body));
  body.clear();
  append_summary_entry(body, 0, 0, {});  // type 0 is never a record
  h.end_offset = kBlockBytes + record_size_bytes(0);
  EXPECT_TRUE(rejects(h, body));
  body.clear();
  append_summary_entry(body, 16, 5000, {});  // beyond max_payload_bytes (4096 here)
  h.end_offset = kBlockBytes + record_size_bytes(5000);
  EXPECT_TRUE(rejects(h, body));
  body = {16, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};  // a varint that never ends in 5 bytes
  h.end_offset = kBlockBytes + record_size_bytes(0);
  EXPECT_TRUE(rejects(h, body));
}

TEST(SummaryFormat, FileNames) {
  uint64_t index = 0;
  EXPECT_EQ(summary_file_name(0xa3), "log-00000000000000a3.sum");
  EXPECT_EQ(summary_temp_file_name(0xa3), "log-00000000000000a3.sum.tmp");
  EXPECT_TRUE(parse_summary_file_name("log-00000000000000a3.sum", &index));
  EXPECT_EQ(index, 0xa3u);
  EXPECT_FALSE(parse_summary_file_name("log-00000000000000a3.sum.tmp", &index));
  EXPECT_FALSE(parse_summary_file_name("log-00000000000000a3.seg", &index));
  EXPECT_FALSE(parse_summary_file_name("log-00000000000000A3.sum", &index));
  EXPECT_TRUE(is_summary_temp_file_name("log-00000000000000a3.sum.tmp"));
  EXPECT_FALSE(is_summary_temp_file_name("log-00000000000000a3.sum"));
}

// --- The log with summaries on the simulated disk ---------------------------------------------

constexpr uint8_t kBig = 20;    // summaries keep 4 bytes of its payload
constexpr uint8_t kSmall = 21;  // summaries keep it whole

uint32_t keep(uint8_t type, std::span<const uint8_t> payload) {
  return type == kBig ? 4 : static_cast<uint32_t>(payload.size());
}

LogOptions summary_options() {
  LogOptions o;
  o.segment_size_bytes = 64 * 1024;
  o.group_commit_bytes = 8 * 1024;
  o.group_commit_delay_us = 1000;
  o.max_write_bytes = 16 * 1024;
  o.max_payload_bytes = 2048;
  o.max_staged_bytes = 1 << 20;
  o.summary_payload_bytes = &keep;
  return o;
}

struct Seen {
  RecordLocation location;
  uint8_t type;
  std::vector<uint8_t> payload;  // what the visitor got
  uint64_t payload_size;
  bool operator==(const Seen& o) const {
    return location.sequence == o.location.sequence &&
           location.segment_index == o.location.segment_index &&
           location.offset == o.location.offset && location.size_bytes == o.location.size_bytes &&
           type == o.type && payload == o.payload && payload_size == o.payload_size;
  }
};

class SummaryLogTest : public ::testing::Test {
 protected:
  SummaryLogTest() {
    SimDiskOptions d;
    d.min_latency_ns = d.max_latency_ns = 10'000;
    disk_ = std::make_unique<SimDisk>(d);
  }

  // Opens and returns what the visitor saw, each record reduced to what a summary keeps (so
  // an open through summaries and one through segments compare equal).
  std::vector<Seen> open(const LogOptions& options = summary_options()) {
    log_.reset();
    std::vector<Seen> seen;
    std::optional<absl::StatusOr<std::unique_ptr<Log>>> result;
    expected_records_ = 0;
    Log::open_batched(
        *disk_, options,
        [&](std::span<const RecoveredRecord> records) {
          for (const RecoveredRecord& r : records) {
            const size_t kept = std::min<size_t>(keep(r.type, r.payload), r.payload.size());
            seen.push_back({r.location, r.type,
                            std::vector<uint8_t>(r.payload.begin(), r.payload.begin() + kept),
                            r.payload_size()});
          }
          return absl::OkStatus();
        },
        [&](absl::StatusOr<std::unique_ptr<Log>> log) { result.emplace(std::move(log)); },
        [&](uint64_t records) { expected_records_ = records; });
    while (!result.has_value() && disk_->step()) {
    }
    EXPECT_TRUE(result.has_value() && result->ok());
    if (result.has_value() && result->ok()) log_ = std::move(**result);
    disk_->run_until_idle();  // preallocation and summary writes
    return seen;
  }

  void append_many(int n) {
    for (int i = 0; i < n; ++i) {
      const bool big = i % 3 != 0;
      const std::vector<uint8_t> payload = bytes_of(big ? 700 : 24, static_cast<uint8_t>(i));
      ASSERT_TRUE(log_->append(big ? kBig : kSmall, payload, nullptr).ok());
    }
    disk_->run_until_idle();
  }

  bool exists(const std::string& name) {
    auto files = disk_->list_files();
    return files.ok() && std::find(files->begin(), files->end(), name) != files->end();
  }

  std::unique_ptr<SimDisk> disk_;
  std::unique_ptr<Log> log_;
  uint64_t expected_records_ = 0;
};

TEST_F(SummaryLogTest, WrittenAtRotationAndReadInsteadOfSegments) {
  open();
  append_many(400);  // about 190 KB: several 64 KiB segments
  const uint64_t sealed = log_->sealed_segments().size();
  ASSERT_GE(sealed, 3u);
  EXPECT_EQ(log_->stats().summaries_written, sealed);
  EXPECT_EQ(log_->stats().summary_write_errors, 0u);
  for (const SegmentInfo& s : log_->sealed_segments()) {
    EXPECT_TRUE(exists(summary_file_name(s.index))) << s.index;
  }
  EXPECT_FALSE(exists(summary_file_name(log_->sealed_segments().back().index + 1)))
      << "the segment being appended to has none";

  LogOptions scan = summary_options();
  scan.summary_payload_bytes = nullptr;
  const std::vector<Seen> by_scan = open(scan);
  EXPECT_EQ(log_->stats().segments_from_summaries, 0u);
  const std::vector<Seen> by_summary = open();
  EXPECT_EQ(log_->stats().segments_from_summaries, sealed);
  EXPECT_EQ(log_->stats().summary_fallbacks, 0u);
  ASSERT_EQ(by_scan.size(), 400u);
  EXPECT_TRUE(by_summary == by_scan) << "the same records, locations and kept payloads";
  uint64_t in_summaries = 0;
  for (const Seen& s : by_summary) in_summaries += s.location.segment_index <= sealed - 1 ? 1 : 0;
  EXPECT_EQ(expected_records_, in_summaries) << "expect_records counts what the summaries hold";
  // Reads through summary locations find the records themselves.
  std::optional<absl::StatusOr<ReadRecord>> read;
  log_->read(by_summary[1].location, [&](absl::StatusOr<ReadRecord> r) { read.emplace(r); });
  disk_->run_until_idle();
  ASSERT_TRUE(read.has_value() && read->ok());
  EXPECT_EQ((*read)->payload, bytes_of(700, 1));
}

TEST_F(SummaryLogTest, DamagedSummaryFallsBackToTheSegmentAndIsWrittenAgain) {
  open();
  append_many(400);
  const std::vector<Seen> before = open();
  disk_->corrupt_durable(summary_file_name(1), kBlockBytes + 40, 0x01);  // in its body
  disk_->corrupt_durable(summary_file_name(2), 20, 0x01);                // in its header
  const std::vector<Seen> after = open();
  EXPECT_EQ(log_->stats().summary_fallbacks, 2u);
  EXPECT_TRUE(after == before);
  EXPECT_EQ(log_->stats().summaries_written, 2u) << "the damaged ones, written again";
  open();
  EXPECT_EQ(log_->stats().summary_fallbacks, 0u);
}

TEST_F(SummaryLogTest, SummaryOfAnotherSegmentIsNotUsed) {
  open();
  append_many(400);
  const std::vector<Seen> before = open();
  // Segment 1's summary under segment 0's name: it names another segment and does not start
  // the log's sequence where segment 0 does.
  bool renamed = false;
  disk_->rename(summary_file_name(1), summary_file_name(0), [&](int32_t r) { renamed = r == 0; });
  disk_->run_until_idle();
  ASSERT_TRUE(renamed);
  const std::vector<Seen> after = open();
  EXPECT_EQ(log_->stats().summary_fallbacks, 1u);
  EXPECT_TRUE(after == before);
  EXPECT_EQ(log_->stats().summaries_written, 2u) << "both segments get theirs back";
}

TEST_F(SummaryLogTest, LeftoversAreRemovedAndRetiredSegmentsTakeTheirSummaries) {
  open();
  append_many(400);
  // A temporary file left by a crash mid-write.
  bool created = false;
  disk_->create(summary_temp_file_name(9), kBlockBytes, [&](int32_t fd) {
    created = fd >= 0;
    if (fd >= 0) disk_->close(fd);
  });
  disk_->run_until_idle();
  ASSERT_TRUE(created);
  std::optional<absl::Status> retired;
  log_->retire_segment(0, [&](const absl::Status& s) { retired = s; });
  disk_->run_until_idle();
  ASSERT_TRUE(retired.has_value() && retired->ok());
  EXPECT_FALSE(exists(summary_file_name(0)));
  open();
  EXPECT_FALSE(exists(summary_temp_file_name(9)));
  EXPECT_EQ(log_->stats().stale_summaries_removed, 1u);
}

TEST_F(SummaryLogTest, CrashesDuringSummaryWritesLoseNothing) {
  uint64_t cut_short = 0;  // crashes that left a summary half written
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SimDiskOptions d;
    d.seed = seed;
    d.min_latency_ns = 5'000;
    d.max_latency_ns = 80'000;
    log_.reset();  // it belongs to the previous seed's disk
    disk_ = std::make_unique<SimDisk>(d);
    open();
    uint64_t durable = 0;
    for (int i = 0; i < 300; ++i) {
      const std::vector<uint8_t> payload = bytes_of(700, static_cast<uint8_t>(i));
      ASSERT_TRUE(log_->append(kBig, payload,
                               [&durable](const absl::Status& s, const RecordLocation&) {
                                 if (s.ok()) ++durable;
                               })
                      .ok());
      if (i % 7 == 0) disk_->step();
    }
    // Crash somewhere in the middle of the rotations and summary writes.
    for (uint64_t steps = seed * 37 % 200; steps > 0 && disk_->step(); --steps) {
    }
    disk_->crash();
    log_.reset();
    const std::vector<Seen> seen = open();
    cut_short += log_->stats().stale_summaries_removed;
    ASSERT_GE(seen.size(), durable) << "seed " << seed;
    for (size_t i = 0; i < seen.size(); ++i) {
      ASSERT_EQ(seen[i].location.sequence, i + 1) << "seed " << seed;
      ASSERT_EQ(seen[i].payload_size, 700u) << "seed " << seed;
      ASSERT_EQ(seen[i].payload, prefix_of(700, static_cast<uint8_t>(i), 4)) << "seed " << seed;
    }
    const std::vector<Seen> again = open();
    EXPECT_TRUE(again == seen) << "seed " << seed;
  }
  EXPECT_GT(cut_short, 0u) << "no crash hit a summary write: the test does not test it";
}

}  // namespace
}  // namespace herald::storage

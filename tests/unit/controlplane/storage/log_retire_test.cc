// Tests of log segment retirement (Log::retire_segment) and the manifest on the simulated disk:
// retiring the oldest and a middle segment, reads and recovery never returning retired records,
// crashes around a retirement, and a segment that vanished without being retired.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/storage/log.h"
#include "controlplane/storage/sim_disk.h"

namespace herald::storage {
namespace {

LogOptions small_options() {
  LogOptions o;
  o.segment_size_bytes = 64 * 1024;
  o.group_commit_bytes = 8 * 1024;
  o.group_commit_delay_us = 1000;
  o.max_write_bytes = 16 * 1024;
  o.max_payload_bytes = 2048;
  o.max_staged_bytes = 1 << 20;
  return o;
}

std::vector<uint8_t> payload_for(uint64_t sequence) {
  std::vector<uint8_t> p(1000);
  for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<uint8_t>(sequence * 31 + k * 7 + 1);
  return p;
}

std::string name_of(uint64_t index) {
  char name[kSegmentNameBytes + 1];
  segment_file_name(index, name);
  return name;
}

class LogRetireTest : public ::testing::Test {
 protected:
  void make_disk(uint64_t seed) {
    log_.reset();
    SimDiskOptions d;
    d.seed = seed;
    disk_ = std::make_unique<SimDisk>(d);
  }

  absl::Status open() {
    log_.reset();
    recovered_.clear();
    std::optional<absl::StatusOr<std::unique_ptr<Log>>> result;
    Log::open(
        *disk_, small_options(),
        [this](const RecoveredRecord& r) {
          EXPECT_EQ(std::vector<uint8_t>(r.payload.begin(), r.payload.end()),
                    payload_for(r.location.sequence));
          recovered_[r.location.sequence] = r.location;
          return absl::OkStatus();
        },
        [&](absl::StatusOr<std::unique_ptr<Log>> log) { result.emplace(std::move(log)); });
    while (!result.has_value() && disk_->step()) {
    }
    if (!result.has_value()) return absl::InternalError("open never completed");
    if (!result->ok()) return result->status();
    log_ = std::move(**result);
    return absl::OkStatus();
  }

  // Appends until `segments` segments are sealed, and waits until everything is durable.
  void fill(size_t segments) {
    while (log_->sealed_segments().size() < segments) {
      const uint64_t seq = log_->next_sequence();
      auto r = log_->append(20, payload_for(seq),
                            [this](const absl::Status& s, const RecordLocation& where) {
                              if (s.ok()) durable_[where.sequence] = where;
                            });
      ASSERT_TRUE(r.ok()) << r.status();
      disk_->run_until_idle();
    }
  }

  absl::Status retire(uint64_t index) {
    std::optional<absl::Status> status;
    log_->retire_segment(index, [&](const absl::Status& s) { status = s; });
    EXPECT_FALSE(status.has_value()) << "completed inside the call";
    disk_->run_until_idle();
    return status.value_or(absl::InternalError("retire never completed"));
  }

  bool exists(const std::string& name) { return !disk_->durable_contents(name).empty(); }

  std::unique_ptr<SimDisk> disk_;
  std::unique_ptr<Log> log_;
  std::map<uint64_t, RecordLocation> recovered_;
  std::map<uint64_t, RecordLocation> durable_;
};

TEST_F(LogRetireTest, SealedSegmentsDescribeTheLog) {
  make_disk(1);
  ASSERT_TRUE(open().ok());
  fill(4);
  const std::vector<SegmentInfo> sealed = log_->sealed_segments();
  ASSERT_GE(sealed.size(), 4u);
  uint64_t expected = 1;
  for (size_t i = 0; i < sealed.size(); ++i) {
    EXPECT_EQ(sealed[i].index, i);
    EXPECT_EQ(sealed[i].first_sequence, expected);
    EXPECT_EQ(sealed[i].last_sequence - sealed[i].first_sequence + 1, sealed[i].record_count);
    EXPECT_GT(sealed[i].record_count, 0u);
    expected = sealed[i].last_sequence + 1;
  }
  // After a restart the same segments are sealed, and the newest (not reused: it holds data)
  // too.
  ASSERT_TRUE(open().ok());
  const std::vector<SegmentInfo> again = log_->sealed_segments();
  ASSERT_GE(again.size(), sealed.size());
  for (size_t i = 0; i < sealed.size(); ++i) {
    EXPECT_EQ(again[i].index, sealed[i].index);
    EXPECT_EQ(again[i].first_sequence, sealed[i].first_sequence);
    EXPECT_EQ(again[i].last_sequence, sealed[i].last_sequence);
  }
}

TEST_F(LogRetireTest, RetireMiddleThenOldestAcrossRestarts) {
  make_disk(2);
  ASSERT_TRUE(open().ok());
  fill(5);
  const std::vector<SegmentInfo> sealed = log_->sealed_segments();
  const SegmentInfo middle = sealed[2];
  ASSERT_TRUE(retire(middle.index).ok());
  EXPECT_FALSE(exists(name_of(middle.index)));
  EXPECT_TRUE(exists(kManifestFileName));
  EXPECT_EQ(log_->stats().segments_retired, 1u);
  for (const SegmentInfo& s : log_->sealed_segments()) EXPECT_NE(s.index, middle.index);

  // Reads of retired records are NotFound; others still read back.
  std::optional<absl::StatusOr<ReadRecord>> read;
  log_->read(durable_.at(middle.first_sequence), [&](absl::StatusOr<ReadRecord> r) { read = r; });
  disk_->run_until_idle();
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->status().code(), absl::StatusCode::kNotFound);
  read.reset();
  log_->read(durable_.at(1), [&](absl::StatusOr<ReadRecord> r) { read = r; });
  disk_->run_until_idle();
  ASSERT_TRUE(read.has_value() && read->ok());
  EXPECT_EQ(read->value().payload, payload_for(1));

  const uint64_t next = log_->next_sequence();
  ASSERT_TRUE(open().ok());
  EXPECT_EQ(log_->next_sequence(), next);
  for (const auto& [seq, where] : durable_) {
    const bool retired = seq >= middle.first_sequence && seq <= middle.last_sequence;
    EXPECT_EQ(recovered_.count(seq), retired ? 0u : 1u) << seq;
  }

  // The oldest two go as well; the manifest folds 0..2 into its low mark.
  ASSERT_TRUE(retire(0).ok());
  ASSERT_TRUE(retire(1).ok());
  EXPECT_EQ(log_->manifest().low_index, 3u);
  EXPECT_TRUE(log_->manifest().retired.empty());
  EXPECT_EQ(log_->manifest().low_next_sequence, middle.last_sequence + 1);
  ASSERT_TRUE(open().ok());
  EXPECT_EQ(log_->next_sequence(), next);
  EXPECT_EQ(recovered_.begin()->first, middle.last_sequence + 1);
  EXPECT_EQ(log_->sealed_segments().front().index, 3u);
}

TEST_F(LogRetireTest, RefusesUnsealedAndTwice) {
  make_disk(3);
  ASSERT_TRUE(open().ok());
  fill(2);
  EXPECT_EQ(retire(99).code(), absl::StatusCode::kNotFound);
  const uint64_t current = log_->sealed_segments().back().index + 1;
  EXPECT_EQ(retire(current).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(retire(0).ok());
  EXPECT_EQ(retire(0).code(), absl::StatusCode::kNotFound);
}

TEST_F(LogRetireTest, VanishedSegmentIsDetected) {
  for (uint64_t victim : {0u, 2u}) {
    make_disk(4 + victim);
    ASSERT_TRUE(open().ok());
    fill(4);
    log_.reset();
    std::optional<int32_t> removed;
    disk_->remove(name_of(victim), [&](int32_t r) { removed = r; });
    disk_->run_until_idle();
    ASSERT_EQ(removed, 0);
    const absl::Status s = open();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << victim << ": " << s;
  }
}

TEST_F(LogRetireTest, VanishedSegmentNextToARetiredOneIsDetected) {
  make_disk(9);
  ASSERT_TRUE(open().ok());
  fill(5);
  ASSERT_TRUE(retire(1).ok());
  log_.reset();
  disk_->remove(name_of(2), [](int32_t) {});
  disk_->run_until_idle();
  EXPECT_EQ(open().code(), absl::StatusCode::kDataLoss);
}

TEST_F(LogRetireTest, RetiringEverySealedSegmentKeepsTheSequence) {
  make_disk(10);
  ASSERT_TRUE(open().ok());
  fill(3);
  const uint64_t next = log_->next_sequence();
  ASSERT_TRUE(open().ok());  // the newest segment is sealed too now
  for (const SegmentInfo& s : log_->sealed_segments()) ASSERT_TRUE(retire(s.index).ok());
  EXPECT_TRUE(log_->sealed_segments().empty());
  // Crash before anything else is written (the fresh segment may not even exist).
  disk_->crash();
  log_.reset();
  ASSERT_TRUE(open().ok());
  EXPECT_TRUE(recovered_.empty());
  EXPECT_EQ(log_->next_sequence(), next);
}

// A crash at every point of a retirement: the open succeeds, the retired segment's records are
// all there or all gone (all gone once its callback said OK), and nothing else is missing.
TEST_F(LogRetireTest, CrashAroundRetirement) {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    make_disk(100 + seed);
    ASSERT_TRUE(open().ok());
    durable_.clear();
    fill(4);
    const SegmentInfo victim = log_->sealed_segments()[1 + seed % 2];
    std::optional<absl::Status> status;
    log_->retire_segment(victim.index, [&](const absl::Status& s) { status = s; });
    const uint64_t steps = seed % 12;
    for (uint64_t i = 0; i < steps && disk_->step(); ++i) {
    }
    disk_->crash();
    log_.reset();
    ASSERT_TRUE(open().ok()) << "seed " << seed;
    size_t kept = 0;
    for (const auto& [seq, where] : durable_) {
      const bool in_victim = seq >= victim.first_sequence && seq <= victim.last_sequence;
      if (in_victim) {
        kept += recovered_.count(seq);
      } else {
        ASSERT_EQ(recovered_.count(seq), 1u) << "seed " << seed << " seq " << seq;
      }
    }
    EXPECT_TRUE(kept == 0 || kept == victim.record_count) << "seed " << seed;
    if (status.has_value() && status->ok()) {
      EXPECT_EQ(kept, 0u) << "seed " << seed;
    }
    if (kept == 0) {
      EXPECT_FALSE(exists(name_of(victim.index))) << "seed " << seed;
    }
    // The log goes on: appends work and a second restart agrees.
    disk_->run_until_idle();
    ASSERT_TRUE(log_->append(20, payload_for(log_->next_sequence()), nullptr).ok());
    log_->flush();
    disk_->run_until_idle();
    const size_t before = recovered_.size();
    ASSERT_TRUE(open().ok()) << "seed " << seed;
    EXPECT_EQ(recovered_.size(), before + 1) << "seed " << seed;
  }
}

TEST(LogManifestTest, RoundTripAndCorruption) {
  LogManifest m;
  const SegmentInfo segments[] = {{3, 200, 299, 100}, {5, 400, 499, 100}, {0, 1, 99, 99}};
  manifest_add(m, segments);
  EXPECT_EQ(m.low_index, 1u);
  EXPECT_EQ(m.low_next_sequence, 100u);
  ASSERT_EQ(m.retired.size(), 2u);
  std::vector<uint8_t> bytes = encode_manifest(m);
  EXPECT_EQ(bytes.size() % kBlockBytes, 0u);
  LogManifest back;
  ASSERT_TRUE(decode_manifest(bytes, &back).ok());
  EXPECT_EQ(back.low_index, 1u);
  EXPECT_EQ(back.low_next_sequence, 100u);
  ASSERT_EQ(back.retired.size(), 2u);
  EXPECT_EQ(back.retired[1].index, 5u);
  EXPECT_EQ(back.retired[1].last_sequence, 499u);
  bytes[40] ^= 1;
  EXPECT_EQ(decode_manifest(bytes, &back).code(), absl::StatusCode::kDataLoss);
  std::vector<uint8_t> zeros(kBlockBytes, 0);
  EXPECT_EQ(decode_manifest(zeros, &back).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace herald::storage

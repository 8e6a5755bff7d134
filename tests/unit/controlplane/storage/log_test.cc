// Tests of the durable log on the simulated disk: group commit by size and by time (virtual
// time is the fake clock), fail-stop on sync and write errors, rotation, recovery, limits.
#include "controlplane/storage/log.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "controlplane/storage/sim_disk.h"

namespace herald::storage {
namespace {

struct Recovered {
  uint64_t sequence;
  uint8_t type;
  std::vector<uint8_t> payload;
};

absl::StatusOr<std::unique_ptr<Log>> open_log(SimDisk& disk, const LogOptions& options,
                                              std::vector<Recovered>* out) {
  std::optional<absl::StatusOr<std::unique_ptr<Log>>> result;
  Log::open(
      disk, options,
      [out](const RecoveredRecord& r) {
        if (out != nullptr) {
          out->push_back({r.location.sequence, r.type,
                          std::vector<uint8_t>(r.payload.begin(), r.payload.end())});
        }
        return absl::OkStatus();
      },
      [&](absl::StatusOr<std::unique_ptr<Log>> log) { result.emplace(std::move(log)); });
  while (!result.has_value() && disk.step()) {
  }
  if (!result.has_value()) return absl::InternalError("open never completed");
  return std::move(*result);
}

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

SimDiskOptions fixed_latency_disk() {
  SimDiskOptions o;
  o.min_latency_ns = o.max_latency_ns = 10'000;
  o.sync_extra_latency_ns = 50'000;
  return o;
}

std::vector<uint8_t> payload_for(uint64_t i, size_t size) {
  std::vector<uint8_t> p(size);
  for (size_t k = 0; k < size; ++k) p[k] = static_cast<uint8_t>(i * 31 + k * 7 + 1);
  return p;
}

class LogTest : public ::testing::Test {
 protected:
  void open(const LogOptions& options = small_options()) {
    recovered_.clear();
    auto log = open_log(*disk_, options, &recovered_);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    disk_->run_until_idle();  // the first segment's preallocation
  }
  // Appends and records each durable callback's outcome in `results_`.
  uint64_t append(size_t size, uint8_t type = 20) {
    const uint64_t i = appended_.size();
    appended_.push_back(payload_for(i, size));
    auto seq = log_->append(type, appended_.back(),
                            [this](const absl::Status& s, const RecordLocation& where) {
                              results_.push_back({s, where});
                            });
    EXPECT_TRUE(seq.ok()) << seq.status();
    return seq.ok() ? *seq : 0;
  }

  std::unique_ptr<SimDisk> disk_ = std::make_unique<SimDisk>(fixed_latency_disk());
  std::unique_ptr<Log> log_;
  std::vector<Recovered> recovered_;
  std::vector<std::vector<uint8_t>> appended_;
  struct Result {
    absl::Status status;
    RecordLocation where;
  };
  std::vector<Result> results_;
};

TEST_F(LogTest, AppendsBecomeDurableInOrder) {
  open();
  for (int i = 0; i < 300; ++i) EXPECT_EQ(append(100), static_cast<uint64_t>(i + 1));
  EXPECT_TRUE(results_.empty());  // never inside append()
  disk_->run_until_idle();
  ASSERT_EQ(results_.size(), 300u);
  for (size_t i = 0; i < results_.size(); ++i) {
    EXPECT_TRUE(results_[i].status.ok());
    EXPECT_EQ(results_[i].where.sequence, i + 1);
    if (i > 0 && results_[i].where.segment_index == results_[i - 1].where.segment_index) {
      EXPECT_EQ(results_[i].where.offset,
                results_[i - 1].where.offset + results_[i - 1].where.size_bytes);
    }
  }
  EXPECT_EQ(log_->durable_sequence(), 300u);
  EXPECT_TRUE(log_->idle());
  EXPECT_GT(log_->stats().segments_created, 1u);  // 300 x 120 B crosses a 64 KiB segment
}

TEST_F(LogTest, GroupCommitBySize) {
  LogOptions o = small_options();
  o.group_commit_bytes = 4096;
  o.group_commit_delay_us = 1'000'000;
  open(o);
  const uint64_t batches = log_->stats().batches;
  // 30 x 120 B = 3600 B: under the threshold, so nothing goes out before the delay.
  for (int i = 0; i < 30; ++i) append(100);
  disk_->run_until(disk_->now_ns() + 500'000);
  EXPECT_EQ(log_->stats().batches, batches);
  EXPECT_TRUE(results_.empty());
  for (int i = 0; i < 5; ++i) append(100);  // crosses 4096 B: the batch starts at once
  EXPECT_EQ(log_->stats().batches, batches + 1);
  EXPECT_EQ(log_->stats().batches_by_size, 1u);
  disk_->run_until(disk_->now_ns() + 200'000);
  EXPECT_EQ(results_.size(), 35u);
}

TEST_F(LogTest, GroupCommitByTime) {
  open();
  const uint64_t t0 = disk_->now_ns();
  append(50);
  disk_->run_until(t0 + 999'000);
  EXPECT_EQ(log_->stats().batches, 0u);
  append(50);  // a later append does not restart the clock
  disk_->run_until(t0 + 1'000'000);
  EXPECT_EQ(log_->stats().batches, 1u);
  EXPECT_EQ(log_->stats().batches_by_time, 1u);
  EXPECT_TRUE(results_.empty());  // the write and sync are still in flight
  disk_->run_until_idle();
  ASSERT_EQ(results_.size(), 2u);
  EXPECT_GE(disk_->now_ns(), t0 + 1'000'000);
}

TEST_F(LogTest, FlushSendsAtOnce) {
  open();
  append(50);
  log_->flush();
  EXPECT_EQ(log_->stats().batches, 1u);
  disk_->run_until_idle();
  EXPECT_EQ(results_.size(), 1u);
}

TEST_F(LogTest, AppendsDuringABatchGatherForTheNext) {
  open();
  append(50);
  log_->flush();
  for (int i = 0; i < 10; ++i) append(50);
  log_->flush();  // one batch in flight: the rest waits for it
  EXPECT_EQ(log_->stats().batches, 1u);
  disk_->run_until_idle();
  EXPECT_EQ(log_->stats().batches, 2u);
  EXPECT_EQ(results_.size(), 11u);
}

class FailStopTest : public LogTest, public ::testing::WithParamInterface<bool> {};

TEST_P(FailStopTest, ErrorFailsEveryPendingAndLaterAppendWithoutRetry) {
  SimDiskOptions d = fixed_latency_disk();
  if (GetParam()) {
    d.sync_error_probability = 1;
  } else {
    d.write_error_probability = 1;
  }
  disk_ = std::make_unique<SimDisk>(d);
  open();
  append(100);
  append(100);
  log_->flush();
  for (int i = 0; i < 5; ++i) append(100);  // staged behind the batch in flight
  disk_->set_faults_enabled(true);
  disk_->run_until_idle();
  ASSERT_EQ(results_.size(), 7u);
  for (const Result& r : results_) EXPECT_FALSE(r.status.ok());
  EXPECT_TRUE(log_->failed());
  EXPECT_EQ(log_->stats().batches, 1u);  // nothing retried, the staged records never written
  auto again = log_->append(20, payload_for(0, 10), [](const absl::Status&, const RecordLocation&) {
    ADD_FAILURE() << "callback of a refused append";
  });
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(log_->durable_sequence(), 0u);
  disk_->run_until_idle();
  EXPECT_TRUE(log_->idle());
}

INSTANTIATE_TEST_SUITE_P(SyncOrWrite, FailStopTest, ::testing::Bool());

TEST_F(LogTest, RecoveryReturnsEverythingDurableAcrossSegments) {
  open();
  for (int i = 0; i < 700; ++i) append(static_cast<size_t>(i % 300));
  disk_->run_until_idle();
  ASSERT_EQ(results_.size(), 700u);
  log_.reset();
  open();
  ASSERT_EQ(recovered_.size(), 700u);
  for (size_t i = 0; i < recovered_.size(); ++i) {
    EXPECT_EQ(recovered_[i].sequence, i + 1);
    EXPECT_EQ(recovered_[i].payload, appended_[i]);
  }
  EXPECT_EQ(log_->next_sequence(), 701u);
  EXPECT_EQ(append(10), 701u);
  disk_->run_until_idle();
  log_.reset();
  open();
  EXPECT_EQ(recovered_.size(), 701u);
}

TEST_F(LogTest, CrashKeepsEveryAcknowledgedRecord) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SimDiskOptions d = fixed_latency_disk();
    d.seed = seed;
    log_.reset();
    disk_ = std::make_unique<SimDisk>(d);
    appended_.clear();
    results_.clear();
    open();
    for (int i = 0; i < 100; ++i) append(200);
    disk_->run_until_idle();
    for (int i = 0; i < 100; ++i) append(200);
    log_->flush();
    disk_->step();  // the next batch is in flight: its write may be torn, its sync not done
    disk_->crash();
    log_.reset();
    const size_t acked = results_.size();
    open();
    ASSERT_GE(recovered_.size(), acked) << "seed " << seed;
    for (size_t i = 0; i < recovered_.size(); ++i) {
      ASSERT_EQ(recovered_[i].payload, appended_[i]) << "seed " << seed;
    }
  }
}

TEST_F(LogTest, CorruptionInTheMiddleFailsTheOpen) {
  open();
  for (int i = 0; i < 1000; ++i) append(100);
  disk_->run_until_idle();
  log_.reset();
  // A bit flip well inside the first segment, which later segments follow.
  disk_->corrupt_durable("log-0000000000000000.seg", 20000, 0x04);
  auto log = open_log(*disk_, small_options(), nullptr);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss) << log.status();
}

TEST_F(LogTest, CorruptionAtTheVeryEndFailsTheOpen) {
  open();
  for (int i = 0; i < 10; ++i) append(100);
  disk_->run_until_idle();
  const uint64_t last_offset = results_.back().where.offset;
  log_.reset();
  disk_->corrupt_durable("log-0000000000000000.seg", last_offset + 30, 0x80);
  auto log = open_log(*disk_, small_options(), nullptr);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss) << log.status();
}

TEST_F(LogTest, IncompleteNewestSegmentIsCreatedAgain) {
  open();
  for (int i = 0; i < 10; ++i) append(100);
  disk_->run_until_idle();
  log_.reset();
  // Segment 1 (preallocated ahead) lost its header: its creation never finished.
  disk_->corrupt_durable("log-0000000000000001.seg", 0, 0xff);
  open();
  EXPECT_EQ(recovered_.size(), 10u);
  EXPECT_EQ(append(10), 11u);
  disk_->run_until_idle();
  EXPECT_EQ(results_.back().where.segment_index, 1u);  // recreated under the same index
  log_.reset();
  open();
  EXPECT_EQ(recovered_.size(), 11u);
}

TEST_F(LogTest, BadHeaderOfAnOlderSegmentFailsTheOpen) {
  open();
  for (int i = 0; i < 10; ++i) append(100);
  disk_->run_until_idle();
  log_.reset();
  disk_->corrupt_durable("log-0000000000000000.seg", 20, 0x01);
  auto log = open_log(*disk_, small_options(), nullptr);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss) << log.status();
}

TEST_F(LogTest, RefusesBadInputAndApplyBackpressure) {
  LogOptions o = small_options();
  o.max_staged_bytes = 4096;
  o.group_commit_delay_us = 1'000'000;
  o.group_commit_bytes = 1 << 20;
  open(o);
  auto noop = [](const absl::Status&, const RecordLocation&) {};
  EXPECT_EQ(log_->append(0, payload_for(0, 10), noop).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log_->append(20, payload_for(0, 2049), noop).status().code(),
            absl::StatusCode::kInvalidArgument);
  int taken = 0;
  absl::StatusOr<uint64_t> r;
  while ((r = log_->append(20, payload_for(0, 1000), noop)).ok()) ++taken;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(taken, 4);  // 4 x 1024 B
  disk_->run_until_idle();
  EXPECT_TRUE(log_->append(20, payload_for(0, 1000), noop).ok());
}

TEST_F(LogTest, RejectsInvalidOptions) {
  LogOptions o = small_options();
  o.max_payload_bytes = 16 * 1024;  // cannot fit one write
  auto log = open_log(*disk_, o, nullptr);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace herald::storage

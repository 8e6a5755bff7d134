// Tests of storage::Catalog on the simulated disk: apply/find/scan/size, barriers (never inside
// the call, only once durable), backpressure, fail-stop, oversize and invalid batches, the batch
// codec, snapshots (chunked, with applies in between, segments retired behind them) and recovery
// from a snapshot plus the log, with a corrupt newest snapshot falling back or failing.
#include "controlplane/storage/catalog.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "controlplane/storage/sim_disk.h"

namespace herald::storage {
namespace {

CatalogOptions small_options() {
  CatalogOptions o;
  o.log.segment_size_bytes = 64 * 1024;
  o.log.group_commit_bytes = 8 * 1024;
  o.log.group_commit_delay_us = 200;
  o.log.max_write_bytes = 16 * 1024;
  o.log.max_payload_bytes = 8192;
  o.log.max_staged_bytes = 1 << 20;
  o.snapshot_after_bytes = 1ull << 40;  // only by hand unless a test says otherwise
  o.snapshot_chunk_bytes = 4096;
  return o;
}

class CatalogTest : public ::testing::Test {
 protected:
  absl::Status open(const CatalogOptions& options = small_options()) {
    catalog_.reset();
    std::optional<absl::StatusOr<std::unique_ptr<Catalog>>> result;
    Catalog::open(*disk_, options, [&](absl::StatusOr<std::unique_ptr<Catalog>> c) {
      result.emplace(std::move(c));
    });
    while (!result.has_value() && disk_->step()) {
    }
    if (!result.has_value()) return absl::InternalError("open never completed");
    if (!result->ok()) return result->status();
    catalog_ = std::move(**result);
    disk_->run_until_idle();
    return absl::OkStatus();
  }

  // Runs a barrier to completion and returns its status.
  absl::Status barrier() {
    std::optional<absl::Status> status;
    catalog_->barrier([&](const absl::Status& s) { status = s; });
    EXPECT_FALSE(status.has_value()) << "barrier completed inside the call";
    while (!status.has_value() && disk_->step()) {
    }
    return status.value_or(absl::InternalError("barrier never completed"));
  }

  void put_accounts(int from, int to, const std::string& tag = "v") {
    for (int i = from; i < to; ++i) {
      ASSERT_TRUE(catalog_
                      ->put(TableId::kAccounts, "acct" + std::to_string(100000 + i),
                            tag + std::to_string(i) + std::string(100, 'x'))
                      .ok());
    }
  }

  std::unique_ptr<SimDisk> disk_ = std::make_unique<SimDisk>(SimDiskOptions{});
  std::unique_ptr<Catalog> catalog_;
};

TEST(CatalogCodecTest, RoundTripAndRejectsGarbage) {
  const std::vector<Mutation> batch = {Mutation::put(TableId::kAccounts, "a", "1"),
                                       Mutation::erase(TableId::kCodes, "phone"),
                                       Mutation::put(TableId::kNodeMeta, "", "")};
  const std::vector<uint8_t> bytes = encode_catalog_batch(batch);
  std::vector<Mutation> back;
  ASSERT_TRUE(decode_catalog_batch(bytes, &back).ok());
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].key, "a");
  EXPECT_EQ(*back[0].value, "1");
  EXPECT_EQ(back[1].table, TableId::kCodes);
  EXPECT_FALSE(back[1].value.has_value());
  EXPECT_EQ(*back[2].value, "");
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(decode_catalog_batch(std::span(bytes.data(), cut), &back).ok()) << cut;
  }
  std::vector<uint8_t> bad = bytes;
  bad[4] = 0;  // table 0
  EXPECT_EQ(decode_catalog_batch(bad, &back).code(), absl::StatusCode::kDataLoss);
  uint64_t sequence = 0;
  EXPECT_TRUE(parse_snapshot_file_name(snapshot_file_name(0xabc), &sequence));
  EXPECT_EQ(sequence, 0xabcu);
  EXPECT_FALSE(parse_snapshot_file_name("snapshot-0000000000000abc.snap.tmp", &sequence));
}

TEST_F(CatalogTest, ApplyFindScanSizeAndRestart) {
  ASSERT_TRUE(open().ok());
  const Mutation batch[] = {Mutation::put(TableId::kAccounts, "b", "2"),
                            Mutation::put(TableId::kAccounts, "a", "1"),
                            Mutation::put(TableId::kDevices, "d", "x")};
  ASSERT_TRUE(catalog_->apply(batch).ok());
  // Visible in memory at once, before it is durable.
  ASSERT_NE(catalog_->find(TableId::kAccounts, "a"), nullptr);
  EXPECT_EQ(*catalog_->find(TableId::kAccounts, "a"), "1");
  EXPECT_EQ(catalog_->find(TableId::kCodes, "a"), nullptr);
  EXPECT_EQ(catalog_->size(TableId::kAccounts), 2u);
  std::vector<std::string> keys;
  catalog_->scan(TableId::kAccounts, "", [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return true;
  });
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE(catalog_->erase(TableId::kAccounts, "b").ok());
  EXPECT_EQ(catalog_->log().durable_sequence(), 0u);
  ASSERT_TRUE(barrier().ok());
  EXPECT_GE(catalog_->log().durable_sequence(), 2u);

  disk_->crash();
  ASSERT_TRUE(open().ok());
  EXPECT_EQ(*catalog_->find(TableId::kAccounts, "a"), "1");
  EXPECT_EQ(catalog_->find(TableId::kAccounts, "b"), nullptr);
  EXPECT_EQ(*catalog_->find(TableId::kDevices, "d"), "x");
  EXPECT_EQ(catalog_->stats().records_replayed, 2u);
}

TEST_F(CatalogTest, BarrierWithNothingPendingStillDefers) {
  ASSERT_TRUE(open().ok());
  EXPECT_TRUE(barrier().ok());
}

TEST_F(CatalogTest, BarrierCoversOnlyWhatWasAppliedBefore) {
  ASSERT_TRUE(open().ok());
  ASSERT_TRUE(catalog_->put(TableId::kAccounts, "a", "1").ok());
  std::optional<absl::Status> first;
  catalog_->barrier([&](const absl::Status& s) {
    first = s;
    // Everything applied before the barrier is durable when it runs.
    EXPECT_GE(catalog_->log().durable_sequence(), 1u);
  });
  ASSERT_TRUE(catalog_->put(TableId::kAccounts, "b", "2").ok());
  disk_->run_until_idle();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->ok());
}

TEST_F(CatalogTest, InvalidAndOversizeBatchesChangeNothing) {
  ASSERT_TRUE(open().ok());
  EXPECT_EQ(catalog_->apply({}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog_->put(TableId::kAccounts, std::string(kMaxKeyBytes + 1, 'k'), "v").code(),
            absl::StatusCode::kInvalidArgument);
  const Mutation bad_table{static_cast<TableId>(0), "k", std::string("v")};
  EXPECT_EQ(catalog_->apply(std::span(&bad_table, 1)).code(), absl::StatusCode::kInvalidArgument);
  // Within the table limits but larger than one log record (max_payload_bytes 8192).
  EXPECT_EQ(catalog_->put(TableId::kAccounts, "big", std::string(9000, 'v')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog_->size(TableId::kAccounts), 0u);
  EXPECT_TRUE(catalog_->status().ok());
  EXPECT_EQ(catalog_->stats().batches_refused, 4u);
}

TEST_F(CatalogTest, BackpressureRefusesAndAppliesNothing) {
  CatalogOptions o = small_options();
  o.log.max_staged_bytes = 16 * 1024;
  ASSERT_TRUE(open(o).ok());
  int accepted = 0;
  absl::Status last;
  for (int i = 0; i < 1000 && last.ok(); ++i) {
    last = catalog_->put(TableId::kAccounts, "k" + std::to_string(i), std::string(500, 'v'));
    if (last.ok()) ++accepted;
  }
  ASSERT_EQ(last.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(catalog_->size(TableId::kAccounts), static_cast<size_t>(accepted));
  EXPECT_TRUE(catalog_->status().ok());  // backpressure is not a failure
  ASSERT_TRUE(barrier().ok());
  EXPECT_TRUE(catalog_->put(TableId::kAccounts, "after", "v").ok());
}

TEST_F(CatalogTest, SyncFailureIsFailStop) {
  SimDiskOptions d;
  d.sync_error_probability = 1;
  disk_ = std::make_unique<SimDisk>(d);
  ASSERT_TRUE(open().ok());
  disk_->set_faults_enabled(true);
  ASSERT_TRUE(catalog_->put(TableId::kAccounts, "a", "1").ok());
  const absl::Status s = barrier();
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(catalog_->status().ok());
  EXPECT_EQ(catalog_->put(TableId::kAccounts, "b", "2").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(catalog_->find(TableId::kAccounts, "b"), nullptr);
  EXPECT_FALSE(barrier().ok());  // for good
}

TEST_F(CatalogTest, SnapshotInChunksWithAppliesInBetweenThenRestart) {
  ASSERT_TRUE(open().ok());
  put_accounts(0, 600);
  ASSERT_TRUE(barrier().ok());
  const uint64_t sealed_before = catalog_->log().sealed_segments().size();
  ASSERT_GT(sealed_before, 0u);
  catalog_->snapshot_now();
  ASSERT_TRUE(catalog_->snapshot_in_progress());
  // Applies continue while the snapshot is written: overwrite, erase and add as it goes.
  int round = 0;
  while (catalog_->snapshot_in_progress() && disk_->step()) {
    if (++round % 3 == 0 && round < 300) {
      ASSERT_TRUE(
          catalog_->put(TableId::kAccounts, "acct" + std::to_string(100000 + round), "new").ok());
      ASSERT_TRUE(
          catalog_->erase(TableId::kAccounts, "acct" + std::to_string(100300 + round)).ok());
      ASSERT_TRUE(catalog_->put(TableId::kDevices, "dev" + std::to_string(round), "d").ok());
    }
  }
  ASSERT_TRUE(barrier().ok());
  disk_->run_until_idle();
  EXPECT_EQ(catalog_->stats().snapshots_written, 1u);
  EXPECT_GT(catalog_->stats().snapshot_steps, 5u);  // it was written in pieces
  EXPECT_GT(catalog_->stats().segments_retired, 0u);
  EXPECT_LT(catalog_->log().sealed_segments().size(), sealed_before);

  // The expected state, then a crash and a restart from the snapshot plus the log after it.
  std::vector<std::pair<std::string, std::string>> expected;
  for (TableId t : {TableId::kAccounts, TableId::kDevices}) {
    catalog_->scan(t, "", [&](std::string_view k, std::string_view v) {
      expected.emplace_back(std::string(k), std::string(v));
      return true;
    });
  }
  disk_->crash();
  ASSERT_TRUE(open().ok());
  EXPECT_NE(catalog_->stats().snapshot_loaded_sequence, 0u);
  EXPECT_GT(catalog_->stats().snapshot_entries_loaded, 500u);
  std::vector<std::pair<std::string, std::string>> got;
  for (TableId t : {TableId::kAccounts, TableId::kDevices}) {
    catalog_->scan(t, "", [&](std::string_view k, std::string_view v) {
      got.emplace_back(std::string(k), std::string(v));
      return true;
    });
  }
  EXPECT_EQ(got, expected);
}

TEST_F(CatalogTest, SnapshotThresholdChangesLive) {
  ASSERT_TRUE(open().ok());  // threshold 1 TiB: never by size
  put_accounts(0, 200);
  ASSERT_TRUE(barrier().ok());
  disk_->run_until_idle();
  EXPECT_EQ(catalog_->stats().snapshots_started, 0u);
  catalog_->set_snapshot_after_bytes(0);  // refused
  EXPECT_EQ(catalog_->snapshot_after_bytes(), 1ull << 40);
  catalog_->set_snapshot_after_bytes(16 * 1024);  // below what has grown since the open
  put_accounts(200, 210);
  ASSERT_TRUE(barrier().ok());
  disk_->run_until_idle();
  EXPECT_EQ(catalog_->stats().snapshots_started, 1u);
  EXPECT_EQ(catalog_->stats().snapshots_written, 1u);
}

TEST_F(CatalogTest, SnapshotsStartBySizeAndOldOnesAreRemoved) {
  CatalogOptions o = small_options();
  o.snapshot_after_bytes = 64 * 1024;
  o.snapshots_kept = 2;
  ASSERT_TRUE(open(o).ok());
  for (int i = 0; i < 10; ++i) {
    put_accounts(i * 200, i * 200 + 200);
    ASSERT_TRUE(barrier().ok());
    disk_->run_until_idle();
  }
  EXPECT_GE(catalog_->stats().snapshots_written, 3u);
  EXPECT_EQ(catalog_->snapshots().size(), 2u);
  EXPECT_GT(catalog_->stats().snapshots_removed, 0u);
  // Only the kept snapshots are on disk.
  auto names = disk_->list_files();
  ASSERT_TRUE(names.ok());
  size_t snapshots = 0;
  for (const std::string& n : *names) {
    uint64_t seq;
    if (parse_snapshot_file_name(n, &seq)) ++snapshots;
  }
  EXPECT_EQ(snapshots, 2u);
  ASSERT_TRUE(open(o).ok());
  EXPECT_EQ(catalog_->size(TableId::kAccounts), 2000u);
  EXPECT_EQ(catalog_->stats().snapshot_loaded_sequence, catalog_->snapshots().back());
}

// A bit flip in the newest snapshot: the previous one (kept, with the log records it needs) is
// loaded instead and the state is whole. With only one snapshot kept there is nothing to fall
// back to, and the open fails rather than lose data.
TEST_F(CatalogTest, CorruptNewestSnapshotFallsBackOrFails) {
  for (uint32_t kept : {2u, 1u}) {
    catalog_.reset();  // it refers to the disk
    disk_ = std::make_unique<SimDisk>(SimDiskOptions{});
    CatalogOptions o = small_options();
    o.snapshots_kept = kept;
    ASSERT_TRUE(open(o).ok());
    put_accounts(0, 300);
    ASSERT_TRUE(barrier().ok());
    catalog_->snapshot_now();
    disk_->run_until_idle();
    put_accounts(300, 600);
    ASSERT_TRUE(barrier().ok());
    catalog_->snapshot_now();
    disk_->run_until_idle();
    put_accounts(600, 650);
    ASSERT_TRUE(barrier().ok());
    ASSERT_EQ(catalog_->stats().snapshots_written, 2u);
    const uint64_t newest = catalog_->snapshots().back();
    disk_->corrupt_durable(snapshot_file_name(newest), 4096 + 5000, 0x10);
    disk_->crash();
    const absl::Status s = open(o);
    if (kept == 2) {
      ASSERT_TRUE(s.ok()) << s;
      EXPECT_EQ(catalog_->stats().snapshot_fallbacks, 1u);
      EXPECT_LT(catalog_->stats().snapshot_loaded_sequence, newest);
      EXPECT_EQ(catalog_->size(TableId::kAccounts), 650u);
      EXPECT_EQ(*catalog_->find(TableId::kAccounts, "acct100599"), "v599" + std::string(100, 'x'));
      // Set aside, not deleted, and not tried again.
      EXPECT_FALSE(disk_->durable_contents(snapshot_file_name(newest) + ".corrupt").empty());
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    }
  }
}

TEST_F(CatalogTest, TornSnapshotTemporaryIsIgnoredAndRemoved) {
  ASSERT_TRUE(open().ok());
  put_accounts(0, 400);
  ASSERT_TRUE(barrier().ok());
  catalog_->snapshot_now();
  for (int i = 0; i < 6; ++i) disk_->step();  // part of the chunks written
  ASSERT_TRUE(catalog_->snapshot_in_progress());
  disk_->crash();
  ASSERT_TRUE(open().ok());
  EXPECT_EQ(catalog_->stats().snapshot_loaded_sequence, 0u);
  EXPECT_EQ(catalog_->size(TableId::kAccounts), 400u);
  auto names = disk_->list_files();
  ASSERT_TRUE(names.ok());
  for (const std::string& n : *names) EXPECT_EQ(n.find(".tmp"), std::string::npos) << n;
}

TEST_F(CatalogTest, MissingLogAfterSnapshotIsDataLoss) {
  ASSERT_TRUE(open().ok());
  put_accounts(0, 300);
  ASSERT_TRUE(barrier().ok());
  catalog_->snapshot_now();
  disk_->run_until_idle();
  put_accounts(300, 900);
  ASSERT_TRUE(barrier().ok());
  disk_->run_until_idle();
  // Drop the newest sealed segment behind the log's back: the records after the snapshot no
  // longer continue it.
  const std::vector<SegmentInfo> sealed = catalog_->log().sealed_segments();
  ASSERT_GE(sealed.size(), 2u);
  char name[kSegmentNameBytes + 1];
  segment_file_name(sealed[sealed.size() - 1].index, name);
  catalog_.reset();
  disk_->remove(name, [](int32_t) {});
  disk_->run_until_idle();
  EXPECT_EQ(open().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace herald::storage

// Tests of the offline message queues on the simulated disk: FIFO order per device, drain
// limits and cursor, a group body stored once and freed after its last delete, the per-device
// cap at its edge, visibility only once durable, and the index rebuilt by recovery.
#include "controlplane/storage/queue_table.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "controlplane/storage/sim_disk.h"

namespace herald::storage {
namespace {

LogOptions small_log() {
  LogOptions o;
  o.segment_size_bytes = 64 * 1024;
  o.group_commit_bytes = 8 * 1024;
  o.group_commit_delay_us = 1000;
  o.max_write_bytes = 16 * 1024;
  o.max_payload_bytes = 4096;
  o.max_staged_bytes = 1 << 20;
  return o;
}

SimDiskOptions fixed_latency_disk() {
  SimDiskOptions o;
  o.min_latency_ns = o.max_latency_ns = 10'000;
  o.sync_extra_latency_ns = 50'000;
  return o;
}

DeviceKey dev(uint32_t n) {
  return {0x1111, 0x2222 + n, n};
}
MessageId mid(uint64_t n) {
  return {n << 16, n};
}
std::vector<uint8_t> body(uint64_t n, size_t size = 32) {
  std::vector<uint8_t> b(size);
  for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(n * 31 + i);
  return b;
}

class QueueTableTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  // (Re)opens the log and a fresh table on it, recovering from the disk.
  void open(QueueTableOptions options = {}) {
    log_.reset();
    table_ = std::make_unique<QueueTable>(options);
    std::optional<absl::StatusOr<std::unique_ptr<Log>>> result;
    Log::open(
        *disk_, small_log(), [this](const RecoveredRecord& r) { return table_->recover(r); },
        [&](absl::StatusOr<std::unique_ptr<Log>> log) { result.emplace(std::move(log)); });
    while (!result.has_value() && disk_->step()) {
    }
    ASSERT_TRUE(result.has_value());
    ASSERT_TRUE(result->ok()) << result->status();
    log_ = std::move(**result);
    table_->start(*log_);
    disk_->run_until_idle();
  }

  // Appends and returns a flag set once durable.
  std::shared_ptr<std::optional<absl::Status>> append(uint64_t n, std::vector<DeviceKey> recipients,
                                                      size_t size = 32) {
    auto done = std::make_shared<std::optional<absl::Status>>();
    auto b = body(n, size);
    auto outcome =
        table_->append(mid(n), b, recipients, [done](const absl::Status& s) { done->emplace(s); });
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    if (outcome.ok()) {
      EXPECT_TRUE(outcome->written);
    }
    return done;
  }

  std::vector<MessageId> drain_all(const DeviceKey& d, std::optional<MessageId> after = {}) {
    return table_->peek(d, after, 1000, 1 << 30);
  }

  // The asynchronous drain, bodies read back from the log.
  absl::StatusOr<std::vector<DrainedMessage>> drain(const DeviceKey& d,
                                                    std::optional<MessageId> after = {},
                                                    uint32_t max_messages = 1000) {
    std::optional<absl::StatusOr<std::vector<DrainedMessage>>> result;
    table_->drain(
        d, after, max_messages, 1 << 30,
        [&](absl::StatusOr<std::vector<DrainedMessage>> r) { result.emplace(std::move(r)); });
    EXPECT_FALSE(result.has_value()) << "never inside the call";
    while (!result.has_value() && disk_->step()) {
    }
    if (!result.has_value()) return absl::InternalError("drain never completed");
    return std::move(*result);
  }

  std::unique_ptr<SimDisk> disk_ = std::make_unique<SimDisk>(fixed_latency_disk());
  std::unique_ptr<Log> log_;
  std::unique_ptr<QueueTable> table_;
};

TEST_F(QueueTableTest, EntriesAreVisibleOnlyOnceDurableAndInAppendOrder) {
  // Ids deliberately not in numeric order: the FIFO is append order, not id order.
  auto a = append(5, {dev(1)});
  auto b = append(3, {dev(1)});
  auto c = append(9, {dev(1)});
  EXPECT_TRUE(drain_all(dev(1)).empty()) << "nothing durable yet";
  EXPECT_EQ(table_->queued(dev(1)), 3u);
  disk_->run_until_idle();
  ASSERT_TRUE(a->has_value() && b->has_value() && c->has_value());
  EXPECT_TRUE(a->value().ok());
  EXPECT_EQ(drain_all(dev(1)), (std::vector<MessageId>{mid(5), mid(3), mid(9)}));
  EXPECT_TRUE(drain_all(dev(2)).empty());
  auto drained = drain(dev(1), {}, 2);
  ASSERT_TRUE(drained.ok()) << drained.status();
  ASSERT_EQ(drained->size(), 2u);
  EXPECT_EQ((*drained)[0].id, mid(5));
  EXPECT_EQ((*drained)[0].body, body(5));
  EXPECT_EQ((*drained)[1].body, body(3));
  auto none = drain(dev(2));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(QueueTableTest, DrainAfterAndLimits) {
  for (uint64_t n = 1; n <= 6; ++n) append(n, {dev(1)}, 100);
  disk_->run_until_idle();
  EXPECT_EQ(drain_all(dev(1), mid(2)), (std::vector<MessageId>{mid(3), mid(4), mid(5), mid(6)}));
  EXPECT_TRUE(drain_all(dev(1), mid(6)).empty());
  EXPECT_EQ(table_->peek(dev(1), mid(1), 2, 1 << 20), (std::vector<MessageId>{mid(2), mid(3)}));
  // Bytes: 250 fits two 100-byte bodies, not three.
  EXPECT_EQ(table_->peek(dev(1), {}, 10, 250), (std::vector<MessageId>{mid(1), mid(2)}));
  // A body larger than max_bytes still comes out alone, or it would block the queue.
  EXPECT_EQ(table_->peek(dev(1), {}, 10, 10), (std::vector<MessageId>{mid(1)}));
  EXPECT_TRUE(table_->peek(dev(1), {}, 0, 1 << 20).empty());
  // A cursor no longer queued (acknowledged and deleted) drains from the head.
  ASSERT_EQ(*table_->remove(dev(1), std::vector<MessageId>{mid(1), mid(2)}, nullptr), 2u);
  EXPECT_EQ(drain_all(dev(1), mid(2)), (std::vector<MessageId>{mid(3), mid(4), mid(5), mid(6)}));
}

TEST_F(QueueTableTest, DeleteRemovesOnlyThatDevicesEntryAndIsDurable) {
  append(1, {dev(1)});
  append(2, {dev(1)});
  append(3, {dev(1)});
  disk_->run_until_idle();
  std::optional<absl::Status> deleted;
  auto n = table_->remove(dev(1), std::vector<MessageId>{mid(2), mid(42)},
                          [&](const absl::Status& s) { deleted = s; });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(table_->stats().deletes_unknown, 1u);
  EXPECT_EQ(drain_all(dev(1)), (std::vector<MessageId>{mid(1), mid(3)})) << "hidden at once";
  EXPECT_FALSE(deleted.has_value());
  disk_->run_until_idle();
  ASSERT_TRUE(deleted.has_value());
  EXPECT_TRUE(deleted->ok());
  // Unknown ids only: nothing written, no callback.
  bool called = false;
  EXPECT_EQ(*table_->remove(dev(1), std::vector<MessageId>{mid(2)},
                            [&](const absl::Status&) { called = true; }),
            0u);
  disk_->run_until_idle();
  EXPECT_FALSE(called);

  open();
  EXPECT_EQ(drain_all(dev(1)), (std::vector<MessageId>{mid(1), mid(3)}));
}

TEST_F(QueueTableTest, GroupBodyIsStoredOnceAndFreedAfterTheLastDelete) {
  const std::vector<DeviceKey> members = {dev(1), dev(2), dev(3), dev(4)};
  append(7, members, 500);
  disk_->run_until_idle();
  EXPECT_EQ(table_->bodies(), 1u);
  EXPECT_EQ(table_->body_bytes(), 500u);
  EXPECT_EQ(log_->stats().appends, 2u) << "one BodyPut and one QueueAppend for four queues";
  for (const auto& d : members) EXPECT_EQ(drain_all(d), std::vector<MessageId>{mid(7)});
  for (size_t i = 0; i < members.size(); ++i) {
    ASSERT_EQ(*table_->remove(members[i], std::vector<MessageId>{mid(7)}, nullptr), 1u);
    EXPECT_EQ(table_->has_body(mid(7)), i + 1 < members.size()) << "after delete " << i;
  }
  EXPECT_EQ(table_->body_bytes(), 0u);
  disk_->run_until_idle();
  // Recovery applies the same references: the body is gone again.
  open();
  EXPECT_FALSE(table_->has_body(mid(7)));
  for (const auto& d : members) EXPECT_TRUE(drain_all(d).empty());
}

TEST_F(QueueTableTest, PartialGroupDeleteSurvivesRecovery) {
  append(7, {dev(1), dev(2), dev(3)});
  disk_->run_until_idle();
  ASSERT_EQ(*table_->remove(dev(2), std::vector<MessageId>{mid(7)}, nullptr), 1u);
  disk_->run_until_idle();
  open();
  EXPECT_TRUE(table_->has_body(mid(7)));
  EXPECT_EQ(drain_all(dev(1)), std::vector<MessageId>{mid(7)});
  EXPECT_TRUE(drain_all(dev(2)).empty());
  EXPECT_EQ(drain_all(dev(3)), std::vector<MessageId>{mid(7)});
}

TEST_F(QueueTableTest, CapRefusesTheFullRecipientOnlyAndNeverDropsQueuedData) {
  open(QueueTableOptions{.max_queued_messages_per_device = 3});
  for (uint64_t n = 1; n <= 2; ++n) append(n, {dev(1)});
  append(3, {dev(1)});  // exactly at the cap now (pending counts)
  EXPECT_EQ(table_->queued(dev(1)), 3u);
  auto outcome = table_->append(mid(4), body(4), std::vector<DeviceKey>{dev(1), dev(2)}, nullptr);
  ASSERT_TRUE(outcome.ok());
  EXPECT_TRUE(outcome->written) << "dev(2) still gets it";
  EXPECT_EQ(outcome->queue_full, std::vector<DeviceKey>{dev(1)});
  auto refused = table_->append(mid(5), body(5), std::vector<DeviceKey>{dev(1)}, nullptr);
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(refused->written);
  EXPECT_FALSE(table_->has_body(mid(5)));
  disk_->run_until_idle();
  EXPECT_EQ(drain_all(dev(1)), (std::vector<MessageId>{mid(1), mid(2), mid(3)}));
  EXPECT_EQ(drain_all(dev(2)), std::vector<MessageId>{mid(4)});
  EXPECT_EQ(table_->stats().refused_queue_full, 2u);
  // One ack frees one slot.
  ASSERT_EQ(*table_->remove(dev(1), std::vector<MessageId>{mid(1)}, nullptr), 1u);
  auto again = table_->append(mid(6), body(6), std::vector<DeviceKey>{dev(1)}, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->written);
  EXPECT_TRUE(again->queue_full.empty());
}

TEST_F(QueueTableTest, CapChangesLiveAndLoweringItKeepsWhatIsQueued) {
  open(QueueTableOptions{.max_queued_messages_per_device = 4});
  for (uint64_t n = 1; n <= 3; ++n) append(n, {dev(1)});
  disk_->run_until_idle();
  table_->set_max_queued_messages_per_device(2);  // below what dev(1) holds
  EXPECT_EQ(table_->max_queued_messages_per_device(), 2u);
  auto refused = table_->append(mid(4), body(4), std::vector<DeviceKey>{dev(1)}, nullptr);
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(refused->written);
  EXPECT_EQ(drain_all(dev(1)), (std::vector<MessageId>{mid(1), mid(2), mid(3)}))
      << "nothing acknowledged is dropped";
  // Two acks bring it to 1, below the new cap: one more fits, then it is full again.
  ASSERT_EQ(*table_->remove(dev(1), std::vector<MessageId>{mid(1), mid(2)}, nullptr), 2u);
  auto fits = table_->append(mid(5), body(5), std::vector<DeviceKey>{dev(1)}, nullptr);
  ASSERT_TRUE(fits.ok());
  EXPECT_TRUE(fits->written);
  auto full = table_->append(mid(6), body(6), std::vector<DeviceKey>{dev(1)}, nullptr);
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->written);
  table_->set_max_queued_messages_per_device(3);  // raised: room again
  auto raised = table_->append(mid(7), body(7), std::vector<DeviceKey>{dev(1)}, nullptr);
  ASSERT_TRUE(raised.ok());
  EXPECT_TRUE(raised->written);
}

TEST_F(QueueTableTest, DeleteWhilePendingNeverShowsTheEntry) {
  auto done = append(1, {dev(1), dev(2)});
  ASSERT_EQ(*table_->remove(dev(1), std::vector<MessageId>{mid(1)}, nullptr), 1u);
  disk_->run_until_idle();
  ASSERT_TRUE(done->has_value());
  EXPECT_TRUE(drain_all(dev(1)).empty());
  EXPECT_EQ(drain_all(dev(2)), std::vector<MessageId>{mid(1)});
  open();
  EXPECT_TRUE(drain_all(dev(1)).empty());
  EXPECT_EQ(drain_all(dev(2)), std::vector<MessageId>{mid(1)});
}

TEST_F(QueueTableTest, RecoveryRebuildsQueuesAcrossSegments) {
  // ~600 B per message over 64 KiB segments: several rotations.
  for (uint64_t n = 1; n <= 300; ++n) append(n, {dev(static_cast<uint32_t>(n % 3 + 1))}, 600);
  disk_->run_until_idle();
  for (uint64_t n = 3; n <= 300; n += 3) {
    ASSERT_EQ(*table_->remove(dev(1), std::vector<MessageId>{mid(n)}, nullptr), 1u);
  }
  disk_->run_until_idle();
  const auto before1 = drain_all(dev(1)), before2 = drain_all(dev(2)), before3 = drain_all(dev(3));
  EXPECT_TRUE(before1.empty());
  EXPECT_EQ(before2.size(), 100u);
  open();
  EXPECT_GT(log_->stats().recovered_segments, 2u);
  EXPECT_EQ(drain_all(dev(1)), before1);
  EXPECT_EQ(drain_all(dev(2)), before2);
  EXPECT_EQ(drain_all(dev(3)), before3);
  EXPECT_EQ(table_->bodies(), 200u);
  EXPECT_EQ(table_->body_bytes(), 200u * 600);
  // Bodies come back from every segment, byte for byte.
  auto drained = drain(dev(2));
  ASSERT_TRUE(drained.ok()) << drained.status();
  ASSERT_EQ(drained->size(), 100u);
  for (const auto& m : *drained) EXPECT_EQ(m.body, body(m.id.lo, 600)) << m.id.lo;
}

TEST_F(QueueTableTest, CorruptBodyFailsTheDrainAndIsNeverReturned) {
  append(1, {dev(1)}, 200);
  disk_->run_until_idle();
  // Flip a bit inside the body's record on the medium (the first record of the first segment).
  disk_->corrupt_durable("log-0000000000000000.seg", 4096 + 64, 0x10);
  auto drained = drain(dev(1));
  EXPECT_EQ(drained.status().code(), absl::StatusCode::kDataLoss) << drained.status();
}

TEST_F(QueueTableTest, LogReadChecksWhatItReturns) {
  std::optional<RecordLocation> where;
  const std::vector<uint8_t> payload = body(9, 300);
  ASSERT_TRUE(log_->append(kFirstEngineRecordType + 40, payload,
                           [&](const absl::Status& s, const RecordLocation& at) {
                             ASSERT_TRUE(s.ok());
                             where = at;
                           })
                  .ok());
  std::optional<absl::StatusOr<ReadRecord>> early;
  log_->read(RecordLocation{log_->next_sequence() - 1, 0, 4096, 320},
             [&](absl::StatusOr<ReadRecord> r) { early.emplace(std::move(r)); });
  disk_->run_until_idle();
  ASSERT_TRUE(where.has_value());
  ASSERT_TRUE(early.has_value());
  EXPECT_EQ(early->status().code(), absl::StatusCode::kInvalidArgument) << "not durable yet";

  auto read = [&](const RecordLocation& at) {
    std::optional<absl::StatusOr<ReadRecord>> r;
    log_->read(at, [&](absl::StatusOr<ReadRecord> got) { r.emplace(std::move(got)); });
    while (!r.has_value() && disk_->step()) {
    }
    return r.value_or(absl::InternalError("read never completed"));
  };
  auto ok = read(*where);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->type, kFirstEngineRecordType + 40);
  EXPECT_EQ(ok->payload, payload);
  RecordLocation wrong_sequence = *where;
  wrong_sequence.sequence = 0;
  EXPECT_EQ(read(wrong_sequence).status().code(), absl::StatusCode::kInvalidArgument);
  RecordLocation wrong_offset = *where;
  wrong_offset.offset += 8;
  EXPECT_EQ(read(wrong_offset).status().code(), absl::StatusCode::kDataLoss);
  RecordLocation missing_segment = *where;
  missing_segment.segment_index = 99;
  EXPECT_EQ(read(missing_segment).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(QueueTableTest, CrashBeforeDurableLeavesNothingHalfThere) {
  append(1, {dev(1)});
  disk_->run_until_idle();
  append(2, {dev(1), dev(2)}, 300);
  log_->flush();
  disk_->step();  // the batch is in flight, not synced
  disk_->crash();
  open();
  // Message 2 is in both queues or in neither; its body never without an entry.
  const auto q1 = drain_all(dev(1));
  const auto q2 = drain_all(dev(2));
  const bool has2 = q1.size() == 2;
  EXPECT_EQ(q1.front(), mid(1));
  EXPECT_EQ(q2.size(), has2 ? 1u : 0u);
  EXPECT_EQ(table_->has_body(mid(2)), has2);
}

TEST_F(QueueTableTest, OrphanBodyIsDroppedAtRecovery) {
  // A BodyPut with no QueueAppend after it (what a crash between the two, or a refused second
  // append, leaves): written directly, as the table would have.
  std::vector<uint8_t> payload(16 + 8, 0xab);
  ASSERT_TRUE(log_->append(kRecordTypeBodyPut, payload, nullptr).ok());
  log_->flush();
  disk_->run_until_idle();
  open();
  EXPECT_EQ(table_->bodies(), 0u);
  EXPECT_EQ(table_->stats().orphan_bodies_dropped, 1u);
}

TEST_F(QueueTableTest, RefusesBadInput) {
  auto b = body(1);
  EXPECT_EQ(table_->append(mid(1), b, {}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      table_->append(mid(1), b, std::vector<DeviceKey>{dev(1), dev(1)}, nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table_->append(mid(1), b, std::vector<DeviceKey>{{1, 2, 0}}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> huge(small_log().max_payload_bytes);
  EXPECT_EQ(table_->append(mid(1), huge, std::vector<DeviceKey>{dev(1)}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  append(1, {dev(1)});
  EXPECT_EQ(table_->append(mid(1), b, std::vector<DeviceKey>{dev(2)}, nullptr).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(log_->stats().appends, 2u) << "refusals write nothing";
}

TEST_F(QueueTableTest, MalformedOwnRecordFailsRecovery) {
  std::vector<uint8_t> payload(7, 1);  // too short for a QueueAppend
  ASSERT_TRUE(log_->append(kRecordTypeQueueAppend, payload, nullptr).ok());
  log_->flush();
  disk_->run_until_idle();
  log_.reset();
  QueueTable table({});
  std::optional<absl::StatusOr<std::unique_ptr<Log>>> result;
  Log::open(
      *disk_, small_log(), [&](const RecoveredRecord& r) { return table.recover(r); },
      [&](absl::StatusOr<std::unique_ptr<Log>> log) { result.emplace(std::move(log)); });
  while (!result.has_value() && disk_->step()) {
  }
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(QueueTableTest, LogFailureFailsPendingAppendsAndHidesThem) {
  SimDiskOptions d = fixed_latency_disk();
  d.sync_error_probability = 1.0;
  log_.reset();  // it refers to the old disk
  disk_ = std::make_unique<SimDisk>(d);
  open();
  disk_->set_faults_enabled(true);
  auto done = append(1, {dev(1)});
  disk_->run_until_idle();
  ASSERT_TRUE(done->has_value());
  EXPECT_FALSE(done->value().ok());
  EXPECT_EQ(table_->queued(dev(1)), 0u);
  EXPECT_FALSE(table_->has_body(mid(1)));
  EXPECT_FALSE(table_->append(mid(2), body(2), std::vector<DeviceKey>{dev(1)}, nullptr).ok());
}

// The hash maps under the index, against std::map, with a hash that piles keys into a few
// slots at the end of the array (long probe runs that wrap around: backward-shift deletion's
// hard case) and with a well-mixed one over many keys (growth).
struct WrappingHash {
  size_t operator()(uint64_t key) const { return 13 + key % 5; }
};
template <class Map>
void check_map_against_std_map(uint64_t keys, int operations, uint64_t seed) {
  Map flat;
  std::map<uint64_t, uint64_t> model;
  std::mt19937_64 random(seed);
  for (int i = 0; i < operations; ++i) {
    const uint64_t key = random() % keys;
    switch (random() % 4) {
      case 0:
      case 1: {
        auto [value, inserted] = flat.try_emplace(key);
        ASSERT_EQ(inserted, !model.contains(key));
        *value = i;
        model[key] = static_cast<uint64_t>(i);
        break;
      }
      case 2: ASSERT_EQ(flat.erase(key), model.erase(key) == 1); break;
      default:
        if (random() % 64 == 0) {
          const uint64_t cut = random() % keys;
          flat.erase_if([cut](uint64_t k, uint64_t) { return k < cut; });
          std::erase_if(model, [cut](const auto& kv) { return kv.first < cut; });
        }
        break;
    }
    ASSERT_EQ(flat.size(), model.size());
    for (uint64_t k = 0; k < std::min<uint64_t>(keys, 16); ++k) {
      const uint64_t* v = flat.find(k);
      auto it = model.find(k);
      ASSERT_EQ(v != nullptr, it != model.end()) << "key " << k << " op " << i;
      if (v != nullptr) {
        ASSERT_EQ(*v, it->second);
      }
    }
  }
  size_t seen = 0;
  flat.for_each([&](uint64_t k, uint64_t v) {
    ++seen;
    EXPECT_EQ(model.at(k), v);
  });
  EXPECT_EQ(seen, model.size());
}

TEST(FlatMapTest, MatchesStdMapWithWrappingProbeRuns) {
  check_map_against_std_map<FlatMap<uint64_t, uint64_t, WrappingHash>>(11, 20'000, 1);
}
TEST(FlatMapTest, MatchesStdMapWhileGrowing) {
  check_map_against_std_map<FlatMap<uint64_t, uint64_t, SequenceHash>>(5'000, 50'000, 2);
}
TEST(DenseMapTest, MatchesStdMapWithWrappingProbeRuns) {
  check_map_against_std_map<DenseMap<uint64_t, uint64_t, WrappingHash>>(11, 20'000, 3);
}
TEST(DenseMapTest, MatchesStdMapWhileGrowing) {
  check_map_against_std_map<DenseMap<uint64_t, uint64_t, SequenceHash>>(5'000, 50'000, 4);
}

// --- Compaction --------------------------------------------------------------------------------

QueueTableOptions compacting(double clean_below) {
  QueueTableOptions o;
  o.clean_below_live_fraction = clean_below;
  o.compaction_records_per_step = 7;  // small steps: many rounds
  return o;
}

// Runs compaction until it has nothing left to do.
void compact_all(QueueTable& table, SimDisk& disk) {
  for (int i = 0; i < 100'000 && table.compact_step(); ++i) disk.run_until_idle();
  disk.run_until_idle();
  ASSERT_FALSE(table.compact_step()) << "compaction never settled";
  ASSERT_TRUE(table.compaction_idle());
}

TEST_F(QueueTableTest, CompactionRetiresDeadSegmentsAndCopiesLiveOnesInOrder) {
  open(compacting(0.5));
  // Three live messages spread over the first segments, among many that get deleted.
  std::vector<MessageId> live;
  for (uint64_t n = 1; n <= 600; ++n) {
    append(n, {n % 250 == 1 ? dev(1) : dev(2)}, 200);
    if (n % 250 == 1) live.push_back(mid(n));
  }
  disk_->run_until_idle();
  std::vector<MessageId> dead;
  for (uint64_t n = 1; n <= 600; ++n) {
    if (n % 250 != 1) dead.push_back(mid(n));
  }
  for (size_t i = 0; i < dead.size(); i += 50) {
    std::vector<MessageId> batch(
        dead.begin() + static_cast<ptrdiff_t>(i),
        dead.begin() + static_cast<ptrdiff_t>(std::min(i + 50, dead.size())));
    ASSERT_TRUE(table_->remove(dev(2), batch, nullptr).ok());
  }
  for (uint64_t n = 601; n <= 900; ++n) append(n, {dev(3)}, 200);  // rotate past them
  disk_->run_until_idle();
  const size_t sealed_before = log_->sealed_segments().size();
  ASSERT_GE(sealed_before, 3u);

  compact_all(*table_, *disk_);
  EXPECT_GT(table_->stats().segments_retired, 0u);
  EXPECT_GT(table_->stats().segments_cleaned, 0u);
  EXPECT_GT(table_->stats().records_copied, 0u);
  EXPECT_LT(log_->sealed_segments().size(), sealed_before);
  EXPECT_EQ(drain_all(dev(1)), live);
  auto drained = drain(dev(1));
  ASSERT_TRUE(drained.ok()) << drained.status();
  ASSERT_EQ(drained->size(), 3u);
  EXPECT_EQ((*drained)[1].body, body(251, 200)) << "the body copied forward";
  // Every live record is accounted in a segment that still exists.
  for (const SegmentUsage& u : table_->segment_usage()) {
    EXPECT_LE(u.live_bytes, u.total_bytes);
  }

  open(compacting(0.5));  // recovery from what compaction left
  EXPECT_EQ(drain_all(dev(1)), live);
  EXPECT_EQ(table_->queued(dev(2)), 0u);
  EXPECT_EQ(table_->queued(dev(3)), 300u);
  drained = drain(dev(1));
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ((*drained)[2].body, body(501, 200));
}

TEST_F(QueueTableTest, CopiedGroupMessageKeepsOnlyItsQueuedRecipients) {
  open(compacting(0.9));
  append(1, {dev(1), dev(2), dev(3)}, 200);
  for (uint64_t n = 2; n <= 400; ++n) append(n, {dev(4)}, 200);
  disk_->run_until_idle();
  ASSERT_TRUE(table_->remove(dev(2), std::vector<MessageId>{mid(1)}, nullptr).ok());
  for (uint64_t n = 2; n <= 400; ++n) {
    ASSERT_TRUE(table_->remove(dev(4), std::vector<MessageId>{mid(n)}, nullptr).ok());
  }
  for (uint64_t n = 401; n <= 700; ++n) append(n, {dev(5)}, 200);
  disk_->run_until_idle();
  compact_all(*table_, *disk_);
  EXPECT_GT(table_->stats().records_copied, 0u);
  for (int life = 0; life < 2; ++life) {
    EXPECT_EQ(drain_all(dev(1)), std::vector<MessageId>{mid(1)});
    EXPECT_TRUE(drain_all(dev(2)).empty())
        << "a deleted recipient stays deleted (life " << life << ")";
    EXPECT_EQ(drain_all(dev(3)), std::vector<MessageId>{mid(1)});
    open(compacting(0.9));
  }
}

TEST_F(QueueTableTest, CopiedTombstoneDoesNotKillTheSameIdAppendedAgain) {
  open(compacting(0.5));
  append(1000, {dev(1)}, 200);
  for (uint64_t n = 1; n <= 250; ++n) append(n, {dev(2)}, 200);  // live: the first segment stays
  disk_->run_until_idle();
  ASSERT_TRUE(table_->remove(dev(1), std::vector<MessageId>{mid(1000)}, nullptr).ok());
  for (uint64_t n = 2001; n <= 2300; ++n) append(n, {dev(3)}, 200);
  disk_->run_until_idle();
  for (uint64_t n = 2001; n <= 2300; ++n) {
    ASSERT_TRUE(table_->remove(dev(3), std::vector<MessageId>{mid(n)}, nullptr).ok());
  }
  append(1000, {dev(1)}, 64);  // the same id again, after its tombstone
  for (uint64_t n = 3001; n <= 3300; ++n) append(n, {dev(4)}, 200);
  disk_->run_until_idle();
  compact_all(*table_, *disk_);
  EXPECT_GT(table_->stats().tombstones_copied, 0u) << "the scenario must copy a tombstone";
  for (int life = 0; life < 2; ++life) {
    EXPECT_EQ(drain_all(dev(1)), std::vector<MessageId>{mid(1000)}) << "life " << life;
    auto drained = drain(dev(1));
    ASSERT_TRUE(drained.ok()) << drained.status();
    ASSERT_EQ(drained->size(), 1u);
    EXPECT_EQ((*drained)[0].body, body(1000, 64));
    EXPECT_EQ(table_->queued(dev(2)), 250u);
    EXPECT_EQ(table_->queued(dev(3)), 0u);
    open(compacting(0.5));
  }
}

TEST_F(QueueTableTest, CompactionDisabledCleaningStillRetiresDeadSegments) {
  open(compacting(0.0));
  for (uint64_t n = 1; n <= 600; ++n) append(n, {dev(1)}, 200);
  disk_->run_until_idle();
  for (uint64_t n = 1; n <= 600; ++n) {
    ASSERT_TRUE(table_->remove(dev(1), std::vector<MessageId>{mid(n)}, nullptr).ok());
  }
  for (uint64_t n = 601; n <= 900; ++n) append(n, {dev(2)}, 200);
  disk_->run_until_idle();
  compact_all(*table_, *disk_);
  EXPECT_GT(table_->stats().segments_retired, 0u);
  EXPECT_EQ(table_->stats().records_copied, 0u);
  open(compacting(0.0));
  EXPECT_EQ(table_->queued(dev(1)), 0u);
  EXPECT_EQ(table_->queued(dev(2)), 300u);
}

}  // namespace
}  // namespace herald::storage

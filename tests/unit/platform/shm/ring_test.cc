// Unit tests for the SPSC record ring in one process: layout checks, wrap-around, full ring,
// batching, validation of corrupt shared state, and the doorbell's sleep/wake protocol.
#include "platform/shm/ring.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include "platform/shm/doorbell.h"
#include "platform/shm/segment.h"
#include "tests/unit/platform/shm/test_records.h"

namespace herald::shm {
namespace {

using testing::fill_record;
using testing::make_record;
using testing::record_matches;
using testing::record_type;

// A ring of `capacity` bytes at the start of a fresh memfd segment.
class RingTest : public ::testing::Test {
 protected:
  void make_ring(uint64_t capacity, uint32_t max_payload = 0) {
    auto seg = Segment::create("ring_test", ring_region_bytes(capacity));
    ASSERT_TRUE(seg.ok()) << seg.status();
    segment_ = std::make_unique<Segment>(std::move(*seg));
    region_ = segment_->bytes().first(ring_region_bytes(capacity));
    ASSERT_TRUE(ring_init(region_, {capacity, max_payload}).ok());
    auto p = RingProducer::attach(region_);
    ASSERT_TRUE(p.ok()) << p.status();
    producer_.emplace(std::move(*p));
    auto c = RingConsumer::attach(region_);
    ASSERT_TRUE(c.ok()) << c.status();
    consumer_.emplace(std::move(*c));
  }
  RingHeader* header() { return reinterpret_cast<RingHeader*>(region_.data()); }
  std::byte* data() { return region_.data() + sizeof(RingHeader); }
  void write_word(uint64_t offset, uint64_t word) { std::memcpy(data() + offset, &word, 8); }
  // Moves an empty ring's position to `offset` with filler records, read and released.
  void advance_to(uint64_t offset) {
    const uint64_t capacity = producer_->capacity_bytes();
    std::vector<std::byte> filler;
    RecordView v[1];
    for (;;) {
      const uint64_t pos = header()->tail % capacity;
      const uint64_t gap = (offset + capacity - pos) % capacity;
      if (gap == 0) return;
      // Never past the end (that would wrap and overshoot), never above the record limit.
      const uint64_t record = std::min(
          {gap, capacity - pos, uint64_t{producer_->max_payload_bytes() / 2} & ~uint64_t{7}});
      filler.assign(record - kRingRecordHeaderBytes, std::byte{0xee});
      ASSERT_EQ(producer_->try_enqueue(0, filler), RingStatus::kOk);
      ASSERT_EQ(consumer_->read_batch(v).count, 1u);
      consumer_->release();
    }
  }

  std::unique_ptr<Segment> segment_;
  std::span<std::byte> region_;
  std::optional<RingProducer> producer_;
  std::optional<RingConsumer> consumer_;
};

std::vector<std::byte> pattern(size_t n, uint8_t base) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(base + i));
  return v;
}

// --- Layout and attach checks ---------------------------------------------------------------

TEST_F(RingTest, HeaderFieldsSitOnSeparateCacheLines) {
  EXPECT_EQ(offsetof(RingHeader, tail), 64u);
  EXPECT_EQ(offsetof(RingHeader, head), 128u);
  EXPECT_EQ(offsetof(RingHeader, consumer_waiting), 192u);
  EXPECT_EQ(ring_region_bytes(4096), 256u + 4096u);
  EXPECT_EQ(ring_max_payload_bytes(4096), 2048u - 8u);
}

TEST_F(RingTest, InitRejectsBadConfigs) {
  auto seg = Segment::create("ring_cfg", 1 << 16);
  ASSERT_TRUE(seg.ok());
  const auto region = seg->bytes();
  EXPECT_FALSE(ring_init(region, {1000, 0}).ok());             // not a power of two
  EXPECT_FALSE(ring_init(region, {64, 0}).ok());               // below the minimum
  EXPECT_FALSE(ring_init(region, {1 << 16, 0}).ok());          // does not fit with its header
  EXPECT_FALSE(ring_init(region, {4096, 2041}).ok());          // record could exceed half the ring
  EXPECT_FALSE(ring_init(region.subspan(8), {4096, 0}).ok());  // misaligned
  EXPECT_TRUE(ring_init(region, {4096, 2040}).ok());
  EXPECT_TRUE(ring_init(region, {1 << 15, 100}).ok());
}

TEST_F(RingTest, AttachRejectsForeignLayouts) {
  make_ring(4096, 1000);
  EXPECT_TRUE(RingConsumer::attach(region_, {4096, 1000}).ok());
  // A peer compiled for another capacity or record limit.
  auto wrong_capacity = RingConsumer::attach(region_, {8192, 0});
  EXPECT_EQ(wrong_capacity.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wrong_capacity.status().message().find("capacity"), std::string_view::npos);
  EXPECT_FALSE(RingProducer::attach(region_, {0, 999}).ok());
  // A region too small for what the header claims.
  EXPECT_FALSE(RingProducer::attach(region_.first(ring_region_bytes(2048))).ok());

  header()->version = kRingVersion + 1;
  auto wrong_version = RingProducer::attach(region_);
  EXPECT_EQ(wrong_version.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wrong_version.status().message().find("version"), std::string_view::npos);
  header()->version = kRingVersion;

  header()->capacity_bytes = 3000;  // corrupt geometry behind a valid magic
  EXPECT_FALSE(RingConsumer::attach(region_).ok());
  header()->capacity_bytes = 4096;

  header()->tail = 8192;  // more than a capacity ahead of head
  EXPECT_EQ(RingConsumer::attach(region_).status().code(), absl::StatusCode::kDataLoss);
  header()->tail = 0;

  header()->magic = 0;
  auto no_magic = RingConsumer::attach(region_);
  EXPECT_NE(no_magic.status().message().find("magic"), std::string_view::npos);
}

// --- Records ----------------------------------------------------------------------------------

TEST_F(RingTest, SingleRecordsRoundTrip) {
  make_ring(1024);
  RecordView view[4];
  EXPECT_EQ(consumer_->read_batch(view).status, RingStatus::kEmpty);
  const auto a = pattern(13, 1);
  const auto b = pattern(0, 0);
  ASSERT_EQ(producer_->try_enqueue(7, a), RingStatus::kOk);
  ASSERT_EQ(producer_->try_enqueue(8, b), RingStatus::kOk);
  const ReadResult r = consumer_->read_batch(view);
  ASSERT_EQ(r.status, RingStatus::kOk);
  ASSERT_EQ(r.count, 2u);
  EXPECT_EQ(view[0].type, 7u);
  ASSERT_EQ(view[0].payload.size(), 13u);
  EXPECT_EQ(std::memcmp(view[0].payload.data(), a.data(), 13), 0);
  EXPECT_EQ(view[1].type, 8u);
  EXPECT_TRUE(view[1].payload.empty());
  consumer_->release();
  EXPECT_EQ(header()->head, 8u + 16u + 8u);  // 13 bytes pad to 16; empty record is its header
  EXPECT_EQ(consumer_->read_batch(view).status, RingStatus::kEmpty);
}

TEST_F(RingTest, FullRingReportsFullAndNeverOverwrites) {
  make_ring(1024);
  const auto rec = pattern(56, 9);  // 64 bytes with its header: exactly 16 fit
  int enqueued = 0;
  while (producer_->try_enqueue(static_cast<uint32_t>(enqueued), rec) == RingStatus::kOk) {
    ++enqueued;
    ASSERT_LT(enqueued, 1000);
  }
  EXPECT_EQ(enqueued, 16);
  EXPECT_EQ(producer_->try_enqueue(99, rec), RingStatus::kFull);
  EXPECT_EQ(producer_->stats().full, 2u);  // the loop's last try and this one

  // Still intact: every record reads back in order.
  std::vector<RecordView> views(32);
  ReadResult r = consumer_->read_batch(views);
  ASSERT_EQ(r.count, 16u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(views[i].type, static_cast<uint32_t>(i));
    EXPECT_EQ(std::memcmp(views[i].payload.data(), rec.data(), rec.size()), 0);
  }
  // Read but not released: the space is still held.
  EXPECT_EQ(producer_->try_enqueue(99, rec), RingStatus::kFull);
  consumer_->release();
  EXPECT_EQ(producer_->try_enqueue(99, rec), RingStatus::kOk);
}

TEST_F(RingTest, OversizedRecordIsTooLargeNotFull) {
  make_ring(1024, 100);
  EXPECT_EQ(producer_->try_enqueue(1, pattern(101, 0)), RingStatus::kTooLarge);
  EXPECT_EQ(producer_->try_enqueue(1, pattern(100, 0)), RingStatus::kOk);
  EXPECT_EQ(producer_->try_enqueue(kRingWrapType, pattern(4, 0)), RingStatus::kInvalid);
  EXPECT_EQ(producer_->stats().too_large, 1u);
}

TEST_F(RingTest, RecordThatDoesNotFitBeforeTheEndWrapsWithAMarker) {
  make_ring(256);
  std::vector<RecordView> v(8);
  advance_to(200);  // 56 bytes remain before the end
  // 60 bytes pad to 64 + 8 header = 72 > 56: marker at 200, record at 0.
  const auto rec = pattern(60, 3);
  ASSERT_EQ(producer_->try_enqueue(2, rec), RingStatus::kOk);
  uint64_t marker;
  std::memcpy(&marker, data() + 200, 8);
  EXPECT_EQ(static_cast<uint32_t>(marker >> 32), kRingWrapType);
  EXPECT_EQ(static_cast<uint32_t>(marker), 56u - 8u);
  EXPECT_EQ(header()->tail, 256u + 72u);
  const ReadResult r = consumer_->read_batch(v);
  ASSERT_EQ(r.count, 1u);
  EXPECT_EQ(v[0].type, 2u);
  EXPECT_EQ(v[0].payload.data(), data() + 8);
  EXPECT_EQ(std::memcmp(v[0].payload.data(), rec.data(), rec.size()), 0);
}

TEST_F(RingTest, LargestRecordAlwaysFitsInAnEmptyRingWhateverTheWrapPoint) {
  make_ring(256);  // max payload 120: record 128 bytes = half the ring
  std::vector<RecordView> v(4);
  const auto big = pattern(ring_max_payload_bytes(256), 5);
  for (uint64_t offset = 0; offset < 256; offset += 8) {
    advance_to(offset);
    ASSERT_EQ(producer_->try_enqueue(2, big), RingStatus::kOk) << "offset " << offset;
    ASSERT_EQ(consumer_->read_batch(v).count, 1u);
    EXPECT_EQ(v[0].payload.size(), big.size());
    consumer_->release();
  }
}

TEST_F(RingTest, BatchIsInvisibleUntilCommitAndPublishedOnce) {
  make_ring(4096);
  std::vector<RecordView> v(64);
  for (uint32_t i = 0; i < 32; ++i) {
    const Reservation r = producer_->reserve(i, 10 + i);
    ASSERT_EQ(r.status, RingStatus::kOk);
    std::memset(r.payload.data(), static_cast<int>(i), r.payload.size());
  }
  EXPECT_EQ(header()->tail, 0u);  // nothing published yet
  EXPECT_FALSE(consumer_->has_data());
  EXPECT_EQ(consumer_->read_batch(v).status, RingStatus::kEmpty);
  EXPECT_EQ(producer_->commit(), 32u);
  EXPECT_EQ(producer_->stats().commits, 1u);
  EXPECT_EQ(producer_->commit(), 0u);  // nothing new: no second store
  EXPECT_EQ(producer_->stats().commits, 1u);

  const ReadResult r = consumer_->read_batch(std::span(v).first(20));
  ASSERT_EQ(r.count, 20u);
  const ReadResult r2 = consumer_->read_batch(v);
  ASSERT_EQ(r2.count, 12u);
  EXPECT_EQ(header()->head, 0u);  // reading does not release
  consumer_->release();
  EXPECT_EQ(consumer_->stats().releases, 1u);
  EXPECT_EQ(header()->head, header()->tail);
  for (uint32_t i = 0; i < 12; ++i) {
    EXPECT_EQ(v[i].type, 20 + i);
    EXPECT_EQ(v[i].payload.size(), 30 + i);
  }
}

TEST_F(RingTest, EnqueueBatchStopsAtFullAndReportsWhy) {
  make_ring(1024);
  const auto rec = pattern(56, 1);
  std::vector<OutRecord> batch(20, OutRecord{5, rec});
  RingStatus why = RingStatus::kOk;
  EXPECT_EQ(producer_->enqueue_batch(batch, &why), 16u);
  EXPECT_EQ(why, RingStatus::kFull);
  EXPECT_EQ(producer_->stats().commits, 1u);
  EXPECT_EQ(producer_->enqueue_batch(batch, &why), 0u);
  EXPECT_EQ(why, RingStatus::kFull);
}

// A randomized run against a model queue: random record sizes, random batch sizes on both
// sides, thousands of wrap-arounds. Seeded, so any failure replays.
TEST_F(RingTest, RandomBatchesMatchAModelQueue) {
  constexpr uint64_t kSeed = 0x5eed;
  make_ring(2048);
  const size_t max_bytes = producer_->max_payload_bytes();
  std::deque<uint64_t> model;  // indices of records in the ring
  uint64_t next = 0;
  uint64_t checked = 0;
  std::vector<RecordView> views(64);
  uint64_t rng = kSeed;
  for (int step = 0; step < 20000; ++step) {
    rng = testing::splitmix64(rng);
    if (rng % 2 == 0) {
      const size_t want = 1 + (rng >> 8) % 40;
      for (size_t i = 0; i < want; ++i) {
        const auto rec = make_record(kSeed, next, max_bytes);
        const Reservation r = producer_->reserve(record_type(kSeed, next), rec.size());
        if (r.status == RingStatus::kFull) break;
        ASSERT_EQ(r.status, RingStatus::kOk);
        if (!rec.empty()) std::memcpy(r.payload.data(), rec.data(), rec.size());
        model.push_back(next++);
      }
      (void)producer_->commit();
    } else {
      const size_t want = 1 + (rng >> 8) % 64;
      const ReadResult r = consumer_->read_batch(std::span(views).first(want));
      ASSERT_NE(r.status, RingStatus::kCorrupt);
      ASSERT_LE(r.count, model.size());
      for (size_t i = 0; i < r.count; ++i) {
        ASSERT_TRUE(
            record_matches(kSeed, model.front(), max_bytes, views[i].type, views[i].payload))
            << "record " << model.front();
        model.pop_front();
        ++checked;
      }
      consumer_->release();
    }
  }
  EXPECT_GT(checked, 10000u);
  EXPECT_GT(header()->tail / 2048, 1000u) << "expected many wrap-arounds";
}

TEST_F(RingTest, RestartedSidesResumeFromThePublishedIndices) {
  make_ring(1024);
  ASSERT_EQ(producer_->try_enqueue(1, pattern(8, 0)), RingStatus::kOk);
  ASSERT_EQ(producer_->try_enqueue(2, pattern(8, 0)), RingStatus::kOk);
  std::vector<RecordView> v(4);
  ASSERT_EQ(consumer_->read_batch(std::span(v).first(1)).count, 1u);
  consumer_->release();
  ASSERT_EQ(consumer_->read_batch(std::span(v).first(1)).count, 1u);  // read, not released
  // Both processes restart.
  auto p = RingProducer::attach(region_);
  auto c = RingConsumer::attach(region_);
  ASSERT_TRUE(p.ok() && c.ok());
  ASSERT_EQ(p->try_enqueue(3, pattern(8, 0)), RingStatus::kOk);
  const ReadResult r = c->read_batch(v);
  ASSERT_EQ(r.count, 2u);
  EXPECT_EQ(v[0].type, 2u);  // the unreleased record is delivered again
  EXPECT_EQ(v[1].type, 3u);
}

// --- Corrupt shared state -------------------------------------------------------------------

TEST_F(RingTest, CorruptRecordLengthIsRejectedAndCounted) {
  make_ring(1024, 200);
  ASSERT_EQ(producer_->try_enqueue(1, pattern(16, 0)), RingStatus::kOk);
  ASSERT_EQ(producer_->try_enqueue(2, pattern(16, 0)), RingStatus::kOk);
  // A buggy producer scribbles a huge length into the second record's header.
  write_word(24, ring_detail::record_word(0xfffffff0u, 2));
  std::vector<RecordView> v(8);
  const ReadResult r = consumer_->read_batch(v);
  EXPECT_EQ(r.status, RingStatus::kCorrupt);
  EXPECT_EQ(r.count, 1u);  // the good record before it is still delivered
  EXPECT_EQ(consumer_->stats().faults[static_cast<size_t>(RingFault::kLengthTooLarge)], 1u);
  EXPECT_TRUE(consumer_->broken());
  // Stays broken: it cannot resynchronise on variable-size records.
  EXPECT_EQ(consumer_->read_batch(v).status, RingStatus::kCorrupt);
}

struct CorruptionCase {
  const char* name;
  RingFault fault;
  // Applied to a ring of 256 bytes (max payload 100) holding record A (16 bytes) at 0 and
  // record B (16 bytes) at 24; tail = 48.
  void (*apply)(RingHeader* h, std::byte* data);
};

void set_word(std::byte* data, uint64_t offset, uint64_t word) {
  std::memcpy(data + offset, &word, 8);
}

const CorruptionCase kCorruptionCases[] = {
    {"length_above_limit", RingFault::kLengthTooLarge,
     [](RingHeader*, std::byte* d) { set_word(d, 24, ring_detail::record_word(101, 2)); }},
    {"length_past_tail", RingFault::kRecordPastTail,
     [](RingHeader*, std::byte* d) { set_word(d, 24, ring_detail::record_word(64, 2)); }},
    {"record_past_end", RingFault::kRecordPastEnd,
     [](RingHeader* h, std::byte* d) {
       // A chain of maximal records whose third starts 32 bytes before the end.
       h->tail = 256;
       set_word(d, 0, ring_detail::record_word(100, 1));
       set_word(d, 112, ring_detail::record_word(100, 1));
       set_word(d, 224, ring_detail::record_word(100, 1));
     }},
    {"wrap_marker_short", RingFault::kBadWrapMarker,
     [](RingHeader*, std::byte* d) {
       set_word(d, 24, ring_detail::record_word(8, kRingWrapType));
     }},
    {"wrap_marker_at_zero", RingFault::kBadWrapMarker,
     [](RingHeader*, std::byte* d) {
       set_word(d, 0, ring_detail::record_word(248, kRingWrapType));
     }},
    {"tail_over_capacity", RingFault::kTailOutOfRange,
     [](RingHeader* h, std::byte*) { h->tail = 256 + 64; }},
    {"tail_misaligned", RingFault::kTailOutOfRange,
     [](RingHeader* h, std::byte*) { h->tail = 47; }},
};

class RingCorruptionTest : public RingTest, public ::testing::WithParamInterface<CorruptionCase> {};

TEST_P(RingCorruptionTest, ConsumerRejectsWithoutReadingOutOfBounds) {
  const CorruptionCase& c = GetParam();
  make_ring(256, 100);
  ASSERT_EQ(producer_->try_enqueue(1, pattern(16, 0)), RingStatus::kOk);
  ASSERT_EQ(producer_->try_enqueue(2, pattern(16, 0)), RingStatus::kOk);
  c.apply(header(), data());
  std::optional<RingConsumer>& consumer = consumer_;  // attached before the corruption
  std::vector<RecordView> v(8);
  const ReadResult r = consumer->read_batch(v);
  EXPECT_EQ(r.status, RingStatus::kCorrupt) << c.name;
  EXPECT_EQ(consumer->stats().faults[static_cast<size_t>(c.fault)], 1u) << c.name;
  for (size_t i = 0; i < r.count; ++i) {
    EXPECT_GE(v[i].payload.data(), data());
    EXPECT_LE(v[i].payload.data() + v[i].payload.size(), data() + 256);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RingCorruptionTest, ::testing::ValuesIn(kCorruptionCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(RingTest, ProducerRejectsAHeadThatMovedBackwardsOrPastTail) {
  make_ring(256, 100);
  const auto rec = pattern(100, 0);
  ASSERT_EQ(producer_->try_enqueue(1, rec), RingStatus::kOk);
  ASSERT_EQ(producer_->try_enqueue(1, rec), RingStatus::kOk);
  header()->head = 4096;  // the consumer claims to have released more than was ever written
  EXPECT_EQ(producer_->try_enqueue(1, rec), RingStatus::kCorrupt);
  EXPECT_EQ(producer_->stats().faults[static_cast<size_t>(RingFault::kHeadOutOfRange)], 1u);
  EXPECT_EQ(producer_->try_enqueue(1, pattern(1, 0)), RingStatus::kCorrupt);
}

// Garbage everywhere: random data area and random (aligned, in-window) indices. Whatever the
// consumer returns must lie inside the data area; it may report corruption but never crash.
TEST_F(RingTest, RandomGarbageNeverEscapesTheDataArea) {
  make_ring(512, 200);
  uint64_t rng = 42;
  std::vector<RecordView> v(64);
  int corrupt = 0;
  for (int round = 0; round < 2000; ++round) {
    for (size_t i = 0; i < 512; i += 8) {
      rng = testing::splitmix64(rng);
      // Mostly small lengths, sometimes the wrap type, so parsing gets past the first word.
      uint64_t word = rng % 4 == 0
                          ? rng
                          : ring_detail::record_word(static_cast<uint32_t>((rng >> 8) % 64),
                                                     rng % 7 == 0 ? kRingWrapType : 1);
      std::memcpy(data() + i, &word, 8);
    }
    rng = testing::splitmix64(rng);
    const uint64_t head = (rng % 4096) & ~uint64_t{7};
    header()->head = head;
    header()->tail = head + ((rng >> 20) % 520 & ~uint64_t{7});
    auto consumer = RingConsumer::attach(region_);
    if (!consumer.ok()) continue;  // tail beyond capacity is caught at attach
    const ReadResult r = consumer->read_batch(v);
    corrupt += r.status == RingStatus::kCorrupt;
    for (size_t i = 0; i < r.count; ++i) {
      ASSERT_GE(v[i].payload.data(), data());
      ASSERT_LE(v[i].payload.data() + v[i].payload.size(), data() + 512);
      ASSERT_LE(v[i].payload.size(), 200u);
    }
  }
  EXPECT_GT(corrupt, 100);
}

// --- Doorbell -------------------------------------------------------------------------------

TEST_F(RingTest, BusyConsumerCostsTheProducerNoDoorbell) {
  make_ring(4096);
  auto bell = Doorbell::create();
  ASSERT_TRUE(bell.ok());
  producer_->set_doorbell(bell->fd());
  std::vector<RecordView> v(64);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(producer_->try_enqueue(1, pattern(40, 0)), RingStatus::kOk);
    ASSERT_EQ(consumer_->read_batch(v).count, 1u);
    consumer_->release();
  }
  EXPECT_EQ(producer_->stats().doorbell_rings, 0u);
  EXPECT_EQ(bell->drain(), 0u);  // the eventfd was never written
}

TEST_F(RingTest, WaitReturnsAtOnceWhenRecordsArePending) {
  make_ring(4096);
  auto bell = Doorbell::create();
  ASSERT_TRUE(bell.ok());
  ASSERT_EQ(producer_->try_enqueue(1, pattern(8, 0)), RingStatus::kOk);
  EXPECT_EQ(consumer_->wait(bell->fd(), -1), WaitResult::kReady);
  EXPECT_EQ(consumer_->stats().sleeps, 0u);
  EXPECT_EQ(header()->consumer_waiting, 0u);
}

TEST_F(RingTest, WaitTimesOutOnAnIdleRing) {
  make_ring(4096);
  auto bell = Doorbell::create();
  ASSERT_TRUE(bell.ok());
  EXPECT_EQ(consumer_->wait(bell->fd(), 10), WaitResult::kTimeout);
  EXPECT_EQ(consumer_->stats().sleeps, 1u);
  EXPECT_EQ(consumer_->stats().timeouts, 1u);
  EXPECT_EQ(header()->consumer_waiting, 0u);
}

TEST_F(RingTest, WaitReportsAHungUpPeer) {
  make_ring(4096);
  auto bell = Doorbell::create();
  ASSERT_TRUE(bell.ok());
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd mine(sv[0]);
  ::close(sv[1]);  // the producer's process is gone
  EXPECT_EQ(consumer_->wait(bell->fd(), -1, mine.get()), WaitResult::kPeerGone);
}

// The consumer sleeps in another thread; the producer rings exactly once, for the commit that
// finds the flag set, and not at all for the commits while the consumer is awake and busy.
TEST_F(RingTest, DoorbellRingsOnlyWhileTheConsumerSleeps) {
  make_ring(4096);
  auto bell = Doorbell::create();
  ASSERT_TRUE(bell.ok());
  producer_->set_doorbell(bell->fd());
  std::atomic<int> result{-1};
  std::thread consumer([&] { result = static_cast<int>(consumer_->wait(bell->fd(), -1)); });
  // Wait (bounded) until the consumer has announced its sleep in the shared header.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::atomic_ref<uint32_t>(header()->consumer_waiting).load() == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::yield();
  }
  ASSERT_EQ(producer_->try_enqueue(1, pattern(8, 0)), RingStatus::kOk);
  consumer.join();
  EXPECT_EQ(result.load(), static_cast<int>(WaitResult::kReady));
  EXPECT_EQ(producer_->stats().doorbell_rings, 1u);
  // Either the consumer slept and the ring woke it, or (if our commit landed between its flag
  // and its re-check) it did not sleep and the ring is still pending in the eventfd.
  EXPECT_EQ(consumer_->stats().wakeups + bell->drain(), 1u);
  EXPECT_EQ(header()->consumer_waiting, 0u);
  // Awake again: more commits ring nothing.
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(producer_->try_enqueue(1, pattern(8, 0)), RingStatus::kOk);
  EXPECT_EQ(producer_->stats().doorbell_rings, 1u);
}

// Many sleep/wake rounds with a producer thread that commits at random moments: the consumer
// must never sleep through a record (each wait has no timeout, so a lost wakeup hangs the test
// until meson's timeout).
TEST_F(RingTest, NoLostWakeupsUnderRacingCommits) {
  make_ring(4096);
  auto bell = Doorbell::create();
  ASSERT_TRUE(bell.ok());
  producer_->set_doorbell(bell->fd());
  constexpr int kRecords = 20000;
  std::thread producer([&] {
    uint64_t rng = 7;
    for (int i = 0; i < kRecords; ++i) {
      uint32_t value = static_cast<uint32_t>(i);
      std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(&value), 4);
      while (producer_->try_enqueue(1, payload) != RingStatus::kOk) std::this_thread::yield();
      rng = testing::splitmix64(rng);
      for (uint64_t spin = rng % 256; spin > 0; --spin)
        std::atomic_signal_fence(std::memory_order_seq_cst);
      if (rng % 64 == 0) std::this_thread::yield();
    }
  });
  std::vector<RecordView> v(64);
  int received = 0;
  while (received < kRecords) {
    const ReadResult r = consumer_->read_batch(v);
    ASSERT_NE(r.status, RingStatus::kCorrupt);
    for (size_t i = 0; i < r.count; ++i) {
      uint32_t value;
      std::memcpy(&value, v[i].payload.data(), 4);
      ASSERT_EQ(value, static_cast<uint32_t>(received));
      ++received;
    }
    if (r.count == 0) (void)consumer_->wait(bell->fd(), -1);
  }
  producer.join();
  EXPECT_EQ(consumer_->read_batch(v).status, RingStatus::kEmpty);
}

}  // namespace
}  // namespace herald::shm

// IpcSegment: layout, ring pairs usable from both sides, and attach-time validation of a
// segment whose header or ring headers do not match (a peer built with another layout).
#include "platform/ipc/segment.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "platform/shm/doorbell.h"

namespace herald::ipc {
namespace {

constexpr uint64_t kRing = 4096;

shm::UniqueFd dup_fd(const IpcSegment& s) {
  return shm::UniqueFd(::dup(s.fd()));
}

IpcSegmentHeader* header(const IpcSegment& s) {
  return reinterpret_cast<IpcSegmentHeader*>(s.segment().data());
}

TEST(IpcSegmentTest, LayoutIsAlignedAndDisjoint) {
  auto seg = IpcSegment::create(3, kRing);
  ASSERT_TRUE(seg.ok()) << seg.status();
  EXPECT_EQ(seg->workers(), 3);
  EXPECT_EQ(seg->ring_capacity_bytes(), kRing);
  EXPECT_NE(seg->generation(), 0u);
  std::set<std::byte*> starts;
  std::byte* prev_end = seg->segment().data() + kIpcRingsOffsetBytes;
  for (uint16_t w = 0; w < 3; ++w) {
    for (Direction d : {Direction::kDpToCp, Direction::kCpToDp}) {
      auto region = seg->ring_region(w, d);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(region.data()) % kIpcRingAlignBytes, 0u);
      EXPECT_GE(region.data(), prev_end);  // in order, no overlap
      prev_end = region.data() + region.size();
      EXPECT_LE(prev_end, seg->segment().data() + seg->segment().size());
      starts.insert(region.data());
    }
  }
  EXPECT_EQ(starts.size(), 6u);
}

TEST(IpcSegmentTest, RejectsBadParameters) {
  EXPECT_FALSE(IpcSegment::create(0, kRing).ok());
  EXPECT_FALSE(IpcSegment::create(kIpcMaxWorkers + 1, kRing).ok());
  EXPECT_FALSE(IpcSegment::create(1, 5000).ok());  // not a power of two
  EXPECT_FALSE(IpcSegment::create(1, 64).ok());    // below the ring minimum
}

TEST(IpcSegmentTest, AttachedSideSeesTheCreatorsRecords) {
  auto cp = IpcSegment::create(2, kRing);
  ASSERT_TRUE(cp.ok()) << cp.status();
  auto dp = IpcSegment::attach(dup_fd(*cp), {2, kRing});
  ASSERT_TRUE(dp.ok()) << dp.status();
  EXPECT_EQ(dp->generation(), cp->generation());
  EXPECT_EQ(dp->max_payload_bytes(), cp->max_payload_bytes());

  // Worker 1, both directions: the DP produces dp_to_cp and the CP consumes it, and back.
  auto dp_out = dp->producer(1, Direction::kDpToCp);
  auto cp_in = cp->consumer(1, Direction::kDpToCp);
  auto cp_out = cp->producer(1, Direction::kCpToDp);
  auto dp_in = dp->consumer(1, Direction::kCpToDp);
  ASSERT_TRUE(dp_out.ok() && cp_in.ok() && cp_out.ok() && dp_in.ok());
  const char up[] = "up";
  const char down[] = "down";
  ASSERT_EQ(dp_out->try_enqueue(7, std::as_bytes(std::span(up))), shm::RingStatus::kOk);
  ASSERT_EQ(cp_out->try_enqueue(9, std::as_bytes(std::span(down))), shm::RingStatus::kOk);
  shm::RecordView view;
  ASSERT_EQ(cp_in->read_batch({&view, 1}).count, 1u);
  EXPECT_EQ(view.type, 7u);
  EXPECT_EQ(std::memcmp(view.payload.data(), up, sizeof(up)), 0);
  ASSERT_EQ(dp_in->read_batch({&view, 1}).count, 1u);
  EXPECT_EQ(view.type, 9u);
  // Worker 0 saw nothing: the rings are separate.
  auto w0 = cp->consumer(0, Direction::kDpToCp);
  ASSERT_TRUE(w0.ok());
  EXPECT_FALSE(w0->has_data());
}

TEST(IpcSegmentTest, AttachRejectsExpectationMismatch) {
  auto cp = IpcSegment::create(2, kRing);
  ASSERT_TRUE(cp.ok());
  auto workers = IpcSegment::attach(dup_fd(*cp), {3, 0});
  ASSERT_FALSE(workers.ok());
  EXPECT_NE(workers.status().message().find("2 workers"), std::string::npos) << workers.status();
  auto ring = IpcSegment::attach(dup_fd(*cp), {0, 2 * kRing});
  ASSERT_FALSE(ring.ok());
  EXPECT_NE(ring.status().message().find("expects"), std::string::npos) << ring.status();
}

TEST(IpcSegmentTest, AttachRejectsAForeignOrDamagedHeader) {
  struct Case {
    const char* name;
    void (*damage)(IpcSegmentHeader*);
    const char* message;
  };
  const Case cases[] = {
      {"magic", [](IpcSegmentHeader* h) { h->magic = 42; }, "not an IPC segment"},
      {"version", [](IpcSegmentHeader* h) { h->layout_version = 2; }, "layout version"},
      {"header size", [](IpcSegmentHeader* h) { h->header_bytes = 128; }, "header"},
      {"workers", [](IpcSegmentHeader* h) { h->workers = 0; }, "workers"},
      {"too many workers", [](IpcSegmentHeader* h) { h->workers = 100; }, "geometry"},
      {"capacity", [](IpcSegmentHeader* h) { h->ring_capacity_bytes = 3000; }, "power of two"},
      {"stride", [](IpcSegmentHeader* h) { h->ring_stride_bytes += 128; }, "geometry"},
      {"offset", [](IpcSegmentHeader* h) { h->rings_offset_bytes = 0; }, "geometry"},
      {"size", [](IpcSegmentHeader* h) { h->segment_bytes *= 2; }, "geometry"},
      {"payload", [](IpcSegmentHeader* h) { h->max_payload_bytes = 0; }, "max_payload"},
  };
  for (const Case& c : cases) {
    auto cp = IpcSegment::create(2, kRing);
    ASSERT_TRUE(cp.ok());
    c.damage(header(*cp));
    auto dp = IpcSegment::attach(dup_fd(*cp));
    ASSERT_FALSE(dp.ok()) << c.name;
    EXPECT_EQ(dp.status().code(), absl::StatusCode::kFailedPrecondition) << c.name;
    EXPECT_NE(dp.status().message().find(c.message), std::string::npos)
        << c.name << ": " << dp.status();
  }
}

TEST(IpcSegmentTest, AttachChecksEveryRingHeader) {
  auto cp = IpcSegment::create(2, kRing);
  ASSERT_TRUE(cp.ok());
  // Worker 1's cp_to_dp ring says another capacity than the segment header.
  auto* ring = reinterpret_cast<shm::RingHeader*>(cp->ring_region(1, Direction::kCpToDp).data());
  ring->capacity_bytes = kRing / 2;
  auto dp = IpcSegment::attach(dup_fd(*cp));
  ASSERT_FALSE(dp.ok());
  EXPECT_NE(dp.status().message().find("worker 1 cp_to_dp"), std::string::npos) << dp.status();
}

TEST(IpcSegmentTest, ReinitRingEmptiesOnlyThatRing) {
  auto cp = IpcSegment::create(1, kRing);
  ASSERT_TRUE(cp.ok());
  auto out = cp->producer(0, Direction::kCpToDp);
  auto up = cp->producer(0, Direction::kDpToCp);
  ASSERT_TRUE(out.ok() && up.ok());
  const char x[] = "x";
  ASSERT_EQ(out->try_enqueue(1, std::as_bytes(std::span(x))), shm::RingStatus::kOk);
  ASSERT_EQ(up->try_enqueue(1, std::as_bytes(std::span(x))), shm::RingStatus::kOk);
  ASSERT_TRUE(cp->reinit_ring(0, Direction::kDpToCp).ok());
  auto in = cp->consumer(0, Direction::kDpToCp);
  auto down = cp->consumer(0, Direction::kCpToDp);
  ASSERT_TRUE(in.ok() && down.ok());
  EXPECT_FALSE(in->has_data());
  EXPECT_TRUE(down->has_data());
}

TEST(IpcSegmentTest, AnnounceSleepMakesTheProducerRing) {
  auto cp = IpcSegment::create(1, kRing);
  ASSERT_TRUE(cp.ok());
  auto bell = shm::Doorbell::create();
  ASSERT_TRUE(bell.ok());
  auto in = cp->consumer(0, Direction::kDpToCp);
  auto out = cp->producer(0, Direction::kDpToCp);
  ASSERT_TRUE(in.ok() && out.ok());
  out->set_doorbell(bell->fd());
  const char x[] = "x";
  // Not announced: a commit does not ring.
  ASSERT_EQ(out->try_enqueue(1, std::as_bytes(std::span(x))), shm::RingStatus::kOk);
  EXPECT_EQ(bell->drain(), 0u);
  // Records are there, so announcing reports them (do not sleep).
  EXPECT_TRUE(announce_sleep(cp->ring_region(0, Direction::kDpToCp), *in));
  shm::RecordView view;
  ASSERT_EQ(in->read_batch({&view, 1}).count, 1u);
  in->release();
  EXPECT_FALSE(announce_sleep(cp->ring_region(0, Direction::kDpToCp), *in));
  ASSERT_EQ(out->try_enqueue(1, std::as_bytes(std::span(x))), shm::RingStatus::kOk);
  EXPECT_EQ(bell->drain(), 1u);
  set_consumer_waiting(cp->ring_region(0, Direction::kDpToCp), false);
  ASSERT_EQ(out->try_enqueue(1, std::as_bytes(std::span(x))), shm::RingStatus::kOk);
  EXPECT_EQ(bell->drain(), 0u);
}

}  // namespace
}  // namespace herald::ipc

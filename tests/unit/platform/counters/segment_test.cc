// Tests for the counters segment over shared memory: a reader in another process, attached
// read-only to a descriptor passed over a socketpair, sees the writers' increments; a second
// writer attaches read-write; the read-only mapping cannot be written.
#include "platform/counters/segment.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

namespace herald::counters {
namespace {

constexpr Capacity kCapacity{.max_entries = 128, .max_threads = 4, .slots_per_thread = 2048};

// Child exit codes, so the parent can say what went wrong.
enum ChildExit : int {
  kChildOk = 0,
  kChildRecvFailed = 10,
  kChildAttachFailed = 11,
  kChildNotReadOnly = 12,
  kChildReadFailed = 13,
  kChildMissingEntry = 14,
  kChildNotMonotonic = 15,
  kChildAboveFinal = 16,
  kChildTimedOut = 17,
  kChildWrongFinal = 18,
};

constexpr uint32_t kWriters = 2;
constexpr uint64_t kIterations = 300'000;

// Runs in the forked child: no gtest assertions here, only an exit code.
int child_reader(int sock) {
  auto received = shm::recv_fds(sock);
  if (!received.ok() || received->fds.size() != 1) return kChildRecvFailed;
  auto view = CountersReadView::attach(std::move(received->fds[0]));
  if (!view.ok()) return kChildAttachFailed;
  if (!view->segment().read_only()) return kChildNotReadOnly;
  CounterReader& reader = view->reader();
  const uint64_t final_packets = kWriters * kIterations;
  uint64_t last = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::chrono::steady_clock::time_point finished_at{};
  bool told_parent = false;
  Snapshot s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!reader.read(&s).ok()) return kChildReadFailed;
    const Metric* packets = s.find("rx.packets");
    const Metric* phase = s.find("test.phase");
    if (packets == nullptr || phase == nullptr) return kChildMissingEntry;
    if (packets->counter < last) return kChildNotMonotonic;
    if (packets->counter > final_packets) return kChildAboveFinal;
    last = packets->counter;
    if (!told_parent) {
      // The parent starts its writers only now, so reads overlap the writes.
      const char ready = 'r';
      if (::write(sock, &ready, 1) != 1) return kChildRecvFailed;
      told_parent = true;
    }
    if (phase->gauge == 2) {
      // Writing is over. The values are published by relaxed stores, so allow a moment for
      // them to become visible; after that they must be exact.
      if (finished_at == std::chrono::steady_clock::time_point{}) {
        finished_at = std::chrono::steady_clock::now();
      }
      const Metric* lat = s.find("rx.latency_ns");
      if (lat == nullptr) return kChildMissingEntry;
      const bool right = packets->counter == final_packets &&
                         lat->histogram.count() == kWriters * kIterations / 100 &&
                         s.find("late.counter") != nullptr;
      if (right) return kChildOk;
      if (std::chrono::steady_clock::now() - finished_at > std::chrono::seconds(2)) {
        return kChildWrongFinal;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));  // 2-core CI machines
  }
  return kChildTimedOut;
}

TEST(CountersSegment, ReaderInAnotherProcessAttachesReadOnly) {
  auto seg = CountersSegment::create("herald-counters-test", kCapacity);
  ASSERT_TRUE(seg.ok()) << seg.status();
  CounterRegistry& reg = seg->registry();
  const CounterHandle packets = *reg.counter("rx.packets");
  const GaugeHandle phase = *reg.gauge("test.phase");
  const HistogramHandle lat = *reg.histogram("rx.latency_ns");

  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  // Fork before any thread exists, so the child starts from a single-threaded image.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(sv[0]);
    ::_exit(child_reader(sv[1]));
  }
  ::close(sv[1]);
  const int fd = seg->fd();
  ASSERT_TRUE(shm::send_fds(sv[0], std::span<const int>(&fd, 1), {}).ok());

  ThreadCounters control = *reg.thread(kWriters);
  control.set(phase, 1);
  char ready = 0;
  ASSERT_EQ(::read(sv[0], &ready, 1), 1) << "child did not attach and read";
  std::vector<ThreadCounters> blocks;
  for (uint32_t t = 0; t < kWriters; ++t) blocks.push_back(*reg.thread(t));
  std::vector<std::thread> writers;
  for (uint32_t t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      for (uint64_t i = 0; i < kIterations; ++i) {
        blocks[t].add(packets);
        if (i % 100 == 0) blocks[t].record(lat, i);
      }
    });
  }
  for (auto& w : writers) w.join();
  // A layout change while the other process reads, then the signal that writing is over.
  ASSERT_TRUE(reg.counter("late.counter").ok());
  control.set(phase, 2);

  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ::close(sv[0]);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), kChildOk);
}

TEST(CountersSegment, SecondWriterAttachesReadWrite) {
  auto seg = CountersSegment::create("herald-counters-rw", kCapacity);
  ASSERT_TRUE(seg.ok()) << seg.status();
  EXPECT_GE(seg->segment().size(), region_size_bytes(kCapacity));
  const CounterHandle a = *seg->registry().counter("a");
  ThreadCounters t0 = *seg->registry().thread(0);
  t0.add(a, 4);

  auto other = CountersSegment::attach(shm::UniqueFd(::dup(seg->fd())));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->registry().counter("a")->slot(), a.slot());
  ThreadCounters t1 = *other->registry().thread(1);
  t1.add(a, 6);
  ASSERT_TRUE(other->registry().gauge("g").ok());

  auto view = CountersReadView::attach(shm::UniqueFd(::dup(seg->fd())));
  ASSERT_TRUE(view.ok()) << view.status();
  Snapshot s;
  ASSERT_TRUE(view->reader().read(&s).ok());
  EXPECT_EQ(s.find("a")->counter, 10u);
  EXPECT_NE(s.find("g"), nullptr);
  EXPECT_EQ(seg->registry().entry_count(), 2u);
}

TEST(CountersSegment, RejectsBadCapacityAndForeignSegments) {
  EXPECT_EQ(CountersSegment::create("bad", Capacity{.max_threads = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A plain shm segment that was never formatted is not a counters segment.
  auto plain = shm::Segment::create("not-counters", 64 * 1024);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(CountersReadView::attach(shm::UniqueFd(::dup(plain->fd()))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountersSegment::attach(shm::UniqueFd(::dup(plain->fd()))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CountersSegmentDeathTest, ReadOnlyMappingCannotBeWritten) {
  auto seg = CountersSegment::create("herald-counters-ro", kCapacity);
  ASSERT_TRUE(seg.ok()) << seg.status();
  auto view = CountersReadView::attach(shm::UniqueFd(::dup(seg->fd())));
  ASSERT_TRUE(view.ok()) << view.status();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::byte* data = view->segment().data();
  EXPECT_DEATH({ *reinterpret_cast<volatile std::byte*>(data) = std::byte{1}; }, "");
}

TEST(CountersSegment, HugetlbfsBackingWhenAvailable) {
  auto seg = CountersSegment::create("herald-counters-huge", kCapacity, shm::Backing::kHugetlbfs);
  if (!seg.ok()) GTEST_SKIP() << "no 2 MiB pages here: " << seg.status();
  EXPECT_EQ(seg->segment().size() % shm::kHugePageBytes, 0u);
  const CounterHandle a = *seg->registry().counter("a");
  ThreadCounters t0 = *seg->registry().thread(0);
  t0.add(a);
  auto view = CountersReadView::attach(shm::UniqueFd(::dup(seg->fd())));
  ASSERT_TRUE(view.ok()) << view.status();
  Snapshot s;
  ASSERT_TRUE(view->reader().read(&s).ok());
  EXPECT_EQ(s.find("a")->counter, 1u);
}

}  // namespace
}  // namespace herald::counters

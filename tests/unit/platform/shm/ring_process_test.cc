// The SPSC ring between two real processes: the parent creates the segment, the ring and the
// doorbell after fork() and hands them to the child over a socketpair with SCM_RIGHTS, as the
// control plane hands them to a dataplane worker. The child is the consumer.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "platform/assert/assert.h"
#include "platform/shm/doorbell.h"
#include "platform/shm/ring.h"
#include "platform/shm/segment.h"
#include "tests/unit/platform/shm/test_records.h"

namespace herald::shm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(60);  // only a hang guard, never a speed check

// What a consumer child sends back before it exits.
struct ChildReport {
  uint64_t received = 0;
  uint64_t sleeps = 0;
  uint64_t wakeups = 0;
  uint64_t faults = 0;
  uint64_t corrupt_status = 0;
};

// Exit codes of consumer children (0 = success).
enum ChildExit : int {
  kChildOk = 0,
  kChildRecvFailed = 10,
  kChildAttachFailed,
  kChildMismatch,
  kChildCorrupt,
  kChildPeerGone,
  kChildTimeout,
  kChildSocket,
};

// The consumer's half of the setup: everything arrives over the socket.
struct ConsumerSide {
  Segment segment;
  Doorbell bell;
  RingConsumer ring;
};

std::optional<ConsumerSide> consumer_setup(int sock) {
  auto msg = recv_fds(sock);
  if (!msg.ok() || msg->fds.size() != 2 || msg->payload.size() != sizeof(uint64_t)) {
    return std::nullopt;
  }
  uint64_t capacity;
  std::memcpy(&capacity, msg->payload.data(), sizeof(capacity));
  auto seg = Segment::attach(std::move(msg->fds[0]));
  auto bell = Doorbell::adopt(std::move(msg->fds[1]));
  if (!seg.ok() || !bell.ok() || seg->size() < ring_region_bytes(capacity)) return std::nullopt;
  // The expected capacity travels in the payload: a mismatched layout fails attach.
  auto ring = RingConsumer::attach(seg->bytes().first(ring_region_bytes(capacity)), {capacity, 0});
  if (!ring.ok()) return std::nullopt;
  return ConsumerSide{std::move(*seg), std::move(*bell), std::move(*ring)};
}

bool send_report(int sock, const ChildReport& r) {
  return ::send(sock, &r, sizeof(r), MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof(r));
}

bool send_byte(int sock, char c) {
  return ::send(sock, &c, 1, MSG_NOSIGNAL) == 1;
}
bool recv_byte(int sock, char* c) {
  return ::recv(sock, c, 1, MSG_WAITALL) == 1;
}

// Parent-side fixture: a socketpair, a child running `child_main(sock)`, and after the fork the
// segment + ring + doorbell, sent to the child.
class RingProcessTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void start_child(const std::function<int(int)>& child_main) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::close(sv[0]);
      ::_exit(child_main(sv[1]));
    }
    ::close(sv[1]);
    sock_.reset(sv[0]);
    // A hang guard on every blocking read from the child.
    timeval tv{60, 0};
    ::setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  // Creates the shared state (after the fork, so the child only has it through SCM_RIGHTS).
  void create_ring(uint64_t capacity) {
    capacity_ = capacity;
    auto seg = Segment::create("ring_process_test", ring_region_bytes(capacity));
    ASSERT_TRUE(seg.ok()) << seg.status();
    segment_.emplace(std::move(*seg));
    ASSERT_TRUE(ring_init(region(), {capacity, 0}).ok());
    auto bell = Doorbell::create();
    ASSERT_TRUE(bell.ok());
    bell_.emplace(std::move(*bell));
    auto p = RingProducer::attach(region(), {capacity, 0});
    ASSERT_TRUE(p.ok()) << p.status();
    producer_.emplace(std::move(*p));
    producer_->set_doorbell(bell_->fd());
  }

  void send_ring_to_child() {
    const int fds[] = {segment_->fd(), bell_->fd()};
    ASSERT_TRUE(send_fds(sock_.get(), fds, std::as_bytes(std::span(&capacity_, 1))).ok());
  }

  std::span<std::byte> region() { return segment_->bytes().first(ring_region_bytes(capacity_)); }
  RingHeader* header() { return reinterpret_cast<RingHeader*>(segment_->data()); }

  // Waits for the child; returns its exit code, or -signal if it was killed.
  int reap() {
    int status = 0;
    EXPECT_EQ(::waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  ChildReport read_report() {
    ChildReport r;
    EXPECT_EQ(::recv(sock_.get(), &r, sizeof(r), MSG_WAITALL), static_cast<ssize_t>(sizeof(r)));
    return r;
  }

  // Enqueues record `index` of the seeded stream; retries while the ring is full. Fails the
  // test (instead of hanging) if the consumer dies or the deadline passes.
  void enqueue_blocking(uint64_t seed, uint64_t index, size_t max_bytes) {
    const auto rec = testing::make_record(seed, index, max_bytes);
    const auto deadline = Clock::now() + kDeadline;
    for (;;) {
      const RingStatus s = producer_->try_enqueue(testing::record_type(seed, index), rec);
      if (s == RingStatus::kOk) return;
      ASSERT_EQ(s, RingStatus::kFull);
      ASSERT_FALSE(peer_hung_up(sock_.get())) << "consumer died";
      ASSERT_LT(Clock::now(), deadline);
      ::sched_yield();
    }
  }

  pid_t pid_ = -1;
  UniqueFd sock_;
  uint64_t capacity_ = 0;
  std::optional<Segment> segment_;
  std::optional<Doorbell> bell_;
  std::optional<RingProducer> producer_;
};

// Consumer child: reads `count` records of the seeded stream, `batch` at a time, checking each
// byte; sleeps on the doorbell whenever the ring is empty.
int verifying_consumer(int sock, uint64_t seed, uint64_t count, size_t max_bytes, size_t batch) {
  auto side = consumer_setup(sock);
  if (!side) return kChildAttachFailed;
  std::vector<RecordView> views(batch);
  uint64_t next = 0;
  while (next < count) {
    const ReadResult r = side->ring.read_batch(views);
    if (r.status == RingStatus::kCorrupt) return kChildCorrupt;
    for (size_t i = 0; i < r.count; ++i, ++next) {
      if (!testing::record_matches(seed, next, max_bytes, views[i].type, views[i].payload)) {
        return kChildMismatch;
      }
    }
    side->ring.release();
    if (r.count == 0) {
      const WaitResult w = side->ring.wait(side->bell.fd(), 60000, sock);
      if (w == WaitResult::kPeerGone) return kChildPeerGone;
      if (w == WaitResult::kTimeout) return kChildTimeout;
    }
  }
  const auto& st = side->ring.stats();
  ChildReport rep{next, st.sleeps, st.wakeups, 0, 0};
  return send_report(sock, rep) ? kChildOk : kChildSocket;
}

struct TransferCase {
  const char* name;
  size_t batch;  // records per producer commit and per consumer read (1 = one at a time)
};

class RingTransferTest : public RingProcessTest,
                         public ::testing::WithParamInterface<TransferCase> {};

// Random sizes (0..600 bytes, with the extremes weighted) through a 4 KiB ring: ~40 000
// records, thousands of wrap-arounds, each checked byte for byte in the other process.
TEST_P(RingTransferTest, RandomRecordsArriveByteExactAndInOrder) {
  constexpr uint64_t kSeed = 0xfeed;
  constexpr uint64_t kCount = 40000;
  constexpr size_t kMaxBytes = 600;
  const size_t batch = GetParam().batch;
  start_child([&](int sock) { return verifying_consumer(sock, kSeed, kCount, kMaxBytes, batch); });
  create_ring(4096);
  send_ring_to_child();

  std::vector<std::vector<std::byte>> records(batch);
  std::vector<OutRecord> out(batch);
  uint64_t next = 0;
  const auto deadline = Clock::now() + kDeadline;
  while (next < kCount) {
    if (batch == 1) {
      enqueue_blocking(kSeed, next++, kMaxBytes);
      continue;
    }
    const size_t n = std::min<uint64_t>(batch, kCount - next);
    for (size_t i = 0; i < n; ++i) {
      records[i] = testing::make_record(kSeed, next + i, kMaxBytes);
      out[i] = {testing::record_type(kSeed, next + i), records[i]};
    }
    const size_t sent = producer_->enqueue_batch(std::span(out).first(n));
    next += sent;
    if (sent < n) {
      ASSERT_FALSE(peer_hung_up(sock_.get())) << "consumer died";
      ASSERT_LT(Clock::now(), deadline);
      ::sched_yield();
    }
  }
  const ChildReport rep = read_report();
  ASSERT_EQ(reap(), kChildOk);
  EXPECT_EQ(rep.received, kCount);
  EXPECT_EQ(producer_->stats().records, kCount);
  EXPECT_GT(header()->tail / 4096, 1000u) << "expected many wrap-arounds";
  if (batch > 1) {
    EXPECT_LT(producer_->stats().commits, kCount);
  }
  // Every ring answered a consumer that announced a sleep; a busy consumer costs none.
  RecordProperty("doorbell_rings", std::to_string(producer_->stats().doorbell_rings));
  RecordProperty("consumer_sleeps", std::to_string(rep.sleeps));
}

INSTANTIATE_TEST_SUITE_P(Modes, RingTransferTest,
                         ::testing::Values(TransferCase{"single", 1}, TransferCase{"batch32", 32}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// The producer fills the ring while the consumer is held back: it gets kFull (immediately, not
// blocking, nothing overwritten), and succeeds again once the consumer has drained.
TEST_F(RingProcessTest, FullRingReportsFullThenSucceedsAfterTheConsumerDrains) {
  constexpr uint64_t kSeed = 77;
  constexpr size_t kMaxBytes = 300;
  start_child([&](int sock) {
    auto side = consumer_setup(sock);
    if (!side) return static_cast<int>(kChildAttachFailed);
    uint64_t next = 0;
    std::vector<RecordView> views(64);
    for (int round = 0; round < 2; ++round) {
      char cmd;
      if (!recv_byte(sock, &cmd)) return static_cast<int>(kChildSocket);
      for (;;) {  // drain everything that is there now
        const ReadResult r = side->ring.read_batch(views);
        if (r.status == RingStatus::kCorrupt) return static_cast<int>(kChildCorrupt);
        if (r.count == 0) break;
        for (size_t i = 0; i < r.count; ++i, ++next) {
          if (!testing::record_matches(kSeed, next, kMaxBytes, views[i].type, views[i].payload)) {
            return static_cast<int>(kChildMismatch);
          }
        }
        side->ring.release();
      }
      if (!send_report(sock, ChildReport{next, 0, 0, 0, 0})) return static_cast<int>(kChildSocket);
    }
    return static_cast<int>(kChildOk);
  });
  create_ring(4096);
  send_ring_to_child();

  uint64_t next = 0;
  for (;;) {
    const auto rec = testing::make_record(kSeed, next, kMaxBytes);
    const RingStatus s = producer_->try_enqueue(testing::record_type(kSeed, next), rec);
    if (s == RingStatus::kFull) break;
    ASSERT_EQ(s, RingStatus::kOk);
    ++next;
    ASSERT_LT(next, 4096u);
  }
  const uint64_t filled = next;
  EXPECT_GT(filled, 4u);
  // Full stays full, without blocking, while the consumer does nothing.
  for (int i = 0; i < 100; ++i) {
    const auto rec = testing::make_record(kSeed, next, kMaxBytes);
    ASSERT_EQ(producer_->try_enqueue(testing::record_type(kSeed, next), rec), RingStatus::kFull);
  }
  ASSERT_TRUE(send_byte(sock_.get(), 'd'));
  EXPECT_EQ(read_report().received, filled);  // all of them, intact and in order
  // Room again.
  for (int i = 0; i < 3; ++i) {
    const auto rec = testing::make_record(kSeed, next, kMaxBytes);
    ASSERT_EQ(producer_->try_enqueue(testing::record_type(kSeed, next), rec), RingStatus::kOk);
    ++next;
  }
  ASSERT_TRUE(send_byte(sock_.get(), 'd'));
  EXPECT_EQ(read_report().received, filled + 3);
  EXPECT_EQ(reap(), kChildOk);
}

// The consumer is killed while asleep (its "waiting" flag left set). The producer keeps
// running: it gets kFull, rings a doorbell nobody reads without ever blocking, and sees the
// peer gone on the socket. A restarted consumer then resumes at the released head.
TEST_F(RingProcessTest, ConsumerDeathLeavesTheProducerRunningAndARestartResumes) {
  constexpr uint64_t kSeed = 99;
  constexpr size_t kMaxBytes = 200;
  constexpr uint64_t kFirst = 10;
  start_child([&](int sock) {
    auto side = consumer_setup(sock);
    if (!side) return static_cast<int>(kChildAttachFailed);
    std::vector<RecordView> views(kFirst);
    uint64_t got = 0;
    while (got < kFirst) {
      const ReadResult r = side->ring.read_batch(std::span(views).first(kFirst - got));
      got += r.count;
      side->ring.release();
      if (r.count == 0) (void)side->ring.wait(side->bell.fd(), 60000);
    }
    if (!send_byte(sock, 'r')) return static_cast<int>(kChildSocket);
    for (;;) (void)side->ring.wait(side->bell.fd(), -1);  // asleep until killed
  });
  create_ring(4096);
  send_ring_to_child();
  for (uint64_t i = 0; i < kFirst; ++i) enqueue_blocking(kSeed, i, kMaxBytes);
  char c;
  ASSERT_TRUE(recv_byte(sock_.get(), &c));
  // Until the child is asleep with its flag set, then kill it there.
  const auto deadline = Clock::now() + kDeadline;
  while (std::atomic_ref<uint32_t>(header()->consumer_waiting).load() == 0) {
    ASSERT_LT(Clock::now(), deadline);
    ::sched_yield();
  }
  ASSERT_EQ(::kill(pid_, SIGKILL), 0);
  EXPECT_EQ(reap(), -SIGKILL);
  EXPECT_TRUE(peer_hung_up(sock_.get()));

  // Keep producing well past capacity: full, never blocked, never crashed.
  uint64_t next = kFirst;
  uint64_t full = 0;
  for (int i = 0; i < 5000; ++i) {
    const auto rec = testing::make_record(kSeed, next, kMaxBytes);
    const RingStatus s = producer_->try_enqueue(testing::record_type(kSeed, next), rec);
    if (s == RingStatus::kOk) {
      ++next;
    } else {
      ASSERT_EQ(s, RingStatus::kFull);
      ++full;
    }
  }
  EXPECT_GT(full, 4000u);
  EXPECT_GE(producer_->stats().doorbell_rings, 1u);  // the dead consumer's flag was set
  EXPECT_EQ(producer_->stats().doorbell_errors, 0u);

  // A restarted consumer (new process, new socket) gets the rest, starting at record kFirst.
  const uint64_t total = next;
  sock_.reset();
  start_child([&](int sock) {
    auto side = consumer_setup(sock);
    if (!side) return static_cast<int>(kChildAttachFailed);
    std::vector<RecordView> views(64);
    uint64_t n = kFirst;
    for (;;) {
      const ReadResult r = side->ring.read_batch(views);
      if (r.status == RingStatus::kCorrupt) return static_cast<int>(kChildCorrupt);
      if (r.count == 0) break;
      for (size_t i = 0; i < r.count; ++i, ++n) {
        if (!testing::record_matches(kSeed, n, kMaxBytes, views[i].type, views[i].payload)) {
          return static_cast<int>(kChildMismatch);
        }
      }
      side->ring.release();
    }
    return send_report(sock, ChildReport{n, 0, 0, 0, 0}) ? static_cast<int>(kChildOk)
                                                         : static_cast<int>(kChildSocket);
  });
  send_ring_to_child();
  EXPECT_EQ(read_report().received, total);
  EXPECT_EQ(reap(), kChildOk);
  EXPECT_EQ(producer_->try_enqueue(1, {}), RingStatus::kOk);  // room again
}

// The doorbell is rung only for a consumer that announced its sleep: once for the sleeping
// child, then never while it busy-polls through thousands of records. The eventfd's own
// counter (kernel state, not our bookkeeping) confirms how many writes happened.
TEST_F(RingProcessTest, DoorbellRingsOnlyWhenTheConsumerSleeps) {
  constexpr uint64_t kBusyRecords = 20000;
  start_child([&](int sock) {
    auto side = consumer_setup(sock);
    if (!side) return static_cast<int>(kChildAttachFailed);
    std::vector<RecordView> views(64);
    // Phase 1: sleep until the first record.
    WaitResult w;
    do {
      w = side->ring.wait(side->bell.fd(), 60000, sock);
    } while (w == WaitResult::kWoken);
    if (w != WaitResult::kReady) return static_cast<int>(kChildTimeout);
    if (side->ring.read_batch(views).count != 1) return static_cast<int>(kChildMismatch);
    side->ring.release();
    const uint64_t wakeups_phase1 = side->ring.stats().wakeups;
    if (!send_byte(sock, 'a')) return static_cast<int>(kChildSocket);
    // Phase 2: busy-poll; never wait().
    uint64_t got = 0;
    const auto deadline = Clock::now() + kDeadline;
    while (got < kBusyRecords) {
      const ReadResult r = side->ring.read_batch(views);
      if (r.status == RingStatus::kCorrupt) return static_cast<int>(kChildCorrupt);
      got += r.count;
      side->ring.release();
      if (Clock::now() > deadline) return static_cast<int>(kChildTimeout);
    }
    return send_report(sock, ChildReport{got, side->ring.stats().sleeps, wakeups_phase1, 0, 0})
               ? static_cast<int>(kChildOk)
               : static_cast<int>(kChildSocket);
  });
  create_ring(1 << 16);
  send_ring_to_child();
  const auto deadline = Clock::now() + kDeadline;
  while (std::atomic_ref<uint32_t>(header()->consumer_waiting).load() == 0) {
    ASSERT_LT(Clock::now(), deadline);
    ::sched_yield();
  }
  const std::byte one[8] = {};
  ASSERT_EQ(producer_->try_enqueue(1, one), RingStatus::kOk);
  EXPECT_EQ(producer_->stats().doorbell_rings, 1u);
  char c;
  ASSERT_TRUE(recv_byte(sock_.get(), &c));
  for (uint64_t i = 0; i < kBusyRecords; ++i) {
    while (producer_->try_enqueue(2, one) != RingStatus::kOk) {
      ASSERT_FALSE(peer_hung_up(sock_.get()));
      ::sched_yield();
    }
  }
  const ChildReport rep = read_report();
  EXPECT_EQ(reap(), kChildOk);
  EXPECT_EQ(rep.received, kBusyRecords);
  EXPECT_EQ(producer_->stats().doorbell_rings, 1u) << "a busy consumer must cost no syscall";
  EXPECT_EQ(producer_->stats().commits, kBusyRecords + 1);
  // The one write either woke the child or is still pending in the eventfd (if the record
  // landed between the child's flag and its re-check, it never slept): 1 in total.
  EXPECT_EQ(rep.wakeups + bell_->drain(), 1u);
}

// A corrupt length written into the ring by a buggy producer: the consumer process reports
// corruption and counts it; it does not crash or read outside the segment.
TEST_F(RingProcessTest, CorruptLengthIsRejectedByTheConsumerProcess) {
  start_child([&](int sock) {
    auto side = consumer_setup(sock);
    if (!side) return static_cast<int>(kChildAttachFailed);
    char cmd;
    if (!recv_byte(sock, &cmd)) return static_cast<int>(kChildSocket);
    std::vector<RecordView> views(8);
    const ReadResult r = side->ring.read_batch(views);
    uint64_t faults = 0;
    for (uint64_t f : side->ring.stats().faults) faults += f;
    return send_report(sock, ChildReport{r.count, 0, 0, faults, r.status == RingStatus::kCorrupt})
               ? static_cast<int>(kChildOk)
               : static_cast<int>(kChildSocket);
  });
  create_ring(4096);
  send_ring_to_child();
  const std::byte rec[16] = {};
  ASSERT_EQ(producer_->try_enqueue(1, rec), RingStatus::kOk);
  ASSERT_EQ(producer_->try_enqueue(2, rec), RingStatus::kOk);
  const uint64_t bad = ring_detail::record_word(1u << 30, 2);  // second record: 1 GiB long
  std::memcpy(segment_->data() + sizeof(RingHeader) + 24, &bad, 8);
  ASSERT_TRUE(send_byte(sock_.get(), 'r'));
  const ChildReport rep = read_report();
  EXPECT_EQ(reap(), kChildOk);
  EXPECT_EQ(rep.received, 1u);
  EXPECT_EQ(rep.corrupt_status, 1u);
  EXPECT_EQ(rep.faults, 1u);
}

}  // namespace
}  // namespace herald::shm

// EventLoop without the network: timers, cancellation, file I/O, run modes, cross-thread
// stop/wake, a full SQ, and shutdown with operations in flight.
#include "platform/uring/event_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/platform/uring/uring_test_util.h"

namespace herald::uring {
namespace {

using testing::make_loop;
using testing::run_until;

// Records every completion an operation reports.
struct Recorder {
  std::vector<Completion> seen;
  bool done = false;
  static void on_complete(Operation& op, const Completion& c) {
    auto* r = op.context_as<Recorder>();
    r->seen.push_back(c);
    if (!c.more) r->done = true;
  }
  int32_t last_result() const { return seen.empty() ? 1 : seen.back().result; }
};

constexpr uint64_t kMs = 1'000'000;

TEST(EventLoopTest, TimeoutsFireInDeadlineOrder) {
  struct Order {
    std::vector<int> fired;
    std::vector<int32_t> results;
  } order;
  struct Timer {
    Order* order;
    int index;
  };
  Timer timers[4] = {{&order, 0}, {&order, 1}, {&order, 2}, {&order, 3}};
  auto on_fire = [](Operation& op, const Completion& c) {
    auto* t = op.context_as<Timer>();
    t->order->fired.push_back(t->index);
    t->order->results.push_back(c.result);
    EXPECT_FALSE(c.more);
  };
  Operation ops[4];
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  // Submitted out of order; distinct deadlines must fire shortest first whatever the speed.
  const uint64_t durations_ns[4] = {30 * kMs, 0, 20 * kMs, 10 * kMs};
  for (int i = 0; i < 4; ++i) {
    ops[i].set_callback(on_fire, &timers[i]);
    loop->timeout(ops[i], durations_ns[i]);
  }
  ASSERT_TRUE(run_until(*loop, [&] { return order.fired.size() == 4; }));
  EXPECT_EQ(order.fired, (std::vector<int>{1, 3, 2, 0}));
  // A timer that fires reports 0, not the kernel's -ETIME.
  EXPECT_EQ(order.results, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(EventLoopTest, TickRepeatsUntilCancelled) {
  struct Ticks {
    EventLoop* loop = nullptr;
    int callbacks = 0;
    int64_t periods = 0;
    bool finished = false;
    int32_t final_result = 1;
  } ticks;
  Operation tick_op(
      [](Operation& op, const Completion& c) {
        auto* t = op.context_as<Ticks>();
        if (!c.more) {
          t->finished = true;
          t->final_result = c.result;
          return;
        }
        EXPECT_GE(c.result, 1);  // periods elapsed
        ++t->callbacks;
        t->periods += c.result;
        if (t->callbacks == 5) {
          EXPECT_TRUE(t->loop->cancel(op));
        }
      },
      &ticks);
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  ticks.loop = loop.get();
  loop->tick(tick_op, 2 * kMs);
  ASSERT_TRUE(run_until(*loop, [&] { return ticks.finished; }));
  EXPECT_EQ(ticks.callbacks, 5);
  EXPECT_GE(ticks.periods, 5);
  // Cancelled while armed: -ECANCELED (a tick that fired first reports its periods instead).
  EXPECT_TRUE(ticks.final_result == -ECANCELED || ticks.final_result >= 1) << ticks.final_result;
  EXPECT_FALSE(tick_op.in_flight());
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(EventLoopTest, CancelPendingRecvDeliversECANCELED) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  uint8_t buf[64];
  Recorder rec;
  Operation recv_op(&Recorder::on_complete, &rec);
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  EXPECT_FALSE(loop->cancel(recv_op));  // idle: nothing to cancel
  loop->recv(recv_op, sv[0], buf, sizeof(buf));
  // Let the kernel arm it (no data: it parks on the socket's wait queue).
  EXPECT_EQ(loop->run_once(0), 0u);
  EXPECT_TRUE(recv_op.in_flight());
  EXPECT_TRUE(loop->cancel(recv_op));
  EXPECT_TRUE(loop->cancel(recv_op));  // a second cancel is harmless
  ASSERT_TRUE(run_until(*loop, [&] { return rec.done; }));
  ASSERT_EQ(rec.seen.size(), 1u);
  EXPECT_EQ(rec.seen[0].result, -ECANCELED);
  EXPECT_FALSE(rec.seen[0].more);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  // The operation is reusable after its final callback: data now flows.
  rec = Recorder{};
  ASSERT_EQ(::write(sv[1], "hi", 2), 2);
  loop->recv(recv_op, sv[0], buf, sizeof(buf));
  ASSERT_TRUE(run_until(*loop, [&] { return rec.done; }));
  EXPECT_EQ(rec.last_result(), 2);
  EXPECT_EQ(std::memcmp(buf, "hi", 2), 0);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(EventLoopTest, CancelBeforeSubmitStillCompletesOnce) {
  // Cancel in the same iteration as the submit: the cancel SQE follows the recv's in the SQ.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  uint8_t buf[16];
  Recorder rec;
  Operation recv_op(&Recorder::on_complete, &rec);
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  loop->recv(recv_op, sv[0], buf, sizeof(buf));
  EXPECT_TRUE(loop->cancel(recv_op));
  ASSERT_TRUE(run_until(*loop, [&] { return rec.done; }));
  ASSERT_EQ(rec.seen.size(), 1u);
  EXPECT_EQ(rec.seen[0].result, -ECANCELED);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(EventLoopTest, FileWriteReadFsyncRoundTrip) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/segment.dat";
  constexpr uint32_t kBlock = 4096;
  constexpr uint64_t kSecondOffset = 64 * 1024;
  const std::vector<uint8_t> first = testing::pattern(kBlock, 1);
  const std::vector<uint8_t> second = testing::pattern(kBlock, 2);
  std::vector<uint8_t> back(kBlock);
  Recorder rec;
  Operation op(&Recorder::on_complete, &rec);
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  auto step = [&](auto submit) {
    rec = Recorder{};
    submit();
    EXPECT_TRUE(run_until(*loop, [&] { return rec.done; }));
    return rec.last_result();
  };

  // A missing file without O_CREAT is an error result, not a crash.
  const std::string missing = dir.path() + "/missing";
  EXPECT_EQ(step([&] { loop->openat(op, AT_FDCWD, missing.c_str(), O_RDONLY, 0); }), -ENOENT);

  const int fd = step([&] {
    loop->openat(op, AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
  });
  ASSERT_GE(fd, 0);
  EXPECT_EQ(step([&] { loop->fallocate(op, fd, 0, 0, 1 << 20); }), 0);
  EXPECT_EQ(step([&] { loop->write(op, fd, first.data(), kBlock, 0); }),
            static_cast<int32_t>(kBlock));
  EXPECT_EQ(step([&] { loop->write(op, fd, second.data(), kBlock, kSecondOffset); }),
            static_cast<int32_t>(kBlock));
  EXPECT_EQ(step([&] { loop->fsync(op, fd, /*data_only=*/false); }), 0);
  EXPECT_EQ(step([&] { loop->fsync(op, fd, /*data_only=*/true); }), 0);
  EXPECT_EQ(step([&] { loop->read(op, fd, back.data(), kBlock, kSecondOffset); }),
            static_cast<int32_t>(kBlock));
  EXPECT_EQ(back, second);
  EXPECT_EQ(step([&] { loop->read(op, fd, back.data(), kBlock, 0); }),
            static_cast<int32_t>(kBlock));
  EXPECT_EQ(back, first);
  // fallocate reserved 1 MiB: reads between the blocks see zeroes, reads past it see EOF.
  EXPECT_EQ(step([&] { loop->read(op, fd, back.data(), kBlock, 2 * kBlock); }),
            static_cast<int32_t>(kBlock));
  EXPECT_EQ(back, std::vector<uint8_t>(kBlock, 0));
  EXPECT_EQ(step([&] { loop->read(op, fd, back.data(), kBlock, 1 << 20); }), 0);
  EXPECT_EQ(step([&] { loop->close(op, fd); }), 0);
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // really closed
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(EventLoopTest, StopFromAnotherThread) {
  std::atomic<bool> running{false};
  Operation started(
      [](Operation& op, const Completion&) { op.context_as<std::atomic<bool>>()->store(true); },
      &running);
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  loop->nop(started);
  std::thread stopper([&] {
    while (!running.load()) std::this_thread::yield();
    loop->stop();
  });
  loop->run();  // blocking mode: returns only through stop()
  stopper.join();
  EXPECT_TRUE(running.load());
  // stop() before run(): run() returns at once, and the flag does not stick.
  loop->stop();
  loop->run();
  Recorder rec;
  Operation op(&Recorder::on_complete, &rec);
  loop->nop(op);
  EXPECT_TRUE(run_until(*loop, [&] { return rec.done; }));
}

TEST(EventLoopTest, WakeEndsABlockingWait) {
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  std::thread waker([&] { loop->wake(); });
  // No timeout: only the wake-up can end this wait, whichever comes first, wake or wait.
  (void)loop->run_once(-1);
  waker.join();
  while (loop->stats().wakeups == 0) (void)loop->run_once(-1);
  EXPECT_EQ(loop->stats().wakeups, 1u);
}

TEST(EventLoopTest, FullSubmissionQueueIsFlushedNotDropped) {
  Options options;
  options.sq_entries = 4;
  constexpr int kOps = 200;
  int completed = 0;
  auto ops = std::make_unique<Operation[]>(kOps);
  auto loop = make_loop(options);
  ASSERT_NE(loop, nullptr);
  for (int i = 0; i < kOps; ++i) {
    ops[i].set_callback(
        [](Operation& op, const Completion& c) {
          EXPECT_EQ(c.result, 0);
          ++*op.context_as<int>();
        },
        &completed);
    loop->nop(ops[i]);
  }
  ASSERT_TRUE(run_until(*loop, [&] { return completed == kOps; }));
  EXPECT_GT(loop->stats().sq_full_flushes, 0u);
  EXPECT_GE(loop->stats().sqes_submitted, static_cast<uint64_t>(kOps));
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(EventLoopTest, PersistentPollOnEventfdDoorbell) {
  for (const bool multishot : {true, false}) {
    SCOPED_TRACE(multishot ? "multishot" : "single-shot fallback");
    const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_GE(efd, 0);
    struct Doorbell {
      int fd;
      int rings = 0;
      bool finished = false;
      int32_t final_result = 1;
    } bell{efd};
    Operation poll_op(
        [](Operation& op, const Completion& c) {
          auto* b = op.context_as<Doorbell>();
          if (!c.more) {
            b->finished = true;
            b->final_result = c.result;
            return;
          }
          EXPECT_NE(c.result & POLLIN, 0);
          uint64_t value;
          EXPECT_EQ(::read(b->fd, &value, sizeof(value)), 8);
          ++b->rings;
        },
        &bell);
    Options options;
    options.allow_multishot_poll = multishot;
    auto loop = make_loop(options);
    ASSERT_NE(loop, nullptr);
    loop->poll(poll_op, efd, POLLIN, /*persistent=*/true);
    for (int i = 1; i <= 3; ++i) {
      const uint64_t one = 1;
      ASSERT_EQ(::write(efd, &one, sizeof(one)), 8);
      ASSERT_TRUE(run_until(*loop, [&] { return bell.rings == i; }));
    }
    EXPECT_TRUE(loop->cancel(poll_op));
    ASSERT_TRUE(run_until(*loop, [&] { return bell.finished; }));
    EXPECT_EQ(bell.final_result, -ECANCELED);
    if (!multishot) {
      EXPECT_GE(loop->stats().rearms, 3u);
    }
    loop.reset();
    ::close(efd);
  }
}

TEST(EventLoopTest, BusyPollCountsEmptyRoundsAndSeesSocketData) {
  Options options;
  options.mode = RunMode::kBusyPoll;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  uint8_t buf[8];
  Recorder rec;
  Operation recv_op(&Recorder::on_complete, &rec);
  auto loop = make_loop(options);
  ASSERT_NE(loop, nullptr);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(loop->poll_once(), 0u);
  EXPECT_EQ(loop->stats().empty_polls, 3u);
  EXPECT_EQ(loop->stats().sleeps, 0u);
  loop->recv(recv_op, sv[0], buf, sizeof(buf));
  EXPECT_EQ(loop->poll_once(), 0u);  // armed, nothing there yet
  ASSERT_EQ(::write(sv[1], "ping", 4), 4);
  // Completion work for a socket arrives without any blocking wait (TASKRUN flag path).
  const auto deadline = std::chrono::steady_clock::now() + testing::kTestDeadline;
  while (!rec.done && std::chrono::steady_clock::now() < deadline) (void)loop->poll_once();
  ASSERT_TRUE(rec.done);
  EXPECT_EQ(rec.last_result(), 4);
  EXPECT_EQ(loop->stats().sleeps, 0u);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(EventLoopTest, AdaptiveModeSleepsAfterEmptyPolls) {
  Options options;
  options.mode = RunMode::kAdaptive;
  options.adaptive_empty_polls = 4;
  options.adaptive_sleep_ns = 1 * kMs;
  struct State {
    EventLoop* loop = nullptr;
    int ticks = 0;
  } state;
  // Runs until the behaviour is seen (a sleep after empty polls), bounded by a tick count, so
  // nothing here depends on how fast the machine is.
  Operation tick_op(
      [](Operation& op, const Completion& c) {
        auto* s = op.context_as<State>();
        if (!c.more) return;
        ++s->ticks;
        if ((s->ticks >= 3 && s->loop->stats().sleeps > 0) || s->ticks >= 5000) {
          (void)s->loop->cancel(op);
          s->loop->stop();
        }
      },
      &state);
  auto loop = make_loop(options);
  ASSERT_NE(loop, nullptr);
  state.loop = loop.get();
  loop->tick(tick_op, 1 * kMs);
  loop->run();
  EXPECT_GT(loop->stats().sleeps, 0u);
  EXPECT_GE(loop->stats().empty_polls, options.adaptive_empty_polls);
  ASSERT_TRUE(run_until(*loop, [&] { return !tick_op.in_flight(); }));
}

TEST(EventLoopTest, DestroyingTheLoopReleasesOperationsInFlight) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  uint16_t port = 0;
  const int listener = testing::listen_loopback(&port);
  uint8_t buf[16];
  bool called = false;
  auto on_complete = [](Operation& op, const Completion&) { *op.context_as<bool>() = true; };
  Operation recv_op(on_complete, &called);
  Operation timer_op(on_complete, &called);
  Operation accept_op(on_complete, &called);
  {
    auto loop = make_loop();
    ASSERT_NE(loop, nullptr);
    if (!loop->features().cancel_any) GTEST_SKIP() << "kernel without IORING_ASYNC_CANCEL_ANY";
    loop->recv(recv_op, sv[0], buf, sizeof(buf));
    loop->timeout(timer_op, 3600ull * 1000 * kMs);
    loop->accept(accept_op, listener);
    EXPECT_EQ(loop->run_once(0), 0u);
    EXPECT_EQ(loop->stats().ops_in_flight, 3u);
  }
  // The kernel let go of all three before the loop was gone, and no callback ran.
  EXPECT_FALSE(recv_op.in_flight());
  EXPECT_FALSE(timer_op.in_flight());
  EXPECT_FALSE(accept_op.in_flight());
  EXPECT_FALSE(called);
  ::close(listener);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(EventLoopDeathTest, UseFromAnotherThreadIsCaught) {
  // The ring is SINGLE_ISSUER: a loop driven from a thread other than its creator's must stop
  // loudly (debug check, or the kernel's EEXIST in release), never spin without completing.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::unique_ptr<EventLoop> loop;
        std::thread creator([&] { loop = make_loop(); });
        creator.join();
        (void)loop->run_once(0);
      },
      "thread");
}

}  // namespace
}  // namespace herald::uring

// WorkerMesh: batching per loop turn, per-destination order through the overflow queue, its
// bound, the doorbell of a sleeping worker, and real threads exchanging hand-offs all-to-all.
// Deadlines are hang guards, never speed checks.
#include "dataplane/routing/worker_mesh.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace herald::dataplane {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<uint8_t> payload_for(uint16_t from, uint64_t seq, size_t bytes) {
  std::vector<uint8_t> p(bytes);
  for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(from * 31 + seq * 7 + i);
  return p;
}

std::unique_ptr<WorkerMesh> make(uint16_t workers, uint64_t ring_bytes, uint64_t overflow_bytes) {
  auto mesh = WorkerMesh::create({.workers = workers,
                                  .ring_capacity_bytes = ring_bytes,
                                  .overflow_bytes_per_peer = overflow_bytes});
  EXPECT_TRUE(mesh.ok()) << mesh.status();
  return mesh.ok() ? std::move(*mesh) : nullptr;
}

TEST(WorkerMeshTest, CreateChecksItsOptions) {
  EXPECT_FALSE(WorkerMesh::create({.workers = 0}).ok());
  EXPECT_FALSE(WorkerMesh::create({.workers = 2, .ring_capacity_bytes = 5000}).ok());
  auto single = WorkerMesh::create({.workers = 1});  // one worker: nothing to hand off
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ((*single)->endpoint(0).flush(), 0u);
  EXPECT_EQ((*single)->endpoint(0).poll([](const MeshRecord&) {}, 10), 0u);
  EXPECT_TRUE((*single)->endpoint(0).prepare_to_sleep());
}

TEST(WorkerMeshTest, HandOffsBecomeVisibleAtFlushWithOneCommitPerRing) {
  auto mesh = make(3, 1 << 16, 1 << 14);
  ASSERT_NE(mesh, nullptr);
  MeshEndpoint& w0 = mesh->endpoint(0);
  for (uint64_t i = 0; i < 10; ++i) {
    const auto p = payload_for(0, i, 40);
    ASSERT_EQ(w0.send(1, {.kind = 7, .connection = 100 + i, .tag = i, .payload = p}),
              MeshRefusal::kNone);
  }
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_EQ(w0.send(2, {.kind = 8, .connection = 200 + i, .tag = i}), MeshRefusal::kNone);
  }
  // Nothing is visible before the end of the loop turn.
  EXPECT_FALSE(mesh->endpoint(1).has_incoming());
  EXPECT_EQ(mesh->endpoint(1).poll([](const MeshRecord&) {}, 100), 0u);

  EXPECT_EQ(w0.flush(), 15u);
  EXPECT_EQ(w0.stats().commits, 2u);
  EXPECT_EQ(w0.ring_out_stats(1).commits, 1u);
  EXPECT_EQ(w0.ring_out_stats(1).records, 10u);

  std::vector<MeshRecord> got;
  std::vector<std::vector<uint8_t>> bodies;
  EXPECT_EQ(mesh->endpoint(1).poll(
                [&](const MeshRecord& r) {
                  got.push_back(r);
                  bodies.emplace_back(r.payload.begin(), r.payload.end());
                },
                100),
            10u);
  ASSERT_EQ(got.size(), 10u);
  for (uint64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(got[i].from_worker, 0);
    EXPECT_EQ(got[i].kind, 7u);
    EXPECT_EQ(got[i].connection, 100 + i);
    EXPECT_EQ(got[i].tag, i);
    EXPECT_EQ(bodies[i], payload_for(0, i, 40));
  }
  size_t n2 = 0;
  EXPECT_EQ(mesh->endpoint(2).poll(
                [&](const MeshRecord& r) {
                  EXPECT_EQ(r.connection, 200 + n2);
                  EXPECT_TRUE(r.payload.empty());
                  ++n2;
                },
                3),
            3u);  // max_records is honoured
  EXPECT_EQ(mesh->endpoint(2).poll([&](const MeshRecord&) { ++n2; }, 100), 2u);
  EXPECT_EQ(mesh->endpoint(2).stats().received, 5u);
}

TEST(WorkerMeshTest, FullRingOverflowsInOrderUpToItsBound) {
  // 4 KiB ring, 8 KiB overflow: ~15 records of 232 bytes fit the ring, ~34 the overflow.
  auto mesh = make(2, 4096, 8192);
  ASSERT_NE(mesh, nullptr);
  MeshEndpoint& tx = mesh->endpoint(0);
  MeshEndpoint& rx = mesh->endpoint(1);
  uint64_t sent = 0;
  for (;;) {
    const auto p = payload_for(0, sent, 200);
    const MeshRefusal r = tx.send(1, {.kind = 1, .connection = sent, .tag = sent, .payload = p});
    if (r != MeshRefusal::kNone) {
      EXPECT_EQ(r, MeshRefusal::kOverflowFull);
      break;
    }
    ++sent;
    ASSERT_LT(sent, 1000u);
  }
  EXPECT_EQ(tx.stats().refused_overflow_full, 1u);
  EXPECT_GT(tx.stats().overflowed, 0u);
  EXPECT_GT(tx.stats().sent_direct, 0u);
  EXPECT_EQ(tx.stats().sent, sent);
  (void)tx.flush();
  EXPECT_GT(tx.stats().overflow_records, 0u);  // the ring is still full

  // The receiver reads, the sender moves overflow into the freed room: every record arrives
  // once, in send order, intact.
  uint64_t next = 0;
  for (int turn = 0; turn < 100 && next < sent; ++turn) {
    (void)rx.poll(
        [&](const MeshRecord& r) {
          EXPECT_EQ(r.tag, next);
          EXPECT_EQ(std::vector<uint8_t>(r.payload.begin(), r.payload.end()),
                    payload_for(0, next, 200));
          ++next;
        },
        1000);
    (void)tx.flush();
  }
  EXPECT_EQ(next, sent);
  EXPECT_EQ(tx.stats().overflow_records, 0u);
  EXPECT_EQ(tx.stats().overflow_bytes, 0u);
  EXPECT_EQ(tx.stats().overflow_moved, tx.stats().overflowed);

  // Once the overflow is empty the ring takes hand-offs directly again.
  const uint64_t direct = tx.stats().sent_direct;
  ASSERT_EQ(tx.send(1, {.kind = 1, .connection = 1, .tag = sent}), MeshRefusal::kNone);
  EXPECT_EQ(tx.stats().sent_direct, direct + 1);
}

TEST(WorkerMeshTest, RefusesWhatCanNeverFit) {
  auto mesh = make(2, 4096, 1 << 16);
  ASSERT_NE(mesh, nullptr);
  MeshEndpoint& tx = mesh->endpoint(0);
  // A ring record is at most half the ring (ring.h); the 16-byte header counts.
  const std::vector<uint8_t> largest(4096 / 2 - 8 - sizeof(MeshRecordHeader));
  const std::vector<uint8_t> too_large(largest.size() + 1);
  EXPECT_EQ(tx.send(1, {.kind = 1, .payload = too_large}), MeshRefusal::kTooLarge);
  EXPECT_EQ(tx.send(1, {.kind = shm::kRingWrapType}), MeshRefusal::kBadKind);
  EXPECT_EQ(tx.send(1, {.kind = 1, .payload = largest}), MeshRefusal::kNone);
  EXPECT_EQ(tx.stats().refused_too_large, 1u);
  EXPECT_EQ(tx.stats().refused_bad_kind, 1u);
  (void)tx.flush();
  size_t n = 0;
  (void)mesh->endpoint(1).poll([&](const MeshRecord& r) { n += r.payload.size(); }, 10);
  EXPECT_EQ(n, largest.size());
}

TEST(WorkerMeshTest, OverflowQueueWrapsWithoutSplittingRecords) {
  OverflowQueue q(1024);
  uint64_t pushed = 0;
  uint64_t popped = 0;
  // Varying sizes make records end at every offset, so the wrap marker path runs.
  for (int round = 0; round < 200; ++round) {
    for (;;) {
      const auto p = payload_for(3, pushed, (pushed * 37) % 300);
      if (!q.push({.kind = 5, .connection = pushed, .tag = pushed, .payload = p})) break;
      ++pushed;
    }
    for (int k = 0; k < 2; ++k) {
      MeshHandoff h;
      ASSERT_TRUE(q.front(h));
      ASSERT_EQ(h.tag, popped);
      ASSERT_EQ(std::vector<uint8_t>(h.payload.begin(), h.payload.end()),
                payload_for(3, popped, (popped * 37) % 300));
      q.pop();
      ++popped;
    }
  }
  EXPECT_EQ(q.records(), pushed - popped);
  MeshHandoff h;
  while (q.front(h)) {
    ASSERT_EQ(h.tag, popped++);
    q.pop();
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(popped, pushed);
}

TEST(WorkerMeshTest, FlushWakesASleepingWorker) {
  auto mesh = make(2, 1 << 12, 1 << 12);
  ASSERT_NE(mesh, nullptr);
  std::atomic<bool> asleep{false};
  std::atomic<int> woken{-1};
  std::atomic<uint64_t> tag{0};
  std::thread sleeper([&] {
    MeshEndpoint& me = mesh->endpoint(1);
    ASSERT_TRUE(me.prepare_to_sleep());  // nothing has been sent yet
    asleep = true;
    pollfd p{me.doorbell_fd(), POLLIN, 0};
    woken = ::poll(&p, 1, 30'000);  // hang guard: the doorbell must end it
    me.woke();
    (void)me.poll([&](const MeshRecord& r) { tag = r.tag; }, 10);
  });
  while (!asleep) std::this_thread::yield();
  MeshEndpoint& tx = mesh->endpoint(0);
  ASSERT_EQ(tx.send(1, {.kind = 1, .tag = 42}), MeshRefusal::kNone);
  // The sleep was announced before this commit, so the commit must ring (ring.h's Dekker).
  EXPECT_EQ(tx.flush(), 1u);
  sleeper.join();
  EXPECT_EQ(woken.load(), 1);
  EXPECT_EQ(tag.load(), 42u);
  EXPECT_EQ(tx.ring_out_stats(1).doorbell_rings, 1u);
  EXPECT_EQ(mesh->endpoint(1).stats().sleeps, 1u);
  // A busy-polling worker never announced a sleep: its producers make no system call.
  ASSERT_EQ(mesh->endpoint(1).send(0, {.kind = 1}), MeshRefusal::kNone);
  (void)mesh->endpoint(1).flush();
  EXPECT_EQ(mesh->endpoint(1).ring_out_stats(0).doorbell_rings, 0u);
}

TEST(WorkerMeshTest, AllToAllWithRealThreadsDeliversEverythingInOrder) {
  constexpr uint16_t kWorkers = 4;
  constexpr uint64_t kPerPeer = 5000;
  // Small rings and overflow queues, so the full-ring and refusal paths run under load.
  auto mesh = make(kWorkers, 1 << 13, 1 << 13);
  ASSERT_NE(mesh, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  for (uint16_t w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      MeshEndpoint& me = mesh->endpoint(w);
      std::vector<uint64_t> next_out(kWorkers, 0);  // next seq to send, per destination
      std::vector<uint64_t> next_in(kWorkers, 0);   // next seq expected, per source
      uint64_t received = 0;
      const uint64_t expected = kPerPeer * (kWorkers - 1);
      auto all_sent = [&] {
        for (uint16_t d = 0; d < kWorkers; ++d) {
          if (d != w && next_out[d] < kPerPeer) return false;
        }
        return true;
      };
      while (Clock::now() < deadline) {
        // One loop turn: up to 64 sends, a flush, a poll.
        for (int k = 0; k < 64 && !all_sent(); ++k) {
          const uint16_t d = static_cast<uint16_t>((w + 1 + k % (kWorkers - 1)) % kWorkers);
          if (next_out[d] >= kPerPeer) continue;
          const uint64_t seq = next_out[d];
          const auto p = payload_for(w, seq, seq % 257);
          const MeshRefusal r = me.send(d, {.kind = 3, .connection = w, .tag = seq, .payload = p});
          if (r == MeshRefusal::kNone) {
            ++next_out[d];
          } else if (r != MeshRefusal::kOverflowFull) {
            ++failures;
          }
        }
        (void)me.flush();
        const size_t n = me.poll(
            [&](const MeshRecord& r) {
              const uint16_t from = r.from_worker;
              if (r.tag != next_in[from] || r.connection != from ||
                  std::vector<uint8_t>(r.payload.begin(), r.payload.end()) !=
                      payload_for(from, r.tag, r.tag % 257)) {
                ++failures;
              }
              next_in[from] = r.tag + 1;
              ++received;
            },
            256);
        if (received == expected && all_sent() && me.stats().overflow_records == 0) break;
        if (n == 0 && all_sent() && me.stats().overflow_records == 0 && me.prepare_to_sleep()) {
          // Adaptive mode: nothing to do until a peer rings (short timeout: a peer's overflow
          // may still be waiting for room in our direction's ring it cannot see us free).
          pollfd p{me.doorbell_fd(), POLLIN, 0};
          (void)::poll(&p, 1, 10);
          me.woke();
        }
      }
      if (received != expected) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (uint16_t w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(mesh->endpoint(w).stats().received, kPerPeer * (kWorkers - 1));
    EXPECT_EQ(mesh->endpoint(w).stats().malformed, 0u);
    EXPECT_EQ(mesh->endpoint(w).stats().ring_corrupt, 0u);
  }
}

}  // namespace
}  // namespace herald::dataplane

// Directory: one live session per device, stale logouts, the account's online devices, the
// size limit; and under real threads (writers and lock-free readers at once) the invariants a
// race would break: no torn entry, no entry missed while others move, no session lost.
#include "dataplane/routing/directory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace herald::dataplane::routing {
namespace {

wire::DeviceAddress dev(uint64_t account, uint32_t device) {
  return wire::DeviceAddress(wire::AccountId(account, account * 31), device);
}

TEST(Directory, OneLiveSessionPerDevice) {
  Directory dir(DirectoryOptions{16});
  const auto a1 = dev(1, 1);
  Login first = dir.login(a1, {0, 100});
  EXPECT_EQ(first.result, LoginResult::kAdded);
  ASSERT_TRUE(dir.find(a1).has_value());
  EXPECT_EQ(*dir.find(a1), (DeviceLocation{0, 100}));
  // The device logs in again on another worker: the older session is named, to be closed.
  Login second = dir.login(a1, {3, 200});
  EXPECT_EQ(second.result, LoginResult::kReplaced);
  EXPECT_EQ(second.previous, (DeviceLocation{0, 100}));
  EXPECT_EQ(*dir.find(a1), (DeviceLocation{3, 200}));
  EXPECT_EQ(dir.size(), 1u);
  // The old session's detach comes later and must not remove the new one.
  EXPECT_FALSE(dir.logout(a1, {0, 100}));
  EXPECT_EQ(*dir.find(a1), (DeviceLocation{3, 200}));
  EXPECT_TRUE(dir.logout(a1, {3, 200}));
  EXPECT_FALSE(dir.find(a1).has_value());
  EXPECT_FALSE(dir.logout(a1, {3, 200}));
  EXPECT_EQ(dir.size(), 0u);
  const DirectoryStats s = dir.stats();
  EXPECT_EQ(s.logins, 2u);
  EXPECT_EQ(s.replaced, 1u);
  EXPECT_EQ(s.logouts, 1u);
  EXPECT_EQ(s.stale_logouts, 2u);
}

TEST(Directory, OnlineDevicesOfAnAccount) {
  Directory dir(DirectoryOptions{64});
  for (uint32_t d = 1; d <= 5; ++d) (void)dir.login(dev(7, d), {static_cast<uint16_t>(d), d * 10});
  (void)dir.login(dev(8, 1), {0, 999});
  std::vector<OnlineDevice> out(8);
  ASSERT_EQ(dir.online_devices(wire::AccountId(7, 7 * 31), out), 5u);
  std::set<uint32_t> devices;
  for (size_t i = 0; i < 5; ++i) {
    devices.insert(out[i].device);
    EXPECT_EQ(out[i].location.connection, out[i].device * 10);
    EXPECT_EQ(out[i].location.worker, out[i].device);
  }
  EXPECT_EQ(devices, (std::set<uint32_t>{1, 2, 3, 4, 5}));
  // Too small an output: the count says how many there are.
  std::vector<OnlineDevice> small(2);
  EXPECT_EQ(dir.online_devices(wire::AccountId(7, 7 * 31), small), 5u);
  EXPECT_EQ(dir.online_devices(wire::AccountId(9, 9), out), 0u);
  EXPECT_TRUE(dir.logout(dev(7, 3), {3, 30}));
  EXPECT_EQ(dir.online_devices(wire::AccountId(7, 7 * 31), out), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(out[i].device, 3u);
}

TEST(Directory, FullAtMaxDevicesButAReloginStillReplaces) {
  Directory dir(DirectoryOptions{4});
  for (uint32_t d = 1; d <= 4; ++d)
    EXPECT_EQ(dir.login(dev(1, d), {0, d}).result, LoginResult::kAdded);
  EXPECT_EQ(dir.login(dev(2, 1), {0, 50}).result, LoginResult::kFull);
  EXPECT_FALSE(dir.find(dev(2, 1)).has_value());
  EXPECT_EQ(dir.login(dev(1, 2), {1, 60}).result, LoginResult::kReplaced);  // no new entry
  EXPECT_TRUE(dir.logout(dev(1, 1), {0, 1}));
  EXPECT_EQ(dir.login(dev(2, 1), {0, 50}).result, LoginResult::kAdded);
  EXPECT_EQ(dir.stats().full, 1u);
  EXPECT_EQ(dir.size(), 4u);
}

TEST(Directory, DeletionKeepsEveryOtherEntryReachable) {
  // Many accounts in a small table: long clusters, so backward-shift deletion moves entries.
  Directory dir(DirectoryOptions{200});
  std::mt19937_64 rng(5);
  std::set<std::pair<uint64_t, uint32_t>> online;
  for (int op = 0; op < 20000; ++op) {
    const uint64_t account = rng() % 60;
    const uint32_t device = static_cast<uint32_t>(rng() % 4) + 1;
    const DeviceLocation at{0, account << 8 | device};
    if (online.count({account, device})) {
      ASSERT_TRUE(dir.logout(dev(account, device), at));
      online.erase({account, device});
    } else if (online.size() < 200) {
      ASSERT_EQ(dir.login(dev(account, device), at).result, LoginResult::kAdded);
      online.insert({account, device});
    }
    if (op % 97 == 0) {
      for (uint64_t acc = 0; acc < 60; ++acc) {
        for (uint32_t d = 1; d <= 4; ++d) {
          ASSERT_EQ(dir.find(dev(acc, d)).has_value(), online.count({acc, d}) == 1);
        }
      }
    }
  }
  EXPECT_EQ(dir.size(), online.size());
}

// Connection ids that say whose they are, so a reader can tell a torn or misplaced entry.
ConnectionId conn(uint64_t account, uint32_t device, uint64_t generation) {
  return account << 40 | uint64_t{device} << 32 | generation;
}

TEST(Directory, ConcurrentReadersSeeOnlyWholeEntriesAndNeverMissAStableOne) {
  constexpr uint64_t kAccounts = 48;
  constexpr uint32_t kDevices = 6;  // device 1 stays online; 2..6 come and go
  constexpr int kWriters = 2;
  constexpr int kReaders = 2;
  constexpr int kWriterOps = 50000;
  // Small table: accounts share clusters, so writers move entries readers are looking at.
  Directory dir(DirectoryOptions{kAccounts * kDevices});
  // Writers pause inside each write section, so readers do meet half-written cells (on two
  // shared cores they rarely would by chance): only the sequence check keeps them right.
  dir.set_mid_write_hook_for_test([] {
    for (int i = 0; i < 500; ++i) asm volatile("pause");
  });
  constexpr uint16_t kStableWorker = 99;
  for (uint64_t a = 0; a < kAccounts; ++a)
    (void)dir.login(dev(a, 1), {kStableWorker, conn(a, 1, 0)});

  std::atomic<bool> done{false};
  std::atomic<uint64_t> violations{0};
  std::atomic<uint64_t> reads{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(100 + w);
      uint64_t generation = 1;
      for (int op = 0; op < kWriterOps; ++op) {
        // Writer w owns the accounts a with a % kWriters == w (devices 2..6).
        const uint64_t a = (rng() % (kAccounts / kWriters)) * kWriters + w;
        const uint32_t d = static_cast<uint32_t>(rng() % (kDevices - 1)) + 2;
        const DeviceLocation at{static_cast<uint16_t>(w), conn(a, d, generation++)};
        if (rng() % 2) {
          (void)dir.login(dev(a, d), at);
        } else {
          const auto current = dir.find(dev(a, d));
          if (current) (void)dir.logout(dev(a, d), *current);
        }
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937_64 rng(200 + r);
      std::vector<OnlineDevice> out(kDevices + 2);
      while (!done.load(std::memory_order_relaxed)) {
        const uint64_t a = rng() % kAccounts;
        const uint32_t d = static_cast<uint32_t>(rng() % kDevices) + 1;
        const auto found = dir.find(dev(a, d));
        if (d == 1) {
          if (!found || found->worker != kStableWorker || found->connection != conn(a, 1, 0)) {
            violations.fetch_add(1);
          }
        } else if (found) {
          // Whole and in its place: the owner's worker, a connection minted for this device.
          if (found->worker != a % kWriters || (found->connection >> 32) != (a << 8 | d)) {
            violations.fetch_add(1);
          }
        }
        const size_t n = dir.online_devices(wire::AccountId(a, a * 31), out);
        bool stable_seen = false;
        std::set<uint32_t> seen;
        if (n > kDevices) violations.fetch_add(1);
        for (size_t i = 0; i < std::min(n, out.size()); ++i) {
          const OnlineDevice& o = out[i];
          if (!seen.insert(o.device).second) violations.fetch_add(1);  // listed twice
          if ((o.location.connection >> 32) != (a << 8 | o.device)) violations.fetch_add(1);
          stable_seen |= o.device == 1;
        }
        if (!stable_seen) violations.fetch_add(1);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  done.store(true);
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(violations.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  // After the storm the table agrees with itself: every account's listing matches find().
  size_t total = 0;
  std::vector<OnlineDevice> out(kDevices + 2);
  for (uint64_t a = 0; a < kAccounts; ++a) {
    const size_t n = dir.online_devices(wire::AccountId(a, a * 31), out);
    total += n;
    for (uint32_t d = 1; d <= kDevices; ++d) {
      const bool listed = std::any_of(out.begin(), out.begin() + n,
                                      [&](const OnlineDevice& o) { return o.device == d; });
      EXPECT_EQ(listed, dir.find(dev(a, d)).has_value());
    }
  }
  EXPECT_EQ(total, dir.size());
}

TEST(Directory, ConcurrentLoginsOfOneDeviceLoseNoSession) {
  // Two workers log the same device in over and over: each login must displace exactly the one
  // before it, so every session but the last is named once as `previous` (and closed).
  Directory dir(DirectoryOptions{8});
  constexpr int kLogins = 20000;
  std::vector<std::vector<DeviceLocation>> displaced(2);
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kLogins; ++i) {
        const Login l = dir.login(dev(1, 1), {static_cast<uint16_t>(w), uint64_t(i) + 1});
        if (l.result == LoginResult::kReplaced) displaced[w].push_back(l.previous);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::pair<uint16_t, uint64_t>> all;
  for (const auto& list : displaced) {
    for (const DeviceLocation& p : list) {
      EXPECT_TRUE(all.insert({p.worker, p.connection}).second) << "displaced twice";
    }
  }
  const auto last = dir.find(dev(1, 1));
  ASSERT_TRUE(last.has_value());
  EXPECT_TRUE(all.insert({last->worker, last->connection}).second);
  EXPECT_EQ(all.size(), size_t{2 * kLogins});  // every session accounted for exactly once
  EXPECT_EQ(dir.size(), 1u);
}

}  // namespace
}  // namespace herald::dataplane::routing

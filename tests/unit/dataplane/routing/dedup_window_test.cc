// DedupWindow: a resend gets the first outcome, memory stays inside the per-device window and
// the total, eviction follows the documented order (checked against a simple model).
#include "dataplane/routing/dedup_window.h"

#include <gtest/gtest.h>

#include <list>
#include <map>
#include <random>

namespace herald::dataplane::routing {
namespace {

wire::DeviceAddress dev(uint64_t account, uint32_t device) {
  return wire::DeviceAddress(wire::AccountId(account, ~account), device);
}

MintedId server_id(uint64_t n) {
  return MintedId{wire::ServerMsgId(n << 16, n), 1000 + n};
}

TEST(DedupWindow, ResendGetsTheFirstOutcome) {
  DedupWindow window(DedupOptions{16, 64});
  const auto a = dev(1, 1);
  EXPECT_EQ(window.find(a, 42).verdict, DedupVerdict::kNew);
  window.insert_pending(a, 42, server_id(7));
  DedupCheck pending = window.find(a, 42);
  EXPECT_EQ(pending.verdict, DedupVerdict::kPending);
  EXPECT_EQ(pending.server.id.lo(), 7u);
  EXPECT_TRUE(window.mark_acked(a, 42));
  DedupCheck acked = window.find(a, 42);
  EXPECT_EQ(acked.verdict, DedupVerdict::kAcked);
  EXPECT_EQ(acked.server.id.hi(), uint64_t{7} << 16);
  EXPECT_EQ(acked.server.id.lo(), 7u);
  EXPECT_EQ(acked.server.server_time_ms, 1007u);
  // The same client id from another device, or another device of the account, is new.
  EXPECT_EQ(window.find(dev(1, 2), 42).verdict, DedupVerdict::kNew);
  EXPECT_EQ(window.find(dev(2, 1), 42).verdict, DedupVerdict::kNew);
  EXPECT_EQ(window.stats().resends_pending, 1u);
  EXPECT_EQ(window.stats().resends_acked, 1u);
  // A second insert of a present id is ignored and counted (a caller bug).
  window.insert_pending(a, 42, server_id(8));
  EXPECT_EQ(window.find(a, 42).server.id.lo(), 7u);
  EXPECT_EQ(window.stats().duplicate_inserts, 1u);
}

TEST(DedupWindow, AFailedMessageIsForgottenSoAResendIsTried) {
  DedupWindow window(DedupOptions{16, 64});
  const auto a = dev(1, 1);
  window.insert_pending(a, 1, server_id(1));
  EXPECT_TRUE(window.forget(a, 1));
  EXPECT_EQ(window.find(a, 1).verdict, DedupVerdict::kNew);
  EXPECT_EQ(window.entries(), 0u);
  EXPECT_EQ(window.devices(), 0u);  // the device's record goes with its last id
  EXPECT_FALSE(window.forget(a, 1));
  EXPECT_FALSE(window.mark_acked(a, 1));
  EXPECT_EQ(window.stats().unknown, 2u);
}

TEST(DedupWindow, PerDeviceWindowEvictsTheDevicesOldest) {
  DedupWindow window(DedupOptions{16, 1024});
  const auto a = dev(1, 1), b = dev(2, 1);
  window.insert_pending(b, 500, server_id(500));
  for (uint64_t id = 0; id < 16; ++id) {
    window.insert_pending(a, id, server_id(id));
    window.mark_acked(a, id);
  }
  EXPECT_EQ(window.device_entries(a), 16u);  // exactly at the window: nothing evicted
  EXPECT_EQ(window.stats().evicted_window, 0u);
  window.insert_pending(a, 16, server_id(16));
  EXPECT_EQ(window.device_entries(a), 16u);
  EXPECT_EQ(window.find(a, 0).verdict, DedupVerdict::kNew);  // the oldest went
  EXPECT_EQ(window.find(a, 1).verdict, DedupVerdict::kAcked);
  EXPECT_EQ(window.find(a, 16).verdict, DedupVerdict::kPending);
  EXPECT_EQ(window.find(b, 500).verdict, DedupVerdict::kPending);  // other devices untouched
  EXPECT_EQ(window.stats().evicted_window, 1u);
  EXPECT_EQ(window.stats().evicted_pending, 0u);
}

TEST(DedupWindow, TotalLimitEvictsTheWorkersOldestAndCountsPendingOnes) {
  DedupWindow window(DedupOptions{16, 32});
  const auto a = dev(1, 1), b = dev(2, 1), c = dev(3, 1);
  for (uint64_t id = 0; id < 16; ++id) window.insert_pending(a, id, server_id(id));
  for (uint64_t id = 0; id < 16; ++id) window.insert_pending(b, id, server_id(100 + id));
  EXPECT_EQ(window.entries(), 32u);
  window.insert_pending(c, 0, server_id(200));
  EXPECT_EQ(window.entries(), 32u);
  EXPECT_EQ(window.find(a, 0).verdict, DedupVerdict::kNew);  // the oldest of all
  EXPECT_EQ(window.find(b, 0).verdict, DedupVerdict::kPending);
  EXPECT_EQ(window.stats().evicted_total, 1u);
  EXPECT_EQ(window.stats().evicted_pending, 1u);  // it was pending: a resend of it is new
  EXPECT_EQ(window.device_entries(a), 15u);
  EXPECT_EQ(window.devices(), 3u);
}

TEST(DedupWindow, TinyPoolOfOneEntry) {
  DedupWindow window(DedupOptions{16, 1});
  window.insert_pending(dev(1, 1), 1, server_id(1));
  window.insert_pending(dev(2, 1), 1, server_id(2));  // evicts device 1's only id
  EXPECT_EQ(window.find(dev(1, 1), 1).verdict, DedupVerdict::kNew);
  EXPECT_EQ(window.find(dev(2, 1), 1).verdict, DedupVerdict::kPending);
  EXPECT_EQ(window.devices(), 1u);
}

TEST(DedupWindow, HandOverToAnotherWorkerKeepsOutcomesAndOrder) {
  DedupWindow old_worker(DedupOptions{4, 64}), new_worker(DedupOptions{4, 64});
  const auto a = dev(1, 1);
  for (uint64_t id = 1; id <= 3; ++id) old_worker.insert_pending(a, id, server_id(id));
  old_worker.mark_acked(a, 1);
  old_worker.mark_acked(a, 3);
  new_worker.insert_pending(a, 9, server_id(9));  // an id the new worker already had
  std::vector<DedupRecord> records(4);
  const size_t n = old_worker.export_device(a, records);
  ASSERT_EQ(n, 3u);
  EXPECT_EQ(records[0].client_msg_id, 1u);  // oldest first
  EXPECT_TRUE(records[0].acked);
  EXPECT_FALSE(records[1].acked);
  new_worker.import_device(a, std::span<const DedupRecord>(records.data(), n));
  EXPECT_EQ(old_worker.forget_device(a), 3u);
  EXPECT_EQ(old_worker.entries(), 0u);
  EXPECT_EQ(old_worker.devices(), 0u);
  // The resend on the new worker gets the first ServerAck.
  const DedupCheck resent = new_worker.find(a, 3);
  EXPECT_EQ(resent.verdict, DedupVerdict::kAcked);
  EXPECT_EQ(resent.server.id.lo(), 3u);
  EXPECT_EQ(resent.server.server_time_ms, 1003u);
  EXPECT_EQ(new_worker.find(a, 2).verdict, DedupVerdict::kPending);
  EXPECT_EQ(new_worker.device_entries(a), 4u);  // 9, 1, 2, 3: the window of 4
  EXPECT_EQ(new_worker.stats().imported, 3u);
  EXPECT_EQ(new_worker.stats().inserted, 1u);
  // Importing again changes nothing; a fifth id evicts the oldest (9, the local one).
  new_worker.import_device(a, std::span<const DedupRecord>(records.data(), n));
  EXPECT_EQ(new_worker.stats().imported, 3u);
  new_worker.insert_pending(a, 10, server_id(10));
  EXPECT_EQ(new_worker.find(a, 9).verdict, DedupVerdict::kNew);
  EXPECT_EQ(new_worker.find(a, 1).verdict, DedupVerdict::kAcked);
}

// A straightforward model of the documented behaviour: one list in insertion order.
struct Model {
  struct Item {
    uint32_t device;
    uint64_t id;
    bool acked;
  };
  uint32_t window, total;
  std::list<Item> items;

  std::list<Item>::iterator find(uint32_t device, uint64_t id) {
    for (auto it = items.begin(); it != items.end(); ++it) {
      if (it->device == device && it->id == id) return it;
    }
    return items.end();
  }
  void insert(uint32_t device, uint64_t id) {
    uint32_t count = 0;
    for (const Item& i : items) count += i.device == device;
    if (count >= window) {
      for (auto it = items.begin(); it != items.end(); ++it) {
        if (it->device == device) {
          items.erase(it);
          break;
        }
      }
    }
    if (items.size() >= total) items.pop_front();
    items.push_back({device, id, false});
  }
};

// The hints (find()'s answer passed to insert_pending(), insert_pending()'s passed to
// mark_acked()/forget()) are taken at random fresh, stale (from earlier ops, their entry or
// device record evicted and reused since) or another key's: the window must answer as if it had
// looked each id up.
TEST(DedupWindow, MatchesTheModelUnderRandomTraffic) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    const uint32_t window_size = 4 + seed % 5, total = 16 + seed * 3;
    DedupWindow window(DedupOptions{window_size, total});
    Model model{window_size, total, {}};
    std::map<std::pair<uint32_t, uint64_t>, DedupCheck> old_checks;
    std::map<std::pair<uint32_t, uint64_t>, DedupHint> hints;
    auto some_hint = [&](std::pair<uint32_t, uint64_t> key) {
      if (rng() % 4 == 0 && !hints.empty())
        return std::next(hints.begin(), rng() % hints.size())->second;
      auto h = hints.find(key);
      return h == hints.end() ? DedupHint{} : h->second;
    };
    for (int op = 0; op < 4000; ++op) {
      const uint32_t device = static_cast<uint32_t>(rng() % 12) + 1;
      const uint64_t id = rng() % 24;
      const auto key = std::make_pair(device, id);
      const auto address = dev(device % 5, device);
      const DedupCheck check = window.find(address, id);
      auto it = model.find(device, id);
      ASSERT_EQ(check.verdict, it == model.items.end() ? DedupVerdict::kNew
                               : it->acked             ? DedupVerdict::kAcked
                                                       : DedupVerdict::kPending)
          << "seed " << seed << " op " << op;
      switch (rng() % 4) {
        case 0:
        case 1:
          if (it == model.items.end()) {
            const DedupCheck* found = &check;
            if (rng() % 3 == 0) {
              auto old = old_checks.find(key);
              found = old == old_checks.end() ? nullptr : &old->second;
            }
            hints[key] = window.insert_pending(address, id, server_id(id), found);
            model.insert(device, id);
          }
          break;
        case 2:
          if (it != model.items.end()) {
            ASSERT_TRUE(window.mark_acked(address, id, some_hint(key)));
            it->acked = true;
          }
          break;
        case 3:
          ASSERT_EQ(window.forget(address, id, some_hint(key)), it != model.items.end());
          if (it != model.items.end()) model.items.erase(it);
          break;
      }
      old_checks[key] = check;
      ASSERT_EQ(window.entries(), model.items.size());
      ASSERT_LE(window.entries(), total);
      uint32_t of_device = 0;
      for (const auto& item : model.items) of_device += item.device == device ? 1 : 0;
      ASSERT_EQ(window.device_entries(address), of_device) << "seed " << seed << " op " << op;
    }
    EXPECT_EQ(window.stats().duplicate_inserts, 0u);
  }
}

// A find() answer goes stale when the window changes before the insert: here the device's
// record is freed and taken by another device in between, so trusting it would file the id
// under the other device.
TEST(DedupWindow, AStaleFindAnswerIsNotTrusted) {
  DedupWindow window(DedupOptions{4, 8});
  const auto a = dev(1, 1), b = dev(2, 1);
  window.insert_pending(a, 1, server_id(1));
  const DedupCheck a2 = window.find(a, 2);  // a's record exists: its slot is in the answer
  ASSERT_EQ(a2.verdict, DedupVerdict::kNew);
  ASSERT_TRUE(window.forget(a, 1));           // a's last entry: its record is freed ...
  window.insert_pending(b, 7, server_id(7));  // ... and taken by b
  window.insert_pending(a, 2, server_id(2), &a2);
  EXPECT_EQ(window.device_entries(a), 1u);
  EXPECT_EQ(window.device_entries(b), 1u);
  EXPECT_EQ(window.find(a, 2).verdict, DedupVerdict::kPending);
  EXPECT_EQ(window.find(b, 2).verdict, DedupVerdict::kNew);
}

// A hint whose entry now holds another id (evicted and reused) acks the right entry anyway.
TEST(DedupWindow, AStaleHintFallsBackToTheLookup) {
  DedupWindow window(DedupOptions{1, 8});  // a window of one: each insert evicts the last
  const auto a = dev(1, 1);
  const DedupHint first = window.insert_pending(a, 1, server_id(1));
  const DedupHint second = window.insert_pending(a, 2, server_id(2));  // 1 evicted
  EXPECT_FALSE(window.mark_acked(a, 1, first));
  EXPECT_FALSE(window.mark_acked(a, 1, second));  // holds id 2, not 1
  EXPECT_TRUE(window.mark_acked(a, 2, first));    // first's entry is free or another's: looked up
  EXPECT_EQ(window.find(a, 2).verdict, DedupVerdict::kAcked);
  EXPECT_FALSE(window.forget(dev(1, 2), 2, second));  // same id, another device
  EXPECT_TRUE(window.forget(a, 2, second));
  EXPECT_EQ(window.entries(), 0u);
}

}  // namespace
}  // namespace herald::dataplane::routing

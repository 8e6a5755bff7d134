// The offline queues' property test on the simulated disk, over many seeds: random group and
// direct appends, deletes (some while the append is still pending), a small cap, random faults
// and crashes with torn and lost writes. After every recovery: every append whose completion
// fired is drainable unless deleted, every delete whose completion fired stays deleted, each
// queue keeps append order, a message is in all of its pending recipients' queues or in none,
// bodies match byte for byte and a body is held exactly while an entry references it.
// Compaction (retiring dead segments, copying live records forward) runs interleaved with the
// work, so crashes hit it at any point; at the end it runs to completion and the result is
// recovered and checked once more.
// Replay one seed with HERALD_SIM_SEED=N.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "controlplane/storage/queue_table.h"
#include "controlplane/storage/sim_disk.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strtoull(v, nullptr, 10);
}

// What the test knows about one (device, message) entry.
enum class State : uint8_t {
  kPendingAppend,  // append staged, completion not (successfully) fired: may or may not survive
  kLive,           // append completed OK, no delete issued: must be there
  kPendingDelete,  // delete staged, completion not fired: may or may not come back
  kGone,           // delete completed, or a pending append lost in a crash: must not be there
};

struct Message {
  uint64_t order = 0;  // global append order
  std::vector<uint8_t> body;
  std::map<uint32_t, State> entries;  // device number -> state
};

DeviceKey dev(uint32_t n) {
  return {0xabcdef, n * 7919ull, n};
}

class Simulation {
 public:
  explicit Simulation(uint64_t seed) : random_(seed * 0x9e3779b97f4a7c15ULL + 7) {
    SimDiskOptions d;
    d.seed = seed;
    d.min_latency_ns = 1'000 + random_() % 20'000;
    d.max_latency_ns = d.min_latency_ns + random_() % 200'000;
    d.sync_extra_latency_ns = random_() % 500'000;
    d.sector_bytes = random_() % 2 == 0 ? 512 : 4096;
    d.write_error_probability = pick({0.0, 0.0, 0.002, 0.01});
    d.sync_error_probability = pick({0.0, 0.0, 0.002, 0.01});
    d.create_error_probability = pick({0.0, 0.01});
    d.read_bitflip_probability = pick({0.0, 0.0, 0.0, 0.01});
    disk_ = std::make_unique<SimDisk>(d);

    log_options_.segment_size_bytes = (8 + random_() % 56) * 4096;
    log_options_.max_write_bytes = (4 + random_() % 12) * 4096;
    log_options_.max_payload_bytes = 1024 + static_cast<uint32_t>(random_() % 2048);
    log_options_.group_commit_bytes = 1024 + static_cast<uint32_t>(random_() % 32768);
    log_options_.group_commit_delay_us = 50 + random_() % 2000;
    log_options_.max_staged_bytes = 32 * 1024 + random_() % (256 * 1024);
    table_options_.max_queued_messages_per_device = 4 + static_cast<uint32_t>(random_() % 200);
    table_options_.clean_below_live_fraction = pick({0.0, 0.3, 0.6, 0.95});
    table_options_.compaction_records_per_step = 1 + static_cast<uint32_t>(random_() % 16);
    devices_ = 2 + static_cast<uint32_t>(random_() % 10);
    // Most seeds with segment summaries (the node's setting): recovery then reads sealed
    // segments through them, and crashes also hit summary writes; the rest scan every segment.
    if (random_() % 4 != 0) log_options_.summary_payload_bytes = &QueueTable::summary_payload_bytes;
  }

  void run() {
    const int lives = 2 + static_cast<int>(random_() % 4);
    for (int life = 0; life < lives; ++life) {
      SCOPED_TRACE(testing::Message() << "life " << life);
      faults_ = random_() % 3 != 0;
      disk_->set_faults_enabled(faults_);
      open_and_check();
      if (testing::Test::HasFatalFailure() || log_ == nullptr) return;
      work_until_crash();
      if (testing::Test::HasFatalFailure()) return;
      collect_compaction_stats();
      disk_->crash();
      log_.reset();
      table_.reset();
    }
    disk_->set_faults_enabled(false);
    open_and_check();
    if (testing::Test::HasFatalFailure() || log_ == nullptr) return;
    // Compaction to the end on a clean disk, then once more from what it left.
    for (int steps = 0; steps < 100'000 && !log_->failed(); ++steps) {
      const bool more = table_->compact_step();
      disk_->run_until_idle();
      if (!more) break;
    }
    collect_compaction_stats();
    disk_->crash();  // nothing unsynced may matter: everything acknowledged is durable
    log_.reset();
    table_.reset();
    open_and_check();
    if (table_ != nullptr) collect_compaction_stats();
  }

  uint64_t segments_retired() const { return segments_retired_; }
  uint64_t records_copied() const { return records_copied_; }
  uint64_t segments_from_summaries() const { return segments_from_summaries_; }

  uint64_t acked() const { return acked_; }
  uint64_t deleted() const { return deleted_; }
  uint64_t queue_full() const { return queue_full_; }
  uint64_t live_drained() const { return live_drained_; }
  const SimDiskStats& disk_stats() const { return disk_->stats(); }

 private:
  double pick(std::initializer_list<double> values) {
    return *(values.begin() + random_() % values.size());
  }

  void collect_compaction_stats() {
    segments_retired_ += table_->stats().segments_retired;
    records_copied_ += table_->stats().records_copied;
  }

  void open_and_check() {
    for (int attempt = 0; attempt < 2; ++attempt) {
      const uint64_t flips = disk_->stats().bitflips;
      if (attempt == 1) disk_->set_bitflips_enabled(false);
      table_ = std::make_unique<QueueTable>(table_options_);
      std::optional<absl::StatusOr<std::unique_ptr<Log>>> result;
      Log::open_batched(
          *disk_, log_options_,
          [this](std::span<const RecoveredRecord> records) { return table_->recover(records); },
          [&](absl::StatusOr<std::unique_ptr<Log>> log) { result.emplace(std::move(log)); },
          [this](uint64_t records) { table_->expect_records(records); });
      while (!result.has_value() && disk_->step()) {
      }
      ASSERT_TRUE(result.has_value()) << "open never completed";
      disk_->set_bitflips_enabled(true);
      if (!result->ok() && faults_ && result->status().code() == absl::StatusCode::kInternal) {
        // An injected I/O error (removing a stale file, say) failed the open, as a real disk's
        // would; the node is restarted, this time without injected errors.
        disk_->set_faults_enabled(false);
        faults_ = false;
        --attempt;
        continue;
      }
      if (!result->ok()) {
        // Only a bit flip in what recovery read may fail the open; the medium itself is clean.
        ASSERT_EQ(result->status().code(), absl::StatusCode::kDataLoss) << result->status();
        ASSERT_GT(disk_->stats().bitflips, flips) << result->status();
        ASSERT_EQ(attempt, 0) << "DataLoss with clean reads: " << result->status();
        continue;
      }
      log_ = std::move(**result);
      segments_from_summaries_ += log_->stats().segments_from_summaries;
      table_->start(*log_);
      break;
    }
    check_recovered();
  }

  // Everything drainable, per device, in order, bodies read back from the log (after recovery:
  // nothing else is in flight). A bit flip on read may fail a drain with DataLoss; the medium
  // itself is clean, so it must then succeed with clean reads.
  std::map<uint32_t, std::vector<DrainedMessage>> drain_everything() {
    std::map<uint32_t, std::vector<DrainedMessage>> out;
    for (uint32_t d = 1; d <= devices_; ++d) {
      for (int attempt = 0; attempt < 2; ++attempt) {
        const uint64_t flips = disk_->stats().bitflips;
        if (attempt == 1) disk_->set_bitflips_enabled(false);
        std::optional<absl::StatusOr<std::vector<DrainedMessage>>> result;
        table_->drain(dev(d), std::nullopt, 1u << 30, ~0ull,
                      [&result](absl::StatusOr<std::vector<DrainedMessage>> r) {
                        result.emplace(std::move(r));
                      });
        while (!result.has_value() && disk_->step()) {
        }
        disk_->set_bitflips_enabled(true);
        EXPECT_TRUE(result.has_value()) << "drain never completed";
        if (!result.has_value()) return out;
        if (!result->ok()) {
          EXPECT_EQ(result->status().code(), absl::StatusCode::kDataLoss) << result->status();
          EXPECT_GT(disk_->stats().bitflips, flips) << result->status();
          EXPECT_EQ(attempt, 0) << "drain failed with clean reads: " << result->status();
          continue;
        }
        out[d] = std::move(**result);
        break;
      }
      EXPECT_EQ(out[d].size(), table_->queued(dev(d))) << "after recovery all are durable";
    }
    return out;
  }

  void check_recovered() {
    const auto drained = drain_everything();
    std::map<uint64_t, std::set<uint32_t>> present;  // message -> devices holding it
    for (const auto& [d, messages] : drained) {
      uint64_t last_order = 0;
      for (const DrainedMessage& m : messages) {
        auto it = messages_.find(m.id.lo);
        ASSERT_NE(it, messages_.end()) << "a message never appended";
        auto e = it->second.entries.find(d);
        ASSERT_NE(e, it->second.entries.end())
            << "message " << m.id.lo << " in device " << d << "'s queue, never appended to it";
        ASSERT_NE(e->second, State::kGone)
            << "message " << m.id.lo << " deleted (or lost) but back in device " << d;
        ASSERT_GT(it->second.order, last_order) << "device " << d << " out of append order";
        last_order = it->second.order;
        ASSERT_TRUE(std::equal(m.body.begin(), m.body.end(), it->second.body.begin(),
                               it->second.body.end()))
            << "body of " << m.id.lo << " differs";
        present[m.id.lo].insert(d);
      }
    }
    for (auto& [id, message] : messages_) {
      const auto& where = present[id];
      std::optional<bool> pending_group;  // all kPendingAppend entries agree
      for (auto& [d, state] : message.entries) {
        const bool here = where.contains(d);
        switch (state) {
          case State::kLive:
            ASSERT_TRUE(here) << "acknowledged message " << id << " lost from device " << d;
            break;
          case State::kGone: break;  // checked above
          case State::kPendingAppend:
            if (!pending_group.has_value()) pending_group = here;
            ASSERT_EQ(*pending_group, here) << "message " << id << " half there";
            state = here ? State::kLive : State::kGone;
            break;
          case State::kPendingDelete: state = here ? State::kLive : State::kGone; break;
        }
      }
      ASSERT_EQ(table_->has_body(MessageId{id << 8, id}), !where.empty())
          << "body of " << id << " held without entries, or missing";
    }
  }

  // Between steps, drain shows exactly the entries whose append completed and that were not
  // removed.
  void check_live() {
    for (uint32_t d = 1; d <= devices_; ++d) {
      std::set<uint64_t> shown;
      for (const auto& m : table_->peek(dev(d), std::nullopt, 1u << 30, ~0ull)) shown.insert(m.lo);
      for (const auto& [id, message] : messages_) {
        auto e = message.entries.find(d);
        const bool live = e != message.entries.end() && e->second == State::kLive;
        // A failed log hides its pending appends; nothing becomes kLive after it.
        ASSERT_EQ(shown.contains(id), live) << "device " << d << " message " << id;
      }
    }
    // One asynchronous drain while work goes on: whatever it returns is byte for byte what was
    // appended (or a DataLoss from a bit flip on read, never wrong bytes).
    const uint32_t drained = 1 + static_cast<uint32_t>(random_() % devices_);
    table_->drain(dev(drained), std::nullopt, 1 + random_() % 8, random_() % 4096,
                  [this](absl::StatusOr<std::vector<DrainedMessage>> r) {
                    if (!r.ok()) {
                      EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
                      return;
                    }
                    ++live_drained_;
                    for (const DrainedMessage& m : *r) {
                      EXPECT_EQ(m.body, messages_.at(m.id.lo).body) << "message " << m.id.lo;
                    }
                  });
    // A body is held exactly while an entry (durable or pending) still references it.
    for (const auto& [id, message] : messages_) {
      bool referenced = false;
      for (const auto& [d, state] : message.entries) {
        referenced |= state == State::kLive || state == State::kPendingAppend;
      }
      ASSERT_EQ(table_->has_body(MessageId{id << 8, id}), referenced) << "message " << id;
    }
  }

  void work_until_crash() {
    const uint64_t crash_at = disk_->now_ns() + 100'000 + random_() % 20'000'000;
    const uint32_t burst_max = 1 + static_cast<uint32_t>(random_() % 20);
    while (disk_->now_ns() < crash_at) {
      const uint32_t burst = static_cast<uint32_t>(random_() % (burst_max + 1));
      for (uint32_t i = 0; i < burst && !log_->failed(); ++i) {
        if (random_() % 3 == 0) {
          remove_some();
        } else {
          append_one();
        }
        if (testing::Test::HasFatalFailure()) return;
      }
      if (random_() % 16 == 0) log_->flush();
      // Compaction interleaved with the work, so crashes land in its reads, copies and
      // retirements too.
      if (random_() % 2 == 0 && !log_->failed()) {
        for (uint64_t k = random_() % 4; k > 0; --k) (void)table_->compact_step();
      }
      disk_->run_until(std::min(crash_at, disk_->now_ns() + random_() % 400'000));
      if (random_() % 8 == 0 && !log_->failed()) {
        check_live();
        if (testing::Test::HasFatalFailure()) return;
      }
    }
  }

  void append_one() {
    const uint64_t n = ++next_id_;
    const MessageId id{n << 8, n};
    Message m;
    m.order = n;
    const size_t max_body = log_options_.max_payload_bytes - 16;
    m.body.resize(random_() % 4 == 0 ? random_() % (max_body + 1) : random_() % 200);
    for (uint8_t& b : m.body) b = static_cast<uint8_t>(random_());
    std::vector<DeviceKey> recipients;
    const uint32_t count = 1 + static_cast<uint32_t>(random_() % std::min(devices_, 5u));
    std::set<uint32_t> picked;
    while (picked.size() < count) picked.insert(1 + static_cast<uint32_t>(random_() % devices_));
    for (uint32_t d : picked) recipients.push_back(dev(d));

    auto outcome = table_->append(id, m.body, recipients, [this, n](const absl::Status& s) {
      if (!s.ok()) return;  // the log failed: recovery will say
      ++acked_;
      for (auto& [d, state] : messages_.at(n).entries) {
        if (state == State::kPendingAppend) state = State::kLive;
      }
    });
    if (!outcome.ok()) {
      ASSERT_TRUE(outcome.status().code() == absl::StatusCode::kResourceExhausted ||
                  outcome.status().code() == absl::StatusCode::kFailedPrecondition)
          << outcome.status();
      return;
    }
    queue_full_ += outcome->queue_full.size();
    for (uint32_t d : picked) {
      if (std::find(outcome->queue_full.begin(), outcome->queue_full.end(), dev(d)) ==
          outcome->queue_full.end()) {
        m.entries[d] = State::kPendingAppend;
      }
    }
    ASSERT_EQ(outcome->written, !m.entries.empty());
    if (outcome->written) messages_.emplace(n, std::move(m));
  }

  void remove_some() {
    const uint32_t d = 1 + static_cast<uint32_t>(random_() % devices_);
    std::vector<MessageId> ids;
    std::vector<uint64_t> numbers;
    for (auto& [n, message] : messages_) {
      auto e = message.entries.find(d);
      if (e == message.entries.end()) continue;
      if (e->second != State::kLive && e->second != State::kPendingAppend) continue;
      if (random_() % 3 != 0) continue;
      ids.push_back({n << 8, n});
      numbers.push_back(n);
      if (ids.size() >= 4) break;
    }
    if (random_() % 4 == 0) ids.push_back({~0ull, ~0ull});  // not queued: skipped
    if (ids.empty()) return;
    auto removed = table_->remove(dev(d), ids, [this, d, numbers](const absl::Status& s) {
      if (!s.ok()) return;
      ++deleted_;
      for (uint64_t n : numbers) messages_.at(n).entries.at(d) = State::kGone;
    });
    if (!removed.ok()) {
      ASSERT_TRUE(removed.status().code() == absl::StatusCode::kResourceExhausted ||
                  removed.status().code() == absl::StatusCode::kFailedPrecondition)
          << removed.status();
      return;
    }
    ASSERT_EQ(*removed, numbers.size()) << "every live or pending entry is in the index";
    for (uint64_t n : numbers) messages_.at(n).entries.at(d) = State::kPendingDelete;
  }

  std::mt19937_64 random_;
  std::unique_ptr<SimDisk> disk_;
  LogOptions log_options_;
  QueueTableOptions table_options_;
  uint32_t devices_ = 0;
  std::unique_ptr<Log> log_;
  std::unique_ptr<QueueTable> table_;
  std::map<uint64_t, Message> messages_;
  uint64_t next_id_ = 0;
  uint64_t acked_ = 0;
  uint64_t deleted_ = 0;
  uint64_t queue_full_ = 0;
  uint64_t live_drained_ = 0;
  uint64_t segments_retired_ = 0;
  uint64_t records_copied_ = 0;
  uint64_t segments_from_summaries_ = 0;
  bool faults_ = false;  // injected I/O errors on in this life
};

TEST(QueueSimulation, AcknowledgedAppendsAndDeletesSurviveCrashes) {
  log::set_min_level(log::Level::kError);
  const uint64_t one = env_or("HERALD_SIM_SEED", 0);
  const uint64_t first = one != 0 ? one : env_or("HERALD_SIM_FIRST_SEED", 1);
  const uint64_t count = one != 0 ? 1 : env_or("HERALD_SIM_SEEDS", 300);
  uint64_t acked = 0, deleted = 0, queue_full = 0, live_drained = 0, crashes = 0, sync_errors = 0,
           lost = 0, retired = 0, copied = 0, from_summaries = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SCOPED_TRACE(testing::Message() << "replay with HERALD_SIM_SEED=" << seed);
    Simulation sim(seed);
    sim.run();
    acked += sim.acked();
    deleted += sim.deleted();
    queue_full += sim.queue_full();
    live_drained += sim.live_drained();
    crashes += sim.disk_stats().crashes;
    sync_errors += sim.disk_stats().sync_errors;
    lost += sim.disk_stats().sectors_lost;
    retired += sim.segments_retired();
    copied += sim.records_copied();
    from_summaries += sim.segments_from_summaries();
    if (testing::Test::HasFailure()) {
      std::printf("FAILED: replay with HERALD_SIM_SEED=%llu\n",
                  static_cast<unsigned long long>(seed));
      return;
    }
  }
  std::printf(
      "seeds=%llu acked=%llu deleted=%llu queue_full=%llu live_drains=%llu crashes=%llu "
      "sync_errors=%llu "
      "sectors_lost=%llu segments_retired=%llu records_copied=%llu segments_from_summaries=%llu\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(acked),
      static_cast<unsigned long long>(deleted), static_cast<unsigned long long>(queue_full),
      static_cast<unsigned long long>(live_drained), static_cast<unsigned long long>(crashes),
      static_cast<unsigned long long>(sync_errors), static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(retired), static_cast<unsigned long long>(copied),
      static_cast<unsigned long long>(from_summaries));
  if (count >= 100) {
    // The run must have exercised what it claims to.
    EXPECT_GT(acked, 0u);
    EXPECT_GT(deleted, 0u);
    EXPECT_GT(queue_full, 0u);
    EXPECT_GT(live_drained, 0u);
    EXPECT_GT(sync_errors, 0u);
    EXPECT_GT(lost, 0u);
    EXPECT_GT(retired, 0u);
    EXPECT_GT(copied, 0u);
    EXPECT_GT(from_summaries, 0u);
  }
}

}  // namespace
}  // namespace herald::storage

// The catalog's property test on the simulated disk, over many seeds: random batches, barriers,
// snapshots (started by size and by hand), segment retirement behind them, write and sync faults
// (fail-stop), and crashes at any point - in the middle of a snapshot's chunks, its rename, the
// removal of an old one, a segment's retirement. After every crash and recovery the state must
// equal a model replay of a prefix of the applied batches that includes every batch a barrier
// confirmed: nothing confirmed lost, no batch half there, nothing else. Replay one seed with
// HERALD_SIM_SEED=N; HERALD_SIM_SEEDS / HERALD_SIM_FIRST_SEED widen the run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/storage/catalog.h"
#include "controlplane/storage/sim_disk.h"
#include "platform/log/log.h"

namespace herald::storage {
namespace {

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strtoull(v, nullptr, 10);
}

using Model = std::map<std::pair<uint8_t, std::string>, std::string>;

constexpr TableId kTables[] = {TableId::kAccounts, TableId::kDevices, TableId::kGroupMembers};

void apply_model(Model& model, const std::vector<Mutation>& batch) {
  for (const Mutation& m : batch) {
    const auto key = std::make_pair(static_cast<uint8_t>(m.table), m.key);
    if (m.value) {
      model[key] = *m.value;
    } else {
      model.erase(key);
    }
  }
}

Model dump(const Catalog& catalog) {
  Model out;
  for (TableId t : kTables) {
    catalog.scan(t, "", [&](std::string_view k, std::string_view v) {
      out[{static_cast<uint8_t>(t), std::string(k)}] = std::string(v);
      return true;
    });
  }
  return out;
}

struct Totals {
  uint64_t batches = 0;
  uint64_t confirmed = 0;  // barriers that completed OK
  uint64_t crashes = 0;
  uint64_t crashes_mid_snapshot = 0;
  uint64_t snapshots = 0;
  uint64_t retired = 0;
  uint64_t snapshot_loads = 0;
  uint64_t fail_stops = 0;
  uint64_t lost_unconfirmed = 0;  // batches applied, never confirmed, gone after a crash
};

class Simulation {
 public:
  explicit Simulation(uint64_t seed) : random_(seed * 7919 + 1) {
    SimDiskOptions d;
    d.seed = seed;
    d.sector_bytes = seed % 2 == 0 ? 512 : 4096;
    d.min_latency_ns = 1'000;
    d.max_latency_ns = 20'000 + (seed % 5) * 20'000;
    d.sync_extra_latency_ns = 30'000;
    const bool faulty = seed % 4 == 0;
    d.write_error_probability = faulty ? 0.002 : 0;
    d.sync_error_probability = faulty ? 0.002 : 0;
    d.create_error_probability = faulty ? 0.01 : 0;
    disk_ = std::make_unique<SimDisk>(d);
    disk_->set_bitflips_enabled(false);  // corruption on read is the unit tests' (DataLoss)

    options_.log.segment_size_bytes = 32 * 1024;
    options_.log.group_commit_bytes = 4 * 1024;
    options_.log.group_commit_delay_us = 100 + seed % 400;
    options_.log.max_write_bytes = 16 * 1024;
    options_.log.max_payload_bytes = 4096;
    options_.log.max_staged_bytes = 24 * 1024 + (seed % 3) * 64 * 1024;  // some backpressure
    options_.snapshot_after_bytes = 8 * 1024 + (seed % 7) * 8 * 1024;
    options_.snapshot_chunk_bytes = 4096 * (1 + seed % 4);
    options_.snapshots_kept = 1 + seed % 2;
  }

  void run(Totals& totals) {
    ASSERT_NO_FATAL_FAILURE(open());
    const int lives = 3 + static_cast<int>(random_() % 3);
    for (int life = 0; life < lives; ++life) {
      disk_->set_faults_enabled(true);
      ASSERT_NO_FATAL_FAILURE(work(totals));
      // Crash: at a random point, or while a snapshot is being written.
      if (catalog_->snapshot_in_progress()) ++totals.crashes_mid_snapshot;
      totals.snapshots += catalog_->stats().snapshots_written;
      totals.retired += catalog_->stats().segments_retired;
      if (!catalog_->status().ok()) ++totals.fail_stops;
      disk_->crash();
      ++totals.crashes;
      catalog_.reset();
      disk_->set_faults_enabled(false);
      ASSERT_NO_FATAL_FAILURE(open());
      if (catalog_->stats().snapshot_loaded_sequence != 0) ++totals.snapshot_loads;
      ASSERT_NO_FATAL_FAILURE(check_prefix(totals));
    }
    totals.batches += history_.size();
    totals.confirmed += barriers_ok_;
    catalog_.reset();
  }

 private:
  void open() {
    std::optional<absl::StatusOr<std::unique_ptr<Catalog>>> result;
    Catalog::open(*disk_, options_, [&](absl::StatusOr<std::unique_ptr<Catalog>> c) {
      result.emplace(std::move(c));
    });
    while (!result.has_value() && disk_->step()) {
    }
    ASSERT_TRUE(result.has_value()) << "open never completed";
    ASSERT_TRUE(result->ok()) << result->status();
    catalog_ = std::move(**result);
    barrier_generation_++;
  }

  std::vector<Mutation> random_batch() {
    std::vector<Mutation> batch;
    const size_t n = 1 + random_() % 5;
    for (size_t i = 0; i < n; ++i) {
      const TableId t = kTables[random_() % 3];
      const std::string key = "k" + std::to_string(random_() % 150);
      if (random_() % 5 == 0) {
        batch.push_back(Mutation::erase(t, key));
      } else {
        std::string value(random_() % 300, '\0');
        for (char& c : value) c = static_cast<char>('a' + random_() % 26);
        value += "#" + std::to_string(history_.size());  // every write distinct
        batch.push_back(Mutation::put(t, key, value));
      }
    }
    return batch;
  }

  void work(Totals& totals) {
    (void)totals;
    const int ops = 50 + static_cast<int>(random_() % 250);
    const bool crash_in_snapshot = random_() % 3 == 0;
    for (int op = 0; op < ops; ++op) {
      const uint64_t r = random_() % 100;
      if (r < 55) {
        std::vector<Mutation> batch = random_batch();
        const absl::Status s = catalog_->apply(batch);
        if (s.ok()) {
          history_.push_back(std::move(batch));
        } else {
          ASSERT_TRUE(s.code() == absl::StatusCode::kResourceExhausted ||
                      s.code() == absl::StatusCode::kFailedPrecondition)
              << s;
          if (s.code() == absl::StatusCode::kFailedPrecondition) {
            ASSERT_FALSE(catalog_->status().ok());
          }
        }
      } else if (r < 70) {
        const size_t covers = history_.size();
        const uint64_t generation = barrier_generation_;
        auto ran = std::make_shared<bool>(false);
        catalog_->barrier([this, covers, generation, ran](const absl::Status& s) {
          *ran = true;
          // A barrier of a life that crashed never runs (its completion was dropped).
          EXPECT_EQ(generation, barrier_generation_);
          if (s.ok()) {
            confirmed_ = std::max(confirmed_, covers);
            ++barriers_ok_;
          }
        });
        EXPECT_FALSE(*ran) << "barrier completed inside the call";
      } else if (r < 73) {
        catalog_->snapshot_now();
      } else {
        const uint64_t steps = random_() % 40;
        for (uint64_t i = 0; i < steps && disk_->step(); ++i) {
        }
      }
      if (crash_in_snapshot && catalog_->snapshot_in_progress() && random_() % 8 == 0) return;
      // What the catalog serves in memory is every applied batch, at once.
      if (op % 50 == 0 && catalog_->status().ok()) {
        Model model;
        for (const auto& b : history_) apply_model(model, b);
        ASSERT_EQ(dump(*catalog_), model);
      }
    }
    const uint64_t tail = random_() % 3;
    if (tail == 0) disk_->run_until_idle();
    if (tail == 1) {
      const uint64_t steps = random_() % 200;
      for (uint64_t i = 0; i < steps && disk_->step(); ++i) {
      }
    }
  }

  // The recovered state must be the model after some prefix [0, k) of history_, with
  // k >= confirmed_. Then history_ is cut to that prefix: the rest never happened.
  void check_prefix(Totals& totals) {
    const Model state = dump(*catalog_);
    Model model;
    for (size_t i = 0; i < confirmed_ && i < history_.size(); ++i) apply_model(model, history_[i]);
    ASSERT_LE(confirmed_, history_.size());
    std::optional<size_t> match;
    for (size_t k = confirmed_;; ++k) {
      if (model == state) match = k;  // the longest matching prefix (equal states may repeat)
      if (k == history_.size()) break;
      apply_model(model, history_[k]);
    }
    ASSERT_TRUE(match.has_value())
        << "recovered state is no prefix of the applied batches "
        << "(confirmed " << confirmed_ << " of " << history_.size() << ")";
    totals.lost_unconfirmed += history_.size() - *match;
    history_.resize(*match);
    confirmed_ = *match;  // what recovery returned is durable now
  }

  std::mt19937_64 random_;
  std::unique_ptr<SimDisk> disk_;
  CatalogOptions options_;
  std::unique_ptr<Catalog> catalog_;
  std::vector<std::vector<Mutation>> history_;
  size_t confirmed_ = 0;
  uint64_t barrier_generation_ = 0;
  uint64_t barriers_ok_ = 0;
};

TEST(CatalogSimulation, ConfirmedBatchesSurviveCrashesSnapshotsAndRetirement) {
  log::set_min_level(log::Level::kError);
  const uint64_t one = env_or("HERALD_SIM_SEED", 0);
  const uint64_t first = one != 0 ? one : env_or("HERALD_SIM_FIRST_SEED", 1);
  const uint64_t count = one != 0 ? 1 : env_or("HERALD_SIM_SEEDS", 300);
  Totals totals;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SCOPED_TRACE(testing::Message() << "replay with HERALD_SIM_SEED=" << seed);
    Simulation sim(seed);
    sim.run(totals);
    if (testing::Test::HasFailure()) {
      std::printf("FAILED: replay with HERALD_SIM_SEED=%llu\n",
                  static_cast<unsigned long long>(seed));
      return;
    }
  }
  std::printf(
      "seeds=%llu batches=%llu barriers_ok=%llu crashes=%llu crashes_mid_snapshot=%llu "
      "snapshots=%llu segments_retired=%llu snapshot_loads=%llu fail_stops=%llu "
      "lost_unconfirmed=%llu\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(totals.batches),
      static_cast<unsigned long long>(totals.confirmed),
      static_cast<unsigned long long>(totals.crashes),
      static_cast<unsigned long long>(totals.crashes_mid_snapshot),
      static_cast<unsigned long long>(totals.snapshots),
      static_cast<unsigned long long>(totals.retired),
      static_cast<unsigned long long>(totals.snapshot_loads),
      static_cast<unsigned long long>(totals.fail_stops),
      static_cast<unsigned long long>(totals.lost_unconfirmed));
  if (count >= 100) {
    // The run must have exercised what it claims to.
    EXPECT_GT(totals.confirmed, 0u);
    EXPECT_GT(totals.snapshots, 0u);
    EXPECT_GT(totals.retired, 0u);
    EXPECT_GT(totals.snapshot_loads, 0u);
    EXPECT_GT(totals.crashes_mid_snapshot, 0u);
    EXPECT_GT(totals.fail_stops, 0u);
    EXPECT_GT(totals.lost_unconfirmed, 0u);
  }
}

}  // namespace
}  // namespace herald::storage

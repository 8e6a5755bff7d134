// Tests for config revisions over MemoryTables: first open, candidates, commit and rollback,
// the apply hook after the barrier, confirm deadlines (on tick and across a reopen), the
// config-file policy at open, pruning and store failures.
#include "controlplane/config/revisions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace herald::config_revisions {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint64_t kStartMs = 1'700'000'000'000;

config::Config load(const std::string& json) {
  absl::StatusOr<config::Config> c = config::load_config_from_string(json, "test");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : config::default_config();
}

bool same(const config::Config& a, const config::Config& b) {
  return std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin(), b.bytes().end());
}

struct Applied {
  uint64_t revision;
  std::vector<std::string> restart_required;
  uint32_t idle_timeout_ms;
};

class RevisionsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Revisions> open(const config::Config& boot,
                                  Revisions::Source source = Revisions::Source::kDefaults,
                                  size_t max_revisions = 256) {
    Revisions::Options options;
    options.now_unix_ms = [this] { return now_ms_; };
    options.apply = [this](const config::Config& c, uint64_t revision,
                           const std::vector<std::string>& restart) {
      applied_.push_back({revision, restart, c.limits().idle_timeout_ms()});
    };
    options.max_revisions = max_revisions;
    absl::StatusOr<std::unique_ptr<Revisions>> r =
        Revisions::open(tables_, boot, source, std::move(options));
    EXPECT_TRUE(r.ok()) << r.status();
    drain();
    return r.ok() ? *std::move(r) : nullptr;
  }

  void drain() {
    while (!queue_.empty()) {
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      fn();
    }
  }

  uint64_t candidate(Revisions& r, const std::string& json, std::string_view comment = "") {
    absl::StatusOr<uint64_t> rev = r.add_candidate(load(json), "test", comment);
    EXPECT_TRUE(rev.ok()) << rev.status();
    return rev.ok() ? *rev : 0;
  }

  std::deque<std::function<void()>> queue_;
  storage::MemoryTables tables_{
      [this](std::function<void()> fn) { queue_.push_back(std::move(fn)); }};
  uint64_t now_ms_ = kStartMs;
  std::vector<Applied> applied_;
};

TEST_F(RevisionsTest, FirstOpenStoresTheBootConfigAsRevisionOne) {
  auto r = open(config::default_config());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->active_revision(), 1u);
  EXPECT_TRUE(same(r->active(), config::default_config()));
  ASSERT_TRUE(r->info(1).has_value());
  EXPECT_EQ(r->info(1)->author, "boot");
  EXPECT_EQ(r->info(1)->created_unix_ms, kStartMs);
  EXPECT_FALSE(r->pending().has_value());
  EXPECT_THAT(applied_, IsEmpty());  // the node starts with active(); nothing to apply
}

TEST_F(RevisionsTest, FirstOpenWithAConfigFileIsAuthoredConfigFile) {
  auto r = open(load(R"({"node": {"id": 5}})"), Revisions::Source::kConfigFile);
  EXPECT_EQ(r->info(1)->author, "config-file");
  EXPECT_EQ(r->active().node().id(), 5);
}

TEST_F(RevisionsTest, CandidateIsStoredButNotActive) {
  auto r = open(config::default_config());
  const uint64_t rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})", "shorter idle");
  EXPECT_EQ(rev, 2u);
  EXPECT_EQ(r->active_revision(), 1u);
  EXPECT_EQ(r->info(2)->comment, "shorter idle");
  absl::StatusOr<config::Config> stored = r->config(2);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->limits().idle_timeout_ms(), 5000u);
  EXPECT_THAT(applied_, IsEmpty());
}

TEST_F(RevisionsTest, CommitActivatesAndAppliesOnlyAfterTheBarrier) {
  auto r = open(config::default_config());
  const uint64_t rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  absl::StatusOr<CommitOutcome> outcome = r->commit(rev, std::nullopt);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->active, rev);
  EXPECT_THAT(outcome->restart_required, IsEmpty());
  EXPECT_FALSE(outcome->confirm_deadline_unix_ms.has_value());
  EXPECT_EQ(r->active().limits().idle_timeout_ms(), 5000u);
  EXPECT_THAT(applied_, IsEmpty());  // not durable yet
  drain();
  ASSERT_EQ(applied_.size(), 1u);
  EXPECT_EQ(applied_[0].revision, rev);
  EXPECT_EQ(applied_[0].idle_timeout_ms, 5000u);
}

TEST_F(RevisionsTest, RestartRequiredIsRelativeToTheRunningConfig) {
  auto r = open(config::default_config());
  const uint64_t workers = candidate(*r, R"({"dataplane": {"workers": 2}})");
  const uint64_t idle =
      candidate(*r, R"({"dataplane": {"workers": 2}, "limits": {"idle_timeout_ms": 5000}})");
  EXPECT_THAT(r->commit(workers, std::nullopt)->restart_required, ElementsAre("dataplane.workers"));
  // Still not restarted: the next commit reports it again.
  EXPECT_THAT(r->commit(idle, std::nullopt)->restart_required, ElementsAre("dataplane.workers"));
  // Back to what runs: nothing waits for a restart.
  EXPECT_THAT(r->commit(1, std::nullopt)->restart_required, IsEmpty());
  drain();
  ASSERT_EQ(applied_.size(), 3u);
  EXPECT_THAT(applied_[0].restart_required, ElementsAre("dataplane.workers"));
  EXPECT_EQ(applied_[2].revision, 1u);
}

TEST_F(RevisionsTest, RollbackToAnyOlderRevision) {
  auto r = open(config::default_config());
  const uint64_t a = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  const uint64_t b = candidate(*r, R"({"limits": {"idle_timeout_ms": 6000}})");
  ASSERT_TRUE(r->commit(a, std::nullopt).ok());
  ASSERT_TRUE(r->commit(b, std::nullopt).ok());
  ASSERT_TRUE(r->commit(a, std::nullopt).ok());
  EXPECT_EQ(r->active_revision(), a);
  EXPECT_EQ(r->active().limits().idle_timeout_ms(), 5000u);
  ASSERT_TRUE(r->commit(1, std::nullopt).ok());
  EXPECT_TRUE(same(r->active(), config::default_config()));
  drain();
  ASSERT_EQ(applied_.size(), 4u);
  EXPECT_EQ(applied_[3].revision, 1u);
  // The history is unchanged by commits.
  EXPECT_EQ(r->size(), 3u);
}

TEST_F(RevisionsTest, UnknownRevisionAndBadTimeout) {
  auto r = open(config::default_config());
  EXPECT_TRUE(absl::IsNotFound(r->commit(9, std::nullopt).status()));
  EXPECT_TRUE(absl::IsNotFound(r->confirm(9)));
  EXPECT_TRUE(absl::IsNotFound(r->config(9).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(r->commit(1, 0u).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(r->commit(1, kMaxConfirmTimeoutS + 1).status()));
  EXPECT_TRUE(r->commit(1, kMaxConfirmTimeoutS).ok());
}

TEST_F(RevisionsTest, UnconfirmedCommitRevertsAtItsDeadline) {
  auto r = open(config::default_config());
  const uint64_t rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  absl::StatusOr<CommitOutcome> outcome = r->commit(rev, 30u);
  ASSERT_TRUE(outcome.ok());
  ASSERT_TRUE(outcome->confirm_deadline_unix_ms.has_value());
  EXPECT_EQ(*outcome->confirm_deadline_unix_ms, kStartMs + 30'000);
  ASSERT_TRUE(r->pending().has_value());
  EXPECT_EQ(r->pending()->previous_revision, 1u);
  drain();

  r->tick(kStartMs + 29'999);
  EXPECT_EQ(r->active_revision(), rev);
  r->tick(kStartMs + 30'000);
  EXPECT_EQ(r->active_revision(), 1u);
  EXPECT_FALSE(r->pending().has_value());
  EXPECT_EQ(r->stats().reverts, 1u);
  drain();
  ASSERT_EQ(applied_.size(), 2u);
  EXPECT_EQ(applied_[1].revision, 1u);
  EXPECT_EQ(applied_[1].idle_timeout_ms, 300000u);
  // Later ticks change nothing.
  r->tick(kStartMs + 90'000);
  EXPECT_EQ(r->active_revision(), 1u);
}

TEST_F(RevisionsTest, ConfirmKeepsTheCommit) {
  auto r = open(config::default_config());
  const uint64_t rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  ASSERT_TRUE(r->commit(rev, 30u).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r->confirm(1)));  // exists, not pending
  ASSERT_TRUE(r->confirm(rev).ok());
  EXPECT_FALSE(r->pending().has_value());
  EXPECT_TRUE(absl::IsFailedPrecondition(r->confirm(rev)));  // already confirmed
  r->tick(kStartMs + 60'000);
  EXPECT_EQ(r->active_revision(), rev);
}

TEST_F(RevisionsTest, ACommitWhilePendingRevertsToTheLastConfirmedRevision) {
  auto r = open(config::default_config());
  const uint64_t a = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  const uint64_t b = candidate(*r, R"({"limits": {"idle_timeout_ms": 6000}})");
  ASSERT_TRUE(r->commit(a, 30u).ok());
  now_ms_ += 10'000;
  ASSERT_TRUE(r->commit(b, 30u).ok());
  EXPECT_EQ(r->pending()->revision, b);
  EXPECT_EQ(r->pending()->previous_revision, 1u);  // not `a`, never confirmed
  r->tick(now_ms_ + 30'000);
  EXPECT_EQ(r->active_revision(), 1u);

  // Without a timeout, a commit during a pending one is final.
  ASSERT_TRUE(r->commit(a, 30u).ok());
  ASSERT_TRUE(r->commit(b, std::nullopt).ok());
  EXPECT_FALSE(r->pending().has_value());
  r->tick(now_ms_ + 100'000);
  EXPECT_EQ(r->active_revision(), b);
}

TEST_F(RevisionsTest, StateSurvivesAReopen) {
  uint64_t rev = 0;
  {
    auto r = open(config::default_config());
    rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})", "why");
    ASSERT_TRUE(r->commit(rev, std::nullopt).ok());
    drain();
  }
  auto r = open(config::default_config());
  EXPECT_EQ(r->active_revision(), rev);
  EXPECT_EQ(r->active().limits().idle_timeout_ms(), 5000u);
  EXPECT_TRUE(same(r->running(), r->active()));
  EXPECT_EQ(r->info(rev)->comment, "why");
  EXPECT_EQ(r->size(), 2u);
}

TEST_F(RevisionsTest, PendingDeadlineSurvivesAReopenAndRevertsOnTick) {
  uint64_t rev = 0;
  {
    auto r = open(config::default_config());
    rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
    ASSERT_TRUE(r->commit(rev, 60u).ok());
    drain();
  }
  now_ms_ += 30'000;  // restarted within the window
  auto r = open(config::default_config());
  ASSERT_TRUE(r->pending().has_value());
  EXPECT_EQ(r->pending()->deadline_unix_ms, kStartMs + 60'000);
  EXPECT_EQ(r->active_revision(), rev);
  applied_.clear();
  r->tick(kStartMs + 60'000);
  EXPECT_EQ(r->active_revision(), 1u);
  drain();
  ASSERT_EQ(applied_.size(), 1u);
  EXPECT_EQ(applied_[0].revision, 1u);
}

TEST_F(RevisionsTest, PendingDeadlinePassedWhileDownRevertsAtOpen) {
  uint64_t rev = 0;
  {
    auto r = open(config::default_config());
    rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
    ASSERT_TRUE(r->commit(rev, 60u).ok());
    drain();
  }
  now_ms_ += 61'000;
  auto r = open(config::default_config());
  EXPECT_EQ(r->active_revision(), 1u);
  EXPECT_FALSE(r->pending().has_value());
  EXPECT_TRUE(same(r->running(), config::default_config()));
  // And it is durable: a second reopen agrees.
  r.reset();
  auto again = open(config::default_config());
  EXPECT_EQ(again->active_revision(), 1u);
  EXPECT_FALSE(again->pending().has_value());
}

TEST_F(RevisionsTest, AnUnchangedConfigFileKeepsWhatTheApiCommitted) {
  const config::Config file = load(R"({"node": {"id": 7}})");
  uint64_t api_rev = 0;
  {
    auto r = open(file, Revisions::Source::kConfigFile);
    api_rev = candidate(*r, R"({"node": {"id": 7}, "limits": {"idle_timeout_ms": 5000}})");
    ASSERT_TRUE(r->commit(api_rev, std::nullopt).ok());
    drain();
  }
  auto r = open(file, Revisions::Source::kConfigFile);
  EXPECT_EQ(r->active_revision(), api_rev);
  EXPECT_EQ(r->size(), 2u);
}

TEST_F(RevisionsTest, AChangedConfigFileBecomesANewCommittedRevision) {
  {
    auto r = open(load(R"({"node": {"id": 7}})"), Revisions::Source::kConfigFile);
    const uint64_t a = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
    ASSERT_TRUE(r->commit(a, 60u).ok());  // pending, and the file then changes
    drain();
  }
  auto r = open(load(R"({"node": {"id": 8}})"), Revisions::Source::kConfigFile);
  EXPECT_EQ(r->active_revision(), 3u);
  EXPECT_EQ(r->info(3)->author, "config-file");
  EXPECT_EQ(r->active().node().id(), 8);
  EXPECT_FALSE(r->pending().has_value());  // the operator's file wins over the pending revert
  EXPECT_EQ(r->stats().file_imports, 1u);
  // Unchanged on the next start: no new revision.
  r.reset();
  auto again = open(load(R"({"node": {"id": 8}})"), Revisions::Source::kConfigFile);
  EXPECT_EQ(again->active_revision(), 3u);
  EXPECT_EQ(again->size(), 3u);
}

TEST_F(RevisionsTest, StartingWithoutAFileKeepsTheStoredActiveRevision) {
  {
    auto r = open(config::default_config());
    ASSERT_TRUE(r->commit(candidate(*r, R"({"node": {"id": 3}})"), std::nullopt).ok());
    drain();
  }
  auto r = open(config::default_config());
  EXPECT_EQ(r->active().node().id(), 3);
}

TEST_F(RevisionsTest, ListIsNewestFirstAndPaged) {
  auto r = open(config::default_config());
  for (int i = 0; i < 5; ++i) candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  auto revs = [](const std::vector<RevisionInfo>& infos) {
    std::vector<uint64_t> out;
    for (const RevisionInfo& info : infos) out.push_back(info.revision);
    return out;
  };
  EXPECT_THAT(revs(r->list(0, 3)), ElementsAre(6, 5, 4));
  EXPECT_THAT(revs(r->list(4, 3)), ElementsAre(3, 2, 1));
  EXPECT_THAT(revs(r->list(2, 3)), ElementsAre(1));
  EXPECT_THAT(revs(r->list(1, 3)), IsEmpty());
  EXPECT_THAT(revs(r->list(100, 2)), ElementsAre(6, 5));
}

TEST_F(RevisionsTest, OldRevisionsArePrunedButReferencedOnesKept) {
  auto r = open(config::default_config(), Revisions::Source::kDefaults, /*max_revisions=*/4);
  const uint64_t a = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  ASSERT_TRUE(r->commit(a, 60u).ok());  // 1 is the revert target, 2 the pending one
  for (int i = 0; i < 6; ++i) candidate(*r, R"({"limits": {"idle_timeout_ms": 6000}})");
  EXPECT_EQ(r->size(), 4u);
  EXPECT_TRUE(r->info(1).has_value());
  EXPECT_TRUE(r->info(a).has_value());
  EXPECT_TRUE(r->info(8).has_value());
  EXPECT_FALSE(r->info(3).has_value());
  EXPECT_TRUE(absl::IsNotFound(r->config(3).status()));
  EXPECT_EQ(r->stats().pruned, 4u);
  // Numbers are never reused after pruning.
  EXPECT_EQ(candidate(*r, "{}"), 9u);
}

TEST_F(RevisionsTest, OversizedAuthorOrCommentIsRefused) {
  auto r = open(config::default_config());
  EXPECT_TRUE(absl::IsInvalidArgument(
      r->add_candidate(config::default_config(), "x", std::string(kMaxCommentBytes + 1, 'c'))
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      r->add_candidate(config::default_config(), std::string(kMaxAuthorBytes + 1, 'a'), "")
          .status()));
  EXPECT_EQ(r->size(), 1u);
}

TEST_F(RevisionsTest, StoreFailureChangesNothing) {
  auto r = open(config::default_config());
  const uint64_t rev = candidate(*r, R"({"limits": {"idle_timeout_ms": 5000}})");
  ASSERT_TRUE(r->commit(rev, 30u).ok());
  drain();
  tables_.fail_for_test(absl::DataLossError("disk gone"));
  EXPECT_TRUE(absl::IsUnavailable(r->add_candidate(config::default_config(), "t", "").status()));
  EXPECT_TRUE(absl::IsUnavailable(r->commit(1, std::nullopt).status()));
  EXPECT_TRUE(absl::IsUnavailable(r->confirm(rev)));
  r->tick(kStartMs + 60'000);  // the revert cannot be written: retried later
  EXPECT_EQ(r->active_revision(), rev);
  EXPECT_TRUE(r->pending().has_value());
  EXPECT_EQ(r->size(), 2u);
  drain();
  ASSERT_EQ(applied_.size(), 1u);  // only the commit made before the failure
}

TEST_F(RevisionsTest, AnApplyCallbackAfterDestructionIsDropped) {
  auto r = open(config::default_config());
  ASSERT_TRUE(r->commit(candidate(*r, R"({"node": {"id": 3}})"), std::nullopt).ok());
  r.reset();
  drain();  // must not touch the destroyed object
  EXPECT_THAT(applied_, IsEmpty());
}

TEST(RevisionKey, SortsNumerically) {
  EXPECT_EQ(revision_key(42), "rev/00000000000000000042");
  EXPECT_LT(revision_key(9), revision_key(10));
  EXPECT_LT(revision_key(99999), revision_key(UINT64_MAX));
}

}  // namespace
}  // namespace herald::config_revisions

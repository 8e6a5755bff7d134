// Config as revisions: every config the node has run or been offered is a numbered revision in
// TableId::kConfigRevisions; one is active; a commit may carry a confirm deadline after which it
// reverts by itself (the "commit confirmed" of network operating systems).
//
//   Revisions::Options options;
//   options.now_unix_ms = [] { return wall_clock_ms(); };
//   options.apply = [&](const config::Config& c, uint64_t rev, const auto& restart) { ... };
//   absl::StatusOr<std::unique_ptr<Revisions>> revs =
//       Revisions::open(tables, boot_config, Revisions::Source::kConfigFile, std::move(options));
//   run_with((*revs)->active());           // the config to run with, after open
//   every second: (*revs)->tick(now_ms);  // reverts an unconfirmed commit at its deadline
//
// Start-up policy (open):
//   - An empty table: revision 1 is `boot_config`, authored "boot" (the built-in defaults) or
//     "config-file" (--config was given), and active.
//   - Otherwise, with Source::kConfigFile: when the file's config differs from the revision last
//     imported from the file, it becomes a new revision, committed, authored "config-file".
//     An unchanged file does not override what the admin API committed since: comparing with
//     the active revision instead would undo every API commit at each restart.
//   - A pending confirm whose deadline has passed (the node was down) reverts at once.
// Single-threaded: the control plane's event loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/storage/tables.h"
#include "platform/config/config.h"

namespace herald::config_revisions {

struct RevisionInfo {
  uint64_t revision = 0;
  uint64_t created_unix_ms = 0;
  std::string author;
  std::string comment;
  uint32_t crc32c = 0;
};

struct PendingConfirm {
  uint64_t revision = 0;
  uint64_t previous_revision = 0;
  uint64_t deadline_unix_ms = 0;
};

struct CommitOutcome {
  uint64_t active = 0;
  // Fields that differ from the config the processes started with (running()) and are marked
  // herald_restart: they take effect at the next restart.
  std::vector<std::string> restart_required;
  std::optional<uint64_t> confirm_deadline_unix_ms;
};

// Called once a change of the active revision is durable (after the store's barrier), in the
// order of the changes: the dataplane gets the config over IPC, services re-read their limits.
using ApplyFn = std::function<void(const config::Config& config, uint64_t revision,
                                   const std::vector<std::string>& restart_required)>;

inline constexpr size_t kMaxAuthorBytes = 64;
inline constexpr size_t kMaxCommentBytes = 256;
// A confirm window longer than a day is a forgotten one.
inline constexpr uint32_t kMaxConfirmTimeoutS = 86400;

class Revisions {
 public:
  enum class Source : uint8_t { kDefaults, kConfigFile };

  struct Options {
    // Wall-clock milliseconds since the Unix epoch (created_unix_ms, deadlines survive restarts).
    std::function<uint64_t()> now_unix_ms;
    ApplyFn apply;  // may be empty
    // Revisions kept; beyond it the oldest are deleted, except the active one, the one a
    // pending confirm would revert to and the last imported from the file (each is about the
    // config's size, a few KiB).
    size_t max_revisions = 256;
  };

  // Loads the table and applies the start-up policy above; DataLoss when the active or pending
  // record names a revision that is missing or does not verify, an apply() error otherwise.
  static absl::StatusOr<std::unique_ptr<Revisions>> open(storage::Tables& tables,
                                                         const config::Config& boot_config,
                                                         Source source, Options options);
  ~Revisions();
  Revisions(const Revisions&) = delete;
  Revisions& operator=(const Revisions&) = delete;

  // The active config and its revision.
  const config::Config& active() const { return *active_config_; }
  uint64_t active_revision() const { return active_revision_; }
  // The config the processes run with: active() as it was at open(). restart_required lists
  // are relative to it.
  const config::Config& running() const { return *running_config_; }
  std::optional<PendingConfirm> pending() const { return pending_; }

  // Stores `config` as a new candidate revision (not active). InvalidArgument for an author or
  // comment too long or a config too large to store; a storage error otherwise.
  absl::StatusOr<uint64_t> add_candidate(const config::Config& config, std::string_view author,
                                         std::string_view comment);

  // Makes `revision` active (a candidate, or any older revision: a rollback). With a
  // confirm_timeout_s (1..kMaxConfirmTimeoutS), the previous active revision comes back by
  // itself at now + timeout unless confirm(revision) arrives first. A commit while another is
  // pending replaces it: with a timeout, the revert still goes back to the last confirmed
  // revision (the pending one's previous), never to an unconfirmed one; without, the new
  // commit is final. NotFound for an unknown revision, InvalidArgument for a timeout out of
  // range, a storage error otherwise.
  absl::StatusOr<CommitOutcome> commit(uint64_t revision,
                                       std::optional<uint32_t> confirm_timeout_s);
  // Confirms a pending commit. NotFound for an unknown revision, FailedPrecondition when
  // `revision` is not the pending one.
  absl::Status confirm(uint64_t revision);

  // Reverts a pending commit whose deadline is <= now_ms. Call every second.
  void tick(uint64_t now_ms);

  // Revisions older than `before` (0: from the newest), newest first, at most `limit`.
  std::vector<RevisionInfo> list(uint64_t before, size_t limit) const;
  std::optional<RevisionInfo> info(uint64_t revision) const;
  // The stored config of a revision; NotFound, or DataLoss when it no longer verifies.
  absl::StatusOr<config::Config> config(uint64_t revision) const;
  size_t size() const { return infos_.size(); }

  struct Stats {
    uint64_t candidates = 0;
    uint64_t commits = 0;
    uint64_t confirms = 0;
    uint64_t reverts = 0;  // confirm deadlines that passed
    uint64_t pruned = 0;
    uint64_t file_imports = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  Revisions(storage::Tables& tables, Options options);

  absl::Status load();
  absl::Status bootstrap(const config::Config& boot_config, Source source);
  // Writes the active record (and the pending record, or its erasure) plus `extra` in one
  // batch, then updates memory and schedules apply() after a barrier.
  absl::Status activate(uint64_t revision, std::optional<PendingConfirm> pending,
                        std::vector<storage::Mutation> extra, bool notify);
  absl::StatusOr<uint64_t> store_revision(const config::Config& config, std::string_view author,
                                          std::string_view comment,
                                          std::vector<storage::Mutation>* batch);
  // Erases the oldest revisions beyond max_revisions (never one still referenced).
  void prune(std::vector<storage::Mutation>& batch, std::vector<uint64_t>& erased);

  storage::Tables& tables_;
  Options options_;
  std::map<uint64_t, RevisionInfo> infos_;
  // Revisions in the batch being built, entered in infos_ once it is applied.
  std::vector<RevisionInfo> pending_infos_;
  uint64_t active_revision_ = 0;
  uint64_t file_revision_ = 0;
  std::shared_ptr<const config::Config> active_config_;
  std::shared_ptr<const config::Config> running_config_;
  std::optional<PendingConfirm> pending_;
  Stats stats_;
  // Barrier callbacks hold a weak reference: they may run after this object is gone.
  std::shared_ptr<Revisions*> self_;
};

// The key of a revision record ("rev/00000000000000000042"): decimal, fixed width, so byte
// order is numeric order.
std::string revision_key(uint64_t revision);

}  // namespace herald::config_revisions

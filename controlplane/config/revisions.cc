// Config revisions over storage::Tables: records, the start-up policy, commit with a confirm
// deadline, revert on tick (see revisions.h).
#include "controlplane/config/revisions.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "flatbuffers/flatbuffers.h"
#include "platform/crc32c/crc32c.h"
#include "platform/log/log.h"
#include "schemas/config_api_generated.h"

namespace herald::config_revisions {
namespace {

using storage::Mutation;
using storage::TableId;

constexpr TableId kTable = TableId::kConfigRevisions;
constexpr std::string_view kRevisionPrefix = "rev/";
constexpr std::string_view kActiveKey = "active";
constexpr std::string_view kPendingKey = "pending";

// Stored values sit in std::string, whose bytes may not be aligned for FlatBuffers' verifier:
// copy into a heap vector (operator new aligns to 16) before reading.
std::vector<uint8_t> aligned_copy(const std::string& value) {
  return std::vector<uint8_t>(value.begin(), value.end());
}

template <typename T>
const T* verified_root(const std::vector<uint8_t>& bytes) {
  flatbuffers::Verifier verifier(bytes.data(), bytes.size());
  if (!verifier.VerifyBuffer<T>(nullptr)) return nullptr;
  return flatbuffers::GetRoot<T>(bytes.data());
}

std::string to_string(const flatbuffers::FlatBufferBuilder& fbb) {
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::string active_value(uint64_t revision, uint64_t file_revision) {
  flatbuffers::FlatBufferBuilder fbb(64);
  fbb.ForceDefaults(true);
  fbb.Finish(config_api::CreateActiveRecord(fbb, revision, file_revision));
  return to_string(fbb);
}

std::string pending_value(const PendingConfirm& pending) {
  flatbuffers::FlatBufferBuilder fbb(64);
  fbb.ForceDefaults(true);
  fbb.Finish(config_api::CreatePendingConfirmRecord(
      fbb, pending.revision, pending.previous_revision, pending.deadline_unix_ms));
  return to_string(fbb);
}

// A failed apply() is the store's doing: FailedPrecondition once it has failed, ResourceExhausted
// under backpressure. Either way the API answers 503; Unavailable says so without colliding
// with this class's own FailedPrecondition (confirm of a revision not pending: 409).
absl::Status store_error(const absl::Status& status) {
  return absl::UnavailableError(
      absl::StrCat("config revisions: store: ", std::string(status.message())));
}

bool same_bytes(const config::Config& a, const config::Config& b) {
  return std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin(), b.bytes().end());
}

}  // namespace

std::string revision_key(uint64_t revision) {
  char key[32];
  std::snprintf(key, sizeof(key), "rev/%020" PRIu64, revision);
  return key;
}

Revisions::Revisions(storage::Tables& tables, Options options)
    : tables_(tables), options_(std::move(options)), self_(std::make_shared<Revisions*>(this)) {}

Revisions::~Revisions() = default;

absl::StatusOr<std::unique_ptr<Revisions>> Revisions::open(storage::Tables& tables,
                                                           const config::Config& boot_config,
                                                           Source source, Options options) {
  if (!options.now_unix_ms) {
    return absl::InvalidArgumentError("config revisions: a clock is required");
  }
  options.max_revisions = std::max<size_t>(options.max_revisions, 4);
  std::unique_ptr<Revisions> revisions(new Revisions(tables, std::move(options)));
  if (absl::Status status = revisions->load(); !status.ok()) return status;
  if (absl::Status status = revisions->bootstrap(boot_config, source); !status.ok()) {
    return status;
  }
  revisions->running_config_ = revisions->active_config_;
  HLOG_INFO("config.revisions_opened")
      .kv("active", revisions->active_revision_)
      .kv("revisions", revisions->infos_.size())
      .kv("pending", revisions->pending_.has_value());
  return revisions;
}

absl::Status Revisions::load() {
  size_t corrupt = 0;
  tables_.scan(kTable, kRevisionPrefix, [&](std::string_view key, std::string_view value) {
    if (!key.starts_with(kRevisionPrefix)) return false;
    const std::vector<uint8_t> bytes = aligned_copy(std::string(value));
    const auto* record = verified_root<config_api::RevisionRecord>(bytes);
    if (record == nullptr || record->config() == nullptr ||
        crc32c::value(record->config()->data(), record->config()->size()) != record->crc32c() ||
        revision_key(record->revision()) != key) {
      // The catalog's log is CRC-checked, so this is a defect, not a torn write. Skip the
      // record: an old candidate is not worth refusing to start for (the active one is checked
      // below).
      HLOG_ERROR("config.revision_corrupt").kv("key", key);
      ++corrupt;
      return true;
    }
    RevisionInfo info;
    info.revision = record->revision();
    info.created_unix_ms = record->created_unix_ms();
    info.author = record->author() != nullptr ? record->author()->str() : "";
    info.comment = record->comment() != nullptr ? record->comment()->str() : "";
    info.crc32c = record->crc32c();
    infos_.emplace(info.revision, std::move(info));
    return true;
  });

  const std::string* active = tables_.find(kTable, kActiveKey);
  if (active == nullptr) {
    if (!infos_.empty() || corrupt != 0) {
      return absl::DataLossError("config revisions: revisions stored but no active record");
    }
    return absl::OkStatus();
  }
  const std::vector<uint8_t> active_bytes = aligned_copy(*active);
  const auto* active_record = verified_root<config_api::ActiveRecord>(active_bytes);
  if (active_record == nullptr) {
    return absl::DataLossError("config revisions: the active record does not verify");
  }
  absl::StatusOr<config::Config> active_config = config(active_record->revision());
  if (!active_config.ok()) {
    return absl::DataLossError(absl::StrCat("config revisions: active revision ",
                                            active_record->revision(), ": ",
                                            std::string(active_config.status().message())));
  }
  active_revision_ = active_record->revision();
  file_revision_ = active_record->file_revision();
  active_config_ = std::make_shared<const config::Config>(*std::move(active_config));

  if (const std::string* pending = tables_.find(kTable, kPendingKey)) {
    const std::vector<uint8_t> pending_bytes = aligned_copy(*pending);
    const auto* record = verified_root<config_api::PendingConfirmRecord>(pending_bytes);
    if (record == nullptr || !infos_.contains(record->previous_revision())) {
      return absl::DataLossError("config revisions: the pending-confirm record is unusable");
    }
    pending_ =
        PendingConfirm{record->revision(), record->previous_revision(), record->deadline_unix_ms()};
  }
  return absl::OkStatus();
}

absl::Status Revisions::bootstrap(const config::Config& boot_config, Source source) {
  const char* const author = source == Source::kConfigFile ? "config-file" : "boot";
  if (active_config_ == nullptr) {
    std::vector<Mutation> batch;
    absl::StatusOr<uint64_t> revision = store_revision(boot_config, author, "", &batch);
    if (!revision.ok()) return revision.status();
    if (source == Source::kConfigFile) {
      file_revision_ = *revision;
      ++stats_.file_imports;
    }
    return activate(*revision, std::nullopt, std::move(batch), /*notify=*/false);
  }

  // A deadline that passed while the node was down: revert before anything runs with it.
  if (pending_ && options_.now_unix_ms() >= pending_->deadline_unix_ms) {
    const uint64_t previous = pending_->previous_revision;
    if (absl::Status status = activate(previous, std::nullopt, {}, /*notify=*/false);
        !status.ok()) {
      return status;
    }
    ++stats_.reverts;
    HLOG_WARN("config.confirm_expired_at_start").kv("active", previous);
  }

  if (source != Source::kConfigFile) return absl::OkStatus();
  // The file changed since it was last imported (or was never imported)?
  if (file_revision_ != 0) {
    absl::StatusOr<config::Config> imported = config(file_revision_);
    if (imported.ok() && same_bytes(*imported, boot_config)) return absl::OkStatus();
  }
  if (same_bytes(active(), boot_config)) {
    // Already running what the file says (it was committed through the API): just remember it.
    file_revision_ = active_revision_;
    return activate(active_revision_, pending_, {}, /*notify=*/false);
  }
  std::vector<Mutation> batch;
  absl::StatusOr<uint64_t> revision = store_revision(boot_config, author, "", &batch);
  if (!revision.ok()) return revision.status();
  file_revision_ = *revision;
  ++stats_.file_imports;
  HLOG_INFO("config.file_imported").kv("revision", *revision).kv("previous", active_revision_);
  // The operator's file wins over a pending API commit: drop its revert.
  return activate(*revision, std::nullopt, std::move(batch), /*notify=*/false);
}

absl::StatusOr<uint64_t> Revisions::store_revision(const config::Config& config,
                                                   std::string_view author,
                                                   std::string_view comment,
                                                   std::vector<Mutation>* batch) {
  if (author.size() > kMaxAuthorBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("author is longer than ", kMaxAuthorBytes, " bytes"));
  }
  if (comment.size() > kMaxCommentBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("comment is longer than ", kMaxCommentBytes, " bytes"));
  }
  const uint64_t revision = infos_.empty() ? 1 : infos_.rbegin()->first + 1;
  RevisionInfo info;
  info.revision = revision;
  info.created_unix_ms = options_.now_unix_ms();
  info.author = std::string(author);
  info.comment = std::string(comment);
  info.crc32c = crc32c::value(config.bytes().data(), config.bytes().size());

  flatbuffers::FlatBufferBuilder fbb(config.bytes().size() + 256);
  fbb.ForceDefaults(true);
  const auto author_offset = fbb.CreateString(info.author);
  const auto comment_offset = fbb.CreateString(info.comment);
  const auto config_offset = fbb.CreateVector(config.bytes().data(), config.bytes().size());
  fbb.Finish(config_api::CreateRevisionRecord(fbb, revision, info.created_unix_ms, author_offset,
                                              comment_offset, info.crc32c, config_offset));
  if (fbb.GetSize() > storage::kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the config takes ", fbb.GetSize(),
                                                   " bytes stored; a revision holds at most ",
                                                   storage::kMaxValueBytes));
  }
  batch->push_back(Mutation::put(kTable, revision_key(revision), to_string(fbb)));
  // Memory follows only once the batch is applied: the caller inserts on success through
  // activate() or add_candidate(); keep the info ready here.
  pending_infos_.push_back(std::move(info));
  return revision;
}

void Revisions::prune(std::vector<Mutation>& batch, std::vector<uint64_t>& erased) {
  // Room for the one being added.
  const size_t stored = infos_.size() + pending_infos_.size();
  if (stored <= options_.max_revisions) return;
  size_t excess = stored - options_.max_revisions;
  std::set<uint64_t> keep = {active_revision_, file_revision_};
  if (pending_) {
    keep.insert(pending_->revision);
    keep.insert(pending_->previous_revision);
  }
  for (const auto& [revision, info] : infos_) {
    if (excess == 0) break;
    if (keep.contains(revision)) continue;
    batch.push_back(Mutation::erase(kTable, revision_key(revision)));
    erased.push_back(revision);
    --excess;
  }
}

absl::Status Revisions::activate(uint64_t revision, std::optional<PendingConfirm> pending,
                                 std::vector<Mutation> batch, bool notify) {
  // The config of a revision written in this same batch is not in the table yet.
  std::shared_ptr<const config::Config> next;
  for (const Mutation& m : batch) {
    if (m.value && m.key == revision_key(revision)) {
      const std::vector<uint8_t> bytes = aligned_copy(*m.value);
      const auto* record = verified_root<config_api::RevisionRecord>(bytes);
      if (record == nullptr) return absl::InternalError("config revisions: bad new record");
      absl::StatusOr<config::Config> c = config::config_from_buffer(
          {record->config()->data(), static_cast<size_t>(record->config()->size())});
      if (!c.ok()) return c.status();
      next = std::make_shared<const config::Config>(*std::move(c));
    }
  }
  if (next == nullptr) {
    if (revision == active_revision_ && active_config_ != nullptr) {
      next = active_config_;
    } else {
      absl::StatusOr<config::Config> c = config(revision);
      if (!c.ok()) return c.status();
      next = std::make_shared<const config::Config>(*std::move(c));
    }
  }
  batch.push_back(Mutation::put(kTable, kActiveKey, active_value(revision, file_revision_)));
  if (pending) {
    batch.push_back(Mutation::put(kTable, kPendingKey, pending_value(*pending)));
  } else if (pending_) {
    batch.push_back(Mutation::erase(kTable, kPendingKey));
  }
  if (absl::Status status = tables_.apply(batch); !status.ok()) {
    pending_infos_.clear();
    return store_error(status);
  }
  for (RevisionInfo& info : pending_infos_) infos_.emplace(info.revision, std::move(info));
  pending_infos_.clear();
  const bool changed = revision != active_revision_;
  active_revision_ = revision;
  active_config_ = next;
  pending_ = pending;
  if (notify && changed && options_.apply) {
    std::vector<std::string> restart = config::restart_required_changes(running(), *next);
    tables_.barrier([weak = std::weak_ptr<Revisions*>(self_), next, revision,
                     restart = std::move(restart)](const absl::Status& status) {
      auto self = weak.lock();
      if (self == nullptr) return;
      if (!status.ok()) {
        // The store failed (fail-stop): the node restarts from what is durable.
        HLOG_ERROR("config.apply_skipped")
            .kv("revision", revision)
            .kv("error", std::string(status.message()));
        return;
      }
      (*self)->options_.apply(*next, revision, restart);
    });
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Revisions::add_candidate(const config::Config& config,
                                                  std::string_view author,
                                                  std::string_view comment) {
  std::vector<Mutation> batch;
  absl::StatusOr<uint64_t> revision = store_revision(config, author, comment, &batch);
  if (!revision.ok()) {
    pending_infos_.clear();
    return revision.status();
  }
  std::vector<uint64_t> erased;
  prune(batch, erased);
  if (absl::Status status = tables_.apply(batch); !status.ok()) {
    pending_infos_.clear();
    return store_error(status);
  }
  for (RevisionInfo& info : pending_infos_) infos_.emplace(info.revision, std::move(info));
  pending_infos_.clear();
  for (uint64_t old : erased) infos_.erase(old);
  stats_.pruned += erased.size();
  ++stats_.candidates;
  return *revision;
}

absl::StatusOr<CommitOutcome> Revisions::commit(uint64_t revision,
                                                std::optional<uint32_t> confirm_timeout_s) {
  if (!infos_.contains(revision)) {
    return absl::NotFoundError(absl::StrCat("no config revision ", revision));
  }
  if (confirm_timeout_s && (*confirm_timeout_s < 1 || *confirm_timeout_s > kMaxConfirmTimeoutS)) {
    return absl::InvalidArgumentError(
        absl::StrCat("confirm_timeout_s must be 1..", kMaxConfirmTimeoutS));
  }
  std::optional<PendingConfirm> next_pending;
  if (confirm_timeout_s) {
    // Revert to the last confirmed revision, never to one still waiting for its confirm.
    const uint64_t previous = pending_ ? pending_->previous_revision : active_revision_;
    next_pending = PendingConfirm{revision, previous,
                                  options_.now_unix_ms() + uint64_t{*confirm_timeout_s} * 1000};
  }
  const uint64_t before = active_revision_;
  if (absl::Status status = activate(revision, next_pending, {}, /*notify=*/true); !status.ok()) {
    return status;
  }
  ++stats_.commits;
  HLOG_INFO("config.committed")
      .kv("revision", revision)
      .kv("previous", before)
      .kv("confirm_timeout_s", confirm_timeout_s.value_or(0));
  CommitOutcome outcome;
  outcome.active = revision;
  outcome.restart_required = config::restart_required_changes(running(), active());
  if (next_pending) outcome.confirm_deadline_unix_ms = next_pending->deadline_unix_ms;
  return outcome;
}

absl::Status Revisions::confirm(uint64_t revision) {
  if (!infos_.contains(revision)) {
    return absl::NotFoundError(absl::StrCat("no config revision ", revision));
  }
  if (!pending_ || pending_->revision != revision) {
    return absl::FailedPreconditionError(
        absl::StrCat("config revision ", revision, " is not waiting for a confirm"));
  }
  if (absl::Status status = tables_.erase(kTable, kPendingKey); !status.ok()) {
    return store_error(status);
  }
  pending_.reset();
  ++stats_.confirms;
  HLOG_INFO("config.confirmed").kv("revision", revision);
  return absl::OkStatus();
}

void Revisions::tick(uint64_t now_ms) {
  if (!pending_ || now_ms < pending_->deadline_unix_ms) return;
  const PendingConfirm expired = *pending_;
  if (absl::Status status = activate(expired.previous_revision, std::nullopt, {}, true);
      !status.ok()) {
    // Retried at the next tick; the store is failing (or under backpressure).
    HLOG_RATE_LIMITED(kError, "config.revert_failed", 1)
        .kv("revision", expired.revision)
        .kv("error", std::string(status.message()));
    return;
  }
  ++stats_.reverts;
  HLOG_WARN("config.confirm_expired")
      .kv("revision", expired.revision)
      .kv("reverted_to", expired.previous_revision);
}

std::vector<RevisionInfo> Revisions::list(uint64_t before, size_t limit) const {
  std::vector<RevisionInfo> out;
  auto it = before == 0 ? infos_.end() : infos_.lower_bound(before);
  while (it != infos_.begin() && out.size() < limit) {
    --it;
    out.push_back(it->second);
  }
  return out;
}

std::optional<RevisionInfo> Revisions::info(uint64_t revision) const {
  auto it = infos_.find(revision);
  if (it == infos_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<config::Config> Revisions::config(uint64_t revision) const {
  const std::string* value = tables_.find(kTable, revision_key(revision));
  if (value == nullptr) return absl::NotFoundError(absl::StrCat("no config revision ", revision));
  const std::vector<uint8_t> bytes = aligned_copy(*value);
  const auto* record = verified_root<config_api::RevisionRecord>(bytes);
  if (record == nullptr || record->config() == nullptr ||
      crc32c::value(record->config()->data(), record->config()->size()) != record->crc32c()) {
    return absl::DataLossError(absl::StrCat("config revision ", revision, " does not verify"));
  }
  // Re-normalised with today's schema: fields added since the revision was stored get their
  // defaults.
  return config::config_from_buffer(
      {record->config()->data(), static_cast<size_t>(record->config()->size())});
}

}  // namespace herald::config_revisions

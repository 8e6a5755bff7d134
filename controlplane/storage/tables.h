// The control plane's small durable tables (accounts, devices, registration codes, groups and
// members, API keys, config revisions): ordered key -> value maps, changed in memory at once and
// made durable by the catalog's log (catalog.h). A barrier says when everything changed so far
// is durable; a response that read or wrote the tables goes out only after one (DESIGN.md's
// durability rule: nothing acknowledged is ever lost).
//
//   Mutation batch[] = {Mutation::put(TableId::kAccounts, key, value),
//                       Mutation::erase(TableId::kCodes, phone)};
//   if (absl::Status s = tables.apply(batch); !s.ok()) return answer_503(s);
//   tables.barrier([responder](const absl::Status& s) { s.ok() ? respond_200() : respond_503(); });
//
// Why a barrier and not a callback per write: a request may read state another request wrote
// and which is not durable yet (an account created a moment ago). Answering after a barrier
// taken at the end of the request covers every write it could have seen, since the log makes
// records durable in order. Group commit makes the barrier cheap.
//
// Single-threaded: every call and callback on the control plane's event loop thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"

namespace herald::storage {

// Table numbers are part of the on-disk format: append only, never renumber or reuse.
enum class TableId : uint8_t {
  kAccounts = 1,          // registration (controlplane/registration/catalog_store.h)
  kDevices = 2,           // registration
  kCodes = 3,             // registration: pending verification codes
  kGroups = 4,            // groups and their members (controlplane/api/groups)
  kGroupMembers = 5,      //
  kApiKeys = 6,           // admin API keys (hashed)
  kConfigRevisions = 7,   // config revisions and the active revision
  kNodeMeta = 8,          // node-wide singletons: secrets, key ring state
  kPhoneIndex = 9,        // registration: phone -> account id
  kCredentialIndex = 10,  // registration: credential hash -> device
  kPushTokens = 11,       // push: (account, device) -> push token (controlplane/push)
};
// One past the largest TableId: arrays indexed by table.
inline constexpr size_t kTableSlots = 12;
bool is_valid_table(uint8_t table);
std::string_view table_name(TableId table);

// Largest key and value the catalog takes (a batch is one log record, at most the log's
// max_payload_bytes in total).
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr size_t kMaxValueBytes = 60 * 1024;

struct Mutation {
  TableId table = TableId::kAccounts;
  std::string key;
  std::optional<std::string> value;  // nullopt: erase the key

  static Mutation put(TableId table, std::string_view key, std::string_view value) {
    return Mutation{table, std::string(key), std::string(value)};
  }
  static Mutation erase(TableId table, std::string_view key) {
    return Mutation{table, std::string(key), std::nullopt};
  }
};

using BarrierCallback = std::function<void(const absl::Status& status)>;
// Return false to stop a scan.
using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;

class Tables {
 public:
  virtual ~Tables() = default;

  // Applies `batch` in order and all or nothing: in memory at once (later reads see it), on
  // disk as one log record (a crash keeps all of it or none). Nothing is applied on error:
  // FailedPrecondition once the store has failed (fail-stop), InvalidArgument for a bad table
  // or an oversize key, value or batch, ResourceExhausted under backpressure (retry later; the
  // API answers 503).
  virtual absl::Status apply(std::span<const Mutation> batch) = 0;
  absl::Status put(TableId table, std::string_view key, std::string_view value);
  absl::Status erase(TableId table, std::string_view key);

  // The value under `key`, or nullptr. Valid until the next apply().
  virtual const std::string* find(TableId table, std::string_view key) const = 0;
  // Keys >= `from` in byte order, while `fn` returns true. `fn` must not apply().
  virtual void scan(TableId table, std::string_view from, const ScanFn& fn) const = 0;
  virtual size_t size(TableId table) const = 0;

  // Runs `done` (never inside this call) once every batch applied before this call is durable,
  // with OK, or with the error that failed the store (then nothing after the last durable
  // record may be relied on: answer 503).
  virtual void barrier(BarrierCallback done) = 0;
  // OK until the store fails; then the first error, for good.
  virtual const absl::Status& status() const = 0;
};

// Checks a batch against the limits above (shared by every implementation).
absl::Status validate_batch(std::span<const Mutation> batch);

// The in-memory map every implementation keeps: one ordered map per table.
class TableMaps {
 public:
  void apply(std::span<const Mutation> batch);
  const std::string* find(TableId table, std::string_view key) const;
  void scan(TableId table, std::string_view from, const ScanFn& fn) const;
  size_t size(TableId table) const { return maps_[static_cast<size_t>(table)].size(); }
  // Every table, in (table, key) order: what a snapshot writes.
  void for_each(const std::function<void(TableId, std::string_view, std::string_view)>& fn) const;
  void clear();

 private:
  absl::btree_map<std::string, std::string, std::less<>> maps_[kTableSlots];
};

// Tables without a disk: unit tests of the services above the catalog, and nothing else (the
// node always runs on the durable catalog). `defer` runs a barrier's callback later, outside
// the call (tests pass a queue they drain).
class MemoryTables final : public Tables {
 public:
  using Defer = std::function<void(std::function<void()>)>;
  explicit MemoryTables(Defer defer) : defer_(std::move(defer)) {}

  absl::Status apply(std::span<const Mutation> batch) override;
  const std::string* find(TableId table, std::string_view key) const override {
    return maps_.find(table, key);
  }
  void scan(TableId table, std::string_view from, const ScanFn& fn) const override {
    maps_.scan(table, from, fn);
  }
  size_t size(TableId table) const override { return maps_.size(table); }
  void barrier(BarrierCallback done) override;
  const absl::Status& status() const override { return status_; }

  // Test hook: from now on every apply fails and every barrier reports `status`.
  void fail_for_test(absl::Status status) { status_ = std::move(status); }

 private:
  Defer defer_;
  TableMaps maps_;
  absl::Status status_;
};

}  // namespace herald::storage

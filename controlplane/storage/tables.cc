// The table maps shared by the durable catalog and the in-memory tables used in unit tests.
#include "controlplane/storage/tables.h"

#include <string>

namespace herald::storage {

bool is_valid_table(uint8_t table) {
  return table >= 1 && table < kTableSlots;
}

std::string_view table_name(TableId table) {
  switch (table) {
    case TableId::kAccounts: return "accounts";
    case TableId::kDevices: return "devices";
    case TableId::kCodes: return "codes";
    case TableId::kGroups: return "groups";
    case TableId::kGroupMembers: return "group_members";
    case TableId::kApiKeys: return "api_keys";
    case TableId::kConfigRevisions: return "config_revisions";
    case TableId::kNodeMeta: return "node_meta";
    case TableId::kPhoneIndex: return "phone_index";
    case TableId::kCredentialIndex: return "credential_index";
    case TableId::kPushTokens: return "push_tokens";
  }
  return "unknown";
}

absl::Status Tables::put(TableId table, std::string_view key, std::string_view value) {
  const Mutation m = Mutation::put(table, key, value);
  return apply(std::span(&m, 1));
}

absl::Status Tables::erase(TableId table, std::string_view key) {
  const Mutation m = Mutation::erase(table, key);
  return apply(std::span(&m, 1));
}

absl::Status validate_batch(std::span<const Mutation> batch) {
  if (batch.empty()) return absl::InvalidArgumentError("tables: empty batch");
  size_t total = 0;
  for (const Mutation& m : batch) {
    if (!is_valid_table(static_cast<uint8_t>(m.table))) {
      return absl::InvalidArgumentError("tables: unknown table");
    }
    if (m.key.size() > kMaxKeyBytes) return absl::InvalidArgumentError("tables: key too large");
    if (m.value && m.value->size() > kMaxValueBytes) {
      return absl::InvalidArgumentError("tables: value too large");
    }
    total += m.key.size() + (m.value ? m.value->size() : 0);
  }
  if (total > kMaxValueBytes) return absl::InvalidArgumentError("tables: batch too large");
  return absl::OkStatus();
}

void TableMaps::apply(std::span<const Mutation> batch) {
  for (const Mutation& m : batch) {
    auto& map = maps_[static_cast<size_t>(m.table)];
    if (m.value) {
      map.insert_or_assign(m.key, *m.value);
    } else if (auto it = map.find(m.key); it != map.end()) {
      map.erase(it);
    }
  }
}

const std::string* TableMaps::find(TableId table, std::string_view key) const {
  const auto& map = maps_[static_cast<size_t>(table)];
  auto it = map.find(key);
  return it == map.end() ? nullptr : &it->second;
}

void TableMaps::scan(TableId table, std::string_view from, const ScanFn& fn) const {
  const auto& map = maps_[static_cast<size_t>(table)];
  for (auto it = map.lower_bound(from); it != map.end(); ++it) {
    if (!fn(it->first, it->second)) return;
  }
}

void TableMaps::for_each(
    const std::function<void(TableId, std::string_view, std::string_view)>& fn) const {
  for (size_t t = 1; t < kTableSlots; ++t) {
    for (const auto& [key, value] : maps_[t]) fn(static_cast<TableId>(t), key, value);
  }
}

void TableMaps::clear() {
  for (auto& map : maps_) map.clear();
}

absl::Status MemoryTables::apply(std::span<const Mutation> batch) {
  if (!status_.ok()) return absl::FailedPreconditionError(status_.message());
  if (absl::Status s = validate_batch(batch); !s.ok()) return s;
  maps_.apply(batch);
  return absl::OkStatus();
}

void MemoryTables::barrier(BarrierCallback done) {
  defer_([done = std::move(done), status = status_] { done(status); });
}

}  // namespace herald::storage

// Groups of accounts for the admin API: the kGroups and kGroupMembers tables, the size limit
// from the config (limits.max_group_members), and the /v1/groups routes. Every membership change
// is reported, once durable, to a hook the lead wires to the dataplane's GroupMembershipPush.
//
//   GroupsOptions options;
//   options.max_group_members = config.limits().max_group_members();
//   options.account_exists = [&](const registration::AccountId& id) { return store.has(id); };
//   options.on_membership_change = [&](uint64_t group, const auto& members) { push(...); };
//   Groups groups(tables, std::move(options));
//   groups.sweep_orphans();  // start-up
//   groups.add_routes(router);
//
// Group ids are 64 random bits, shown as 16 lower-case hex digits. Random rather than
// sequential: no counter has to be kept durable beside the groups, and an id says nothing about
// how many groups exist or which are next (the admin API is privileged, but ids end up in logs
// and tickets). A collision is checked and retried.
//
// Members are accounts, not devices: a message to a group goes to every device of each member
// account, and devices come and go without touching the group.
// Single-threaded: the control plane's loop. A Groups must outlive the barriers its handlers
// took (their callbacks run the hook through it): destroy it after the store has drained.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/api/json_codec.h"
#include "controlplane/api/router.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/storage/tables.h"

namespace herald::api {

inline constexpr size_t kMaxGroupNameBytes = 64;
// Accounts one request may add (create or POST .../members): a change is one batch, and a batch
// is one log record of at most storage::kMaxValueBytes (32 bytes a member: key and value).
inline constexpr size_t kMaxAccountsPerRequest = 1024;
// Member keys erased per batch when a group is deleted (the first batch also erases the group).
inline constexpr size_t kGroupDeleteChunk = 1024;
// Page size of GET /v1/groups: default and largest.
inline constexpr size_t kDefaultGroupsPage = 100;
inline constexpr size_t kMaxGroupsPage = 1000;

using MembershipHook =
    std::function<void(uint64_t group_id, const std::vector<registration::AccountId>& members)>;

struct GroupsOptions {
  uint32_t max_group_members = 1024;  // config limits.max_group_members
  // Whether an account exists (the registration store). Required.
  std::function<bool(const registration::AccountId&)> account_exists;
  // Called after a change is durable, with the group's members at that moment (empty once the
  // group is deleted). May be empty.
  MembershipHook on_membership_change;
  std::function<uint64_t()> now_unix_ms;  // empty: the system clock
};

struct GroupsStats {
  uint64_t created = 0;
  uint64_t deleted = 0;
  uint64_t members_added = 0;
  uint64_t members_removed = 0;
  uint64_t refused_full = 0;
  uint64_t bad_requests = 0;
  uint64_t store_errors = 0;
  uint64_t orphans_swept = 0;
  uint64_t pages_listed = 0;
  uint64_t corrupt_records_skipped = 0;  // kGroups records a listing could not decode
};

struct GroupRecord {
  uint64_t id = 0;
  std::string name;
  std::optional<registration::AccountId> owner;
  uint64_t created_unix_ms = 0;
  uint32_t member_count = 0;
};

class Groups {
 public:
  Groups(storage::Tables& tables, GroupsOptions options);

  // POST /v1/groups, POST /v1/groups/{id}/members, DELETE /v1/groups/{id}/members/{account},
  // DELETE /v1/groups/{id} (admin); GET /v1/groups/{id} and GET /v1/groups[?limit=&after=]
  // (read; a page of GroupList in id order, `next` while more remain).
  void add_routes(Router& router);

  std::optional<GroupRecord> find(uint64_t group_id) const;
  std::vector<registration::AccountId> members(uint64_t group_id) const;
  bool is_member(uint64_t group_id, const registration::AccountId& account) const;

  // Start-up: erases member keys whose group is gone (a delete interrupted between its batches
  // by a crash). Returns how many; the store's error if a batch fails.
  absl::StatusOr<size_t> sweep_orphans();

  // A committed config revision: creates and adds from now on are checked against it. A group
  // already larger keeps its members (nothing is removed) and takes no new ones.
  void set_max_group_members(uint32_t max_group_members) {
    if (max_group_members >= 1) options_.max_group_members = max_group_members;
  }
  uint32_t max_group_members() const { return options_.max_group_members; }

  const GroupsStats& stats() const { return stats_; }

 private:
  void handle_create(Call& call);
  void handle_get(Call& call);
  void handle_list(Call& call);
  void handle_add(Call& call);
  void handle_remove(Call& call);
  void handle_delete(Call& call);
  // Answers after a barrier; on success runs the membership hook for `group_id`.
  void finish(http::Responder responder, uint64_t group_id, int status, std::string body);
  std::optional<uint64_t> group_param(Call& call);
  // Parses and checks account ids (syntax, duplicates, existence); answers 400 and returns
  // nullopt on the first bad one.
  std::optional<std::vector<registration::AccountId>> parse_accounts(
      Call& call, const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* list,
      std::string_view field);
  std::string changed_json(uint64_t group_id, uint32_t member_count, uint32_t changed);
  void bad_request(Call& call, std::string_view error, std::string_view message,
                   std::string_view field = {});

  storage::Tables& tables_;
  GroupsOptions options_;
  JsonCodec codec_;
  GroupsStats stats_;
};

std::string format_group_id(uint64_t id);
std::optional<uint64_t> parse_group_id(std::string_view text);

// Stored forms, exposed for tests.
std::string group_key(uint64_t group_id);
std::string member_key(uint64_t group_id, const registration::AccountId& account);
std::string encode_group_record(const GroupRecord& record);
std::optional<GroupRecord> decode_group_record(std::string_view key, std::string_view value);

}  // namespace herald::api

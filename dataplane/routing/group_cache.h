// Group member lists for fan-out, from the control plane's GroupMembershipPush records (every
// worker receives every push and keeps its own copy: nothing shared between workers). Member
// lookup for ToGroup fan-out and the sender-is-member check.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "schemas/ipc_generated.h"
#include "schemas/wire_generated.h"

namespace herald::dataplane::routing {

struct GroupCacheOptions {
  // config limits.max_group_members: a push with more members is refused (and counted).
  uint32_t max_group_members = 1024;
  // Groups held at most. Every group must be cached (the control plane pushes them all at each
  // connect): a push for a new group past this is refused and counted, never evicting another.
  uint32_t max_groups = 1'000'000;
};

enum class GroupPushResult : uint8_t {
  kApplied,    // the group is cached at the push's version
  kDeleted,    // the group was dropped
  kStale,      // not newer than the cached version: ignored
  kTooLarge,   // more members than max_group_members: refused, the cache is unchanged
  kFull,       // a new group past max_groups: refused
  kMalformed,  // no group id
};

struct GroupCacheStats {
  uint64_t applied = 0;
  uint64_t deleted = 0;
  uint64_t deleted_unknown = 0;  // a delete for a group not cached (nothing to do)
  uint64_t stale = 0;
  uint64_t too_large = 0;
  uint64_t full = 0;
  uint64_t malformed = 0;
  uint64_t duplicate_members = 0;  // members listed twice in a push (kept once)
};

// One per worker, on its thread. Pushes arrive on the control path and may allocate; lookups
// (the per-message path) do not.
class GroupCache {
 public:
  explicit GroupCache(const GroupCacheOptions& options) : options_(options) {}

  GroupPushResult apply(const ipc::GroupMembershipPush& push);

  bool contains(const wire::GroupId& group) const { return find(group) != nullptr; }
  // The members in ascending (hi, lo) order; empty for a group not cached. Valid until the
  // next apply().
  std::span<const wire::AccountId> members(const wire::GroupId& group) const;
  bool is_member(const wire::GroupId& group, const wire::AccountId& account) const;
  // 0 for a group not cached.
  uint64_t version(const wire::GroupId& group) const;

  size_t groups() const { return groups_.size(); }
  // A config change (hot): applies to later pushes; cached groups stay as they are.
  void set_max_group_members(uint32_t n) { options_.max_group_members = n; }
  const GroupCacheStats& stats() const { return stats_; }

 private:
  struct Key {
    uint64_t hi = 0, lo = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Group {
    uint64_t version = 0;
    std::vector<wire::AccountId> members;  // sorted, unique
  };
  const Group* find(const wire::GroupId& group) const;

  GroupCacheOptions options_;
  std::unordered_map<Key, Group, KeyHash> groups_;
  GroupCacheStats stats_;
};

}  // namespace herald::dataplane::routing

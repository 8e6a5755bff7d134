// Group member lists for fan-out (see group_cache.h).
#include "dataplane/routing/group_cache.h"

#include <algorithm>

#include "dataplane/routing/slot_index.h"

namespace herald::dataplane::routing {
namespace {

bool account_less(const wire::AccountId& a, const wire::AccountId& b) {
  return a.hi() != b.hi() ? a.hi() < b.hi() : a.lo() < b.lo();
}

bool account_equal(const wire::AccountId& a, const wire::AccountId& b) {
  return a.hi() == b.hi() && a.lo() == b.lo();
}

}  // namespace

size_t GroupCache::KeyHash::operator()(const Key& k) const {
  return hash_mix(k.hi ^ hash_mix(k.lo));
}

const GroupCache::Group* GroupCache::find(const wire::GroupId& group) const {
  auto it = groups_.find(Key{group.hi(), group.lo()});
  return it == groups_.end() ? nullptr : &it->second;
}

GroupPushResult GroupCache::apply(const ipc::GroupMembershipPush& push) {
  if (push.group() == nullptr) {
    ++stats_.malformed;
    return GroupPushResult::kMalformed;
  }
  const Key key{push.group()->hi(), push.group()->lo()};
  auto it = groups_.find(key);
  // Ordering: a push not newer than what is cached (a duplicate, or one that crossed a newer
  // one) is ignored, deletes included.
  if (it != groups_.end() && push.version() <= it->second.version) {
    ++stats_.stale;
    return GroupPushResult::kStale;
  }
  if (push.deleted()) {
    if (it == groups_.end()) {
      ++stats_.deleted_unknown;
    } else {
      groups_.erase(it);
      ++stats_.deleted;
    }
    return GroupPushResult::kDeleted;
  }
  const auto* list = push.members();
  const size_t count = list == nullptr ? 0 : list->size();
  if (count > options_.max_group_members) {
    // The older list stays: it is the last one inside the limit, and the counter tells the
    // operator that the control plane holds a group larger than the dataplane takes.
    ++stats_.too_large;
    return GroupPushResult::kTooLarge;
  }
  if (it == groups_.end() && groups_.size() >= options_.max_groups) {
    ++stats_.full;
    return GroupPushResult::kFull;
  }
  std::vector<wire::AccountId> members;
  members.reserve(count);
  if (list != nullptr) {
    for (const wire::AccountId* m : *list) members.push_back(*m);
  }
  std::sort(members.begin(), members.end(), account_less);
  const auto end = std::unique(members.begin(), members.end(), account_equal);
  stats_.duplicate_members += static_cast<uint64_t>(members.end() - end);
  members.erase(end, members.end());
  Group& g = groups_[key];
  g.version = push.version();
  g.members = std::move(members);
  ++stats_.applied;
  return GroupPushResult::kApplied;
}

std::span<const wire::AccountId> GroupCache::members(const wire::GroupId& group) const {
  const Group* g = find(group);
  if (g == nullptr) return {};
  return g->members;
}

bool GroupCache::is_member(const wire::GroupId& group, const wire::AccountId& account) const {
  const Group* g = find(group);
  if (g == nullptr) return false;
  return std::binary_search(g->members.begin(), g->members.end(), account, account_less);
}

uint64_t GroupCache::version(const wire::GroupId& group) const {
  const Group* g = find(group);
  return g == nullptr ? 0 : g->version;
}

}  // namespace herald::dataplane::routing

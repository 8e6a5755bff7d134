// Groups and their members over the control plane's tables, and the /v1/groups routes
// (groups.h).
#include "controlplane/api/groups.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "controlplane/api/page_scan.h"
#include "controlplane/registration/auth_names.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"

namespace herald::api {
namespace {

using registration::AccountId;
using storage::Mutation;
using storage::TableId;

// kGroups value: a format byte, created (8), member count (4), owner hi and lo (8 + 8; both 0:
// none), little-endian, then the name.
constexpr uint8_t kGroupFormat = 1;
constexpr size_t kGroupFixedBytes = 1 + 8 + 4 + 8 + 8;
constexpr size_t kGroupKeyBytes = 8;
constexpr size_t kMemberKeyBytes = kGroupKeyBytes + 16;
constexpr size_t kMemberValueBytes = 8;  // added_unix_ms
static_assert(kMaxAccountsPerRequest * (kMemberKeyBytes + kMemberValueBytes) + kGroupKeyBytes +
                      kGroupFixedBytes + kMaxGroupNameBytes <=
                  storage::kMaxValueBytes,
              "a full request must fit one batch");
static_assert(kGroupDeleteChunk * kMemberKeyBytes + kGroupKeyBytes <= storage::kMaxValueBytes,
              "a delete chunk must fit one batch");

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | static_cast<uint8_t>(in[at + static_cast<size_t>(i)]);
  return v;
}
// Keys are big-endian so the table's byte order is the ids' numeric order, and a group's members
// are one contiguous range.
void put_be(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_be(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}

AccountId member_of_key(std::string_view key) {
  return AccountId{get_be(key, kGroupKeyBytes), get_be(key, kGroupKeyBytes + 8)};
}

uint64_t system_now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

bool valid_name_chars(std::string_view name) {
  return std::none_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

}  // namespace

std::string format_group_id(uint64_t id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) out[static_cast<size_t>(i)] = kHex[id & 0xf];
  return out;
}

std::optional<uint64_t> parse_group_id(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  if (v == 0) return std::nullopt;  // never minted
  return v;
}

std::string group_key(uint64_t group_id) {
  std::string key;
  key.reserve(kGroupKeyBytes);
  put_be(key, group_id);
  return key;
}

std::string member_key(uint64_t group_id, const AccountId& account) {
  std::string key;
  key.reserve(kMemberKeyBytes);
  put_be(key, group_id);
  put_be(key, account.hi);
  put_be(key, account.lo);
  return key;
}

std::string encode_group_record(const GroupRecord& r) {
  std::string out;
  out.reserve(kGroupFixedBytes + r.name.size());
  out.push_back(static_cast<char>(kGroupFormat));
  put_le(out, r.created_unix_ms, 8);
  put_le(out, r.member_count, 4);
  put_le(out, r.owner ? r.owner->hi : 0, 8);
  put_le(out, r.owner ? r.owner->lo : 0, 8);
  out.append(r.name);
  return out;
}

std::optional<GroupRecord> decode_group_record(std::string_view key, std::string_view value) {
  if (key.size() != kGroupKeyBytes || value.size() < kGroupFixedBytes ||
      static_cast<uint8_t>(value[0]) != kGroupFormat) {
    return std::nullopt;
  }
  GroupRecord r;
  r.id = get_be(key, 0);
  r.created_unix_ms = get_le(value, 1, 8);
  r.member_count = static_cast<uint32_t>(get_le(value, 9, 4));
  const AccountId owner{get_le(value, 13, 8), get_le(value, 21, 8)};
  if (owner.hi != 0 || owner.lo != 0) r.owner = owner;
  r.name = std::string(value.substr(kGroupFixedBytes));
  return r;
}

Groups::Groups(storage::Tables& tables, GroupsOptions options)
    : tables_(tables), options_(std::move(options)), codec_(schemas::kAdminFbs, "admin.fbs") {
  HERALD_CHECK(options_.account_exists != nullptr, "groups need the account lookup");
  HERALD_CHECK(options_.max_group_members >= 1, "max_group_members must be positive");
  if (!options_.now_unix_ms) options_.now_unix_ms = system_now_ms;
}

void Groups::add_routes(Router& router) {
  router.add(http::Method::kPost, "/v1/groups", Scope::kAdmin,
             [this](Call& call) { handle_create(call); });
  router.add(http::Method::kGet, "/v1/groups", Scope::kRead,
             [this](Call& call) { handle_list(call); });
  router.add(http::Method::kGet, "/v1/groups/{id}", Scope::kRead,
             [this](Call& call) { handle_get(call); });
  router.add(http::Method::kDelete, "/v1/groups/{id}", Scope::kAdmin,
             [this](Call& call) { handle_delete(call); });
  router.add(http::Method::kPost, "/v1/groups/{id}/members", Scope::kAdmin,
             [this](Call& call) { handle_add(call); });
  router.add(http::Method::kDelete, "/v1/groups/{id}/members/{account}", Scope::kAdmin,
             [this](Call& call) { handle_remove(call); });
}

std::optional<GroupRecord> Groups::find(uint64_t group_id) const {
  const std::string key = group_key(group_id);
  const std::string* value = tables_.find(TableId::kGroups, key);
  if (value == nullptr) return std::nullopt;
  return decode_group_record(key, *value);
}

std::vector<AccountId> Groups::members(uint64_t group_id) const {
  std::vector<AccountId> out;
  const std::string prefix = group_key(group_id);
  tables_.scan(TableId::kGroupMembers, prefix, [&](std::string_view key, std::string_view) {
    if (key.size() != kMemberKeyBytes || key.substr(0, kGroupKeyBytes) != prefix) return false;
    out.push_back(member_of_key(key));
    return true;
  });
  return out;
}

bool Groups::is_member(uint64_t group_id, const AccountId& account) const {
  return tables_.find(TableId::kGroupMembers, member_key(group_id, account)) != nullptr;
}

absl::StatusOr<size_t> Groups::sweep_orphans() {
  std::vector<std::string> orphans;
  tables_.scan(TableId::kGroupMembers, "", [&](std::string_view key, std::string_view) {
    if (key.size() < kGroupKeyBytes ||
        tables_.find(TableId::kGroups, key.substr(0, kGroupKeyBytes)) == nullptr) {
      orphans.emplace_back(key);
    }
    return true;
  });
  for (size_t at = 0; at < orphans.size(); at += kGroupDeleteChunk) {
    std::vector<Mutation> batch;
    for (size_t i = at; i < std::min(orphans.size(), at + kGroupDeleteChunk); ++i) {
      batch.push_back(Mutation::erase(TableId::kGroupMembers, orphans[i]));
    }
    if (absl::Status s = tables_.apply(batch); !s.ok()) return s;
  }
  stats_.orphans_swept += orphans.size();
  if (!orphans.empty()) {
    HLOG_WARN("groups.orphans_swept").kv("members", orphans.size());
  }
  return orphans.size();
}

void Groups::bad_request(Call& call, std::string_view error, std::string_view message,
                         std::string_view field) {
  ++stats_.bad_requests;
  call.respond_error(400, error, message, field);
}

std::optional<uint64_t> Groups::group_param(Call& call) {
  std::optional<uint64_t> id = parse_group_id(call.param(0));
  if (!id) {
    bad_request(call, "bad_group_id", "a group id is 16 lower-case hex digits", "id");
    return std::nullopt;
  }
  if (tables_.find(TableId::kGroups, group_key(*id)) == nullptr) {
    call.respond_error(404, "not_found", "no group with this id");
    return std::nullopt;
  }
  return id;
}

std::optional<std::vector<AccountId>> Groups::parse_accounts(
    Call& call, const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* list,
    std::string_view field) {
  std::vector<AccountId> out;
  if (list == nullptr) return out;
  if (list->size() > kMaxAccountsPerRequest) {
    bad_request(call, "too_many_accounts",
                "at most " + std::to_string(kMaxAccountsPerRequest) +
                    " accounts per request; add the rest in further requests",
                field);
    return std::nullopt;
  }
  out.reserve(list->size());
  for (flatbuffers::uoffset_t i = 0; i < list->size(); ++i) {
    const std::string where = std::string(field) + "[" + std::to_string(i) + "]";
    std::optional<AccountId> id = registration::parse_account_id(list->Get(i)->string_view());
    if (!id) {
      bad_request(call, "bad_account_id", "an account id is a lower-case UUID", where);
      return std::nullopt;
    }
    if (std::find(out.begin(), out.end(), *id) != out.end()) {
      bad_request(call, "duplicate_member", "an account is listed twice", where);
      return std::nullopt;
    }
    if (!options_.account_exists(*id)) {
      bad_request(call, "unknown_account", "no such account", where);
      return std::nullopt;
    }
    out.push_back(*id);
  }
  return out;
}

std::string Groups::changed_json(uint64_t group_id, uint32_t member_count, uint32_t changed) {
  flatbuffers::FlatBufferBuilder b;
  auto id = b.CreateString(format_group_id(group_id));
  b.Finish(admin::CreateGroupChanged(b, id, member_count, changed));
  return codec_.to_json("herald.admin.GroupChanged", b);
}

void Groups::finish(http::Responder responder, uint64_t group_id, int status, std::string body) {
  tables_.barrier([this, responder, group_id, status,
                   body = std::move(body)](const absl::Status& s) mutable {
    if (!s.ok()) {
      ++stats_.store_errors;
      respond_error(responder, 503, "store_unavailable", "the store could not make this durable");
      return;
    }
    respond_json(responder, status, body);
    // The members as they are now, durable (later changes run the hook again).
    if (options_.on_membership_change) {
      options_.on_membership_change(group_id, members(group_id));
    }
  });
}

void Groups::handle_create(Call& call) {
  absl::StatusOr<const admin::GroupCreateRequest*> req =
      codec_.parse<admin::GroupCreateRequest>("herald.admin.GroupCreateRequest", call.body);
  if (!req.ok()) {
    bad_request(call, "bad_json", std::string(req.status().message()));
    return;
  }
  const admin::GroupCreateRequest& r = **req;
  if (r.name() == nullptr) return bad_request(call, "missing_field", "name is required", "name");
  const std::string_view name = r.name()->string_view();
  if (name.empty()) return bad_request(call, "empty_name", "name is empty", "name");
  if (name.size() > kMaxGroupNameBytes) {
    return bad_request(call, "name_too_long", "name is longer than 64 bytes", "name");
  }
  if (!valid_name_chars(name)) {
    return bad_request(call, "bad_name", "name holds a control character", "name");
  }
  std::optional<AccountId> owner;
  if (r.owner() != nullptr && r.owner()->size() > 0) {
    owner = registration::parse_account_id(r.owner()->string_view());
    if (!owner)
      return bad_request(call, "bad_account_id", "an account id is a lower-case UUID", "owner");
    if (!options_.account_exists(*owner)) {
      return bad_request(call, "unknown_account", "no such account", "owner");
    }
  }
  std::optional<std::vector<AccountId>> members = parse_accounts(call, r.members(), "members");
  if (!members) return;
  if (members->size() > options_.max_group_members) {
    ++stats_.refused_full;
    call.respond_error(409, "group_full",
                       "a group has at most " + std::to_string(options_.max_group_members) +
                           " members (limits.max_group_members)",
                       "members");
    return;
  }

  uint64_t id = 0;
  const auto has_members = [&](uint64_t candidate) {
    bool any = false;
    const std::string prefix = group_key(candidate);
    tables_.scan(TableId::kGroupMembers, prefix, [&](std::string_view key, std::string_view) {
      any = key.substr(0, kGroupKeyBytes) == prefix;
      return false;
    });
    return any;
  };
  // 0 is never an id; a collision with a group, or with members a crash left behind, is retried.
  do {
    id = registration::random_u64();
  } while (id == 0 || tables_.find(TableId::kGroups, group_key(id)) != nullptr || has_members(id));

  const uint64_t now_ms = options_.now_unix_ms();
  GroupRecord record{id, std::string(name), owner, now_ms, static_cast<uint32_t>(members->size())};
  std::vector<Mutation> batch;
  batch.reserve(members->size() + 1);
  batch.push_back(Mutation::put(TableId::kGroups, group_key(id), encode_group_record(record)));
  std::string added;
  put_le(added, now_ms, 8);
  for (const AccountId& m : *members) {
    batch.push_back(Mutation::put(TableId::kGroupMembers, member_key(id, m), added));
  }
  if (absl::Status s = tables_.apply(batch); !s.ok()) {
    ++stats_.store_errors;
    call.respond_error(503, "store_unavailable", std::string(s.message()));
    return;
  }
  ++stats_.created;
  stats_.members_added += members->size();
  HLOG_INFO("groups.created").kv("group", format_group_id(id)).kv("members", members->size());
  finish(call.responder, id, 201,
         changed_json(id, record.member_count, static_cast<uint32_t>(members->size())));
}

void Groups::handle_get(Call& call) {
  std::optional<uint64_t> id = group_param(call);
  if (!id) return;
  const std::optional<GroupRecord> record = find(*id);
  if (!record) {
    ++stats_.store_errors;  // a record we wrote does not decode: the store is damaged
    call.respond_error(500, "corrupt_record", "the group's record does not decode");
    return;
  }
  flatbuffers::FlatBufferBuilder b;
  std::vector<std::string> texts;
  for (const AccountId& m : members(*id)) texts.push_back(registration::format_account_id(m));
  auto group_id = b.CreateString(format_group_id(*id));
  auto name = b.CreateString(record->name);
  auto owner = b.CreateString(record->owner ? registration::format_account_id(*record->owner) : "");
  auto list = b.CreateVectorOfStrings(texts);
  b.Finish(admin::CreateGroupInfo(b, group_id, name, owner, record->created_unix_ms,
                                  record->member_count, list));
  std::string body = codec_.to_json("herald.admin.GroupInfo", b);
  // A read answers after a barrier too: what it shows may not be durable yet.
  tables_.barrier([responder = call.responder,
                   body = std::move(body)](const absl::Status& s) mutable {
    if (!s.ok()) {
      respond_error(responder, 503, "store_unavailable", "the store could not make this durable");
      return;
    }
    respond_json(responder, 200, body);
  });
}

void Groups::handle_list(Call& call) {
  const std::optional<PageQuery> page = page_query(call, kDefaultGroupsPage, kMaxGroupsPage);
  if (!page) {
    ++stats_.bad_requests;
    return;
  }
  std::string from;
  if (page->after) {
    const std::optional<uint64_t> after = parse_group_id(*page->after);
    if (!after) {
      return bad_request(call, "invalid_cursor",
                         "after must be a group id (the next cursor of a page)", "after");
    }
    from = group_key(*after);
  }
  auto [records, more, corrupt] = scan_page<GroupRecord>(
      tables_, TableId::kGroups, from, page->limit,
      [](std::string_view key, std::string_view value) { return decode_group_record(key, value); });
  if (corrupt != 0) {
    stats_.corrupt_records_skipped += corrupt;
    HLOG_WARN("groups.list_skipped_corrupt").kv("records", corrupt);
  }

  flatbuffers::FlatBufferBuilder b(256 + records.size() * 160);
  std::vector<flatbuffers::Offset<admin::GroupSummary>> items;
  items.reserve(records.size());
  for (const GroupRecord& r : records) {
    auto group_id = b.CreateString(format_group_id(r.id));
    auto name = b.CreateString(r.name);
    auto owner = b.CreateString(r.owner ? registration::format_account_id(*r.owner) : "");
    items.push_back(
        admin::CreateGroupSummary(b, group_id, name, owner, r.created_unix_ms, r.member_count));
  }
  const auto vector = b.CreateVector(items);
  flatbuffers::Offset<flatbuffers::String> next;
  if (more && !records.empty()) next = b.CreateString(format_group_id(records.back().id));
  b.Finish(admin::CreateGroupList(b, vector, next));
  ++stats_.pages_listed;
  std::string body = codec_.to_json("herald.admin.GroupList", b);
  // A read answers after a barrier too: what it shows may not be durable yet.
  tables_.barrier([this, responder = call.responder,
                   body = std::move(body)](const absl::Status& s) mutable {
    if (!s.ok()) {
      ++stats_.store_errors;
      respond_error(responder, 503, "store_unavailable", "the store could not make this durable");
      return;
    }
    respond_json(responder, 200, body);
  });
}

void Groups::handle_add(Call& call) {
  std::optional<uint64_t> id = group_param(call);
  if (!id) return;
  absl::StatusOr<const admin::GroupMembersRequest*> req =
      codec_.parse<admin::GroupMembersRequest>("herald.admin.GroupMembersRequest", call.body);
  if (!req.ok()) return bad_request(call, "bad_json", std::string(req.status().message()));
  if ((*req)->accounts() == nullptr || (*req)->accounts()->size() == 0) {
    return bad_request(call, "missing_field", "accounts lists at least one account", "accounts");
  }
  std::optional<std::vector<AccountId>> accounts =
      parse_accounts(call, (*req)->accounts(), "accounts");
  if (!accounts) return;
  std::optional<GroupRecord> record = find(*id);
  if (!record) {
    call.respond_error(500, "corrupt_record", "the group's record does not decode");
    return;
  }
  // Accounts already in the group are not added again, so a retried request succeeds.
  std::vector<AccountId> fresh;
  for (const AccountId& a : *accounts) {
    if (!is_member(*id, a)) fresh.push_back(a);
  }
  if (static_cast<uint64_t>(record->member_count) + fresh.size() > options_.max_group_members) {
    ++stats_.refused_full;
    call.respond_error(409, "group_full",
                       "a group has at most " + std::to_string(options_.max_group_members) +
                           " members (limits.max_group_members)",
                       "accounts");
    return;
  }
  if (!fresh.empty()) {
    record->member_count += static_cast<uint32_t>(fresh.size());
    std::vector<Mutation> batch;
    batch.reserve(fresh.size() + 1);
    batch.push_back(Mutation::put(TableId::kGroups, group_key(*id), encode_group_record(*record)));
    std::string added;
    put_le(added, options_.now_unix_ms(), 8);
    for (const AccountId& a : fresh) {
      batch.push_back(Mutation::put(TableId::kGroupMembers, member_key(*id, a), added));
    }
    if (absl::Status s = tables_.apply(batch); !s.ok()) {
      ++stats_.store_errors;
      call.respond_error(503, "store_unavailable", std::string(s.message()));
      return;
    }
    stats_.members_added += fresh.size();
  }
  finish(call.responder, *id, 200,
         changed_json(*id, record->member_count, static_cast<uint32_t>(fresh.size())));
}

void Groups::handle_remove(Call& call) {
  std::optional<uint64_t> id = group_param(call);
  if (!id) return;
  std::optional<AccountId> account = registration::parse_account_id(call.param(1));
  if (!account) {
    return bad_request(call, "bad_account_id", "an account id is a lower-case UUID", "account");
  }
  if (!is_member(*id, *account)) {
    call.respond_error(404, "not_member", "the account is not a member of this group");
    return;
  }
  std::optional<GroupRecord> record = find(*id);
  if (!record || record->member_count == 0) {
    call.respond_error(500, "corrupt_record", "the group's record does not decode");
    return;
  }
  record->member_count -= 1;
  const Mutation batch[] = {
      Mutation::put(TableId::kGroups, group_key(*id), encode_group_record(*record)),
      Mutation::erase(TableId::kGroupMembers, member_key(*id, *account)),
  };
  if (absl::Status s = tables_.apply(batch); !s.ok()) {
    ++stats_.store_errors;
    call.respond_error(503, "store_unavailable", std::string(s.message()));
    return;
  }
  ++stats_.members_removed;
  finish(call.responder, *id, 200, changed_json(*id, record->member_count, 1));
}

void Groups::handle_delete(Call& call) {
  std::optional<uint64_t> id = group_param(call);
  if (!id) return;
  const std::vector<AccountId> old = members(*id);
  // The group record goes in the first batch, so the group disappears at once; members beyond
  // the first chunk follow in further batches, and a crash between them leaves orphan member
  // keys that sweep_orphans() erases at the next start.
  size_t at = 0;
  bool first = true;
  while (first || at < old.size()) {
    std::vector<Mutation> batch;
    if (first) batch.push_back(Mutation::erase(TableId::kGroups, group_key(*id)));
    const size_t end = std::min(old.size(), at + kGroupDeleteChunk);
    for (; at < end; ++at) {
      batch.push_back(Mutation::erase(TableId::kGroupMembers, member_key(*id, old[at])));
    }
    if (absl::Status s = tables_.apply(batch); !s.ok()) {
      ++stats_.store_errors;
      call.respond_error(503, "store_unavailable", std::string(s.message()));
      return;
    }
    first = false;
  }
  ++stats_.deleted;
  stats_.members_removed += old.size();
  HLOG_INFO("groups.deleted").kv("group", format_group_id(*id)).kv("members", old.size());
  finish(call.responder, *id, 200, changed_json(*id, 0, static_cast<uint32_t>(old.size())));
}

}  // namespace herald::api

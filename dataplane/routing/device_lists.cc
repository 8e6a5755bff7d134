// The per-worker cache of account device lists (see device_lists.h).
#include "dataplane/routing/device_lists.h"

#include <algorithm>

#include "platform/assert/assert.h"

namespace herald::dataplane::routing {

const char* device_list_result_name(DeviceListResult result) {
  switch (result) {
    case DeviceListResult::kOk: return "ok";
    case DeviceListResult::kUnknownAccount: return "unknown_account";
    case DeviceListResult::kTimeout: return "timeout";
    case DeviceListResult::kError: return "error";
  }
  return "?";
}

DeviceListCache::DeviceListCache(const DeviceListOptions& options, DeviceListSink& sink)
    : options_(options),
      sink_(sink),
      entries_(std::max<uint32_t>(options.max_accounts, 1)),
      devices_(entries_.size() * std::max<uint32_t>(options.max_devices_per_account, 1)),
      index_(static_cast<uint32_t>(entries_.size())),
      pending_(std::max<uint32_t>(options.max_pending_requests, 1)),
      pending_index_(static_cast<uint32_t>(pending_.size())),
      waiters_(std::max<uint32_t>(options.max_waiters, 1)) {
  options_.max_devices_per_account = std::max<uint32_t>(options_.max_devices_per_account, 1);
  scratch_.reserve(options_.max_devices_per_account);
  for (uint32_t i = 0; i < entries_.size(); ++i) {
    entries_[i].lru_next = i + 1 < entries_.size() ? i + 1 : kNil;
  }
  for (uint32_t i = 0; i < pending_.size(); ++i) {
    pending_[i].next_free = i + 1 < pending_.size() ? i + 1 : kNil;
  }
  for (uint32_t i = 0; i < waiters_.size(); ++i) {
    waiters_[i].next = i + 1 < waiters_.size() ? i + 1 : kNil;
  }
  free_entries_ = 0;
  free_pending_ = 0;
  free_waiters_ = 0;
}

uint64_t DeviceListCache::account_hash(uint64_t hi, uint64_t lo) {
  return hash_mix(hi ^ hash_mix(lo));
}

uint32_t DeviceListCache::find_entry(uint64_t hi, uint64_t lo) const {
  return index_.find(account_hash(hi, lo),
                     [&](uint32_t e) { return entries_[e].hi == hi && entries_[e].lo == lo; });
}

uint32_t DeviceListCache::find_pending(uint64_t hi, uint64_t lo) const {
  return pending_index_.find(account_hash(hi, lo), [&](uint32_t p) {
    return pending_[p].hi == hi && pending_[p].lo == lo;
  });
}

std::span<const uint32_t> DeviceListCache::devices_of(uint32_t e) const {
  return std::span<const uint32_t>(devices_).subspan(size_t{e} * options_.max_devices_per_account,
                                                     entries_[e].count);
}

void DeviceListCache::unlink(uint32_t e) {
  Entry& entry = entries_[e];
  if (entry.lru_prev != kNil)
    entries_[entry.lru_prev].lru_next = entry.lru_next;
  else
    lru_head_ = entry.lru_next;
  if (entry.lru_next != kNil)
    entries_[entry.lru_next].lru_prev = entry.lru_prev;
  else
    lru_tail_ = entry.lru_prev;
  entry.lru_prev = entry.lru_next = kNil;
}

void DeviceListCache::touch(uint32_t e) {
  if (lru_head_ == e) return;
  unlink(e);
  Entry& entry = entries_[e];
  entry.lru_next = lru_head_;
  if (lru_head_ != kNil) entries_[lru_head_].lru_prev = e;
  lru_head_ = e;
  if (lru_tail_ == kNil) lru_tail_ = e;
}

void DeviceListCache::remove_entry(uint32_t e) {
  index_.erase(account_hash(entries_[e].hi, entries_[e].lo), e);
  unlink(e);
  entries_[e] = Entry{};
  entries_[e].lru_next = free_entries_;
  free_entries_ = e;
}

uint32_t DeviceListCache::install(uint64_t hi, uint64_t lo, uint64_t version, bool unknown,
                                  const flatbuffers::Vector<uint32_t>* devices, uint64_t now_ns) {
  const uint32_t n = devices == nullptr ? 0 : devices->size();
  if (n > options_.max_devices_per_account) {
    ++stats_.too_many_devices;
    return kNil;
  }
  uint32_t e = find_entry(hi, lo);
  if (e != kNil && entries_[e].version > version) {
    touch(e);  // the cached list is newer (a push crossed this answer): keep it
    return e;
  }
  if (e == kNil) {
    if (free_entries_ == kNil) {
      ++stats_.evictions;
      remove_entry(lru_tail_);
    }
    e = free_entries_;
    free_entries_ = entries_[e].lru_next;
    entries_[e] = Entry{};
    entries_[e].hi = hi;
    entries_[e].lo = lo;
    index_.insert(account_hash(hi, lo), e);
    // Link as most recent.
    entries_[e].lru_next = lru_head_;
    if (lru_head_ != kNil) entries_[lru_head_].lru_prev = e;
    lru_head_ = e;
    if (lru_tail_ == kNil) lru_tail_ = e;
  } else {
    touch(e);
  }
  Entry& entry = entries_[e];
  entry.version = version;
  entry.unknown = unknown;
  entry.expires_ns = unknown ? now_ns + options_.unknown_ttl_ns : 0;
  uint32_t* out = devices_.data() + size_t{e} * options_.max_devices_per_account;
  for (uint32_t i = 0; i < n; ++i) out[i] = devices->Get(i);
  // Ascending and unique whatever the sender did: routing relies on it to skip the sender's
  // own device by binary search.
  std::sort(out, out + n);
  entry.count = static_cast<uint32_t>(std::unique(out, out + n) - out);
  return e;
}

bool DeviceListCache::add_waiter(uint32_t p, uint64_t token) {
  const uint32_t w = free_waiters_;
  if (w == kNil) return false;
  free_waiters_ = waiters_[w].next;
  waiters_[w] = Waiter{token, kNil};
  Pending& pending = pending_[p];
  if (pending.last_waiter != kNil)
    waiters_[pending.last_waiter].next = w;
  else
    pending.first_waiter = w;
  pending.last_waiter = w;
  ++waiters_in_use_;
  return true;
}

void DeviceListCache::send(uint32_t p) {
  Pending& pending = pending_[p];
  if (sink_.send_device_list_request(pending.request_id, wire::AccountId(pending.hi, pending.lo))) {
    pending.sent = true;
    ++stats_.requests_sent;
  } else {
    ++stats_.request_send_failed;
    next_poll_ns_ = 0;  // the next poll tries again
  }
}

void DeviceListCache::finish(uint32_t p, DeviceListResult result,
                             std::span<const uint32_t> devices) {
  // Free everything before answering: an answer may look up (and so reuse slots) at once.
  scratch_.assign(devices.begin(), devices.end());
  std::vector<uint32_t> list;
  list.swap(scratch_);  // a nested finish() (from an answer's lookup) gets its own buffer
  const wire::AccountId account(pending_[p].hi, pending_[p].lo);
  uint32_t w = pending_[p].first_waiter;
  pending_index_.erase(account_hash(pending_[p].hi, pending_[p].lo), p);
  pending_[p] = Pending{};
  pending_[p].next_free = free_pending_;
  free_pending_ = p;
  while (w != kNil) {
    const Waiter waiter = waiters_[w];
    waiters_[w] = Waiter{0, free_waiters_};
    free_waiters_ = w;
    --waiters_in_use_;
    ++stats_.waiters_answered;
    sink_.device_list_answer(waiter.token, account, result, list);
    w = waiter.next;
  }
  list.clear();
  if (scratch_.capacity() < list.capacity()) scratch_.swap(list);
}

DeviceListLookup DeviceListCache::lookup(const wire::AccountId& account, uint64_t waiter,
                                         uint64_t now_ns) {
  const uint64_t hi = account.hi(), lo = account.lo();
  const uint32_t e = find_entry(hi, lo);
  if (e != kNil) {
    if (!entries_[e].unknown) {
      ++stats_.hits;
      touch(e);
      return DeviceListLookup{LookupStatus::kHit, devices_of(e)};
    }
    if (now_ns < entries_[e].expires_ns) {
      ++stats_.unknown_hits;
      touch(e);
      return DeviceListLookup{LookupStatus::kUnknownAccount, {}};
    }
    remove_entry(e);  // "unknown" expired: ask again (the account may exist by now)
  }
  uint32_t p = find_pending(hi, lo);
  if (p == kNil && free_pending_ == kNil) {
    ++stats_.busy_requests;
    return DeviceListLookup{LookupStatus::kBusy, {}};
  }
  if (free_waiters_ == kNil) {
    ++stats_.busy_waiters;
    return DeviceListLookup{LookupStatus::kBusy, {}};
  }
  const bool fresh = p == kNil;
  if (fresh) {
    p = free_pending_;
    free_pending_ = pending_[p].next_free;
    Pending& pending = pending_[p];
    pending = Pending{};
    pending.hi = hi;
    pending.lo = lo;
    // The slot in the low half finds the request from its id in O(1); the generation in the
    // high half (never 0) tells a late answer to an earlier use of the slot from this one.
    if (++request_generation_ == 0) request_generation_ = 1;
    pending.request_id = uint64_t{request_generation_} << 32 | p;
    pending.deadline_ns = now_ns + options_.request_timeout_ns;
    next_poll_ns_ = std::min(next_poll_ns_, pending.deadline_ns);
    pending_index_.insert(account_hash(hi, lo), p);
  }
  HERALD_CHECK(add_waiter(p, waiter), "device list waiter pool checked above");
  ++stats_.misses;
  if (fresh) send(p);
  return DeviceListLookup{LookupStatus::kWaiting, {}};
}

void DeviceListCache::on_response(const ipc::DeviceListResponse& response, uint64_t now_ns) {
  ++stats_.responses;
  if (response.dataplane_instance_id() != options_.instance_id) {
    ++stats_.responses_other_instance;
    return;
  }
  const uint64_t id = response.request_id();
  const uint32_t p = static_cast<uint32_t>(id & 0xffffffffu);
  if (id == 0 || p >= pending_.size() || pending_[p].request_id != id) {
    ++stats_.responses_stale;
    return;
  }
  const wire::AccountId* account = response.account();
  if (account == nullptr || account->hi() != pending_[p].hi || account->lo() != pending_[p].lo) {
    ++stats_.malformed;
    finish(p, DeviceListResult::kError, {});
    return;
  }
  switch (response.status()) {
    case ipc::DeviceListStatus::Ok: {
      const uint32_t e = install(account->hi(), account->lo(), response.version(), false,
                                 response.devices(), now_ns);
      if (e == kNil) {
        finish(p, DeviceListResult::kError, {});
      } else if (entries_[e].unknown) {
        finish(p, DeviceListResult::kUnknownAccount, {});
      } else {
        finish(p, DeviceListResult::kOk, devices_of(e));
      }
      return;
    }
    case ipc::DeviceListStatus::UnknownAccount: {
      const uint32_t e =
          install(account->hi(), account->lo(), response.version(), true, nullptr, now_ns);
      if (e != kNil && !entries_[e].unknown) {
        finish(p, DeviceListResult::kOk, devices_of(e));  // a newer push said it exists
      } else {
        finish(p, DeviceListResult::kUnknownAccount, {});
      }
      return;
    }
    default:
      ++stats_.responses_rejected;
      finish(p, DeviceListResult::kError, {});
      return;
  }
}

void DeviceListCache::on_push(const ipc::DeviceListPush& push, uint64_t now_ns) {
  const wire::AccountId* account = push.account();
  if (account == nullptr) {
    ++stats_.malformed;
    return;
  }
  const uint64_t hi = account->hi(), lo = account->lo();
  const uint32_t e = find_entry(hi, lo);
  const uint32_t p = find_pending(hi, lo);
  if (e == kNil && p == kNil) {
    // Nobody here needs it; the next lookup asks and gets the new list.
    ++stats_.pushes_uncached;
    return;
  }
  if (e != kNil && !entries_[e].unknown && push.version() <= entries_[e].version) {
    ++stats_.pushes_stale;
    return;
  }
  const uint32_t installed = install(hi, lo, push.version(), false, push.devices(), now_ns);
  if (installed == kNil) {
    // Over the limit: drop what is cached rather than keep a list known to be outdated.
    if (e != kNil) remove_entry(e);
    if (p != kNil) finish(p, DeviceListResult::kError, {});
    return;
  }
  ++stats_.pushes_applied;
  // A request in flight is answered now; its response, when it comes, is stale.
  if (p != kNil) finish(p, DeviceListResult::kOk, devices_of(installed));
}

void DeviceListCache::clear() {
  while (lru_head_ != kNil) {
    ++stats_.cleared;
    remove_entry(lru_head_);
  }
}

void DeviceListCache::poll(uint64_t now_ns) {
  // A busy-polling worker calls this every loop turn: scanning every request slot each time
  // cost a quarter of a DPDK worker's CPU, so the scan runs only when a deadline has passed or
  // a request waits to be sent again.
  if (now_ns < next_poll_ns_) return;
  next_poll_ns_ = kNever;  // lowered again below, and by lookups that finish() answers make
  for (uint32_t p = 0; p < pending_.size(); ++p) {
    if (pending_[p].request_id == 0) continue;
    if (now_ns >= pending_[p].deadline_ns) {
      ++stats_.timeouts;
      finish(p, DeviceListResult::kTimeout, {});
      continue;
    }
    if (!pending_[p].sent) send(p);
    next_poll_ns_ = std::min(next_poll_ns_, pending_[p].sent ? pending_[p].deadline_ns : 0);
  }
}

}  // namespace herald::dataplane::routing

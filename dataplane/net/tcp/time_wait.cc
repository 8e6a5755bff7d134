// The TIME-WAIT table (see time_wait.h): chained hashing over keyed SipHash, a doubly linked
// FIFO through the entries, entries in chunks with a free list.
#include "dataplane/net/tcp/time_wait.h"

#include <algorithm>
#include <cstring>

#include "dataplane/net/tcp/siphash.h"
#include "platform/assert/assert.h"

namespace herald::net::tcp {

static_assert(sizeof(TimeWaitEntry) == 56, "a TIME-WAIT entry grew: see time_wait.h");

namespace {

uint32_t v4_word(const IpAddr& a) {
  uint32_t w;
  std::memcpy(&w, a.bytes, 4);
  return w;
}

IpAddr from_v4_word(uint32_t w) {
  IpAddr a;
  a.family = 4;
  std::memcpy(a.bytes, &w, 4);
  return a;
}

}  // namespace

FourTuple TimeWaitEntry::tuple() const {
  return FourTuple{from_v4_word(local_addr), from_v4_word(remote_addr), local_port, remote_port};
}

TimeWaitTable::TimeWaitTable(uint32_t max_entries, uint64_t key0, uint64_t key1)
    : max_entries_(std::min<uint32_t>(max_entries, 1u << 28)), key_{key0, key1} {
  // Chains of one entry on average at most: the buckets cost 4..8 bytes per entry.
  uint32_t buckets = 16;
  while (buckets < max_entries_) buckets *= 2;
  buckets_.assign(buckets, kNone);
  bucket_mask_ = buckets - 1;
}

bool TimeWaitTable::holds(const FourTuple& t) {
  // An IPv4 address uses bytes 0..3; the rest must be zero for the entry to rebuild it exactly.
  auto v4 = [](const IpAddr& a) {
    return a.family == 4 &&
           std::all_of(a.bytes + 4, a.bytes + 16, [](uint8_t b) { return b == 0; });
  };
  return v4(t.local) && v4(t.remote);
}

uint32_t TimeWaitTable::bucket_of(uint32_t local_addr, uint32_t remote_addr, uint16_t local_port,
                                  uint16_t remote_port) const {
  uint8_t buf[12];
  std::memcpy(buf, &local_addr, 4);
  std::memcpy(buf + 4, &remote_addr, 4);
  std::memcpy(buf + 8, &local_port, 2);
  std::memcpy(buf + 10, &remote_port, 2);
  return static_cast<uint32_t>(siphash(key_, buf, sizeof(buf))) & bucket_mask_;
}

uint32_t TimeWaitTable::find(const FourTuple& t) const {
  if (size_ == 0 || !holds(t)) return kNone;
  const uint32_t local = v4_word(t.local), remote = v4_word(t.remote);
  for (uint32_t h = buckets_[bucket_of(local, remote, t.local_port, t.remote_port)]; h != kNone;) {
    const TimeWaitEntry& e = at(h);
    if (e.local_addr == local && e.remote_addr == remote && e.local_port == t.local_port &&
        e.remote_port == t.remote_port) {
      return h;
    }
    h = e.chain;
  }
  return kNone;
}

uint32_t TimeWaitTable::insert(const FourTuple& t, uint64_t expiry_ns, bool* evicted) {
  HERALD_CHECK(max_entries_ > 0 && holds(t), "time-wait: insert into no room or a non-IPv4 tuple");
  *evicted = false;
  if (size_ >= max_entries_) {
    *evicted = true;
    erase(oldest_);
  }
  uint32_t h;
  if (free_ != kNone) {
    h = free_;
    free_ = at(h).chain;
  } else {
    if ((slots_ & (kChunkSlots - 1)) == 0) {
      chunks_.push_back(std::make_unique<TimeWaitEntry[]>(kChunkSlots));
    }
    h = ++slots_;
  }
  TimeWaitEntry& e = at(h);
  e = TimeWaitEntry{};
  e.local_addr = v4_word(t.local);
  e.remote_addr = v4_word(t.remote);
  e.local_port = t.local_port;
  e.remote_port = t.remote_port;
  e.set_expiry_ns(expiry_ns);
  e.used = true;
  uint32_t& head = buckets_[bucket_of(e)];
  e.chain = head;
  head = h;
  e.older = newest_;
  if (newest_ != kNone) at(newest_).newer = h;
  newest_ = h;
  if (oldest_ == kNone) oldest_ = h;
  ++size_;
  return h;
}

void TimeWaitTable::erase(uint32_t h) {
  TimeWaitEntry& e = at(h);
  HERALD_CHECK(e.used, "time-wait: erase of a free entry");
  for (uint32_t* link = &buckets_[bucket_of(e)]; *link != kNone; link = &at(*link).chain) {
    if (*link == h) {
      *link = e.chain;
      break;
    }
  }
  (e.older != kNone ? at(e.older).newer : oldest_) = e.newer;
  (e.newer != kNone ? at(e.newer).older : newest_) = e.older;
  e.used = false;
  e.older = e.newer = kNone;
  e.chain = free_;
  free_ = h;
  --size_;
}

void TimeWaitTable::restart(uint32_t h, uint64_t expiry_ns) {
  TimeWaitEntry& e = at(h);
  e.set_expiry_ns(expiry_ns);
  if (h == newest_) return;
  (e.older != kNone ? at(e.older).newer : oldest_) = e.newer;
  at(e.newer).older = e.older;
  e.older = newest_;
  e.newer = kNone;
  at(newest_).newer = h;
  newest_ = h;
}

void TimeWaitTable::clear() {
  chunks_.clear();
  chunks_.shrink_to_fit();
  std::fill(buckets_.begin(), buckets_.end(), kNone);
  slots_ = free_ = size_ = oldest_ = newest_ = 0;
}

uint64_t TimeWaitTable::memory_bytes() const {
  return uint64_t{chunks_.size()} * kChunkSlots * sizeof(TimeWaitEntry) +
         buckets_.capacity() * sizeof(uint32_t) + chunks_.capacity() * sizeof(chunks_[0]);
}

}  // namespace herald::net::tcp

// The ARP cache's table, hash chains, LRU list and waiting queues (see arp_cache.h).
#include "dataplane/net/arp_cache.h"

#include <algorithm>
#include <bit>

#include "platform/assert/assert.h"

namespace herald::net {

ArpCache::ArpCache(uint32_t entries, uint32_t queue_per_entry, uint32_t queue_total,
                   FramePort& port, NetStats& stats)
    : entries_(entries),
      waiting_(queue_total),
      queue_per_entry_(queue_per_entry),
      port_(port),
      stats_(stats) {
  HERALD_CHECK(entries > 0, "ArpCache needs at least one entry");
  // Twice as many buckets as entries keeps chains short; at least 2 so the shift is < 64.
  const uint64_t buckets = std::bit_ceil(std::max<uint64_t>(2, uint64_t{entries} * 2));
  buckets_.assign(buckets, kNil);
  bucket_shift_ = 64 - static_cast<uint32_t>(std::countr_zero(buckets));
  for (uint32_t i = entries; i-- > 0;) {
    entries_[i].hash_next = free_entry_;
    free_entry_ = i;
  }
  for (uint32_t i = queue_total; i-- > 0;) {
    waiting_[i].next = free_waiting_;
    free_waiting_ = i;
  }
}

ArpCache::~ArpCache() {
  // Buffers still parked belong to the port: give them back.
  for_each([this](uint32_t i) { drain(i, [this](Waiting& w) { port_.release(w.frame); }); });
}

uint32_t ArpCache::bucket(uint32_t ip) const {
  return static_cast<uint32_t>((uint64_t{ip} * 0x9e3779b97f4a7c15ull) >> bucket_shift_);
}

uint32_t ArpCache::find(uint32_t ip) const {
  for (uint32_t i = buckets_[bucket(ip)]; i != kNil; i = entries_[i].hash_next) {
    if (entries_[i].ip == ip) return i;
  }
  return kNil;
}

void ArpCache::lru_unlink(uint32_t index) {
  Entry& e = entries_[index];
  if (e.lru_prev != kNil)
    entries_[e.lru_prev].lru_next = e.lru_next;
  else
    lru_head_ = e.lru_next;
  if (e.lru_next != kNil)
    entries_[e.lru_next].lru_prev = e.lru_prev;
  else
    lru_tail_ = e.lru_prev;
  e.lru_prev = e.lru_next = kNil;
}

void ArpCache::lru_push_front(uint32_t index) {
  Entry& e = entries_[index];
  e.lru_prev = kNil;
  e.lru_next = lru_head_;
  if (lru_head_ != kNil) entries_[lru_head_].lru_prev = index;
  lru_head_ = index;
  if (lru_tail_ == kNil) lru_tail_ = index;
}

void ArpCache::touch(uint32_t index) {
  if (lru_head_ == index) return;
  lru_unlink(index);
  lru_push_front(index);
}

uint32_t ArpCache::insert(uint32_t ip) {
  HERALD_DCHECK(find(ip) == kNil, "ArpCache::insert of a present address");
  if (free_entry_ == kNil) {
    HERALD_CHECK(lru_tail_ != kNil, "full ArpCache with an empty LRU list");
    stats_.add(NetCounter::kArpEvictions);
    remove(lru_tail_, DropReason::kArpEvicted);
  }
  const uint32_t index = free_entry_;
  Entry& e = entries_[index];
  free_entry_ = e.hash_next;
  e = Entry{};
  e.ip = ip;
  e.state = State::kIncomplete;
  ++incomplete_;
  const uint32_t b = bucket(ip);
  e.hash_next = buckets_[b];
  buckets_[b] = index;
  lru_push_front(index);
  ++used_;
  return index;
}

void ArpCache::remove(uint32_t index, DropReason waiting_reason) {
  drop_waiting(index, waiting_reason);
  Entry& e = entries_[index];
  uint32_t* link = &buckets_[bucket(e.ip)];
  while (*link != index) {
    HERALD_CHECK(*link != kNil, "ArpCache entry missing from its hash chain");
    link = &entries_[*link].hash_next;
  }
  *link = e.hash_next;
  lru_unlink(index);
  if (e.state == State::kIncomplete) --incomplete_;
  e.state = State::kFree;
  e.hash_next = free_entry_;
  free_entry_ = index;
  --used_;
}

void ArpCache::set_state(uint32_t index, State state) {
  Entry& e = entries_[index];
  if (e.state == State::kIncomplete) --incomplete_;
  if (state == State::kIncomplete) ++incomplete_;
  e.state = state;
}

bool ArpCache::enqueue(uint32_t index, const Waiting& waiting) {
  Entry& e = entries_[index];
  if (e.waiting >= queue_per_entry_ || free_waiting_ == kNil) return false;
  const uint32_t w = free_waiting_;
  free_waiting_ = waiting_[w].next;
  waiting_[w] = waiting;
  waiting_[w].next = kNil;
  if (e.queue_tail != kNil)
    waiting_[e.queue_tail].next = w;
  else
    e.queue_head = w;
  e.queue_tail = w;
  ++e.waiting;
  ++waiting_total_;
  return true;
}

void ArpCache::drop_waiting(uint32_t index, DropReason reason) {
  drain(index, [this, reason](Waiting& w) {
    port_.release(w.frame);
    stats_.add(reason);
  });
}

}  // namespace herald::net

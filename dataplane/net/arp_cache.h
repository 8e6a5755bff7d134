// The ARP cache's storage (RFC 826 entries): a fixed table sized from the options, a chained
// hash by IPv4 address, a least-recently-used list for eviction, and per-entry bounded queues of
// frames waiting on resolution. No I/O here: NetStack (arp.cc) sends and receives.
#pragma once

#include <cstdint>
#include <vector>

#include "dataplane/net/frame_io.h"
#include "dataplane/net/ip_address.h"
#include "dataplane/net/net_stats.h"

namespace herald::net {

class ArpCache {
 public:
  static constexpr uint32_t kNil = 0xffffffff;

  enum class State : uint8_t { kFree, kIncomplete, kReachable };

  struct Entry {
    uint32_t ip = 0;  // host order
    MacAddress mac;
    State state = State::kFree;
    uint8_t requests_sent = 0;     // since the entry last became incomplete
    uint16_t waiting = 0;          // frames queued on it
    uint64_t expires_ns = 0;       // kReachable: the MAC may be used until then
    uint64_t next_request_ns = 0;  // earliest next request (retry or refresh)
    uint32_t hash_next = kNil;
    uint32_t lru_prev = kNil;
    uint32_t lru_next = kNil;
    uint32_t queue_head = kNil;
    uint32_t queue_tail = kNil;
  };

  // A built frame (Ethernet destination still blank) parked until its next hop resolves.
  struct Waiting {
    TxFrame frame;
    uint32_t length_bytes = 0;
    TxOffload offload;
    uint32_t next = kNil;
  };

  // Sizes are fixed here, so serving never allocates. `port` takes back the buffers of frames
  // that are dropped; `stats` counts them.
  ArpCache(uint32_t entries, uint32_t queue_per_entry, uint32_t queue_total, FramePort& port,
           NetStats& stats);
  ~ArpCache();
  ArpCache(const ArpCache&) = delete;
  ArpCache& operator=(const ArpCache&) = delete;

  uint32_t find(uint32_t ip) const;
  Entry& at(uint32_t index) { return entries_[index]; }
  const Entry& at(uint32_t index) const { return entries_[index]; }
  uint32_t size() const { return used_; }
  uint32_t capacity() const { return static_cast<uint32_t>(entries_.size()); }
  uint32_t incomplete() const { return incomplete_; }

  // A new kIncomplete entry for `ip` (not present), at the front of the LRU list. When the
  // table is full the least recently used entry goes first (its waiting frames: arp_evicted).
  uint32_t insert(uint32_t ip);
  void remove(uint32_t index, DropReason waiting_reason);
  // Marks use, so eviction takes the coldest entry.
  void touch(uint32_t index);
  void set_state(uint32_t index, State state);

  // False (nothing queued) when the entry or the shared pool is at its limit.
  [[nodiscard]] bool enqueue(uint32_t index, const Waiting& waiting);
  // Hands every waiting frame, oldest first, to `fn(Waiting&)` and empties the queue.
  template <typename Fn>
  void drain(uint32_t index, Fn&& fn) {
    Entry& e = entries_[index];
    uint32_t w = e.queue_head;
    e.queue_head = e.queue_tail = kNil;
    waiting_total_ -= e.waiting;
    e.waiting = 0;
    while (w != kNil) {
      const uint32_t next = waiting_[w].next;
      fn(waiting_[w]);
      waiting_[w].next = free_waiting_;
      free_waiting_ = w;
      w = next;
    }
  }
  // Releases every waiting frame of the entry to the port, counting `reason` for each.
  void drop_waiting(uint32_t index, DropReason reason);

  // Visits used entries (most recently used first); `fn` may remove the one it is given.
  template <typename Fn>
  void for_each(Fn&& fn) {
    uint32_t i = lru_head_;
    while (i != kNil) {
      const uint32_t next = entries_[i].lru_next;
      fn(i);
      i = next;
    }
  }

 private:
  uint32_t bucket(uint32_t ip) const;
  void lru_unlink(uint32_t index);
  void lru_push_front(uint32_t index);

  std::vector<Entry> entries_;
  std::vector<uint32_t> buckets_;
  std::vector<Waiting> waiting_;
  uint32_t bucket_shift_ = 0;
  uint32_t queue_per_entry_;
  uint32_t free_entry_ = kNil;  // chained through hash_next
  uint32_t free_waiting_ = kNil;
  uint32_t lru_head_ = kNil;
  uint32_t lru_tail_ = kNil;
  uint32_t used_ = 0;
  uint32_t incomplete_ = 0;
  uint32_t waiting_total_ = 0;
  FramePort& port_;
  NetStats& stats_;
};

}  // namespace herald::net

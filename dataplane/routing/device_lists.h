// The devices of each account, as routing needs them to address a ToAccount message and the
// sender's other devices (offline ones too). The control plane owns them: a worker asks with
// DeviceListRequest, keeps the answers in a bounded LRU cache, and replaces a cached list when
// a DeviceListPush announces a change. Messages to an account not cached wait for the answer;
// a timeout answers them with an error. One per worker, on its thread; sized at construction.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dataplane/routing/slot_index.h"
#include "schemas/ipc_generated.h"
#include "schemas/wire_generated.h"

namespace herald::dataplane::routing {

struct DeviceListOptions {
  // Accounts cached (least recently used goes first).
  uint32_t max_accounts = 65536;
  // Devices one account may have: limits.max_linked_devices + 1 (the primary). A list longer
  // than this is refused (kError, counted), never truncated: a truncated list would silently
  // leave devices without the message.
  uint32_t max_devices_per_account = 65;
  // Accounts asked for and not answered yet; a lookup beyond it is refused (kBusy).
  uint32_t max_pending_requests = 1024;
  // Lookups waiting for those answers, all accounts together; beyond it kBusy.
  uint32_t max_waiters = 8192;
  // A request not answered by then answers its waiters with kTimeout.
  uint64_t request_timeout_ns = 2'000'000'000;
  // How long "no such account" is cached, so a sender cannot make every message to a made-up
  // account a round trip to the control plane.
  uint64_t unknown_ttl_ns = 10'000'000'000;
  // Hello.instance_id of this dataplane process: responses for another instance (left on the
  // ring from before a restart) are ignored.
  uint64_t instance_id = 0;
};

enum class DeviceListResult : uint8_t {
  kOk,
  kUnknownAccount,  // the control plane has no such account
  kTimeout,         // no answer within request_timeout_ns
  kError,           // the control plane refused the request, or the list is over the limit
};
const char* device_list_result_name(DeviceListResult result);

// The owner of the cache: sends requests on the worker's dp_to_cp ring and receives answers.
class DeviceListSink {
 public:
  virtual ~DeviceListSink() = default;
  // False when the ring did not take it: the request is sent again on the next poll().
  virtual bool send_device_list_request(uint64_t request_id, const wire::AccountId& account) = 0;
  // Exactly once per lookup that returned kWaiting. `devices` (ascending) is valid during the
  // call only. May call lookup() again.
  virtual void device_list_answer(uint64_t waiter, const wire::AccountId& account,
                                  DeviceListResult result, std::span<const uint32_t> devices) = 0;
};

enum class LookupStatus : uint8_t {
  kHit,             // `devices` holds the list (valid until the cache next changes)
  kUnknownAccount,  // cached: no such account
  kWaiting,         // asked (or already asking): device_list_answer(waiter, ...) follows
  kBusy,            // too many requests or waiters pending: nothing registered (counted)
};

struct DeviceListLookup {
  LookupStatus status = LookupStatus::kBusy;
  std::span<const uint32_t> devices;
};

struct DeviceListStats {
  uint64_t hits = 0;
  uint64_t unknown_hits = 0;   // lookups answered from a cached "no such account"
  uint64_t misses = 0;         // lookups that waited
  uint64_t busy_requests = 0;  // kBusy: max_pending_requests reached
  uint64_t busy_waiters = 0;   // kBusy: max_waiters reached
  uint64_t requests_sent = 0;
  uint64_t request_send_failed = 0;  // the sink refused (retried on poll)
  uint64_t responses = 0;
  uint64_t responses_stale = 0;  // unknown request id (timed out, or answered by a push)
  uint64_t responses_other_instance = 0;
  uint64_t responses_rejected = 0;  // status Rejected: waiters get kError
  uint64_t malformed = 0;           // a response or push without an account, or one
                                    // that names another account than the request
  uint64_t too_many_devices = 0;    // a list over max_devices_per_account
  uint64_t timeouts = 0;            // requests that timed out
  uint64_t waiters_answered = 0;
  uint64_t pushes_applied = 0;
  uint64_t pushes_stale = 0;     // not newer than the cached version
  uint64_t pushes_uncached = 0;  // for an account this worker neither caches nor awaits
  uint64_t evictions = 0;        // cached lists pushed out by max_accounts
  uint64_t cleared = 0;          // cached lists dropped by clear()
};

class DeviceListCache {
 public:
  DeviceListCache(const DeviceListOptions& options, DeviceListSink& sink);
  DeviceListCache(const DeviceListCache&) = delete;
  DeviceListCache& operator=(const DeviceListCache&) = delete;

  // The devices of `account`. On kWaiting, `waiter` (the caller's token, e.g. a held message)
  // is answered exactly once through the sink.
  DeviceListLookup lookup(const wire::AccountId& account, uint64_t waiter, uint64_t now_ns);

  void on_response(const ipc::DeviceListResponse& response, uint64_t now_ns);
  void on_push(const ipc::DeviceListPush& push, uint64_t now_ns);
  // Timeouts, and requests the sink refused sent again. Call every few milliseconds.
  void poll(uint64_t now_ns);
  // The control plane (re)connected: it may have changed lists while no push could reach this
  // worker, so every cached list is dropped. Requests in flight stay (answered or timed out).
  void clear();

  size_t cached() const { return index_.size(); }
  size_t pending_requests() const { return pending_index_.size(); }
  size_t waiters() const { return waiters_in_use_; }
  const DeviceListStats& stats() const { return stats_; }

 private:
  static constexpr uint32_t kNil = SlotIndex::kNone;

  struct Entry {
    uint64_t hi = 0, lo = 0;
    uint64_t version = 0;
    uint64_t expires_ns = 0;  // unknown accounts only
    uint32_t count = 0;
    bool unknown = false;
    uint32_t lru_prev = kNil, lru_next = kNil;  // most recent first; the free list uses next
  };
  struct Pending {
    uint64_t hi = 0, lo = 0;
    uint64_t request_id = 0;  // 0: slot free
    uint64_t deadline_ns = 0;
    bool sent = false;
    uint32_t first_waiter = kNil, last_waiter = kNil;
    uint32_t next_free = kNil;
  };
  struct Waiter {
    uint64_t token = 0;
    uint32_t next = kNil;
  };

  static uint64_t account_hash(uint64_t hi, uint64_t lo);
  uint32_t find_entry(uint64_t hi, uint64_t lo) const;
  uint32_t find_pending(uint64_t hi, uint64_t lo) const;
  std::span<const uint32_t> devices_of(uint32_t e) const;
  void touch(uint32_t e);
  void unlink(uint32_t e);
  void remove_entry(uint32_t e);
  // Caches (or updates) `account`'s list; kNil when the list is over the limit.
  uint32_t install(uint64_t hi, uint64_t lo, uint64_t version, bool unknown,
                   const flatbuffers::Vector<uint32_t>* devices, uint64_t now_ns);
  // Frees the request and answers each of its waiters once.
  void finish(uint32_t p, DeviceListResult result, std::span<const uint32_t> devices);
  bool add_waiter(uint32_t p, uint64_t token);
  void send(uint32_t p);

  DeviceListOptions options_;
  DeviceListSink& sink_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> devices_;  // entries_.size() * max_devices_per_account
  SlotIndex index_;
  uint32_t free_entries_ = kNil;
  uint32_t lru_head_ = kNil, lru_tail_ = kNil;
  std::vector<Pending> pending_;
  SlotIndex pending_index_;
  uint32_t free_pending_ = kNil;
  // poll() has nothing to do before this time: the earliest deadline of a request in flight,
  // 0 when a request waits to be sent again, kNever when none is pending.
  static constexpr uint64_t kNever = ~uint64_t{0};
  uint64_t next_poll_ns_ = kNever;
  uint32_t request_generation_ = 0;
  std::vector<Waiter> waiters_;
  uint32_t free_waiters_ = kNil;
  uint32_t waiters_in_use_ = 0;
  std::vector<uint32_t> scratch_;  // a list being handed to waiters (the cache may change)
  DeviceListStats stats_;
};

}  // namespace herald::dataplane::routing

// Resend detection per sending device (DESIGN.md "One message", step 2): the last
// limits.dedup_window client_msg_ids of each device and their outcome, so a resend gets the
// first ServerAck again and is never delivered twice. One per worker, on its thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dataplane/routing/message_ids.h"
#include "dataplane/routing/slot_index.h"
#include "schemas/wire_generated.h"

namespace herald::dataplane::routing {

struct DedupOptions {
  // config limits.dedup_window: ids remembered per device. Keep it >= max_unacked_messages,
  // so a device's pending messages are never pushed out by its own newer ones.
  uint32_t window_per_device = 1024;
  // Entries for all devices of the worker (56 bytes each, and 16 of index: allocated at
  // construction).
  uint32_t max_entries = 1 << 20;
};

enum class DedupVerdict : uint8_t {
  kNew,      // not seen (or forgotten): take the message
  kPending,  // seen, its ServerAck not sent yet: answer the resend when the first completes
  kAcked,    // seen and acknowledged: send the same ServerAck again, deliver nothing
};

struct DedupCheck {
  DedupVerdict verdict = DedupVerdict::kNew;
  MintedId server;  // kPending / kAcked: the id the first copy was given
  // What find() learnt, so insert_pending() right after it need not look again: the device's
  // record (or none) and the window's mutation count then (stale once anything changed).
  uint32_t device_slot = UINT32_MAX;
  uint64_t epoch = 0;
};

// Where insert_pending() put an id: passed back to mark_acked()/forget(), it saves their two
// lookups when the entry is still there (checked against the id and device, so a hint gone
// stale, the entry evicted or reused, only costs the lookup).
struct DedupHint {
  uint32_t entry = UINT32_MAX;
};

// One remembered id, as handed from worker to worker when a device's session moves.
struct DedupRecord {
  uint64_t client_msg_id = 0;
  MintedId server;
  bool acked = false;
};

// Every eviction and refusal, counted.
struct DedupStats {
  uint64_t inserted = 0;
  uint64_t resends_pending = 0;    // find() -> kPending
  uint64_t resends_acked = 0;      // find() -> kAcked
  uint64_t acked = 0;              // mark_acked() of a pending entry
  uint64_t forgotten = 0;          // forget() of a present entry
  uint64_t unknown = 0;            // mark_acked()/forget() of an absent entry (evicted already)
  uint64_t duplicate_inserts = 0;  // insert_pending() of a present id (a caller bug; ignored)
  uint64_t evicted_window = 0;     // a device's oldest, pushed out by its window
  uint64_t evicted_total = 0;      // the worker's oldest, pushed out by max_entries
  uint64_t evicted_pending = 0;    // of those, entries still pending (a resend of one is new)
  uint64_t exported = 0;           // entries handed to another worker
  uint64_t imported = 0;           // entries taken from another worker
};

// Eviction order: a device at window_per_device loses its oldest id (by insertion); the worker
// at max_entries loses the oldest id of all devices, which is always the oldest of its own
// device, so both orders are FIFO by insertion and one list per device plus one global list
// (both doubly linked through the entry pool) give each eviction in O(1).
class DedupWindow {
 public:
  explicit DedupWindow(const DedupOptions& options);

  DedupCheck find(const wire::DeviceAddress& device, uint64_t client_msg_id);
  // Remembers a new id as pending with the id minted for it (find() said kNew). `found`, that
  // find()'s answer, spares the lookups when nothing changed in the window since.
  DedupHint insert_pending(const wire::DeviceAddress& device, uint64_t client_msg_id,
                           const MintedId& server, const DedupCheck* found = nullptr);
  // The ServerAck went out: resends now get it again. False when the entry is gone.
  bool mark_acked(const wire::DeviceAddress& device, uint64_t client_msg_id, DedupHint hint = {});
  // The message failed (an error, not a ServerAck): forget it so a resend is tried again.
  bool forget(const wire::DeviceAddress& device, uint64_t client_msg_id, DedupHint hint = {});

  // Hand-over when a device's session moves to another worker (a reconnect lands wherever the
  // kernel or RSS puts it): its ids, oldest first, into `out` (window_per_device records always
  // suffice); returns how many. The entries stay here until forget_device().
  size_t export_device(const wire::DeviceAddress& device, std::span<DedupRecord> out);
  // Takes ids exported by another worker, oldest first, after any this worker holds for the
  // device; ids already here are kept as they are. Limits and eviction apply as for inserts.
  void import_device(const wire::DeviceAddress& device, std::span<const DedupRecord> records);
  // Drops every id of the device (after its entries were exported). Returns how many.
  size_t forget_device(const wire::DeviceAddress& device);

  uint32_t entries() const { return entries_; }
  uint32_t devices() const { return device_index_.size(); }
  // Entries of one device (0 when none).
  uint32_t device_entries(const wire::DeviceAddress& device) const;
  const DedupStats& stats() const { return stats_; }

 private:
  static constexpr uint32_t kNil = SlotIndex::kNone;

  enum class State : uint8_t { kFree, kPending, kAcked };
  struct Entry {
    uint64_t client_msg_id = 0;
    uint64_t server_hi = 0;
    uint64_t server_lo = 0;
    uint64_t server_time_ms = 0;
    uint32_t device = kNil;                           // slot in devices_
    uint32_t device_prev = kNil, device_next = kNil;  // this device's ids, oldest first
    uint32_t age_prev = kNil, age_next = kNil;        // all ids, oldest first; free list
    State state = State::kFree;
  };
  struct Device {
    uint64_t account_hi = 0, account_lo = 0;
    uint32_t device = 0;
    uint32_t oldest = kNil, newest = kNil;
    uint32_t count = 0;
    uint32_t next_free = kNil;
  };

  static uint64_t device_hash(uint64_t hi, uint64_t lo, uint32_t device);
  uint64_t entry_hash(uint32_t e) const;
  uint32_t find_device(const wire::DeviceAddress& device) const;
  uint32_t find_entry(uint32_t device_slot, uint64_t client_msg_id) const;
  // The entry of (device, client_msg_id): the hint's when it holds them, else looked up.
  uint32_t locate(const wire::DeviceAddress& device, uint64_t client_msg_id, DedupHint hint) const;
  void remove_entry(uint32_t e);

  DedupOptions options_;
  std::vector<Entry> entries_pool_;
  std::vector<Device> devices_;
  SlotIndex entry_index_;
  SlotIndex device_index_;
  uint32_t free_entries_ = kNil;
  uint32_t free_devices_ = kNil;
  uint32_t oldest_ = kNil, newest_ = kNil;
  uint32_t entries_ = 0;
  uint64_t epoch_ = 0;  // bumped by every insert and removal: a DedupCheck older is stale
  DedupStats stats_;
};

}  // namespace herald::dataplane::routing

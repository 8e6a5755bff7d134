// Resend detection per sending device (see dedup_window.h).
#include "dataplane/routing/dedup_window.h"

#include <algorithm>

#include "platform/assert/assert.h"

namespace herald::dataplane::routing {

DedupWindow::DedupWindow(const DedupOptions& options)
    : options_(options),
      entries_pool_(std::max<uint32_t>(options.max_entries, 1)),
      devices_(std::max<uint32_t>(options.max_entries, 1)),
      entry_index_(std::max<uint32_t>(options.max_entries, 1)),
      device_index_(std::max<uint32_t>(options.max_entries, 1)) {
  HERALD_CHECK(options_.window_per_device >= 1, "dedup window of 0");
  options_.max_entries = static_cast<uint32_t>(entries_pool_.size());
  // Free lists in index order, so a fresh window fills the pool from the front.
  for (uint32_t i = 0; i < entries_pool_.size(); ++i) {
    entries_pool_[i].age_next = i + 1 < entries_pool_.size() ? i + 1 : kNil;
    devices_[i].next_free = i + 1 < devices_.size() ? i + 1 : kNil;
  }
  free_entries_ = 0;
  free_devices_ = 0;
}

uint64_t DedupWindow::device_hash(uint64_t hi, uint64_t lo, uint32_t device) {
  return hash_mix(hi ^ hash_mix(lo ^ hash_mix(device)));
}

uint64_t DedupWindow::entry_hash(uint32_t e) const {
  const Entry& entry = entries_pool_[e];
  const Device& d = devices_[entry.device];
  return hash_mix(device_hash(d.account_hi, d.account_lo, d.device) ^ entry.client_msg_id);
}

uint32_t DedupWindow::find_device(const wire::DeviceAddress& device) const {
  const uint64_t hi = device.account().hi(), lo = device.account().lo();
  return device_index_.find(device_hash(hi, lo, device.device()), [&](uint32_t s) {
    const Device& d = devices_[s];
    return d.account_hi == hi && d.account_lo == lo && d.device == device.device();
  });
}

uint32_t DedupWindow::find_entry(uint32_t device_slot, uint64_t client_msg_id) const {
  const Device& d = devices_[device_slot];
  const uint64_t hash = hash_mix(device_hash(d.account_hi, d.account_lo, d.device) ^ client_msg_id);
  return entry_index_.find(hash, [&](uint32_t e) {
    return entries_pool_[e].device == device_slot &&
           entries_pool_[e].client_msg_id == client_msg_id;
  });
}

uint32_t DedupWindow::device_entries(const wire::DeviceAddress& device) const {
  const uint32_t d = find_device(device);
  return d == kNil ? 0 : devices_[d].count;
}

uint32_t DedupWindow::locate(const wire::DeviceAddress& device, uint64_t client_msg_id,
                             DedupHint hint) const {
  if (hint.entry < entries_pool_.size()) {
    // (device, client_msg_id) is unique in the window, so an entry holding both is its entry.
    const Entry& entry = entries_pool_[hint.entry];
    if (entry.state != State::kFree && entry.client_msg_id == client_msg_id) {
      const Device& d = devices_[entry.device];
      if (d.account_hi == device.account().hi() && d.account_lo == device.account().lo() &&
          d.device == device.device()) {
        return hint.entry;
      }
    }
  }
  const uint32_t d = find_device(device);
  return d == kNil ? kNil : find_entry(d, client_msg_id);
}

DedupCheck DedupWindow::find(const wire::DeviceAddress& device, uint64_t client_msg_id) {
  DedupCheck check;
  check.epoch = epoch_;
  const uint32_t d = find_device(device);
  check.device_slot = d;
  if (d == kNil) return check;
  const uint32_t e = find_entry(d, client_msg_id);
  if (e == kNil) return check;
  const Entry& entry = entries_pool_[e];
  check.server.id = wire::ServerMsgId(entry.server_hi, entry.server_lo);
  check.server.server_time_ms = entry.server_time_ms;
  if (entry.state == State::kPending) {
    check.verdict = DedupVerdict::kPending;
    ++stats_.resends_pending;
  } else {
    check.verdict = DedupVerdict::kAcked;
    ++stats_.resends_acked;
  }
  return check;
}

DedupHint DedupWindow::insert_pending(const wire::DeviceAddress& device, uint64_t client_msg_id,
                                      const MintedId& server, const DedupCheck* found) {
  uint32_t d;
  if (found != nullptr && found->epoch == epoch_ && found->verdict == DedupVerdict::kNew) {
    d = found->device_slot;  // nothing changed since find() saw the id absent
  } else {
    d = find_device(device);
    if (d != kNil && find_entry(d, client_msg_id) != kNil) {
      ++stats_.duplicate_inserts;
      return DedupHint{};
    }
  }
  // Make room first: the device's own window, then the worker's pool. Either eviction may
  // remove the device record when it held the last entry, so look it up again afterwards.
  if (d != kNil && devices_[d].count >= options_.window_per_device) {
    ++stats_.evicted_window;
    if (entries_pool_[devices_[d].oldest].state == State::kPending) ++stats_.evicted_pending;
    remove_entry(devices_[d].oldest);
    d = find_device(device);
  }
  if (entries_ >= options_.max_entries) {
    ++stats_.evicted_total;
    if (entries_pool_[oldest_].state == State::kPending) ++stats_.evicted_pending;
    remove_entry(oldest_);
    d = find_device(device);
  }
  if (d == kNil) {
    d = free_devices_;
    HERALD_CHECK(d != kNil, "dedup device pool exhausted");  // devices <= entries < pool
    free_devices_ = devices_[d].next_free;
    Device& fresh = devices_[d];
    fresh = Device{};
    fresh.account_hi = device.account().hi();
    fresh.account_lo = device.account().lo();
    fresh.device = device.device();
    device_index_.insert(device_hash(fresh.account_hi, fresh.account_lo, fresh.device), d);
  }
  const uint32_t e = free_entries_;
  HERALD_CHECK(e != kNil, "dedup entry pool exhausted");
  free_entries_ = entries_pool_[e].age_next;
  Entry& entry = entries_pool_[e];
  entry = Entry{};
  entry.client_msg_id = client_msg_id;
  entry.server_hi = server.id.hi();
  entry.server_lo = server.id.lo();
  entry.server_time_ms = server.server_time_ms;
  entry.device = d;
  entry.state = State::kPending;
  // Append to the device's list and to the global age list (newest at the tail).
  Device& dev = devices_[d];
  entry.device_prev = dev.newest;
  if (dev.newest != kNil) entries_pool_[dev.newest].device_next = e;
  dev.newest = e;
  if (dev.oldest == kNil) dev.oldest = e;
  ++dev.count;
  entry.age_prev = newest_;
  if (newest_ != kNil) entries_pool_[newest_].age_next = e;
  newest_ = e;
  if (oldest_ == kNil) oldest_ = e;
  ++entries_;
  ++epoch_;
  entry_index_.insert(entry_hash(e), e);
  ++stats_.inserted;
  return DedupHint{e};
}

bool DedupWindow::mark_acked(const wire::DeviceAddress& device, uint64_t client_msg_id,
                             DedupHint hint) {
  const uint32_t e = locate(device, client_msg_id, hint);
  if (e == kNil) {
    ++stats_.unknown;
    return false;
  }
  if (entries_pool_[e].state == State::kPending) ++stats_.acked;
  entries_pool_[e].state = State::kAcked;
  return true;
}

bool DedupWindow::forget(const wire::DeviceAddress& device, uint64_t client_msg_id,
                         DedupHint hint) {
  const uint32_t e = locate(device, client_msg_id, hint);
  if (e == kNil) {
    ++stats_.unknown;
    return false;
  }
  ++stats_.forgotten;
  remove_entry(e);
  return true;
}

size_t DedupWindow::export_device(const wire::DeviceAddress& device, std::span<DedupRecord> out) {
  const uint32_t d = find_device(device);
  if (d == kNil) return 0;
  size_t n = 0;
  for (uint32_t e = devices_[d].oldest; e != kNil && n < out.size();
       e = entries_pool_[e].device_next) {
    const Entry& entry = entries_pool_[e];
    out[n++] = DedupRecord{
        entry.client_msg_id,
        MintedId{wire::ServerMsgId(entry.server_hi, entry.server_lo), entry.server_time_ms},
        entry.state == State::kAcked};
  }
  stats_.exported += n;
  return n;
}

void DedupWindow::import_device(const wire::DeviceAddress& device,
                                std::span<const DedupRecord> records) {
  for (const DedupRecord& r : records) {
    const uint32_t d = find_device(device);
    if (d != kNil && find_entry(d, r.client_msg_id) != kNil) continue;
    const DedupHint at = insert_pending(device, r.client_msg_id, r.server);
    --stats_.inserted;  // counted as imported, not as a new message
    ++stats_.imported;
    if (r.acked) entries_pool_[at.entry].state = State::kAcked;
  }
}

size_t DedupWindow::forget_device(const wire::DeviceAddress& device) {
  size_t n = 0;
  for (uint32_t d = find_device(device); d != kNil; d = find_device(device)) {
    remove_entry(devices_[d].oldest);  // the device record goes with its last entry
    ++n;
  }
  return n;
}

void DedupWindow::remove_entry(uint32_t e) {
  Entry& entry = entries_pool_[e];
  HERALD_DCHECK(entry.state != State::kFree, "removing a free dedup entry");
  entry_index_.erase(entry_hash(e), e);
  const uint32_t d = entry.device;
  Device& dev = devices_[d];
  // Unlink from the device's list.
  if (entry.device_prev != kNil)
    entries_pool_[entry.device_prev].device_next = entry.device_next;
  else
    dev.oldest = entry.device_next;
  if (entry.device_next != kNil)
    entries_pool_[entry.device_next].device_prev = entry.device_prev;
  else
    dev.newest = entry.device_prev;
  // Unlink from the age list.
  if (entry.age_prev != kNil)
    entries_pool_[entry.age_prev].age_next = entry.age_next;
  else
    oldest_ = entry.age_next;
  if (entry.age_next != kNil)
    entries_pool_[entry.age_next].age_prev = entry.age_prev;
  else
    newest_ = entry.age_prev;
  --entries_;
  ++epoch_;
  entry = Entry{};
  entry.age_next = free_entries_;
  free_entries_ = e;
  if (--dev.count == 0) {
    device_index_.erase(device_hash(dev.account_hi, dev.account_lo, dev.device), d);
    dev = Device{};
    dev.next_free = free_devices_;
    free_devices_ = d;
  }
}

}  // namespace herald::dataplane::routing

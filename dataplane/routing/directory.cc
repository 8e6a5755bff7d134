// The shared directory of online devices (see directory.h and README.md).
#include "dataplane/routing/directory.h"

#include <algorithm>
#include <bit>
#include <thread>

#include "dataplane/routing/slot_index.h"
#include "platform/assert/assert.h"

namespace herald::dataplane::routing {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// A writer is mid-section: spin briefly (on dedicated cores it finishes within a few hundred
// nanoseconds), then yield so a writer preempted on a shared core gets to finish.
inline void wait_for_writer() {
  for (int i = 0; i < 64; ++i) cpu_relax();
  std::this_thread::yield();
}

}  // namespace

Directory::Directory(const DirectoryOptions& options) : options_(options) {
  HERALD_CHECK(options_.max_devices >= 1, "directory of 0 devices");
  const uint64_t cells = std::bit_ceil(std::max<uint64_t>(16, uint64_t{options_.max_devices} * 2));
  mask_ = cells - 1;
  cells_ = std::make_unique<Cell[]>(cells);
}

// Devices of one account hash to the same home cell, so an account's online devices are the
// matching cells of one probe run (found without a second index).
uint64_t Directory::account_hash(uint64_t hi, uint64_t lo) {
  return hash_mix(hi ^ hash_mix(lo));
}

uint64_t Directory::probe(uint64_t hi, uint64_t lo, uint32_t device) const {
  for (uint64_t i = account_hash(hi, lo) & mask_;; i = (i + 1) & mask_) {
    const Cell& c = cells_[i];
    const uint64_t meta = c.meta.load(std::memory_order_relaxed);
    if ((meta & kOccupied) == 0) return i;
    if ((meta >> 32) == device && c.account_hi.load(std::memory_order_relaxed) == hi &&
        c.account_lo.load(std::memory_order_relaxed) == lo) {
      return i;
    }
  }
}

void Directory::begin_write() {
  sequence_.store(sequence_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

void Directory::end_write() {
  sequence_.store(sequence_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

Login Directory::login(const wire::DeviceAddress& device, DeviceLocation at) {
  const uint64_t hi = device.account().hi(), lo = device.account().lo();
  std::lock_guard<std::mutex> lock(write_mutex_);
  Cell& c = cells_[probe(hi, lo, device.device())];
  Login result;
  const uint64_t meta = c.meta.load(std::memory_order_relaxed);
  if (meta & kOccupied) {
    result.result = LoginResult::kReplaced;
    result.previous.worker = static_cast<uint16_t>(meta >> 16);
    result.previous.connection = c.connection.load(std::memory_order_relaxed);
    ++stats_.replaced;
  } else if (size_.load(std::memory_order_relaxed) >= options_.max_devices) {
    ++stats_.full;
    return Login{LoginResult::kFull, {}};
  } else {
    size_.fetch_add(1, std::memory_order_relaxed);
  }
  ++stats_.logins;
  begin_write();
  c.account_hi.store(hi, std::memory_order_relaxed);
  c.account_lo.store(lo, std::memory_order_relaxed);
  if (mid_write_hook_ != nullptr) mid_write_hook_();
  c.connection.store(at.connection, std::memory_order_relaxed);
  c.meta.store(make_meta(device.device(), at.worker), std::memory_order_relaxed);
  end_write();
  return result;
}

bool Directory::logout(const wire::DeviceAddress& device, DeviceLocation at) {
  const uint64_t hi = device.account().hi(), lo = device.account().lo();
  std::lock_guard<std::mutex> lock(write_mutex_);
  uint64_t hole = probe(hi, lo, device.device());
  const Cell& found = cells_[hole];
  const uint64_t meta = found.meta.load(std::memory_order_relaxed);
  if ((meta & kOccupied) == 0 || static_cast<uint16_t>(meta >> 16) != at.worker ||
      found.connection.load(std::memory_order_relaxed) != at.connection) {
    ++stats_.stale_logouts;
    return false;
  }
  ++stats_.logouts;
  begin_write();
  // Backward-shift deletion (as SlotIndex::erase): readers never see a cluster with a hole in
  // it because the whole move happens inside one write section.
  for (uint64_t j = (hole + 1) & mask_;; j = (j + 1) & mask_) {
    Cell& next = cells_[j];
    const uint64_t next_meta = next.meta.load(std::memory_order_relaxed);
    if ((next_meta & kOccupied) == 0) break;
    const uint64_t home = account_hash(next.account_hi.load(std::memory_order_relaxed),
                                       next.account_lo.load(std::memory_order_relaxed)) &
                          mask_;
    const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (stays) continue;
    Cell& h = cells_[hole];
    h.account_hi.store(next.account_hi.load(std::memory_order_relaxed), std::memory_order_relaxed);
    h.account_lo.store(next.account_lo.load(std::memory_order_relaxed), std::memory_order_relaxed);
    h.connection.store(next.connection.load(std::memory_order_relaxed), std::memory_order_relaxed);
    h.meta.store(next_meta, std::memory_order_relaxed);
    hole = j;
  }
  if (mid_write_hook_ != nullptr) mid_write_hook_();  // a moved entry is in two cells here
  Cell& h = cells_[hole];
  h.meta.store(0, std::memory_order_relaxed);
  h.account_hi.store(0, std::memory_order_relaxed);
  h.account_lo.store(0, std::memory_order_relaxed);
  h.connection.store(0, std::memory_order_relaxed);
  end_write();
  size_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

std::optional<DeviceLocation> Directory::find(const wire::DeviceAddress& device) const {
  const uint64_t hi = device.account().hi(), lo = device.account().lo();
  const uint64_t home = account_hash(hi, lo) & mask_;
  for (;;) {
    const uint64_t before = sequence_.load(std::memory_order_acquire);
    if (before & 1) {
      wait_for_writer();
      continue;
    }
    std::optional<DeviceLocation> result;
    // A probe longer than the table can only come from reading a write half done.
    for (uint64_t n = 0, i = home; n <= mask_; ++n, i = (i + 1) & mask_) {
      const Cell& c = cells_[i];
      const uint64_t meta = c.meta.load(std::memory_order_relaxed);
      if ((meta & kOccupied) == 0) break;
      if ((meta >> 32) == device.device() && c.account_hi.load(std::memory_order_relaxed) == hi &&
          c.account_lo.load(std::memory_order_relaxed) == lo) {
        result = DeviceLocation{static_cast<uint16_t>(meta >> 16),
                                c.connection.load(std::memory_order_relaxed)};
        break;
      }
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (sequence_.load(std::memory_order_relaxed) == before) return result;
    read_retries_.fetch_add(1, std::memory_order_relaxed);
  }
}

size_t Directory::online_devices(const wire::AccountId& account,
                                 std::span<OnlineDevice> out) const {
  const uint64_t hi = account.hi(), lo = account.lo();
  const uint64_t home = account_hash(hi, lo) & mask_;
  for (;;) {
    const uint64_t before = sequence_.load(std::memory_order_acquire);
    if (before & 1) {
      wait_for_writer();
      continue;
    }
    size_t found = 0;
    for (uint64_t n = 0, i = home; n <= mask_; ++n, i = (i + 1) & mask_) {
      const Cell& c = cells_[i];
      const uint64_t meta = c.meta.load(std::memory_order_relaxed);
      if ((meta & kOccupied) == 0) break;
      if (c.account_hi.load(std::memory_order_relaxed) != hi ||
          c.account_lo.load(std::memory_order_relaxed) != lo) {
        continue;
      }
      if (found < out.size()) {
        out[found] = OnlineDevice{
            static_cast<uint32_t>(meta >> 32),
            {static_cast<uint16_t>(meta >> 16), c.connection.load(std::memory_order_relaxed)}};
      }
      ++found;
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (sequence_.load(std::memory_order_relaxed) == before) return found;
    read_retries_.fetch_add(1, std::memory_order_relaxed);
  }
}

DirectoryStats Directory::stats() const {
  std::lock_guard<std::mutex> lock(write_mutex_);
  DirectoryStats s = stats_;
  s.read_retries = read_retries_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace herald::dataplane::routing

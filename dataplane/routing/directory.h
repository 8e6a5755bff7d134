// The node's directory of online devices: account/device -> (worker, ConnectionId), and an
// account's online devices. Shared by every worker: read on every message from any worker
// without a lock, written at login and logout. README.md argues the design.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "dataplane/transport/transport.h"
#include "schemas/wire_generated.h"

namespace herald::dataplane::routing {

// Where a device's live session is.
struct DeviceLocation {
  uint16_t worker = 0;
  ConnectionId connection = kNoConnection;
  bool operator==(const DeviceLocation&) const = default;
};

struct OnlineDevice {
  uint32_t device = 0;
  DeviceLocation location;
};

struct DirectoryOptions {
  // Online devices the node holds at most (limits.max_connections: one session per device).
  uint32_t max_devices = 100'000;
};

enum class LoginResult : uint8_t {
  kAdded,     // the device had no session
  kReplaced,  // it had one: `previous` names it, and the caller closes it
  kFull,      // max_devices reached: not registered (the caller refuses the login)
};

struct Login {
  LoginResult result = LoginResult::kAdded;
  DeviceLocation previous;  // kReplaced only
};

struct DirectoryStats {
  uint64_t logins = 0;
  uint64_t replaced = 0;  // a login that displaced an older session of the device
  uint64_t full = 0;      // logins refused at max_devices
  uint64_t logouts = 0;
  uint64_t stale_logouts = 0;  // logout of a session that is no longer the registered one
  uint64_t read_retries = 0;   // reads that overlapped a write and ran again
};

class Directory {
 public:
  explicit Directory(const DirectoryOptions& options);
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // ---- Writers: any worker thread; serialized among themselves, never block readers. ----
  // Registers `device` at `at`: one live session per device, so an older one is returned to
  // be closed (the newer login wins, whichever worker holds either).
  Login login(const wire::DeviceAddress& device, DeviceLocation at);
  // Removes `device` if `at` is still its registered session; a session replaced by a newer
  // login (its detach comes later) removes nothing. True when removed.
  bool logout(const wire::DeviceAddress& device, DeviceLocation at);

  // ---- Readers: any thread, lock-free (they retry only when a write overlapped). ----
  std::optional<DeviceLocation> find(const wire::DeviceAddress& device) const;
  // Writes up to out.size() online devices of `account` (any order); returns how many it has
  // online, which is more than out.size() when `out` was too small.
  size_t online_devices(const wire::AccountId& account, std::span<OnlineDevice> out) const;

  size_t size() const { return size_.load(std::memory_order_relaxed); }
  size_t capacity() const { return options_.max_devices; }
  DirectoryStats stats() const;

  // Tests: called in the middle of every write section (half-written cells visible to a
  // reader that does not check the sequence), to widen the race window on purpose.
  void set_mid_write_hook_for_test(void (*hook)()) { mid_write_hook_ = hook; }

 private:
  // One cell; all fields atomic so a reader racing a writer reads stale values, never UB, and
  // the table's sequence number tells it to read again.
  struct alignas(32) Cell {
    std::atomic<uint64_t> account_hi{0};
    std::atomic<uint64_t> account_lo{0};
    std::atomic<uint64_t> meta{0};  // device << 32 | worker << 16 | 1 (occupied)
    std::atomic<uint64_t> connection{0};
  };
  static constexpr uint64_t kOccupied = 1;

  static uint64_t account_hash(uint64_t hi, uint64_t lo);
  static uint64_t make_meta(uint32_t device, uint16_t worker) {
    return uint64_t{device} << 32 | uint64_t{worker} << 16 | kOccupied;
  }
  // Writer side (mutex held): the cell holding the device, or the empty cell ending its probe.
  uint64_t probe(uint64_t hi, uint64_t lo, uint32_t device) const;
  void begin_write();
  void end_write();

  DirectoryOptions options_;
  uint64_t mask_;
  std::unique_ptr<Cell[]> cells_;
  // Seqlock over the whole table: odd while a writer changes cells. Writes are logins and
  // logouts, orders of magnitude rarer than reads, so one sequence for the table costs readers
  // almost no retries and keeps backward-shift deletion (entries move between cells) safe.
  alignas(64) std::atomic<uint64_t> sequence_{0};
  alignas(64) std::atomic<size_t> size_{0};
  mutable std::atomic<uint64_t> read_retries_{0};
  mutable std::mutex write_mutex_;
  DirectoryStats stats_;  // writer counters, under write_mutex_
  void (*mid_write_hook_)() = nullptr;
};

}  // namespace herald::dataplane::routing

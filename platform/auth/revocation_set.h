// The set of revoked devices and accounts a token verifier checks, in fixed memory: "tokens for
// (account, device) -- or every device of account -- issued before T are no longer valid"
// (schemas/ipc.fbs Revocation). Lookups never allocate; it is read on every dataplane login.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "platform/auth/account_id.h"

namespace herald::auth {

class RevocationSet {
 public:
  static constexpr uint32_t kAllDevices = UINT32_MAX;

  // `retention_ms`: how long after issued_before_ms a revocation still matters, i.e. the longest
  // a token may live plus the verifier's clock skew; afterwards every token it could reject has
  // expired anyway and the entry is dropped.
  RevocationSet(uint32_t capacity, uint64_t retention_ms, std::array<uint64_t, 2> hash_key);

  enum class Added : uint8_t {
    kAdded,
    kUpdated,      // the key was there; issued_before only moves forward
    kRaisedFloor,  // full: see revoke()
  };
  // Records a revocation. When the table is full of live entries, the entry with the oldest
  // issued_before is dropped and the global floor is raised to its time, which rejects every
  // token (of anyone) issued before then. That fails safe -- a revocation is never lost, the
  // price is that some honest clients log in again -- and it is logged and counted by the
  // caller. Runs in O(capacity) only then; otherwise O(1).
  Added revoke(const AccountId& account, uint32_t device, uint64_t issued_before_ms,
               uint64_t now_ms);

  // True if a token for (account, device) issued at `issued_at_ms` is revoked.
  [[nodiscard]] bool is_revoked(const AccountId& account, uint32_t device,
                                uint64_t issued_at_ms) const;

  // Drops entries older than the retention window; returns how many. O(capacity): call it from
  // a timer, not per login.
  size_t purge(uint64_t now_ms);

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  uint64_t floor_ms() const { return floor_ms_; }

 private:
  struct Slot {
    AccountId account;
    uint32_t device = 0;
    bool used = false;
    uint64_t issued_before_ms = 0;
  };
  size_t home(const AccountId& account, uint32_t device) const;
  size_t find(const AccountId& account, uint32_t device) const;  // slots_.size() if absent
  void erase_at(size_t index);

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t capacity_ = 0;
  size_t size_ = 0;
  uint64_t retention_ms_ = 0;
  uint64_t floor_ms_ = 0;
  std::array<uint64_t, 2> hash_key_;
};

}  // namespace herald::auth

// An in-memory RegistrationStore for tests and development (nothing survives a restart).
#pragma once

#include <map>
#include <unordered_map>

#include "controlplane/registration/store.h"

namespace herald::registration {

class MemoryStore final : public RegistrationStore {
 public:
  std::optional<PendingCode> find_code(PhoneNumber phone) override;
  absl::Status put_code(PhoneNumber phone, const PendingCode& code) override;
  std::optional<Account> find_account_by_phone(PhoneNumber phone) override;
  std::optional<Account> find_account(const AccountId& id) override;
  std::optional<Device> find_device(const AccountId& account, uint32_t device_id) override;
  std::optional<Device> find_device_by_credential(const Digest& credential_hash) override;
  std::vector<Device> list_devices(const AccountId& account) override;
  absl::Status commit_registration(const RegistrationCommit& commit) override;

  // Test hook: the next write fails with this status (once).
  void fail_next_write(absl::Status status) { next_failure_ = std::move(status); }
  size_t pending_code_count() const { return codes_.size(); }

 private:
  using DeviceKey = std::tuple<uint64_t, uint64_t, uint32_t>;
  absl::Status take_failure();

  std::unordered_map<uint64_t, PendingCode> codes_;
  std::unordered_map<uint64_t, Account> accounts_;  // by phone value
  std::map<DeviceKey, Device> devices_;
  std::map<Digest, DeviceKey> by_credential_;  // active devices only
  absl::Status next_failure_;
};

}  // namespace herald::registration

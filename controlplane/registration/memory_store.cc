// In-memory RegistrationStore (see memory_store.h).
#include "controlplane/registration/memory_store.h"

namespace herald::registration {

absl::Status MemoryStore::take_failure() {
  absl::Status s = std::move(next_failure_);
  next_failure_ = absl::OkStatus();
  return s;
}

std::optional<PendingCode> MemoryStore::find_code(PhoneNumber phone) {
  auto it = codes_.find(phone.value());
  if (it == codes_.end()) return std::nullopt;
  return it->second;
}

absl::Status MemoryStore::put_code(PhoneNumber phone, const PendingCode& code) {
  if (absl::Status s = take_failure(); !s.ok()) return s;
  codes_[phone.value()] = code;
  return absl::OkStatus();
}

std::optional<Account> MemoryStore::find_account_by_phone(PhoneNumber phone) {
  auto it = accounts_.find(phone.value());
  if (it == accounts_.end()) return std::nullopt;
  return it->second;
}

std::optional<Account> MemoryStore::find_account(const AccountId& id) {
  // Linear: the memory store only serves tests.
  for (const auto& [phone, account] : accounts_) {
    if (account.id == id) return account;
  }
  return std::nullopt;
}

std::optional<Device> MemoryStore::find_device(const AccountId& account, uint32_t device_id) {
  auto it = devices_.find({account.hi, account.lo, device_id});
  if (it == devices_.end()) return std::nullopt;
  return it->second;
}

std::optional<Device> MemoryStore::find_device_by_credential(const Digest& credential_hash) {
  auto it = by_credential_.find(credential_hash);
  if (it == by_credential_.end()) return std::nullopt;
  return devices_.at(it->second);
}

std::vector<Device> MemoryStore::list_devices(const AccountId& account) {
  std::vector<Device> out;
  for (auto it = devices_.lower_bound({account.hi, account.lo, 0});
       it != devices_.end() && std::get<0>(it->first) == account.hi &&
       std::get<1>(it->first) == account.lo;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

absl::Status MemoryStore::commit_registration(const RegistrationCommit& commit) {
  if (absl::Status s = take_failure(); !s.ok()) return s;
  const AccountId& id = commit.account.id;
  for (uint32_t revoked : commit.revoked_device_ids) {
    auto it = devices_.find({id.hi, id.lo, revoked});
    if (it != devices_.end() && it->second.revoked_ms == 0) {
      it->second.revoked_ms = commit.device.created_ms;
      by_credential_.erase(it->second.credential_hash);
    }
  }
  DeviceKey key{id.hi, id.lo, commit.device.device_id};
  devices_[key] = commit.device;
  by_credential_[commit.device.credential_hash] = key;
  accounts_[commit.account.phone.value()] = commit.account;
  codes_.erase(commit.account.phone.value());
  return absl::OkStatus();
}

}  // namespace herald::registration

// What registration keeps durably, behind an interface: accounts by phone number, devices and
// pending codes. The in-memory implementation is for tests; the durable one comes with the
// storage engine (controlplane/storage/).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/phone_number.h"

namespace herald::registration {

enum class CodeMethod : uint8_t { kSms = 0, kVoice = 1 };

// A code waiting to be verified. Only its HMAC is kept (verification_code.h).
struct PendingCode {
  Digest code_hash{};
  uint64_t created_ms = 0;
  uint64_t expires_ms = 0;  // valid while now < expires_ms
  uint32_t attempts = 0;    // verify attempts made against this code
  CodeMethod method = CodeMethod::kSms;
};

struct Account {
  AccountId id;
  PhoneNumber phone;
  uint32_t primary_device_id = 0;  // 0 = none
  uint32_t next_device_id = 1;     // device ids are never reused within an account
  uint64_t created_ms = 0;
  // 0 = active. A disabled account cannot verify a code or create a session, and the admin
  // revokes all its tokens at the dataplane when disabling it.
  uint64_t disabled_ms = 0;
};

struct Device {
  AccountId account;
  uint32_t device_id = 0;
  std::string name;
  Digest credential_hash{};
  uint64_t created_ms = 0;
  uint64_t revoked_ms = 0;  // 0 = active
};

// Everything one successful verify changes, applied atomically by the store (one record in the
// durable engine), so a crash never leaves a new device without the old one revoked, or a
// consumed code still pending.
struct RegistrationCommit {
  Account account;  // created or updated (primary_device_id, next_device_id)
  bool new_account = false;
  Device device;  // the new primary device
  // On a re-registration: every active device of the account (the old primary and its linked
  // devices), revoked at device.created_ms. A number that changed hands must not leave the
  // previous owner's linked devices in the account.
  std::vector<uint32_t> revoked_device_ids;
};

class RegistrationStore {
 public:
  virtual ~RegistrationStore() = default;

  virtual std::optional<PendingCode> find_code(PhoneNumber phone) = 0;
  // Creates or replaces the phone's pending code (a new request replaces the old code; a wrong
  // guess stores the incremented attempt count before the answer goes out).
  virtual absl::Status put_code(PhoneNumber phone, const PendingCode& code) = 0;

  virtual std::optional<Account> find_account_by_phone(PhoneNumber phone) = 0;
  virtual std::optional<Account> find_account(const AccountId& id) = 0;
  virtual std::optional<Device> find_device(const AccountId& account, uint32_t device_id) = 0;
  // Active devices only: a revoked device's credential no longer finds it.
  virtual std::optional<Device> find_device_by_credential(const Digest& credential_hash) = 0;
  // Every device of `account`, revoked ones included, by device id.
  virtual std::vector<Device> list_devices(const AccountId& account) = 0;

  // Applies `commit` and deletes the phone's pending code, all or nothing.
  virtual absl::Status commit_registration(const RegistrationCommit& commit) = 0;
};

}  // namespace herald::registration

// The durable RegistrationStore: accounts, devices, pending codes and their indexes as records
// in the catalog's tables (storage::Tables), plus the node's registration secrets (the code
// HMAC key and the session-token key ring) in kNodeMeta. The admin operations (disable an
// account, list and revoke devices) live here too, next to the encoding they change.
//
// Tables and keys (all integers big-endian in keys, so byte order is numeric order):
//   kCodes            phone u64                      -> PendingCode record
//   kAccounts         account id (hi u64, lo u64)    -> Account record
//   kPhoneIndex       phone u64                      -> account id (16 bytes)
//   kDevices          account id, device id u32      -> Device record
//   kCredentialIndex  credential SHA-256 (32 bytes)  -> account id, device id (active only)
//   kNodeMeta         "registration/node_secret"     -> version byte + 32 bytes
//                     "registration/key_ring"        -> version byte, u64 rotated_at_ms, KeyRing
// Records start with a version byte (1) and hold fixed little-endian fields, so a later
// version can append fields and still read the old ones.
//
// Single-threaded (the control plane's loop). Every mutation is one Tables::apply() batch, so a
// crash keeps all of it or none; callers answer only after Tables::barrier().
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/store.h"
#include "controlplane/storage/tables.h"

namespace herald::registration {

inline constexpr size_t kNodeSecretBytes = 32;

// The key ring as persisted, with the time of its last rotation (rotation is due a fixed
// interval after it).
struct StoredKeyRing {
  KeyRing ring;
  uint64_t rotated_at_ms = 0;
};

class CatalogStore final : public RegistrationStore {
 public:
  explicit CatalogStore(storage::Tables& tables) : tables_(tables) {}

  // --- RegistrationStore ------------------------------------------------------------------
  std::optional<PendingCode> find_code(PhoneNumber phone) override;
  absl::Status put_code(PhoneNumber phone, const PendingCode& code) override;
  std::optional<Account> find_account_by_phone(PhoneNumber phone) override;
  std::optional<Account> find_account(const AccountId& id) override;
  std::optional<Device> find_device(const AccountId& account, uint32_t device_id) override;
  std::optional<Device> find_device_by_credential(const Digest& credential_hash) override;
  // One batch: account, phone index, new device and its credential index, the old primary
  // revoked (record updated, credential index erased), the pending code erased.
  absl::Status commit_registration(const RegistrationCommit& commit) override;

  // A linked (not primary) device added to an existing account in one batch: the device and its
  // credential index, and the account with next_device_id advanced past it (the caller passes
  // the account so updated). No pending code is touched (device_linker.h).
  absl::Status commit_linked_device(const Account& account, const Device& device);

  // --- Admin ------------------------------------------------------------------------------
  // Every device of `account` (revoked ones included), by device id.
  std::vector<Device> list_devices(const AccountId& account) override;
  // Sets disabled_ms (NotFound for an unknown account). Idempotent: an already disabled
  // account keeps its first disabled_ms and nothing is written. Devices stay as they are (the
  // session check refuses a disabled account); the caller revokes the account's tokens at the
  // dataplane.
  absl::StatusOr<Account> disable_account(const AccountId& id, uint64_t now_ms);
  // Revokes one device: revoked_ms = now, credential index erased, and the account's primary
  // cleared if it was this device. NotFound for an unknown account or device; an already
  // revoked device is returned unchanged.
  absl::StatusOr<Device> revoke_device(const AccountId& account, uint32_t device_id,
                                       uint64_t now_ms);

  // --- Device lists for the dataplane (ipc DeviceListResponse / DeviceListPush) ----------
  struct DeviceList {
    std::vector<uint32_t> devices;  // active (not revoked) device ids, ascending
    // Devices ever added plus devices revoked: grows by at least one with every change of the
    // list (ids are never reused and a revoked device never returns), and needs no field of
    // its own on disk.
    uint64_t version = 0;
  };
  // nullopt for an unknown account. A disabled account keeps its list (its sessions are
  // refused at login; routing still queues for it, as for any offline device).
  std::optional<DeviceList> device_list(const AccountId& account);
  // Called with the account once a change of its devices is durable (after a barrier over
  // the batch): a registration (and the old primary it revokes) and revoke_device. The
  // control plane pushes the new list to the dataplane from here.
  void set_devices_changed_hook(std::function<void(const AccountId&)> hook) {
    devices_changed_ = std::move(hook);
  }

  // --- Node secrets -----------------------------------------------------------------------
  // The code HMAC key, created from the CSPRNG and stored on first use. Codes issued before a
  // restart keep verifying because the key survives it.
  // Erases pending codes that expired (or are unreadable), looking at no more than
  // `max_keys` codes from where the last call stopped, in one batch: bounded work per call, so
  // the control plane's tick keeps the table from filling with numbers that never verify.
  // Returns how many were erased; the store's error when the batch is refused.
  absl::StatusOr<size_t> sweep_expired_codes(uint64_t now_ms, size_t max_keys);

  absl::StatusOr<std::vector<uint8_t>> load_or_create_node_secret();
  // The persisted key ring, or a new one (stored before it is returned) on first start.
  absl::StatusOr<StoredKeyRing> load_or_create_key_ring(const KeyRingOptions& options,
                                                        uint64_t now_ms);
  // Stores the ring; call after every rotate()/drop_expired() and before signing with it.
  absl::Status save_key_ring(const KeyRing& ring, uint64_t rotated_at_ms);

  // Record encodings (public for tests of the format).
  static std::string encode_code(const PendingCode& code);
  static std::optional<PendingCode> decode_code(std::string_view bytes);
  static std::string encode_account(const Account& account);
  static std::optional<Account> decode_account(const AccountId& id, std::string_view bytes);
  static std::string encode_device(const Device& device);
  static std::optional<Device> decode_device(const AccountId& account, uint32_t device_id,
                                             std::string_view bytes);

  // Records that failed to decode since construction (corruption or a newer format): each is
  // treated as absent and logged.
  uint64_t decode_errors() const { return decode_errors_; }

 private:
  void note_decode_error(storage::TableId table);
  void notify_devices_changed(const AccountId& account);

  storage::Tables& tables_;
  uint64_t decode_errors_ = 0;
  std::string sweep_cursor_;  // the kCodes key the next sweep starts after
  std::function<void(const AccountId&)> devices_changed_;
};

}  // namespace herald::registration

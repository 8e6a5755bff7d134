// The durable RegistrationStore over the catalog's tables (see catalog_store.h).
#include "controlplane/registration/catalog_store.h"

#include <cstring>

#include "platform/log/log.h"

namespace herald::registration {

namespace {

using storage::Mutation;
using storage::TableId;

constexpr uint8_t kRecordVersion = 1;
constexpr std::string_view kNodeSecretKey = "registration/node_secret";
constexpr std::string_view kKeyRingKey = "registration/key_ring";

// --- Little-endian record fields ---------------------------------------------------------

void put_u8(std::string& out, uint8_t v) {
  out.push_back(static_cast<char>(v));
}
void put_le(std::string& out, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_bytes(std::string& out, std::span<const uint8_t> bytes) {
  out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Reads fields in order; any read past the end sets failed() and returns zeros.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  uint64_t le(size_t n) {
    if (!take(n)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i)
      v |= uint64_t{static_cast<uint8_t>(bytes_[pos_ - n + i])} << (8 * i);
    return v;
  }
  void bytes(std::span<uint8_t> out) {
    if (!take(out.size())) return;
    std::memcpy(out.data(), bytes_.data() + pos_ - out.size(), out.size());
  }
  std::string_view view(size_t n) {
    if (!take(n)) return {};
    return bytes_.substr(pos_ - n, n);
  }
  bool failed() const { return failed_; }

 private:
  bool take(size_t n) {
    if (failed_ || bytes_.size() - pos_ < n) {
      failed_ = true;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::string_view bytes_;
  size_t pos_ = 0;
  bool failed_ = false;
};

// --- Big-endian keys ---------------------------------------------------------------------

void put_be(std::string& out, uint64_t v, size_t bytes) {
  for (size_t i = bytes; i-- > 0;) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_be(std::string_view in, size_t offset, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[offset + i]);
  return v;
}

std::string phone_key(PhoneNumber phone) {
  std::string k;
  put_be(k, phone.value(), 8);
  return k;
}
std::string account_key(const AccountId& id) {
  std::string k;
  put_be(k, id.hi, 8);
  put_be(k, id.lo, 8);
  return k;
}
std::string device_key(const AccountId& id, uint32_t device_id) {
  std::string k = account_key(id);
  put_be(k, device_id, 4);
  return k;
}
std::string credential_key(const Digest& hash) {
  return std::string(reinterpret_cast<const char*>(hash.data()), hash.size());
}
std::optional<AccountId> account_from(std::string_view bytes) {
  if (bytes.size() < 16) return std::nullopt;
  return AccountId{get_be(bytes, 0, 8), get_be(bytes, 8, 8)};
}

}  // namespace

// --- Encodings ---------------------------------------------------------------------------

std::string CatalogStore::encode_code(const PendingCode& code) {
  std::string out;
  put_u8(out, kRecordVersion);
  put_bytes(out, code.code_hash);
  put_le(out, code.created_ms, 8);
  put_le(out, code.expires_ms, 8);
  put_le(out, code.attempts, 4);
  put_u8(out, static_cast<uint8_t>(code.method));
  return out;
}

std::optional<PendingCode> CatalogStore::decode_code(std::string_view bytes) {
  Reader r(bytes);
  if (r.le(1) != kRecordVersion) return std::nullopt;
  PendingCode code;
  r.bytes(code.code_hash);
  code.created_ms = r.le(8);
  code.expires_ms = r.le(8);
  code.attempts = static_cast<uint32_t>(r.le(4));
  uint64_t method = r.le(1);
  if (r.failed() || method > 1) return std::nullopt;
  code.method = static_cast<CodeMethod>(method);
  return code;
}

std::string CatalogStore::encode_account(const Account& account) {
  std::string out;
  put_u8(out, kRecordVersion);
  put_le(out, account.phone.value(), 8);
  put_le(out, account.primary_device_id, 4);
  put_le(out, account.next_device_id, 4);
  put_le(out, account.created_ms, 8);
  put_le(out, account.disabled_ms, 8);
  return out;
}

std::optional<Account> CatalogStore::decode_account(const AccountId& id, std::string_view bytes) {
  Reader r(bytes);
  if (r.le(1) != kRecordVersion) return std::nullopt;
  Account account;
  account.id = id;
  uint64_t phone = r.le(8);
  account.primary_device_id = static_cast<uint32_t>(r.le(4));
  account.next_device_id = static_cast<uint32_t>(r.le(4));
  account.created_ms = r.le(8);
  account.disabled_ms = r.le(8);
  if (r.failed() || phone == 0) return std::nullopt;
  account.phone = PhoneNumber::from_value(phone);
  return account;
}

std::string CatalogStore::encode_device(const Device& device) {
  std::string out;
  put_u8(out, kRecordVersion);
  put_le(out, device.created_ms, 8);
  put_le(out, device.revoked_ms, 8);
  put_bytes(out, device.credential_hash);
  // Device names are at most kMaxDeviceNameBytes (64) long, checked by the registrar.
  put_le(out, device.name.size(), 2);
  out.append(device.name);
  return out;
}

std::optional<Device> CatalogStore::decode_device(const AccountId& account, uint32_t device_id,
                                                  std::string_view bytes) {
  Reader r(bytes);
  if (r.le(1) != kRecordVersion) return std::nullopt;
  Device device;
  device.account = account;
  device.device_id = device_id;
  device.created_ms = r.le(8);
  device.revoked_ms = r.le(8);
  r.bytes(device.credential_hash);
  size_t name_size = r.le(2);
  device.name = std::string(r.view(name_size));
  if (r.failed()) return std::nullopt;
  return device;
}

void CatalogStore::note_decode_error(TableId table) {
  ++decode_errors_;
  HLOG_RATE_LIMITED(kError, "registration.record_undecodable", 1)
      .kv("table", std::string(storage::table_name(table)));
}

// --- RegistrationStore -------------------------------------------------------------------

std::optional<PendingCode> CatalogStore::find_code(PhoneNumber phone) {
  const std::string* value = tables_.find(TableId::kCodes, phone_key(phone));
  if (value == nullptr) return std::nullopt;
  std::optional<PendingCode> code = decode_code(*value);
  if (!code) note_decode_error(TableId::kCodes);
  return code;
}

absl::Status CatalogStore::put_code(PhoneNumber phone, const PendingCode& code) {
  return tables_.put(TableId::kCodes, phone_key(phone), encode_code(code));
}

std::optional<Account> CatalogStore::find_account_by_phone(PhoneNumber phone) {
  const std::string* value = tables_.find(TableId::kPhoneIndex, phone_key(phone));
  if (value == nullptr) return std::nullopt;
  std::optional<AccountId> id = account_from(*value);
  if (!id) {
    note_decode_error(TableId::kPhoneIndex);
    return std::nullopt;
  }
  return find_account(*id);
}

std::optional<Account> CatalogStore::find_account(const AccountId& id) {
  const std::string* value = tables_.find(TableId::kAccounts, account_key(id));
  if (value == nullptr) return std::nullopt;
  std::optional<Account> account = decode_account(id, *value);
  if (!account) note_decode_error(TableId::kAccounts);
  return account;
}

std::optional<Device> CatalogStore::find_device(const AccountId& account, uint32_t device_id) {
  const std::string* value = tables_.find(TableId::kDevices, device_key(account, device_id));
  if (value == nullptr) return std::nullopt;
  std::optional<Device> device = decode_device(account, device_id, *value);
  if (!device) note_decode_error(TableId::kDevices);
  return device;
}

std::optional<Device> CatalogStore::find_device_by_credential(const Digest& credential_hash) {
  const std::string* value =
      tables_.find(TableId::kCredentialIndex, credential_key(credential_hash));
  if (value == nullptr) return std::nullopt;
  std::optional<AccountId> account = account_from(*value);
  if (!account || value->size() != 20) {
    note_decode_error(TableId::kCredentialIndex);
    return std::nullopt;
  }
  std::optional<Device> device =
      find_device(*account, static_cast<uint32_t>(get_be(*value, 16, 4)));
  if (!device || device->revoked_ms != 0) return std::nullopt;
  return device;
}

absl::Status CatalogStore::commit_registration(const RegistrationCommit& commit) {
  const AccountId& id = commit.account.id;
  std::vector<Mutation> batch;
  batch.reserve(7);
  for (uint32_t revoked : commit.revoked_device_ids) {
    std::optional<Device> old = find_device(id, revoked);
    if (old && old->revoked_ms == 0) {
      old->revoked_ms = commit.device.created_ms;
      batch.push_back(
          Mutation::put(TableId::kDevices, device_key(id, old->device_id), encode_device(*old)));
      batch.push_back(
          Mutation::erase(TableId::kCredentialIndex, credential_key(old->credential_hash)));
    }
  }
  std::string index_value = account_key(id);
  put_be(index_value, commit.device.device_id, 4);
  batch.push_back(Mutation::put(TableId::kDevices, device_key(id, commit.device.device_id),
                                encode_device(commit.device)));
  batch.push_back(Mutation::put(TableId::kCredentialIndex,
                                credential_key(commit.device.credential_hash), index_value));
  batch.push_back(
      Mutation::put(TableId::kAccounts, account_key(id), encode_account(commit.account)));
  if (commit.new_account) {
    batch.push_back(
        Mutation::put(TableId::kPhoneIndex, phone_key(commit.account.phone), account_key(id)));
  }
  batch.push_back(Mutation::erase(TableId::kCodes, phone_key(commit.account.phone)));
  if (absl::Status applied = tables_.apply(batch); !applied.ok()) return applied;
  notify_devices_changed(id);
  return absl::OkStatus();
}

absl::Status CatalogStore::commit_linked_device(const Account& account, const Device& device) {
  std::string index_value = account_key(account.id);
  put_be(index_value, device.device_id, 4);
  const Mutation batch[] = {
      Mutation::put(TableId::kDevices, device_key(account.id, device.device_id),
                    encode_device(device)),
      Mutation::put(TableId::kCredentialIndex, credential_key(device.credential_hash), index_value),
      Mutation::put(TableId::kAccounts, account_key(account.id), encode_account(account)),
  };
  if (absl::Status applied = tables_.apply(batch); !applied.ok()) return applied;
  notify_devices_changed(account.id);
  return absl::OkStatus();
}

// --- Admin -------------------------------------------------------------------------------

std::vector<Device> CatalogStore::list_devices(const AccountId& account) {
  std::vector<Device> devices;
  const std::string prefix = account_key(account);
  tables_.scan(TableId::kDevices, prefix, [&](std::string_view key, std::string_view value) {
    if (key.size() != 20 || key.substr(0, 16) != prefix) return false;
    auto device_id = static_cast<uint32_t>(get_be(key, 16, 4));
    std::optional<Device> device = decode_device(account, device_id, value);
    if (device) {
      devices.push_back(std::move(*device));
    } else {
      ++decode_errors_;
    }
    return true;
  });
  return devices;
}

absl::StatusOr<Account> CatalogStore::disable_account(const AccountId& id, uint64_t now_ms) {
  std::optional<Account> account = find_account(id);
  if (!account) return absl::NotFoundError("no such account");
  if (account->disabled_ms != 0) return *account;
  account->disabled_ms = now_ms == 0 ? 1 : now_ms;
  absl::Status s = tables_.put(TableId::kAccounts, account_key(id), encode_account(*account));
  if (!s.ok()) return s;
  return *account;
}

absl::StatusOr<Device> CatalogStore::revoke_device(const AccountId& account_id, uint32_t device_id,
                                                   uint64_t now_ms) {
  std::optional<Account> account = find_account(account_id);
  if (!account) return absl::NotFoundError("no such account");
  std::optional<Device> device = find_device(account_id, device_id);
  if (!device) return absl::NotFoundError("no such device");
  if (device->revoked_ms != 0) return *device;
  device->revoked_ms = now_ms == 0 ? 1 : now_ms;
  std::vector<Mutation> batch;
  batch.push_back(
      Mutation::put(TableId::kDevices, device_key(account_id, device_id), encode_device(*device)));
  batch.push_back(
      Mutation::erase(TableId::kCredentialIndex, credential_key(device->credential_hash)));
  if (account->primary_device_id == device_id) {
    account->primary_device_id = 0;
    batch.push_back(
        Mutation::put(TableId::kAccounts, account_key(account_id), encode_account(*account)));
  }
  if (absl::Status s = tables_.apply(batch); !s.ok()) return s;
  notify_devices_changed(account_id);
  return *device;
}

std::optional<CatalogStore::DeviceList> CatalogStore::device_list(const AccountId& account) {
  const std::optional<Account> found = find_account(account);
  if (!found) return std::nullopt;
  DeviceList list;
  uint64_t revoked = 0;
  for (const Device& d : list_devices(account)) {  // by device id: ascending
    if (d.revoked_ms == 0) {
      list.devices.push_back(d.device_id);
    } else {
      ++revoked;
    }
  }
  list.version = uint64_t{found->next_device_id > 0 ? found->next_device_id - 1 : 0} + revoked;
  return list;
}

void CatalogStore::notify_devices_changed(const AccountId& account) {
  if (!devices_changed_) return;
  // Only once durable: a dataplane must not address a device a crash could still take back
  // (its id would be handed out again).
  tables_.barrier([hook = devices_changed_, account](const absl::Status& status) {
    if (status.ok()) hook(account);
  });
}

// --- Node secrets ------------------------------------------------------------------------

absl::StatusOr<size_t> CatalogStore::sweep_expired_codes(uint64_t now_ms, size_t max_keys) {
  std::vector<Mutation> batch;
  size_t seen = 0;
  std::string last;
  const std::string from = sweep_cursor_.empty() ? std::string() : sweep_cursor_ + '\0';
  tables_.scan(TableId::kCodes, from, [&](std::string_view key, std::string_view value) {
    if (seen++ == max_keys) return false;
    last = std::string(key);
    const std::optional<PendingCode> code = decode_code(value);
    if (!code || code->expires_ms <= now_ms) batch.push_back(Mutation::erase(TableId::kCodes, key));
    return true;
  });
  // Past the end: the next sweep starts over from the first code.
  sweep_cursor_ = seen > max_keys ? last : std::string();
  if (batch.empty()) return size_t{0};
  if (absl::Status s = tables_.apply(batch); !s.ok()) return s;
  return batch.size();
}

absl::StatusOr<std::vector<uint8_t>> CatalogStore::load_or_create_node_secret() {
  if (const std::string* value = tables_.find(TableId::kNodeMeta, kNodeSecretKey)) {
    if (value->size() != 1 + kNodeSecretBytes ||
        static_cast<uint8_t>((*value)[0]) != kRecordVersion) {
      // Never silently replace it: every pending code would stop verifying, and a corrupt
      // secret means the catalog itself is damaged.
      return absl::DataLossError("registration node secret record is malformed");
    }
    return std::vector<uint8_t>(value->begin() + 1, value->end());
  }
  std::vector<uint8_t> secret(kNodeSecretBytes);
  random_bytes(secret);
  std::string record;
  put_u8(record, kRecordVersion);
  put_bytes(record, secret);
  if (absl::Status s = tables_.put(TableId::kNodeMeta, kNodeSecretKey, record); !s.ok()) return s;
  HLOG_INFO("registration.node_secret_created");
  return secret;
}

absl::StatusOr<StoredKeyRing> CatalogStore::load_or_create_key_ring(const KeyRingOptions& options,
                                                                    uint64_t now_ms) {
  if (const std::string* value = tables_.find(TableId::kNodeMeta, kKeyRingKey)) {
    Reader r(*value);
    uint64_t version = r.le(1);
    uint64_t rotated_at_ms = r.le(8);
    if (r.failed() || version != kRecordVersion) {
      return absl::DataLossError("registration key ring record is malformed");
    }
    std::string_view ring_bytes = std::string_view(*value).substr(9);
    absl::StatusOr<KeyRing> ring = KeyRing::parse(
        std::span(reinterpret_cast<const uint8_t*>(ring_bytes.data()), ring_bytes.size()), options);
    if (!ring.ok()) return ring.status();
    return StoredKeyRing{std::move(*ring), rotated_at_ms};
  }
  KeyRing ring = KeyRing::create(options, now_ms);
  if (absl::Status s = save_key_ring(ring, now_ms); !s.ok()) return s;
  HLOG_INFO("registration.key_ring_created").kv("key_id", ring.signing_key().key_id);
  return StoredKeyRing{std::move(ring), now_ms};
}

absl::Status CatalogStore::save_key_ring(const KeyRing& ring, uint64_t rotated_at_ms) {
  std::string record;
  put_u8(record, kRecordVersion);
  put_le(record, rotated_at_ms, 8);
  std::vector<uint8_t> bytes = ring.serialize();
  put_bytes(record, bytes);
  return tables_.put(TableId::kNodeMeta, kKeyRingKey, record);
}

}  // namespace herald::registration

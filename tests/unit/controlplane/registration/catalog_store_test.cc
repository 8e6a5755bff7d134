// Tests for CatalogStore: record encodings, the atomic registration commit, admin operations,
// the registrar running on it, and secrets that survive a "restart" (a new store over the same
// tables).
#include "controlplane/registration/catalog_store.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <string>

#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/credential.h"
#include "controlplane/registration/registrar.h"

namespace herald::registration {
namespace {

using storage::MemoryTables;
using storage::TableId;

constexpr uint64_t kT0 = 1'700'000'000'000;

class RecordingGateway final : public CodeGateway {
 public:
  absl::Status send_code(PhoneNumber, CodeMethod, std::string_view code, uint64_t) override {
    last_code = std::string(code);
    return absl::OkStatus();
  }
  std::string last_code;
};

class CatalogStoreTest : public ::testing::Test {
 protected:
  CatalogStoreTest()
      : tables_([this](std::function<void()> fn) { deferred_.push_back(std::move(fn)); }),
        store_(tables_) {}

  PhoneNumber phone(std::string_view text) { return parse_phone_number(text).number; }

  std::deque<std::function<void()>> deferred_;
  MemoryTables tables_;
  CatalogStore store_;
};

TEST_F(CatalogStoreTest, RecordsRoundTrip) {
  PendingCode code;
  code.code_hash[0] = 7;
  code.code_hash[31] = 9;
  code.created_ms = kT0;
  code.expires_ms = kT0 + 600'000;
  code.attempts = 3;
  code.method = CodeMethod::kVoice;
  std::optional<PendingCode> c = CatalogStore::decode_code(CatalogStore::encode_code(code));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->code_hash, code.code_hash);
  EXPECT_EQ(c->expires_ms, code.expires_ms);
  EXPECT_EQ(c->attempts, 3u);
  EXPECT_EQ(c->method, CodeMethod::kVoice);

  Account a{AccountId{1, 2}, phone("+15551234567"), 4, 5, kT0, kT0 + 1};
  std::optional<Account> a2 = CatalogStore::decode_account(a.id, CatalogStore::encode_account(a));
  ASSERT_TRUE(a2);
  EXPECT_EQ(a2->phone, a.phone);
  EXPECT_EQ(a2->primary_device_id, 4u);
  EXPECT_EQ(a2->next_device_id, 5u);
  EXPECT_EQ(a2->disabled_ms, kT0 + 1);

  Device d{AccountId{1, 2}, 4, "pixel \xc3\xa9", {}, kT0, 0};
  d.credential_hash[5] = 0xaa;
  std::optional<Device> d2 =
      CatalogStore::decode_device(d.account, 4, CatalogStore::encode_device(d));
  ASSERT_TRUE(d2);
  EXPECT_EQ(d2->name, d.name);
  EXPECT_EQ(d2->credential_hash, d.credential_hash);
}

TEST_F(CatalogStoreTest, TruncatedOrUnknownVersionRecordsAreRefused) {
  std::string code = CatalogStore::encode_code(PendingCode{});
  for (size_t n = 0; n < code.size(); ++n) {
    EXPECT_FALSE(CatalogStore::decode_code(code.substr(0, n))) << n;
  }
  code[0] = 2;
  EXPECT_FALSE(CatalogStore::decode_code(code));
  Device d{AccountId{1, 2}, 4, "pixel", {}, kT0, 0};
  std::string dev = CatalogStore::encode_device(d);
  EXPECT_FALSE(CatalogStore::decode_device(d.account, 4, dev.substr(0, dev.size() - 1)));
  // A corrupt record in the table reads as absent and is counted.
  ASSERT_TRUE(tables_.put(TableId::kCodes, std::string(8, '\0'), "\x01garbage").ok());
  EXPECT_FALSE(store_.find_code(PhoneNumber::from_value(0)));
  EXPECT_EQ(store_.decode_errors(), 1u);
}

// Drives the registrar over the catalog store: the full flow, then a re-registration.
TEST_F(CatalogStoreTest, RegistrarFlowAndReRegistration) {
  RecordingGateway gateway;
  absl::StatusOr<std::vector<uint8_t>> secret = store_.load_or_create_node_secret();
  ASSERT_TRUE(secret.ok());
  Registrar registrar({}, store_, gateway, *secret);
  KeyRing ring = KeyRing::create({}, kT0);
  SourceAddress source = *SourceAddress::parse("192.0.2.1");

  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kOk);
  EXPECT_EQ(tables_.size(TableId::kCodes), 1u);
  VerifyResult first = registrar.verify("+15551234567", gateway.last_code, "pixel", kT0 + 1);
  ASSERT_EQ(first.error, RegistrationError::kOk);
  EXPECT_TRUE(first.new_account);
  EXPECT_EQ(first.device_id, 1u);
  EXPECT_EQ(tables_.size(TableId::kCodes), 0u);
  EXPECT_EQ(tables_.size(TableId::kAccounts), 1u);
  EXPECT_EQ(tables_.size(TableId::kPhoneIndex), 1u);
  EXPECT_EQ(tables_.size(TableId::kCredentialIndex), 1u);
  ASSERT_EQ(registrar.create_session(first.credential, ring, kT0 + 2).error,
            RegistrationError::kOk);

  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0 + 120'000).error,
            RegistrationError::kOk);
  VerifyResult second = registrar.verify("+15551234567", gateway.last_code, "new", kT0 + 120'001);
  ASSERT_EQ(second.error, RegistrationError::kOk);
  EXPECT_FALSE(second.new_account);
  EXPECT_EQ(second.account, first.account);
  EXPECT_EQ(second.device_id, 2u);
  EXPECT_EQ(second.revoked_device_ids, std::vector<uint32_t>{1u});
  // The old credential no longer finds a device; the old device is kept, revoked.
  EXPECT_EQ(registrar.create_session(first.credential, ring, kT0 + 120'002).error,
            RegistrationError::kInvalidCredential);
  EXPECT_EQ(registrar.create_session(second.credential, ring, kT0 + 120'002).error,
            RegistrationError::kOk);
  EXPECT_EQ(tables_.size(TableId::kCredentialIndex), 1u);
  std::vector<Device> devices = store_.list_devices(first.account);
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].revoked_ms, kT0 + 120'001);
  EXPECT_EQ(devices[1].revoked_ms, 0u);
  EXPECT_EQ(store_.find_account(first.account)->primary_device_id, 2u);
}

// Forwards to MemoryTables but refuses multi-mutation batches (the registration commit), so
// the test sees exactly what a refused commit leaves behind.
class RefuseCommitTables final : public storage::Tables {
 public:
  explicit RefuseCommitTables(storage::Tables& inner) : inner_(inner) {}
  absl::Status apply(std::span<const storage::Mutation> batch) override {
    if (batch.size() > 1) return absl::ResourceExhaustedError("backpressure");
    return inner_.apply(batch);
  }
  const std::string* find(TableId table, std::string_view key) const override {
    return inner_.find(table, key);
  }
  void scan(TableId table, std::string_view from, const storage::ScanFn& fn) const override {
    inner_.scan(table, from, fn);
  }
  size_t size(TableId table) const override { return inner_.size(table); }
  void barrier(storage::BarrierCallback done) override { inner_.barrier(std::move(done)); }
  const absl::Status& status() const override { return inner_.status(); }

 private:
  storage::Tables& inner_;
};

TEST_F(CatalogStoreTest, CommitIsAllOrNothing) {
  RefuseCommitTables refusing(tables_);
  CatalogStore store(refusing);
  RecordingGateway gateway;
  std::vector<uint8_t> secret(32, 1);
  Registrar registrar({}, store, gateway, secret);
  SourceAddress source = *SourceAddress::parse("192.0.2.1");
  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kOk);
  EXPECT_EQ(registrar.verify("+15551234567", gateway.last_code, "pixel", kT0 + 1).error,
            RegistrationError::kStoreFailed);
  EXPECT_EQ(tables_.size(TableId::kAccounts), 0u);
  EXPECT_EQ(tables_.size(TableId::kDevices), 0u);
  EXPECT_EQ(tables_.size(TableId::kPhoneIndex), 0u);
  EXPECT_EQ(tables_.size(TableId::kCredentialIndex), 0u);
  ASSERT_EQ(tables_.size(TableId::kCodes), 1u);
  // The attempt was counted (a single put) before the refused commit.
  EXPECT_EQ(store.find_code(parse_phone_number("+15551234567").number)->attempts, 1u);

  // Once the store fails for good, a code request stores nothing either.
  tables_.fail_for_test(absl::FailedPreconditionError("disk gone"));
  EXPECT_EQ(registrar.request_code("+15557654321", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kStoreFailed);
  EXPECT_EQ(tables_.size(TableId::kCodes), 1u);
}

TEST_F(CatalogStoreTest, DisableAndRevoke) {
  RecordingGateway gateway;
  std::vector<uint8_t> secret(32, 1);
  Registrar registrar({}, store_, gateway, secret);
  KeyRing ring = KeyRing::create({}, kT0);
  SourceAddress source = *SourceAddress::parse("192.0.2.1");
  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kOk);
  VerifyResult v = registrar.verify("+15551234567", gateway.last_code, "pixel", kT0 + 1);
  ASSERT_EQ(v.error, RegistrationError::kOk);

  // Revoking the primary clears it; the credential stops working; revoking twice is a no-op.
  absl::StatusOr<Device> revoked = store_.revoke_device(v.account, v.device_id, kT0 + 5);
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->revoked_ms, kT0 + 5);
  EXPECT_EQ(store_.find_account(v.account)->primary_device_id, 0u);
  EXPECT_EQ(registrar.create_session(v.credential, ring, kT0 + 6).error,
            RegistrationError::kInvalidCredential);
  EXPECT_EQ(store_.revoke_device(v.account, v.device_id, kT0 + 9)->revoked_ms, kT0 + 5);
  EXPECT_EQ(store_.revoke_device(v.account, 99, kT0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.revoke_device(AccountId{5, 5}, 1, kT0).status().code(),
            absl::StatusCode::kNotFound);

  // Register again (new device), then disable: no session, no verify.
  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0 + 120'000).error,
            RegistrationError::kOk);
  VerifyResult v2 = registrar.verify("+15551234567", gateway.last_code, "pixel", kT0 + 120'001);
  ASSERT_EQ(v2.error, RegistrationError::kOk);
  EXPECT_TRUE(v2.revoked_device_ids.empty());  // the only device was already revoked
  absl::StatusOr<Account> disabled = store_.disable_account(v.account, kT0 + 130'000);
  ASSERT_TRUE(disabled.ok());
  EXPECT_EQ(disabled->disabled_ms, kT0 + 130'000);
  EXPECT_EQ(store_.disable_account(v.account, kT0 + 140'000)->disabled_ms, kT0 + 130'000);
  EXPECT_EQ(registrar.create_session(v2.credential, ring, kT0 + 130'001).error,
            RegistrationError::kAccountDisabled);
  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0 + 240'000).error,
            RegistrationError::kOk);
  EXPECT_EQ(registrar.verify("+15551234567", gateway.last_code, "pixel", kT0 + 240'001).error,
            RegistrationError::kAccountDisabled);
  EXPECT_EQ(store_.disable_account(AccountId{5, 5}, kT0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CatalogStoreTest, SweepErasesExpiredCodesInBoundedSteps) {
  // 10 codes: even numbers expire at kT0 + 1000, odd ones at kT0 + 5000.
  for (uint64_t i = 0; i < 10; ++i) {
    PendingCode code;
    code.created_ms = kT0;
    code.expires_ms = kT0 + (i % 2 == 0 ? 1000 : 5000);
    ASSERT_TRUE(store_.put_code(PhoneNumber::from_value(15550000000 + i), code).ok());
  }
  ASSERT_TRUE(tables_.put(TableId::kCodes, std::string(8, '\xff'), "garbage").ok());
  // Nothing has expired yet: only the unreadable record goes, over a full pass in steps of 3.
  size_t unreadable = 0;
  for (int step = 0; step < 4; ++step) unreadable += *store_.sweep_expired_codes(kT0, 3);
  EXPECT_EQ(unreadable, 1u);
  EXPECT_EQ(tables_.size(TableId::kCodes), 10u);
  // Steps of 3 keys: the even ones go over several calls, the odd ones stay.
  size_t erased = 0;
  for (int step = 0; step < 4; ++step) erased += *store_.sweep_expired_codes(kT0 + 1000, 3);
  EXPECT_EQ(erased, 5u);
  EXPECT_EQ(tables_.size(TableId::kCodes), 5u);
  EXPECT_TRUE(store_.find_code(PhoneNumber::from_value(15550000001)).has_value());
  EXPECT_FALSE(store_.find_code(PhoneNumber::from_value(15550000000)).has_value());
  // A refused batch is an error and erases nothing.
  tables_.fail_for_test(absl::UnavailableError("disk"));
  EXPECT_FALSE(store_.sweep_expired_codes(kT0 + 9000, 100).ok());
  EXPECT_EQ(tables_.size(TableId::kCodes), 5u);
}

TEST_F(CatalogStoreTest, SecretsSurviveARestart) {
  absl::StatusOr<std::vector<uint8_t>> secret = store_.load_or_create_node_secret();
  ASSERT_TRUE(secret.ok());
  ASSERT_EQ(secret->size(), kNodeSecretBytes);
  absl::StatusOr<StoredKeyRing> ring = store_.load_or_create_key_ring({}, kT0);
  ASSERT_TRUE(ring.ok());
  EXPECT_EQ(ring->rotated_at_ms, kT0);
  ASSERT_TRUE(ring->ring.rotate(kT0 + 1000).ok());
  ASSERT_TRUE(store_.save_key_ring(ring->ring, kT0 + 1000).ok());

  // A code issued before the "restart" still verifies after it, and a token signed with the
  // ring is signed by the same key afterwards.
  RecordingGateway gateway;
  Registrar before({}, store_, gateway, *secret);
  SourceAddress source = *SourceAddress::parse("192.0.2.1");
  ASSERT_EQ(before.request_code("+15551234567", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kOk);

  CatalogStore restarted(tables_);
  absl::StatusOr<std::vector<uint8_t>> secret2 = restarted.load_or_create_node_secret();
  ASSERT_TRUE(secret2.ok());
  EXPECT_EQ(*secret2, *secret);
  absl::StatusOr<StoredKeyRing> ring2 = restarted.load_or_create_key_ring({}, kT0 + 5000);
  ASSERT_TRUE(ring2.ok());
  EXPECT_EQ(ring2->rotated_at_ms, kT0 + 1000);
  EXPECT_EQ(ring2->ring.signing_key(), ring->ring.signing_key());
  ASSERT_EQ(ring2->ring.keys().size(), ring->ring.keys().size());
  Registrar after({}, restarted, gateway, *secret2);
  EXPECT_EQ(after.verify("+15551234567", gateway.last_code, "pixel", kT0 + 10).error,
            RegistrationError::kOk);

  // A damaged secret is an error, never silently replaced.
  ASSERT_TRUE(tables_.put(TableId::kNodeMeta, "registration/node_secret", "\x01short").ok());
  EXPECT_EQ(restarted.load_or_create_node_secret().status().code(), absl::StatusCode::kDataLoss);
}

// The device lists routing asks for (ipc DeviceListResponse), their version, and the change
// hook that pushes them: called once per change, only after the change is durable.
TEST_F(CatalogStoreTest, DeviceListsAndTheirChangeHook) {
  std::vector<AccountId> changed;
  store_.set_devices_changed_hook([&](const AccountId& a) { changed.push_back(a); });
  auto run_barriers = [this] {
    while (!deferred_.empty()) {
      auto fn = std::move(deferred_.front());
      deferred_.pop_front();
      fn();
    }
  };
  RecordingGateway gateway;
  std::vector<uint8_t> secret(32, 1);
  Registrar registrar({}, store_, gateway, secret);
  SourceAddress source = *SourceAddress::parse("192.0.2.1");
  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0).error,
            RegistrationError::kOk);
  VerifyResult v = registrar.verify("+15551234567", gateway.last_code, "pixel", kT0 + 1);
  ASSERT_EQ(v.error, RegistrationError::kOk);
  EXPECT_TRUE(changed.empty());  // not before the barrier says the commit is durable
  run_barriers();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0], v.account);
  auto list = store_.device_list(v.account);
  ASSERT_TRUE(list);
  EXPECT_EQ(list->devices, (std::vector<uint32_t>{1}));
  const uint64_t v1 = list->version;

  // Re-registration: a new primary, the old one revoked; one change, a newer version.
  ASSERT_EQ(registrar.request_code("+15551234567", CodeMethod::kSms, source, kT0 + 120'000).error,
            RegistrationError::kOk);
  ASSERT_EQ(registrar.verify("+15551234567", gateway.last_code, "new", kT0 + 120'001).error,
            RegistrationError::kOk);
  run_barriers();
  EXPECT_EQ(changed.size(), 2u);
  list = store_.device_list(v.account);
  EXPECT_EQ(list->devices, (std::vector<uint32_t>{2}));
  const uint64_t v2 = list->version;
  EXPECT_GT(v2, v1);

  // Revoke: the list empties and the version grows again; revoking twice changes nothing.
  ASSERT_TRUE(store_.revoke_device(v.account, 2, kT0 + 130'000).ok());
  run_barriers();
  EXPECT_EQ(changed.size(), 3u);
  list = store_.device_list(v.account);
  EXPECT_TRUE(list->devices.empty());
  EXPECT_GT(list->version, v2);
  ASSERT_TRUE(store_.revoke_device(v.account, 2, kT0 + 140'000).ok());
  run_barriers();
  EXPECT_EQ(changed.size(), 3u);
  EXPECT_FALSE(store_.device_list(AccountId{5, 5}));
}

}  // namespace
}  // namespace herald::registration

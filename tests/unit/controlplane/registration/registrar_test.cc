// Tests for the registration state machine over the in-memory store: every rule at its edge
// (attempts, expiry, rate limits), re-registration revoking the old device, sessions, the log
// gateway's file format, and store/gateway failures.
#include "controlplane/registration/registrar.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "controlplane/registration/auth_names.h"
#include "controlplane/registration/credential.h"
#include "controlplane/registration/memory_store.h"

namespace herald::registration {
namespace {

constexpr uint64_t kT0 = 1'800'000'000'000;
constexpr char kPhone[] = "+15551234567";

// Remembers the last code per number, as the phone would.
class RecordingGateway final : public CodeGateway {
 public:
  absl::Status send_code(PhoneNumber phone, CodeMethod method, std::string_view code,
                         uint64_t) override {
    if (!fail_.ok()) return fail_;
    last_[phone.to_string()] = std::string(code);
    last_method_ = method;
    ++sent_;
    return absl::OkStatus();
  }
  std::string code_for(const std::string& phone) { return last_[phone]; }
  absl::Status fail_ = absl::OkStatus();
  std::map<std::string, std::string> last_;
  CodeMethod last_method_ = CodeMethod::kSms;
  int sent_ = 0;
};

std::vector<uint8_t> secret() {
  return std::vector<uint8_t>(32, 0x5a);
}

// A code that differs from `code` in its last digit.
std::string wrong(const std::string& code) {
  std::string w = code;
  w.back() = w.back() == '9' ? '0' : static_cast<char>(w.back() + 1);
  return w;
}

class RegistrarTest : public ::testing::Test {
 protected:
  RegistrarTest() : registrar_(options(), store_, gateway_, secret()) {}
  static RegistrarOptions options() { return RegistrarOptions{}; }

  SourceAddress addr(const char* text = "198.51.100.7") { return *SourceAddress::parse(text); }
  std::string request(uint64_t now_ms, const char* phone = kPhone) {
    RequestCodeResult r = registrar_.request_code(phone, CodeMethod::kSms, addr(), now_ms);
    EXPECT_EQ(r.error, RegistrationError::kOk) << error_name(r.error);
    return gateway_.code_for(parse_phone_number(phone).number.to_string());
  }

  MemoryStore store_;
  RecordingGateway gateway_;
  Registrar registrar_;
};

TEST_F(RegistrarTest, RequestThenVerifyCreatesAccountAndDevice) {
  RequestCodeResult r = registrar_.request_code("+1 555 123 4567", CodeMethod::kVoice, addr(), kT0);
  ASSERT_EQ(r.error, RegistrationError::kOk);
  EXPECT_EQ(r.expires_in_s, 600u);
  EXPECT_EQ(gateway_.last_method_, CodeMethod::kVoice);
  std::string code = gateway_.code_for(kPhone);
  ASSERT_TRUE(is_well_formed_code(code));
  // Only the HMAC is stored.
  std::optional<PendingCode> pending = store_.find_code(parse_phone_number(kPhone).number);
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->expires_ms, kT0 + 600'000);

  VerifyResult v = registrar_.verify(kPhone, code, "pixel", kT0 + 1000);
  ASSERT_EQ(v.error, RegistrationError::kOk) << error_name(v.error);
  EXPECT_TRUE(v.new_account);
  EXPECT_EQ(v.device_id, 1u);
  EXPECT_EQ(v.credential.size(), 43u);
  EXPECT_TRUE(v.revoked_device_ids.empty());
  auto device = store_.find_device(v.account, 1);
  ASSERT_TRUE(device);
  EXPECT_EQ(device->name, "pixel");
  EXPECT_EQ(device->credential_hash, *credential_hash(v.credential));
  // The code is single-use.
  EXPECT_EQ(registrar_.verify(kPhone, code, "pixel", kT0 + 2000).error,
            RegistrationError::kNoCodePending);
  EXPECT_EQ(store_.pending_code_count(), 0u);
}

TEST_F(RegistrarTest, FifthAttemptAllowedSixthRefused) {
  std::string code = request(kT0);
  for (uint32_t i = 1; i <= 4; ++i) {
    VerifyResult v = registrar_.verify(kPhone, wrong(code), "p", kT0 + i);
    ASSERT_EQ(v.error, RegistrationError::kInvalidCode);
    EXPECT_EQ(v.attempts_left, 5 - i);
  }
  // A malformed code is not a guess and uses no attempt.
  EXPECT_EQ(registrar_.verify(kPhone, "12ab56", "p", kT0 + 5).attempts_left, 1u);
  // Attempt 5 with the right code succeeds.
  EXPECT_EQ(registrar_.verify(kPhone, code, "p", kT0 + 6).error, RegistrationError::kOk);
}

TEST_F(RegistrarTest, AfterFiveWrongAttemptsTheCodeIsDead) {
  std::string code = request(kT0);
  for (uint32_t i = 1; i <= 5; ++i) {
    ASSERT_EQ(registrar_.verify(kPhone, wrong(code), "p", kT0 + i).error,
              RegistrationError::kInvalidCode);
  }
  EXPECT_EQ(registrar_.verify(kPhone, code, "p", kT0 + 10).error,
            RegistrationError::kTooManyAttempts);
  EXPECT_EQ(http_status(RegistrationError::kTooManyAttempts), 429);
  // A new code (after the 60 s limit) replaces the dead one and brings fresh attempts.
  std::string code2 = request(kT0 + 60'000);
  EXPECT_EQ(registrar_.verify(kPhone, code2, "p", kT0 + 60'001).error, RegistrationError::kOk);
}

TEST_F(RegistrarTest, ExpiryAtExactlyTenMinutes) {
  std::string code = request(kT0);
  // Valid for [t0, t0 + 10 min): the last millisecond works, the 10-minute mark does not.
  EXPECT_EQ(registrar_.verify(kPhone, wrong(code), "p", kT0 + 599'999).error,
            RegistrationError::kInvalidCode);
  EXPECT_EQ(registrar_.verify(kPhone, code, "p", kT0 + 600'000).error,
            RegistrationError::kCodeExpired);
  EXPECT_EQ(registrar_.verify(kPhone, code, "p", kT0 + 599'999).error, RegistrationError::kOk);
}

TEST_F(RegistrarTest, NewRequestReplacesOldCode) {
  std::string first = request(kT0);
  std::string second = request(kT0 + 60'000);
  if (first == second) GTEST_SKIP() << "two random codes coincided (p = 1e-6)";
  EXPECT_EQ(registrar_.verify(kPhone, first, "p", kT0 + 60'001).error,
            RegistrationError::kInvalidCode);
  EXPECT_EQ(registrar_.verify(kPhone, second, "p", kT0 + 60'002).error, RegistrationError::kOk);
}

TEST_F(RegistrarTest, PerPhoneRateLimitBoundaries) {
  (void)request(kT0);
  RequestCodeResult r = registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 59'999);
  EXPECT_EQ(r.error, RegistrationError::kRateLimited);
  EXPECT_TRUE(r.limited_by_phone);
  EXPECT_FALSE(r.limited_by_address);
  EXPECT_EQ(r.retry_after_s, 1u);  // 1 ms, rounded up to a whole second
  r = registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 30'000);
  EXPECT_EQ(r.retry_after_s, 30u);
  EXPECT_EQ(http_status(r.error), 429);
  // Refusals do not push the window: the request at exactly 60 s is allowed.
  EXPECT_EQ(registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 60'000).error,
            RegistrationError::kOk);
  // Five in the hour at 60 s spacing, then the hourly rule refuses.
  for (uint64_t i = 2; i < 5; ++i) (void)request(kT0 + i * 60'000);
  r = registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 5 * 60'000);
  EXPECT_EQ(r.error, RegistrationError::kRateLimited);
  EXPECT_EQ(r.retry_after_s, (720'000u - 300'000u) / 1000);
  // Other numbers are not affected.
  (void)request(kT0 + 5 * 60'000, "+15550000001");
}

// A committed config revision: new rate rules, code TTL and attempts apply to the next request;
// a pending code keeps the expiry it was stored with.
TEST_F(RegistrarTest, UpdatedOptionsApplyToTheNextRequest) {
  const std::string first = request(kT0);
  EXPECT_EQ(registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 1).error,
            RegistrationError::kRateLimited);
  RegistrarOptions relaxed;
  relaxed.code_ttl_ms = 120'000;
  relaxed.max_verify_attempts = 2;
  relaxed.phone_limits.rules[0] = {60'000, 3};  // a burst of 3 per minute
  relaxed.phone_limits.capacity = 16;           // restart field: ignored
  ASSERT_TRUE(registrar_.update_options(relaxed).ok());
  EXPECT_EQ(registrar_.options().phone_limits.capacity, RegistrarOptions{}.phone_limits.capacity);
  // The phone that was limited gets two more codes now; the third is refused.
  RequestCodeResult r = registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 2);
  ASSERT_EQ(r.error, RegistrationError::kOk);
  EXPECT_EQ(r.expires_in_s, 120u);
  EXPECT_EQ(store_.find_code(parse_phone_number(kPhone).number)->expires_ms, kT0 + 2 + 120'000);
  const std::string code = request(kT0 + 3);
  EXPECT_EQ(registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 4).error,
            RegistrationError::kRateLimited);
  // Two attempts now: one wrong guess leaves one.
  EXPECT_EQ(registrar_.verify(kPhone, wrong(code), "p", kT0 + 5).attempts_left, 1u);
  EXPECT_EQ(registrar_.verify(kPhone, code, "p", kT0 + 6).error, RegistrationError::kOk);
  (void)first;
}

TEST_F(RegistrarTest, InvalidUpdatedOptionsChangeNothing) {
  RegistrarOptions bad;
  bad.address_limits.rules[0] = {0, 1};  // refused by the second limiter
  bad.phone_limits.rules[0] = {1000, 50};
  EXPECT_EQ(registrar_.update_options(bad).code(), absl::StatusCode::kInvalidArgument);
  // The phone limiter's rules were put back: still one code per minute.
  (void)request(kT0);
  EXPECT_EQ(registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 1).error,
            RegistrationError::kRateLimited);
  RegistrarOptions zero;
  zero.code_ttl_ms = 0;
  EXPECT_EQ(registrar_.update_options(zero).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registrar_.options().code_ttl_ms, 600'000u);
}

TEST_F(RegistrarTest, PerAddressRateLimitIsPerSlash64) {
  // Default: 20 at once per source address. 20 different numbers from one IPv6 /64, each from a
  // different interface id, are allowed; the 21st is refused; another /64 is not affected.
  for (int i = 0; i < 20; ++i) {
    std::string phone = "+1555000" + std::to_string(1000 + i);
    std::string src = "2001:db8:0:1::" + std::to_string(i + 1);
    ASSERT_EQ(registrar_.request_code(phone, CodeMethod::kSms, addr(src.c_str()), kT0).error,
              RegistrationError::kOk)
        << i;
  }
  RequestCodeResult r =
      registrar_.request_code("+15559999999", CodeMethod::kSms, addr("2001:db8:0:1::ffff"), kT0);
  EXPECT_EQ(r.error, RegistrationError::kRateLimited);
  EXPECT_TRUE(r.limited_by_address);
  EXPECT_EQ(r.retry_after_s, 180u);
  // The refused request did not count against the number.
  EXPECT_EQ(
      registrar_.request_code("+15559999999", CodeMethod::kSms, addr("2001:db8:0:2::1"), kT0).error,
      RegistrationError::kOk);
}

TEST(RegistrarTableTest, FullRateTableFailsClosedForNewNumbers) {
  MemoryStore store;
  RecordingGateway gateway;
  RegistrarOptions o;
  o.phone_limits.capacity = 3;
  Registrar registrar(o, store, gateway, secret());
  SourceAddress src = *SourceAddress::parse("192.0.2.1");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(
        registrar.request_code("+1555000000" + std::to_string(i), CodeMethod::kSms, src, kT0).error,
        RegistrationError::kOk);
  }
  RequestCodeResult r = registrar.request_code("+15550000009", CodeMethod::kSms, src, kT0 + 1);
  EXPECT_EQ(r.error, RegistrationError::kRateLimited);
  EXPECT_TRUE(r.limited_by_phone);
  EXPECT_GE(r.retry_after_s, 1u);
  EXPECT_EQ(registrar.table_full_refusals(), 1u);
  EXPECT_EQ(gateway.sent_, 3);
}

TEST_F(RegistrarTest, ReRegistrationRevokesOldPrimaryDevice) {
  std::string code = request(kT0);
  VerifyResult first = registrar_.verify(kPhone, code, "old phone", kT0 + 1);
  ASSERT_EQ(first.error, RegistrationError::kOk);

  KeyRing ring = KeyRing::create({}, kT0);
  SessionResult old_session = registrar_.create_session(first.credential, ring, kT0 + 2);
  ASSERT_EQ(old_session.error, RegistrationError::kOk);

  code = request(kT0 + 120'000);
  VerifyResult second = registrar_.verify(kPhone, code, "new phone", kT0 + 120'001);
  ASSERT_EQ(second.error, RegistrationError::kOk);
  EXPECT_FALSE(second.new_account);
  EXPECT_EQ(second.account, first.account);  // the account is re-bound, not replaced
  EXPECT_EQ(second.device_id, 2u);           // device ids are never reused
  EXPECT_EQ(second.revoked_device_ids, std::vector<uint32_t>{first.device_id});
  EXPECT_EQ(store_.find_device(first.account, 1)->revoked_ms, kT0 + 120'001);

  // The old credential no longer gets a session; the new one does.
  EXPECT_EQ(registrar_.create_session(first.credential, ring, kT0 + 120'002).error,
            RegistrationError::kInvalidCredential);
  SessionResult fresh = registrar_.create_session(second.credential, ring, kT0 + 120'002);
  ASSERT_EQ(fresh.error, RegistrationError::kOk);

  // On the dataplane: the revocation the caller pushes kills the old device's live token.
  TokenVerifier verifier(TokenVerifierOptions{});
  for (const SessionKey& k : ring.keys()) ASSERT_TRUE(verifier.install_key(k, kT0));
  EXPECT_TRUE(verifier.verify(old_session.token, kT0 + 120'000).ok());
  (void)verifier.revoke(first.account, second.revoked_device_ids[0], kT0 + 120'001, kT0 + 120'001);
  EXPECT_EQ(verifier.verify(old_session.token, kT0 + 120'002).error, TokenError::kRevoked);
  TokenCheck c = verifier.verify(fresh.token, kT0 + 120'002);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.claims.device_id, 2u);
  EXPECT_EQ(c.claims.account, first.account);
}

TEST_F(RegistrarTest, SessionRejectsBadCredentials) {
  KeyRing ring = KeyRing::create({}, kT0);
  EXPECT_EQ(registrar_.create_session("", ring, kT0).error, RegistrationError::kInvalidCredential);
  EXPECT_EQ(registrar_.create_session(std::string(43, 'A'), ring, kT0).error,
            RegistrationError::kInvalidCredential);
  EXPECT_EQ(registrar_.create_session(std::string(44, 'A'), ring, kT0).error,
            RegistrationError::kInvalidCredential);
  EXPECT_EQ(http_status(RegistrationError::kInvalidCredential), 401);
}

TEST_F(RegistrarTest, InputValidation) {
  RequestCodeResult r = registrar_.request_code("5551234567", CodeMethod::kSms, addr(), kT0);
  EXPECT_EQ(r.error, RegistrationError::kInvalidPhone);
  EXPECT_EQ(r.phone_error, PhoneError::kMissingPlus);
  EXPECT_EQ(error_name(r.error), "invalid_phone");
  EXPECT_EQ(registrar_.verify(kPhone, "123456", "p", kT0).error, RegistrationError::kNoCodePending);
  EXPECT_EQ(registrar_.verify(kPhone, "123456", "", kT0).error,
            RegistrationError::kInvalidDeviceName);
  EXPECT_TRUE(is_valid_device_name("Pixel 8 Pro"));
  EXPECT_TRUE(is_valid_device_name("t\xc3\xa9l\xc3\xa9phone"));  // téléphone
  EXPECT_TRUE(is_valid_device_name(std::string(64, 'x')));
  EXPECT_FALSE(is_valid_device_name(std::string(65, 'x')));
  EXPECT_FALSE(is_valid_device_name("a\nb"));
  EXPECT_FALSE(is_valid_device_name("\xc0\xaf"));      // overlong '/'
  EXPECT_FALSE(is_valid_device_name("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(is_valid_device_name("\xc3"));          // truncated
  EXPECT_FALSE(is_valid_device_name("\xc2\x85"));      // C1 control (NEL)
  EXPECT_EQ(parse_code_method("voice"), CodeMethod::kVoice);
  EXPECT_FALSE(parse_code_method("SMS"));
  // Every error has a distinct stable name.
  std::map<std::string_view, int> names;
  for (size_t e = 0; e < static_cast<size_t>(RegistrationError::kCount); ++e) {
    ++names[error_name(static_cast<RegistrationError>(e))];
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(RegistrationError::kCount));
}

TEST_F(RegistrarTest, StoreAndGatewayFailures) {
  store_.fail_next_write(absl::UnavailableError("disk"));
  EXPECT_EQ(registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0).error,
            RegistrationError::kStoreFailed);
  // Nothing was counted against the limits: an immediate retry works.
  std::string code = request(kT0);
  // A failed attempt-count write answers store_failed and never checks the code.
  store_.fail_next_write(absl::UnavailableError("disk"));
  EXPECT_EQ(registrar_.verify(kPhone, code, "p", kT0 + 1).error, RegistrationError::kStoreFailed);
  EXPECT_EQ(store_.find_code(parse_phone_number(kPhone).number)->attempts, 0u);

  gateway_.fail_ = absl::UnavailableError("provider down");
  RequestCodeResult r = registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 60'000);
  EXPECT_EQ(r.error, RegistrationError::kGatewayFailed);
  // The failed send still counted: no hammering a failing provider.
  gateway_.fail_ = absl::OkStatus();
  EXPECT_EQ(registrar_.request_code(kPhone, CodeMethod::kSms, addr(), kT0 + 60'001).error,
            RegistrationError::kRateLimited);
  EXPECT_EQ(registrar_.outcomes()[static_cast<size_t>(RegistrationError::kGatewayFailed)], 1u);
}

TEST(LogGatewayTest, AppendsOneJsonLinePerCodeWithPrivateMode) {
  char dir_template[] = "/tmp/herald_sms_log_XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string path = std::string(dir_template) + "/sms.log";
  {
    auto gateway = LogGateway::open(path);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    PhoneNumber phone = parse_phone_number(kPhone).number;
    ASSERT_TRUE((*gateway)->send_code(phone, CodeMethod::kSms, "012345", kT0).ok());
    ASSERT_TRUE((*gateway)->send_code(phone, CodeMethod::kVoice, "999999", kT0 + 1).ok());
  }
  std::ifstream in(path);
  std::string line1, line2, extra;
  ASSERT_TRUE(std::getline(in, line1));
  ASSERT_TRUE(std::getline(in, line2));
  EXPECT_FALSE(std::getline(in, extra));
  EXPECT_EQ(line1,
            "{\"time_ms\":1800000000000,\"phone\":\"+15551234567\",\"method\":\"sms\","
            "\"code\":\"012345\"}");
  EXPECT_EQ(line2,
            "{\"time_ms\":1800000000001,\"phone\":\"+15551234567\",\"method\":\"voice\","
            "\"code\":\"999999\"}");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(LogGateway::open(std::string(dir_template) + "/no/such/dir/sms.log").ok());
  unlink(path.c_str());
  rmdir(dir_template);
}

}  // namespace
}  // namespace herald::registration

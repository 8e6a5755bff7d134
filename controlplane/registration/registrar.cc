// The registration state machine (see registrar.h).
#include "controlplane/registration/registrar.h"

#include <algorithm>

#include "controlplane/registration/credential.h"
#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::registration {

std::string_view error_name(RegistrationError error) {
  switch (error) {
    case RegistrationError::kOk: return "ok";
    case RegistrationError::kInvalidPhone: return "invalid_phone";
    case RegistrationError::kInvalidMethod: return "invalid_method";
    case RegistrationError::kInvalidDeviceName: return "invalid_device_name";
    case RegistrationError::kRateLimited: return "rate_limited";
    case RegistrationError::kInvalidCode: return "invalid_code";
    case RegistrationError::kCodeExpired: return "code_expired";
    case RegistrationError::kTooManyAttempts: return "too_many_attempts";
    case RegistrationError::kNoCodePending: return "no_code_pending";
    case RegistrationError::kInvalidCredential: return "invalid_credential";
    case RegistrationError::kGatewayFailed: return "gateway_failed";
    case RegistrationError::kStoreFailed: return "store_failed";
    case RegistrationError::kAccountDisabled: return "account_disabled";
    case RegistrationError::kCount: break;
  }
  return "unknown";
}

std::string_view error_message(RegistrationError error) {
  switch (error) {
    case RegistrationError::kOk: return "ok";
    case RegistrationError::kInvalidPhone:
      return "phone must be an E.164 number: '+' and 8 to 15 digits";
    case RegistrationError::kInvalidMethod: return "method must be \"sms\" or \"voice\"";
    case RegistrationError::kInvalidDeviceName:
      return "device_name must be 1 to 64 bytes of UTF-8 without control characters";
    case RegistrationError::kRateLimited:
      return "too many requests; retry after retry_after seconds";
    case RegistrationError::kInvalidCode: return "the code is wrong";
    case RegistrationError::kCodeExpired: return "the code has expired; request a new one";
    case RegistrationError::kTooManyAttempts:
      return "too many wrong attempts for this code; request a new one";
    case RegistrationError::kNoCodePending: return "no code was requested for this number";
    case RegistrationError::kInvalidCredential: return "the device credential is not valid";
    case RegistrationError::kGatewayFailed: return "the code could not be sent; try again later";
    case RegistrationError::kStoreFailed: return "internal storage error; try again later";
    case RegistrationError::kAccountDisabled: return "this account has been disabled";
    case RegistrationError::kCount: break;
  }
  return "unknown error";
}

int http_status(RegistrationError error) {
  switch (error) {
    case RegistrationError::kOk: return 200;
    case RegistrationError::kInvalidPhone:
    case RegistrationError::kInvalidMethod:
    case RegistrationError::kInvalidDeviceName:
    case RegistrationError::kNoCodePending: return 400;
    case RegistrationError::kInvalidCredential: return 401;
    case RegistrationError::kInvalidCode:
    case RegistrationError::kCodeExpired: return 403;
    case RegistrationError::kRateLimited:
    case RegistrationError::kTooManyAttempts: return 429;
    // 503, not 502: the server is temporarily unable to take the request (the provider queue
    // is full or the provider failed), and the client should retry later (RFC 9110 §15.6.4).
    case RegistrationError::kGatewayFailed:
    case RegistrationError::kStoreFailed: return 503;
    case RegistrationError::kAccountDisabled: return 403;
    case RegistrationError::kCount: break;
  }
  return 500;
}

bool is_valid_device_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxDeviceNameBytes) return false;
  // RFC 3629 §4: reject overlong forms, surrogates and code points above U+10FFFF.
  size_t i = 0;
  while (i < name.size()) {
    auto b = static_cast<uint8_t>(name[i]);
    if (b < 0x80) {
      if (b < 0x20 || b == 0x7f) return false;
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((b & 0xe0) == 0xc0) {
      len = 2;
      cp = b & 0x1f;
    } else if ((b & 0xf0) == 0xe0) {
      len = 3;
      cp = b & 0x0f;
    } else if ((b & 0xf8) == 0xf0) {
      len = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + len > name.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto c = static_cast<uint8_t>(name[i + k]);
      if ((c & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3f);
    }
    static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp >= 0x80 && cp <= 0x9f) return false;  // C1 controls
    i += len;
  }
  return true;
}

namespace {
uint64_t ceil_seconds(uint64_t ms) {
  return std::max<uint64_t>(1, (ms + 999) / 1000);
}
}  // namespace

Registrar::Registrar(const RegistrarOptions& options, RegistrationStore& store,
                     CodeGateway& gateway, std::span<const uint8_t> node_secret)
    : options_(options),
      store_(store),
      gateway_(gateway),
      hasher_(node_secret),
      phone_limiter_(options.phone_limits),
      address_limiter_(options.address_limits) {
  HERALD_CHECK(node_secret.size() >= 32, "registration node secret shorter than 256 bits");
  HERALD_CHECK(options.code_ttl_ms > 0 && options.max_verify_attempts > 0, "registrar options");
}

absl::Status Registrar::update_options(const RegistrarOptions& options) {
  if (options.code_ttl_ms == 0 || options.max_verify_attempts == 0) {
    return absl::InvalidArgumentError("registrar: code_ttl_ms and max_verify_attempts must be > 0");
  }
  // A refusal of the second limiter puts the first one's rules back: all or nothing.
  if (absl::Status s = phone_limiter_.set_rules(options.phone_limits); !s.ok()) return s;
  if (absl::Status s = address_limiter_.set_rules(options.address_limits); !s.ok()) {
    (void)phone_limiter_.set_rules(options_.phone_limits);  // back to the rules it had
    return s;
  }
  const uint32_t phone_capacity = options_.phone_limits.capacity;
  const uint32_t address_capacity = options_.address_limits.capacity;
  options_ = options;
  options_.phone_limits.capacity = phone_capacity;
  options_.address_limits.capacity = address_capacity;
  return absl::OkStatus();
}

RequestCodeResult Registrar::request_code(std::string_view phone_text, CodeMethod method,
                                          const SourceAddress& source, uint64_t now_ms) {
  RequestCodeResult result;
  PhoneParse phone = parse_phone_number(phone_text);
  if (phone.error != PhoneError::kOk) {
    result.error = count(RegistrationError::kInvalidPhone);
    result.phone_error = phone.error;
    return result;
  }
  // Both limits must allow the request, and a refused request consumes neither.
  RateKey phone_key{0, phone.number.value()};
  RateDecision by_phone = phone_limiter_.check(phone_key, now_ms);
  RateDecision by_address = address_limiter_.check(source.rate_key(), now_ms);
  if (!by_phone.allowed() || !by_address.allowed()) {
    if (by_phone.verdict == RateVerdict::kTableFull ||
        by_address.verdict == RateVerdict::kTableFull) {
      ++table_full_refusals_;
      HLOG_RATE_LIMITED(kWarn, "registration.rate_table_full", 1)
          .kv("phone_table", by_phone.verdict == RateVerdict::kTableFull)
          .kv("address_table", by_address.verdict == RateVerdict::kTableFull);
    }
    result.error = count(RegistrationError::kRateLimited);
    result.limited_by_phone = !by_phone.allowed();
    result.limited_by_address = !by_address.allowed();
    result.retry_after_s =
        ceil_seconds(std::max(by_phone.retry_after_ms, by_address.retry_after_ms));
    return result;
  }

  CodeText code = code_source_ != nullptr ? code_source_() : generate_code();
  std::string_view code_view(code.data(), code.size());
  PendingCode pending;
  pending.code_hash = hasher_.hash(phone.number, code_view);
  pending.created_ms = now_ms;
  pending.expires_ms = now_ms + options_.code_ttl_ms;
  pending.attempts = 0;
  pending.method = method;
  if (absl::Status s = store_.put_code(phone.number, pending); !s.ok()) {
    HLOG_RATE_LIMITED(kError, "registration.store_failed", 1)
        .kv("op", "put_code")
        .kv("status", s.ToString());
    result.error = count(RegistrationError::kStoreFailed);
    return result;
  }
  // Counted once the code exists, whether or not the gateway takes it: a failing provider must
  // not become a way around the limits.
  RateDecision taken = phone_limiter_.acquire(phone_key, now_ms);
  RateDecision taken_address = address_limiter_.acquire(source.rate_key(), now_ms);
  HERALD_DCHECK(taken.allowed() && taken_address.allowed(),
                "limits changed between check and acquire");
  (void)taken;
  (void)taken_address;
  if (absl::Status s = gateway_.send_code(phone.number, method, code_view, now_ms); !s.ok()) {
    HLOG_RATE_LIMITED(kWarn, "registration.gateway_failed", 1).kv("status", s.ToString());
    result.error = count(RegistrationError::kGatewayFailed);
    return result;
  }
  result.expires_in_s = options_.code_ttl_ms / 1000;
  count(RegistrationError::kOk);
  return result;
}

VerifyResult Registrar::verify(std::string_view phone_text, std::string_view code,
                               std::string_view device_name, uint64_t now_ms) {
  VerifyResult result;
  PhoneParse phone = parse_phone_number(phone_text);
  if (phone.error != PhoneError::kOk) {
    result.error = count(RegistrationError::kInvalidPhone);
    result.phone_error = phone.error;
    return result;
  }
  if (!is_valid_device_name(device_name)) {
    result.error = count(RegistrationError::kInvalidDeviceName);
    return result;
  }
  std::optional<PendingCode> pending = store_.find_code(phone.number);
  if (!pending) {
    result.error = count(RegistrationError::kNoCodePending);
    return result;
  }
  if (pending->attempts >= options_.max_verify_attempts) {
    result.error = count(RegistrationError::kTooManyAttempts);
    return result;
  }
  if (now_ms >= pending->expires_ms) {
    result.error = count(RegistrationError::kCodeExpired);
    return result;
  }
  if (!is_well_formed_code(code)) {
    // Not a guess at all: no attempt is used up.
    result.error = count(RegistrationError::kInvalidCode);
    result.attempts_left = options_.max_verify_attempts - pending->attempts;
    return result;
  }
  // The attempt is stored before the answer, so a crash or restart cannot hand out free tries.
  ++pending->attempts;
  if (absl::Status s = store_.put_code(phone.number, *pending); !s.ok()) {
    HLOG_RATE_LIMITED(kError, "registration.store_failed", 1)
        .kv("op", "count_attempt")
        .kv("status", s.ToString());
    result.error = count(RegistrationError::kStoreFailed);
    return result;
  }
  Digest presented = hasher_.hash(phone.number, code);
  if (!constant_time_equal(presented, pending->code_hash)) {
    result.error = count(RegistrationError::kInvalidCode);
    result.attempts_left = options_.max_verify_attempts - pending->attempts;
    return result;
  }

  return commit_primary_device(phone.number, device_name, now_ms);
}

VerifyResult Registrar::provision(std::string_view phone_text, std::string_view device_name,
                                  uint64_t now_ms) {
  VerifyResult result;
  PhoneParse phone = parse_phone_number(phone_text);
  if (phone.error != PhoneError::kOk) {
    result.error = count(RegistrationError::kInvalidPhone);
    result.phone_error = phone.error;
    return result;
  }
  if (!is_valid_device_name(device_name)) {
    result.error = count(RegistrationError::kInvalidDeviceName);
    return result;
  }
  return commit_primary_device(phone.number, device_name, now_ms);
}

// The tail of a successful verify (and all of a provision): the account created or re-bound to
// a new primary device, the old primary revoked, in one store commit.
VerifyResult Registrar::commit_primary_device(PhoneNumber phone, std::string_view device_name,
                                              uint64_t now_ms) {
  VerifyResult result;
  RegistrationCommit commit;
  std::optional<Account> existing = store_.find_account_by_phone(phone);
  // Told only to whoever holds the right code, so the state of a number does not leak.
  if (existing && existing->disabled_ms != 0) {
    result.error = count(RegistrationError::kAccountDisabled);
    return result;
  }
  if (existing) {
    commit.account = *existing;
    for (const Device& d : store_.list_devices(existing->id)) {
      if (d.revoked_ms == 0) commit.revoked_device_ids.push_back(d.device_id);
    }
  } else {
    commit.new_account = true;
    commit.account.id = new_account_id();
    commit.account.phone = phone;
    commit.account.created_ms = now_ms;
  }
  uint32_t device_id = commit.account.next_device_id;
  // 0 means "no device" and UINT32_MAX is RevocationSet::kAllDevices: neither is handed out.
  if (HERALD_BUG_IF(device_id == 0 || device_id == UINT32_MAX,
                    "device id space of an account exhausted")) {
    result.error = count(RegistrationError::kStoreFailed);
    return result;
  }
  commit.account.next_device_id = device_id + 1;
  commit.account.primary_device_id = device_id;
  IssuedCredential credential = issue_credential();
  commit.device.account = commit.account.id;
  commit.device.device_id = device_id;
  commit.device.name = std::string(device_name);
  commit.device.credential_hash = credential.hash;
  commit.device.created_ms = now_ms;
  if (absl::Status s = store_.commit_registration(commit); !s.ok()) {
    HLOG_RATE_LIMITED(kError, "registration.store_failed", 1)
        .kv("op", "commit")
        .kv("status", s.ToString());
    result.error = count(RegistrationError::kStoreFailed);
    return result;
  }
  result.account = commit.account.id;
  result.device_id = device_id;
  result.credential = std::move(credential.text);
  result.new_account = commit.new_account;
  result.revoked_device_ids = commit.revoked_device_ids;
  count(RegistrationError::kOk);
  return result;
}

SessionResult Registrar::create_session(std::string_view credential, const KeyRing& ring,
                                        uint64_t now_ms) {
  SessionResult result;
  std::optional<Digest> hash = credential_hash(credential);
  if (!hash) {
    result.error = count(RegistrationError::kInvalidCredential);
    return result;
  }
  std::optional<Device> device = store_.find_device_by_credential(*hash);
  // The index lookup matched on the hash; the constant-time compare guards against a store
  // whose index is looser than an exact match (a truncated or prefix index).
  if (!device || device->revoked_ms != 0 || !constant_time_equal(device->credential_hash, *hash)) {
    result.error = count(RegistrationError::kInvalidCredential);
    return result;
  }
  std::optional<Account> account = store_.find_account(device->account);
  if (!account) {
    result.error = count(RegistrationError::kInvalidCredential);
    return result;
  }
  if (account->disabled_ms != 0) {
    result.error = count(RegistrationError::kAccountDisabled);
    return result;
  }
  result.token = issue_token(ring, device->account, device->device_id, now_ms);
  result.claims = read_claims(result.token);
  count(RegistrationError::kOk);
  return result;
}

}  // namespace herald::registration

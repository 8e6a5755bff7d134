// Push tokens: where the operator's push gateway reaches a device (an APNs device token, an FCM
// registration token, or an operator webhook address), validated at the API and kept durably in
// the catalog (TableId::kPushTokens), one per device.
//
//   Table kPushTokens: account id (hi u64, lo u64, big-endian), device id u32 (big-endian)
//                      -> version byte (1), platform byte, updated_ms u64 (little-endian), token
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "controlplane/storage/tables.h"
#include "platform/auth/account_id.h"

namespace herald::push {

enum class PushPlatform : uint8_t { kApns = 1, kFcm = 2, kWebhook = 3 };
std::string_view platform_name(PushPlatform platform);
std::optional<PushPlatform> parse_platform(std::string_view name);

// APNs tokens are 64 hex digits, FCM tokens ~160 characters of [A-Za-z0-9_:-]; a webhook
// address is a URL. 512 leaves room for all three; the alphabet (RFC 3986 unreserved plus
// ":/+=") covers hex, base64, base64url and URLs without ever needing JSON escaping.
inline constexpr size_t kMinPushTokenBytes = 8;
inline constexpr size_t kMaxPushTokenBytes = 512;

enum class TokenProblem : uint8_t { kNone, kTooShort, kTooLong, kBadCharacter };
TokenProblem check_push_token(std::string_view token);
std::string_view token_problem_message(TokenProblem problem);

struct PushToken {
  PushPlatform platform = PushPlatform::kApns;
  std::string token;
  uint64_t updated_ms = 0;
};

class PushTokenStore {
 public:
  explicit PushTokenStore(storage::Tables& tables) : tables_(tables) {}

  // One batch (durable after the caller's Tables::barrier()). The token must pass
  // check_push_token (InvalidArgument otherwise); the store's error when refused.
  absl::Status put(const auth::AccountId& account, uint32_t device, const PushToken& token);
  absl::Status erase(const auth::AccountId& account, uint32_t device);
  // nullopt when the device has none, or its record does not decode (counted).
  std::optional<PushToken> find(const auth::AccountId& account, uint32_t device);

  static std::string key(const auth::AccountId& account, uint32_t device);
  static std::string encode(const PushToken& token);
  // Checks the token's alphabet too: a record from disk is outside input.
  static std::optional<PushToken> decode(std::string_view bytes);

  size_t size() const { return tables_.size(storage::TableId::kPushTokens); }
  uint64_t decode_errors() const { return decode_errors_; }

 private:
  storage::Tables& tables_;
  uint64_t decode_errors_ = 0;
};

}  // namespace herald::push

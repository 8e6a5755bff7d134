// Push token validation and its catalog records (see push_tokens.h).
#include "controlplane/push/push_tokens.h"

#include <cstring>

namespace herald::push {
namespace {

constexpr uint8_t kRecordVersion = 1;
constexpr size_t kHeaderBytes = 1 + 1 + 8;

void put_be64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

bool token_char(char c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("-_.:/+=~", c) != nullptr && c != '\0';
}

}  // namespace

std::string_view platform_name(PushPlatform platform) {
  switch (platform) {
    case PushPlatform::kApns: return "apns";
    case PushPlatform::kFcm: return "fcm";
    case PushPlatform::kWebhook: return "webhook";
  }
  return "unknown";
}

std::optional<PushPlatform> parse_platform(std::string_view name) {
  for (PushPlatform p : {PushPlatform::kApns, PushPlatform::kFcm, PushPlatform::kWebhook}) {
    if (name == platform_name(p)) return p;
  }
  return std::nullopt;
}

TokenProblem check_push_token(std::string_view token) {
  if (token.size() < kMinPushTokenBytes) return TokenProblem::kTooShort;
  if (token.size() > kMaxPushTokenBytes) return TokenProblem::kTooLong;
  for (char c : token) {
    if (!token_char(c)) return TokenProblem::kBadCharacter;
  }
  return TokenProblem::kNone;
}

std::string_view token_problem_message(TokenProblem problem) {
  switch (problem) {
    case TokenProblem::kNone: return "ok";
    case TokenProblem::kTooShort: return "token is shorter than 8 characters";
    case TokenProblem::kTooLong: return "token is longer than 512 characters";
    case TokenProblem::kBadCharacter:
      return "token has a character outside A-Z a-z 0-9 - _ . : / + = ~";
  }
  return "bad token";
}

std::string PushTokenStore::key(const auth::AccountId& account, uint32_t device) {
  std::string k;
  k.reserve(20);
  put_be64(k, account.hi);
  put_be64(k, account.lo);
  for (int shift = 24; shift >= 0; shift -= 8) k.push_back(static_cast<char>(device >> shift));
  return k;
}

std::string PushTokenStore::encode(const PushToken& token) {
  std::string out;
  out.reserve(kHeaderBytes + token.token.size());
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(token.platform));
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(token.updated_ms >> (8 * i)));
  out += token.token;
  return out;
}

std::optional<PushToken> PushTokenStore::decode(std::string_view bytes) {
  // A later version may append fields after these; it keeps the token last.
  if (bytes.size() < kHeaderBytes || static_cast<uint8_t>(bytes[0]) != kRecordVersion) {
    return std::nullopt;
  }
  PushToken t;
  const auto platform = static_cast<PushPlatform>(static_cast<uint8_t>(bytes[1]));
  if (!parse_platform(platform_name(platform))) return std::nullopt;
  t.platform = platform;
  for (int i = 0; i < 8; ++i) {
    t.updated_ms |= uint64_t{static_cast<uint8_t>(bytes[2 + i])} << (8 * i);
  }
  t.token = std::string(bytes.substr(kHeaderBytes));
  if (check_push_token(t.token) != TokenProblem::kNone) return std::nullopt;
  return t;
}

absl::Status PushTokenStore::put(const auth::AccountId& account, uint32_t device,
                                 const PushToken& token) {
  if (check_push_token(token.token) != TokenProblem::kNone) {
    return absl::InvalidArgumentError(
        std::string(token_problem_message(check_push_token(token.token))));
  }
  return tables_.put(storage::TableId::kPushTokens, key(account, device), encode(token));
}

absl::Status PushTokenStore::erase(const auth::AccountId& account, uint32_t device) {
  return tables_.erase(storage::TableId::kPushTokens, key(account, device));
}

std::optional<PushToken> PushTokenStore::find(const auth::AccountId& account, uint32_t device) {
  const std::string* value = tables_.find(storage::TableId::kPushTokens, key(account, device));
  if (value == nullptr) return std::nullopt;
  std::optional<PushToken> token = decode(*value);
  if (!token) ++decode_errors_;
  return token;
}

}  // namespace herald::push

// Account ids: 128 random bits in the layout of a version-4 UUID (schemas/wire.fbs AccountId).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herald::auth {

struct AccountId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const AccountId&, const AccountId&) = default;
};

// RFC 4122 §4.4: random bits with the version (4) and variant (10) fields set.
AccountId new_account_id();
// "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", lower-case (the API's account_id).
std::string format_account_id(const AccountId& id);
std::optional<AccountId> parse_account_id(std::string_view text);

}  // namespace herald::auth

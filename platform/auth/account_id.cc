// Account id minting and its UUID text form (see account_id.h).
#include "platform/auth/account_id.h"

#include "platform/auth/crypto.h"

namespace herald::auth {

AccountId new_account_id() {
  AccountId id{random_u64(), random_u64()};
  id.hi = (id.hi & ~0xf000ull) | 0x4000ull;        // version 4
  id.lo = (id.lo & ~(3ull << 62)) | (2ull << 62);  // variant 10
  return id;
}

std::string format_account_id(const AccountId& id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 32; ++i) {
    uint64_t word = i < 16 ? id.hi : id.lo;
    int shift = 60 - 4 * (i % 16);
    out.push_back(kHex[(word >> shift) & 0xf]);
    if (i == 7 || i == 11 || i == 15 || i == 19) out.push_back('-');
  }
  return out;
}

std::optional<AccountId> parse_account_id(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  AccountId id;
  int nibble = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return std::nullopt;
      continue;
    }
    uint64_t v;
    if (c >= '0' && c <= '9')
      v = static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = static_cast<uint64_t>(c - 'a' + 10);
    else
      return std::nullopt;
    uint64_t& word = nibble < 16 ? id.hi : id.lo;
    word = (word << 4) | v;
    ++nibble;
  }
  return id;
}

}  // namespace herald::auth

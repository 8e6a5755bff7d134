// E.164 phone numbers (ITU-T E.164 §6): parsing, normalisation and the compact form registration
// keys its tables with.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace herald::registration {

// Why a text is not an E.164 number. The names (phone_error_name) are stable: they go into
// API error messages and logs.
enum class PhoneError : uint8_t {
  kOk = 0,
  kEmpty,
  kTooLong,        // more than kMaxPhoneTextBytes of input, before any parsing
  kMissingPlus,    // must start with '+' (no national or "00" prefixes: the server has no
                   // country context to resolve them)
  kBadCharacter,   // anything but digits and the visual separators below
  kLeadingZero,    // country codes never start with 0
  kTooFewDigits,   // fewer than kMinPhoneDigits
  kTooManyDigits,  // more than kMaxPhoneDigits (E.164 §6.1: at most 15)
};
std::string_view phone_error_name(PhoneError error);

inline constexpr size_t kMinPhoneDigits = 8;
inline constexpr size_t kMaxPhoneDigits = 15;
inline constexpr size_t kMaxPhoneTextBytes = 32;

// A valid number, held as the integer its digits spell. The first digit is never 0, so the
// integer gives back the digits exactly, and 15 digits fit in 50 bits: a table key with no
// allocation.
class PhoneNumber {
 public:
  constexpr PhoneNumber() = default;
  // `value` must be a valid number's value (tests and stores reloading their own data).
  static constexpr PhoneNumber from_value(uint64_t value) {
    PhoneNumber n;
    n.value_ = value;
    return n;
  }
  constexpr uint64_t value() const { return value_; }
  // The canonical text: '+' and the digits, e.g. "+15551234567".
  std::string to_string() const;
  friend constexpr bool operator==(PhoneNumber a, PhoneNumber b) { return a.value_ == b.value_; }

 private:
  uint64_t value_ = 0;
};

struct PhoneParse {
  PhoneError error = PhoneError::kOk;
  PhoneNumber number;
};

// Accepts '+' followed by 8..15 digits, the first not 0. The visual separators of ITU-T E.123
// §7 (space, '-', '.', '(' and ')') may appear between the digits and are dropped: clients paste
// numbers as people write them, and dropping them loses nothing. Nothing else is normalised:
// no leading/trailing whitespace, no "00" international prefix, no non-ASCII digits.
PhoneParse parse_phone_number(std::string_view text);

}  // namespace herald::registration

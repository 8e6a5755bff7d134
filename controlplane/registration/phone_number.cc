// E.164 parsing and normalisation (see phone_number.h).
#include "controlplane/registration/phone_number.h"

namespace herald::registration {

std::string_view phone_error_name(PhoneError error) {
  switch (error) {
    case PhoneError::kOk: return "ok";
    case PhoneError::kEmpty: return "empty";
    case PhoneError::kTooLong: return "too_long";
    case PhoneError::kMissingPlus: return "missing_plus";
    case PhoneError::kBadCharacter: return "bad_character";
    case PhoneError::kLeadingZero: return "leading_zero";
    case PhoneError::kTooFewDigits: return "too_few_digits";
    case PhoneError::kTooManyDigits: return "too_many_digits";
  }
  return "unknown";
}

std::string PhoneNumber::to_string() const {
  char digits[kMaxPhoneDigits + 1];
  size_t n = 0;
  uint64_t v = value_;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < sizeof digits);
  std::string out = "+";
  while (n > 0) out.push_back(digits[--n]);
  return out;
}

PhoneParse parse_phone_number(std::string_view text) {
  if (text.empty()) return {PhoneError::kEmpty, {}};
  if (text.size() > kMaxPhoneTextBytes) return {PhoneError::kTooLong, {}};
  if (text[0] != '+') return {PhoneError::kMissingPlus, {}};
  uint64_t value = 0;
  size_t digits = 0;
  for (size_t i = 1; i < text.size(); ++i) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      if (digits == 0 && c == '0') return {PhoneError::kLeadingZero, {}};
      if (++digits > kMaxPhoneDigits) return {PhoneError::kTooManyDigits, {}};
      value = value * 10 + static_cast<uint64_t>(c - '0');
    } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') {
      continue;
    } else {
      return {PhoneError::kBadCharacter, {}};
    }
  }
  if (digits < kMinPhoneDigits) return {PhoneError::kTooFewDigits, {}};
  return {PhoneError::kOk, PhoneNumber::from_value(value)};
}

}  // namespace herald::registration

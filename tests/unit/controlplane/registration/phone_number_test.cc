// Table-driven tests for E.164 parsing and normalisation.
#include "controlplane/registration/phone_number.h"

#include <gtest/gtest.h>

namespace herald::registration {
namespace {

struct Case {
  const char* input;
  PhoneError error;
  const char* canonical;  // when kOk
};

TEST(PhoneNumberTest, ParsesAndNormalises) {
  const Case cases[] = {
      {"+15551234567", PhoneError::kOk, "+15551234567"},
      {"+1 555-123-4567", PhoneError::kOk, "+15551234567"},
      {"+44 (20) 7946.0958", PhoneError::kOk, "+442079460958"},
      {"+12345678", PhoneError::kOk, "+12345678"},                // 8 digits: shortest
      {"+123456789012345", PhoneError::kOk, "+123456789012345"},  // 15 digits: longest
      {"+999999999999999", PhoneError::kOk, "+999999999999999"},
      {"+1234567", PhoneError::kTooFewDigits, nullptr},            // 7 digits
      {"+1234567890123456", PhoneError::kTooManyDigits, nullptr},  // 16 digits
      {"", PhoneError::kEmpty, nullptr},
      {"+", PhoneError::kTooFewDigits, nullptr},
      {"+ - ()", PhoneError::kTooFewDigits, nullptr},
      {"15551234567", PhoneError::kMissingPlus, nullptr},
      {"0015551234567", PhoneError::kMissingPlus, nullptr},
      {" +15551234567", PhoneError::kMissingPlus, nullptr},
      {"+15551234567 ", PhoneError::kOk, "+15551234567"},  // a trailing separator is dropped
      {"+05551234567", PhoneError::kLeadingZero, nullptr},
      {"+ 05551234567", PhoneError::kLeadingZero, nullptr},
      {"+1555123456a", PhoneError::kBadCharacter, nullptr},
      {"+1555+1234567", PhoneError::kBadCharacter, nullptr},
      {"+1555\t1234567", PhoneError::kBadCharacter, nullptr},
      {"+1555\xd9\xa1"
       "234567",
       PhoneError::kBadCharacter, nullptr},  // Arabic-Indic digit
      {"+1 555 123 4567 8 9 0 1 2 3 4 5 6 7", PhoneError::kTooLong, nullptr},
  };
  for (const Case& c : cases) {
    PhoneParse p = parse_phone_number(c.input);
    EXPECT_EQ(p.error, c.error) << c.input << " -> " << phone_error_name(p.error);
    if (c.error == PhoneError::kOk) {
      EXPECT_EQ(p.number.to_string(), c.canonical) << c.input;
    }
  }
}

TEST(PhoneNumberTest, ValueRoundTripsAndDistinguishesLengths) {
  PhoneParse a = parse_phone_number("+12345678");
  PhoneParse b = parse_phone_number("+123456780");
  ASSERT_EQ(a.error, PhoneError::kOk);
  ASSERT_EQ(b.error, PhoneError::kOk);
  EXPECT_NE(a.number, b.number);
  EXPECT_EQ(PhoneNumber::from_value(a.number.value()).to_string(), "+12345678");
  EXPECT_EQ(phone_error_name(PhoneError::kLeadingZero), "leading_zero");
}

}  // namespace
}  // namespace herald::registration

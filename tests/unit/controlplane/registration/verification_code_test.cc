// Tests for verification codes: the rejection sampler's boundary, uniformity of the digits
// (loose chi-square), the text form, and what the code hash binds.
#include "controlplane/registration/verification_code.h"

#include <gtest/gtest.h>

#include <array>
#include <string_view>
#include <vector>

namespace herald::registration {
namespace {

TEST(VerificationCodeTest, RejectionSamplerBoundary) {
  EXPECT_EQ(kCodeSampleLimit, 4'294'000'000u);
  EXPECT_EQ(code_from_sample(0), 0u);
  EXPECT_EQ(code_from_sample(999'999), 999'999u);
  EXPECT_EQ(code_from_sample(1'000'000), 0u);
  EXPECT_EQ(code_from_sample(kCodeSampleLimit - 1), 999'999u);
  EXPECT_FALSE(code_from_sample(kCodeSampleLimit));
  EXPECT_FALSE(code_from_sample(UINT32_MAX));
  // Every accepted residue comes from exactly 4,294 samples: no modulo bias.
  EXPECT_EQ(kCodeSampleLimit / kCodeSpace, 4'294u);
}

TEST(VerificationCodeTest, TextIsZeroPaddedSixDigits) {
  CodeText t = code_text(42);
  EXPECT_EQ(std::string_view(t.data(), t.size()), "000042");
  t = code_text(999'999);
  EXPECT_EQ(std::string_view(t.data(), t.size()), "999999");
  EXPECT_TRUE(is_well_formed_code("000000"));
  EXPECT_FALSE(is_well_formed_code("12345"));
  EXPECT_FALSE(is_well_formed_code("1234567"));
  EXPECT_FALSE(is_well_formed_code("12345a"));
  EXPECT_FALSE(is_well_formed_code("12 345"));
}

TEST(VerificationCodeTest, DigitsAreUniform) {
  // 60,000 codes; each of the 6 positions should spread evenly over 10 digits. Chi-square with
  // 9 degrees of freedom exceeds 45 with probability below 1e-6 under uniformity, so this fails
  // only on real bias (a stuck or skewed digit). Modulo bias of % 10^6 on 32 bits is far too
  // small to show at any sample size a test can afford: the sampler boundary test covers it.
  constexpr int kCodes = 60'000;
  std::array<std::array<int, 10>, kCodeDigits> counts{};
  for (int i = 0; i < kCodes; ++i) {
    CodeText c = generate_code();
    ASSERT_TRUE(is_well_formed_code(std::string_view(c.data(), c.size())));
    for (size_t p = 0; p < kCodeDigits; ++p) ++counts[p][static_cast<size_t>(c[p] - '0')];
  }
  const double expected = kCodes / 10.0;
  for (size_t p = 0; p < kCodeDigits; ++p) {
    double chi2 = 0;
    for (int n : counts[p]) chi2 += (n - expected) * (n - expected) / expected;
    EXPECT_LT(chi2, 45.0) << "digit position " << p;
  }
}

TEST(CodeHasherTest, BindsSecretPhoneAndCode) {
  std::vector<uint8_t> secret(32, 1);
  std::vector<uint8_t> other_secret(32, 2);
  CodeHasher hasher(secret);
  PhoneNumber a = PhoneNumber::from_value(15551234567);
  PhoneNumber b = PhoneNumber::from_value(15551234568);
  Digest h = hasher.hash(a, "123456");
  EXPECT_EQ(h, hasher.hash(a, "123456"));
  EXPECT_NE(h, hasher.hash(a, "123457"));
  EXPECT_NE(h, hasher.hash(b, "123456"));
  EXPECT_NE(h, CodeHasher(other_secret).hash(a, "123456"));
}

}  // namespace
}  // namespace herald::registration

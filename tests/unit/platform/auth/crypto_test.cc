// Tests for the session-token crypto helpers: HMAC-SHA256 with precomputed state against RFC 4231
// and BoringSSL's HMAC(), and the strict base64url codec.
#include "platform/auth/crypto.h"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <random>
#include <string>
#include <vector>

namespace herald::auth {
namespace {

std::string hex(std::span<const uint8_t> data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : data) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(HmacSha256Test, Rfc4231Vectors) {
  // RFC 4231 §4.2 (test case 1), §4.3 (case 2) and §4.7 (case 6: a key longer than a block).
  std::vector<uint8_t> key1(20, 0x0b);
  EXPECT_EQ(hex(HmacSha256(key1).mac(bytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hex(HmacSha256(bytes("Jefe")).mac(bytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  std::vector<uint8_t> key6(131, 0xaa);
  EXPECT_EQ(
      hex(HmacSha256(key6).mac(bytes("Test Using Larger Than Block-Size Key - Hash Key First"))),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256Test, MatchesBoringSslForAllSplitsAndLengths) {
  std::mt19937_64 rng(7);
  for (size_t key_len : {0u, 1u, 32u, 64u, 65u, 200u}) {
    std::vector<uint8_t> key(key_len);
    for (auto& b : key) b = static_cast<uint8_t>(rng());
    HmacSha256 hmac(key);
    for (size_t len = 0; len < 150; len += 7) {
      std::vector<uint8_t> msg(len);
      for (auto& b : msg) b = static_cast<uint8_t>(rng());
      uint8_t expected[32];
      unsigned out_len = 0;
      HMAC(EVP_sha256(), key.data(), key.size(), msg.data(), msg.size(), expected, &out_len);
      ASSERT_EQ(out_len, 32u);
      EXPECT_EQ(hex(hmac.mac(msg)), hex(expected));
      size_t split = len / 3;
      std::span<const uint8_t> all(msg);
      EXPECT_EQ(hex(hmac.mac(all.first(split), all.subspan(split))), hex(expected));
    }
  }
}

TEST(ConstantTimeEqualTest, ComparesContentAndLength) {
  Digest a = sha256(std::string_view("a"));
  Digest b = a;
  EXPECT_TRUE(constant_time_equal(a, b));
  b[31] ^= 1;
  EXPECT_FALSE(constant_time_equal(a, b));
  EXPECT_FALSE(constant_time_equal(std::span(a).first(31), b));
}

TEST(Base64UrlTest, RoundTripsEveryLengthAndIsUrlSafe) {
  std::mt19937_64 rng(11);
  for (size_t len = 0; len < 80; ++len) {
    std::vector<uint8_t> data(len);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    std::string text = base64url_encode(data);
    EXPECT_EQ(text.size(), base64url_encoded_size(len));
    EXPECT_EQ(text.find_first_of("+/="), std::string::npos);
    std::vector<uint8_t> back(len);
    ASSERT_TRUE(base64url_decode(text, back)) << len;
    EXPECT_EQ(back, data);
  }
}

TEST(Base64UrlTest, KnownVectors) {
  // RFC 4648 §10 vectors, without padding and in the URL-safe alphabet.
  EXPECT_EQ(base64url_encode(bytes("f")), "Zg");
  EXPECT_EQ(base64url_encode(bytes("fo")), "Zm8");
  EXPECT_EQ(base64url_encode(bytes("foo")), "Zm9v");
  EXPECT_EQ(base64url_encode(bytes("foobar")), "Zm9vYmFy");
  const uint8_t high[] = {0xfb, 0xff};
  EXPECT_EQ(base64url_encode(high), "-_8");
}

TEST(Base64UrlTest, DecoderIsStrict) {
  uint8_t one[1];
  uint8_t two[2];
  uint8_t three[3];
  EXPECT_TRUE(base64url_decode("Zg", one));
  EXPECT_FALSE(base64url_decode("Zh", one));    // unused low bits set: non-canonical
  EXPECT_FALSE(base64url_decode("Zg==", one));  // padding
  EXPECT_FALSE(base64url_decode("Zm9", one));   // wrong length for the output
  EXPECT_TRUE(base64url_decode("Zm8", two));
  EXPECT_FALSE(base64url_decode("Zm9", two));     // unused low bits set
  EXPECT_FALSE(base64url_decode("Zm+v", three));  // standard alphabet, not URL-safe
  EXPECT_FALSE(base64url_decode("Zm/v", three));
  EXPECT_FALSE(base64url_decode("Zm v", three));
  EXPECT_FALSE(base64url_decode(std::string_view("Zm\0v", 4), three));
  EXPECT_TRUE(base64url_decode("Zm9v", three));
}

TEST(RandomBytesTest, FillsAndDiffers) {
  std::array<uint8_t, 32> a{};
  std::array<uint8_t, 32> b{};
  random_bytes(a);
  random_bytes(b);
  EXPECT_NE(a, b);  // 2^-256 chance of a false failure
}

}  // namespace
}  // namespace herald::auth

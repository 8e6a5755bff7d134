// Proves the build links BoringSSL (not the system OpenSSL): its marker macro, its headers and
// its libcrypto, checked against the HMAC-SHA256 vectors of RFC 4231 that session tokens rely on.
#include <gtest/gtest.h>
#include <openssl/base.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <string>

#ifndef OPENSSL_IS_BORINGSSL
#error "boringssl_dep must put BoringSSL's headers first; OpenSSL's leaked into this target"
#endif

namespace {

std::string hex(const uint8_t* data, size_t len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < len; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}

TEST(BoringSslTest, Sha256OfAbc) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>("abc"), 3, digest);
  EXPECT_EQ(hex(digest, sizeof digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(BoringSslTest, HmacSha256Rfc4231Case2) {
  const std::string key = "Jefe";
  const std::string data = "what do ya want for nothing?";
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned mac_len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), key.data(), key.size(),
                 reinterpret_cast<const uint8_t*>(data.data()), data.size(), mac, &mac_len),
            nullptr);
  EXPECT_EQ(hex(mac, mac_len), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

}  // namespace

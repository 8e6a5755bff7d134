// The Internet checksum against RFC 1071's worked example and a naive reference, and RFC 1624
// incremental updates against recomputation.
#include "dataplane/net/checksum.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/dataplane/net/net_test_util.h"

namespace herald::net {
namespace {

using testing::Bytes;

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
  const Bytes b{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(checksum_fold(checksum_add(0, b)), 0xddf2);
  EXPECT_EQ(internet_checksum(b), static_cast<uint16_t>(~0xddf2));
}

TEST(Checksum, MatchesNaiveForEveryLengthAndChains) {
  std::mt19937 rng(7);
  for (size_t len = 0; len < 300; ++len) {
    Bytes b(len);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    ASSERT_EQ(internet_checksum(b), testing::naive_checksum(b)) << len;
    // Even-offset chaining gives the same sum.
    const size_t cut = (len / 3) & ~size_t{1};
    const uint32_t chained =
        checksum_add(checksum_add(0, {b.data(), cut}), {b.data() + cut, len - cut});
    ASSERT_EQ(checksum_fold(chained), testing::naive_sum(b)) << len;
  }
  Bytes ones(65536, 0xff);
  EXPECT_EQ(internet_checksum(ones), testing::naive_checksum(ones)) << "no lost carries";
}

TEST(Checksum, VerifiesWithFieldInPlace) {
  Bytes b{0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01,
          0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01};
  const uint16_t c = internet_checksum(b);
  b[10] = static_cast<uint8_t>(c >> 8);
  b[11] = static_cast<uint8_t>(c);
  EXPECT_TRUE(checksum_ok(b));
  b[3] ^= 1;
  EXPECT_FALSE(checksum_ok(b));
}

TEST(Checksum, IncrementalUpdateEqualsRecompute) {
  std::mt19937 rng(11);
  for (int i = 0; i < 5000; ++i) {
    Bytes b(20);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    b[10] = b[11] = 0;
    const uint16_t c = internet_checksum(b);
    const size_t w = 2 * (rng() % 10);
    if (w == 10) continue;  // the checksum word itself
    const uint16_t old_word = static_cast<uint16_t>((b[w] << 8) | b[w + 1]);
    const uint16_t new_word = static_cast<uint16_t>(rng());
    b[w] = static_cast<uint8_t>(new_word >> 8);
    b[w + 1] = static_cast<uint8_t>(new_word);
    const uint16_t updated = checksum_update16(c, old_word, new_word);
    const uint16_t fresh = internet_checksum(b);
    // Both are valid encodings of the same sum; RFC 1624 eqn. 3 never yields the -0 (0xffff)
    // that a full recompute cannot give either, except for all-zero data.
    ASSERT_EQ(updated, fresh) << i;
  }
}

TEST(Checksum, PseudoHeader) {
  const IpAddress s = IpAddress::v4(10, 0, 0, 1), d = IpAddress::v4(192, 168, 1, 200);
  EXPECT_EQ(checksum_fold(pseudo_header_sum(s, d, 6, 1480)), testing::naive_pseudo(s, d, 6, 1480));
}

}  // namespace
}  // namespace herald::net

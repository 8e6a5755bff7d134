// Tests for platform/crc32c: RFC 3720 test vectors, hardware == portable == a bit-at-a-time
// reference on every length and alignment, and incremental == one-shot.
#include "platform/crc32c/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace herald::crc32c {
namespace {

// The definition, one bit at a time (reflected polynomial 0x82F63B78), sharing no code or
// tables with the implementations under test.
uint32_t reference_crc32c(const uint8_t* data, size_t size) {
  uint32_t crc = 0xFFFFFFFF;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78 & (0u - (crc & 1)));
  }
  return ~crc;
}

using Impl = uint32_t (*)(uint32_t, const void*, size_t);

struct NamedImpl {
  const char* name;
  Impl fn;
};

std::vector<NamedImpl> implementations() {
  std::vector<NamedImpl> impls = {{"extend", &extend}, {"portable", &extend_portable}};
  if (hardware_accelerated()) impls.push_back({"sse42", &extend_sse42});
  return impls;
}

TEST(Crc32c, Rfc3720AppendixB4Vectors) {
  uint8_t zeros[32];
  uint8_t ones[32];
  uint8_t incrementing[32];
  uint8_t decrementing[32];
  for (int i = 0; i < 32; ++i) {
    zeros[i] = 0;
    ones[i] = 0xFF;
    incrementing[i] = static_cast<uint8_t>(i);
    decrementing[i] = static_cast<uint8_t>(31 - i);
  }
  // RFC 3720 B.4: an iSCSI SCSI Read (10) command PDU.
  const uint8_t read_pdu[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  for (const NamedImpl& impl : implementations()) {
    SCOPED_TRACE(impl.name);
    EXPECT_EQ(impl.fn(0, zeros, 32), 0x8A9136AAu);
    EXPECT_EQ(impl.fn(0, ones, 32), 0x62A8AB43u);
    EXPECT_EQ(impl.fn(0, incrementing, 32), 0x46DD794Eu);
    EXPECT_EQ(impl.fn(0, decrementing, 32), 0x113FDB5Cu);
    EXPECT_EQ(impl.fn(0, read_pdu, 48), 0xD9963A56u);
    EXPECT_EQ(impl.fn(0, "123456789", 9), 0xE3069283u);  // the usual check value
    EXPECT_EQ(impl.fn(0, nullptr, 0), 0u);
    EXPECT_EQ(impl.fn(0x12345678, nullptr, 0), 0x12345678u);
  }
  EXPECT_EQ(value(std::string_view("123456789")), 0xE3069283u);
  EXPECT_EQ(value("123456789", 9), 0xE3069283u);
}

TEST(Crc32c, ReferenceAgreesWithVectors) {
  // Guards the guard: the bitwise reference must itself be right.
  EXPECT_EQ(reference_crc32c(reinterpret_cast<const uint8_t*>("123456789"), 9), 0xE3069283u);
}

TEST(Crc32c, AllImplementationsAgreeOnEveryLengthAndAlignment) {
  std::mt19937_64 rng(20240601);
  // 64 bytes of slack so every start offset within a cache line is tried.
  std::vector<uint8_t> buffer(1000 + 64 + 8);
  for (uint8_t& b : buffer) b = static_cast<uint8_t>(rng());
  for (size_t offset = 0; offset < 64; ++offset) {
    for (size_t length = 0; length <= 1000; ++length) {
      const uint8_t* p = buffer.data() + offset;
      uint32_t expected = reference_crc32c(p, length);
      for (const NamedImpl& impl : implementations()) {
        ASSERT_EQ(impl.fn(0, p, length), expected)
            << impl.name << " offset=" << offset << " length=" << length;
      }
    }
  }
}

TEST(Crc32c, LongBuffersTakeTheInterleavedPaths) {
  // Lengths around the 3 x 256 B and 3 x 8 KiB interleave thresholds and well past them.
  std::mt19937_64 rng(7);
  std::vector<uint8_t> buffer(200'000 + 8);
  for (uint8_t& b : buffer) b = static_cast<uint8_t>(rng());
  std::vector<size_t> lengths = {767,   768,   769,   1535,  1536,  24575,  24576,
                                 24577, 25343, 25344, 49152, 49153, 200'000};
  for (int i = 0; i < 20; ++i) lengths.push_back(rng() % 200'000);
  for (size_t length : lengths) {
    for (size_t offset : {0, 1, 3, 7}) {
      const uint8_t* p = buffer.data() + offset;
      uint32_t expected = reference_crc32c(p, length);
      for (const NamedImpl& impl : implementations()) {
        ASSERT_EQ(impl.fn(0, p, length), expected)
            << impl.name << " offset=" << offset << " length=" << length;
      }
    }
  }
}

TEST(Crc32c, IncrementalEqualsOneShot) {
  std::mt19937_64 rng(99);
  std::vector<uint8_t> data(70'000);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  for (const NamedImpl& impl : implementations()) {
    SCOPED_TRACE(impl.name);
    // Every split point of a short buffer.
    const size_t kShort = 300;
    uint32_t whole_short = impl.fn(0, data.data(), kShort);
    for (size_t split = 0; split <= kShort; ++split) {
      uint32_t crc = impl.fn(0, data.data(), split);
      ASSERT_EQ(impl.fn(crc, data.data() + split, kShort - split), whole_short) << split;
    }
    // Random chunkings of a long one.
    uint32_t whole = impl.fn(0, data.data(), data.size());
    for (int round = 0; round < 50; ++round) {
      uint32_t crc = 0;
      size_t pos = 0;
      while (pos < data.size()) {
        size_t chunk = std::min<size_t>(data.size() - pos, rng() % (rng() % 2 ? 64 : 30'000));
        crc = impl.fn(crc, data.data() + pos, chunk);
        pos += chunk;
      }
      ASSERT_EQ(crc, whole) << "round " << round;
    }
  }
}

TEST(Crc32c, DetectsSingleBitFlips) {
  std::vector<uint8_t> data(4096, 0x5A);
  uint32_t good = value(data.data(), data.size());
  for (size_t bit = 0; bit < data.size() * 8; bit += 37) {
    data[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_NE(value(data.data(), data.size()), good) << bit;
    data[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
}

TEST(Crc32c, HardwarePathMatchesCpuid) {
  EXPECT_EQ(hardware_accelerated(), __builtin_cpu_supports("sse4.2") != 0);
}

}  // namespace
}  // namespace herald::crc32c

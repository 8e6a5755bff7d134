// The .hprof capture format: round trip (missing values, negative and wrapping deltas, series
// that appear later), and every damaged form a reader meets: bad magic, another version,
// truncation at every length, flipped bytes, trailing bytes, hostile counts.
#include "controlplane/profiler/capture.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "platform/crc32c/crc32c.h"

namespace herald::profiler {
namespace {

Capture sample_capture() {
  Capture c;
  c.meta = {"node-a", "host-1", 1700000000123ull, 10'000'000};
  c.series = {{"os.cpu.user", "jiffies", SeriesKind::kCounter},
              {"ctr.tcp.rx", "count", SeriesKind::kCounter},
              {"ctr.queue.depth", "value", SeriesKind::kGauge},
              {"hw.cpu2.cycles", "events", SeriesKind::kCounter},
              {"a", "", SeriesKind::kGauge},
              {"b", "", SeriesKind::kGauge},
              {"c", "", SeriesKind::kGauge},
              {"d", "", SeriesKind::kGauge},
              {"e", "", SeriesKind::kGauge}};  // 9 series: the bitmap takes two bytes
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  for (int i = 0; i < 50; ++i) {
    Sample s;
    s.mono_ns = 5'000'000'000ull + uint64_t(i) * 10'000'000 + (i % 3);
    s.values = {int64_t{1000} + i * 7,
                int64_t{i} * 1'000'000'007,
                int64_t{100} - i * i,
                std::nullopt,  // unavailable hardware counter
                i % 2 ? kMax : kMin,
                i < 10 ? std::nullopt : std::optional<int64_t>(i),
                0,
                -1,
                i};
    c.samples.push_back(std::move(s));
  }
  return c;
}

Capture flame_capture() {
  Capture c = sample_capture();
  FlameProfile& f = c.flame.emplace();
  f.status = "ok";
  f.frequency_hz = 499;
  f.pid = 4242;
  f.stacks = {{"herald-dataplane;main;herald::dataplane::Worker::run;poll_once", 120},
              {"herald-dataplane;main;" + std::string(3000, 'x'), 1},  // past 1024 bytes
              {"", 7}};
  return c;
}

TEST(Capture, RoundTrip) {
  const Capture c = sample_capture();
  const std::string bytes = encode_capture(c);
  absl::StatusOr<Capture> back = decode_capture(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->meta, c.meta);
  EXPECT_EQ(back->series, c.series);
  EXPECT_EQ(back->samples, c.samples);
  // Compact: slowly moving integers take about a byte each.
  EXPECT_LT(bytes.size(), 50u * 9 * 6);
}

TEST(Capture, FlameSectionRoundTrips) {
  const Capture c = flame_capture();
  const std::string bytes = encode_capture(c);
  EXPECT_EQ(bytes[10], kFlagFlame);
  absl::StatusOr<Capture> back = decode_capture(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->samples, c.samples);
  ASSERT_TRUE(back->flame.has_value());
  EXPECT_EQ(*back->flame, *c.flame);
  // A status without stacks (perf missing) round-trips too.
  Capture none = sample_capture();
  none.flame = FlameProfile{"perf not installed", 499, 0, {}};
  back = decode_capture(encode_capture(none));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back->flame, *none.flame);
  // No flame asked for: flags 0, and none decoded.
  EXPECT_EQ(encode_capture(sample_capture())[10], 0);
  EXPECT_FALSE(decode_capture(encode_capture(sample_capture()))->flame.has_value());
}

// A version 1 file (what the first control planes wrote): the same body, version 1, flags 0.
TEST(Capture, VersionOneFilesAreStillRead) {
  std::string bytes = encode_capture(sample_capture());
  bytes[8] = 1;
  const uint32_t crc = crc32c::value(bytes.data(), bytes.size() - 4);
  for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + i] = static_cast<char>(crc >> (8 * i));
  absl::StatusOr<Capture> back = decode_capture(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->samples, sample_capture().samples);
  // Version 1 knows no flags: a flame bit there is corrupt.
  bytes[10] = kFlagFlame;
  const uint32_t crc2 = crc32c::value(bytes.data(), bytes.size() - 4);
  for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + i] = static_cast<char>(crc2 >> (8 * i));
  EXPECT_EQ(decode_capture(bytes).status().code(), absl::StatusCode::kDataLoss);
}

TEST(Capture, EmptyCaptureRoundTrips) {
  Capture c;
  absl::StatusOr<Capture> back = decode_capture(encode_capture(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->series.empty());
  EXPECT_TRUE(back->samples.empty());
}

TEST(Capture, BadMagicAndVersion) {
  EXPECT_EQ(decode_capture("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decode_capture("GIF89a..........................").status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string bytes = encode_capture(sample_capture());
  bytes[8] = 3;
  const absl::Status s = decode_capture(bytes).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("version 3"), std::string::npos) << s;
}

TEST(Capture, EveryTruncationIsReportedAsSuch) {
  const std::string bytes = encode_capture(flame_capture());
  for (size_t n = sizeof(kMagic); n < bytes.size(); ++n) {
    const absl::Status s = decode_capture(std::string_view(bytes).substr(0, n)).status();
    ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << n;
    EXPECT_NE(s.message().find("truncated"), std::string::npos) << n << ": " << s;
  }
  const absl::Status s = decode_capture(bytes + "x").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("after its end"), std::string::npos) << s;
}

TEST(Capture, EveryFlippedByteIsCaught) {
  const std::string bytes = encode_capture(flame_capture());
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    const absl::StatusOr<Capture> c = decode_capture(bad);
    EXPECT_FALSE(c.ok()) << "flip at " << i;
  }
}

// Counts that would make a reader allocate without bound, with a valid length and checksum (a
// hostile writer, or the fuzzer): rejected before anything is sized from them.
std::string with_body(std::string_view body) {
  std::string out = encode_capture(Capture{}).substr(0, 20);
  out.append(body);
  const uint64_t total = out.size() + 4;
  for (int i = 0; i < 8; ++i) out[12 + i] = static_cast<char>((total >> (8 * i)) & 0xff);
  const uint32_t crc = crc32c::value(out.data(), out.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  return out;
}

TEST(Capture, HostileCountsWithAValidChecksumAreRejected) {
  // node "", host "", start 0, interval 0, then a series count of 2^63.
  std::string body("\0\0\0\0", 4);
  body += std::string(9, '\xff').replace(8, 1, "\x7f");
  absl::Status s = decode_capture(with_body(body)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("series count"), std::string::npos) << s;

  // One series "x" of unit "u", then a sample count of 2^40.
  body = std::string("\0\0\0\0\x01\x01x\x01u\x02", 10);
  body += std::string("\x80\x80\x80\x80\x80\x20", 6);
  s = decode_capture(with_body(body)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("sample count"), std::string::npos) << s;

  // A varint longer than 64 bits.
  body = std::string("\0\0", 2) + std::string(10, '\xff') + std::string("\x01", 1);
  s = decode_capture(with_body(body)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;

  // A non-minimal varint (0 as two bytes): one capture has one encoding.
  body = std::string("\x80\x00\0\0\0\0\0", 7);
  s = decode_capture(with_body(body)).status();
  EXPECT_NE(s.message().find("non-minimal varint"), std::string::npos) << s;

  // A flame section whose stack count passes what is left, and a stack past its limit.
  const auto flame_body = [](std::string tail) {
    std::string out = encode_capture(Capture{}).substr(0, 20);
    out[10] = static_cast<char>(kFlagFlame);
    out.append(std::string("\0\0\0\0\0\0", 6));  // meta, no series, no samples
    out.append(tail);
    const uint64_t total = out.size() + 4;
    for (int i = 0; i < 8; ++i) out[12 + i] = static_cast<char>((total >> (8 * i)) & 0xff);
    const uint32_t crc = crc32c::value(out.data(), out.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
    return out;
  };
  s = decode_capture(flame_body(std::string("\x02ok\x01\x01\x80\x80\x04", 8))).status();
  EXPECT_NE(s.message().find("flame stack count"), std::string::npos) << s;
  s = decode_capture(flame_body(std::string("\x00\x01\x01\x01\x81\x80\x08", 7))).status();
  EXPECT_NE(s.message().find("flame stack longer than limit"), std::string::npos) << s;
  ASSERT_TRUE(decode_capture(flame_body(std::string("\x02ok\x01\x01\x01\x01x\x05", 9))).ok());

  // An unknown series kind.
  body = std::string("\0\0\0\0\x01\x01x\x01u\x09\x00", 11);
  s = decode_capture(with_body(body)).status();
  EXPECT_NE(s.message().find("unknown series kind"), std::string::npos) << s;
}

}  // namespace
}  // namespace herald::profiler

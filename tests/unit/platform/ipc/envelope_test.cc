// Envelopes on a ring: built, copied in, read back and verified; and every way a record from
// another process can be wrong is reported as a named error, never trusted.
#include "platform/ipc/envelope.h"

#include <gtest/gtest.h>

#include <vector>

#include "platform/ipc/segment.h"

namespace herald::ipc {
namespace {

std::span<const std::byte> as_span(const std::vector<uint8_t>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size()};
}

std::vector<uint8_t> heartbeat_envelope(uint64_t seq, uint32_t held) {
  flatbuffers::FlatBufferBuilder b(128);
  finish_envelope(b, seq, CreateHeartbeat(b, 77, 123, held, 0));
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

// Copies into 8-aligned storage, as a ring payload is.
struct Aligned {
  explicit Aligned(const std::vector<uint8_t>& v) : words((v.size() + 7) / 8) {
    if (!v.empty()) std::memcpy(words.data(), v.data(), v.size());
    size = v.size();
  }
  std::span<const std::byte> bytes() const {
    return {reinterpret_cast<const std::byte*>(words.data()), size};
  }
  std::vector<uint64_t> words;
  size_t size;
};

TEST(EnvelopeTest, RoundTripThroughARing) {
  auto seg = IpcSegment::create(1, 4096);
  ASSERT_TRUE(seg.ok());
  auto out = seg->producer(0, Direction::kDpToCp);
  auto in = seg->consumer(0, Direction::kDpToCp);
  ASSERT_TRUE(out.ok() && in.ok());
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    const auto env = heartbeat_envelope(seq, static_cast<uint32_t>(seq * 10));
    ASSERT_EQ(put_envelope(*out, Record::Heartbeat, as_span(env)), shm::RingStatus::kOk);
  }
  EXPECT_EQ(out->commit(), 3u);
  shm::RecordView views[4];
  const shm::ReadResult r = in->read_batch(views);
  ASSERT_EQ(r.count, 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    const CheckedEnvelope c = verify_envelope(views[i].type, views[i].payload);
    ASSERT_EQ(c.error, EnvelopeError::kNone);
    EXPECT_EQ(c.envelope->seq(), i + 1);
    ASSERT_EQ(c.envelope->record_type(), Record::Heartbeat);
    EXPECT_EQ(c.envelope->record_as_Heartbeat()->held_appends(), (i + 1) * 10);
  }
}

TEST(EnvelopeTest, HelloHelperFillsEveryField) {
  flatbuffers::FlatBufferBuilder b;
  HelloFields f;
  f.plane = Plane::Controlplane;
  f.ipc_version = 1;
  f.instance_id = 99;
  f.pid = 1234;
  f.node_id = 5;
  f.worker = 2;
  f.workers = 4;
  f.server_msg_time_floor_ms = 1'700'000'000'000;
  build_hello(b, 1, f, "v0.1");
  const std::vector<uint8_t> v(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
  Aligned a(v);
  const CheckedEnvelope c = verify_envelope(static_cast<uint32_t>(Record::Hello), a.bytes());
  ASSERT_EQ(c.error, EnvelopeError::kNone);
  const Hello* h = c.envelope->record_as_Hello();
  EXPECT_EQ(h->plane(), Plane::Controlplane);
  EXPECT_EQ(h->instance_id(), 99u);
  EXPECT_EQ(h->pid(), 1234u);
  EXPECT_EQ(h->node_id(), 5);
  EXPECT_EQ(h->worker(), 2);
  EXPECT_EQ(h->workers(), 4);
  EXPECT_EQ(h->server_msg_time_floor_ms(), 1'700'000'000'000u);
  EXPECT_EQ(h->build()->str(), "v0.1");
}

TEST(EnvelopeTest, RejectsWhatAPeerMightSend) {
  const auto good = heartbeat_envelope(1, 0);
  const auto hb = static_cast<uint32_t>(Record::Heartbeat);
  {
    Aligned a(good);
    EXPECT_EQ(verify_envelope(hb, a.bytes()).error, EnvelopeError::kNone);
    // The ring says another type than the Envelope.
    EXPECT_EQ(verify_envelope(static_cast<uint32_t>(Record::StoreAck), a.bytes()).error,
              EnvelopeError::kTypeMismatch);
    // A type from a newer schema.
    EXPECT_EQ(verify_envelope(200, a.bytes()).error, EnvelopeError::kUnknownType);
  }
  {
    // Truncated.
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(good.size() / 2));
    Aligned a(cut);
    EXPECT_EQ(verify_envelope(hb, a.bytes()).error, EnvelopeError::kBadFlatbuffer);
  }
  {
    // Wrong file identifier.
    std::vector<uint8_t> v = good;
    v[4] = 'X';
    Aligned a(v);
    EXPECT_EQ(verify_envelope(hb, a.bytes()).error, EnvelopeError::kBadFlatbuffer);
  }
  {
    // Root offset pointing outside the buffer.
    std::vector<uint8_t> v = good;
    v[0] = 0xff;
    v[1] = 0xff;
    Aligned a(v);
    EXPECT_EQ(verify_envelope(hb, a.bytes()).error, EnvelopeError::kBadFlatbuffer);
  }
  {
    // An Envelope without a record.
    flatbuffers::FlatBufferBuilder b;
    FinishEnvelopeBuffer(b, CreateEnvelope(b, 1));
    const std::vector<uint8_t> v(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
    Aligned a(v);
    EXPECT_EQ(verify_envelope(0, a.bytes()).error, EnvelopeError::kNoRecord);
  }
  {
    Aligned a(std::vector<uint8_t>{});
    EXPECT_EQ(verify_envelope(hb, a.bytes()).error, EnvelopeError::kBadFlatbuffer);
  }
  // Every byte flipped in turn: never a crash (ASan watches), and anything accepted is whole.
  for (size_t i = 0; i < good.size(); ++i) {
    std::vector<uint8_t> v = good;
    v[i] ^= 0x5a;
    Aligned a(v);
    const CheckedEnvelope c = verify_envelope(hb, a.bytes());
    if (c.error == EnvelopeError::kNone) {
      (void)c.envelope->seq();
      ASSERT_NE(c.envelope->record_as_Heartbeat(), nullptr);
    }
  }
}

TEST(EnvelopeTest, TooLargeForTheRingIsRefusedNotWritten) {
  auto seg = IpcSegment::create(1, 256);
  ASSERT_TRUE(seg.ok());
  auto out = seg->producer(0, Direction::kDpToCp);
  ASSERT_TRUE(out.ok());
  std::vector<uint8_t> big(out->max_payload_bytes() + 1, 0);
  EXPECT_EQ(enqueue_envelope(*out, Record::Heartbeat, as_span(big)), shm::RingStatus::kTooLarge);
  EXPECT_EQ(out->stats().records, 0u);
}

TEST(EnvelopeTest, ErrorNamesAreDistinct) {
  EXPECT_STREQ(envelope_error_name(EnvelopeError::kBadFlatbuffer), "bad_flatbuffer");
  EXPECT_STREQ(envelope_error_name(EnvelopeError::kUnknownType), "unknown_type");
  EXPECT_STREQ(envelope_error_name(EnvelopeError::kTypeMismatch), "type_mismatch");
  EXPECT_STREQ(envelope_error_name(EnvelopeError::kNoRecord), "no_record");
}

}  // namespace
}  // namespace herald::ipc

// Tests for the client frame decoder: a corpus of bad frames (each must give its named error and
// never crash), streaming in arbitrary pieces, many frames per feed, alignment, and the
// failed-state contract.
#include "schemas/codec/frame_decoder.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_error.h"
#include "schemas/config_generated.h"
#include "schemas/ipc_generated.h"

namespace herald::codec {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes copy(std::span<const uint8_t> s) {
  return Bytes(s.begin(), s.end());
}

Bytes le32(uint32_t v) {
  return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 24)};
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes ping_frame(uint64_t nonce) {
  FrameBuilder b;
  return copy(b.finish(wire::CreatePing(b.fbb(), nonce, nonce * 3)));
}

// A Message to a group with a body of `body_bytes` bytes (content derived from `seed`).
Bytes message_frame(uint64_t client_msg_id, size_t body_bytes, uint8_t seed = 0) {
  FrameBuilder b;
  auto& fbb = b.fbb();
  Bytes body(body_bytes);
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<uint8_t>(seed + i);
  const wire::GroupId group(0x1111, 0x2222);
  auto to = wire::CreateToGroup(fbb, &group);
  auto body_off = fbb.CreateVector(body);
  auto msg = wire::CreateMessage(fbb, wire::Recipient::ToGroup, to.Union(), client_msg_id, body_off,
                                 /*content_type=*/7, /*client_time_ms=*/1234);
  return copy(b.finish(msg));
}

// Everything the decoder gives back for `stream`, fed in one piece, draining as the contract
// says. `error` receives the error that ended decoding (kNone if it ended needing more).
std::vector<Bytes> decode_all(const Bytes& stream, const DecoderLimits& limits, FrameError* error,
                              size_t storage_bytes = 0) {
  OwnedFrameDecoder dec(limits, storage_bytes);
  std::vector<Bytes> frames;
  *error = FrameError::kNone;
  std::span<const uint8_t> in(stream);
  for (;;) {
    // Every pass starts drained (or fresh), so a non-empty feed must take a byte.
    const size_t taken = dec.feed(in);
    if (!in.empty() && taken == 0) {
      ADD_FAILURE() << "decoder stalled with " << in.size() << " bytes left";
      return frames;
    }
    in = in.subspan(taken);
    for (;;) {
      const DecodeResult r = dec.next_frame();
      if (r.status == DecodeStatus::kNeedMore) break;
      if (r.status == DecodeStatus::kError) {
        *error = r.error;
        return frames;
      }
      frames.push_back(copy(r.frame.bytes));
    }
    if (in.empty()) return frames;
  }
}

FrameError first_error(const Bytes& stream, const DecoderLimits& limits = {}) {
  FrameError error;
  const std::vector<Bytes> frames = decode_all(stream, limits, &error);
  EXPECT_TRUE(frames.empty()) << "a bad frame decoded";
  return error;
}

TEST(FrameDecoder, DecodesOneFrameAndItsFields) {
  const Bytes frame = message_frame(42, 100, 5);
  OwnedFrameDecoder dec(DecoderLimits{});
  ASSERT_EQ(dec.feed(frame), frame.size());
  const DecodeResult r = dec.next_frame();
  ASSERT_EQ(r.status, DecodeStatus::kFrame) << to_string(r.error);
  ASSERT_EQ(r.frame.type(), wire::Payload::Message);
  const wire::Message* m = r.frame.frame->payload_as_Message();
  EXPECT_EQ(m->client_msg_id(), 42u);
  EXPECT_EQ(m->content_type(), 7);
  ASSERT_EQ(m->body()->size(), 100u);
  EXPECT_EQ(m->body()->Get(99), static_cast<uint8_t>(5 + 99));
  ASSERT_EQ(m->to_type(), wire::Recipient::ToGroup);
  EXPECT_EQ(m->to_as_ToGroup()->group()->lo(), 0x2222u);
  EXPECT_EQ(copy(r.frame.bytes), frame);
  EXPECT_EQ(dec.next_frame().status, DecodeStatus::kNeedMore);
  EXPECT_EQ(dec.decoder().frames_decoded(), 1u);
}

TEST(FrameDecoder, NothingFedNeedsMore) {
  OwnedFrameDecoder dec(DecoderLimits{});
  EXPECT_EQ(dec.feed({}), 0u);
  EXPECT_EQ(dec.next_frame().status, DecodeStatus::kNeedMore);
  EXPECT_FALSE(dec.decoder().failed());
}

TEST(FrameDecoder, TruncatedPrefixNeedsMoreThenCompletes) {
  const Bytes frame = ping_frame(9);
  OwnedFrameDecoder dec(DecoderLimits{});
  ASSERT_EQ(dec.feed(std::span(frame).first(2)), 2u);
  EXPECT_EQ(dec.next_frame().status, DecodeStatus::kNeedMore);
  EXPECT_EQ(dec.decoder().buffered_bytes(), 2u);
  ASSERT_EQ(dec.feed(std::span(frame).subspan(2)), frame.size() - 2);
  EXPECT_EQ(dec.next_frame().status, DecodeStatus::kFrame);
}

TEST(FrameDecoder, TruncatedBodyNeedsMore) {
  const Bytes frame = message_frame(1, 50);
  OwnedFrameDecoder dec(DecoderLimits{});
  ASSERT_EQ(dec.feed(std::span(frame).first(frame.size() - 1)), frame.size() - 1);
  EXPECT_EQ(dec.next_frame().status, DecodeStatus::kNeedMore);
  EXPECT_FALSE(dec.decoder().failed());
}

// A bad frame, the limits it is decoded under, and the error it must produce.
struct BadFrame {
  std::string name;
  Bytes stream;
  FrameError expected;
  DecoderLimits limits = {};
};

Bytes valid_frame_with_garbage_body() {
  Bytes garbage(64);
  std::mt19937 rng(7);
  for (uint8_t& b : garbage) b = static_cast<uint8_t>(rng());
  return concat({le32(static_cast<uint32_t>(garbage.size())), garbage});
}

// Garbage after a correct root offset and identifier: passes the identifier check, then must
// be rejected by the Verifier.
Bytes identifier_then_garbage() {
  Bytes payload = concat({le32(8), Bytes{'H', 'R', 'L', 'D'}, Bytes(56, 0xEE)});
  return concat({le32(static_cast<uint32_t>(payload.size())), payload});
}

Bytes config_buffer_size_prefixed() {
  flatbuffers::FlatBufferBuilder fbb;
  auto node = config::CreateNode(fbb, 7);
  auto root = config::CreateNodeConfig(fbb, node);
  fbb.FinishSizePrefixed(root, config::NodeConfigIdentifier());
  return Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

Bytes ipc_envelope_size_prefixed() {
  flatbuffers::FlatBufferBuilder fbb;
  auto hb = ipc::CreateHeartbeat(fbb, 1, 2);
  auto env = ipc::CreateEnvelope(fbb, 1, ipc::Record::Heartbeat, hb.Union());
  fbb.FinishSizePrefixed(env, ipc::EnvelopeIdentifier());
  return Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

// The root offset (just after the prefix and before the identifier) points past the end.
Bytes bad_root_offset() {
  Bytes frame = ping_frame(1);
  const Bytes bad = le32(0x00FFFFF0);
  std::copy(bad.begin(), bad.end(), frame.begin() + 4);
  return frame;
}

// The root table's vtable offset (soffset_t at the table) points outside the buffer.
Bytes bad_vtable_offset() {
  Bytes frame = ping_frame(1);
  uint32_t root = 0;
  std::memcpy(&root, frame.data() + 4, 4);
  const Bytes bad = le32(0x7FFFFFF0);
  std::copy(bad.begin(), bad.end(), frame.begin() + 4 + root);
  return frame;
}

// A vector (the body) whose length field claims more bytes than the frame has.
Bytes bad_vector_length() {
  Bytes frame = message_frame(1, 40, 0);
  // The body bytes are 0..39: find them, and overwrite the u32 count just before.
  Bytes body(40);
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<uint8_t>(i);
  const auto it = std::search(frame.begin(), frame.end(), body.begin(), body.end());
  EXPECT_NE(it, frame.end());
  const Bytes bad = le32(100000);
  std::copy(bad.begin(), bad.end(), it - 4);
  return frame;
}

Bytes frame_with_payload_type(wire::Payload type) {
  FrameBuilder b;
  auto ping = wire::CreatePing(b.fbb(), 1, 2);
  return copy(b.finish_union(type, ping.Union()));
}

Bytes frame_without_table(wire::Payload type) {
  FrameBuilder b;
  return copy(b.finish_union(type, 0));
}

Bytes frame_without_payload() {
  FrameBuilder b;
  return copy(b.finish_union(wire::Payload::NONE, 0));
}

Bytes message_without_body() {
  FrameBuilder b;
  const wire::AccountId account(1, 2);
  auto to = wire::CreateToAccount(b.fbb(), &account);
  return copy(b.finish(wire::CreateMessage(b.fbb(), wire::Recipient::ToAccount, to.Union(), 5)));
}

Bytes message_to_device_without_address() {
  FrameBuilder b;
  auto to = wire::CreateToDevice(b.fbb(), static_cast<const wire::DeviceAddress*>(nullptr));
  auto body = b.fbb().CreateVector(Bytes{1, 2, 3});
  return copy(
      b.finish(wire::CreateMessage(b.fbb(), wire::Recipient::ToDevice, to.Union(), 5, body)));
}

Bytes message_with_unknown_recipient_kind() {
  FrameBuilder b;
  const wire::AccountId account(1, 2);
  auto to = wire::CreateToAccount(b.fbb(), &account);
  auto body = b.fbb().CreateVector(Bytes{1, 2, 3});
  return copy(b.finish(
      wire::CreateMessage(b.fbb(), static_cast<wire::Recipient>(77), to.Union(), 5, body)));
}

Bytes auth_without_token() {
  FrameBuilder b;
  return copy(b.finish(wire::CreateAuth(b.fbb())));
}

// A peer that builds a plain FlatBuffer and writes the length itself: the buffer is aligned to
// its own start, so 8-byte fields land 4 bytes off in the size-prefixed layout.
Bytes unprefixed_buffer_with_manual_length() {
  flatbuffers::FlatBufferBuilder fbb;
  const wire::ServerMsgId id(0x0102030405060708, 0x1112131415161718);
  auto ack = wire::CreateServerAck(fbb, 99, &id, 12345);
  auto frame = wire::CreateFrame(fbb, wire::Payload::ServerAck, ack.Union());
  fbb.Finish(frame, wire::FrameIdentifier());
  return concat(
      {le32(fbb.GetSize()), Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize())});
}

std::vector<BadFrame> bad_frames() {
  DecoderLimits shallow;
  shallow.max_depth = 2;  // Frame -> Message -> ToGroup is 3 deep
  DecoderLimits few_tables;
  few_tables.max_tables = 2;  // Frame, Message, ToGroup are 3 tables
  DecoderLimits small;
  small.max_frame_bytes = 64;
  return {
      {"length 0", le32(0), FrameError::kEmptyFrame},
      {"length 0 with bytes after", concat({le32(0), Bytes(32, 1)}), FrameError::kEmptyFrame},
      {"length 1", concat({le32(1), Bytes{0}}), FrameError::kTooSmall},
      {"length 15", concat({le32(15), Bytes(15, 0)}), FrameError::kTooSmall},
      {"length max+1", le32(DecoderLimits{}.max_frame_bytes + 1), FrameError::kTooLarge},
      {"length 2^32-1", le32(0xFFFFFFFF), FrameError::kTooLarge},
      {"length 2^31", le32(0x80000000), FrameError::kTooLarge},
      {"valid frame over a small limit", message_frame(1, 200), FrameError::kTooLarge, small},
      {"valid prefix + random garbage", valid_frame_with_garbage_body(), FrameError::kWrongRoot},
      {"identifier + garbage", identifier_then_garbage(), FrameError::kBadFlatbuffer},
      {"config buffer (wrong root)", config_buffer_size_prefixed(), FrameError::kWrongRoot},
      {"ipc envelope (wrong root)", ipc_envelope_size_prefixed(), FrameError::kWrongRoot},
      {"root offset out of bounds", bad_root_offset(), FrameError::kBadFlatbuffer},
      {"vtable offset out of bounds", bad_vtable_offset(), FrameError::kBadFlatbuffer},
      {"vector length past the end", bad_vector_length(), FrameError::kBadFlatbuffer},
      {"nesting beyond max_depth", message_frame(1, 10), FrameError::kTooDeep, shallow},
      {"more tables than max_tables", message_frame(1, 10), FrameError::kTooManyTables, few_tables},
      {"unknown payload type 20", frame_with_payload_type(static_cast<wire::Payload>(20)),
       FrameError::kUnknownUnionType},
      {"unknown payload type 255", frame_with_payload_type(static_cast<wire::Payload>(255)),
       FrameError::kUnknownUnionType},
      {"unknown recipient kind", message_with_unknown_recipient_kind(),
       FrameError::kUnknownUnionType},
      {"no payload", frame_without_payload(), FrameError::kMissingPayload},
      {"payload type NONE with a table", frame_with_payload_type(wire::Payload::NONE),
       FrameError::kMissingPayload},
      {"payload type without table", frame_without_table(wire::Payload::Ping),
       FrameError::kMissingPayload},
      {"message without body", message_without_body(), FrameError::kMissingRequiredField},
      {"recipient without address", message_to_device_without_address(),
       FrameError::kMissingRequiredField},
      {"auth without token", auth_without_token(), FrameError::kMissingRequiredField},
      {"unprefixed buffer, manual length", unprefixed_buffer_with_manual_length(),
       FrameError::kMisaligned},
  };
}

TEST(FrameDecoder, EveryBadFrameGivesItsError) {
  for (const BadFrame& bad : bad_frames()) {
    SCOPED_TRACE(bad.name);
    EXPECT_EQ(to_string(first_error(bad.stream, bad.limits)), to_string(bad.expected));
  }
}

// The same corpus, one byte per feed: the answer may not depend on how bytes arrive.
TEST(FrameDecoder, EveryBadFrameGivesItsErrorByteByByte) {
  for (const BadFrame& bad : bad_frames()) {
    SCOPED_TRACE(bad.name);
    OwnedFrameDecoder dec(bad.limits);
    FrameError error = FrameError::kNone;
    for (size_t i = 0; i < bad.stream.size() && error == FrameError::kNone; ++i) {
      (void)dec.feed(std::span(bad.stream).subspan(i, 1));
      for (DecodeResult r = dec.next_frame(); r.status != DecodeStatus::kNeedMore;
           r = dec.next_frame()) {
        ASSERT_EQ(r.status, DecodeStatus::kError) << "a bad frame decoded";
        error = r.error;
        break;
      }
    }
    EXPECT_EQ(to_string(error), to_string(bad.expected));
  }
}

// The too_large verdict comes from the prefix alone: no payload byte needs to arrive.
TEST(FrameDecoder, TooLargeIsReportedFromThePrefix) {
  OwnedFrameDecoder dec(DecoderLimits{});
  ASSERT_EQ(dec.feed(le32(0xFFFFFFFF)), 4u);
  const DecodeResult r = dec.next_frame();
  ASSERT_EQ(r.status, DecodeStatus::kError);
  EXPECT_EQ(r.error, FrameError::kTooLarge);
}

TEST(FrameDecoder, ErrorIsStickyAndFeedTakesNothing) {
  OwnedFrameDecoder dec(DecoderLimits{});
  ASSERT_EQ(dec.feed(le32(0)), 4u);
  EXPECT_EQ(dec.next_frame().error, FrameError::kEmptyFrame);
  const Bytes good = ping_frame(1);
  EXPECT_EQ(dec.feed(good), 0u);
  for (int i = 0; i < 3; ++i) {
    const DecodeResult r = dec.next_frame();
    EXPECT_EQ(r.status, DecodeStatus::kError);
    EXPECT_EQ(r.error, FrameError::kEmptyFrame);
  }
  EXPECT_TRUE(dec.decoder().failed());
  dec.decoder().reset();
  EXPECT_FALSE(dec.decoder().failed());
  ASSERT_EQ(dec.feed(good), good.size());
  EXPECT_EQ(dec.next_frame().status, DecodeStatus::kFrame);
}

// Frames completed before a malformed one are handed out first, in order; then the error.
TEST(FrameDecoder, GoodFramesBeforeAnErrorAreDelivered) {
  const Bytes stream =
      concat({ping_frame(1), message_frame(2, 30), le32(0xFFFFFFFF), ping_frame(3)});
  FrameError error;
  const std::vector<Bytes> frames = decode_all(stream, DecoderLimits{}, &error);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0], ping_frame(1));
  EXPECT_EQ(frames[1], message_frame(2, 30));
  EXPECT_EQ(error, FrameError::kTooLarge);
}

TEST(FrameDecoder, FrameSplitIntoOneByteFeeds) {
  const Bytes frame = message_frame(77, 333, 9);
  OwnedFrameDecoder dec(DecoderLimits{});
  for (size_t i = 0; i < frame.size(); ++i) {
    EXPECT_EQ(dec.next_frame().status, DecodeStatus::kNeedMore) << "at byte " << i;
    ASSERT_EQ(dec.feed(std::span(frame).subspan(i, 1)), 1u);
  }
  const DecodeResult r = dec.next_frame();
  ASSERT_EQ(r.status, DecodeStatus::kFrame) << to_string(r.error);
  EXPECT_EQ(r.frame.frame->payload_as_Message()->client_msg_id(), 77u);
  EXPECT_EQ(copy(r.frame.bytes), frame);
}

std::vector<Bytes> mixed_frames(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Bytes> frames;
  for (size_t i = 0; i < count; ++i) {
    if (rng() % 3 == 0) {
      frames.push_back(ping_frame(i));
    } else {
      frames.push_back(message_frame(i, rng() % 700, static_cast<uint8_t>(i)));
    }
  }
  return frames;
}

// Many frames in one feed, with the smallest storage the limits allow: feed() takes what fits,
// next_frame() drains, and every frame comes out once, in order, byte for byte.
TEST(FrameDecoder, ManyFramesInOneFeedWithMinimalStorage) {
  DecoderLimits limits;
  limits.max_frame_bytes = 1024;
  const std::vector<Bytes> frames = mixed_frames(300, 1);
  Bytes stream;
  for (const Bytes& f : frames) stream.insert(stream.end(), f.begin(), f.end());
  FrameError error;
  const std::vector<Bytes> out = decode_all(stream, limits, &error);
  EXPECT_EQ(error, FrameError::kNone);
  ASSERT_EQ(out.size(), frames.size());
  for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(out[i], frames[i]) << "frame " << i;
}

TEST(FrameDecoder, ManyFramesInOneFeedWithLargeStorage) {
  const std::vector<Bytes> frames = mixed_frames(200, 2);
  Bytes stream;
  for (const Bytes& f : frames) stream.insert(stream.end(), f.begin(), f.end());
  OwnedFrameDecoder dec(DecoderLimits{}, stream.size() * 2);
  ASSERT_EQ(dec.feed(stream), stream.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    const DecodeResult r = dec.next_frame();
    ASSERT_EQ(r.status, DecodeStatus::kFrame) << "frame " << i << ": " << to_string(r.error);
    EXPECT_EQ(copy(r.frame.bytes), frames[i]);
  }
  EXPECT_EQ(dec.next_frame().status, DecodeStatus::kNeedMore);
}

// Random piece sizes (seeded, replayable): the frames out never depend on the split, and every
// frame handed out sits at an 8-byte aligned address.
TEST(FrameDecoder, RandomSplitsGiveTheSameFrames) {
  DecoderLimits limits;
  limits.max_frame_bytes = 2048;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE(seed);
    const std::vector<Bytes> frames = mixed_frames(60, seed);
    Bytes stream;
    for (const Bytes& f : frames) stream.insert(stream.end(), f.begin(), f.end());
    std::mt19937 rng(seed);
    OwnedFrameDecoder dec(limits, FrameDecoder::storage_bytes(limits) + (rng() % 4) * 1000);
    std::vector<Bytes> out;
    size_t pos = 0;
    while (pos < stream.size()) {
      const size_t piece = std::min<size_t>(1 + rng() % 1500, stream.size() - pos);
      std::span<const uint8_t> in(stream.data() + pos, piece);
      while (!in.empty()) {
        in = in.subspan(dec.feed(in));
        for (DecodeResult r = dec.next_frame(); r.status != DecodeStatus::kNeedMore;
             r = dec.next_frame()) {
          ASSERT_EQ(r.status, DecodeStatus::kFrame) << to_string(r.error);
          ASSERT_EQ(reinterpret_cast<uintptr_t>(r.frame.bytes.data()) % kFrameAlignment, 0u);
          out.push_back(copy(r.frame.bytes));
        }
      }
      pos += piece;
    }
    EXPECT_EQ(out, frames);
  }
}

// Views from several next_frame() calls stay valid together until the next feed().
TEST(FrameDecoder, ViewsStayValidUntilTheNextFeed) {
  const Bytes a = message_frame(1, 10, 1), b = message_frame(2, 20, 2), c = ping_frame(3);
  const Bytes stream = concat({a, b, c});
  OwnedFrameDecoder dec(DecoderLimits{});
  ASSERT_EQ(dec.feed(stream), stream.size());
  const DecodeResult ra = dec.next_frame(), rb = dec.next_frame(), rc = dec.next_frame();
  ASSERT_EQ(dec.next_frame().status, DecodeStatus::kNeedMore);  // also resets the offsets
  EXPECT_EQ(copy(ra.frame.bytes), a);
  EXPECT_EQ(copy(rb.frame.bytes), b);
  EXPECT_EQ(copy(rc.frame.bytes), c);
  EXPECT_EQ(ra.frame.frame->payload_as_Message()->client_msg_id(), 1u);
}

TEST(FrameDecoder, BadLimitsOrStorageFailWithInvalidUse) {
  DecoderLimits tiny;
  tiny.max_frame_bytes = 8;
  EXPECT_EQ(OwnedFrameDecoder(tiny).next_frame().error, FrameError::kInvalidUse);
  DecoderLimits huge;
  huge.max_frame_bytes = kMaxFrameBytesCeiling + 1;
  EXPECT_EQ(OwnedFrameDecoder(huge).next_frame().error, FrameError::kInvalidUse);
  DecoderLimits no_depth;
  no_depth.max_depth = 0;
  EXPECT_EQ(OwnedFrameDecoder(no_depth).next_frame().error, FrameError::kInvalidUse);

  DecoderLimits limits;
  alignas(8) static uint8_t storage[FrameDecoder::storage_bytes(DecoderLimits{}) + 8];
  FrameDecoder too_small(limits, std::span(storage, FrameDecoder::storage_bytes(limits) - 8));
  EXPECT_EQ(too_small.next_frame().error, FrameError::kInvalidUse);
  FrameDecoder unaligned(limits, std::span(storage + 1, FrameDecoder::storage_bytes(limits)));
  EXPECT_EQ(unaligned.next_frame().error, FrameError::kInvalidUse);
  EXPECT_EQ(unaligned.feed(ping_frame(1)), 0u);
  FrameDecoder fine(limits, std::span(storage, FrameDecoder::storage_bytes(limits)));
  EXPECT_FALSE(fine.failed());
}

TEST(FrameDecoder, VerifyFrameChecksTheSpan) {
  const Bytes frame = ping_frame(5);
  // Copy into aligned storage (a std::vector's data is aligned, but be explicit).
  alignas(8) uint8_t buf[256];
  std::memcpy(buf, frame.data(), frame.size());
  FrameView view;
  EXPECT_EQ(verify_frame({buf, frame.size()}, DecoderLimits{}, &view), FrameError::kNone);
  EXPECT_EQ(view.frame->payload_as_Ping()->nonce(), 5u);
  EXPECT_EQ(verify_frame({buf, frame.size() - 1}, DecoderLimits{}, nullptr),
            FrameError::kBadFlatbuffer);
  EXPECT_EQ(verify_frame({buf, 3}, DecoderLimits{}, nullptr), FrameError::kTooSmall);
  EXPECT_EQ(verify_frame({buf + 4, frame.size()}, DecoderLimits{}, nullptr),
            FrameError::kInvalidUse);
}

// Flip each byte of valid frames: the decoder returns a frame or a named error, never crashes
// (the point of running this under ASan/UBSan), and a returned frame can be read in full.
TEST(FrameDecoder, CorruptedFramesNeverCrash) {
  const std::vector<Bytes> seeds = {message_frame(1, 24, 3), ping_frame(2),
                                    unprefixed_buffer_with_manual_length()};
  std::set<FrameError> seen;
  for (const Bytes& seed : seeds) {
    for (size_t i = 0; i < seed.size(); ++i) {
      for (uint8_t flip : {0x01, 0x80, 0xFF}) {
        Bytes corrupted = seed;
        corrupted[i] ^= flip;
        OwnedFrameDecoder dec(DecoderLimits{});
        (void)dec.feed(corrupted);
        const DecodeResult r = dec.next_frame();
        if (r.status == DecodeStatus::kError) {
          seen.insert(r.error);
        } else if (r.status == DecodeStatus::kFrame) {
          // Touch every field of the verified frame through the object API.
          std::unique_ptr<wire::FrameT> object(r.frame.frame->UnPack());
          EXPECT_NE(object, nullptr);
        }
      }
    }
  }
  // The corruption reaches several distinct checks, not one catch-all.
  EXPECT_GE(seen.size(), 4u);
}

TEST(FrameDecoder, RandomGarbageNeverCrashes) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 2000; ++round) {
    Bytes garbage(rng() % 200);
    for (uint8_t& b : garbage) b = static_cast<uint8_t>(rng());
    // Half the rounds get a plausible length so the verifier, not the length check, decides.
    if (garbage.size() >= 20 && round % 2 == 0) {
      const Bytes len = le32(static_cast<uint32_t>(garbage.size() - 4));
      std::copy(len.begin(), len.end(), garbage.begin());
    }
    FrameError error;
    (void)decode_all(garbage, DecoderLimits{}, &error);
  }
}

TEST(FrameError, NamesAreStableAndUnique) {
  std::set<std::string_view> names;
  for (int i = 0; i < kFrameErrorCount; ++i) {
    const std::string_view name = to_string(static_cast<FrameError>(i));
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(names.insert(name).second) << name;
  }
  EXPECT_EQ(to_string(static_cast<FrameError>(kFrameErrorCount)), "unknown");
  // Operators and dashboards match on these; changing one is a breaking change.
  EXPECT_EQ(to_string(FrameError::kTooLarge), "too_large");
  EXPECT_EQ(to_string(FrameError::kUnknownUnionType), "unknown_union_type");
  EXPECT_EQ(to_string(FrameError::kBadFlatbuffer), "bad_flatbuffer");
  EXPECT_EQ(error_code_for(FrameError::kTooLarge), wire::ErrorCode::FrameTooLarge);
  EXPECT_EQ(error_code_for(FrameError::kUnknownUnionType), wire::ErrorCode::UnsupportedFrame);
  EXPECT_EQ(error_code_for(FrameError::kBadFlatbuffer), wire::ErrorCode::MalformedFrame);
}

}  // namespace
}  // namespace herald::codec

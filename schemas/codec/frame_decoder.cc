// Streaming client-frame decoder and frame verification (see frame_decoder.h).
#include "schemas/codec/frame_decoder.h"

#include <algorithm>
#include <cstring>

namespace herald::codec {
namespace {

// The prefix is little-endian on every host (FlatBuffers' own byte order).
uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

constexpr size_t align_up(size_t offset) {
  return (offset + kFrameAlignment - 1) & ~(kFrameAlignment - 1);
}

bool is_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kFrameAlignment == 0;
}

bool verifies(std::span<const uint8_t> bytes, const flatbuffers::Verifier::Options& options) {
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), options);
  return wire::VerifySizePrefixedFrameBuffer(verifier);
}

// The Verifier only says yes or no. When it says no, a few more passes with one limit relaxed at
// a time name the reason, so a client that trips a limit (or builds unaligned frames) is told so
// instead of "bad_flatbuffer". Each pass is bounded like the first: the table budget is at most
// 4x the limit and the depth never exceeds the number of tables. This runs only on the way to
// closing a session.
FrameError classify_verifier_failure(std::span<const uint8_t> bytes,
                                     const flatbuffers::Verifier::Options& strict) {
  flatbuffers::Verifier::Options relaxed = strict;
  relaxed.check_alignment = false;
  if (verifies(bytes, relaxed)) return FrameError::kMisaligned;

  // Depth can never exceed the table count, so this lifts the depth limit alone.
  relaxed = strict;
  relaxed.max_depth = std::max(strict.max_depth, strict.max_tables);
  if (verifies(bytes, relaxed)) return FrameError::kTooDeep;

  relaxed.max_tables = strict.max_tables > UINT32_MAX / 4 ? UINT32_MAX : strict.max_tables * 4;
  relaxed.max_depth = relaxed.max_tables;
  if (verifies(bytes, relaxed)) return FrameError::kTooManyTables;
  return FrameError::kBadFlatbuffer;
}

// A Recipient union (Message.to, Deliver.to, Typing.to) must be present, known, and carry its id.
FrameError check_recipient(wire::Recipient type, const void* value) {
  if (type == wire::Recipient::NONE || value == nullptr) return FrameError::kMissingRequiredField;
  switch (type) {
    case wire::Recipient::ToAccount:
      return static_cast<const wire::ToAccount*>(value)->account() != nullptr
                 ? FrameError::kNone
                 : FrameError::kMissingRequiredField;
    case wire::Recipient::ToDevice:
      return static_cast<const wire::ToDevice*>(value)->device() != nullptr
                 ? FrameError::kNone
                 : FrameError::kMissingRequiredField;
    case wire::Recipient::ToGroup:
      return static_cast<const wire::ToGroup*>(value)->group() != nullptr
                 ? FrameError::kNone
                 : FrameError::kMissingRequiredField;
    case wire::Recipient::NONE: break;
  }
  // A recipient kind from a newer protocol version: same policy as an unknown frame type.
  return FrameError::kUnknownUnionType;
}

FrameError required(bool present) {
  return present ? FrameError::kNone : FrameError::kMissingRequiredField;
}

}  // namespace

FrameError check_frame_fields(const wire::Frame& frame) {
  const void* payload = frame.payload();
  const wire::Payload type = frame.payload_type();
  if (type == wire::Payload::NONE) return FrameError::kMissingPayload;
  if (static_cast<uint8_t>(type) > static_cast<uint8_t>(wire::Payload::MAX)) {
    return FrameError::kUnknownUnionType;
  }
  if (payload == nullptr) return FrameError::kMissingPayload;

  // Only fields without which the frame means nothing are required here; FlatBuffers'
  // (required) attribute is not used because it can never be dropped from a schema again.
  // Rules that depend on direction or session state (a client sending Deliver) are the
  // session's: it answers UnexpectedFrame.
  switch (type) {
    case wire::Payload::Auth: return required(frame.payload_as_Auth()->token() != nullptr);
    case wire::Payload::AuthOk: return required(frame.payload_as_AuthOk()->device() != nullptr);
    case wire::Payload::Message: {
      const wire::Message* m = frame.payload_as_Message();
      if (m->body() == nullptr) return FrameError::kMissingRequiredField;
      return check_recipient(m->to_type(), m->to());
    }
    case wire::Payload::ServerAck:
      return required(frame.payload_as_ServerAck()->server_msg_id() != nullptr);
    case wire::Payload::Deliver: {
      const wire::Deliver* d = frame.payload_as_Deliver();
      if (d->server_msg_id() == nullptr || d->sender() == nullptr || d->body() == nullptr) {
        return FrameError::kMissingRequiredField;
      }
      return check_recipient(d->to_type(), d->to());
    }
    case wire::Payload::DeliveryAck:
      return required(frame.payload_as_DeliveryAck()->server_msg_ids() != nullptr);
    case wire::Payload::Receipt:
      return required(frame.payload_as_Receipt()->message_ids() != nullptr);
    case wire::Payload::Typing: {
      const wire::Typing* t = frame.payload_as_Typing();
      return check_recipient(t->to_type(), t->to());
    }
    case wire::Payload::GroupUpdate:
      return required(frame.payload_as_GroupUpdate()->group() != nullptr);
    case wire::Payload::Hello:
    case wire::Payload::HelloOk:
    case wire::Payload::AuthError:
    case wire::Payload::Presence:
    case wire::Payload::PresenceSubscribe:
    case wire::Payload::GroupOp:
    case wire::Payload::GroupOpResult:
    case wire::Payload::Ping:
    case wire::Payload::Pong:
    case wire::Payload::Error: return FrameError::kNone;
    case wire::Payload::NONE: break;
  }
  return FrameError::kMissingPayload;
}

FrameError verify_frame(std::span<const uint8_t> bytes, const DecoderLimits& limits,
                        FrameView* out) {
  if (!limits_valid(limits) || bytes.data() == nullptr || !is_aligned(bytes.data())) {
    return FrameError::kInvalidUse;
  }
  if (bytes.size() < kFramePrefixBytes) return FrameError::kTooSmall;
  const uint32_t length = load_le32(bytes.data());
  if (length == 0) return FrameError::kEmptyFrame;
  if (length < kMinFrameBytes) return FrameError::kTooSmall;
  if (length > limits.max_frame_bytes) return FrameError::kTooLarge;
  // A span that is not exactly one frame (only tools can pass one; the decoder cuts exactly).
  if (bytes.size() - kFramePrefixBytes != length) return FrameError::kBadFlatbuffer;
  if (!wire::SizePrefixedFrameBufferHasIdentifier(bytes.data())) return FrameError::kWrongRoot;

  flatbuffers::Verifier::Options options;
  options.max_depth = limits.max_depth;
  options.max_tables = limits.max_tables;
  options.check_alignment = true;
  if (!verifies(bytes, options)) return classify_verifier_failure(bytes, options);

  const wire::Frame* frame = wire::GetSizePrefixedFrame(bytes.data());
  if (const FrameError error = check_frame_fields(*frame); error != FrameError::kNone) {
    return error;
  }
  if (out != nullptr) *out = FrameView{frame, bytes};
  return FrameError::kNone;
}

FrameDecoder::FrameDecoder(const DecoderLimits& limits, std::span<uint8_t> storage)
    : limits_(limits) {
  if (!limits_valid(limits) || storage.data() == nullptr || !is_aligned(storage.data()) ||
      storage.size() < storage_bytes(limits)) {
    failed_ = FrameError::kInvalidUse;
    return;
  }
  buf_ = storage.data();
  // A whole number of alignment units, so an aligned offset never passes the end.
  capacity_ = storage.size() & ~(kFrameAlignment - 1);
}

void FrameDecoder::reset() {
  read_ = partial_ = received_ = partial_total_ = 0;
  pending_ = FrameError::kNone;
  failed_ = buf_ != nullptr ? FrameError::kNone : FrameError::kInvalidUse;
}

size_t FrameDecoder::buffered_bytes() const {
  return partial_ - read_ + received_;
}

bool FrameDecoder::compact() {
  if (read_ != partial_ || partial_ == 0) return false;
  std::memmove(buf_, buf_ + partial_, received_);
  read_ = partial_ = 0;
  return true;
}

size_t FrameDecoder::feed(std::span<const uint8_t> bytes) {
  if (failed_ != FrameError::kNone || pending_ != FrameError::kNone) return 0;
  size_t taken = 0;
  while (taken < bytes.size()) {
    // Until the prefix is in, the frame needs 4 bytes; then its full length.
    const size_t need = partial_total_ != 0 ? partial_total_ : kFramePrefixBytes;
    if (partial_ + need > capacity_ && !compact()) break;  // full of complete frames
    const size_t n = std::min(need - received_, bytes.size() - taken);
    std::memcpy(buf_ + partial_ + received_, bytes.data() + taken, n);
    received_ += n;
    taken += n;
    if (received_ < need) break;  // input exhausted mid-frame

    if (partial_total_ == 0) {
      // The length is checked as soon as it arrives: a 4 GiB frame is refused before any of it
      // is buffered.
      const uint32_t length = load_le32(buf_ + partial_);
      if (length == 0) {
        pending_ = FrameError::kEmptyFrame;
      } else if (length < kMinFrameBytes) {
        pending_ = FrameError::kTooSmall;
      } else if (length > limits_.max_frame_bytes) {
        pending_ = FrameError::kTooLarge;
      }
      if (pending_ != FrameError::kNone) break;
      partial_total_ = kFramePrefixBytes + length;
      continue;
    }
    // A complete frame: the next one starts at the next aligned offset.
    partial_ = align_up(partial_ + partial_total_);
    received_ = 0;
    partial_total_ = 0;
  }
  return taken;
}

DecodeResult FrameDecoder::next_frame() {
  if (failed_ != FrameError::kNone) return {DecodeStatus::kError, failed_, {}};
  if (read_ == partial_) {
    if (pending_ != FrameError::kNone) {
      failed_ = pending_;
      return {DecodeStatus::kError, failed_, {}};
    }
    // Nothing complete is waiting: when nothing partial is either, start over at the front so
    // the next frames need no compaction. No byte moves, so earlier views stay valid.
    if (received_ == 0) read_ = partial_ = 0;
    return {};
  }
  const uint8_t* frame = buf_ + read_;
  const size_t total = kFramePrefixBytes + load_le32(frame);
  read_ = align_up(read_ + total);
  FrameView view;
  if (const FrameError error = verify_frame({frame, total}, limits_, &view);
      error != FrameError::kNone) {
    failed_ = error;
    return {DecodeStatus::kError, failed_, {}};
  }
  ++frames_decoded_;
  return {DecodeStatus::kFrame, FrameError::kNone, view};
}

OwnedFrameDecoder::OwnedFrameDecoder(const DecoderLimits& limits, size_t storage_bytes)
    : decoder_(limits,
               allocate(storage_, limits_valid(limits)
                                      ? std::max(storage_bytes, FrameDecoder::storage_bytes(limits))
                                      : 0)) {}

std::span<uint8_t> OwnedFrameDecoder::allocate(std::unique_ptr<uint64_t[]>& storage, size_t bytes) {
  // uint64_t elements give the 8-byte alignment the decoder needs.
  const size_t words = (bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t);
  storage = std::make_unique_for_overwrite<uint64_t[]>(words);
  return {reinterpret_cast<uint8_t*>(storage.get()), words * sizeof(uint64_t)};
}

}  // namespace herald::codec

// Streaming decoder for client frames (u32 little-endian length + FlatBuffer, i.e. a FlatBuffers
// size-prefixed buffer with root Frame). Bytes arrive in arbitrary pieces (TCP segments, TLS
// records); complete frames come out verified, as views into storage the caller provides.
//
// Pure: no logging, no exceptions, no heap allocation (the storage is the caller's, sized once
// from the limits), so the dataplane can run it per packet. After any error the decoder stays
// failed: the session sends Error{error_code_for(e)} and closes.
//
//   FrameDecoder dec(limits, storage);
//   while (!in.empty()) {
//     in = in.subspan(dec.feed(in));
//     for (DecodeResult r = dec.next_frame(); r.status != DecodeStatus::kNeedMore;
//          r = dec.next_frame()) {
//       if (r.status == DecodeStatus::kError) return close(r.error);
//       handle(r.frame);
//     }
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "schemas/codec/frame_error.h"
#include "schemas/wire_generated.h"

namespace herald::codec {

inline constexpr size_t kFramePrefixBytes = 4;
// Root offset + file identifier + the smallest vtable and table: no valid frame is shorter.
inline constexpr uint32_t kMinFrameBytes = 16;
// A hard ceiling for DecoderLimits::max_frame_bytes (the config allows up to this).
inline constexpr uint32_t kMaxFrameBytesCeiling = 16u << 20;
// FlatBuffers aligns scalars to their size, at most 8 bytes in wire.fbs (no force_align). Each
// frame's prefix sits at this alignment in the decoder's storage, so every read of a verified
// frame is aligned (the Verifier checks alignment relative to the prefix).
inline constexpr size_t kFrameAlignment = 8;

struct DecoderLimits {
  // Largest FlatBuffer accepted (the length prefix's value), kMinFrameBytes..ceiling.
  uint32_t max_frame_bytes = 64 * 1024;
  // FlatBuffers Verifier limits: tables nested, and tables visited in total. They bound the
  // verifier's work on a hostile frame (shared sub-tables make a DAG that would be visited
  // once per reference).
  uint32_t max_depth = 16;
  uint32_t max_tables = 256;
};

[[nodiscard]] constexpr bool limits_valid(const DecoderLimits& limits) {
  return limits.max_frame_bytes >= kMinFrameBytes &&
         limits.max_frame_bytes <= kMaxFrameBytesCeiling && limits.max_depth >= 1 &&
         limits.max_tables >= 1;
}

// One verified frame. Views are valid until the next feed() or reset() on the decoder that
// produced them (next_frame() never moves stored bytes).
struct FrameView {
  // The verified root; payload_type() is a known type, and the fields the protocol requires for
  // that type are present.
  const wire::Frame* frame = nullptr;
  // The frame as received, prefix included (to forward or log without re-encoding).
  std::span<const uint8_t> bytes;

  [[nodiscard]] wire::Payload type() const { return frame->payload_type(); }
};

enum class DecodeStatus : uint8_t { kFrame, kNeedMore, kError };

struct DecodeResult {
  DecodeStatus status = DecodeStatus::kNeedMore;
  FrameError error = FrameError::kNone;  // set when status == kError
  FrameView frame;                       // set when status == kFrame
};

// Checks one complete frame, prefix included: length, identifier, the FlatBuffers Verifier under
// `limits`, a known payload type and the fields required for it. `bytes.data()` must be
// kFrameAlignment-aligned (else kInvalidUse). On success fills *out (if not null).
[[nodiscard]] FrameError verify_frame(std::span<const uint8_t> bytes, const DecoderLimits& limits,
                                      FrameView* out);

// Only the per-type rules (payload present and known, required fields present) on an
// already verified frame; verify_frame() runs it last.
[[nodiscard]] FrameError check_frame_fields(const wire::Frame& frame);

class FrameDecoder {
 public:
  // Storage one decoder needs: the largest frame with its prefix, rounded up to the alignment.
  [[nodiscard]] static constexpr size_t storage_bytes(const DecoderLimits& limits) {
    return (kFramePrefixBytes + limits.max_frame_bytes + kFrameAlignment - 1) &
           ~(kFrameAlignment - 1);
  }

  // `storage` must outlive the decoder, be kFrameAlignment-aligned and hold at least
  // storage_bytes(limits); more lets one feed() take several frames at once. Bad limits or
  // storage leave the decoder failed with kInvalidUse (it never crashes on them).
  FrameDecoder(const DecoderLimits& limits, std::span<uint8_t> storage);
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // Copies bytes in and returns how many it took. It takes fewer than offered only when the
  // storage is full of complete frames not yet taken by next_frame() (take them and feed the
  // rest), or once the decoder has failed (it then takes nothing). Invariant: after next_frame()
  // returned kNeedMore, feeding a non-empty span takes at least one byte.
  [[nodiscard]] size_t feed(std::span<const uint8_t> bytes);

  // The next complete frame, kNeedMore, or the error that failed the decoder. Frames that were
  // complete before a malformed one are returned first; the error follows, and stays.
  [[nodiscard]] DecodeResult next_frame();

  // Forgets all bytes and any error, for a new connection on a pooled decoder.
  void reset();

  [[nodiscard]] bool failed() const { return failed_ != FrameError::kNone; }
  [[nodiscard]] FrameError error() const { return failed_; }
  [[nodiscard]] const DecoderLimits& limits() const { return limits_; }
  // Bytes held: complete frames not yet returned plus the partial frame being received.
  [[nodiscard]] size_t buffered_bytes() const;
  [[nodiscard]] uint64_t frames_decoded() const { return frames_decoded_; }

 private:
  // Moves the partial frame to the start of storage; possible only when no complete frame
  // waits before it.
  bool compact();

  DecoderLimits limits_;
  uint8_t* buf_ = nullptr;
  size_t capacity_ = 0;
  // Layout of buf_: [read_, partial_) complete frames, each prefix kFrameAlignment-aligned;
  // [partial_, partial_ + received_) the frame being received (its prefix is aligned too).
  size_t read_ = 0;
  size_t partial_ = 0;
  size_t received_ = 0;
  // Prefix + length of the partial frame, once its 4-byte prefix is in; 0 before.
  size_t partial_total_ = 0;
  // Found by feed() in a length prefix; reported after the complete frames before it.
  FrameError pending_ = FrameError::kNone;
  FrameError failed_ = FrameError::kNone;
  uint64_t frames_decoded_ = 0;
};

// A FrameDecoder that allocates its storage once, at construction: tools, tests, fuzzers. The
// dataplane gives FrameDecoder storage from its per-worker pools instead.
class OwnedFrameDecoder {
 public:
  explicit OwnedFrameDecoder(const DecoderLimits& limits, size_t storage_bytes = 0);

  [[nodiscard]] size_t feed(std::span<const uint8_t> bytes) { return decoder_.feed(bytes); }
  [[nodiscard]] DecodeResult next_frame() { return decoder_.next_frame(); }
  FrameDecoder& decoder() { return decoder_; }

 private:
  static std::span<uint8_t> allocate(std::unique_ptr<uint64_t[]>& storage, size_t bytes);

  std::unique_ptr<uint64_t[]> storage_;
  FrameDecoder decoder_;
};

}  // namespace herald::codec

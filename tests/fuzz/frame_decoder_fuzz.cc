// libFuzzer target for the client frame decoder. The first two bytes choose the limits and how
// the rest is cut into feed() pieces; the decoder must then agree with a one-shot decode of the
// same bytes, keep its progress invariant, and hand out only frames that read back in full.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "schemas/codec/frame_decoder.h"

namespace {

using herald::codec::DecodeResult;
using herald::codec::DecoderLimits;
using herald::codec::DecodeStatus;
using herald::codec::FrameDecoder;
using herald::codec::FrameError;
using herald::codec::kFrameAlignment;
using herald::codec::OwnedFrameDecoder;

struct Outcome {
  std::vector<std::vector<uint8_t>> frames;
  FrameError error = FrameError::kNone;
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Reads every field of a verified frame (the object API copies them all out), so a verifier gap
// shows up as an ASan report here.
void touch(const herald::codec::FrameView& view, const DecoderLimits& limits) {
  check(reinterpret_cast<uintptr_t>(view.bytes.data()) % kFrameAlignment == 0);
  std::unique_ptr<herald::wire::FrameT> object(view.frame->UnPack());
  check(object != nullptr && object->payload.type == view.type());
  // Verification is a pure function of the bytes.
  check(herald::codec::verify_frame(view.bytes, limits, nullptr) == FrameError::kNone);
}

// Drains `dec`; returns false once it has failed.
bool drain(OwnedFrameDecoder& dec, Outcome& out, const DecoderLimits& limits) {
  for (;;) {
    const DecodeResult r = dec.next_frame();
    if (r.status == DecodeStatus::kNeedMore) return true;
    if (r.status == DecodeStatus::kError) {
      check(r.error != FrameError::kNone);
      out.error = r.error;
      // Sticky: the same error again.
      check(dec.next_frame().error == r.error);
      return false;
    }
    touch(r.frame, limits);
    out.frames.emplace_back(r.frame.bytes.begin(), r.frame.bytes.end());
  }
}

Outcome decode(const uint8_t* data, size_t size, const DecoderLimits& limits, size_t storage,
               uint32_t seed) {
  OwnedFrameDecoder dec(limits, storage);
  Outcome out;
  uint32_t rng = seed | 1;
  size_t pos = 0;
  while (pos < size) {
    // xorshift32: piece sizes from 1 byte to a few frames' worth.
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    size_t piece = seed == 0 ? size - pos : 1 + rng % ((rng >> 24) < 64 ? 8 : 3000);
    if (piece > size - pos) piece = size - pos;
    std::span<const uint8_t> in(data + pos, piece);
    while (!in.empty()) {
      // The decoder is drained here (and not failed), so the progress invariant says it takes
      // at least one byte.
      const size_t taken = dec.feed(in);
      check(taken > 0);
      in = in.subspan(taken);
      if (!drain(dec, out, limits)) return out;
    }
    pos += piece;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  DecoderLimits limits;
  // Small limits half the time, so too_large, too_deep and too_many_tables are reachable.
  if (data[0] & 1) {
    limits.max_frame_bytes = 256 + (data[0] >> 1) * 16;
    limits.max_depth = 1 + (data[0] >> 4);
    limits.max_tables = 1 + (data[0] >> 2);
  }
  const size_t storage = FrameDecoder::storage_bytes(limits) + (data[1] & 3) * 512;
  const Outcome pieces = decode(data + 2, size - 2, limits, storage, data[1] * 2654435761u);
  // The same bytes in one piece, with room for all of them: identical frames and error.
  const Outcome whole = decode(data + 2, size - 2, limits, storage + size, 0);
  check(pieces.frames == whole.frames);
  check(pieces.error == whole.error);
  return 0;
}

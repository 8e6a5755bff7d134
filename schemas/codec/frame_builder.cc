// Builds client frames (see frame_builder.h).
#include "schemas/codec/frame_builder.h"

#include "schemas/codec/frame_decoder.h"

namespace herald::codec {

std::span<const uint8_t> FrameBuilder::finish_union(wire::Payload type,
                                                    flatbuffers::Offset<void> payload) {
  return finish_frame(wire::CreateFrame(fbb_, type, payload));
}

std::span<const uint8_t> FrameBuilder::finish(const wire::FrameT& frame) {
  return finish_frame(wire::Frame::Pack(fbb_, &frame));
}

std::span<const uint8_t> FrameBuilder::bytes() const {
  if (!finished_) return {};
  return {fbb_.GetBufferPointer(), fbb_.GetSize()};
}

std::span<const uint8_t> FrameBuilder::finish_frame(flatbuffers::Offset<wire::Frame> frame) {
  // Raise the buffer's alignment to kFrameAlignment even when no 8-byte field was written:
  // Finish() then pads the whole buffer to it, so the prefix starts aligned in memory (the
  // builder's storage ends on an 8-byte boundary) and a receiver that copies frames back to back
  // keeps them aligned. It costs at most 7 bytes per frame.
  fbb_.TrackMinAlign(kFrameAlignment);
  fbb_.FinishSizePrefixed(frame, wire::FrameIdentifier());
  finished_ = true;
  return bytes();
}

}  // namespace herald::codec

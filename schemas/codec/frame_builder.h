// Builds client frames: a FlatBuffers size-prefixed buffer whose root is wire::Frame. Used by
// the dataplane's send path, the tools (herald-chat, herald-loadgen) and the tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "schemas/wire_generated.h"

namespace herald::codec {

class FrameBuilder {
 public:
  explicit FrameBuilder(size_t initial_bytes = 1024) : fbb_(initial_bytes) {}

  // Build the payload table with this builder, then pass it to finish().
  flatbuffers::FlatBufferBuilder& fbb() { return fbb_; }

  // Wraps `payload` in a Frame and returns the whole frame: u32 little-endian length, then the
  // FlatBuffer. The bytes live in the builder until the next clear(); their start is
  // kFrameAlignment-aligned, so verify_frame() accepts them as they are.
  template <typename T>
  [[nodiscard]] std::span<const uint8_t> finish(flatbuffers::Offset<T> payload) {
    return finish_union(wire::PayloadTraits<T>::enum_value, payload.Union());
  }

  // The same for a type chosen at run time; tests use it to send types this build lacks.
  [[nodiscard]] std::span<const uint8_t> finish_union(wire::Payload type,
                                                      flatbuffers::Offset<void> payload);

  // From the object API (tools, tests): packs `frame` and finishes it.
  [[nodiscard]] std::span<const uint8_t> finish(const wire::FrameT& frame);

  // The last finished frame (empty before the first finish()).
  [[nodiscard]] std::span<const uint8_t> bytes() const;

  // Forgets the frame and keeps the memory, for the next one.
  void clear() {
    fbb_.Clear();
    finished_ = false;
  }

 private:
  std::span<const uint8_t> finish_frame(flatbuffers::Offset<wire::Frame> frame);

  flatbuffers::FlatBufferBuilder fbb_;
  bool finished_ = false;
};

}  // namespace herald::codec

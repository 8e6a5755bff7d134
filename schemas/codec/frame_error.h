// Why a client frame was rejected: one stable name per reason, declared once (the X-macro
// below), so the dataplane can keep one drop counter per reason and tools print the same names.
#pragma once

#include <cstdint>
#include <string_view>

#include "schemas/wire_generated.h"

namespace herald::codec {

// X(enumerator, stable name, wire error code sent to the client before the session closes).
// Names are part of the operator interface (counters, logs): never rename, only append.
#define HERALD_FRAME_ERRORS(X)                                                                  \
  X(kNone, "none", Unspecified)                                                                 \
  /* The length prefix says 0: a frame must hold a FlatBuffer. */                               \
  X(kEmptyFrame, "empty_frame", MalformedFrame)                                                 \
  /* Shorter than root offset + identifier + the smallest table (16 bytes). */                  \
  X(kTooSmall, "too_small", MalformedFrame)                                                     \
  /* Longer than DecoderLimits::max_frame_bytes; detected from the prefix alone. */             \
  X(kTooLarge, "too_large", FrameTooLarge)                                                      \
  /* The FlatBuffer's file identifier is not "HRLD" (another root type, or not FlatBuffers). */ \
  X(kWrongRoot, "wrong_root", MalformedFrame)                                                   \
  /* The FlatBuffers Verifier rejected the frame (bad offsets, sizes, strings, ...). */         \
  X(kBadFlatbuffer, "bad_flatbuffer", MalformedFrame)                                           \
  /* Valid but for alignment: built without the size prefix (see docs/PROTOCOL.md). */          \
  X(kMisaligned, "misaligned", MalformedFrame)                                                  \
  /* Tables nested deeper than DecoderLimits::max_depth. */                                     \
  X(kTooDeep, "too_deep", MalformedFrame)                                                       \
  /* More tables than DecoderLimits::max_tables. */                                             \
  X(kTooManyTables, "too_many_tables", MalformedFrame)                                          \
  /* Frame.payload is absent (type NONE). */                                                    \
  X(kMissingPayload, "missing_payload", MalformedFrame)                                         \
  /* A union type this build does not know (top-level payload or a nested union): a peer sent   \
     something newer than the version it negotiated. */                                         \
  X(kUnknownUnionType, "unknown_union_type", UnsupportedFrame)                                  \
  /* A field the protocol requires for this frame type is absent. */                            \
  X(kMissingRequiredField, "missing_required_field", MalformedFrame)                            \
  /* Limits, storage or a buffer the codec cannot work with: a bug in the caller. */            \
  X(kInvalidUse, "invalid_use", Internal)

enum class FrameError : uint8_t {
#define HERALD_FRAME_ERROR_ENUM(name, text, code) name,
  HERALD_FRAME_ERRORS(HERALD_FRAME_ERROR_ENUM)
#undef HERALD_FRAME_ERROR_ENUM
};

inline constexpr int kFrameErrorCount = 0
#define HERALD_FRAME_ERROR_COUNT(name, text, code) +1
    HERALD_FRAME_ERRORS(HERALD_FRAME_ERROR_COUNT)
#undef HERALD_FRAME_ERROR_COUNT
    ;

// The stable name, e.g. "too_large". Never empty; "unknown" for a value outside the enum.
[[nodiscard]] constexpr std::string_view to_string(FrameError error) {
  switch (error) {
#define HERALD_FRAME_ERROR_NAME(name, text, code) \
  case FrameError::name: return text;
    HERALD_FRAME_ERRORS(HERALD_FRAME_ERROR_NAME)
#undef HERALD_FRAME_ERROR_NAME
  }
  return "unknown";
}

// The code the server puts in the Error frame it sends before closing the session.
[[nodiscard]] constexpr wire::ErrorCode error_code_for(FrameError error) {
  switch (error) {
#define HERALD_FRAME_ERROR_CODE(name, text, code) \
  case FrameError::name: return wire::ErrorCode::code;
    HERALD_FRAME_ERRORS(HERALD_FRAME_ERROR_CODE)
#undef HERALD_FRAME_ERROR_CODE
  }
  return wire::ErrorCode::Unspecified;
}

}  // namespace herald::codec

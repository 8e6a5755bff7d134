// IPC records on the rings: an Envelope FlatBuffer (schemas/ipc.fbs, identifier "HIPC") per ring
// record, with the ring record type = the Envelope's Record union type. Building, enqueuing and
// verifying them. Used on the dataplane's hot path: no allocation once a builder has grown, no
// exceptions.
//
// Build then copy: FlatBuffers builds back to front in a buffer whose final size is known only
// at Finish(), and a ring reservation cannot shrink, so building in place would need a
// worst-case reservation per record. One memcpy of a record that is in cache is cheaper than the
// space that would waste.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "flatbuffers/flatbuffers.h"
#include "platform/shm/ring.h"
#include "schemas/ipc_generated.h"

namespace herald::ipc {

// Number of Record union values, NONE included: arrays indexed by record type.
inline constexpr size_t kRecordTypeCount = static_cast<size_t>(Record::MAX) + 1;

// Finishes `builder` as an Envelope{seq, record}; the record table was built in the same builder.
template <typename T>
void finish_envelope(flatbuffers::FlatBufferBuilder& builder, uint64_t seq,
                     flatbuffers::Offset<T> record) {
  FinishEnvelopeBuffer(builder,
                       CreateEnvelope(builder, seq, RecordTraits<T>::enum_value, record.Union()));
}
void finish_envelope(flatbuffers::FlatBufferBuilder& builder, uint64_t seq, Record type,
                     flatbuffers::Offset<void> record);

// The finished buffer of `builder` as bytes.
inline std::span<const std::byte> finished_bytes(const flatbuffers::FlatBufferBuilder& builder) {
  return {reinterpret_cast<const std::byte*>(builder.GetBufferPointer()), builder.GetSize()};
}

// Reserves and copies one finished Envelope (of union type `type`) into the ring without
// committing, so a batch of records costs one commit(). kOk, kFull, kTooLarge or kCorrupt.
[[nodiscard]] inline shm::RingStatus put_envelope(shm::RingProducer& ring, Record type,
                                                  std::span<const std::byte> envelope) {
  const shm::Reservation r = ring.reserve(static_cast<uint32_t>(type), envelope.size());
  if (r.status == shm::RingStatus::kOk && !envelope.empty()) {
    std::memcpy(r.payload.data(), envelope.data(), envelope.size());
  }
  return r.status;
}
// put_envelope + commit.
[[nodiscard]] inline shm::RingStatus enqueue_envelope(shm::RingProducer& ring, Record type,
                                                      std::span<const std::byte> envelope) {
  const shm::RingStatus status = put_envelope(ring, type, envelope);
  if (status == shm::RingStatus::kOk) (void)ring.commit();
  return status;
}

// Why a record read from a ring was not used. Each is a named counter on the reading side.
#define HERALD_ENVELOPE_ERRORS(X)                                                              \
  X(kBadFlatbuffer, "bad_flatbuffer", "not a valid Envelope (verifier, identifier or limits)") \
  X(kNoRecord, "no_record", "Envelope without a record (union type NONE)")                     \
  X(kUnknownType, "unknown_type", "record type newer than this build (skipped)")               \
  X(kTypeMismatch, "type_mismatch", "ring record type differs from the Envelope's union type")

enum class EnvelopeError : uint8_t {
  kNone = 0,
#define HERALD_ENVELOPE_ERROR_ENUM(name, text, doc) name,
  HERALD_ENVELOPE_ERRORS(HERALD_ENVELOPE_ERROR_ENUM)
#undef HERALD_ENVELOPE_ERROR_ENUM
      kCount
};
inline constexpr size_t kEnvelopeErrorCount = static_cast<size_t>(EnvelopeError::kCount);
const char* envelope_error_name(EnvelopeError error);

// Verifier limits for records from the other process. An Envelope nests at most ~4 tables
// (Envelope > StoreAppend > Deliver > address); the table cap bounds verification time of a
// record that is all tiny tables.
struct VerifyLimits {
  uint32_t max_depth = 16;
  uint32_t max_tables = 65536;
};

struct CheckedEnvelope {
  const Envelope* envelope = nullptr;  // set only when error == kNone; points into `payload`
  EnvelopeError error = EnvelopeError::kNone;
};

// Verifies one ring record before anything in it is read. Never asserts: the bytes come from
// another process. `ring_type` is the ring record's type word.
[[nodiscard]] CheckedEnvelope verify_envelope(uint32_t ring_type,
                                              std::span<const std::byte> payload,
                                              const VerifyLimits& limits = {});

// A verified Hello's fields that the handshake checks (Hello is also the first record on every
// ring after a side (re)starts).
struct HelloFields {
  Plane plane = Plane::Dataplane;
  uint16_t ipc_version = 0;
  uint64_t instance_id = 0;
  uint32_t pid = 0;
  uint16_t node_id = 0;
  uint16_t worker = 0;
  uint16_t workers = 0;
  uint64_t server_msg_time_floor_ms = 0;
};
// Builds Envelope{seq, Hello{fields, build}} in `builder` (cleared first).
void build_hello(flatbuffers::FlatBufferBuilder& builder, uint64_t seq, const HelloFields& fields,
                 std::string_view build);

}  // namespace herald::ipc

// Envelope building and verification for IPC ring records.
#include "platform/ipc/envelope.h"

namespace herald::ipc {

const char* envelope_error_name(EnvelopeError error) {
  switch (error) {
    case EnvelopeError::kNone: return "none";
#define HERALD_ENVELOPE_ERROR_NAME(name, text, doc) \
  case EnvelopeError::name: return text;
      HERALD_ENVELOPE_ERRORS(HERALD_ENVELOPE_ERROR_NAME)
#undef HERALD_ENVELOPE_ERROR_NAME
    case EnvelopeError::kCount: break;
  }
  return "unknown";
}

void finish_envelope(flatbuffers::FlatBufferBuilder& builder, uint64_t seq, Record type,
                     flatbuffers::Offset<void> record) {
  FinishEnvelopeBuffer(builder, CreateEnvelope(builder, seq, type, record));
}

CheckedEnvelope verify_envelope(uint32_t ring_type, std::span<const std::byte> payload,
                                const VerifyLimits& limits) {
  const auto* data = reinterpret_cast<const uint8_t*>(payload.data());
  // The generated verifier accepts any union type it does not know (it cannot check the
  // table), so a type beyond this build's schema is set aside before verification: it comes
  // from a newer peer and is skipped, counted, never read.
  if (ring_type > static_cast<uint32_t>(Record::MAX)) return {nullptr, EnvelopeError::kUnknownType};
  // Root offset and file identifier at least; also keeps a null span away from the verifier.
  if (payload.size() < 2 * sizeof(flatbuffers::uoffset_t)) {
    return {nullptr, EnvelopeError::kBadFlatbuffer};
  }
  flatbuffers::Verifier verifier(data, payload.size(), limits.max_depth, limits.max_tables,
                                 /*check_alignment=*/true);
  if (!VerifyEnvelopeBuffer(verifier)) return {nullptr, EnvelopeError::kBadFlatbuffer};
  const Envelope* envelope = GetEnvelope(data);
  const Record type = envelope->record_type();
  if (type == Record::NONE || envelope->record() == nullptr) {
    return {nullptr, EnvelopeError::kNoRecord};
  }
  if (static_cast<uint32_t>(type) != ring_type) return {nullptr, EnvelopeError::kTypeMismatch};
  return {envelope, EnvelopeError::kNone};
}

void build_hello(flatbuffers::FlatBufferBuilder& builder, uint64_t seq, const HelloFields& fields,
                 std::string_view build) {
  builder.Clear();
  const auto build_offset = builder.CreateString(build.data(), build.size());
  const auto hello = CreateHello(builder, fields.plane, fields.ipc_version, fields.instance_id,
                                 build_offset, fields.pid, fields.node_id, fields.worker,
                                 fields.workers, fields.server_msg_time_floor_ms);
  finish_envelope(builder, seq, hello);
}

}  // namespace herald::ipc

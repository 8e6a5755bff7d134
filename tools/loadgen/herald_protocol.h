// The Herald client protocol for loadgen connections (docs/PROTOCOL.md): Hello, Auth with the
// account's session token, Message / ServerAck, Deliver answered by batched DeliveryAcks, Ping.
// Frames are built with schemas/codec's FrameBuilder and checked with its verify_frame().
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_decoder.h"
#include "schemas/wire_generated.h"
#include "tools/loadgen/protocol.h"

namespace herald::tools::loadgen {

// Who the indices of Target name.
struct Directory {
  std::vector<wire::DeviceAddress> devices;  // by account index
  std::vector<wire::GroupId> groups;         // by group index
};

// Per worker, shared by all its connections (one thread): the builder and the aligned scratch
// a complete frame is verified in. Keeping per-connection state to the partial frame alone is
// what lets one process hold 15,000 sessions in little memory.
class HeraldCodec {
 public:
  HeraldCodec(const Directory& directory, uint32_t max_frame_bytes);
  const Directory& directory() const { return directory_; }
  codec::FrameBuilder& builder() { return builder_; }
  const codec::DecoderLimits& limits() const { return limits_; }
  // An 8-byte aligned copy of `frame` (prefix included), valid until the next call.
  std::span<const uint8_t> aligned(std::span<const uint8_t> frame);

 private:
  const Directory& directory_;
  codec::FrameBuilder builder_;
  codec::DecoderLimits limits_;
  std::vector<uint64_t> scratch_;
};

class HeraldProtocol final : public ClientProtocol {
 public:
  HeraldProtocol(HeraldCodec& codec, std::span<const uint8_t> token);

  void start(std::vector<uint8_t>& out) override;
  absl::Status feed(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                    ProtocolEvents& events) override;
  void send(const Target& to, uint64_t client_msg_id, std::span<const uint8_t> body,
            std::vector<uint8_t>& out) override;
  void ping(std::vector<uint8_t>& out) override;
  void flush(std::vector<uint8_t>& out) override;

 private:
  enum class State : uint8_t { kHello, kAuth, kReady };
  // One complete, verified frame.
  absl::Status handle(const wire::Frame& frame, std::vector<uint8_t>& out, ProtocolEvents& events);
  // Consumes whole frames from `in`; returns the bytes of the trailing partial frame.
  absl::StatusOr<size_t> frames(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                                ProtocolEvents& events);
  void append(std::span<const uint8_t> frame, std::vector<uint8_t>& out);

  HeraldCodec& codec_;
  std::span<const uint8_t> token_;  // the account's; outlives the protocol
  State state_ = State::kHello;
  std::vector<uint8_t> partial_;  // a frame split across reads
  std::vector<wire::ServerMsgId> acks_;
  uint32_t max_ids_per_ack_ = 64;
  // HelloOk's limits, handed to the engine at AuthOk.
  uint32_t pending_limits_max_unacked_ = 0;
  uint32_t pending_limits_idle_ms_ = 0;
  uint64_t ping_nonce_ = 0;
};

}  // namespace herald::tools::loadgen

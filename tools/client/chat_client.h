// A blocking chat client over TlsStream: frames in and out as the object API (wire::FrameT), the
// Hello / Auth handshake, and helpers for the common frames. For herald-chat, herald-loadgen's
// checks and the end-to-end tests; one connection, one thread.
//
//   auto c = ChatClient::connect({.stream = {.host = "127.0.0.1", .port = 5222, .trust = t}});
//   auto ok = (*c)->login(token_bytes);          // Hello + Auth: AuthOk, or the AuthError
//   (*c)->send_to_account(peer, /*client_msg_id=*/1, body);
//   while (auto f = (*c)->next(1000)) { ... }   // ServerAck, Deliver, Receipt, ...
// Stored receipts (Receipt.stored, from the offline queue) are acked and deduplicated here.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_decoder.h"
#include "schemas/wire_generated.h"
#include "tools/client/tls_stream.h"

namespace herald::tools {

struct ChatClientOptions {
  TlsStreamOptions stream;
  std::string client_name = "herald-chat";
  std::string client_version = "1";
  // Frames the server may send us, at most (the server's own limit is in HelloOk.limits).
  uint32_t max_frame_bytes = 16u << 20;
  // Receipts from the device's offline queue (Receipt.stored): acknowledged as they arrive
  // (else they come again at every login and hold the drain's window), and a repeat of one of
  // the last `stored_receipt_dedup_window` ids is not returned by next() (0: every copy is).
  bool ack_stored_receipts = true;
  uint32_t stored_receipt_dedup_window = 4096;
};

class ChatClient {
 public:
  static absl::StatusOr<std::unique_ptr<ChatClient>> connect(const ChatClientOptions& options);

  // Hello, then HelloOk (kept in hello_ok()). FailedPrecondition with the server's Error text
  // when it answers something else.
  absl::StatusOr<wire::HelloOkT> hello(uint16_t min_version = 1, uint16_t max_version = 1);
  // Auth with a session token (the raw 73 bytes, or its text form's bytes as the API returns
  // them): AuthOk, or PermissionDenied carrying the AuthError's code name and message.
  absl::StatusOr<wire::AuthOkT> auth(std::span<const uint8_t> token);
  // hello() then auth().
  absl::StatusOr<wire::AuthOkT> login(std::span<const uint8_t> token);

  // Any frame (tests send odd ones on purpose).
  absl::Status send(const wire::FrameT& frame);
  // Raw bytes on the stream (tests: garbage, truncated frames).
  absl::Status send_raw(std::span<const uint8_t> bytes);
  absl::Status send_message(wire::RecipientUnion to, uint64_t client_msg_id,
                            std::span<const uint8_t> body, uint16_t content_type = 0,
                            wire::MessageFlags flags = wire::MessageFlags::NONE);
  absl::Status send_to_device(const wire::DeviceAddress& device, uint64_t client_msg_id,
                              std::span<const uint8_t> body);
  absl::Status send_to_account(const wire::AccountId& account, uint64_t client_msg_id,
                               std::span<const uint8_t> body);
  absl::Status send_to_group(const wire::GroupId& group, uint64_t client_msg_id,
                             std::span<const uint8_t> body);
  absl::Status ack(std::span<const wire::ServerMsgId> ids);
  absl::Status receipt(wire::ReceiptKind kind, const wire::AccountId& to,
                       std::span<const wire::ServerMsgId> ids);
  absl::Status ping(uint64_t nonce);

  // The next frame within `timeout_ms`: nullopt on a timeout; OutOfRange once the server
  // closed; DataLoss when its bytes are not a valid frame.
  absl::StatusOr<std::optional<wire::FrameT>> next(uint32_t timeout_ms);
  // Frames until one of `type` arrives (others are kept for later next() calls, in order).
  absl::StatusOr<wire::FrameT> wait_for(wire::Payload type, uint32_t timeout_ms);

  const std::optional<wire::HelloOkT>& hello_ok() const { return hello_ok_; }
  // Stored receipts acknowledged, and repeats not returned (ChatClientOptions).
  uint64_t stored_receipts_acked() const { return stored_receipts_acked_; }
  uint64_t stored_receipt_repeats() const { return stored_receipt_repeats_; }
  TlsStream& stream() { return *stream_; }
  void close() { stream_->close(); }

 private:
  ChatClient(const ChatClientOptions& options, std::unique_ptr<TlsStream> stream);
  // Every decoded frame, once: acks a stored receipt; false for a repeat to drop.
  bool take(const wire::FrameT& frame);

  ChatClientOptions options_;
  std::unique_ptr<TlsStream> stream_;
  codec::FrameBuilder builder_;
  std::vector<uint64_t> storage_;  // the decoder's storage, 8-byte aligned
  std::unique_ptr<codec::FrameDecoder> decoder_;
  std::vector<wire::FrameT> held_;  // frames wait_for() passed over
  std::optional<wire::HelloOkT> hello_ok_;
  std::set<std::pair<uint64_t, uint64_t>> seen_receipts_;  // stored receipts' ids
  std::deque<std::pair<uint64_t, uint64_t>> seen_order_;   // ... oldest first
  uint64_t stored_receipts_acked_ = 0;
  uint64_t stored_receipt_repeats_ = 0;
};

// Human-readable name of a frame's payload type ("ServerAck").
std::string payload_name(wire::Payload type);

}  // namespace herald::tools

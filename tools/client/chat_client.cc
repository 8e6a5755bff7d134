// ChatClient: frames over a TlsStream, decoded with the same verifying decoder the server uses.
#include "tools/client/chat_client.h"

#include <time.h>

#include <utility>

namespace herald::tools {
namespace {

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

wire::FrameT frame_of(wire::PayloadUnion payload) {
  wire::FrameT frame;
  frame.payload = std::move(payload);
  return frame;
}

// The text of an Error frame, for statuses.
std::string error_text(const wire::FrameT& frame) {
  if (const auto* e = frame.payload.AsError(); e != nullptr) {
    return std::string(wire::EnumNameErrorCode(e->code)) + ": " + e->message;
  }
  return "unexpected " + payload_name(frame.payload.type);
}

}  // namespace

std::string payload_name(wire::Payload type) {
  const char* name = wire::EnumNamePayload(type);
  return name != nullptr && name[0] != '\0' ? name : "type " + std::to_string(int(type));
}

ChatClient::ChatClient(const ChatClientOptions& options, std::unique_ptr<TlsStream> stream)
    : options_(options), stream_(std::move(stream)) {
  const codec::DecoderLimits limits{.max_frame_bytes = options.max_frame_bytes};
  storage_.resize(codec::FrameDecoder::storage_bytes(limits) / sizeof(uint64_t) + 1);
  decoder_ = std::make_unique<codec::FrameDecoder>(
      limits, std::span<uint8_t>(reinterpret_cast<uint8_t*>(storage_.data()),
                                 storage_.size() * sizeof(uint64_t)));
}

absl::StatusOr<std::unique_ptr<ChatClient>> ChatClient::connect(const ChatClientOptions& options) {
  auto stream = TlsStream::connect(options.stream);
  if (!stream.ok()) return stream.status();
  return std::unique_ptr<ChatClient>(new ChatClient(options, std::move(*stream)));
}

absl::Status ChatClient::send(const wire::FrameT& frame) {
  builder_.clear();
  return stream_->write_all(builder_.finish(frame));
}

absl::Status ChatClient::send_raw(std::span<const uint8_t> bytes) {
  return stream_->write_all(bytes);
}

absl::StatusOr<std::optional<wire::FrameT>> ChatClient::next(uint32_t timeout_ms) {
  if (!held_.empty()) {
    wire::FrameT frame = std::move(held_.front());
    held_.erase(held_.begin());
    return std::optional<wire::FrameT>(std::move(frame));
  }
  const int64_t deadline_ms = now_ms() + timeout_ms;
  uint8_t buffer[16 * 1024];
  for (;;) {
    const codec::DecodeResult r = decoder_->next_frame();
    if (r.status == codec::DecodeStatus::kFrame) {
      wire::FrameT frame;
      r.frame.frame->UnPackTo(&frame);
      if (!take(frame)) continue;  // a stored receipt seen before
      return std::optional<wire::FrameT>(std::move(frame));
    }
    if (r.status == codec::DecodeStatus::kError) {
      return absl::DataLossError(std::string("bad frame from the server: ") +
                                 std::string(codec::to_string(r.error)));
    }
    // With no time left, still take what already arrived (a zero timeout polls once).
    const int64_t left_ms = deadline_ms - now_ms();
    if (left_ms < 0) return std::optional<wire::FrameT>();
    auto n = stream_->read_some(buffer, static_cast<uint32_t>(left_ms));
    if (!n.ok()) return n.status();
    if (*n == 0) return std::optional<wire::FrameT>();
    std::span<const uint8_t> in(buffer, *n);
    while (!in.empty()) {
      const size_t taken = decoder_->feed(in);
      in = in.subspan(taken);
      if (taken == 0 && !in.empty()) {
        // Storage full of complete frames: hold them decoded, then feed the rest.
        for (codec::DecodeResult f = decoder_->next_frame();
             f.status == codec::DecodeStatus::kFrame; f = decoder_->next_frame()) {
          wire::FrameT frame;
          f.frame.frame->UnPackTo(&frame);
          if (take(frame)) held_.push_back(std::move(frame));
        }
        if (decoder_->failed()) {
          return absl::DataLossError(std::string("bad frame from the server: ") +
                                     std::string(codec::to_string(decoder_->error())));
        }
      }
    }
    if (!held_.empty()) return next(0);
  }
}

bool ChatClient::take(const wire::FrameT& frame) {
  const auto* r = frame.payload.AsReceipt();
  if (r == nullptr || !r->stored || r->server_msg_id == nullptr) return true;
  // docs/PROTOCOL.md "Receipts": a stored receipt stays queued until acked, and a repeat (a
  // lost ack, a drain started again) carries the same server_msg_id.
  const wire::ServerMsgId id = *r->server_msg_id;
  if (options_.ack_stored_receipts) {
    ++stored_receipts_acked_;
    (void)ack(std::span<const wire::ServerMsgId>(&id, 1));  // a broken stream shows on read
  }
  if (options_.stored_receipt_dedup_window == 0) return true;
  const std::pair<uint64_t, uint64_t> key{id.hi(), id.lo()};
  if (!seen_receipts_.insert(key).second) {
    ++stored_receipt_repeats_;
    return false;
  }
  seen_order_.push_back(key);
  if (seen_order_.size() > options_.stored_receipt_dedup_window) {
    seen_receipts_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
  return true;
}

absl::StatusOr<wire::FrameT> ChatClient::wait_for(wire::Payload type, uint32_t timeout_ms) {
  const int64_t deadline_ms = now_ms() + timeout_ms;
  std::vector<wire::FrameT> passed;
  absl::StatusOr<wire::FrameT> result = absl::DeadlineExceededError(
      "no " + payload_name(type) + " within " + std::to_string(timeout_ms) + " ms");
  for (;;) {
    const int64_t left_ms = deadline_ms - now_ms();
    if (left_ms < 0) break;
    auto frame = next(static_cast<uint32_t>(left_ms));
    if (!frame.ok()) {
      result = frame.status();
      break;
    }
    if (!frame->has_value()) continue;
    if ((*frame)->payload.type == type) {
      result = std::move(**frame);
      break;
    }
    passed.push_back(std::move(**frame));
  }
  // Frames passed over stay first, in their order.
  held_.insert(held_.begin(), std::make_move_iterator(passed.begin()),
               std::make_move_iterator(passed.end()));
  return result;
}

absl::StatusOr<wire::HelloOkT> ChatClient::hello(uint16_t min_version, uint16_t max_version) {
  wire::HelloT hello;
  hello.min_version = min_version;
  hello.max_version = max_version;
  hello.client_name = options_.client_name;
  hello.client_version = options_.client_version;
  wire::PayloadUnion payload;
  payload.Set(std::move(hello));
  if (absl::Status s = send(frame_of(std::move(payload))); !s.ok()) return s;
  auto frame = next(options_.stream.connect_timeout_ms);
  if (!frame.ok()) return frame.status();
  if (!frame->has_value()) return absl::DeadlineExceededError("no answer to Hello");
  if (const auto* ok = (*frame)->payload.AsHelloOk(); ok != nullptr) {
    hello_ok_ = *ok;
    return *ok;
  }
  return absl::FailedPreconditionError(error_text(**frame));
}

absl::StatusOr<wire::AuthOkT> ChatClient::auth(std::span<const uint8_t> token) {
  wire::AuthT auth;
  auth.token.assign(token.begin(), token.end());
  wire::PayloadUnion payload;
  payload.Set(std::move(auth));
  if (absl::Status s = send(frame_of(std::move(payload))); !s.ok()) return s;
  auto frame = next(options_.stream.connect_timeout_ms);
  if (!frame.ok()) return frame.status();
  if (!frame->has_value()) return absl::DeadlineExceededError("no answer to Auth");
  if (const auto* ok = (*frame)->payload.AsAuthOk(); ok != nullptr) return *ok;
  if (const auto* e = (*frame)->payload.AsAuthError(); e != nullptr) {
    return absl::PermissionDeniedError(std::string(wire::EnumNameAuthErrorCode(e->code)) + ": " +
                                       e->message);
  }
  return absl::FailedPreconditionError(error_text(**frame));
}

absl::StatusOr<wire::AuthOkT> ChatClient::login(std::span<const uint8_t> token) {
  if (auto ok = hello(); !ok.ok()) return ok.status();
  return auth(token);
}

absl::Status ChatClient::send_message(wire::RecipientUnion to, uint64_t client_msg_id,
                                      std::span<const uint8_t> body, uint16_t content_type,
                                      wire::MessageFlags flags) {
  wire::MessageT message;
  message.to = std::move(to);
  message.client_msg_id = client_msg_id;
  message.body.assign(body.begin(), body.end());
  message.content_type = content_type;
  message.client_time_ms = static_cast<uint64_t>(time(nullptr)) * 1000;
  message.flags = flags;
  wire::PayloadUnion payload;
  payload.Set(std::move(message));
  return send(frame_of(std::move(payload)));
}

absl::Status ChatClient::send_to_device(const wire::DeviceAddress& device, uint64_t client_msg_id,
                                        std::span<const uint8_t> body) {
  wire::ToDeviceT to;
  to.device = std::make_unique<wire::DeviceAddress>(device);
  wire::RecipientUnion recipient;
  recipient.Set(std::move(to));
  return send_message(std::move(recipient), client_msg_id, body);
}

absl::Status ChatClient::send_to_account(const wire::AccountId& account, uint64_t client_msg_id,
                                         std::span<const uint8_t> body) {
  wire::ToAccountT to;
  to.account = std::make_unique<wire::AccountId>(account);
  wire::RecipientUnion recipient;
  recipient.Set(std::move(to));
  return send_message(std::move(recipient), client_msg_id, body);
}

absl::Status ChatClient::send_to_group(const wire::GroupId& group, uint64_t client_msg_id,
                                       std::span<const uint8_t> body) {
  wire::ToGroupT to;
  to.group = std::make_unique<wire::GroupId>(group);
  wire::RecipientUnion recipient;
  recipient.Set(std::move(to));
  return send_message(std::move(recipient), client_msg_id, body);
}

absl::Status ChatClient::ack(std::span<const wire::ServerMsgId> ids) {
  wire::DeliveryAckT ack;
  ack.server_msg_ids.assign(ids.begin(), ids.end());
  wire::PayloadUnion payload;
  payload.Set(std::move(ack));
  return send(frame_of(std::move(payload)));
}

absl::Status ChatClient::receipt(wire::ReceiptKind kind, const wire::AccountId& to,
                                 std::span<const wire::ServerMsgId> ids) {
  wire::ReceiptT receipt;
  receipt.kind = kind;
  receipt.to = std::make_unique<wire::AccountId>(to);
  receipt.message_ids.assign(ids.begin(), ids.end());
  receipt.client_time_ms = static_cast<uint64_t>(time(nullptr)) * 1000;
  wire::PayloadUnion payload;
  payload.Set(std::move(receipt));
  return send(frame_of(std::move(payload)));
}

absl::Status ChatClient::ping(uint64_t nonce) {
  wire::PingT ping;
  ping.nonce = nonce;
  ping.time_ms = static_cast<uint64_t>(now_ms());
  wire::PayloadUnion payload;
  payload.Set(std::move(ping));
  return send(frame_of(std::move(payload)));
}

}  // namespace herald::tools

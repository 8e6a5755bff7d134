// Herald frames for loadgen connections (herald_protocol.h).
#include "tools/loadgen/herald_protocol.h"

#include <time.h>

#include <cstring>
#include <string>

#include "schemas/codec/protocol.h"

namespace herald::tools::loadgen {
namespace {

uint64_t wall_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// Errors worth sending the same message again for: the server is busy or not ready (3xx), the
// sender went too fast, or a recipient it does not know yet (a group whose membership push has
// not reached the dataplane). The engine bounds the retries.
bool retryable(wire::ErrorCode code) {
  switch (code) {
    case wire::ErrorCode::RateLimited:
    case wire::ErrorCode::TooManyUnacked:
    case wire::ErrorCode::RecipientQueueFull:
    case wire::ErrorCode::RecipientNotFound:
    case wire::ErrorCode::Overloaded:
    case wire::ErrorCode::Draining:
    case wire::ErrorCode::StoreUnavailable:
    case wire::ErrorCode::Internal: return true;
    default: return false;
  }
}

std::string error_name(wire::ErrorCode code) {
  const char* name = wire::EnumNameErrorCode(code);
  return name != nullptr && name[0] != '\0' ? name : "Error" + std::to_string(int(code));
}

}  // namespace

HeraldCodec::HeraldCodec(const Directory& directory, uint32_t max_frame_bytes)
    : directory_(directory), limits_{.max_frame_bytes = max_frame_bytes} {}

std::span<const uint8_t> HeraldCodec::aligned(std::span<const uint8_t> frame) {
  const size_t words = (frame.size() + 7) / 8;
  if (scratch_.size() < words) scratch_.resize(words);
  std::memcpy(scratch_.data(), frame.data(), frame.size());
  return {reinterpret_cast<const uint8_t*>(scratch_.data()), frame.size()};
}

HeraldProtocol::HeraldProtocol(HeraldCodec& codec, std::span<const uint8_t> token)
    : codec_(codec), token_(token) {}

void HeraldProtocol::append(std::span<const uint8_t> frame, std::vector<uint8_t>& out) {
  out.insert(out.end(), frame.begin(), frame.end());
}

void HeraldProtocol::start(std::vector<uint8_t>& out) {
  state_ = State::kHello;
  partial_.clear();
  acks_.clear();
  codec::FrameBuilder& b = codec_.builder();
  b.clear();
  auto& fbb = b.fbb();
  const auto name = fbb.CreateString("herald-loadgen");
  const auto version = fbb.CreateString("1");
  append(b.finish(wire::CreateHello(fbb, codec::kProtocolVersionMin, codec::kProtocolVersionMax,
                                    name, version)),
         out);
}

void HeraldProtocol::send(const Target& to, uint64_t client_msg_id, std::span<const uint8_t> body,
                          std::vector<uint8_t>& out) {
  codec::FrameBuilder& b = codec_.builder();
  b.clear();
  auto& fbb = b.fbb();
  const auto body_offset = fbb.CreateVector(body.data(), body.size());
  flatbuffers::Offset<void> recipient;
  wire::Recipient type;
  if (to.kind == Target::Kind::kGroup) {
    recipient = wire::CreateToGroup(fbb, &codec_.directory().groups[to.index]).Union();
    type = wire::Recipient::ToGroup;
  } else {
    // ToDevice, not ToAccount: each message then has exactly one recipient device, whatever
    // devices earlier runs may have left on the account.
    recipient = wire::CreateToDevice(fbb, &codec_.directory().devices[to.index]).Union();
    type = wire::Recipient::ToDevice;
  }
  append(
      b.finish(wire::CreateMessage(fbb, type, recipient, client_msg_id, body_offset, 0, wall_ms())),
      out);
}

void HeraldProtocol::ping(std::vector<uint8_t>& out) {
  codec::FrameBuilder& b = codec_.builder();
  b.clear();
  append(b.finish(wire::CreatePing(b.fbb(), ++ping_nonce_, wall_ms())), out);
}

void HeraldProtocol::flush(std::vector<uint8_t>& out) {
  size_t at = 0;
  while (at < acks_.size()) {
    const size_t n = std::min<size_t>(acks_.size() - at, max_ids_per_ack_);
    codec::FrameBuilder& b = codec_.builder();
    b.clear();
    auto& fbb = b.fbb();
    const auto ids = fbb.CreateVectorOfStructs(acks_.data() + at, n);
    append(b.finish(wire::CreateDeliveryAck(fbb, ids)), out);
    at += n;
  }
  acks_.clear();
}

absl::Status HeraldProtocol::feed(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                                  ProtocolEvents& events) {
  if (!partial_.empty()) {
    // Complete the held frame first, taking no more than it needs.
    if (partial_.size() < codec::kFramePrefixBytes) {
      const size_t n = std::min(codec::kFramePrefixBytes - partial_.size(), in.size());
      partial_.insert(partial_.end(), in.begin(), in.begin() + n);
      in = in.subspan(n);
      if (partial_.size() < codec::kFramePrefixBytes) return absl::OkStatus();
    }
    uint32_t length = 0;
    std::memcpy(&length, partial_.data(), 4);
    if (length > codec_.limits().max_frame_bytes || length < codec::kMinFrameBytes) {
      return absl::DataLossError("frame length " + std::to_string(length) + " out of bounds");
    }
    const size_t total = codec::kFramePrefixBytes + length;
    const size_t n = std::min(total - partial_.size(), in.size());
    partial_.insert(partial_.end(), in.begin(), in.begin() + n);
    in = in.subspan(n);
    if (partial_.size() < total) return absl::OkStatus();
    std::vector<uint8_t> frame;
    frame.swap(partial_);
    auto done = frames(frame, out, events);
    if (!done.ok()) return done.status();
    if (partial_.capacity() > 64 * 1024) partial_.shrink_to_fit();
  }
  auto taken = frames(in, out, events);
  if (!taken.ok()) return taken.status();
  partial_.assign(in.begin() + *taken, in.end());
  return absl::OkStatus();
}

absl::StatusOr<size_t> HeraldProtocol::frames(std::span<const uint8_t> in,
                                              std::vector<uint8_t>& out, ProtocolEvents& events) {
  size_t at = 0;
  while (in.size() - at >= codec::kFramePrefixBytes) {
    uint32_t length = 0;
    std::memcpy(&length, in.data() + at, 4);
    if (length > codec_.limits().max_frame_bytes || length < codec::kMinFrameBytes) {
      return absl::DataLossError("frame length " + std::to_string(length) + " out of bounds");
    }
    const size_t total = codec::kFramePrefixBytes + length;
    if (in.size() - at < total) break;
    codec::FrameView view;
    const codec::FrameError e =
        codec::verify_frame(codec_.aligned(in.subspan(at, total)), codec_.limits(), &view);
    if (e != codec::FrameError::kNone) {
      return absl::DataLossError("bad frame from the server: " + std::string(codec::to_string(e)));
    }
    if (absl::Status s = handle(*view.frame, out, events); !s.ok()) return s;
    at += total;
  }
  return at;
}

absl::Status HeraldProtocol::handle(const wire::Frame& frame, std::vector<uint8_t>& out,
                                    ProtocolEvents& events) {
  switch (frame.payload_type()) {
    case wire::Payload::HelloOk: {
      if (state_ != State::kHello) return absl::DataLossError("HelloOk out of turn");
      const wire::Limits* limits = frame.payload_as_HelloOk()->limits();
      if (limits != nullptr && limits->max_ids_per_ack() > 0) {
        max_ids_per_ack_ = limits->max_ids_per_ack();
      }
      codec::FrameBuilder& b = codec_.builder();
      b.clear();
      auto& fbb = b.fbb();
      const auto token = fbb.CreateVector(token_.data(), token_.size());
      append(b.finish(wire::CreateAuth(fbb, token)), out);
      state_ = State::kAuth;
      // Kept for on_ready: the limits arrive here, the session starts at AuthOk.
      pending_limits_max_unacked_ = limits != nullptr ? limits->max_unacked_messages() : 0;
      pending_limits_idle_ms_ = limits != nullptr ? limits->idle_timeout_ms() : 0;
      return absl::OkStatus();
    }
    case wire::Payload::AuthOk:
      if (state_ != State::kAuth) return absl::DataLossError("AuthOk out of turn");
      state_ = State::kReady;
      // Ping at a third of the idle timeout: two pings may be lost or late before it bites.
      events.on_ready(pending_limits_max_unacked_, pending_limits_idle_ms_ / 3);
      return absl::OkStatus();
    case wire::Payload::AuthError: {
      const wire::AuthError* e = frame.payload_as_AuthError();
      const bool retry = e->code() == wire::AuthErrorCode::UnknownKey ||
                         e->code() == wire::AuthErrorCode::RateLimited;
      const char* name = wire::EnumNameAuthErrorCode(e->code());
      events.on_session_error(std::string("auth_") + (name[0] != '\0' ? name : "Unknown"), retry,
                              e->retry_after_ms());
      return absl::OkStatus();
    }
    case wire::Payload::ServerAck:
      events.on_ack(frame.payload_as_ServerAck()->client_msg_id());
      return absl::OkStatus();
    case wire::Payload::Deliver: {
      const wire::Deliver* d = frame.payload_as_Deliver();
      const wire::ServerMsgId* id = d->server_msg_id();
      const ServerId sid = id != nullptr ? ServerId{id->hi(), id->lo()} : ServerId{};
      if (id != nullptr) acks_.push_back(*id);
      const auto* body = d->body();
      events.on_deliver(body != nullptr ? std::span<const uint8_t>(body->data(), body->size())
                                        : std::span<const uint8_t>(),
                        sid);
      return absl::OkStatus();
    }
    case wire::Payload::Receipt: {
      // Receipts are queued messages too: acknowledge them so they leave the queue.
      const wire::ServerMsgId* id = frame.payload_as_Receipt()->server_msg_id();
      if (id != nullptr) acks_.push_back(*id);
      return absl::OkStatus();
    }
    case wire::Payload::Ping: {
      const wire::Ping* p = frame.payload_as_Ping();
      codec::FrameBuilder& b = codec_.builder();
      b.clear();
      append(b.finish(wire::CreatePong(b.fbb(), p->nonce(), p->time_ms(), wall_ms())), out);
      return absl::OkStatus();
    }
    case wire::Payload::Pong: events.on_pong(); return absl::OkStatus();
    case wire::Payload::Error: {
      const wire::Error* e = frame.payload_as_Error();
      const std::string name = error_name(e->code());
      if (e->client_msg_id().has_value()) {
        events.on_send_error(*e->client_msg_id(), name, retryable(e->code()), e->retry_after_ms());
      }
      if (e->fatal()) {
        // A replaced or revoked session must not fight back; anything else reconnects.
        const bool retry = e->code() != wire::ErrorCode::SessionReplaced &&
                           e->code() != wire::ErrorCode::SessionRevoked;
        events.on_session_error("fatal_" + name, retry, e->retry_after_ms());
      } else if (!e->client_msg_id().has_value()) {
        // About no message (a bad DeliveryAck, say): counted, the session goes on.
        events.on_send_error(0, name, false, 0);
      }
      return absl::OkStatus();
    }
    default:
      // Presence, typing and group updates carry nothing loadgen checks.
      return absl::OkStatus();
  }
}

}  // namespace herald::tools::loadgen

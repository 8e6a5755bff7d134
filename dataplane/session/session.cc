// One client session: frames in, protocol state, limits, frames out (session.h).
#include "dataplane/session/session.h"

#include <algorithm>
#include <string>

#include "platform/assert/assert.h"
#include "platform/log/log.h"
#include "schemas/codec/protocol.h"

namespace herald::dataplane {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;

wire::AuthErrorCode auth_error_code(auth::TokenError error) {
  switch (error) {
    case auth::TokenError::kUnknownKey: return wire::AuthErrorCode::UnknownKey;
    case auth::TokenError::kExpired: return wire::AuthErrorCode::Expired;
    case auth::TokenError::kRevoked: return wire::AuthErrorCode::Revoked;
    default: return wire::AuthErrorCode::InvalidToken;
  }
}

bool is_retry_later(wire::ErrorCode code) {
  const auto v = static_cast<uint16_t>(code);
  return v >= 300 && v < 400;
}

template <typename E>
bool enum_known(E value, E max) {
  return static_cast<uint32_t>(value) <= static_cast<uint32_t>(max);
}

}  // namespace

// ---- life cycle ------------------------------------------------------------------------------

void Session::open(SessionEnv& env, ConnectionId id, timer::TimerId timer) {
  HERALD_CHECK(state_ == State::kFree, "opening a session slot that is in use");
  env_ = &env;
  id_ = id;
  timer_ = timer;
  state_ = State::kAwaitHello;
  version_ = 0;
  attached_ = false;
  attaching_ = false;
  device_ = wire::DeviceAddress();
  token_expires_ms_ = 0;
  last_rx_ns_ = env.now_ns();
  park_at_ns_ = 0;
  sent_since_park_check_ = false;
  unacked_.clear();
  // DESIGN: the handshake (TLS, Hello, Auth) must finish within handshake_timeout_ms of accept.
  arm_timer_ms(last_rx_ns_, env.options.limits.handshake_timeout_ms);
}

void Session::on_closed() {
  if (state_ == State::kFree) return;
  if (state_ != State::kClosing) {
    env_->stats.count(SessionEvent::kPeerClosed);
    state_ = State::kClosing;
  }
  detach_if_attached();
  env_->wheel.cancel(timer_);
  release_decoder();
  unacked_.clear();
  unacked_.shrink_to_fit();
  env_->stats.count(SessionEvent::kClosed);
  state_ = State::kFree;
  id_ = kNoConnection;
}

void Session::arm_timer_ms(uint64_t from_ns, uint32_t delay_ms) {
  env_->wheel.schedule(timer_, from_ns + uint64_t{delay_ms} * kNsPerMs);
}

void Session::on_timer() {
  if (state_ == State::kFree || state_ == State::kClosing) return;
  if (state_ != State::kAuthenticated) {
    fail(SessionEvent::kHandshakeTimeout, wire::ErrorCode::HandshakeTimeout,
         "no AuthOk within handshake_timeout_ms");
    return;
  }
  if (env_->unix_now_ms() >= token_expires_ms_) {
    fail(SessionEvent::kTokenExpired, wire::ErrorCode::SessionExpired,
         "the session token expired: log in again with a new one");
    return;
  }
  // The idle timer is not moved on every frame (that would be a wheel operation per frame):
  // when it fires early, it re-arms for the real deadline.
  const uint64_t now_ns = env_->now_ns();
  if (park_at_ns_ != 0 && now_ns >= park_at_ns_) park_if_quiet(now_ns);
  const uint64_t idle_deadline_ns =
      last_rx_ns_ + uint64_t{env_->options.limits.idle_timeout_ms} * kNsPerMs;
  if (now_ns < idle_deadline_ns) {
    env_->wheel.schedule(timer_, authenticated_deadline_ns());
    return;
  }
  fail(SessionEvent::kIdleTimeout, wire::ErrorCode::IdleTimeout,
       "nothing received for idle_timeout_ms");
}

uint64_t Session::authenticated_deadline_ns() const {
  // The earlier of the idle deadline and the token's expiry. Expiry is wall-clock time; the
  // wheel runs on the monotonic clock, so the remaining wall time is added to now.
  const uint64_t now_ns = env_->now_ns();
  const uint64_t idle_deadline_ns =
      last_rx_ns_ + uint64_t{env_->options.limits.idle_timeout_ms} * kNsPerMs;
  const uint64_t unix_now_ms = env_->unix_now_ms();
  const uint64_t expiry_ns = token_expires_ms_ > unix_now_ms
                                 ? now_ns + (token_expires_ms_ - unix_now_ms) * kNsPerMs
                                 : now_ns;
  const uint64_t deadline_ns = std::min(idle_deadline_ns, expiry_ns);
  return park_at_ns_ != 0 ? std::min(deadline_ns, park_at_ns_) : deadline_ns;
}

void Session::park_if_quiet(uint64_t now_ns) {
  const uint64_t park_idle_ns = uint64_t{env_->options.park_idle_ms} * kNsPerMs;
  if (last_rx_ns_ + park_idle_ns > now_ns) {
    park_at_ns_ = last_rx_ns_ + park_idle_ns;  // received since: quiet from then on
  } else if (sent_since_park_check_) {
    // Sent since the last check, exact time unknown (no clock read per frame): parked between
    // park_idle_ms and twice that after the last send.
    sent_since_park_check_ = false;
    park_at_ns_ = now_ns + park_idle_ns;
  } else {
    env_->channel.park(id_);
    park_at_ns_ = 0;
  }
}

void Session::unpark_on_traffic() {
  if (park_at_ns_ != 0 || env_->options.park_idle_ms == 0 || state_ != State::kAuthenticated) {
    return;
  }
  // The first traffic after a park moves the timer once (a wheel operation per wake, not per
  // frame), so the session parks again after the next quiet period.
  park_at_ns_ = env_->now_ns() + uint64_t{env_->options.park_idle_ms} * kNsPerMs;
  sent_since_park_check_ = false;
  env_->wheel.schedule(timer_, authenticated_deadline_ns());
}

// Auth on an authenticated session: the client hands in a newer token of the same device
// before the old one expires, and the session lives on without a reconnect (no re-attach, no
// drain). A token for another device is a protocol error; a bad token ends the session.
void Session::on_token_refresh(const wire::Auth& auth) {
  const flatbuffers::Vector<uint8_t>& token = *auth.token();
  const auth::TokenCheck check =
      env_->verifier.verify({token.data(), token.size()}, env_->unix_now_ms());
  if (!check.ok()) {
    send_auth_error(check.error);
    return;
  }
  if (check.claims.account.hi != device_.account().hi() ||
      check.claims.account.lo != device_.account().lo() ||
      check.claims.device_id != device_.device()) {
    fail(SessionEvent::kUnexpectedFrame, wire::ErrorCode::UnexpectedFrame,
         "Auth for another device on an authenticated session");
    return;
  }
  token_expires_ms_ = std::max(token_expires_ms_, check.claims.expires_at_ms);
  env_->stats.count(SessionEvent::kTokenRefreshed);
  env_->wheel.schedule(timer_, authenticated_deadline_ns());
  codec::FrameBuilder& b = env_->builder;
  b.clear();
  (void)send_own(b.finish(wire::CreateAuthOk(b.fbb(), &device_, token_expires_ms_, 0)));
}

void Session::send_auth_error(auth::TokenError error) {
  env_->stats.count(SessionEvent::kAuthFailed);
  ++env_->stats.auth_errors[static_cast<size_t>(error)];
  const uint32_t retry_after_ms =
      error == auth::TokenError::kUnknownKey ? env_->options.unknown_key_retry_after_ms : 0;
  codec::FrameBuilder& b = env_->builder;
  b.clear();
  flatbuffers::FlatBufferBuilder& fbb = b.fbb();
  const auto message = fbb.CreateString(std::string(auth::token_error_name(error)));
  const auto frame = wire::CreateAuthError(fbb, auth_error_code(error), message, retry_after_ms);
  (void)send_own(b.finish(frame));
  begin_close(CloseMode::kGraceful);
}

void Session::detach_if_attached() {
  // Inside attach the router is still registering us: the detach comes when attach returns.
  if (!attached_ || attaching_) return;
  attached_ = false;
  env_->router.detach(*this);
}

void Session::begin_close(CloseMode mode) {
  if (state_ == State::kClosing || state_ == State::kFree) return;
  state_ = State::kClosing;
  env_->wheel.cancel(timer_);
  detach_if_attached();
  env_->channel.close(id_, mode);
}

// ---- input -----------------------------------------------------------------------------------

bool Session::acquire_decoder() {
  DecodeBufferPool::Buffer buffer = env_->decode_buffers.acquire();
  if (buffer == nullptr) return false;
  decode_storage_bytes_ = env_->decode_buffers.buffer_bytes();
  decode_storage_ = std::move(buffer);
  decoder_.emplace(
      env_->options.limits.decoder_limits(),
      std::span<uint8_t>(reinterpret_cast<uint8_t*>(decode_storage_.get()), decode_storage_bytes_));
  return true;
}

void Session::release_decoder() {
  decoder_.reset();
  env_->decode_buffers.release(std::move(decode_storage_), decode_storage_bytes_);
  decode_storage_bytes_ = 0;
}

void Session::on_plaintext(std::span<const uint8_t> bytes) {
  if (state_ == State::kFree || state_ == State::kClosing) return;
  last_rx_ns_ = env_->now_ns();
  unpark_on_traffic();
  while (!bytes.empty()) {
    if (!decoder_.has_value() && !acquire_decoder()) {
      fail(SessionEvent::kDecodeBuffersExhausted, wire::ErrorCode::Overloaded,
           "server busy: no frame buffer free");
      return;
    }
    const size_t taken = decoder_->feed(bytes);
    bytes = bytes.subspan(taken);
    for (;;) {
      const codec::DecodeResult r = decoder_->next_frame();
      if (r.status == codec::DecodeStatus::kNeedMore) break;
      if (r.status == codec::DecodeStatus::kError) {
        ++env_->stats.frame_errors[static_cast<size_t>(r.error)];
        const std::string reason(codec::to_string(r.error));
        // The counter is the per-reason one; the event counts only once per session close.
        send_error(codec::error_code_for(r.error), "bad frame: " + reason, true);
        begin_close(CloseMode::kGraceful);
        return;
      }
      env_->stats.count(SessionEvent::kFramesIn);
      handle_frame(r.frame);
      // The frame's bytes stay in the decoder's storage until we return, even when the
      // session closed meanwhile (the router may still be reading them up the stack).
      if (state_ == State::kClosing) return;
    }
    // Every complete frame was taken above, so the decoder has room: it cannot refuse twice.
    // Never spin on it (the bug macro logs and counts it).
    if (HERALD_BUG_IF(taken == 0, "frame decoder took no bytes")) {
      send_error(wire::ErrorCode::Internal, "internal error", true);
      begin_close(CloseMode::kGraceful);
      return;
    }
  }
  // An idle session holds no frame buffer.
  if (decoder_.has_value() && decoder_->buffered_bytes() == 0) release_decoder();
  // What was sent in answer to these bytes (AuthOk, Pong, acks) was sent now: last_rx_ns_
  // covers it for parking.
  sent_since_park_check_ = false;
}

void Session::handle_frame(const codec::FrameView& view) {
  const wire::Frame& frame = *view.frame;
  switch (view.type()) {
    case wire::Payload::Hello:
      if (state_ != State::kAwaitHello) {
        fail(SessionEvent::kUnexpectedFrame, wire::ErrorCode::UnexpectedFrame, "Hello again");
        return;
      }
      on_hello(*frame.payload_as_Hello());
      return;
    case wire::Payload::Auth:
      if (state_ == State::kAuthenticated) {
        on_token_refresh(*frame.payload_as_Auth());
        return;
      }
      if (state_ != State::kAwaitAuth) {
        fail(SessionEvent::kUnexpectedFrame, wire::ErrorCode::UnexpectedFrame,
             state_ == State::kAwaitHello ? "Auth before Hello" : "Auth again");
        return;
      }
      on_auth(*frame.payload_as_Auth());
      return;
    case wire::Payload::Ping: on_ping(*frame.payload_as_Ping()); return;
    default: break;
  }
  // Everything else only after AuthOk (docs/PROTOCOL.md: before it, only Hello, Auth, Ping).
  if (state_ != State::kAuthenticated) {
    fail(SessionEvent::kNotAuthenticated, wire::ErrorCode::NotAuthenticated,
         "authenticate first (Hello, Auth)");
    return;
  }
  switch (view.type()) {
    case wire::Payload::Pong: env_->stats.count(SessionEvent::kPongs); return;
    case wire::Payload::HelloOk:
    case wire::Payload::AuthOk:
    case wire::Payload::AuthError:
    case wire::Payload::ServerAck:
    case wire::Payload::Deliver:
    case wire::Payload::GroupOpResult:
    case wire::Payload::GroupUpdate:
    case wire::Payload::Error:
      fail(SessionEvent::kUnexpectedFrame, wire::ErrorCode::UnexpectedFrame,
           "a server-to-client frame from the client");
      return;
    default: break;
  }
  const SessionLimits& limits = env_->options.limits;
  Router& router = env_->router;
  switch (view.type()) {
    case wire::Payload::Message: on_message(*frame.payload_as_Message()); return;
    case wire::Payload::DeliveryAck: {
      const wire::DeliveryAck& ack = *frame.payload_as_DeliveryAck();
      if (ack.server_msg_ids()->size() > limits.max_ids_per_ack) {
        env_->stats.count(SessionEvent::kTooManyIds);
        send_error(wire::ErrorCode::InvalidRequest, "DeliveryAck over max_ids_per_ack", false);
        return;
      }
      env_->stats.count(SessionEvent::kDeliveryAcks);
      router.on_delivery_ack(*this, ack);
      return;
    }
    case wire::Payload::Receipt: {
      const wire::Receipt& receipt = *frame.payload_as_Receipt();
      if (receipt.message_ids()->size() > limits.max_ids_per_ack) {
        env_->stats.count(SessionEvent::kTooManyIds);
        send_error(wire::ErrorCode::InvalidRequest, "Receipt over max_ids_per_ack", false);
        return;
      }
      if (!enum_known(receipt.kind(), wire::ReceiptKind::MAX)) {
        env_->stats.count(SessionEvent::kInvalidValue);
        send_error(wire::ErrorCode::InvalidRequest, "unknown Receipt.kind", false);
        return;
      }
      env_->stats.count(SessionEvent::kReceipts);
      router.on_receipt(*this, receipt);
      return;
    }
    case wire::Payload::Presence: {
      const wire::Presence& presence = *frame.payload_as_Presence();
      if (!enum_known(presence.state(), wire::PresenceState::MAX)) {
        env_->stats.count(SessionEvent::kInvalidValue);
        send_error(wire::ErrorCode::InvalidRequest, "unknown Presence.state", false);
        return;
      }
      env_->stats.count(SessionEvent::kPresence);
      router.on_presence(*this, presence);
      return;
    }
    case wire::Payload::PresenceSubscribe: {
      const wire::PresenceSubscribe& subscribe = *frame.payload_as_PresenceSubscribe();
      const uint32_t n = subscribe.accounts() != nullptr ? subscribe.accounts()->size() : 0;
      if (n > limits.max_presence_subscriptions) {
        env_->stats.count(SessionEvent::kTooManySubscriptions);
        send_error(wire::ErrorCode::InvalidRequest,
                   "PresenceSubscribe over max_presence_subscriptions", false);
        return;
      }
      env_->stats.count(SessionEvent::kPresenceSubscribes);
      router.on_presence_subscribe(*this, subscribe);
      return;
    }
    case wire::Payload::Typing: {
      const wire::Typing& typing = *frame.payload_as_Typing();
      if (!enum_known(typing.state(), wire::TypingState::MAX)) {
        env_->stats.count(SessionEvent::kInvalidValue);
        send_error(wire::ErrorCode::InvalidRequest, "unknown Typing.state", false);
        return;
      }
      env_->stats.count(SessionEvent::kTyping);
      router.on_typing(*this, typing);
      return;
    }
    case wire::Payload::GroupOp: {
      const wire::GroupOp& op = *frame.payload_as_GroupOp();
      if (!enum_known(op.op(), wire::GroupOpKind::MAX)) {
        env_->stats.count(SessionEvent::kInvalidValue);
        send_error(wire::ErrorCode::InvalidRequest, "unknown GroupOp.op", false);
        return;
      }
      env_->stats.count(SessionEvent::kGroupOps);
      router.on_group_op(*this, op);
      return;
    }
    default:
      // The decoder admits only known payload types and every one is handled above; a type
      // added to wire.fbs without a case here lands here, and the client learns it.
      fail(SessionEvent::kUnexpectedFrame, wire::ErrorCode::UnsupportedFrame,
           "frame type not supported");
      return;
  }
}

void Session::on_hello(const wire::Hello& hello) {
  const uint16_t version = codec::negotiate_version(hello.min_version(), hello.max_version());
  if (version == 0) {
    fail(SessionEvent::kVersionUnsupported, wire::ErrorCode::VersionUnsupported,
         "no common protocol version (server speaks " + std::to_string(codec::kProtocolVersionMin) +
             ".." + std::to_string(codec::kProtocolVersionMax) + ")");
    return;
  }
  version_ = version;
  state_ = State::kAwaitAuth;
  const SessionLimits& l = env_->options.limits;
  codec::FrameBuilder& b = env_->builder;
  b.clear();
  flatbuffers::FlatBufferBuilder& fbb = b.fbb();
  const auto server_version = fbb.CreateString(env_->options.server_version);
  const auto limits = wire::CreateLimits(
      fbb, l.max_frame_bytes, l.max_body_bytes, l.max_group_members, l.max_linked_devices,
      l.max_unacked_messages, l.max_ids_per_ack, l.max_presence_subscriptions, l.idle_timeout_ms);
  const auto ok = wire::CreateHelloOk(fbb, version, env_->options.node_id, server_version,
                                      env_->unix_now_ms(), limits);
  env_->stats.count(SessionEvent::kHelloOk);
  (void)send_own(b.finish(ok));
}

void Session::on_auth(const wire::Auth& auth) {
  const flatbuffers::Vector<uint8_t>& token = *auth.token();
  const auth::TokenCheck check =
      env_->verifier.verify({token.data(), token.size()}, env_->unix_now_ms());
  if (!check.ok()) {
    send_auth_error(check.error);
    return;
  }
  device_ = wire::DeviceAddress(wire::AccountId(check.claims.account.hi, check.claims.account.lo),
                                check.claims.device_id);
  token_expires_ms_ = check.claims.expires_at_ms;
  state_ = State::kAuthenticated;
  env_->stats.count(SessionEvent::kAuthOk);
  // The handshake timer becomes the idle, token-expiry and park timer.
  last_rx_ns_ = env_->now_ns();
  if (env_->options.park_idle_ms > 0) {
    park_at_ns_ = last_rx_ns_ + uint64_t{env_->options.park_idle_ms} * kNsPerMs;
  }
  env_->wheel.schedule(timer_, authenticated_deadline_ns());

  // Frames the router sends from inside attach (a drain that starts at once) must follow
  // AuthOk on the wire: they wait in attach_deferred.
  env_->attach_deferred.clear();
  attached_ = true;
  attaching_ = true;
  const uint32_t queued = env_->router.attach(*this);
  attaching_ = false;
  if (state_ == State::kClosing) {
    // The router closed us from inside attach; its detach was held back until now.
    env_->attach_deferred.clear();
    detach_if_attached();
    return;
  }
  codec::FrameBuilder& b = env_->builder;
  b.clear();
  const auto ok = wire::CreateAuthOk(b.fbb(), &device_, token_expires_ms_, queued);
  if (!send_own(b.finish(ok))) return;
  if (!env_->attach_deferred.empty()) {
    std::vector<uint8_t> deferred;
    deferred.swap(env_->attach_deferred);
    if (!env_->channel.send(id_, deferred)) {
      env_->stats.count(SessionEvent::kSendFailed);
      begin_close(CloseMode::kAbort);
    }
    // Keep the capacity for the next login on this worker.
    deferred.clear();
    env_->attach_deferred.swap(deferred);
  }
}

void Session::on_message(const wire::Message& message) {
  const uint64_t client_msg_id = message.client_msg_id();
  if (message.body()->size() > env_->options.limits.max_body_bytes) {
    env_->stats.count(SessionEvent::kBodyTooLarge);
    send_error(wire::ErrorCode::BodyTooLarge, "body over max_body_bytes", false, client_msg_id);
    return;
  }
  if (unacked_.size() >= env_->options.limits.max_unacked_messages) {
    env_->stats.count(SessionEvent::kTooManyUnacked);
    send_error(wire::ErrorCode::TooManyUnacked, "over max_unacked_messages", false, client_msg_id);
    return;
  }
  unacked_.push_back(client_msg_id);
  env_->stats.count(SessionEvent::kMessages);
  env_->router.on_message(*this, message);
}

void Session::on_ping(const wire::Ping& ping) {
  env_->stats.count(SessionEvent::kPings);
  codec::FrameBuilder& b = env_->builder;
  b.clear();
  const auto pong = wire::CreatePong(b.fbb(), ping.nonce(), ping.time_ms(), env_->unix_now_ms());
  (void)send_own(b.finish(pong));
}

void Session::on_writable() {
  if (state_ == State::kAuthenticated && attached_ && !attaching_) env_->router.on_writable(*this);
}

// ---- output ----------------------------------------------------------------------------------

bool Session::send_own(std::span<const uint8_t> frame) {
  if (state_ == State::kFree || state_ == State::kClosing) return false;
  const uint32_t queued = env_->channel.queued_bytes(id_);
  if (queued > 0 && queued + frame.size() > env_->options.limits.send_queue_bytes_per_session) {
    // DESIGN: a slow consumer is cut off; what it did not acknowledge stays in the store.
    // A frame always goes into an empty queue, so one larger than the limit (allowed up to
    // max_frame_bytes) never cuts off a device that keeps up.
    env_->stats.count(SessionEvent::kSlowConsumer);
    begin_close(CloseMode::kAbort);
    return false;
  }
  if (!env_->channel.send(id_, frame)) {
    env_->stats.count(SessionEvent::kSendFailed);
    begin_close(CloseMode::kAbort);
    return false;
  }
  env_->stats.count(SessionEvent::kFramesOut);
  sent_since_park_check_ = true;
  unpark_on_traffic();
  return true;
}

bool Session::send_frame(std::span<const uint8_t> frame) {
  if (state_ != State::kAuthenticated) return false;
  if (attaching_) {
    std::vector<uint8_t>& deferred = env_->attach_deferred;
    if (!deferred.empty() &&
        deferred.size() + frame.size() > env_->options.limits.send_queue_bytes_per_session) {
      env_->stats.count(SessionEvent::kSlowConsumer);
      begin_close(CloseMode::kAbort);
      return false;
    }
    deferred.insert(deferred.end(), frame.begin(), frame.end());
    env_->stats.count(SessionEvent::kFramesOut);
    return true;
  }
  return send_own(frame);
}

uint32_t Session::queued_bytes() const {
  if (state_ == State::kFree) return 0;
  const uint32_t deferred = attaching_ ? static_cast<uint32_t>(env_->attach_deferred.size()) : 0;
  return env_->channel.queued_bytes(id_) + deferred;
}

void Session::send_error(wire::ErrorCode code, std::string_view message, bool fatal,
                         std::optional<uint64_t> client_msg_id, uint32_t retry_after_ms) {
  codec::FrameBuilder& b = env_->builder;
  b.clear();
  flatbuffers::FlatBufferBuilder& fbb = b.fbb();
  const auto text = fbb.CreateString(message.data(), message.size());
  wire::ErrorBuilder eb(fbb);
  eb.add_code(code);
  eb.add_message(text);
  if (client_msg_id.has_value()) eb.add_client_msg_id(*client_msg_id);
  eb.add_fatal(fatal);
  eb.add_retry_after_ms(retry_after_ms);
  (void)send_own(b.finish(eb.Finish()));
}

void Session::fail(SessionEvent event, wire::ErrorCode code, std::string_view message) {
  if (state_ == State::kClosing || state_ == State::kFree) return;
  env_->stats.count(event);
  send_error(code, message, true);
  begin_close(CloseMode::kGraceful);
}

void Session::complete_message(uint64_t client_msg_id, const wire::ServerMsgId* server_msg_id,
                               uint64_t server_time_ms, wire::ErrorCode error) {
  const auto it = std::find(unacked_.begin(), unacked_.end(), client_msg_id);
  if (it == unacked_.end()) {
    env_->stats.count(SessionEvent::kCompleteIgnored);
    return;
  }
  unacked_.erase(it);  // keeps the rest oldest first; a few hundred ids at most
  if (state_ != State::kAuthenticated) return;  // closing: nobody to tell
  if (server_msg_id != nullptr) {
    env_->stats.count(SessionEvent::kServerAcks);
    codec::FrameBuilder& b = env_->builder;
    b.clear();
    const auto ack = wire::CreateServerAck(b.fbb(), client_msg_id, server_msg_id, server_time_ms);
    (void)send_own(b.finish(ack));
    return;
  }
  env_->stats.count(SessionEvent::kMessageErrors);
  const wire::ErrorCode code =
      error == wire::ErrorCode::Unspecified ? wire::ErrorCode::Internal : error;
  send_error(code, wire::EnumNameErrorCode(code), false, client_msg_id,
             is_retry_later(code) ? env_->options.retry_after_ms : 0);
}

void Session::close_with_error(wire::ErrorCode code, std::string_view message) {
  if (state_ == State::kClosing || state_ == State::kFree) return;
  if (code == wire::ErrorCode::SessionReplaced) env_->stats.count(SessionEvent::kSessionReplaced);
  fail(SessionEvent::kClosedByRouter, code, message);
}

}  // namespace herald::dataplane

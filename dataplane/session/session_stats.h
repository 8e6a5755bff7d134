// The session layer's counters: one X-macro table of events and errors, plus rejected frames
// by codec::FrameError and failed logins by auth::TokenError. A plain struct per worker (one
// thread writes it); the worker mirrors it into the counters segment as dp.session.<name>,
// dp.session.frame_error.<name> and dp.session.auth_error.<name>.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "platform/auth/token_verifier.h"
#include "schemas/codec/frame_error.h"

namespace herald::dataplane {

// X(enumerator, stable name, what it counts). Names are operator interface: append only.
#define HERALD_SESSION_EVENTS(X)                                                                 \
  X(kOpened, "opened", "connections that reached the session layer")                             \
  X(kClosed, "closed", "sessions that ended (each opened one ends once)")                        \
  X(kRejectedFull, "rejected_full", "connections closed at once: every session slot in use")     \
  X(kHelloOk, "hello_ok", "Hello answered with HelloOk")                                         \
  X(kVersionUnsupported, "version_unsupported", "Hello with no common version (fatal)")          \
  X(kAuthOk, "auth_ok", "logins accepted (Router::attach, AuthOk)")                              \
  X(kAuthFailed, "auth_failed", "logins refused with AuthError (why: auth_error.*)")             \
  X(kFramesIn, "frames_in", "verified frames received")                                          \
  X(kFramesOut, "frames_out", "frames sent (own and the router's)")                              \
  X(kMessages, "messages", "Messages handed to the router")                                      \
  X(kServerAcks, "server_acks", "Messages completed with a ServerAck")                           \
  X(kMessageErrors, "message_errors", "Messages completed with an Error by the router")          \
  X(kCompleteIgnored, "complete_ignored", "complete_message for no outstanding Message (bug)")   \
  X(kDeliveryAcks, "delivery_acks", "DeliveryAcks handed to the router")                         \
  X(kReceipts, "receipts", "Receipts handed to the router")                                      \
  X(kPresence, "presence", "Presence frames handed to the router")                               \
  X(kPresenceSubscribes, "presence_subscribes", "PresenceSubscribes handed to the router")       \
  X(kTyping, "typing", "Typing frames handed to the router")                                     \
  X(kGroupOps, "group_ops", "GroupOps handed to the router")                                     \
  X(kPings, "pings", "client Pings answered with Pong")                                          \
  X(kPongs, "pongs", "Pongs received")                                                           \
  X(kBodyTooLarge, "body_too_large", "Messages over max_body_bytes (Error BodyTooLarge)")        \
  X(kTooManyUnacked, "too_many_unacked", "Messages over max_unacked_messages (TooManyUnacked)")  \
  X(kTooManyIds, "too_many_ids", "DeliveryAck/Receipt over max_ids_per_ack (InvalidRequest)")    \
  X(kTooManySubscriptions, "too_many_subscriptions",                                             \
    "PresenceSubscribe over max_presence_subscriptions (InvalidRequest)")                        \
  X(kInvalidValue, "invalid_value", "an enum value this version does not have (InvalidRequest)") \
  X(kNotAuthenticated, "not_authenticated", "session frames before AuthOk (fatal)")              \
  X(kUnexpectedFrame, "unexpected_frame", "frames in the wrong state or direction (fatal)")      \
  X(kHandshakeTimeout, "handshake_timeout", "no AuthOk within handshake_timeout_ms (fatal)")     \
  X(kIdleTimeout, "idle_timeout", "nothing received for idle_timeout_ms (fatal)")                \
  X(kSlowConsumer, "slow_consumer", "send queue over send_queue_bytes_per_session: cut off")     \
  X(kSendFailed, "send_failed", "a frame the channel refused (connection already going)")        \
  X(kClosedByRouter, "closed_by_router", "close_with_error from the router")                     \
  X(kSessionReplaced, "session_replaced", "closed because a newer login of the device came")     \
  X(kDecodeBuffersExhausted, "decode_buffers_exhausted",                                         \
    "no frame buffer free for a partial frame (Error Overloaded, fatal)")                        \
  X(kPeerClosed, "peer_closed", "sessions ended by the peer or the transport, not by us")        \
  X(kTokenExpired, "token_expired", "sessions closed when their token expired (SessionExpired)") \
  X(kTokenRefreshed, "token_refreshed", "Auth with a newer token on an authenticated session")

enum class SessionEvent : uint8_t {
#define HERALD_SESSION_EVENT_ENUM(name, text, doc) name,
  HERALD_SESSION_EVENTS(HERALD_SESSION_EVENT_ENUM)
#undef HERALD_SESSION_EVENT_ENUM
      kCount
};
inline constexpr size_t kSessionEventCount = static_cast<size_t>(SessionEvent::kCount);

[[nodiscard]] constexpr std::string_view session_event_name(SessionEvent event) {
  switch (event) {
#define HERALD_SESSION_EVENT_NAME(name, text, doc) \
  case SessionEvent::name: return text;
    HERALD_SESSION_EVENTS(HERALD_SESSION_EVENT_NAME)
#undef HERALD_SESSION_EVENT_NAME
    case SessionEvent::kCount: break;
  }
  return "unknown";
}

// auth::TokenError has kOk .. kRevoked.
inline constexpr size_t kTokenErrorCount = static_cast<size_t>(auth::TokenError::kRevoked) + 1;

struct SessionStats {
  std::array<uint64_t, kSessionEventCount> events{};
  // Indexed by codec::FrameError (names: codec::to_string); kNone stays 0.
  std::array<uint64_t, codec::kFrameErrorCount> frame_errors{};
  // Indexed by auth::TokenError (names: auth::token_error_name); kOk stays 0.
  std::array<uint64_t, kTokenErrorCount> auth_errors{};

  uint64_t operator[](SessionEvent e) const { return events[static_cast<size_t>(e)]; }
  uint64_t frame_error(codec::FrameError e) const { return frame_errors[static_cast<size_t>(e)]; }
  uint64_t auth_error(auth::TokenError e) const { return auth_errors[static_cast<size_t>(e)]; }
  void count(SessionEvent e) { ++events[static_cast<size_t>(e)]; }
};

// Every counter with its stable name, for mirroring into the counters segment:
// f(section, name, value) with section "" (events), "frame_error" or "auth_error"; the
// kNone / kOk slots are skipped.
template <typename F>
void for_each_counter(const SessionStats& stats, F&& f) {
  for (size_t i = 0; i < kSessionEventCount; ++i) {
    f(std::string_view(), session_event_name(static_cast<SessionEvent>(i)), stats.events[i]);
  }
  for (size_t i = 1; i < stats.frame_errors.size(); ++i) {
    f(std::string_view("frame_error"), codec::to_string(static_cast<codec::FrameError>(i)),
      stats.frame_errors[i]);
  }
  for (size_t i = 1; i < stats.auth_errors.size(); ++i) {
    f(std::string_view("auth_error"), auth::token_error_name(static_cast<auth::TokenError>(i)),
      stats.auth_errors[i]);
  }
}

}  // namespace herald::dataplane

// The TLS and session layers end to end over an in-memory transport, with a real TLS client and
// a recording Router: handshake, Hello/Auth (valid and refused tokens), every frame type, each
// limit at its edge, bad frames and TLS garbage, timeouts on a manual clock, slow consumers,
// close_with_error, certificate reload mid-connection and resumption.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "platform/auth/crypto.h"
#include "schemas/codec/frame_builder.h"
#include "tests/unit/dataplane/session/stack_test_util.h"

namespace herald::dataplane {
namespace {

using testing::kStartMs;
using testing::Stack;
using testing::StackOptions;
using testing::TestClient;

std::vector<uint8_t> message_frame(uint64_t client_msg_id, size_t body_bytes) {
  codec::FrameBuilder b(body_bytes + 256);
  auto& fbb = b.fbb();
  std::vector<uint8_t> body(body_bytes, 0x5a);
  auto body_vec = fbb.CreateVector(body);
  const wire::AccountId account(7, 8);
  auto to = wire::CreateToAccount(fbb, &account);
  auto m = wire::CreateMessage(fbb, wire::Recipient::ToAccount, to.Union(), client_msg_id, body_vec,
                               1, kStartMs);
  auto span = b.finish(m);
  return {span.begin(), span.end()};
}

std::vector<uint8_t> delivery_ack_frame(size_t ids) {
  codec::FrameBuilder b;
  std::vector<wire::ServerMsgId> v(ids, wire::ServerMsgId(1, 2));
  auto vec = b.fbb().CreateVectorOfStructs(v);
  auto span = b.finish(wire::CreateDeliveryAck(b.fbb(), vec));
  return {span.begin(), span.end()};
}

std::vector<uint8_t> receipt_frame(size_t ids, wire::ReceiptKind kind = wire::ReceiptKind::Read) {
  codec::FrameBuilder b;
  std::vector<wire::ServerMsgId> v(ids, wire::ServerMsgId(1, 2));
  auto vec = b.fbb().CreateVectorOfStructs(v);
  const wire::AccountId to(7, 8);
  auto span = b.finish(wire::CreateReceipt(b.fbb(), kind, vec, &to));
  return {span.begin(), span.end()};
}

std::vector<uint8_t> subscribe_frame(size_t accounts) {
  codec::FrameBuilder b;
  std::vector<wire::AccountId> v(accounts, wire::AccountId(3, 4));
  auto vec = b.fbb().CreateVectorOfStructs(v);
  auto span = b.finish(wire::CreatePresenceSubscribe(b.fbb(), vec));
  return {span.begin(), span.end()};
}

std::vector<uint8_t> ping_frame(uint64_t nonce) {
  codec::FrameBuilder b;
  auto span = b.finish(wire::CreatePing(b.fbb(), nonce, 42));
  return {span.begin(), span.end()};
}

// Expects the next frame to be Error{code, fatal}.
void expect_error(TestClient& c, wire::ErrorCode code, bool fatal) {
  const wire::Frame* f = c.next_of(wire::Payload::Error);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Error()->code(), code) << wire::EnumNameErrorCode(code);
  EXPECT_EQ(f->payload_as_Error()->fatal(), fatal);
}

// ---- handshake and the happy path ------------------------------------------------------------

TEST(SessionStack, HandshakeHelloAuthAndEveryFrameType) {
  StackOptions opt;
  opt.session.node_id = 7;
  Stack stack(opt);
  stack.router.queued_messages = 3;
  auto c = stack.connect();
  ASSERT_TRUE(c->tls().handshake_done());
  EXPECT_EQ(c->tls().protocol_version(), TLS1_3_VERSION);
  EXPECT_EQ(c->tls().alpn(), "herald/1");
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kHandshakeOk], 1u);
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kTls13], 1u);

  c->hello(1, 5);
  const wire::Frame* f = c->next_of(wire::Payload::HelloOk);
  ASSERT_NE(f, nullptr);
  const wire::HelloOk& ok = *f->payload_as_HelloOk();
  EXPECT_EQ(ok.version(), 1);
  EXPECT_EQ(ok.node_id(), 7);
  EXPECT_EQ(ok.server_time_ms(), kStartMs);
  ASSERT_NE(ok.limits(), nullptr);
  EXPECT_EQ(ok.limits()->max_frame_bytes(), 65536u);
  EXPECT_EQ(ok.limits()->max_unacked_messages(), 256u);
  EXPECT_EQ(ok.limits()->idle_timeout_ms(), 300000u);

  c->auth(stack.token(5));
  f = c->next_of(wire::Payload::AuthOk);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_AuthOk()->device()->device(), 5u);
  EXPECT_EQ(f->payload_as_AuthOk()->device()->account().lo(), 2u);
  EXPECT_EQ(f->payload_as_AuthOk()->queued_messages(), 3u);
  EXPECT_EQ(f->payload_as_AuthOk()->token_expires_ms(), kStartMs + 3'600'000);
  ASSERT_EQ(stack.router.attaches, 1);
  EXPECT_EQ(stack.router.last->device().device(), 5u);
  EXPECT_EQ(stack.router.last->version(), 1);

  c->send(message_frame(11, 100));
  f = c->next_of(wire::Payload::ServerAck);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_ServerAck()->client_msg_id(), 11u);
  EXPECT_EQ(f->payload_as_ServerAck()->server_msg_id()->lo(), 1u);

  c->send(delivery_ack_frame(3));
  c->send(receipt_frame(2));
  {
    codec::FrameBuilder b;
    c->send(b.finish(wire::CreatePresence(b.fbb(), nullptr, wire::PresenceState::Away, 9)));
  }
  c->send(subscribe_frame(2));
  {
    codec::FrameBuilder b;
    const wire::DeviceAddress to(wire::AccountId(7, 8), 1);
    auto td = wire::CreateToDevice(b.fbb(), &to);
    c->send(b.finish(wire::CreateTyping(b.fbb(), wire::Recipient::ToDevice, td.Union(),
                                        wire::TypingState::Started)));
  }
  {
    codec::FrameBuilder b;
    c->send(b.finish(wire::CreateGroupOp(b.fbb(), 77, wire::GroupOpKind::Create)));
  }
  c->send(ping_frame(99));
  f = c->next_of(wire::Payload::Pong);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Pong()->nonce(), 99u);
  EXPECT_EQ(f->payload_as_Pong()->echo_time_ms(), 42u);

  ASSERT_EQ(stack.router.delivery_ack_ids.size(), 1u);
  EXPECT_EQ(stack.router.delivery_ack_ids[0], 3u);
  EXPECT_EQ(stack.router.receipts, 1);
  EXPECT_EQ(stack.router.presences, 1);
  EXPECT_EQ(stack.router.presence_subscribes, 1);
  EXPECT_EQ(stack.router.typings, 1);
  EXPECT_EQ(stack.router.group_ops, 1);

  // The router's frames reach the client (encoded once, encrypted per session).
  {
    codec::FrameBuilder b;
    const wire::ServerMsgId id(5, 6);
    auto span = b.finish(wire::CreatePing(b.fbb(), 1234, 0));
    EXPECT_TRUE(stack.router.last->send_frame(span));
    (void)id;
  }
  c->pump();
  f = c->next_of(wire::Payload::Ping);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Ping()->nonce(), 1234u);

  const SessionStats& s = stack.sessions.stats();
  EXPECT_EQ(s[SessionEvent::kHelloOk], 1u);
  EXPECT_EQ(s[SessionEvent::kAuthOk], 1u);
  EXPECT_EQ(s[SessionEvent::kMessages], 1u);
  EXPECT_EQ(s[SessionEvent::kServerAcks], 1u);
  EXPECT_EQ(s[SessionEvent::kPings], 1u);
  EXPECT_EQ(s[SessionEvent::kFramesIn], 10u);

  // The client leaves: detach, slot freed, counters.
  stack.transport.client_close(c->id());
  stack.advance_ms(1);
  EXPECT_EQ(stack.router.detaches, 1);
  EXPECT_TRUE(stack.router.live.empty());
  EXPECT_EQ(stack.sessions.sessions(), 0u);
  EXPECT_EQ(stack.tls_layer.connections(), 0u);
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kPeerClosed], 1u);
  EXPECT_EQ(stack.sessions.decode_buffers_lent(), 0u);
  // A FIN without close_notify is counted as truncated.
  EXPECT_EQ(stack.tls_layer.stats().error(tls::TlsError::kTruncated), 1u);
}

// Frames the router sends from inside attach (an offline drain starting at once) follow AuthOk.
TEST(SessionStack, FramesSentDuringAttachFollowAuthOk) {
  Stack stack;
  stack.router.on_attach = [](SessionPort& s) {
    codec::FrameBuilder b;
    EXPECT_TRUE(s.send_frame(b.finish(wire::CreatePing(b.fbb(), 555, 0))));
  };
  auto c = stack.connect();
  c->hello();
  ASSERT_NE(c->next_of(wire::Payload::HelloOk), nullptr);
  c->auth(stack.token());
  const wire::Frame* f = c->next_frame();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_type(), wire::Payload::AuthOk);
  f = c->next_frame();
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->payload_type(), wire::Payload::Ping);
  EXPECT_EQ(f->payload_as_Ping()->nonce(), 555u);
}

// The router closes the new session from inside attach: no AuthOk, detach exactly once.
TEST(SessionStack, CloseFromInsideAttach) {
  Stack stack;
  stack.router.on_attach = [](SessionPort& s) {
    s.close_with_error(wire::ErrorCode::SessionRevoked, "revoked");
  };
  auto c = stack.connect();
  c->hello();
  c->auth(stack.token());
  c->pump();
  EXPECT_EQ(stack.router.attaches, 1);
  EXPECT_EQ(stack.router.detaches, 1);
  expect_error(*c, wire::ErrorCode::SessionRevoked, true);
  EXPECT_FALSE(c->open());
}

// ---- Auth ------------------------------------------------------------------------------------

struct AuthCase {
  const char* name;
  auth::TokenError error;
  wire::AuthErrorCode code;
};

TEST(SessionStack, AuthRefusals) {
  const AuthCase cases[] = {
      {"bad_signature", auth::TokenError::kBadMac, wire::AuthErrorCode::InvalidToken},
      {"expired", auth::TokenError::kExpired, wire::AuthErrorCode::Expired},
      {"unknown_key", auth::TokenError::kUnknownKey, wire::AuthErrorCode::UnknownKey},
      {"revoked", auth::TokenError::kRevoked, wire::AuthErrorCode::Revoked},
      {"malformed", auth::TokenError::kMalformed, wire::AuthErrorCode::InvalidToken},
  };
  for (const AuthCase& ac : cases) {
    SCOPED_TRACE(ac.name);
    Stack stack;
    std::vector<uint8_t> token;
    const std::string name = ac.name;
    if (name == "bad_signature") {
      auth::TokenBytes t = stack.token();
      t.back() ^= 1;
      token.assign(t.begin(), t.end());
    } else if (name == "expired") {
      // Issued two hours ago with a one-hour lifetime (beyond the 30 s skew).
      auth::TokenBytes t = stack.token(1, kStartMs - 2 * 3'600'000);
      token.assign(t.begin(), t.end());
    } else if (name == "unknown_key") {
      auth::KeyRing other = auth::KeyRing::create({}, kStartMs);
      auth::TokenBytes t = auth::issue_token(other, auth::AccountId{1, 2}, 1, kStartMs);
      token.assign(t.begin(), t.end());
    } else if (name == "revoked") {
      (void)stack.verifier.revoke(auth::AccountId{1, 2}, 1, kStartMs + 1, kStartMs);
      auth::TokenBytes t = stack.token();
      token.assign(t.begin(), t.end());
    } else {
      token = {1, 2, 3, 4, 5};
    }
    auto c = stack.connect();
    c->hello();
    ASSERT_NE(c->next_of(wire::Payload::HelloOk), nullptr);
    c->auth(token);
    const wire::Frame* f = c->next_of(wire::Payload::AuthError);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->payload_as_AuthError()->code(), ac.code);
    if (ac.code == wire::AuthErrorCode::UnknownKey) {
      EXPECT_GT(f->payload_as_AuthError()->retry_after_ms(), 0u);
    }
    EXPECT_FALSE(c->open());
    EXPECT_EQ(stack.router.attaches, 0);
    EXPECT_EQ(stack.sessions.stats().auth_error(ac.error), 1u);
    EXPECT_EQ(stack.sessions.stats()[SessionEvent::kAuthFailed], 1u);
    EXPECT_EQ(stack.sessions.sessions(), 0u);
  }
}

// ---- protocol state --------------------------------------------------------------------------

TEST(SessionStack, VersionUnsupported) {
  Stack stack;
  auto c = stack.connect();
  c->hello(2, 9);
  expect_error(*c, wire::ErrorCode::VersionUnsupported, true);
  EXPECT_FALSE(c->open());
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kVersionUnsupported], 1u);
}

TEST(SessionStack, SessionFrameBeforeAuthIsNotAuthenticated) {
  {
    Stack stack;
    auto c = stack.connect();
    c->send(message_frame(1, 10));  // before Hello
    expect_error(*c, wire::ErrorCode::NotAuthenticated, true);
    EXPECT_FALSE(c->open());
  }
  {
    Stack stack;
    auto c = stack.connect();
    c->hello();
    c->send(delivery_ack_frame(1));  // after Hello, before Auth
    expect_error(*c, wire::ErrorCode::NotAuthenticated, true);
    EXPECT_FALSE(c->open());
    EXPECT_EQ(stack.sessions.stats()[SessionEvent::kNotAuthenticated], 1u);
    EXPECT_TRUE(stack.router.delivery_ack_ids.empty());
  }
  {
    // Anything but Hello, Auth and Ping before AuthOk, even a server-to-client frame.
    Stack stack;
    auto c = stack.connect();
    c->hello();
    codec::FrameBuilder b;
    c->send(b.finish(wire::CreatePong(b.fbb(), 1, 2, 3)));
    expect_error(*c, wire::ErrorCode::NotAuthenticated, true);
    EXPECT_FALSE(c->open());
  }
  {
    // Ping is allowed before auth.
    Stack stack;
    auto c = stack.connect();
    c->send(ping_frame(3));
    ASSERT_NE(c->next_of(wire::Payload::Pong), nullptr);
    EXPECT_TRUE(c->open());
  }
}

TEST(SessionStack, UnexpectedFrames) {
  auto run = [](const std::function<void(Stack&, TestClient&)>& script) {
    Stack stack;
    auto c = stack.connect();
    script(stack, *c);
    expect_error(*c, wire::ErrorCode::UnexpectedFrame, true);
    EXPECT_FALSE(c->open());
    EXPECT_EQ(stack.sessions.stats()[SessionEvent::kUnexpectedFrame], 1u);
  };
  run([](Stack& s, TestClient& c) { c.auth(s.token()); });  // Auth before Hello
  run([](Stack&, TestClient& c) {
    c.hello();
    c.hello();
  });
  run([](Stack&, TestClient& c) {
    c.login();
    c.hello();
  });
  run([](Stack& s, TestClient& c) {  // Auth again is a token refresh, for this device only
    c.login(1);
    c.auth(s.token(2));
  });
  run([](Stack&, TestClient& c) {  // a server-to-client frame from the client
    c.login();
    codec::FrameBuilder b;
    const wire::ServerMsgId id(1, 2);
    c.send(b.finish(wire::CreateServerAck(b.fbb(), 1, &id, 0)));
  });
}

TEST(SessionStack, UnknownEnumValueIsInvalidRequestAndSessionStays) {
  Stack stack;
  auto c = stack.connect();
  c->login();
  c->send(receipt_frame(1, static_cast<wire::ReceiptKind>(200)));
  expect_error(*c, wire::ErrorCode::InvalidRequest, false);
  EXPECT_TRUE(c->open());
  EXPECT_EQ(stack.router.receipts, 0);
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kInvalidValue], 1u);
}

// ---- limits at their edges -------------------------------------------------------------------

TEST(SessionStack, BodyLimitAtTheEdge) {
  StackOptions opt;
  opt.session.limits.max_body_bytes = 1000;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  c->send(message_frame(1, 1000));
  ASSERT_NE(c->next_of(wire::Payload::ServerAck), nullptr);
  c->send(message_frame(2, 1001));
  const wire::Frame* f = c->next_of(wire::Payload::Error);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Error()->code(), wire::ErrorCode::BodyTooLarge);
  EXPECT_FALSE(f->payload_as_Error()->fatal());
  ASSERT_TRUE(f->payload_as_Error()->client_msg_id().has_value());
  EXPECT_EQ(*f->payload_as_Error()->client_msg_id(), 2u);
  EXPECT_TRUE(c->open());
  EXPECT_EQ(stack.router.messages, std::vector<uint64_t>({1}));
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kBodyTooLarge], 1u);
}

TEST(SessionStack, UnackedLimitAtTheEdgeAndCompleteFreesASlot) {
  StackOptions opt;
  opt.session.limits.max_unacked_messages = 4;
  Stack stack(opt);
  stack.router.hold_messages = true;
  auto c = stack.connect();
  c->login();
  for (uint64_t i = 1; i <= 4; ++i) c->send(message_frame(i, 10));
  EXPECT_EQ(stack.router.messages.size(), 4u);
  EXPECT_EQ(c->frames_waiting(), 0u);
  c->send(message_frame(5, 10));
  const wire::Frame* f = c->next_of(wire::Payload::Error);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Error()->code(), wire::ErrorCode::TooManyUnacked);
  EXPECT_FALSE(f->payload_as_Error()->fatal());
  EXPECT_EQ(*f->payload_as_Error()->client_msg_id(), 5u);
  EXPECT_EQ(stack.router.messages.size(), 4u);

  // The router completes one with an error (retry later): an Error with the id, slot freed.
  SessionPort* s = stack.router.pending[1].session;
  s->complete_message(2, nullptr, 0, wire::ErrorCode::StoreUnavailable);
  c->pump();
  f = c->next_of(wire::Payload::Error);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Error()->code(), wire::ErrorCode::StoreUnavailable);
  EXPECT_EQ(*f->payload_as_Error()->client_msg_id(), 2u);
  EXPECT_GT(f->payload_as_Error()->retry_after_ms(), 0u);
  // A second completion of the same id is ignored.
  s->complete_message(2, nullptr, 0, wire::ErrorCode::StoreUnavailable);
  c->pump();
  EXPECT_EQ(c->frames_waiting(), 0u);
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kCompleteIgnored], 1u);

  c->send(message_frame(6, 10));
  EXPECT_EQ(stack.router.messages.size(), 5u);
  EXPECT_EQ(c->frames_waiting(), 0u);
  const wire::ServerMsgId id(9, 9);
  s->complete_message(6, &id, 5, wire::ErrorCode::Unspecified);
  c->pump();
  f = c->next_of(wire::Payload::ServerAck);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_ServerAck()->client_msg_id(), 6u);
  EXPECT_EQ(stack.sessions.session(c->id())->unacked(), 3u);
}

TEST(SessionStack, IdsPerAckAndSubscriptionsAtTheEdge) {
  StackOptions opt;
  opt.session.limits.max_ids_per_ack = 8;
  opt.session.limits.max_presence_subscriptions = 5;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  c->send(delivery_ack_frame(8));
  c->send(receipt_frame(8));
  c->send(subscribe_frame(5));
  EXPECT_EQ(c->frames_waiting(), 0u);
  c->send(delivery_ack_frame(9));
  expect_error(*c, wire::ErrorCode::InvalidRequest, false);
  c->send(receipt_frame(9));
  expect_error(*c, wire::ErrorCode::InvalidRequest, false);
  c->send(subscribe_frame(6));
  expect_error(*c, wire::ErrorCode::InvalidRequest, false);
  EXPECT_TRUE(c->open());
  EXPECT_EQ(stack.router.delivery_ack_ids, std::vector<size_t>({8}));
  EXPECT_EQ(stack.router.receipts, 1);
  EXPECT_EQ(stack.router.presence_subscribes, 1);
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kTooManyIds], 2u);
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kTooManySubscriptions], 1u);
}

TEST(SessionStack, FrameSizeAtTheEdge) {
  // The limit is set to the exact size of a Message frame (the FlatBuffer, without the prefix).
  const std::vector<uint8_t> exact = message_frame(1, 1500);
  const uint32_t frame_bytes = static_cast<uint32_t>(exact.size() - 4);
  StackOptions opt;
  opt.session.limits.max_frame_bytes = frame_bytes;
  opt.session.limits.max_body_bytes = 2048;
  {
    Stack stack(opt);
    auto c = stack.connect();
    c->login();
    c->send(exact);
    ASSERT_NE(c->next_of(wire::Payload::ServerAck), nullptr);
    EXPECT_TRUE(c->open());
  }
  {
    // A frame one byte longer is refused from its length prefix alone.
    Stack stack(opt);
    auto c = stack.connect();
    c->login();
    const uint32_t too_long = frame_bytes + 1;
    uint8_t prefix[4];
    std::memcpy(prefix, &too_long, 4);  // little-endian on every machine Herald runs on
    c->send(prefix);
    expect_error(*c, wire::ErrorCode::FrameTooLarge, true);
    EXPECT_FALSE(c->open());
    EXPECT_EQ(stack.sessions.stats().frame_error(codec::FrameError::kTooLarge), 1u);
    EXPECT_EQ(stack.router.detaches, 1);
  }
}

// ---- bad input -------------------------------------------------------------------------------

TEST(SessionStack, GarbageAndInvalidFrames) {
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    wire::ErrorCode code;
    codec::FrameError error;
  };
  std::vector<uint8_t> wrong_root = ping_frame(1);
  std::memcpy(wrong_root.data() + 8, "XXXX", 4);  // the file identifier after the root offset
  std::vector<uint8_t> bad_offsets = ping_frame(1);
  bad_offsets[4] = 0xff;  // root offset far outside the buffer
  std::vector<uint8_t> unknown_type;
  {
    // A payload type newer than this build (a peer ahead of the negotiated version).
    codec::FrameBuilder b;
    auto span =
        b.finish_union(static_cast<wire::Payload>(200), wire::CreatePing(b.fbb(), 1, 2).Union());
    unknown_type.assign(span.begin(), span.end());
  }
  const Case cases[] = {
      {"unknown_type", unknown_type, wire::ErrorCode::UnsupportedFrame,
       codec::FrameError::kUnknownUnionType},
      {"zero_length",
       {0, 0, 0, 0},
       wire::ErrorCode::MalformedFrame,
       codec::FrameError::kEmptyFrame},
      {"too_small",
       {4, 0, 0, 0, 1, 2, 3, 4},
       wire::ErrorCode::MalformedFrame,
       codec::FrameError::kTooSmall},
      {"wrong_root", wrong_root, wire::ErrorCode::MalformedFrame, codec::FrameError::kWrongRoot},
      {"bad_offsets", bad_offsets, wire::ErrorCode::MalformedFrame,
       codec::FrameError::kBadFlatbuffer},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    Stack stack;
    auto c = stack.connect();
    c->login();
    c->send(tc.bytes);
    expect_error(*c, tc.code, true);
    EXPECT_FALSE(c->open());
    EXPECT_EQ(stack.sessions.stats().frame_error(tc.error), 1u);
    EXPECT_EQ(stack.router.detaches, 1);
  }
}

TEST(SessionStack, TruncatedFrameThenPeerLeaves) {
  Stack stack;
  auto c = stack.connect();
  c->login();
  std::vector<uint8_t> m = message_frame(1, 500);
  m.resize(m.size() / 2);
  c->send(m);
  EXPECT_TRUE(c->open());
  EXPECT_EQ(stack.sessions.decode_buffers_lent(), 1u);  // the partial frame holds a buffer
  stack.transport.client_close(c->id(), CloseReason::kPeerReset);
  stack.advance_ms(1);
  EXPECT_EQ(stack.sessions.sessions(), 0u);
  EXPECT_EQ(stack.sessions.decode_buffers_lent(), 0u);
  EXPECT_TRUE(stack.router.messages.empty());
  EXPECT_EQ(stack.router.detaches, 1);
}

TEST(SessionStack, DecodeBuffersExhaustedIsOverloaded) {
  StackOptions opt;
  opt.session.max_decode_buffers = 1;
  Stack stack(opt);
  auto a = stack.connect();
  auto b = stack.connect();
  a->login();
  b->login();
  std::vector<uint8_t> m = message_frame(1, 100);
  m.resize(20);
  a->send(m);  // a holds the only buffer
  EXPECT_TRUE(a->open());
  b->send(m);
  expect_error(*b, wire::ErrorCode::Overloaded, true);
  EXPECT_FALSE(b->open());
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kDecodeBuffersExhausted], 1u);
}

TEST(SessionStack, TlsGarbageAndPlainHttpAreCountedAndClosed) {
  Stack stack;
  const std::string http = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  std::vector<uint8_t> garbage(300);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(i * 37 + 11);
  garbage[0] = 0x16;  // a handshake record header with nonsense inside
  garbage[1] = 0x03;
  garbage[2] = 0x01;
  const std::vector<std::vector<uint8_t>> inputs = {std::vector<uint8_t>(http.begin(), http.end()),
                                                    garbage};
  uint64_t closed = 0;
  for (const auto& input : inputs) {
    const ConnectionId id = stack.transport.connect();
    stack.transport.client_send(id, input);
    (void)stack.transport.run();
    EXPECT_FALSE(stack.transport.is_open(id));
    EXPECT_EQ(stack.sessions.stats()[SessionEvent::kClosed], ++closed);
  }
  const TlsStats& t = stack.tls_layer.stats();
  EXPECT_EQ(t[TlsEvent::kHandshakeFailed], 2u);
  EXPECT_EQ(t.error(tls::TlsError::kProtocol), 2u);
  EXPECT_EQ(stack.router.attaches, 0);
  EXPECT_EQ(stack.tls_layer.connections(), 0u);
}

TEST(SessionStack, GarbageAfterTlsHandshakeIsDecryptOrProtocolError) {
  Stack stack;
  auto c = stack.connect();
  c->login();
  // An application-data record whose ciphertext is nonsense.
  std::vector<uint8_t> record = {0x17, 0x03, 0x03, 0x00, 0x20};
  record.resize(5 + 0x20, 0xab);
  c->send_raw(record);
  EXPECT_FALSE(c->open());
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kFailedAfterHandshake], 1u);
  EXPECT_EQ(stack.tls_layer.stats().error(tls::TlsError::kDecrypt), 1u);
  // Rejected by the compact record layer (the SSL was freed after the handshake).
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kCompactSwitches], 1u);
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kCompactBadRecordMac], 1u);
  EXPECT_EQ(stack.router.detaches, 1);
}

TEST(SessionStack, Tls12OnlyWhenConfigured) {
  {
    Stack stack;  // TLS 1.3 only by default
    auto c =
        std::make_unique<TestClient>(stack, stack.client_context(nullptr, tls::TlsVersion::kTls12));
    c->pump();
    EXPECT_FALSE(c->tls().handshake_done());
    EXPECT_FALSE(c->open());
    EXPECT_EQ(stack.tls_layer.stats().error(tls::TlsError::kHandshake), 1u);
  }
  {
    StackOptions opt;
    opt.tls.min_version = tls::TlsVersion::kTls12;
    Stack stack(opt);
    auto c =
        std::make_unique<TestClient>(stack, stack.client_context(nullptr, tls::TlsVersion::kTls12));
    c->pump();
    ASSERT_TRUE(c->tls().handshake_done());
    EXPECT_EQ(c->tls().protocol_version(), TLS1_2_VERSION);
    c->login();
    EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kTls12], 1u);
  }
}

TEST(SessionStack, Ed25519Certificate) {
  StackOptions opt;
  opt.key_type = tls::KeyType::kEd25519;
  Stack stack(opt);
  auto c = stack.connect();
  ASSERT_TRUE(c->tls().handshake_done());
  c->login();
}

// ---- timeouts --------------------------------------------------------------------------------

TEST(SessionStack, HandshakeTimeoutAtTheEdge) {
  StackOptions opt;
  opt.session.limits.handshake_timeout_ms = 500;
  Stack stack(opt);
  auto c = stack.connect();
  c->hello();
  stack.advance_ms(499);
  c->pump();
  EXPECT_TRUE(c->open());
  stack.advance_ms(1);
  c->pump();
  expect_error(*c, wire::ErrorCode::HandshakeTimeout, true);
  EXPECT_FALSE(c->open());
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kHandshakeTimeout], 1u);
}

TEST(SessionStack, HandshakeTimeoutBeforeTlsFinishes) {
  StackOptions opt;
  opt.session.limits.handshake_timeout_ms = 500;
  Stack stack(opt);
  // Connected, never says a word.
  const ConnectionId id = stack.transport.connect();
  stack.advance_ms(500);
  EXPECT_FALSE(stack.transport.is_open(id));
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kHandshakeTimeout], 1u);
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kHandshakeAbandoned], 1u);
  EXPECT_EQ(stack.sessions.sessions(), 0u);
}

TEST(SessionStack, AuthenticatedSessionsHaveNoHandshakeTimeout) {
  StackOptions opt;
  opt.session.limits.handshake_timeout_ms = 500;
  opt.session.limits.idle_timeout_ms = 10'000;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  stack.advance_ms(5'000);
  c->pump();
  EXPECT_TRUE(c->open());
  EXPECT_EQ(c->frames_waiting(), 0u);
}

TEST(SessionStack, IdleTimeoutAtTheEdgeAndPingKeepsAlive) {
  StackOptions opt;
  opt.session.limits.idle_timeout_ms = 10'000;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  stack.advance_ms(6'000);
  c->send(ping_frame(1));  // resets the idle clock
  ASSERT_NE(c->next_of(wire::Payload::Pong), nullptr);
  stack.advance_ms(9'999);
  c->pump();
  EXPECT_TRUE(c->open());
  stack.advance_ms(1);
  c->pump();
  expect_error(*c, wire::ErrorCode::IdleTimeout, true);
  EXPECT_FALSE(c->open());
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kIdleTimeout], 1u);
  EXPECT_EQ(stack.router.detaches, 1);
}

// tls.chat_park_idle_ms: a session quiet for park_idle_ms has its TLS record keys dropped; any
// traffic either way brings them back (the session works byte-exact) and re-arms the park.
TEST(SessionStack, QuietSessionsParkAndWakeOnTrafficEitherWay) {
  StackOptions opt;
  opt.session.limits.idle_timeout_ms = 600'000;
  opt.session.park_idle_ms = 1'000;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  auto parked = [&] { return stack.tls_layer.connection(c->id())->parked(); };
  auto parks = [&] { return stack.tls_layer.stats()[TlsEvent::kParked]; };
  ASSERT_TRUE(stack.tls_layer.connection(c->id())->compact());

  stack.advance_ms(999);
  EXPECT_FALSE(parked());
  stack.advance_ms(1);  // park_idle_ms after AuthOk
  EXPECT_TRUE(parked());
  EXPECT_EQ(parks(), 1u);

  // A receive wakes it: the ping is read and the pong sent under keys made again.
  c->send(ping_frame(7));
  const wire::Frame* f = c->next_of(wire::Payload::Pong);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Pong()->nonce(), 7u);
  EXPECT_FALSE(parked());
  stack.advance_ms(999);
  EXPECT_FALSE(parked());
  stack.advance_ms(1);
  EXPECT_TRUE(parked());
  EXPECT_EQ(parks(), 2u);

  // A send wakes it too (a Deliver to an idle device), and it parks again after the quiet.
  codec::FrameBuilder b;
  EXPECT_TRUE(stack.router.last->send_frame(b.finish(wire::CreatePing(b.fbb(), 8, 0))));
  c->pump();
  f = c->next_of(wire::Payload::Ping);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_Ping()->nonce(), 8u);
  stack.advance_ms(500);
  // Another send while awake: seen at the next check (no clock read per frame), which moves
  // the park by a whole period from there.
  EXPECT_TRUE(stack.router.last->send_frame(b.finish(wire::CreatePing(b.fbb(), 9, 0))));
  c->pump();
  stack.advance_ms(500);  // the check: it sent, so not quiet
  EXPECT_FALSE(parked());
  stack.advance_ms(999);
  EXPECT_FALSE(parked());
  stack.advance_ms(1);
  EXPECT_TRUE(parked());
  EXPECT_EQ(parks(), 3u);

  // Parked for long: still there, and still answering.
  stack.advance_ms(100'000);
  EXPECT_TRUE(c->open());
  EXPECT_EQ(parks(), 3u);  // parked once per quiet period, not once per timer
  c->send(ping_frame(10));
  ASSERT_NE(c->next_of(wire::Payload::Pong), nullptr);
}

TEST(SessionStack, ParkingOffNeverParks) {
  StackOptions opt;
  opt.session.limits.idle_timeout_ms = 600'000;
  opt.session.park_idle_ms = 0;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  stack.advance_ms(300'000);
  EXPECT_TRUE(c->open());
  EXPECT_FALSE(stack.tls_layer.connection(c->id())->parked());
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kParked], 0u);
}

// A session outlives its token only if the client sends a newer one (Auth on the live
// session); otherwise it ends with SessionExpired at the token's expiry, to the millisecond.
TEST(SessionStack, TokenExpiryEndsTheSessionAtTheEdge) {
  StackOptions opt;
  opt.session.limits.idle_timeout_ms = 600'000;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  const uint64_t ttl_ms = auth::KeyRingOptions{}.token_ttl_ms;
  for (uint64_t waited = 0; waited + 300'000 < ttl_ms; waited += 300'000) {
    stack.advance_ms(300'000);
    c->send(ping_frame(waited));  // keeps it from idling out
    ASSERT_NE(c->next_of(wire::Payload::Pong), nullptr);
  }
  stack.advance_ms(ttl_ms % 300'000 == 0 ? 299'999 : ttl_ms % 300'000 - 1);
  c->pump();
  EXPECT_TRUE(c->open());
  stack.advance_ms(1);
  c->pump();
  expect_error(*c, wire::ErrorCode::SessionExpired, true);
  EXPECT_FALSE(c->open());
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kTokenExpired], 1u);
  EXPECT_EQ(stack.router.detaches, 1);
}

TEST(SessionStack, AuthOnALiveSessionExtendsIt) {
  StackOptions opt;
  opt.session.limits.idle_timeout_ms = 10'000'000;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  const uint64_t ttl_ms = auth::KeyRingOptions{}.token_ttl_ms;
  stack.advance_ms(ttl_ms - 600'000);
  c->auth(stack.token(1, stack.now_ms()));
  const wire::Frame* ok = c->next_of(wire::Payload::AuthOk);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->payload_as_AuthOk()->token_expires_ms(), stack.now_ms() + ttl_ms);
  EXPECT_EQ(stack.router.attaches, 1);  // no second attach, no second drain
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kTokenRefreshed], 1u);
  // Past the first token's expiry: still up.
  stack.advance_ms(1'200'000);
  c->pump();
  EXPECT_TRUE(c->open());
  // At the new one's: closed.
  stack.advance_ms(ttl_ms - 600'000);
  c->pump();
  expect_error(*c, wire::ErrorCode::SessionExpired, true);
  EXPECT_FALSE(c->open());
}

TEST(SessionStack, AuthOnALiveSessionWithAnotherDevicesOrABadTokenCloses) {
  Stack stack;
  auto c = stack.connect();
  c->login(1);
  c->auth(stack.token(2, stack.now_ms()));
  expect_error(*c, wire::ErrorCode::UnexpectedFrame, true);
  EXPECT_FALSE(c->open());

  auto d = stack.connect();
  d->login(1);
  std::vector<uint8_t> bad(73, 0x5a);
  d->auth(bad);
  ASSERT_NE(d->next_of(wire::Payload::AuthError), nullptr);
  EXPECT_FALSE(d->open());
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kAuthFailed], 1u);
}

// ---- output ----------------------------------------------------------------------------------

TEST(SessionStack, SlowConsumerIsCutOff) {
  StackOptions opt;
  opt.session.limits.send_queue_bytes_per_session = 8192;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  SessionPort* s = stack.router.last;
  ASSERT_NE(s, nullptr);
  codec::FrameBuilder b(4096);
  std::vector<uint8_t> body(3000, 1);
  auto bv = b.fbb().CreateVector(body);
  const wire::ServerMsgId id(1, 1);
  const wire::DeviceAddress sender(wire::AccountId(1, 1), 1);
  const auto frame =
      b.finish(wire::CreateDeliver(b.fbb(), &id, &sender, wire::Recipient::NONE, 0, bv));
  // The client reads nothing: the third 3 KB frame does not fit in 8 KiB of queue.
  EXPECT_TRUE(s->send_frame(frame));
  EXPECT_TRUE(s->send_frame(frame));
  EXPECT_GT(s->queued_bytes(), 6000u);
  EXPECT_FALSE(s->send_frame(frame));
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kSlowConsumer], 1u);
  EXPECT_EQ(stack.router.detaches, 1);
  (void)stack.transport.run();
  EXPECT_FALSE(c->open());
  EXPECT_EQ(stack.sessions.sessions(), 0u);
}

// The limit bounds what waits, not the size of one frame: a frame over the limit goes out when
// nothing is queued, and the next one behind it is what cuts the reader off.
TEST(SessionStack, AFrameOverTheSendQueueLimitGoesIntoAnEmptyQueue) {
  StackOptions opt;
  opt.session.limits.send_queue_bytes_per_session = 4096;
  opt.transport_queue_bytes = 64 * 1024;
  Stack stack(opt);
  auto c = stack.connect();
  c->login();
  SessionPort* s = stack.router.last;
  ASSERT_NE(s, nullptr);
  codec::FrameBuilder b(8192);
  std::vector<uint8_t> body(6000, 1);
  auto bv = b.fbb().CreateVector(body);
  const wire::ServerMsgId id(1, 1);
  const wire::DeviceAddress sender(wire::AccountId(1, 1), 1);
  const std::vector<uint8_t> frame = [&] {
    auto f = b.finish(wire::CreateDeliver(b.fbb(), &id, &sender, wire::Recipient::NONE, 0, bv));
    return std::vector<uint8_t>(f.begin(), f.end());
  }();
  ASSERT_EQ(s->queued_bytes(), 0u);
  EXPECT_TRUE(s->send_frame(frame));
  c->pump();  // the reader keeps up
  ASSERT_NE(c->next_of(wire::Payload::Deliver), nullptr);
  ASSERT_EQ(s->queued_bytes(), 0u);
  EXPECT_TRUE(s->send_frame(frame));
  EXPECT_GT(s->queued_bytes(), 0u);
  EXPECT_FALSE(s->send_frame(frame));  // this one waits behind a full queue: cut off
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kSlowConsumer], 1u);
}

TEST(SessionStack, WritableReachesTheRouter) {
  Stack stack;
  stack.transport.limits.send_low_water_bytes = 1024;
  auto c = stack.connect();
  c->login();
  codec::FrameBuilder b(4096);
  auto bv = b.fbb().CreateVector(std::vector<uint8_t>(3000, 1));
  const wire::ServerMsgId id(1, 1);
  const wire::DeviceAddress sender(wire::AccountId(1, 1), 1);
  ASSERT_TRUE(stack.router.last->send_frame(
      b.finish(wire::CreateDeliver(b.fbb(), &id, &sender, wire::Recipient::NONE, 0, bv))));
  EXPECT_EQ(stack.router.writables, 0);
  c->pump();  // the client reads: the queue falls below the low-water mark
  EXPECT_EQ(stack.router.writables, 1);
  ASSERT_NE(c->next_of(wire::Payload::Deliver), nullptr);
}

TEST(SessionStack, CloseWithErrorSessionReplaced) {
  Stack stack;
  auto old_client = stack.connect();
  old_client->login(3);
  SessionPort* old_session = stack.router.last;
  auto new_client = stack.connect();
  // The router's rule (one live session per device) closes the older one during attach.
  stack.router.on_attach = [&](SessionPort&) {
    old_session->close_with_error(wire::ErrorCode::SessionReplaced, "a newer login");
  };
  new_client->login(3);
  old_client->pump();
  expect_error(*old_client, wire::ErrorCode::SessionReplaced, true);
  EXPECT_FALSE(old_client->open());
  EXPECT_TRUE(new_client->open());
  EXPECT_EQ(stack.router.detaches, 1);
  EXPECT_EQ(stack.router.live.size(), 1u);
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kSessionReplaced], 1u);
  EXPECT_EQ(stack.sessions.stats()[SessionEvent::kClosedByRouter], 1u);
}

TEST(SessionStack, RejectsWhenEverySlotIsTaken) {
  StackOptions opt;
  opt.session.max_sessions = 2;
  Stack stack(opt);
  auto a = stack.connect();
  auto b = stack.connect();
  auto c = stack.connect();
  EXPECT_TRUE(a->open());
  EXPECT_TRUE(b->open());
  EXPECT_FALSE(c->open());
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kRejectedFull], 1u);
  a->login();
}

// ---- certificates and resumption -------------------------------------------------------------

TEST(SessionStack, CertificateReloadKeepsOldConnectionsAndServesTheNewOne) {
  Stack stack;
  auto old_conn = stack.connect();
  old_conn->login();
  const auto new_cert = testing::load_cert(testing::make_cert(tls::KeyType::kEd25519));
  stack.tls_layer.reload_certificate(new_cert);
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kCertificateReloads], 1u);

  // The established connection keeps working.
  old_conn->send(ping_frame(5));
  ASSERT_NE(old_conn->next_of(wire::Payload::Pong), nullptr);
  // A new one sees the new certificate (a client pinning the old one fails).
  auto fresh = std::make_unique<TestClient>(stack, stack.client_context(new_cert));
  fresh->pump();
  ASSERT_TRUE(fresh->tls().handshake_done());
  EXPECT_EQ(fresh->tls().peer_certificate().sha256, new_cert->leaf_sha256());
  fresh->login(2);
  auto stale = std::make_unique<TestClient>(stack, stack.client_context(stack.certificate));
  stale->pump();
  EXPECT_FALSE(stale->tls().handshake_done());
  old_conn->send(ping_frame(6));
  ASSERT_NE(old_conn->next_of(wire::Payload::Pong), nullptr);
}

TEST(SessionStack, ResumptionWithATicket) {
  Stack stack;
  auto cctx = stack.client_context();
  auto first = std::make_unique<TestClient>(stack, cctx);
  first->pump();
  first->login();  // TLS 1.3 tickets arrive after the handshake, with the first reads
  tls::ClientSession ticket = first->tls().session();
  ASSERT_NE(ticket, nullptr);
  EXPECT_FALSE(first->tls().resumed());
  auto second = std::make_unique<TestClient>(stack, cctx, ticket);
  second->pump();
  ASSERT_TRUE(second->tls().handshake_done());
  EXPECT_TRUE(second->tls().resumed());
  second->login(2);
  EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kResumed], 1u);

  // After two rotations the ticket's key is gone: a full handshake, still a connection.
  stack.context->rotate_ticket_keys();
  stack.context->rotate_ticket_keys();
  auto third = std::make_unique<TestClient>(stack, cctx, ticket);
  third->pump();
  ASSERT_TRUE(third->tls().handshake_done());
  EXPECT_FALSE(third->tls().resumed());
}

TEST(SessionStack, HotLimitsApplyToNewSessions) {
  Stack stack;
  SessionLimits limits;
  limits.max_unacked_messages = 1;
  limits.max_frame_bytes = 4096;
  stack.sessions.set_limits(limits);
  auto c = stack.connect();
  c->hello();
  const wire::Frame* f = c->next_of(wire::Payload::HelloOk);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->payload_as_HelloOk()->limits()->max_unacked_messages(), 1u);
  EXPECT_EQ(f->payload_as_HelloOk()->limits()->max_frame_bytes(), 4096u);
}

// The counter names the worker mirrors: all distinct, none empty or "unknown", and the values
// are the stats' own.
TEST(SessionStack, CounterNamesAreDistinctAndComplete) {
  Stack stack;
  auto c = stack.connect();
  c->login();
  std::set<std::string> names;
  size_t n = 0;
  uint64_t auth_ok = 0;
  for_each_counter(stack.sessions.stats(),
                   [&](std::string_view section, std::string_view name, uint64_t value) {
                     EXPECT_FALSE(name.empty());
                     EXPECT_NE(name, "unknown");
                     names.insert(std::string(section) + "." + std::string(name));
                     ++n;
                     if (section.empty() && name == "auth_ok") auth_ok = value;
                   });
  EXPECT_EQ(names.size(), n);
  EXPECT_EQ(n, kSessionEventCount + codec::kFrameErrorCount - 1 + kTokenErrorCount - 1);
  EXPECT_EQ(auth_ok, 1u);
  names.clear();
  n = 0;
  for_each_counter(stack.tls_layer.stats(),
                   [&](std::string_view section, std::string_view name, uint64_t) {
                     EXPECT_NE(name, "unknown");
                     names.insert(std::string(section) + "." + std::string(name));
                     ++n;
                   });
  EXPECT_EQ(names.size(), n);
  EXPECT_EQ(n, kTlsEventCount + tls::kTlsErrorCount - 1);
}

}  // namespace
}  // namespace herald::dataplane

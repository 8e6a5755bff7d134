// libFuzzer target for the session layer: arbitrary bytes arrive as decrypted plaintext on one
// connection, after a scripted Hello + Auth (valid token) or not, cut into pieces and spread
// over time by the first two bytes. The session must answer with well-formed frames, close at
// most once, never call the router after detach, and never crash.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dataplane/session/router.h"
#include "dataplane/session/session_layer.h"
#include "dataplane/tls/plaintext.h"
#include "platform/auth/key_ring.h"
#include "platform/auth/session_token.h"
#include "platform/auth/token_verifier.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"
#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_decoder.h"

namespace {

using namespace herald;             // NOLINT: a fuzz target, names from everywhere
using namespace herald::dataplane;  // NOLINT

constexpr uint64_t kStartNs = uint64_t{1'767'225'600'000} * 1'000'000;
constexpr uint64_t kStartMs = kStartNs / 1'000'000;
constexpr ConnectionId kId = (uint64_t{1} << 32) | 1;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Takes what the session sends and checks it is a stream of valid frames.
class Channel final : public PlaintextChannel {
 public:
  bool send(ConnectionId id, std::span<const uint8_t> bytes) override {
    check(id == kId && !closed);
    const size_t taken = decoder.feed(bytes);
    check(taken == bytes.size());
    for (codec::DecodeResult r = decoder.next_frame(); r.status != codec::DecodeStatus::kNeedMore;
         r = decoder.next_frame()) {
      check(r.status == codec::DecodeStatus::kFrame);
    }
    return true;
  }
  void close(ConnectionId id, CloseMode) override {
    check(id == kId);
    closed = true;
  }
  uint32_t queued_bytes(ConnectionId) const override { return 0; }
  void set_reading(ConnectionId, bool) override {}

  bool closed = false;
  codec::OwnedFrameDecoder decoder{codec::DecoderLimits{1 << 16, 64, 1 << 16}, 1 << 18};
};

class FuzzRouter final : public Router {
 public:
  uint32_t attach(SessionPort&) override {
    ++attached;
    return 2;
  }
  void detach(SessionPort&) override {
    check(attached == 1);
    --attached;
  }
  void on_message(SessionPort& from, const wire::Message& m) override {
    check(attached == 1);
    // Alternate a ServerAck, an Error, and (every third) a close from the router.
    const uint64_t n = ++messages;
    if (n % 3 == 0) {
      from.complete_message(m.client_msg_id(), nullptr, 0, wire::ErrorCode::StoreUnavailable);
    } else {
      const wire::ServerMsgId id(kStartMs << 16 | 1, n);
      from.complete_message(m.client_msg_id(), &id, kStartMs, wire::ErrorCode::Unspecified);
    }
    if (n % 17 == 0) from.close_with_error(wire::ErrorCode::SessionReplaced, "replaced");
  }
  void on_delivery_ack(SessionPort&, const wire::DeliveryAck&) override { check(attached == 1); }
  void on_receipt(SessionPort&, const wire::Receipt&) override { check(attached == 1); }
  void on_presence(SessionPort&, const wire::Presence&) override { check(attached == 1); }
  void on_presence_subscribe(SessionPort&, const wire::PresenceSubscribe&) override {
    check(attached == 1);
  }
  void on_typing(SessionPort&, const wire::Typing&) override { check(attached == 1); }
  void on_group_op(SessionPort& from, const wire::GroupOp& op) override {
    check(attached == 1);
    codec::FrameBuilder b;
    (void)from.send_frame(b.finish(wire::CreateGroupOpResult(b.fbb(), op.request_id())));
  }
  void on_writable(SessionPort&) override {}

  int attached = 0;
  uint64_t messages = 0;
};

struct Shared {
  Shared() : ring(auth::KeyRing::create({}, kStartMs)) {
    token = auth::issue_token(ring, auth::AccountId{1, 2}, 3, kStartMs);
    codec::FrameBuilder b;
    auto hello = b.finish(wire::CreateHello(b.fbb(), 1, 1));
    prefix.assign(hello.begin(), hello.end());
    b.clear();
    auto t = b.fbb().CreateVector(token.data(), token.size());
    auto auth = b.finish(wire::CreateAuth(b.fbb(), t));
    prefix.insert(prefix.end(), auth.begin(), auth.end());
  }
  auth::KeyRing ring;
  auth::TokenBytes token;
  std::vector<uint8_t> prefix;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Shared shared;
  if (size < 2) return 0;
  const bool scripted = (data[0] & 1) != 0;
  const size_t piece = size_t{data[1]} % 64 + 1;
  std::span<const uint8_t> rest(data + 2, size - 2);

  clock::FakeClock fake(kStartNs);
  const clock::Clock clk = clock::Clock::fake(&fake);
  timer::TimerWheel wheel(timer::TimerWheelConfig{.capacity = 4, .start_ns = kStartNs});
  auth::TokenVerifierOptions verifier_options;
  verifier_options.revocation_capacity = 64;  // the default's 64 Ki slots per input is slow
  auth::TokenVerifier verifier(verifier_options);
  if ((data[0] & 2) != 0) {
    (void)verifier.revoke(auth::AccountId{1, 2}, 3, kStartMs + 1, kStartMs);  // refused login
  }
  for (const auth::SessionKey& key : shared.ring.keys()) (void)verifier.install_key(key, kStartMs);
  Channel channel;
  FuzzRouter router;
  SessionLayerOptions options;
  options.max_sessions = 1;
  options.max_decode_buffers = 1;
  options.limits.max_frame_bytes = 4096;
  options.limits.max_body_bytes = 1024;
  options.limits.max_unacked_messages = 4;
  options.limits.max_ids_per_ack = 8;
  options.limits.max_presence_subscriptions = 4;
  options.limits.handshake_timeout_ms = 2000;
  options.limits.idle_timeout_ms = 5000;
  {
    SessionLayer sessions(channel, router, verifier, wheel, clk, options);
    sessions.on_open(kId, PeerAddress{});
    if (scripted) sessions.on_plaintext(kId, shared.prefix);
    while (!rest.empty() && !channel.closed) {
      const size_t n = rest.size() < piece ? rest.size() : piece;
      sessions.on_plaintext(kId, rest.first(n));
      rest = rest.subspan(n);
      // Time passes between pieces, so timeouts fire in the middle of conversations.
      fake.advance_ns(static_cast<uint64_t>(data[1] & 0x0f) * 250'000'000);
      (void)wheel.advance(fake.now_ns());
    }
    sessions.on_closed(kId, CloseReason::kPeerClosed);
    check(router.attached == 0);
    check(sessions.sessions() == 0);
    check(sessions.decode_buffers_lent() == 0);
  }
  return 0;
}

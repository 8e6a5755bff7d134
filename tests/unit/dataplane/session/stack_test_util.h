// The whole stack above the transport for tests: a FakeTransport, the TlsLayer, the
// SessionLayer and a recording fake Router, driven by a manual clock; clients speak real TLS
// (platform/tls client connections) and real frames (schemas/codec).
#pragma once

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "dataplane/session/router.h"
#include "dataplane/session/session_layer.h"
#include "dataplane/tls/tls_layer.h"
#include "platform/auth/key_ring.h"
#include "platform/auth/session_token.h"
#include "platform/auth/token_verifier.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"
#include "platform/tls/certificate.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"
#include "schemas/codec/frame_builder.h"
#include "tests/unit/dataplane/session/fake_transport.h"

namespace herald::dataplane::testing {

// 2026-01-01T00:00:00Z: the fake monotonic clock starts at a unix time, so unix_offset_ms is 0.
inline constexpr uint64_t kStartNs = uint64_t{1'767'225'600'000} * 1'000'000;
inline constexpr uint64_t kStartMs = kStartNs / 1'000'000;

inline tls::PemCertificate make_cert(tls::KeyType type = tls::KeyType::kEcdsaP256,
                                     const std::string& cn = "localhost") {
  tls::CertificateRequest req;
  req.key_type = type;
  req.common_name = cn;
  req.dns_names = {"localhost"};
  absl::StatusOr<tls::PemCertificate> pem = tls::generate_certificate(req);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return *pem;
}

inline std::shared_ptr<const tls::CertifiedKey> load_cert(const tls::PemCertificate& pem) {
  auto key = tls::certified_key_from_pem(pem.cert_pem, pem.key_pem);
  EXPECT_TRUE(key.ok()) << key.status();
  return *key;
}

// Records every call; answers Messages at once with a ServerAck unless told to hold them.
class RecordingRouter final : public Router {
 public:
  struct Pending {
    SessionPort* session;
    uint64_t client_msg_id;
  };

  uint32_t attach(SessionPort& session) override {
    ++attaches;
    live.insert(&session);
    last = &session;
    if (on_attach) on_attach(session);
    return queued_messages;
  }
  void detach(SessionPort& session) override {
    ++detaches;
    EXPECT_EQ(live.erase(&session), 1u) << "detach of a session not attached";
  }
  void on_message(SessionPort& from, const wire::Message& message) override {
    messages.push_back(message.client_msg_id());
    bodies.push_back(message.body()->size());
    if (hold_messages) {
      pending.push_back({&from, message.client_msg_id()});
      return;
    }
    const wire::ServerMsgId id(kStartMs << 16 | 1, ++sequence);
    from.complete_message(message.client_msg_id(), &id, kStartMs, wire::ErrorCode::Unspecified);
  }
  void on_delivery_ack(SessionPort&, const wire::DeliveryAck& ack) override {
    delivery_ack_ids.push_back(ack.server_msg_ids()->size());
  }
  void on_receipt(SessionPort&, const wire::Receipt&) override { ++receipts; }
  void on_presence(SessionPort&, const wire::Presence&) override { ++presences; }
  void on_presence_subscribe(SessionPort&, const wire::PresenceSubscribe&) override {
    ++presence_subscribes;
  }
  void on_typing(SessionPort&, const wire::Typing&) override { ++typings; }
  void on_group_op(SessionPort&, const wire::GroupOp&) override { ++group_ops; }
  void on_writable(SessionPort&) override { ++writables; }

  uint32_t queued_messages = 0;
  bool hold_messages = false;
  std::function<void(SessionPort&)> on_attach;
  int attaches = 0;
  int detaches = 0;
  std::set<SessionPort*> live;
  SessionPort* last = nullptr;
  std::vector<uint64_t> messages;
  std::vector<size_t> bodies;
  std::vector<Pending> pending;
  std::vector<size_t> delivery_ack_ids;
  int receipts = 0;
  int presences = 0;
  int presence_subscribes = 0;
  int typings = 0;
  int group_ops = 0;
  int writables = 0;
  uint64_t sequence = 0;
};

struct StackOptions {
  StackOptions() { tls.alpn_protocols = {"herald/1"}; }
  SessionLayerOptions session;
  tls::ServerOptions tls;
  tls::KeyType key_type = tls::KeyType::kEcdsaP256;
  uint32_t transport_queue_bytes = 1 << 20;
};

class Stack;

// One client: a real TLS client connection over the fake transport, and the frames it got.
class TestClient {
 public:
  TestClient(Stack& stack, std::shared_ptr<tls::ClientContext> context,
             tls::ClientSession resume = nullptr);

  // Moves bytes both ways (and delivers the transport's pending events) until nothing moves.
  void pump();
  // Writes one frame (or any plaintext) and pumps.
  void send(std::span<const uint8_t> plaintext);
  // Raw ciphertext-level bytes, bypassing the client's TLS (garbage, plain HTTP).
  void send_raw(std::span<const uint8_t> bytes);

  // Frames received and not yet popped, each a size-prefixed buffer.
  size_t frames_waiting() const { return frames_.size() - next_; }
  // The next frame received (fails the test and returns null when none).
  const wire::Frame* next_frame();
  // Pops frames until one of `type`; null if none.
  const wire::Frame* next_of(wire::Payload type);

  bool open() const;
  tls::Connection& tls() { return *tls_; }
  ConnectionId id() const { return id_; }

  // Protocol steps.
  void hello(uint16_t min_version = 1, uint16_t max_version = 1);
  void auth(std::span<const uint8_t> token);
  // Hello + Auth with a valid token for (account {1, 2}, device); expects AuthOk.
  void login(uint32_t device = 1);

 private:
  Stack& stack_;
  ConnectionId id_;
  std::unique_ptr<tls::Connection> tls_;
  std::vector<uint8_t> stream_;
  std::vector<std::vector<uint8_t>> frames_;
  size_t next_ = 0;
};

class Stack {
 public:
  explicit Stack(const StackOptions& options = {}) : Stack(options, make_cert(options.key_type)) {}
  Stack(const StackOptions& options, const tls::PemCertificate& pem)
      : fake_clock(kStartNs),
        clock(clock::Clock::fake(&fake_clock)),
        wheel(timer::TimerWheelConfig{.capacity = options.session.max_sessions + 16,
                                      .tick_ns = 1'000'000,
                                      .levels = 4,
                                      .start_ns = kStartNs}),
        ring(auth::KeyRing::create(auth::KeyRingOptions{}, kStartMs)),
        verifier(auth::TokenVerifierOptions{}),
        certificate(load_cert(pem)),
        context(make_context(options.tls, certificate)),
        tls_layer(transport, context, TlsLayerOptions{options.session.max_sessions}),
        sessions(tls_layer, router, verifier, wheel, clock, options.session) {
    transport.limits.send_queue_bytes = options.transport_queue_bytes;
    tls_layer.set_upper(sessions);
    transport.start(tls_layer);
    for (const auth::SessionKey& key : ring.keys()) {
      EXPECT_TRUE(verifier.install_key(key, kStartMs));
    }
  }

  static std::shared_ptr<tls::ServerContext> make_context(
      const tls::ServerOptions& options, std::shared_ptr<const tls::CertifiedKey> cert) {
    auto ctx = tls::ServerContext::create(options, std::move(cert));
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }

  // A client context that pins `cert` (the stack's by default).
  std::shared_ptr<tls::ClientContext> client_context(
      std::shared_ptr<const tls::CertifiedKey> cert = nullptr,
      tls::TlsVersion max_version = tls::TlsVersion::kTls13,
      std::vector<std::string> alpn = {"herald/1"}) {
    tls::ClientOptions opt;
    opt.pin = true;
    opt.pinned_sha256 = (cert != nullptr ? cert : certificate)->leaf_sha256();
    opt.max_version = max_version;
    opt.alpn_protocols = std::move(alpn);
    auto ctx = tls::ClientContext::create(opt);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }

  std::unique_ptr<TestClient> connect(tls::ClientSession resume = nullptr) {
    if (default_client_ == nullptr) default_client_ = client_context();
    auto c = std::make_unique<TestClient>(*this, default_client_, resume);
    c->pump();
    return c;
  }

  auth::TokenBytes token(uint32_t device = 1, uint64_t issued_ms = kStartMs) {
    return auth::issue_token(ring, auth::AccountId{1, 2}, device, issued_ms);
  }

  uint64_t now_ms() const { return fake_clock.now_ns() / 1'000'000; }
  // Moves the manual clock, fires due timers, delivers the transport's events.
  void advance_ms(uint64_t ms) {
    fake_clock.advance_ns(ms * 1'000'000);
    (void)wheel.advance(fake_clock.now_ns());
    (void)transport.run();
  }

  clock::FakeClock fake_clock;
  clock::Clock clock;
  timer::TimerWheel wheel;
  auth::KeyRing ring;
  auth::TokenVerifier verifier;
  FakeTransport transport;
  std::shared_ptr<const tls::CertifiedKey> certificate;
  std::shared_ptr<tls::ServerContext> context;
  RecordingRouter router;
  TlsLayer tls_layer;
  SessionLayer sessions;

 private:
  std::shared_ptr<tls::ClientContext> default_client_;
};

// ---- TestClient ------------------------------------------------------------------------------

inline TestClient::TestClient(Stack& stack, std::shared_ptr<tls::ClientContext> context,
                              tls::ClientSession resume)
    : stack_(stack) {
  auto conn = tls::Connection::client(std::move(context), "localhost", std::move(resume));
  EXPECT_TRUE(conn.ok()) << conn.status();
  tls_ = std::move(*conn);
  id_ = stack_.transport.connect();
}

inline void TestClient::pump() {
  for (int round = 0; round < 1000; ++round) {
    bool moved = false;
    std::vector<uint8_t> out = tls_->take_ciphertext();
    if (!out.empty()) {
      stack_.transport.client_send(id_, out);
      moved = true;
    }
    std::vector<uint8_t> in = stack_.transport.take(id_);
    size_t done = 0;
    while (done < in.size()) {
      const size_t n = tls_->feed_ciphertext(std::span<const uint8_t>(in).subspan(done));
      done += n;
      uint8_t buf[16384];
      for (;;) {
        const tls::IoResult r = tls_->read_plaintext(buf);
        if (r.status != tls::IoStatus::kOk || r.bytes == 0) break;
        stream_.insert(stream_.end(), buf, buf + r.bytes);
      }
      if (n == 0) break;
      moved = true;
    }
    if (stack_.transport.run() > 0) moved = true;
    if (!moved) break;
  }
  // Split the plaintext stream into frames.
  for (;;) {
    if (stream_.size() < 4) break;
    const uint32_t len = flatbuffers::ReadScalar<uint32_t>(stream_.data());
    if (stream_.size() < 4 + size_t{len}) break;
    frames_.emplace_back(stream_.begin(), stream_.begin() + 4 + len);
    stream_.erase(stream_.begin(), stream_.begin() + 4 + len);
  }
}

inline void TestClient::send(std::span<const uint8_t> plaintext) {
  size_t done = 0;
  while (done < plaintext.size()) {
    const tls::IoResult r = tls_->write_plaintext(plaintext.subspan(done));
    if (r.status != tls::IoStatus::kOk) break;
    done += r.bytes;
    pump();
  }
  pump();
}

inline void TestClient::send_raw(std::span<const uint8_t> bytes) {
  stack_.transport.client_send(id_, bytes);
  (void)stack_.transport.run();
}

inline const wire::Frame* TestClient::next_frame() {
  if (next_ >= frames_.size()) {
    ADD_FAILURE() << "no frame received";
    return nullptr;
  }
  const std::vector<uint8_t>& f = frames_[next_++];
  flatbuffers::Verifier verifier(f.data(), f.size());
  EXPECT_TRUE(verifier.VerifySizePrefixedBuffer<wire::Frame>("HRLD"));
  return flatbuffers::GetSizePrefixedRoot<wire::Frame>(f.data());
}

inline const wire::Frame* TestClient::next_of(wire::Payload type) {
  while (next_ < frames_.size()) {
    const wire::Frame* f = next_frame();
    if (f != nullptr && f->payload_type() == type) return f;
  }
  ADD_FAILURE() << "no frame of type " << wire::EnumNamePayload(type);
  return nullptr;
}

inline bool TestClient::open() const {
  return stack_.transport.is_open(id_);
}

inline void TestClient::hello(uint16_t min_version, uint16_t max_version) {
  codec::FrameBuilder b;
  auto name = b.fbb().CreateString("test-client");
  send(b.finish(wire::CreateHello(b.fbb(), min_version, max_version, name)));
}

inline void TestClient::auth(std::span<const uint8_t> token) {
  codec::FrameBuilder b;
  auto t = b.fbb().CreateVector(token.data(), token.size());
  send(b.finish(wire::CreateAuth(b.fbb(), t)));
}

inline void TestClient::login(uint32_t device) {
  hello();
  const wire::Frame* ok = next_of(wire::Payload::HelloOk);
  ASSERT_NE(ok, nullptr);
  const auth::TokenBytes token = stack_.token(device, stack_.now_ms());
  auth(token);
  ASSERT_NE(next_of(wire::Payload::AuthOk), nullptr);
}

}  // namespace herald::dataplane::testing

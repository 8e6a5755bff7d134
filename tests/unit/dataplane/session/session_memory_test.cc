// Measures the heap an idle, authenticated client session holds on the server (TLS connection,
// TLS slot, session) after its handshake and login, with glibc's mallinfo2 over many sessions,
// and checks that it holds no record or frame buffer while idle. Three TLS modes: BoringSSL's
// SSL kept, compact (SSL freed after the handshake), compact and parked (AEAD contexts dropped).
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "tests/unit/asan.h"
#include "tests/unit/dataplane/session/stack_test_util.h"

namespace herald::dataplane {
namespace {

using testing::FakeTransport;
using testing::Stack;
using testing::StackOptions;
using testing::TestClient;

size_t heap_in_use_bytes() {
  return mallinfo2().uordblks;
}

class NullEvents final : public TransportEvents {
 public:
  void on_accepted(ConnectionId, const PeerAddress&) override {}
  void on_data(ConnectionId, std::span<const uint8_t>) override {}
  void on_writable(ConnectionId) override {}
  void on_closed(ConnectionId, CloseReason) override {}
};

// What the fake transport itself keeps per connection (its map node), to subtract.
double fake_transport_bytes_per_connection(size_t n) {
  NullEvents events;
  FakeTransport transport;
  transport.start(events);
  const size_t before = heap_in_use_bytes();
  for (size_t i = 0; i < n; ++i) (void)transport.connect();
  return static_cast<double>(heap_in_use_bytes() - before) / static_cast<double>(n);
}

TEST(DataplaneSessionMemory, IdleAuthenticatedSessionIsSmall) {
#ifdef HERALD_TEST_ASAN
  GTEST_SKIP() << "mallinfo2 does not see the AddressSanitizer allocator";
#endif
  constexpr size_t kSessions = 500;
  enum Mode { kSsl, kCompact, kParked };
  double measured[2][3] = {};
  for (const tls::KeyType key : {tls::KeyType::kEcdsaP256, tls::KeyType::kEd25519}) {
    for (const Mode mode : {kSsl, kCompact, kParked}) {
      StackOptions opt;
      opt.session.max_sessions = kSessions + 2;
      opt.key_type = key;
      opt.tls.compact_after_handshake = mode != kSsl;
      Stack stack(opt);
      auto cctx = stack.client_context();
      {
        // Warm up lazily made state (ex_data indices, the builder's buffer, error strings).
        TestClient warm(stack, cctx);
        warm.pump();
        warm.login();
      }
      std::vector<std::unique_ptr<TestClient>> clients;
      clients.reserve(kSessions);
      const size_t before = heap_in_use_bytes();
      for (size_t i = 0; i < kSessions; ++i) {
        auto c = std::make_unique<TestClient>(stack, cctx);
        c->pump();
        c->login(static_cast<uint32_t>(i + 2));
        // One message round trip, so the session has used its decoder and unacked list once.
        codec::FrameBuilder b;
        auto body = b.fbb().CreateVector(std::vector<uint8_t>(200, 1));
        const wire::DeviceAddress to(wire::AccountId(1, 2), 1);
        auto recipient = wire::CreateToDevice(b.fbb(), &to);
        c->send(b.finish(wire::CreateMessage(b.fbb(), wire::Recipient::ToDevice, recipient.Union(),
                                             i + 1, body)));
        EXPECT_NE(c->next_of(wire::Payload::ServerAck), nullptr);
        clients.push_back(std::move(c));
      }
      // The clients are this test's, not the server's: free them (their connections stay open).
      std::vector<ConnectionId> ids;
      for (const auto& c : clients) ids.push_back(c->id());
      for (const auto& c : clients) (void)stack.transport.take(c->id());
      clients.clear();
      if (mode == kParked) {
        for (ConnectionId id : ids) stack.tls_layer.park(id);
        EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kParked], kSessions);
      }
      const size_t after = heap_in_use_bytes();
      const double transport = fake_transport_bytes_per_connection(kSessions);
      const double per_session =
          (static_cast<double>(after) - static_cast<double>(before)) / kSessions - transport;
      const char* mode_name = mode == kSsl ? "ssl" : mode == kCompact ? "compact" : "parked";
      std::printf(
          "dp_session_memory %s %-7s idle_authenticated=%.0f B/session allocated after "
          "accept (fake transport's %.0f B subtracted); sizeof(Session)=%zu B per slot\n",
          key == tls::KeyType::kEd25519 ? "ed25519" : "p256", mode_name, per_session, transport,
          sizeof(Session));
      ::testing::Test::RecordProperty(
          std::string(key == tls::KeyType::kEd25519 ? "ed25519" : "p256") + "_" + mode_name +
              "_bytes_per_session",
          static_cast<int>(per_session));
      measured[key == tls::KeyType::kEd25519 ? 1 : 0][mode] = per_session;
      EXPECT_EQ(stack.tls_layer.stats()[TlsEvent::kCompactSwitches],
                mode == kSsl ? 0u : kSessions + 1);
      EXPECT_EQ(stack.sessions.sessions(), kSessions + 1);  // and the warm-up one
      EXPECT_EQ(stack.sessions.decode_buffers_lent(), 0u);
      for (ConnectionId id : ids) {
        const tls::Connection* conn = stack.tls_layer.connection(id);
        ASSERT_NE(conn, nullptr);
        EXPECT_TRUE(conn->pending_ciphertext().empty());
        EXPECT_EQ(conn->compact(), mode != kSsl);
        EXPECT_EQ(conn->parked(), mode == kParked);
      }
      // Behaviour, not speed: no record buffer (>= 16 KiB), no frame buffer (64 KiB) and no
      // handshake configuration stays behind. Loose on purpose.
      EXPECT_GT(per_session, 0.0);
      EXPECT_LT(per_session, 10 * 1024.0);
    }
  }
  // Freeing the SSL must save memory, and parking more (each AEAD context is ~580 B).
  for (const auto& m : measured) {
    EXPECT_LT(m[kCompact], m[kSsl]);
    EXPECT_LT(m[kParked], m[kCompact]);
  }
}

}  // namespace
}  // namespace herald::dataplane

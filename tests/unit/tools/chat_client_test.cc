// The tools' chat client against a scripted TLS server in a thread (platform/tls, blocking
// socket): the Hello/Auth handshake, frames in both directions, held frames keep their order,
// a server that sends garbage or closes, and the trust check.
#include "tools/client/chat_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "platform/tls/certificate.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"
#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_decoder.h"

namespace herald::tools {
namespace {

// One TLS connection accepted on a loopback port, served by `script` in a thread.
class ScriptedServer {
 public:
  // The server side of one connection: whole frames in and out.
  class Peer {
   public:
    Peer(int fd, std::unique_ptr<tls::Connection> tls) : fd_(fd), tls_(std::move(tls)) {
      storage_.resize(codec::FrameDecoder::storage_bytes(limits_) / 8 + 1);
      decoder_ = std::make_unique<codec::FrameDecoder>(
          limits_,
          std::span<uint8_t>(reinterpret_cast<uint8_t*>(storage_.data()), storage_.size() * 8));
    }
    ~Peer() { ::close(fd_); }
    bool flush() {
      while (!tls_->pending_ciphertext().empty()) {
        const auto out = tls_->pending_ciphertext();
        const ssize_t n = ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        tls_->consume_ciphertext(static_cast<size_t>(n));
      }
      return true;
    }
    // Reads until the handshake is done or a frame arrives; nullopt on close or error.
    std::optional<wire::FrameT> next_frame() {
      for (;;) {
        const codec::DecodeResult r = decoder_->next_frame();
        if (r.status == codec::DecodeStatus::kFrame) {
          wire::FrameT f;
          r.frame.frame->UnPackTo(&f);
          return f;
        }
        if (r.status == codec::DecodeStatus::kError) return std::nullopt;
        uint8_t plain[16384];
        const tls::IoResult got = tls_->read_plaintext(plain);
        if (got.status == tls::IoStatus::kOk && got.bytes > 0) {
          std::span<const uint8_t> in(plain, got.bytes);
          while (!in.empty()) in = in.subspan(decoder_->feed(in));
          continue;
        }
        if (got.status == tls::IoStatus::kError || got.status == tls::IoStatus::kClosed) {
          return std::nullopt;
        }
        if (!flush()) return std::nullopt;
        uint8_t cipher[16384];
        const ssize_t n = ::recv(fd_, cipher, sizeof(cipher), 0);
        if (n <= 0) return std::nullopt;
        std::span<const uint8_t> in(cipher, static_cast<size_t>(n));
        while (!in.empty()) in = in.subspan(tls_->feed_ciphertext(in));
        if (!flush()) return std::nullopt;
      }
    }
    void send_frame(const wire::FrameT& frame) {
      codec::FrameBuilder builder;
      send_raw(builder.finish(frame));
    }
    void send_raw(std::span<const uint8_t> bytes) {
      while (!bytes.empty()) {
        const tls::IoResult r = tls_->write_plaintext(bytes);
        ASSERT_NE(r.status, tls::IoStatus::kError);
        bytes = bytes.subspan(r.bytes);
        ASSERT_TRUE(flush());
      }
    }
    void close_notify() {
      tls_->close();
      (void)flush();
    }

   private:
    int fd_;
    std::unique_ptr<tls::Connection> tls_;
    codec::DecoderLimits limits_{};
    std::vector<uint64_t> storage_;
    std::unique_ptr<codec::FrameDecoder> decoder_;
  };

  explicit ScriptedServer(std::function<void(Peer&)> script) {
    auto pem = tls::generate_certificate({.common_name = "test", .ip_addresses = {"127.0.0.1"}});
    EXPECT_TRUE(pem.ok());
    cert_pem_ = pem->cert_pem;
    auto key = tls::certified_key_from_pem(pem->cert_pem, pem->key_pem);
    EXPECT_TRUE(key.ok());
    auto context = tls::ServerContext::create(tls::ServerOptions{}, *key);
    EXPECT_TRUE(context.ok());
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
    socklen_t length = sizeof(address);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this, context = *context, script = std::move(script)] {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 10'000) != 1) return;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      auto tls = tls::Connection::server(context);
      if (!tls.ok()) return ::close(fd), void();
      Peer peer(fd, std::move(*tls));
      script(peer);
    });
  }
  ~ScriptedServer() {
    thread_.join();
    ::close(listen_fd_);
  }
  TlsStreamOptions options() const {
    return {.host = "127.0.0.1",
            .port = port_,
            .trust = Trust::pinned(cert_pem_),
            .connect_timeout_ms = 5000};
  }

 private:
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::string cert_pem_;
  std::thread thread_;
};

wire::FrameT frame_with(wire::PayloadUnion payload) {
  wire::FrameT f;
  f.payload = std::move(payload);
  return f;
}

// Answers Hello and Auth the way a server does (token "good" only).
void answer_login(ScriptedServer::Peer& peer) {
  auto hello = peer.next_frame();
  ASSERT_TRUE(hello.has_value());
  ASSERT_EQ(hello->payload.type, wire::Payload::Hello);
  wire::HelloOkT ok;
  ok.version = 1;
  ok.node_id = 7;
  wire::PayloadUnion p;
  p.Set(std::move(ok));
  peer.send_frame(frame_with(std::move(p)));
  auto auth = peer.next_frame();
  ASSERT_TRUE(auth.has_value());
  ASSERT_EQ(auth->payload.type, wire::Payload::Auth);
  const auto& token = auth->payload.AsAuth()->token;
  wire::PayloadUnion answer;
  if (std::string(token.begin(), token.end()) == "good") {
    wire::AuthOkT auth_ok;
    auth_ok.device = std::make_unique<wire::DeviceAddress>(wire::AccountId(1, 2), 3);
    auth_ok.queued_messages = 5;
    answer.Set(std::move(auth_ok));
  } else {
    wire::AuthErrorT error;
    error.code = wire::AuthErrorCode::Expired;
    error.message = "token expired";
    answer.Set(std::move(error));
  }
  peer.send_frame(frame_with(std::move(answer)));
}

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(ChatClientTest, LogsInAndExchangesFrames) {
  ScriptedServer server([](ScriptedServer::Peer& peer) {
    answer_login(peer);
    auto message = peer.next_frame();
    ASSERT_TRUE(message.has_value());
    const auto* m = message->payload.AsMessage();
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->client_msg_id, 42u);
    EXPECT_EQ(std::string(m->body.begin(), m->body.end()), "hi");
    ASSERT_EQ(m->to.type, wire::Recipient::ToAccount);
    // A Deliver first, then the ServerAck: wait_for(ServerAck) must keep the Deliver for later.
    wire::DeliverT deliver;
    deliver.server_msg_id = std::make_unique<wire::ServerMsgId>(9, 10);
    deliver.sender = std::make_unique<wire::DeviceAddress>(wire::AccountId(5, 6), 1);
    wire::ToAccountT to;
    to.account = std::make_unique<wire::AccountId>(1, 2);
    deliver.to.Set(std::move(to));
    deliver.body = {'y', 'o'};
    wire::PayloadUnion d;
    d.Set(std::move(deliver));
    peer.send_frame(frame_with(std::move(d)));
    wire::ServerAckT ack;
    ack.client_msg_id = 42;
    ack.server_msg_id = std::make_unique<wire::ServerMsgId>(11, 12);
    wire::PayloadUnion a;
    a.Set(std::move(ack));
    peer.send_frame(frame_with(std::move(a)));
    auto delivery_ack = peer.next_frame();
    ASSERT_TRUE(delivery_ack.has_value());
    ASSERT_EQ(delivery_ack->payload.type, wire::Payload::DeliveryAck);
    EXPECT_EQ(delivery_ack->payload.AsDeliveryAck()->server_msg_ids.size(), 1u);
    peer.close_notify();
  });
  auto client = ChatClient::connect({.stream = server.options()});
  ASSERT_TRUE(client.ok()) << client.status();
  auto auth = (*client)->login(bytes_of("good"));
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->device->device(), 3u);
  EXPECT_EQ(auth->queued_messages, 5u);
  ASSERT_TRUE((*client)->hello_ok().has_value());
  EXPECT_EQ((*client)->hello_ok()->node_id, 7);
  ASSERT_TRUE((*client)->send_to_account(wire::AccountId(5, 6), 42, bytes_of("hi")).ok());
  auto ack = (*client)->wait_for(wire::Payload::ServerAck, 5000);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->payload.AsServerAck()->client_msg_id, 42u);
  auto held = (*client)->next(0);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(held->has_value());
  ASSERT_EQ((*held)->payload.type, wire::Payload::Deliver);
  const wire::ServerMsgId id = *(*held)->payload.AsDeliver()->server_msg_id;
  ASSERT_TRUE((*client)->ack(std::span<const wire::ServerMsgId>(&id, 1)).ok());
  auto end = (*client)->next(5000);
  EXPECT_EQ(end.status().code(), absl::StatusCode::kOutOfRange);
}

wire::FrameT receipt_frame(uint64_t id_lo, bool stored) {
  wire::ReceiptT r;
  r.kind = wire::ReceiptKind::Read;
  r.message_ids = {wire::ServerMsgId(1, 2)};
  r.server_msg_id = std::make_unique<wire::ServerMsgId>(100, id_lo);
  r.stored = stored;
  wire::PayloadUnion p;
  p.Set(std::move(r));
  return frame_with(std::move(p));
}

// docs/PROTOCOL.md "Receipts": a stored receipt is acked as it arrives, and a repeat of its id
// is not surfaced again; a live receipt needs no ack.
TEST(ChatClientTest, StoredReceiptsAreAckedAndDeduplicated) {
  std::vector<uint64_t> acked;  // by the server's thread; read after it is joined
  std::optional<ScriptedServer> server;
  server.emplace([&acked](ScriptedServer::Peer& peer) {
    answer_login(peer);
    peer.send_frame(receipt_frame(1, true));
    peer.send_frame(receipt_frame(2, false));
    peer.send_frame(receipt_frame(1, true));  // a repeat (say, a drain started again)
    peer.send_frame(receipt_frame(3, true));
    // The acks come back in order: 1, 1 (a repeat is acked again: still queued), 3.
    for (int i = 0; i < 3; ++i) {
      auto f = peer.next_frame();
      ASSERT_TRUE(f.has_value());
      ASSERT_EQ(f->payload.type, wire::Payload::DeliveryAck);
      for (const wire::ServerMsgId& id : f->payload.AsDeliveryAck()->server_msg_ids) {
        acked.push_back(id.lo());
      }
    }
    peer.close_notify();
  });
  auto client = ChatClient::connect({.stream = server->options()});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->login(bytes_of("good")).ok());
  std::vector<std::pair<uint64_t, bool>> seen;
  for (;;) {
    auto f = (*client)->next(5000);
    if (!f.ok()) {
      EXPECT_EQ(f.status().code(), absl::StatusCode::kOutOfRange) << f.status();
      break;
    }
    ASSERT_TRUE(f->has_value());
    const auto* r = (*f)->payload.AsReceipt();
    ASSERT_NE(r, nullptr);
    seen.emplace_back(r->server_msg_id->lo(), r->stored);
  }
  EXPECT_EQ(seen, (std::vector<std::pair<uint64_t, bool>>{{1, true}, {2, false}, {3, true}}));
  server.reset();
  EXPECT_EQ(acked, (std::vector<uint64_t>{1, 1, 3}));
  EXPECT_EQ((*client)->stored_receipts_acked(), 3u);
  EXPECT_EQ((*client)->stored_receipt_repeats(), 1u);
}

TEST(ChatClientTest, AuthErrorBecomesPermissionDenied) {
  ScriptedServer server([](ScriptedServer::Peer& peer) { answer_login(peer); });
  auto client = ChatClient::connect({.stream = server.options()});
  ASSERT_TRUE(client.ok()) << client.status();
  auto auth = (*client)->login(bytes_of("stale"));
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(auth.status().message().find("Expired"), std::string_view::npos);
}

TEST(ChatClientTest, GarbageFromTheServerIsDataLoss) {
  ScriptedServer server([](ScriptedServer::Peer& peer) {
    (void)peer.next_frame();  // Hello
    const uint8_t garbage[] = {8, 0, 0, 0, 'n', 'o', 't', 'a', 'f', 'r', 'a', 'm'};
    peer.send_raw(garbage);
    (void)peer.next_frame();  // until the client goes
  });
  auto client = ChatClient::connect({.stream = server.options()});
  ASSERT_TRUE(client.ok()) << client.status();
  auto hello = (*client)->hello();
  EXPECT_EQ(hello.status().code(), absl::StatusCode::kDataLoss) << hello.status();
  (*client)->close();
}

TEST(ChatClientTest, NextTimesOutQuietlyAndAWrongPinIsRefused) {
  ScriptedServer server([](ScriptedServer::Peer& peer) {
    answer_login(peer);
    (void)peer.next_frame();  // until the client goes
  });
  auto client = ChatClient::connect({.stream = server.options()});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->login(bytes_of("good")).ok());
  auto nothing = (*client)->next(50);
  ASSERT_TRUE(nothing.ok());
  EXPECT_FALSE(nothing->has_value());
  (*client)->close();

  // Another certificate pinned: the handshake fails the trust check.
  ScriptedServer other([](ScriptedServer::Peer& peer) { (void)peer.next_frame(); });
  TlsStreamOptions wrong = other.options();
  wrong.trust = server.options().trust;
  auto refused = ChatClient::connect({.stream = wrong});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated) << refused.status();
}

TEST(ChatClientTest, NobodyListeningIsUnavailable) {
  TlsStreamOptions options{.host = "127.0.0.1", .port = 1, .trust = Trust::pinned("x")};
  auto client = ChatClient::connect({.stream = options});
  EXPECT_FALSE(client.ok());
}

}  // namespace
}  // namespace herald::tools

// Compact mode: a TLS 1.3 server Connection that freed its SSL after the handshake, driven
// by a raw BoringSSL client (KeyUpdate, close_notify) and by records forged with the client's
// exported keys (every rejection RFC 8446 asks for, padding, split KeyUpdates); and a compact
// client against herald's server and a raw BoringSSL server (tickets passed over, KeyUpdates).
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <random>
#include <string>
#include <vector>

#include "platform/tls/record_layer.h"
#include "tests/unit/platform/tls/tls_test_util.h"

namespace herald::tls {
namespace {

using testing::load;
using testing::make_pem;
using testing::Wire;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Feeds `bytes` to a herald Connection (`step` at a time, 0: all at once), reading its
// plaintext into `sink` after each feed in pieces smaller than a record (partial reads of one
// record exercised); stops when the connection fails.
void feed_and_read(Connection& conn, std::span<const uint8_t> bytes, size_t step,
                   std::vector<uint8_t>& sink, IoStatus& status) {
  auto drain = [&] {
    uint8_t buf[1000];
    for (;;) {
      const IoResult r = conn.read_plaintext(buf);
      status = r.status;
      if (r.status != IoStatus::kOk) return;
      sink.insert(sink.end(), buf, buf + r.bytes);
    }
  };
  while (!bytes.empty() && conn.error() == TlsError::kNone) {
    const size_t n = step == 0 ? bytes.size() : std::min(step, bytes.size());
    bytes = bytes.subspan(conn.feed_ciphertext(bytes.subspan(0, n)));
    drain();
  }
  drain();
}

// A raw BoringSSL SSL over a BIO pair, the peer of a herald Connection under test.
struct RawPeer {
  bssl::UniquePtr<SSL_CTX> ctx{SSL_CTX_new(TLS_method())};
  bssl::UniquePtr<SSL> ssl;
  BIO* net = nullptr;    // our end of the pair; the SSL owns the other
  size_t feed_step = 0;  // 0: everything at once; n: n bytes per feed to the Connection

  ~RawPeer() { BIO_free(net); }
  // After the context is set up: the SSL, on a BIO pair, as a server or a client.
  void make_ssl(bool server_side) {
    ssl.reset(SSL_new(ctx.get()));
    BIO* internal = nullptr;
    BIO_new_bio_pair(&internal, 1 << 20, &net, 1 << 20);
    SSL_set_bio(ssl.get(), internal, internal);
    if (server_side) {
      SSL_set_accept_state(ssl.get());
    } else {
      SSL_set_connect_state(ssl.get());
    }
  }
  // What the SSL has written, taken off the pair.
  std::vector<uint8_t> written() {
    std::vector<uint8_t> bytes(BIO_ctrl_pending(net));
    if (!bytes.empty()) {
      EXPECT_EQ(BIO_read(net, bytes.data(), static_cast<int>(bytes.size())),
                static_cast<int>(bytes.size()));
    }
    return bytes;
  }
  // Ciphertext from the Connection into the SSL.
  void give(Connection& conn) {
    const std::vector<uint8_t> bytes = conn.take_ciphertext();
    if (!bytes.empty()) BIO_write(net, bytes.data(), static_cast<int>(bytes.size()));
  }
  // A record layer with the SSL's current keys: forges what this peer could send and reads
  // what the Connection sends (the SSL is out of step afterwards).
  std::unique_ptr<RecordLayer> forge() {
    bssl::Span<const uint8_t> r;
    bssl::Span<const uint8_t> w;
    EXPECT_TRUE(bssl::SSL_get_traffic_secrets(ssl.get(), &r, &w));
    return RecordLayer::create(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(ssl.get())),
                               {r.data(), r.size()}, SSL_get_read_sequence(ssl.get()),
                               {w.data(), w.size()}, SSL_get_write_sequence(ssl.get()));
  }
};

// A BoringSSL client talking to a herald server Connection.
struct RawClient : RawPeer {
  Connection* server = nullptr;
  std::vector<uint8_t> server_in;  // plaintext the server read
  std::vector<uint8_t> client_in;  // plaintext the client read
  IoStatus server_status = IoStatus::kWantMore;

  explicit RawClient(Connection* s, SSL_SESSION* resume = nullptr, int max_version = TLS1_3_VERSION)
      : server(s) {
    SSL_CTX_set_max_proto_version(ctx.get(), static_cast<uint16_t>(max_version));
    make_ssl(/*server_side=*/false);
    if (resume != nullptr) SSL_set_session(ssl.get(), resume);
  }

  void feed_server(std::span<const uint8_t> bytes) {
    feed_and_read(*server, bytes, feed_step, server_in, server_status);
  }
  void to_server() { feed_server(written()); }
  void to_client() {
    give(*server);
    if (!SSL_is_init_finished(ssl.get())) {
      (void)SSL_do_handshake(ssl.get());
      return;
    }
    uint8_t buf[16384];
    int n;
    while ((n = SSL_read(ssl.get(), buf, sizeof(buf))) > 0)
      client_in.insert(client_in.end(), buf, buf + n);
  }
  void pump() {
    for (int i = 0; i < 16; ++i) {
      if (!SSL_is_init_finished(ssl.get())) (void)SSL_do_handshake(ssl.get());
      to_server();
      to_client();
    }
  }
  void client_write(const std::vector<uint8_t>& data) {
    size_t done = 0;
    while (done < data.size()) {
      const int n = SSL_write(ssl.get(), data.data() + done,
                              static_cast<int>(std::min<size_t>(data.size() - done, 16384)));
      ASSERT_GT(n, 0);
      done += static_cast<size_t>(n);
      if (done % (64 * 1024) == 0) pump();
    }
  }
  void server_write(const std::vector<uint8_t>& data) {
    size_t done = 0;
    while (done < data.size()) {
      const IoResult r = server->write_plaintext(std::span<const uint8_t>(data).subspan(done));
      ASSERT_NE(r.status, IoStatus::kError);
      done += r.bytes;
      to_client();
    }
    to_client();
  }
};

std::vector<uint8_t> seal(RecordLayer& layer, uint8_t type, std::vector<uint8_t> content,
                          size_t padding = 0) {
  std::vector<uint8_t> out(RecordLayer::sealed_bytes(content.size(), padding));
  EXPECT_TRUE(layer.seal(type, content, out.data(), padding));
  return out;
}

class CompactTest : public ::testing::Test {
 protected:
  void SetUp() override { key_ = load(make_pem()); }
  std::shared_ptr<ServerContext> server_ctx(bool compact = true, bool tls12 = false) {
    ServerOptions opt;
    opt.compact_after_handshake = compact;
    if (tls12) opt.min_version = TlsVersion::kTls12;
    auto ctx = ServerContext::create(opt, key_);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }
  std::unique_ptr<Connection> server(bool compact = true, bool tls12 = false) {
    auto c = Connection::server(server_ctx(compact, tls12));
    EXPECT_TRUE(c.ok());
    return std::move(*c);
  }
  // Handshake done and compact; the forged layer has the client's keys.
  void establish(RawClient& client) {
    client.pump();
    ASSERT_TRUE(SSL_is_init_finished(client.ssl.get()));
    ASSERT_TRUE(client.server->handshake_done());
    ASSERT_TRUE(client.server->compact());
  }
  std::shared_ptr<const CertifiedKey> key_;
};

TEST_F(CompactTest, ByteExactBothWaysManyRecords) {
  for (const bool compact : {true, false}) {
    auto s = server(compact);
    RawClient c(s.get());
    c.pump();
    ASSERT_TRUE(s->handshake_done());
    EXPECT_EQ(s->compact(), compact);
    const auto up = random_bytes(300 * 1024 + 7, 1);
    const auto down = random_bytes(200 * 1024 + 3, 2);
    c.client_write(up);
    c.pump();
    c.server_write(down);
    c.pump();
    EXPECT_EQ(c.server_in, up) << compact;
    EXPECT_EQ(c.client_in, down) << compact;
    EXPECT_EQ(s->error(), TlsError::kNone);
  }
}

TEST_F(CompactTest, BoringSslConnectionClientAndTicketsResume) {
  auto sctx = server_ctx();
  ClientOptions copt;
  copt.pin = true;
  copt.pinned_sha256 = key_->leaf_sha256();
  auto cctx = ClientContext::create(copt);
  ASSERT_TRUE(cctx.ok());
  ClientSession session;
  for (int round = 0; round < 2; ++round) {
    auto s = Connection::server(sctx);
    auto c = Connection::client(*cctx, "localhost", session);
    Wire wire{c->get(), s->get()};
    wire.pump();
    ASSERT_TRUE((*s)->compact());
    EXPECT_EQ((*s)->resumed(), round == 1);
    const auto msg = random_bytes(40000, 3);
    ASSERT_EQ((*c)->write_plaintext(msg).bytes, msg.size());
    ASSERT_EQ((*s)->write_plaintext(msg).bytes, msg.size());
    wire.pump();
    EXPECT_EQ(wire.b_received, msg);
    EXPECT_EQ(wire.a_received, msg);
    session = (*c)->session();  // the ticket came through the compact server's first records
    ASSERT_NE(session, nullptr) << round;
    (*s)->close();
    wire.pump();
    EXPECT_TRUE(wire.a_closed);
  }
}

TEST_F(CompactTest, RecordsSplitByteByByteAndCoalesced) {
  auto s = server();
  RawClient c(s.get());
  establish(c);
  std::vector<uint8_t> all;
  for (int i = 0; i < 50; ++i) {  // 50 records coalesced into one feed
    const auto msg = random_bytes(static_cast<size_t>(i * 37 + 1), static_cast<uint32_t>(i));
    ASSERT_GT(SSL_write(c.ssl.get(), msg.data(), static_cast<int>(msg.size())), 0);
    all.insert(all.end(), msg.begin(), msg.end());
  }
  c.to_server();
  EXPECT_EQ(c.server_in, all);
  c.feed_step = 1;
  const auto big = random_bytes(20000, 9);
  c.client_write(big);
  c.to_server();
  all.insert(all.end(), big.begin(), big.end());
  EXPECT_EQ(c.server_in, all);
  EXPECT_EQ(s->error(), TlsError::kNone);
}

// The client's Finished and its first records arrive in one feed (or byte by byte): the SSL
// consumes exactly the Finished, the compact layer takes over the rest.
TEST_F(CompactTest, DataCoalescedWithClientFinished) {
  for (const size_t step : {size_t{0}, size_t{1}}) {
    auto s = server();
    RawClient c(s.get());
    c.feed_step = step;
    (void)SSL_do_handshake(c.ssl.get());  // ClientHello
    c.to_server();
    c.to_client();  // the server's flight; the client answers with its Finished
    ASSERT_TRUE(SSL_is_init_finished(c.ssl.get()));
    ASSERT_FALSE(s->handshake_done());
    const auto msg = random_bytes(30000, 5);
    c.client_write(msg);
    ASSERT_EQ(SSL_key_update(c.ssl.get(), SSL_KEY_UPDATE_REQUESTED), 1);
    c.client_write(msg);
    c.to_server();
    EXPECT_TRUE(s->compact()) << step;
    std::vector<uint8_t> twice = msg;
    twice.insert(twice.end(), msg.begin(), msg.end());
    EXPECT_EQ(c.server_in, twice) << step;
    EXPECT_EQ(s->key_updates_received(), 1u);
    c.server_write(msg);
    EXPECT_EQ(c.client_in, msg) << step;
  }
}

TEST_F(CompactTest, ClientKeyUpdatesBothKinds) {
  auto s = server();
  RawClient c(s.get());
  establish(c);
  c.feed_step = 3;
  std::vector<uint8_t> up;
  std::vector<uint8_t> down;
  const int kinds[] = {SSL_KEY_UPDATE_NOT_REQUESTED, SSL_KEY_UPDATE_REQUESTED,
                       SSL_KEY_UPDATE_REQUESTED, SSL_KEY_UPDATE_NOT_REQUESTED,
                       SSL_KEY_UPDATE_REQUESTED};
  uint32_t requested = 0;
  for (const int kind : kinds) {
    ASSERT_EQ(SSL_key_update(c.ssl.get(), kind), 1);
    requested += kind == SSL_KEY_UPDATE_REQUESTED ? 1 : 0;
    const auto msg = random_bytes(5000, static_cast<uint32_t>(up.size()));
    c.client_write(msg);
    up.insert(up.end(), msg.begin(), msg.end());
    c.pump();
    const auto reply = random_bytes(3000, static_cast<uint32_t>(down.size() + 1));
    c.server_write(reply);  // under the server's new write key when one was requested
    down.insert(down.end(), reply.begin(), reply.end());
    c.pump();
  }
  EXPECT_EQ(c.server_in, up);
  EXPECT_EQ(c.client_in, down);
  EXPECT_EQ(s->key_updates_received(), 5u);
  EXPECT_EQ(s->key_updates_sent(), requested);
  EXPECT_EQ(s->error(), TlsError::kNone);
}

TEST_F(CompactTest, CloseNotifyBothWays) {
  {
    auto s = server();
    RawClient c(s.get());
    establish(c);
    ASSERT_EQ(SSL_shutdown(c.ssl.get()), 0);  // sent ours, the server's not yet received
    c.to_server();
    EXPECT_EQ(c.server_status, IoStatus::kClosed);
    EXPECT_TRUE(s->close_notify_received());
    s->close();
    c.to_client();
    EXPECT_EQ(SSL_shutdown(c.ssl.get()), 1);  // bidirectional shutdown complete
  }
  {
    auto s = server();
    RawClient c(s.get());
    establish(c);
    s->close();
    EXPECT_EQ(s->write_plaintext(random_bytes(10, 1)).status, IoStatus::kClosed);
    BIO_write(c.net, s->pending_ciphertext().data(),
              static_cast<int>(s->pending_ciphertext().size()));
    s->consume_ciphertext(s->pending_ciphertext().size());
    uint8_t buf[16];
    EXPECT_EQ(SSL_read(c.ssl.get(), buf, sizeof(buf)), 0);
    EXPECT_EQ(SSL_get_error(c.ssl.get(), 0), SSL_ERROR_ZERO_RETURN);
  }
}

TEST_F(CompactTest, PaddingAndEmptyApplicationDataAndSplitKeyUpdate) {
  auto s = server();
  RawClient c(s.get());
  establish(c);
  auto f = c.forge();
  std::vector<uint8_t> wire;
  auto add = [&wire](const std::vector<uint8_t>& r) {
    wire.insert(wire.end(), r.begin(), r.end());
  };
  add(seal(*f, RecordLayer::kApplicationData, {'a', 'b'}, 200));
  add(seal(*f, RecordLayer::kApplicationData, {}));  // zero-length: legal, nothing to read
  add(seal(*f, RecordLayer::kApplicationData, std::vector<uint8_t>(16384, 'x')));  // 2^14+1 inner
  // KeyUpdate(update_requested) split over three records.
  add(seal(*f, RecordLayer::kHandshake, {24, 0}));
  add(seal(*f, RecordLayer::kHandshake, {0}));
  add(seal(*f, RecordLayer::kHandshake, {1, 1}));
  ASSERT_TRUE(f->update_write_key());
  add(seal(*f, RecordLayer::kApplicationData, {'c'}));
  c.feed_server(wire);
  std::vector<uint8_t> expect = {'a', 'b'};
  expect.insert(expect.end(), 16384, 'x');
  expect.push_back('c');
  EXPECT_EQ(c.server_in, expect);
  EXPECT_EQ(s->key_updates_received(), 1u);
  EXPECT_EQ(s->key_updates_sent(), 1u);
  // The server answered KeyUpdate(update_not_requested) under its old key, then switched.
  std::vector<uint8_t> out = s->take_ciphertext();
  auto opened = f->open(out);
  ASSERT_EQ(opened.status, RecordLayer::Opened::kRecord);
  EXPECT_EQ(opened.content_type, RecordLayer::kHandshake);
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 5, out.begin() + 5 + 5),
            (std::vector<uint8_t>{24, 0, 0, 1, 0}));
  EXPECT_EQ(opened.record_bytes, out.size());
  ASSERT_TRUE(f->update_read_key());
  ASSERT_EQ(s->write_plaintext(std::vector<uint8_t>{'z'}).bytes, 1u);
  out = s->take_ciphertext();
  opened = f->open(out);
  ASSERT_EQ(opened.status, RecordLayer::Opened::kRecord);
  EXPECT_EQ(out[5], 'z');
}

struct Rejection {
  const char* name;
  CompactError error;
  TlsError tls_error;
  uint8_t alert;  // the alert the server sends (0: none)
};

class CompactRejectTest : public CompactTest {
 protected:
  // Feeds `bytes` and expects the connection to fail as `want`, with its alert protected
  // under the server's current write key.
  void expect_rejected(RawClient& c, RecordLayer& f, const std::vector<uint8_t>& bytes,
                       const Rejection& want) {
    c.feed_server(bytes);
    EXPECT_EQ(c.server_status, IoStatus::kError) << want.name;
    EXPECT_EQ(c.server->error(), want.tls_error) << want.name;
    EXPECT_EQ(c.server->compact_error(), want.error) << want.name;
    std::vector<uint8_t> out = c.server->take_ciphertext();
    if (want.alert == 0) {
      EXPECT_TRUE(out.empty()) << want.name;
    } else {
      const auto opened = f.open(out);
      ASSERT_EQ(opened.status, RecordLayer::Opened::kRecord) << want.name;
      EXPECT_EQ(opened.content_type, RecordLayer::kAlert) << want.name;
      ASSERT_EQ(opened.content_bytes, 2u);
      EXPECT_EQ(out[5], 2) << want.name;  // fatal
      EXPECT_EQ(out[6], want.alert) << want.name;
    }
    // Dead for good: more input is swallowed, writes fail.
    EXPECT_EQ(c.server->feed_ciphertext(bytes), bytes.size());
    EXPECT_EQ(c.server->write_plaintext(std::vector<uint8_t>{1}).status, IoStatus::kError);
  }
};

TEST_F(CompactRejectTest, EveryRejection) {
  using Make = std::vector<uint8_t> (*)(RecordLayer&);
  struct Case {
    Rejection want;
    Make make;
  };
  const Case cases[] = {
      {{"tampered", CompactError::kBadRecordMac, TlsError::kDecrypt, SSL_AD_BAD_RECORD_MAC},
       [](RecordLayer& f) {
         auto r = seal(f, RecordLayer::kApplicationData, {'h', 'i'});
         r[7] ^= 1;
         return r;
       }},
      {{"short", CompactError::kBadRecordMac, TlsError::kDecrypt, SSL_AD_BAD_RECORD_MAC},
       [](RecordLayer&) { return std::vector<uint8_t>{23, 3, 3, 0, 3, 1, 2, 3}; }},
      {{"outer_handshake", CompactError::kRecordType, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) {
         auto r = seal(f, RecordLayer::kApplicationData, {'h'});
         r[0] = 22;
         return r;
       }},
      {{"change_cipher_spec", CompactError::kRecordType, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer&) { return std::vector<uint8_t>{20, 3, 3, 0, 1, 1}; }},
      {{"plain_http", CompactError::kRecordType, TlsError::kProtocol, SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer&) {
         return std::vector<uint8_t>{'G', 'E'};
       }},
      {{"inner_change_cipher_spec", CompactError::kRecordType, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) { return seal(f, 20, {1}); }},
      {{"version", CompactError::kRecordVersion, TlsError::kProtocol, SSL_AD_PROTOCOL_VERSION},
       [](RecordLayer& f) {
         auto r = seal(f, RecordLayer::kApplicationData, {'h'});
         r[2] = 1;
         return r;
       }},
      {{"ciphertext_overflow", CompactError::kRecordOverflow, TlsError::kProtocol,
        SSL_AD_RECORD_OVERFLOW},
       [](RecordLayer&) {
         return std::vector<uint8_t>{23, 3, 3, (16384 + 257) >> 8, (16384 + 257) & 0xff};
       }},
      {{"plaintext_overflow", CompactError::kRecordOverflow, TlsError::kProtocol,
        SSL_AD_RECORD_OVERFLOW},
       [](RecordLayer& f) {
         // 2^14 of content + type + one byte of padding + ... = 2^14 + 2 > 2^14 + 1
         auto r = seal(f, RecordLayer::kApplicationData, std::vector<uint8_t>(16384, 'x'), 2);
         return r;
       }},
      {{"all_zero", CompactError::kEmptyRecord, TlsError::kProtocol, SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) { return seal(f, 0, {}, 10); }},
      {{"new_session_ticket", CompactError::kHandshakeMessage, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) {
         return seal(f, RecordLayer::kHandshake, {4, 0, 0, 1, 0});
       }},
      {{"certificate_request", CompactError::kHandshakeMessage, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) { return seal(f, RecordLayer::kHandshake, {13}); }},
      {{"empty_handshake", CompactError::kHandshakeMessage, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) { return seal(f, RecordLayer::kHandshake, {}); }},
      {{"key_update_not_at_record_end", CompactError::kHandshakeMessage, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) {
         return seal(f, RecordLayer::kHandshake, {24, 0, 0, 1, 0, 24, 0, 0, 1, 0});
       }},
      {{"data_inside_split_key_update", CompactError::kHandshakeMessage, TlsError::kProtocol,
        SSL_AD_UNEXPECTED_MESSAGE},
       [](RecordLayer& f) {
         auto r = seal(f, RecordLayer::kHandshake, {24, 0});
         auto d = seal(f, RecordLayer::kApplicationData, {'x'});
         r.insert(r.end(), d.begin(), d.end());
         return r;
       }},
      {{"key_update_length", CompactError::kDecode, TlsError::kProtocol, SSL_AD_DECODE_ERROR},
       [](RecordLayer& f) {
         return seal(f, RecordLayer::kHandshake, {24, 0, 0, 2, 0, 0});
       }},
      {{"key_update_value", CompactError::kDecode, TlsError::kProtocol, SSL_AD_ILLEGAL_PARAMETER},
       [](RecordLayer& f) {
         return seal(f, RecordLayer::kHandshake, {24, 0, 0, 1, 2});
       }},
      {{"alert_length", CompactError::kDecode, TlsError::kProtocol, SSL_AD_DECODE_ERROR},
       [](RecordLayer& f) {
         return seal(f, RecordLayer::kAlert, {1, 0, 1, 0});
       }},
      {{"peer_fatal_alert", CompactError::kNone, TlsError::kPeerAlert, 0},
       [](RecordLayer& f) {
         return seal(f, RecordLayer::kAlert, {2, SSL_AD_INTERNAL_ERROR});
       }},
  };
  for (const Case& k : cases) {
    auto s = server();
    RawClient c(s.get());
    establish(c);
    auto f = c.forge();
    expect_rejected(c, *f, k.make(*f), k.want);
    if (k.want.tls_error == TlsError::kPeerAlert) {
      EXPECT_EQ(s->error_reason(), "TLSV1_ALERT_INTERNAL_ERROR");
    }
  }
}

TEST_F(CompactRejectTest, SequenceExhaustionAndTruncation) {
  {
    auto s = server();
    RawClient c(s.get());
    establish(c);
    auto f = c.forge();
    s->set_sequences_for_testing(UINT64_MAX, 0);
    expect_rejected(c, *f, seal(*f, RecordLayer::kApplicationData, {'x'}),
                    {"read_seq", CompactError::kSequenceOverflow, TlsError::kProtocol, 0});
  }
  {
    auto s = server();
    RawClient c(s.get());
    establish(c);
    s->set_sequences_for_testing(0, UINT64_MAX);
    EXPECT_EQ(s->write_plaintext(std::vector<uint8_t>{1}).status, IoStatus::kError);
    EXPECT_EQ(s->compact_error(), CompactError::kSequenceOverflow);
    EXPECT_TRUE(s->pending_ciphertext().empty());
  }
  {
    auto s = server();
    RawClient c(s.get());
    establish(c);
    auto f = c.forge();
    auto r = seal(*f, RecordLayer::kApplicationData, {'x', 'y'});
    r.pop_back();
    c.feed_server(r);
    EXPECT_EQ(c.server_status, IoStatus::kWantMore);
    s->feed_eof();
    c.feed_server({});  // nothing more: reads what is there
    EXPECT_EQ(c.server_status, IoStatus::kError);
    EXPECT_EQ(s->error(), TlsError::kTruncated);
  }
}

TEST_F(CompactTest, Tls12KeepsItsSsl) {
  auto s = server(true, true);
  RawClient c(s.get(), nullptr, TLS1_2_VERSION);
  c.pump();
  ASSERT_TRUE(s->handshake_done());
  EXPECT_EQ(s->protocol_version(), TLS1_2_VERSION);
  EXPECT_FALSE(s->compact());
  const auto msg = random_bytes(30000, 4);
  c.client_write(msg);
  c.pump();
  EXPECT_EQ(c.server_in, msg);
}

TEST_F(CompactTest, ParkDropsContextsAndResumesTransparently) {
  auto s = server();
  RawClient c(s.get());
  establish(c);
  // The AEAD contexts are derived on first use: a fresh compact connection starts parked.
  EXPECT_TRUE(s->parked());
  for (int i = 0; i < 3; ++i) {
    s->park();
    EXPECT_TRUE(s->parked());
    const auto up = random_bytes(1000, static_cast<uint32_t>(i));
    c.server_in.clear();
    c.client_write(up);
    c.to_server();
    EXPECT_EQ(c.server_in, up);
    EXPECT_FALSE(s->parked());
    s->park();
    ASSERT_EQ(SSL_key_update(c.ssl.get(), SSL_KEY_UPDATE_REQUESTED), 1);
    c.client_write(up);
    c.to_server();
    const auto down = random_bytes(700, static_cast<uint32_t>(i + 10));
    c.client_in.clear();
    c.server_write(down);
    EXPECT_EQ(c.client_in, down);
    EXPECT_EQ(s->key_updates_sent(), static_cast<uint32_t>(i + 1));
  }
  EXPECT_EQ(s->error(), TlsError::kNone);
}

// ---- Compact clients (ClientOptions::compact_after_handshake) --------------------------------

// A raw BoringSSL server talking to a herald client Connection: its exported keys forge the
// post-handshake messages a server may send (tickets, KeyUpdates).
struct RawServer : RawPeer {
  Connection* client = nullptr;
  std::vector<uint8_t> client_in;  // plaintext the client read
  IoStatus client_status = IoStatus::kWantMore;

  RawServer(const CertifiedKey& key, Connection* c) : client(c) {
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
    EXPECT_EQ(SSL_CTX_set_chain_and_key(ctx.get(), key.chain_data(), key.chain_length(),
                                        key.private_key(), nullptr),
              1);
    make_ssl(/*server_side=*/true);
  }

  void feed_client(std::span<const uint8_t> bytes) {
    feed_and_read(*client, bytes, feed_step, client_in, client_status);
  }
  void handshake() {
    for (int i = 0; i < 8 && !(SSL_is_init_finished(ssl.get()) && client->handshake_done()); ++i) {
      give(*client);
      (void)SSL_do_handshake(ssl.get());
      feed_client(written());
    }
    give(*client);
    (void)SSL_do_handshake(ssl.get());  // the client's Finished
  }
  // What the server's SSL reads from the client now.
  std::vector<uint8_t> server_read() {
    give(*client);
    std::vector<uint8_t> got;
    uint8_t buf[16384];
    int n;
    while ((n = SSL_read(ssl.get(), buf, sizeof(buf))) > 0) got.insert(got.end(), buf, buf + n);
    return got;
  }
};

class CompactClientTest : public CompactTest {
 protected:
  std::unique_ptr<Connection> compact_client() {
    ClientOptions opt;
    opt.pin = true;
    opt.pinned_sha256 = key_->leaf_sha256();
    opt.compact_after_handshake = true;
    auto ctx = ClientContext::create(opt);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    auto c = Connection::client(*ctx, "localhost");
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }
  // A NewSessionTicket message of `body_bytes` (at least 15): lifetime, age_add, a 1-byte
  // nonce, a ticket filling the rest, no extensions.
  static std::vector<uint8_t> ticket(uint32_t body_bytes) {
    std::vector<uint8_t> m = {4, static_cast<uint8_t>(body_bytes >> 16),
                              static_cast<uint8_t>(body_bytes >> 8),
                              static_cast<uint8_t>(body_bytes)};
    const uint32_t ticket_bytes = body_bytes - 14;
    const std::vector<uint8_t> fixed = {0, 0, 0x1c, 0x20, 1, 2, 3, 4, 1, 9};
    m.insert(m.end(), fixed.begin(), fixed.end());
    m.push_back(static_cast<uint8_t>(ticket_bytes >> 8));
    m.push_back(static_cast<uint8_t>(ticket_bytes));
    m.insert(m.end(), ticket_bytes, 0xab);
    m.push_back(0);
    m.push_back(0);
    return m;
  }
};

// Against herald's server both ways (its tickets come through the SSL's first write, or are
// flushed as the compact server switches): the client passes them over and keeps no session.
TEST_F(CompactClientTest, AgainstAServerWithAndWithoutItsSsl) {
  for (const bool server_compact : {true, false}) {
    auto s = server(server_compact);
    auto c = compact_client();
    Wire wire{c.get(), s.get()};
    wire.pump();
    ASSERT_TRUE(c->handshake_done());
    EXPECT_TRUE(c->compact()) << server_compact;
    EXPECT_EQ(s->compact(), server_compact);
    std::vector<uint8_t> up;
    std::vector<uint8_t> down;
    for (uint32_t i = 0; i < 5; ++i) {
      const auto a = random_bytes(20000 + i, i);
      const auto b = random_bytes(30000 + i, i + 100);
      ASSERT_EQ(c->write_plaintext(a).bytes, a.size());
      ASSERT_EQ(s->write_plaintext(b).bytes, b.size());
      wire.pump();
      up.insert(up.end(), a.begin(), a.end());
      down.insert(down.end(), b.begin(), b.end());
    }
    EXPECT_EQ(wire.b_received, up) << server_compact;
    EXPECT_EQ(wire.a_received, down) << server_compact;
    EXPECT_EQ(c->error(), TlsError::kNone) << c->error_reason();
    EXPECT_EQ(c->session(), nullptr);  // tickets passed over: nothing to resume with
    c->close();
    wire.pump();
    EXPECT_TRUE(wire.b_closed);
  }
}

// Tickets split at every place across records and coalesced behind each other, a KeyUpdate
// asking for ours at the end of a record, then data under the server's next key; fed whole
// and byte by byte.
TEST_F(CompactClientTest, PassesOverTicketsSplitAndCoalesced) {
  for (const size_t step : {size_t{0}, size_t{1}}) {
    auto c = compact_client();
    RawServer s(*key_, c.get());
    s.handshake();
    ASSERT_TRUE(c->handshake_done());
    ASSERT_TRUE(c->compact());
    auto f = s.forge();
    s.feed_step = step;
    const auto t1 = ticket(40);
    const auto t2 = ticket(15);
    std::vector<uint8_t> wire;
    auto add = [&wire](const std::vector<uint8_t>& r) {
      wire.insert(wire.end(), r.begin(), r.end());
    };
    add(seal(*f, RecordLayer::kHandshake, {t1.begin(), t1.begin() + 2}));  // inside the header
    add(seal(*f, RecordLayer::kHandshake, {t1.begin() + 2, t1.begin() + 10}));
    std::vector<uint8_t> rest(t1.begin() + 10, t1.end());
    rest.insert(rest.end(), t2.begin(), t2.end());
    rest.insert(rest.end(), {24, 0, 0, 1, 1});  // KeyUpdate(update_requested) ends the record
    add(seal(*f, RecordLayer::kHandshake, rest));
    ASSERT_TRUE(f->update_write_key());
    add(seal(*f, RecordLayer::kApplicationData, {'h', 'e', 'l', 'l', 'o'}));
    s.feed_client(wire);
    EXPECT_EQ(c->error(), TlsError::kNone) << c->error_reason() << " step " << step;
    EXPECT_EQ(s.client_in, (std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o'})) << step;
    EXPECT_EQ(c->key_updates_received(), 1u);
    EXPECT_EQ(c->key_updates_sent(), 1u);
    // The server's SSL reads the client's answering KeyUpdate and what follows under its key.
    const auto pong = random_bytes(3000, 7);
    ASSERT_EQ(c->write_plaintext(pong).bytes, pong.size());
    EXPECT_EQ(s.server_read(), pong) << step;
  }
}

TEST_F(CompactClientTest, RejectsWhatAServerMayNotSend) {
  struct Case {
    const char* name;
    std::vector<std::vector<uint8_t>> records;  // each sealed as handshake, except 'x'
    CompactError want;
  };
  const std::vector<uint8_t> data = {'x'};
  const Case cases[] = {
      {"ticket_too_short",
       {{4, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
       CompactError::kDecode},
      {"certificate_request", {{13, 0, 0, 0}}, CompactError::kHandshakeMessage},
      {"data_inside_a_split_ticket", {{4, 0, 0, 40, 0, 0}, data}, CompactError::kHandshakeMessage},
      {"key_update_inside_a_ticket_record", {{24, 0, 0, 1, 0, 4}}, CompactError::kHandshakeMessage},
  };
  for (const Case& k : cases) {
    auto c = compact_client();
    RawServer s(*key_, c.get());
    s.handshake();
    ASSERT_TRUE(c->compact()) << k.name;
    auto f = s.forge();
    std::vector<uint8_t> wire;
    for (const auto& r : k.records) {
      const auto sealed = seal(*f,
                               &r == &k.records.back() && r == data ? RecordLayer::kApplicationData
                                                                    : RecordLayer::kHandshake,
                               r);
      wire.insert(wire.end(), sealed.begin(), sealed.end());
    }
    s.feed_client(wire);
    EXPECT_EQ(c->compact_error(), k.want) << k.name;
    EXPECT_NE(c->error(), TlsError::kNone) << k.name;
  }
}

TEST(RecordLayerTest, AllThreeSuitesRoundTripAndRejectOthers) {
  const std::vector<uint8_t> s32(32, 7);
  const std::vector<uint8_t> t32(32, 9);
  const std::vector<uint8_t> s48(48, 7);
  const std::vector<uint8_t> t48(48, 9);
  for (const uint16_t suite : {0x1301, 0x1302, 0x1303}) {
    const auto& a = suite == 0x1302 ? s48 : s32;
    const auto& b = suite == 0x1302 ? t48 : t32;
    auto one = RecordLayer::create(suite, a, 5, b, 9);
    auto two = RecordLayer::create(suite, b, 9, a, 5);
    ASSERT_NE(one, nullptr);
    ASSERT_NE(two, nullptr);
    for (int i = 0; i < 3; ++i) {
      auto r = seal(*one, 23, {'p', static_cast<uint8_t>(i)}, static_cast<size_t>(i));
      auto o = two->open(r);
      ASSERT_EQ(o.status, RecordLayer::Opened::kRecord) << suite;
      EXPECT_EQ(o.content_bytes, 2u);
      EXPECT_EQ(r[6], i);
      ASSERT_TRUE(one->update_write_key());
      ASSERT_TRUE(two->update_read_key());
    }
  }
  EXPECT_EQ(RecordLayer::create(0x1304, s32, 0, s32, 0), nullptr);  // CCM: not offered
  EXPECT_EQ(RecordLayer::create(0x1302, s32, 0, s32, 0), nullptr);  // wrong secret length
}

}  // namespace
}  // namespace herald::tls

// In-memory TLS tests: client and server connections exchange ciphertext through a test wire,
// covering versions, ALPN, data integrity, resumption with rotating ticket keys, certificate
// reload, client certificates, pinning, and malformed or truncated input.
#include "platform/tls/connection.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <atomic>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "platform/log/log.h"
#include "tests/unit/platform/tls/tls_test_util.h"

namespace herald::tls {
namespace {

using testing::load;
using testing::make_pem;
using testing::TempDir;
using testing::Wire;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

class TlsConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_pem_ = make_pem();
    server_key_ = load(server_pem_);
    ca_path_ = dir_.file("server_ca.pem");
    write_text(ca_path_, server_pem_.cert_pem);
  }

  std::shared_ptr<ServerContext> server_ctx(ServerOptions opt = {}) {
    auto ctx = ServerContext::create(std::move(opt), server_key_);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }
  std::shared_ptr<ClientContext> client_ctx(ClientOptions opt = {}) {
    if (opt.ca_file.empty() && !opt.pin) opt.ca_file = ca_path_;
    auto ctx = ClientContext::create(std::move(opt));
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }
  static std::unique_ptr<Connection> server_conn(const std::shared_ptr<ServerContext>& ctx) {
    auto c = Connection::server(ctx);
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }
  static std::unique_ptr<Connection> client_conn(const std::shared_ptr<ClientContext>& ctx,
                                                 ClientSession resume = nullptr,
                                                 const std::string& name = "localhost") {
    auto c = Connection::client(ctx, name, std::move(resume));
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }

  TempDir dir_;
  PemCertificate server_pem_;
  std::shared_ptr<const CertifiedKey> server_key_;
  std::string ca_path_;
};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Writes everything, pumping the wire whenever the sender's output queue is full.
void write_all(Connection* from, Wire* wire, const std::vector<uint8_t>& data) {
  size_t done = 0;
  while (done < data.size()) {
    IoResult r = from->write_plaintext(std::span<const uint8_t>(data).subspan(done));
    ASSERT_NE(r.status, IoStatus::kError) << from->error_reason();
    done += r.bytes;
    wire->pump();
  }
  wire->pump();
}

TEST_F(TlsConnectionTest, Tls13HandshakeVerifiesCertificateAndNegotiatesAlpn) {
  ServerOptions sopt;
  sopt.alpn_protocols = {"herald/1", "http/1.1"};
  ClientOptions copt;
  copt.alpn_protocols = {"http/1.1", "herald/1"};
  auto server = server_conn(server_ctx(sopt));
  auto client = client_conn(client_ctx(copt));
  EXPECT_FALSE(client->pending_ciphertext().empty()) << "ClientHello is ready at once";
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(client->handshake_done()) << client->error_reason();
  ASSERT_TRUE(server->handshake_done()) << server->error_reason();
  EXPECT_EQ(client->protocol_version(), TLS1_3_VERSION);
  EXPECT_EQ(server->protocol_version(), TLS1_3_VERSION);
  // Server preference wins.
  EXPECT_EQ(server->alpn(), "herald/1");
  EXPECT_EQ(client->alpn(), "herald/1");
  EXPECT_FALSE(client->resumed());
  ASSERT_TRUE(client->peer_certificate().present);
  EXPECT_EQ(client->peer_certificate().sha256, server_key_->leaf_sha256());
  EXPECT_FALSE(server->peer_certificate().present);
}

TEST_F(TlsConnectionTest, Tls12WhenAllowedAndRefusedByDefault) {
  ClientOptions copt;
  copt.max_version = TlsVersion::kTls12;
  auto client_ctx12 = client_ctx(copt);

  ServerOptions sopt;
  sopt.min_version = TlsVersion::kTls12;
  auto server = server_conn(server_ctx(sopt));
  auto client = client_conn(client_ctx12);
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(server->handshake_done()) << server->error_reason();
  ASSERT_TRUE(client->handshake_done()) << client->error_reason();
  EXPECT_EQ(server->protocol_version(), TLS1_2_VERSION);
  EXPECT_STREQ(server->cipher_name(), "ECDHE-ECDSA-AES128-GCM-SHA256");

  auto strict_server = server_conn(server_ctx());  // TLS 1.3 only
  auto old_client = client_conn(client_ctx12);
  Wire wire2{old_client.get(), strict_server.get()};
  wire2.pump();
  EXPECT_EQ(strict_server->handshake_state(), HandshakeState::kFailed);
  EXPECT_EQ(strict_server->error(), TlsError::kHandshake) << strict_server->error_reason();
  EXPECT_EQ(old_client->error(), TlsError::kPeerAlert) << old_client->error_reason();
}

class TlsVersionTest : public TlsConnectionTest,
                       public ::testing::WithParamInterface<TlsVersion> {};

TEST_P(TlsVersionTest, LargeDataBothWaysIsByteExact) {
  ServerOptions sopt;
  sopt.min_version = TlsVersion::kTls12;
  ClientOptions copt;
  copt.max_version = GetParam();
  auto server = server_conn(server_ctx(sopt));
  auto client = client_conn(client_ctx(copt));
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(server->handshake_done());
  EXPECT_EQ(server->protocol_version(), static_cast<uint16_t>(GetParam()));

  // 1 MiB + odd bytes: many full records, a partial last one, and the output limit hit.
  const std::vector<uint8_t> up = random_bytes((1 << 20) + 123, 1);
  const std::vector<uint8_t> down = random_bytes((1 << 19) + 7, 2);
  write_all(client.get(), &wire, up);
  write_all(server.get(), &wire, down);
  EXPECT_EQ(wire.b_received, up);
  EXPECT_EQ(wire.a_received, down);

  // A single byte round-trips too.
  const std::vector<uint8_t> one = {0x42};
  write_all(server.get(), &wire, one);
  ASSERT_EQ(wire.a_received.size(), down.size() + 1);
  EXPECT_EQ(wire.a_received.back(), 0x42);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsVersionTest,
                         ::testing::Values(TlsVersion::kTls12, TlsVersion::kTls13));

TEST_F(TlsConnectionTest, OutputLimitBoundsBufferedCiphertext) {
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx());
  Wire wire{client.get(), server.get()};
  wire.pump();
  const std::vector<uint8_t> big = random_bytes(1 << 20, 3);
  IoResult r = client->write_plaintext(big);
  ASSERT_EQ(r.status, IoStatus::kOk);
  EXPECT_LT(r.bytes, big.size());
  EXPECT_LE(client->pending_ciphertext().size(), Connection::kMaxBufferedOutputBytes + 16384 + 256);
  IoResult again = client->write_plaintext(std::span<const uint8_t>(big).subspan(r.bytes));
  EXPECT_EQ(again.status, IoStatus::kWantMore);
  EXPECT_EQ(again.bytes, 0u);
}

TEST_F(TlsConnectionTest, WriteBeforeHandshakeWaits) {
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx());
  const uint8_t msg[] = {'h', 'i'};
  EXPECT_EQ(client->write_plaintext(msg).status, IoStatus::kWantMore);
  uint8_t buf[16];
  EXPECT_EQ(server->read_plaintext(buf).status, IoStatus::kWantMore);
}

TEST_F(TlsConnectionTest, AlpnWithoutOverlapFailsHandshake) {
  ServerOptions sopt;
  sopt.alpn_protocols = {"herald/1"};
  ClientOptions copt;
  copt.alpn_protocols = {"h2"};
  auto server = server_conn(server_ctx(sopt));
  auto client = client_conn(client_ctx(copt));
  Wire wire{client.get(), server.get()};
  wire.pump();
  EXPECT_EQ(server->error(), TlsError::kHandshake) << server->error_reason();
  EXPECT_EQ(client->error(), TlsError::kPeerAlert) << client->error_reason();
  EXPECT_EQ(client->error_reason(), "TLSV1_ALERT_NO_APPLICATION_PROTOCOL");
}

TEST_F(TlsConnectionTest, ClientWithoutAlpnIsAdmittedWithEmptyAlpn) {
  ServerOptions sopt;
  sopt.alpn_protocols = {"herald/1"};
  auto server = server_conn(server_ctx(sopt));
  auto client = client_conn(client_ctx());
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(server->handshake_done());
  EXPECT_EQ(server->alpn(), "");
}

// Runs a full connection, exchanging data so the client processes the post-handshake ticket,
// and returns the session it received.
ClientSession connect_and_get_session(const std::shared_ptr<ServerContext>& sctx,
                                      const std::shared_ptr<ClientContext>& cctx,
                                      ClientSession resume, bool* resumed) {
  auto server = Connection::server(sctx);
  auto client = Connection::client(cctx, "localhost", std::move(resume));
  EXPECT_TRUE(server.ok() && client.ok());
  Wire wire{client->get(), server->get()};
  wire.pump();
  EXPECT_TRUE((*server)->handshake_done()) << (*server)->error_reason();
  EXPECT_TRUE((*client)->handshake_done()) << (*client)->error_reason();
  const uint8_t ping[] = {'p'};
  EXPECT_EQ((*server)->write_plaintext(ping).status, IoStatus::kOk);
  wire.pump();
  EXPECT_EQ(wire.a_received.size(), 1u);
  *resumed = (*server)->resumed();
  EXPECT_EQ((*client)->resumed(), *resumed);
  return (*client)->session();
}

class TlsResumptionTest : public TlsConnectionTest,
                          public ::testing::WithParamInterface<TlsVersion> {};

TEST_P(TlsResumptionTest, TicketResumesAcrossOneRotationButNotTwo) {
  ServerOptions sopt;
  sopt.min_version = TlsVersion::kTls12;
  auto sctx = server_ctx(sopt);
  ClientOptions copt;
  copt.max_version = GetParam();
  auto cctx = client_ctx(copt);

  bool resumed = true;
  ClientSession first = connect_and_get_session(sctx, cctx, nullptr, &resumed);
  EXPECT_FALSE(resumed);
  ASSERT_NE(first, nullptr) << "no ticket received";

  ClientSession second = connect_and_get_session(sctx, cctx, first, &resumed);
  EXPECT_TRUE(resumed) << "ticket under the current key resumes";

  // One rotation: the ticket's key is now the previous key; it still opens (and is renewed).
  sctx->rotate_ticket_keys();
  ClientSession third = connect_and_get_session(sctx, cctx, first, &resumed);
  EXPECT_TRUE(resumed) << "ticket under the previous key resumes";
  ASSERT_NE(third, nullptr);

  // Two rotations: the key that sealed `first` is wiped; the handshake falls back to a full one.
  sctx->rotate_ticket_keys();
  ClientSession fourth = connect_and_get_session(sctx, cctx, first, &resumed);
  EXPECT_FALSE(resumed) << "ticket under a rotated-out key must not resume";
  EXPECT_EQ(sctx->ticket_keys().rotations(), 2u);
  // The renewed ticket from the third connection (sealed after the first rotation) still works.
  connect_and_get_session(sctx, cctx, third, &resumed);
  EXPECT_TRUE(resumed);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsResumptionTest,
                         ::testing::Values(TlsVersion::kTls12, TlsVersion::kTls13));

TEST_F(TlsConnectionTest, CertificateReloadKeepsOldConnectionAndServesNewCert) {
  // The usual renewal: the same CA issues the next certificate for the same name.
  const PemCertificate ca = make_pem(KeyType::kEcdsaP256, nullptr, true, "herald node CA");
  server_pem_ = make_pem(KeyType::kEcdsaP256, &ca);
  server_key_ = load(server_pem_);
  const PemCertificate next_pem = make_pem(KeyType::kEcdsaP256, &ca);
  std::shared_ptr<const CertifiedKey> next_key = load(next_pem);
  const std::string ca_path = dir_.file("node_ca.pem");
  write_text(ca_path, ca.cert_pem);
  ClientOptions copt;
  copt.ca_file = ca_path;
  auto cctx = client_ctx(copt);
  auto sctx = server_ctx();

  auto server1 = server_conn(sctx);
  auto client1 = client_conn(cctx);
  Wire wire1{client1.get(), server1.get()};
  wire1.pump();
  ASSERT_TRUE(client1->handshake_done());
  EXPECT_EQ(client1->peer_certificate().sha256, server_key_->leaf_sha256());

  sctx->set_certificate(next_key);
  EXPECT_EQ(sctx->certificate()->leaf_sha256(), next_key->leaf_sha256());

  // The old connection keeps working both ways after the reload.
  const std::vector<uint8_t> up = random_bytes(70000, 4);
  const std::vector<uint8_t> down = random_bytes(50000, 5);
  write_all(client1.get(), &wire1, up);
  write_all(server1.get(), &wire1, down);
  EXPECT_EQ(wire1.b_received, up);
  EXPECT_EQ(wire1.a_received, down);

  // A new handshake sees the new certificate.
  auto server2 = server_conn(sctx);
  auto client2 = client_conn(cctx);
  Wire wire2{client2.get(), server2.get()};
  wire2.pump();
  ASSERT_TRUE(client2->handshake_done()) << client2->error_reason();
  EXPECT_EQ(client2->peer_certificate().sha256, next_key->leaf_sha256());
  EXPECT_NE(next_key->leaf_sha256(), server_key_->leaf_sha256());
}

TEST_F(TlsConnectionTest, HandshakeInFlightDuringReloadFinishes) {
  auto sctx = server_ctx();
  auto server = server_conn(sctx);
  auto client = client_conn(client_ctx());
  // ClientHello in; the server has chosen its certificate and answered.
  (void)server->feed_ciphertext(client->take_ciphertext());
  ASSERT_FALSE(server->pending_ciphertext().empty());
  sctx->set_certificate(load(make_pem()));
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(client->handshake_done()) << client->error_reason();
  EXPECT_EQ(client->peer_certificate().sha256, server_key_->leaf_sha256());
}

TEST_F(TlsConnectionTest, PinnedCertificateAcceptedOtherRejected) {
  ClientOptions good;
  good.pin = true;
  good.pinned_sha256 = server_key_->leaf_sha256();
  auto sctx = server_ctx();
  {
    auto server = server_conn(sctx);
    auto client = client_conn(client_ctx(good), nullptr, "any-name.invalid");
    Wire wire{client.get(), server.get()};
    wire.pump();
    EXPECT_TRUE(client->handshake_done()) << client->error_reason();
  }
  ClientOptions bad = good;
  bad.pinned_sha256[0] ^= 1;
  auto server = server_conn(sctx);
  auto client = client_conn(client_ctx(bad));
  Wire wire{client.get(), server.get()};
  wire.pump();
  EXPECT_EQ(client->error(), TlsError::kCertificate) << client->error_reason();
  EXPECT_EQ(server->error(), TlsError::kPeerAlert) << server->error_reason();
}

TEST_F(TlsConnectionTest, CaVerificationChecksServerName) {
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx(), nullptr, "not-this-host.example");
  Wire wire{client.get(), server.get()};
  wire.pump();
  EXPECT_EQ(client->error(), TlsError::kCertificate) << client->error_reason();

  auto server_ip = server_conn(server_ctx());
  auto client_ip = client_conn(client_ctx(), nullptr, "127.0.0.1");
  Wire wire_ip{client_ip.get(), server_ip.get()};
  wire_ip.pump();
  EXPECT_TRUE(client_ip->handshake_done()) << client_ip->error_reason();
}

TEST_F(TlsConnectionTest, Ed25519ServerCertificate) {
  const PemCertificate ed = make_pem(KeyType::kEd25519);
  server_key_ = load(ed);
  write_text(ca_path_, ed.cert_pem);
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx());
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(client->handshake_done()) << client->error_reason();
  EXPECT_EQ(client->peer_certificate().sha256, server_key_->leaf_sha256());
}

class TlsMutualAuthTest : public TlsConnectionTest,
                          public ::testing::WithParamInterface<TlsVersion> {
 protected:
  void SetUp() override {
    TlsConnectionTest::SetUp();
    ca_pem_ = make_pem(KeyType::kEcdsaP256, nullptr, true, "herald test CA");
    client_ca_path_ = dir_.file("client_ca.pem");
    write_text(client_ca_path_, ca_pem_.cert_pem);
  }
  std::shared_ptr<ServerContext> mtls_server(ClientAuth mode) {
    ServerOptions sopt;
    sopt.min_version = TlsVersion::kTls12;
    sopt.client_auth = mode;
    sopt.client_ca_file = client_ca_path_;
    return server_ctx(sopt);
  }
  std::shared_ptr<ClientContext> client_with(std::shared_ptr<const CertifiedKey> cert) {
    ClientOptions copt;
    copt.max_version = GetParam();
    copt.client_certificate = std::move(cert);
    return client_ctx(copt);
  }
  PemCertificate ca_pem_;
  std::string client_ca_path_;
};

TEST_P(TlsMutualAuthTest, ClientCertificateFromTrustedCaAccepted) {
  const PemCertificate leaf = make_pem(KeyType::kEcdsaP256, &ca_pem_, false, "device-7");
  auto leaf_key = load(leaf);
  auto server = server_conn(mtls_server(ClientAuth::kRequire));
  auto client = client_conn(client_with(leaf_key));
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(server->handshake_done()) << server->error_reason();
  ASSERT_TRUE(server->peer_certificate().present);
  EXPECT_EQ(server->peer_certificate().sha256, leaf_key->leaf_sha256());
  EXPECT_NE(server->peer_certificate().subject.find("device-7"), std::string::npos);
}

TEST_P(TlsMutualAuthTest, MissingOrUntrustedClientCertificateRejected) {
  auto sctx = mtls_server(ClientAuth::kRequire);
  {
    auto server = server_conn(sctx);
    auto client = client_conn(client_with(nullptr));
    Wire wire{client.get(), server.get()};
    wire.pump();
    EXPECT_EQ(server->error(), TlsError::kCertificate) << server->error_reason();
    // TLS 1.3 clients finish first and learn of the rejection from the alert.
    EXPECT_EQ(client->error(), TlsError::kPeerAlert) << client->error_reason();
  }
  const PemCertificate rogue_ca = make_pem(KeyType::kEcdsaP256, nullptr, true, "rogue CA");
  const PemCertificate rogue = make_pem(KeyType::kEcdsaP256, &rogue_ca, false, "rogue");
  auto server = server_conn(sctx);
  auto client = client_conn(client_with(load(rogue)));
  Wire wire{client.get(), server.get()};
  wire.pump();
  EXPECT_EQ(server->error(), TlsError::kCertificate) << server->error_reason();
  EXPECT_FALSE(server->handshake_done());
}

TEST_P(TlsMutualAuthTest, OptionalClientAuthAdmitsClientWithoutCertificate) {
  auto server = server_conn(mtls_server(ClientAuth::kOptional));
  auto client = client_conn(client_with(nullptr));
  Wire wire{client.get(), server.get()};
  wire.pump();
  ASSERT_TRUE(server->handshake_done()) << server->error_reason();
  EXPECT_FALSE(server->peer_certificate().present);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsMutualAuthTest,
                         ::testing::Values(TlsVersion::kTls12, TlsVersion::kTls13));

TEST_F(TlsConnectionTest, PlainHttpIsAProtocolErrorWithAlert) {
  auto server = server_conn(server_ctx());
  const std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const size_t n = server->feed_ciphertext(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(http.data()), http.size()));
  EXPECT_EQ(n, http.size());
  EXPECT_EQ(server->handshake_state(), HandshakeState::kFailed);
  EXPECT_EQ(server->error(), TlsError::kProtocol);
  EXPECT_EQ(server->error_reason(), "HTTP_REQUEST");
  uint8_t buf[64];
  EXPECT_EQ(server->read_plaintext(buf).status, IoStatus::kError);
  EXPECT_EQ(server->write_plaintext(buf).status, IoStatus::kError);
  // Further input is swallowed, not an infinite loop for the caller.
  EXPECT_EQ(server->feed_ciphertext(buf), sizeof(buf));
}

TEST_F(TlsConnectionTest, RandomGarbageNeverCrashes) {
  auto sctx = server_ctx();
  for (uint32_t seed = 0; seed < 200; ++seed) {
    auto server = server_conn(sctx);
    std::mt19937 rng(seed);
    std::vector<uint8_t> junk = random_bytes(1 + rng() % 3000, seed);
    if (seed % 2 == 0 && junk.size() > 5) {
      // Half the cases look like a handshake record header, to get past the first check.
      junk[0] = 0x16;
      junk[1] = 0x03;
      junk[2] = 0x01;
      junk[3] = static_cast<uint8_t>((junk.size() - 5) >> 8);
      junk[4] = static_cast<uint8_t>(junk.size() - 5);
    }
    (void)server->feed_ciphertext(junk);
    server->feed_eof();
    uint8_t buf[256];
    IoResult r = server->read_plaintext(buf);
    EXPECT_EQ(r.status, IoStatus::kError) << "seed " << seed;
    EXPECT_NE(server->error(), TlsError::kNone) << "seed " << seed;
    EXPECT_NE(server->error(), TlsError::kInternal) << "seed " << seed;
  }
}

TEST_F(TlsConnectionTest, TamperedRecordFailsDecrypt) {
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx());
  Wire wire{client.get(), server.get()};
  wire.pump();
  const uint8_t msg[] = "secret message";
  ASSERT_EQ(client->write_plaintext(msg).status, IoStatus::kOk);
  std::vector<uint8_t> record = client->take_ciphertext();
  record[record.size() - 3] ^= 0x10;  // inside the AEAD tag
  (void)server->feed_ciphertext(record);
  uint8_t buf[64];
  EXPECT_EQ(server->read_plaintext(buf).status, IoStatus::kError);
  EXPECT_EQ(server->error(), TlsError::kDecrypt) << server->error_reason();
  // The server queued a bad_record_mac alert for the peer.
  EXPECT_FALSE(server->pending_ciphertext().empty());
  (void)client->feed_ciphertext(server->take_ciphertext());
  EXPECT_EQ(client->read_plaintext(buf).status, IoStatus::kError);
  EXPECT_EQ(client->error(), TlsError::kPeerAlert);
}

TEST_F(TlsConnectionTest, TruncatedInputWaitsThenReportsTruncation) {
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx());
  std::vector<uint8_t> hello = client->take_ciphertext();
  ASSERT_GT(hello.size(), 10u);
  // Byte by byte through the first half: the server waits, never errs.
  for (size_t i = 0; i < hello.size() / 2; ++i) {
    ASSERT_EQ(server->feed_ciphertext(std::span<const uint8_t>(&hello[i], 1)), 1u);
    ASSERT_EQ(server->handshake_state(), HandshakeState::kInProgress);
  }
  EXPECT_TRUE(server->pending_ciphertext().empty());
  server->feed_eof();
  EXPECT_EQ(server->handshake_state(), HandshakeState::kFailed);
  EXPECT_EQ(server->error(), TlsError::kTruncated);

  // Established connection: half a record waits; the rest completes it.
  auto server2 = server_conn(server_ctx());
  auto client2 = client_conn(client_ctx());
  Wire wire{client2.get(), server2.get()};
  wire.pump();
  const std::vector<uint8_t> data = random_bytes(3000, 9);
  ASSERT_EQ(client2->write_plaintext(data).status, IoStatus::kOk);
  std::vector<uint8_t> record = client2->take_ciphertext();
  const size_t half = record.size() / 2;
  (void)server2->feed_ciphertext(std::span<const uint8_t>(record).first(half));
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(server2->read_plaintext(buf).status, IoStatus::kWantMore);
  (void)server2->feed_ciphertext(std::span<const uint8_t>(record).subspan(half));
  IoResult r = server2->read_plaintext(buf);
  ASSERT_EQ(r.status, IoStatus::kOk);
  EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(r.bytes)), data);
  // Then the transport ends without close_notify.
  server2->feed_eof();
  EXPECT_EQ(server2->read_plaintext(buf).status, IoStatus::kError);
  EXPECT_EQ(server2->error(), TlsError::kTruncated);
}

TEST_F(TlsConnectionTest, InputQueueIsBounded) {
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx());
  Wire wire{client.get(), server.get()};
  wire.pump();
  const std::vector<uint8_t> data = random_bytes(200000, 10);
  size_t written = 0;
  std::vector<uint8_t> ciphertext;
  while (written < data.size()) {
    IoResult r = client->write_plaintext(std::span<const uint8_t>(data).subspan(written));
    ASSERT_EQ(r.status, IoStatus::kOk);
    written += r.bytes;
    std::vector<uint8_t> c = client->take_ciphertext();
    ciphertext.insert(ciphertext.end(), c.begin(), c.end());
  }
  const size_t taken = server->feed_ciphertext(ciphertext);
  EXPECT_EQ(taken, Connection::kMaxBufferedInputBytes);
  // Draining plaintext makes room for the rest.
  std::vector<uint8_t> got;
  std::vector<uint8_t> buf(8192);
  size_t fed = taken;
  while (got.size() < data.size()) {
    IoResult r = server->read_plaintext(buf);
    if (r.status == IoStatus::kOk) {
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(r.bytes));
      continue;
    }
    ASSERT_EQ(r.status, IoStatus::kWantMore);
    ASSERT_LT(fed, ciphertext.size());
    fed += server->feed_ciphertext(std::span<const uint8_t>(ciphertext).subspan(fed));
  }
  EXPECT_EQ(got, data);
}

TEST_F(TlsConnectionTest, CloseNotifyBothWays) {
  auto server = server_conn(server_ctx());
  auto client = client_conn(client_ctx());
  Wire wire{client.get(), server.get()};
  wire.pump();
  const uint8_t last[] = {'b', 'y', 'e'};
  ASSERT_EQ(client->write_plaintext(last).status, IoStatus::kOk);
  client->close();
  EXPECT_EQ(client->write_plaintext(last).status, IoStatus::kClosed);
  wire.pump();
  // Data sent before close_notify arrives, then the close.
  EXPECT_EQ(wire.b_received, std::vector<uint8_t>(last, last + 3));
  EXPECT_TRUE(wire.b_closed);
  EXPECT_TRUE(server->close_notify_received());
  EXPECT_EQ(server->error(), TlsError::kNone);
  uint8_t buf[8];
  EXPECT_EQ(server->read_plaintext(buf).status, IoStatus::kClosed);
  // The server answers with its own close_notify (RFC 8446 §6.1: each side closes its write
  // direction), and may still send data first.
  ASSERT_EQ(server->write_plaintext(last).status, IoStatus::kOk);
  server->close();
  wire.pump();
  EXPECT_EQ(wire.a_received, std::vector<uint8_t>(last, last + 3));
  EXPECT_TRUE(client->close_notify_received());
  EXPECT_EQ(client->error(), TlsError::kNone);
}

TEST_F(TlsConnectionTest, ContextOptionsAreValidated) {
  ServerOptions mtls_without_ca;
  mtls_without_ca.client_auth = ClientAuth::kRequire;
  EXPECT_EQ(ServerContext::create(mtls_without_ca, server_key_).status().code(),
            absl::StatusCode::kInvalidArgument);
  ServerOptions missing_ca = mtls_without_ca;
  missing_ca.client_ca_file = dir_.file("absent.pem");
  EXPECT_FALSE(ServerContext::create(missing_ca, server_key_).ok());
  ServerOptions bad_alpn;
  bad_alpn.alpn_protocols = {""};
  EXPECT_FALSE(ServerContext::create(bad_alpn, server_key_).ok());
  EXPECT_FALSE(ServerContext::create(ServerOptions{}, nullptr).ok());

  ClientOptions neither;
  EXPECT_FALSE(ClientContext::create(neither).ok());
  ClientOptions both;
  both.ca_file = ca_path_;
  both.pin = true;
  EXPECT_FALSE(ClientContext::create(both).ok());
  ClientOptions bad_ca;
  bad_ca.ca_file = dir_.file("absent.pem");
  EXPECT_FALSE(ClientContext::create(bad_ca).ok());
}

TEST_F(TlsConnectionTest, TicketsDisabledMeansNoResumption) {
  ServerOptions sopt;
  sopt.session_tickets = false;
  auto sctx = server_ctx(sopt);
  auto cctx = client_ctx();
  bool resumed = true;
  ClientSession first = connect_and_get_session(sctx, cctx, nullptr, &resumed);
  EXPECT_FALSE(resumed);
  // A TLS 1.3 server without tickets sends none, so there is nothing to resume with.
  EXPECT_EQ(first, nullptr);
}

// Handshakes on two threads while the owner swaps certificates and rotates ticket keys: every
// handshake succeeds and presents one of the two certificates (run under the sanitizers).
TEST_F(TlsConnectionTest, ReloadAndRotationRaceWithHandshakes) {
  const PemCertificate ca = make_pem(KeyType::kEcdsaP256, nullptr, true, "race CA");
  const auto key_a = load(make_pem(KeyType::kEcdsaP256, &ca));
  const auto key_b = load(make_pem(KeyType::kEcdsaP256, &ca));
  const std::string ca_path = dir_.file("race_ca.pem");
  write_text(ca_path, ca.cert_pem);
  server_key_ = key_a;
  auto sctx = server_ctx();
  ClientOptions copt;
  copt.ca_file = ca_path;
  auto cctx = client_ctx(copt);

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::atomic<int> bad{0};
  auto worker = [&] {
    ClientSession session;
    for (int i = 0; i < 40; ++i) {
      auto server = Connection::server(sctx);
      auto client = Connection::client(cctx, "localhost", session);
      Wire wire{client->get(), server->get()};
      wire.pump();
      const Sha256& seen = (*client)->peer_certificate().sha256;
      if ((*client)->handshake_done() && (*server)->handshake_done() &&
          (seen == key_a->leaf_sha256() || seen == key_b->leaf_sha256())) {
        ok.fetch_add(1);
      } else {
        bad.fetch_add(1);
      }
      const uint8_t ping[] = {'p'};
      (void)(*server)->write_plaintext(ping);
      wire.pump();
      if ((*client)->session() != nullptr) session = (*client)->session();
    }
  };
  std::thread t1(worker);
  std::thread t2(worker);
  log::set_min_level(log::Level::kWarn);  // one tls.cert_reloaded line per swap otherwise
  std::thread owner([&] {
    for (int i = 0; !stop.load() && i < 100000; ++i) {
      sctx->set_certificate(i % 2 == 0 ? key_b : key_a);
      sctx->rotate_ticket_keys();
      std::this_thread::yield();
    }
  });
  t1.join();
  t2.join();
  stop.store(true);
  owner.join();
  log::set_min_level(log::Level::kInfo);
  EXPECT_EQ(ok.load(), 80);
  EXPECT_EQ(bad.load(), 0);
}

TEST(TlsErrorNames, AreStableAndDistinct) {
  std::vector<std::string_view> names;
  for (int i = 0; i < kTlsErrorCount; ++i) {
    names.push_back(tls_error_name(static_cast<TlsError>(i)));
  }
  EXPECT_EQ(names.front(), "none");
  EXPECT_EQ(tls_error_name(TlsError::kDecrypt), "decrypt");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::unique(names.begin(), names.end()), names.end());
}

}  // namespace
}  // namespace herald::tls

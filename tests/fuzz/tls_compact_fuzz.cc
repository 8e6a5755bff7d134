// libFuzzer target for the compact TLS 1.3 record layer (platform/tls compact mode): after a real
// handshake, the input scripts records sealed with the peer's keys (any inner type, content and
// padding, KeyUpdates, NewSessionTickets), raw bytes and bit flips, cut into feeds. The first
// byte's top bit picks the side under test: a herald server against a BoringSSL client, or a
// compact herald client (ClientOptions::compact_after_handshake) against a BoringSSL server.
#include <openssl/ssl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "platform/tls/certificate.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"
#include "platform/tls/record_layer.h"

namespace {

using herald::tls::Connection;
using herald::tls::IoResult;
using herald::tls::IoStatus;
using herald::tls::RecordLayer;
using herald::tls::TlsError;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::shared_ptr<const herald::tls::CertifiedKey> certified_key() {
  static const std::shared_ptr<const herald::tls::CertifiedKey> key = [] {
    herald::tls::CertificateRequest req;
    req.key_type = herald::tls::KeyType::kEcdsaP256;  // BoringSSL clients do not offer Ed25519
    req.common_name = "localhost";
    req.dns_names = {"localhost"};
    auto pem = herald::tls::generate_certificate(req, nullptr);
    check(pem.ok());
    auto made = herald::tls::certified_key_from_pem(pem->cert_pem, pem->key_pem);
    check(made.ok());
    return *made;
  }();
  return key;
}

std::shared_ptr<herald::tls::ServerContext> server_context() {
  static const std::shared_ptr<herald::tls::ServerContext> ctx = [] {
    herald::tls::ServerOptions opt;
    opt.session_tickets = false;  // fewer bytes per handshake
    auto made = herald::tls::ServerContext::create(opt, certified_key());
    check(made.ok());
    return *made;
  }();
  return ctx;
}

std::shared_ptr<herald::tls::ClientContext> compact_client_context() {
  static const std::shared_ptr<herald::tls::ClientContext> ctx = [] {
    herald::tls::ClientOptions opt;
    opt.pin = true;
    opt.pinned_sha256 = certified_key()->leaf_sha256();
    opt.compact_after_handshake = true;
    auto made = herald::tls::ClientContext::create(opt);
    check(made.ok());
    return *made;
  }();
  return ctx;
}

SSL_CTX* raw_client_context() {
  static SSL_CTX* const ctx = SSL_CTX_new(TLS_method());
  return ctx;
}

SSL_CTX* raw_server_context() {
  static SSL_CTX* const ctx = [] {
    SSL_CTX* made = SSL_CTX_new(TLS_method());
    SSL_CTX_set_min_proto_version(made, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(made, 0);  // the script sends its own
    const auto& key = *certified_key();
    check(SSL_CTX_set_chain_and_key(made, key.chain_data(), key.chain_length(), key.private_key(),
                                    nullptr) == 1);
    return made;
  }();
  return ctx;
}

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::span<const uint8_t> take(size_t want) {
    const size_t k = want < n ? want : n;
    std::span<const uint8_t> out(p, k);
    p += k;
    n -= k;
    return out;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool client_role = size > 0 && (data[0] & 0x80) != 0;
  std::unique_ptr<Connection> conn;  // the side under test
  // The peer: a raw BoringSSL SSL over a BIO pair; `net` is our end of the pair.
  bssl::UniquePtr<SSL> peer(SSL_new(client_role ? raw_server_context() : raw_client_context()));
  BIO* internal = nullptr;
  BIO* net = nullptr;
  BIO_new_bio_pair(&internal, 1 << 16, &net, 1 << 16);
  bssl::UniquePtr<BIO> net_owner(net);
  SSL_set_bio(peer.get(), internal, internal);
  if (client_role) {
    auto made = Connection::client(compact_client_context(), "localhost");
    check(made.ok());
    conn = std::move(*made);
    SSL_set_accept_state(peer.get());
  } else {
    auto made = Connection::server(server_context());
    check(made.ok());
    conn = std::move(*made);
    SSL_set_connect_state(peer.get());
  }
  for (int i = 0; i < 8 && !(conn->handshake_done() && SSL_is_init_finished(peer.get())); ++i) {
    const std::vector<uint8_t> ours = conn->take_ciphertext();
    if (!ours.empty()) BIO_write(net, ours.data(), static_cast<int>(ours.size()));
    (void)SSL_do_handshake(peer.get());
    std::vector<uint8_t> bytes(BIO_ctrl_pending(net));
    if (!bytes.empty()) BIO_read(net, bytes.data(), static_cast<int>(bytes.size()));
    check(conn->feed_ciphertext(bytes) == bytes.size());
  }
  if (client_role) {  // the client's Finished, for the server's SSL to finish too
    const std::vector<uint8_t> ours = conn->take_ciphertext();
    if (!ours.empty()) BIO_write(net, ours.data(), static_cast<int>(ours.size()));
    (void)SSL_do_handshake(peer.get());
  }
  check(conn->handshake_done() && conn->compact() && SSL_is_init_finished(peer.get()));
  bssl::Span<const uint8_t> rs;
  bssl::Span<const uint8_t> ws;
  check(bssl::SSL_get_traffic_secrets(peer.get(), &rs, &ws));
  auto forge = RecordLayer::create(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(peer.get())),
                                   {rs.data(), rs.size()}, SSL_get_read_sequence(peer.get()),
                                   {ws.data(), ws.size()}, SSL_get_write_sequence(peer.get()));
  check(forge != nullptr);

  Input in{data, size};
  const size_t feed_step = (in.byte() & 0x7f) % 64;  // 0: everything at once
  std::vector<uint8_t> stream;
  std::vector<uint8_t> expected;  // application data, while the script stays well-formed
  bool clean = true;
  // Inner type 0 makes the content's last non-zero byte the type, and 23 is application data:
  // either may deliver plaintext the script did not count.
  bool counted = true;
  size_t last_record = 0;
  auto seal = [&](uint8_t type, std::span<const uint8_t> content, size_t padding) {
    last_record = stream.size();
    stream.resize(stream.size() + RecordLayer::sealed_bytes(content.size(), padding));
    check(forge->seal(type, content, stream.data() + last_record, padding));
  };
  std::vector<uint8_t> scratch;
  while (in.n > 0) {
    switch (in.byte() % 7) {
      case 0: {  // application data
        size_t len = in.byte();
        len |= static_cast<size_t>(in.byte() & 0x3f) << 8;
        const auto content = in.take(len);
        const size_t padding = in.byte() % 4 == 0 ? in.byte() : 0;
        seal(RecordLayer::kApplicationData, content, padding);
        // An inner plaintext over 2^14+1 is record_overflow (§5.4).
        if (content.size() + 1 + padding > RecordLayer::kMaxPlaintextBytes + 1) clean = false;
        expected.insert(expected.end(), content.begin(), content.end());
        break;
      }
      case 1: {  // any inner type
        const uint8_t type = in.byte();
        const auto content = in.take(in.byte());
        seal(type, content, in.byte() % 8);
        clean = false;
        if (type == 0 || type == RecordLayer::kApplicationData) counted = false;
        break;
      }
      case 2: {  // KeyUpdate, possibly malformed, possibly split
        const uint8_t request = in.byte() % 3;
        const uint8_t msg[5] = {24, 0, 0, 1, request};
        const size_t split = in.byte() % 6;
        if (split > 0 && split < 5) {
          seal(RecordLayer::kHandshake, {msg, split}, 0);
          seal(RecordLayer::kHandshake, {msg + split, 5 - split}, 0);
        } else {
          seal(RecordLayer::kHandshake, msg, 0);
        }
        if (request > 1) clean = false;
        check(forge->update_write_key());
        break;
      }
      case 3: {  // raw bytes
        const auto bytes = in.take(in.byte());
        last_record = stream.size();
        stream.insert(stream.end(), bytes.begin(), bytes.end());
        clean = false;
        break;
      }
      case 4: {  // flip a bit of the last record
        if (stream.size() > last_record) {
          stream[last_record + in.byte() % (stream.size() - last_record)] ^=
              static_cast<uint8_t>(1u << (in.byte() % 8));
          clean = false;
        }
        break;
      }
      case 5: {  // our side's actions between feeds are not scripted: park now
        conn->park();
        break;
      }
      case 6: {  // a NewSessionTicket of a scripted length, possibly split: a client passes over
        const uint32_t len = in.byte() | static_cast<uint32_t>(in.byte() & 0x03) << 8;
        std::vector<uint8_t> msg = {4, 0, static_cast<uint8_t>(len >> 8),
                                    static_cast<uint8_t>(len)};
        msg.resize(msg.size() + len, 0x5a);
        const size_t split = in.byte() % (msg.size() + 1);
        if (split > 0 && split < msg.size()) {
          seal(RecordLayer::kHandshake, {msg.data(), split}, 0);
          seal(RecordLayer::kHandshake, {msg.data() + split, msg.size() - split}, 0);
        } else {
          seal(RecordLayer::kHandshake, msg, 0);
        }
        if (!client_role || len < 14) clean = false;  // a server takes none; 14 B is the least
        break;
      }
    }
  }

  std::vector<uint8_t> got;
  uint8_t buf[5000];
  bool failed = false;
  bool closed = false;
  std::span<const uint8_t> rest(stream);
  while (!rest.empty()) {
    const size_t step = feed_step == 0 ? rest.size() : std::min(feed_step, rest.size());
    const size_t took = conn->feed_ciphertext(rest.subspan(0, step));
    rest = rest.subspan(took);
    for (;;) {
      const IoResult r = conn->read_plaintext(buf);
      if (r.status == IoStatus::kOk) {
        check(r.bytes <= sizeof(buf));
        got.insert(got.end(), buf, buf + r.bytes);
        continue;
      }
      failed = r.status == IoStatus::kError;
      closed = r.status == IoStatus::kClosed;
      break;
    }
    if (failed) {
      check(conn->error() != TlsError::kNone);
      // A failed connection swallows input and refuses output.
      check(conn->feed_ciphertext(rest) == rest.size());
      check(conn->write_plaintext(std::span<const uint8_t>(buf, 1)).status == IoStatus::kError);
      break;
    }
    if (closed) break;
    check(took > 0);
  }
  // Plaintext only ever comes from authenticated application data, in order.
  if (counted) {
    check(got.size() <= expected.size());
    check(std::equal(got.begin(), got.end(), expected.begin()));
  }
  // A well-formed script is taken whole: nothing in it may fail the connection.
  if (clean) check(!failed && got == expected);

  // Whatever our side sent is well-framed TLS 1.3 records.
  if (!failed && !closed) (void)conn->write_plaintext(std::span<const uint8_t>(buf, 100));
  conn->close();
  const std::vector<uint8_t> out = conn->take_ciphertext();
  for (size_t at = 0; at < out.size();) {
    check(out.size() - at >= RecordLayer::kHeaderBytes);
    check(out[at] == RecordLayer::kApplicationData && out[at + 1] == 3 && out[at + 2] == 3);
    const size_t len = (size_t{out[at + 3]} << 8) | out[at + 4];
    check(len > RecordLayer::kTagBytes && len <= RecordLayer::kMaxCiphertextBytes);
    at += RecordLayer::kHeaderBytes + len;
    check(at <= out.size());
  }
  return 0;
}

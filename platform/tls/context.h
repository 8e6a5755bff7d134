// TLS contexts: the server side (certificate swappable without dropping connections, ALPN,
// optional client certificates, rotating session tickets) and the client side (tests, tools).
#pragma once

#include <openssl/base.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "platform/tls/certificate.h"
#include "platform/tls/ticket_keys.h"

namespace herald::tls {

enum class TlsVersion : uint16_t { kTls12 = TLS1_2_VERSION, kTls13 = TLS1_3_VERSION };

enum class ClientAuth : uint8_t {
  kNone,      // no CertificateRequest
  kOptional,  // ask; a client without a certificate is admitted, one with a bad one is not
  kRequire,   // mTLS: no valid client certificate, no connection
};

struct ServerOptions {
  // TLS 1.3 only by default; kTls12 also admits TLS 1.2 (ECDHE + AEAD suites only).
  TlsVersion min_version = TlsVersion::kTls13;
  // ALPN protocols in the server's order of preference ("http/1.1", "herald/1"). Empty: no
  // ALPN. When the client offers ALPN and none matches, the handshake fails with
  // no_application_protocol (RFC 7301 §3.2); a client that offers no ALPN is admitted and
  // Connection::alpn() is empty (the caller decides).
  std::vector<std::string> alpn_protocols;
  ClientAuth client_auth = ClientAuth::kNone;
  std::string client_ca_file;  // PEM roots for client certificates; needed unless kNone
  bool session_tickets = true;
  // Session lifetime told to clients and enforced, and the interval at which the owner should
  // call rotate_ticket_keys() (see TicketKeyRing for what a ticket's life then is).
  uint32_t ticket_lifetime_s = 3600;
  // TLS 1.3 tickets sent after each handshake (BoringSSL's default is 2; one suffices for a
  // client that holds one connection).
  uint32_t tickets_per_handshake = 1;
  // TLS 1.3 connections free BoringSSL's SSL (~3.4 KB) once the handshake is over and keep
  // only their traffic secrets, protecting records themselves (Connection::compact()).
  bool compact_after_handshake = true;
  // Share one ring across listeners or processes' contexts; null: the context makes its own.
  std::shared_ptr<TicketKeyRing> ticket_keys;
};

// One per listener, shared by every connection it accepts (std::shared_ptr: a connection keeps
// the context alive). Thread-safe: handshakes may run on several threads.
class ServerContext {
 public:
  static absl::StatusOr<std::shared_ptr<ServerContext>> create(
      ServerOptions options, std::shared_ptr<const CertifiedKey> certificate);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // Certificate reload. The certificate is chosen per handshake (BoringSSL's cert callback),
  // so handshakes that start after this call present the new one; established connections
  // are untouched (their keys do not depend on the certificate) and handshakes in flight
  // finish with the one they took.
  void set_certificate(std::shared_ptr<const CertifiedKey> certificate);
  std::shared_ptr<const CertifiedKey> certificate() const;

  // Call every options().ticket_lifetime_s seconds (from the owner's timer).
  void rotate_ticket_keys() { ticket_keys_->rotate(); }
  TicketKeyRing& ticket_keys() const { return *ticket_keys_; }

  const ServerOptions& options() const { return options_; }
  SSL_CTX* ssl_ctx() const { return ctx_.get(); }

 private:
  explicit ServerContext(ServerOptions options);
  static int select_certificate(SSL* ssl, void* arg);
  static int select_alpn(SSL* ssl, const uint8_t** out, uint8_t* out_len, const uint8_t* in,
                         unsigned in_len, void* arg);
  static int ticket_key(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher_ctx,
                        HMAC_CTX* hmac_ctx, int encrypt);

  ServerOptions options_;
  bssl::UniquePtr<SSL_CTX> ctx_;
  std::shared_ptr<TicketKeyRing> ticket_keys_;
  mutable std::mutex cert_mu_;
  std::shared_ptr<const CertifiedKey> certificate_;
  // The certificate set on ctx_ at creation (never changed: SSL_new reads it unlocked). Held
  // so that its address cannot be reused by a later certificate that would then compare equal.
  std::shared_ptr<const CertifiedKey> ctx_certificate_;
};

struct ClientOptions {
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  std::vector<std::string> alpn_protocols;
  // How the server is authenticated: exactly one of these. ca_file verifies the chain and the
  // server name (DNS name or IP address given to Connection::client); pinned_sha256 accepts
  // exactly one leaf certificate (a self-signed node certificate) whatever its names.
  std::string ca_file;
  bool pin = false;
  Sha256 pinned_sha256{};
  // Presented when the server asks (mTLS). Null: none.
  std::shared_ptr<const CertifiedKey> client_certificate;
  // Compact mode for clients (see Connection::compact()): after a TLS 1.3 handshake the SSL
  // is freed and records are protected by our RecordLayer, for clients that hold many
  // sessions (herald-loadgen). The server's NewSessionTickets are then passed over, so such
  // a connection never has a session() to resume with. Off by default.
  bool compact_after_handshake = false;
};

// Client side, for tests and tools. Resumable sessions are handed to the connection that
// received them (Connection::session()).
class ClientContext {
 public:
  static absl::StatusOr<std::shared_ptr<ClientContext>> create(ClientOptions options);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  const ClientOptions& options() const { return options_; }
  SSL_CTX* ssl_ctx() const { return ctx_.get(); }

 private:
  explicit ClientContext(ClientOptions options);
  static enum ssl_verify_result_t verify_pinned(SSL* ssl, uint8_t* out_alert);

  ClientOptions options_;
  bssl::UniquePtr<SSL_CTX> ctx_;
};

// ex_data index on SSL_CTX for the owning context object (ServerContext* or ClientContext*).
int context_ex_index();

}  // namespace herald::tls

namespace herald::tls::detail {
// Hands a resumable client session to the Connection that owns `ssl` (connection.cc).
int on_new_client_session(SSL* ssl, SSL_SESSION* session);
}  // namespace herald::tls::detail

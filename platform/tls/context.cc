// Server and client TLS contexts over BoringSSL's SSL_CTX.
#include "platform/tls/context.h"

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstring>
#include <utility>

#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::tls {
namespace {

// Signature algorithms we verify, in preference order: BoringSSL's defaults plus Ed25519
// (RFC 8446 §4.2.3), which it does not verify unless asked, so Ed25519 node certificates work.
constexpr uint16_t kVerifyAlgorithms[] = {
    SSL_SIGN_ED25519,          SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_RSA_PSS_RSAE_SHA256,
    SSL_SIGN_RSA_PKCS1_SHA256, SSL_SIGN_ECDSA_SECP384R1_SHA384, SSL_SIGN_RSA_PSS_RSAE_SHA384,
    SSL_SIGN_RSA_PKCS1_SHA384, SSL_SIGN_RSA_PSS_RSAE_SHA512,    SSL_SIGN_RSA_PKCS1_SHA512,
};

// X25519 first (fast, constant-time), P-256 for peers that need a NIST curve.
constexpr char kGroups[] = "X25519:P-256";

// TLS 1.2 only: ECDHE with AEADs (RFC 7525 §4.2); no CBC, no static RSA. TLS 1.3 suites are
// all AEADs and not configurable in BoringSSL.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

std::string crypto_error() {
  const uint32_t packed = ERR_get_error();
  ERR_clear_error();
  const char* reason = packed != 0 ? ERR_reason_error_string(packed) : nullptr;
  return reason != nullptr ? reason : "unknown error";
}

absl::Status configure_common(SSL_CTX* ctx, uint16_t min_version, uint16_t max_version) {
  if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, max_version) != 1) {
    return absl::InvalidArgumentError("bad TLS version range");
  }
  if (SSL_CTX_set1_curves_list(ctx, kGroups) != 1 ||
      SSL_CTX_set_strict_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set_verify_algorithm_prefs(ctx, kVerifyAlgorithms,
                                         sizeof(kVerifyAlgorithms) / sizeof(uint16_t)) != 1) {
    return absl::InternalError("TLS algorithm preferences: " + crypto_error());
  }
  return absl::OkStatus();
}

// RFC 7301 §3.1 wire form: each protocol as a length byte and its bytes.
absl::StatusOr<std::vector<uint8_t>> alpn_wire(const std::vector<std::string>& protocols) {
  std::vector<uint8_t> wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) {
      return absl::InvalidArgumentError("ALPN protocol name must be 1..255 bytes: '" + p + "'");
    }
    wire.push_back(static_cast<uint8_t>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

}  // namespace

int context_ex_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// ---- server --------------------------------------------------------------------------------

ServerContext::ServerContext(ServerOptions options) : options_(std::move(options)) {}
ServerContext::~ServerContext() = default;

absl::StatusOr<std::shared_ptr<ServerContext>> ServerContext::create(
    ServerOptions options, std::shared_ptr<const CertifiedKey> certificate) {
  if (certificate == nullptr || certificate->chain_length() == 0) {
    return absl::InvalidArgumentError("server context needs a certificate");
  }
  if (options.client_auth != ClientAuth::kNone && options.client_ca_file.empty()) {
    return absl::InvalidArgumentError("client certificate verification needs client_ca_file");
  }
  if (options.ticket_lifetime_s == 0) {
    return absl::InvalidArgumentError("ticket_lifetime_s must be positive");
  }
  ERR_clear_error();
  std::shared_ptr<ServerContext> self(new ServerContext(std::move(options)));
  const ServerOptions& opt = self->options_;
  self->ctx_.reset(SSL_CTX_new(TLS_method()));
  if (self->ctx_ == nullptr) return absl::ResourceExhaustedError("SSL_CTX_new");
  SSL_CTX* ctx = self->ctx_.get();
  if (absl::Status s =
          configure_common(ctx, static_cast<uint16_t>(opt.min_version), TLS1_3_VERSION);
      !s.ok()) {
    return s;
  }
  SSL_CTX_set_ex_data(ctx, context_ex_index(), self.get());
  // The first certificate also goes on the SSL_CTX, where SSL_new copies it by reference;
  // SSL_set_chain_and_key in the callback re-parses the leaf's public key and compares it with
  // the private key on every handshake (~1 us of ~115, tests/bench/tls). So the callback acts
  // only after a reload. Set once, before any SSL_new: SSL_new reads it without a lock.
  if (SSL_CTX_set_chain_and_key(ctx, certificate->chain_data(), certificate->chain_length(),
                                certificate->private_key(), nullptr) != 1) {
    return absl::InvalidArgumentError("server certificate: " + crypto_error());
  }
  self->ctx_certificate_ = certificate;
  self->certificate_ = std::move(certificate);
  SSL_CTX_set_cert_cb(ctx, &ServerContext::select_certificate, self.get());

  if (!opt.alpn_protocols.empty()) {
    // Validated here; selection walks options_.alpn_protocols in preference order.
    absl::StatusOr<std::vector<uint8_t>> wire = alpn_wire(opt.alpn_protocols);
    if (!wire.ok()) return wire.status();
    SSL_CTX_set_alpn_select_cb(ctx, &ServerContext::select_alpn, self.get());
  }

  // Stateless resumption only: the server keeps no per-session state (a cache of millions of
  // sessions would cost more memory than the connections), tickets carry it.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  static constexpr uint8_t kSessionContext[] = {'h', 'e', 'r', 'a', 'l', 'd'};
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext));
  if (opt.session_tickets) {
    self->ticket_keys_ =
        opt.ticket_keys != nullptr ? opt.ticket_keys : std::make_shared<TicketKeyRing>();
    SSL_CTX_set_tlsext_ticket_key_cb(ctx, &ServerContext::ticket_key);
    SSL_CTX_set_timeout(ctx, opt.ticket_lifetime_s);
    SSL_CTX_set_session_psk_dhe_timeout(ctx, opt.ticket_lifetime_s);
    SSL_CTX_set_num_tickets(ctx, opt.tickets_per_handshake);
  } else {
    self->ticket_keys_ = std::make_shared<TicketKeyRing>();  // unused; keeps accessors valid
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  }

  if (opt.client_auth != ClientAuth::kNone) {
    if (SSL_CTX_load_verify_locations(ctx, opt.client_ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError("cannot load client CA file " + opt.client_ca_file + ": " +
                                        crypto_error());
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(opt.client_ca_file.c_str());
    if (names == nullptr) {
      return absl::InvalidArgumentError("no CA names in " + opt.client_ca_file);
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    int mode = SSL_VERIFY_PEER;
    if (opt.client_auth == ClientAuth::kRequire) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, nullptr);
  }
  return self;
}

void ServerContext::set_certificate(std::shared_ptr<const CertifiedKey> certificate) {
  HERALD_CHECK(certificate != nullptr && certificate->chain_length() > 0,
               "set_certificate needs a loaded certificate");
  const std::string subject = certificate->subject();
  const std::string sha256 = to_hex(certificate->leaf_sha256());
  std::shared_ptr<const CertifiedKey> old;
  {
    std::lock_guard<std::mutex> lock(cert_mu_);
    old = std::exchange(certificate_, std::move(certificate));
  }
  HLOG_INFO("tls.cert_reloaded")
      .kv("subject", subject)
      .kv("sha256", sha256)
      .kv("previous_sha256", to_hex(old->leaf_sha256()));
  // `old` is released here, outside the lock; handshakes that took it hold their own
  // references inside BoringSSL until their configuration is shed.
}

std::shared_ptr<const CertifiedKey> ServerContext::certificate() const {
  std::lock_guard<std::mutex> lock(cert_mu_);
  return certificate_;
}

int ServerContext::select_certificate(SSL* ssl, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  std::shared_ptr<const CertifiedKey> cert;
  {
    std::lock_guard<std::mutex> lock(self->cert_mu_);
    // Not reloaded: the SSL already holds the SSL_CTX's copy (taken by SSL_new).
    if (self->certificate_ == self->ctx_certificate_) return 1;
    cert = self->certificate_;
  }
  // SSL_set_chain_and_key takes its own references, so `cert` may go when this returns.
  return SSL_set_chain_and_key(ssl, cert->chain_data(), cert->chain_length(), cert->private_key(),
                               nullptr) == 1
             ? 1
             : 0;
}

int ServerContext::select_alpn(SSL* /*ssl*/, const uint8_t** out, uint8_t* out_len,
                               const uint8_t* in, unsigned in_len, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  // Server preference order: the first of ours the client also offers.
  for (const std::string& ours : self->options_.alpn_protocols) {
    unsigned pos = 0;
    while (pos < in_len) {
      const unsigned len = in[pos];
      // BoringSSL has already checked the list's framing (ssl_is_valid_alpn_list); stay
      // defensive anyway, this is peer input.
      if (len == 0 || pos + 1 + len > in_len) return SSL_TLSEXT_ERR_ALERT_FATAL;
      if (len == ours.size() && std::memcmp(in + pos + 1, ours.data(), len) == 0) {
        *out = in + pos + 1;
        *out_len = static_cast<uint8_t>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      pos += 1 + len;
    }
  }
  // RFC 7301 §3.2: no overlap is a no_application_protocol alert.
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int ServerContext::ticket_key(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher_ctx,
                              HMAC_CTX* hmac_ctx, int encrypt) {
  const auto* self = static_cast<const ServerContext*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_ex_index()));
  if (self == nullptr) return -1;
  return encrypt != 0 ? self->ticket_keys_->seal(key_name, iv, cipher_ctx, hmac_ctx)
                      : self->ticket_keys_->open(key_name, iv, cipher_ctx, hmac_ctx);
}

// ---- client --------------------------------------------------------------------------------

ClientContext::ClientContext(ClientOptions options) : options_(std::move(options)) {}
ClientContext::~ClientContext() = default;

absl::StatusOr<std::shared_ptr<ClientContext>> ClientContext::create(ClientOptions options) {
  if (options.ca_file.empty() == !options.pin) {
    return absl::InvalidArgumentError("client context needs exactly one of ca_file or a pin");
  }
  ERR_clear_error();
  std::shared_ptr<ClientContext> self(new ClientContext(std::move(options)));
  const ClientOptions& opt = self->options_;
  self->ctx_.reset(SSL_CTX_new(TLS_method()));
  if (self->ctx_ == nullptr) return absl::ResourceExhaustedError("SSL_CTX_new");
  SSL_CTX* ctx = self->ctx_.get();
  if (absl::Status s = configure_common(ctx, static_cast<uint16_t>(opt.min_version),
                                        static_cast<uint16_t>(opt.max_version));
      !s.ok()) {
    return s;
  }
  SSL_CTX_set_ex_data(ctx, context_ex_index(), self.get());
  if (!opt.alpn_protocols.empty()) {
    absl::StatusOr<std::vector<uint8_t>> wire = alpn_wire(opt.alpn_protocols);
    if (!wire.ok()) return wire.status();
    // Unusually, SSL_CTX_set_alpn_protos returns zero on success.
    if (SSL_CTX_set_alpn_protos(ctx, wire->data(), wire->size()) != 0) {
      return absl::InternalError("SSL_CTX_set_alpn_protos");
    }
  }
  if (opt.pin) {
    SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, &ClientContext::verify_pinned);
  } else {
    if (SSL_CTX_load_verify_locations(ctx, opt.ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError("cannot load CA file " + opt.ca_file + ": " +
                                        crypto_error());
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  if (opt.client_certificate != nullptr) {
    const CertifiedKey& cert = *opt.client_certificate;
    if (SSL_CTX_set_chain_and_key(ctx, cert.chain_data(), cert.chain_length(), cert.private_key(),
                                  nullptr) != 1) {
      return absl::InvalidArgumentError("client certificate: " + crypto_error());
    }
  }
  // Sessions go to the connection that received them, not to a cache in the context.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx, &detail::on_new_client_session);
  return self;
}

enum ssl_verify_result_t ClientContext::verify_pinned(SSL* ssl, uint8_t* out_alert) {
  const auto* self = static_cast<const ClientContext*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_ex_index()));
  const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(ssl);
  if (self == nullptr || chain == nullptr || sk_CRYPTO_BUFFER_num(chain) == 0) {
    *out_alert = SSL_AD_CERTIFICATE_REQUIRED;
    return ssl_verify_invalid;
  }
  const CRYPTO_BUFFER* leaf = sk_CRYPTO_BUFFER_value(chain, 0);
  Sha256 digest;
  SHA256(CRYPTO_BUFFER_data(leaf), CRYPTO_BUFFER_len(leaf), digest.data());
  if (CRYPTO_memcmp(digest.data(), self->options_.pinned_sha256.data(), digest.size()) != 0) {
    *out_alert = SSL_AD_BAD_CERTIFICATE;
    return ssl_verify_invalid;
  }
  return ssl_verify_ok;
}

}  // namespace herald::tls

// TLS certificates: a PEM chain and private key loaded from files, and self-signed or
// CA-issued certificates generated for development nodes and tests, written as PEM files.
#pragma once

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/pool.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace herald::tls {

using Sha256 = std::array<uint8_t, 32>;

// Lower-case hex of a SHA-256 digest (the form operators compare against `openssl x509
// -fingerprint -sha256`, without the colons).
std::string to_hex(const Sha256& digest);

// A certificate chain (leaf first) and its private key. Immutable once built and shared
// (std::shared_ptr) by every handshake that presents it: a handshake takes references to the
// CRYPTO_BUFFERs and the key, never copies, and a reload swaps in a new CertifiedKey while
// handshakes in flight keep the old one alive.
class CertifiedKey {
 public:
  CertifiedKey(std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> chain, bssl::UniquePtr<EVP_PKEY> key,
               int64_t not_before_unix_s, int64_t not_after_unix_s, std::string subject);
  CertifiedKey(const CertifiedKey&) = delete;
  CertifiedKey& operator=(const CertifiedKey&) = delete;

  // The chain as BoringSSL wants it for SSL_set_chain_and_key.
  CRYPTO_BUFFER* const* chain_data() const { return raw_chain_.data(); }
  size_t chain_length() const { return raw_chain_.size(); }
  EVP_PKEY* private_key() const { return key_.get(); }

  // SHA-256 over the leaf's DER encoding.
  const Sha256& leaf_sha256() const { return leaf_sha256_; }
  int64_t not_before_unix_s() const { return not_before_unix_s_; }
  int64_t not_after_unix_s() const { return not_after_unix_s_; }
  bool expired_at(int64_t now_unix_s) const { return now_unix_s > not_after_unix_s_; }
  // RFC 2253-ish one-line subject, for logs.
  const std::string& subject() const { return subject_; }

 private:
  std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> chain_;
  std::vector<CRYPTO_BUFFER*> raw_chain_;
  bssl::UniquePtr<EVP_PKEY> key_;
  Sha256 leaf_sha256_{};
  int64_t not_before_unix_s_;
  int64_t not_after_unix_s_;
  std::string subject_;
};

// Parses a PEM chain (one or more CERTIFICATE blocks, leaf first) and a PEM private key
// (PKCS#8, or the traditional EC/RSA forms). Accepted keys: ECDSA P-256/P-384, Ed25519,
// RSA >= 2048 bits. Errors: InvalidArgument for bad PEM, an unsupported key, or a key that
// does not match the leaf. An expired or not-yet-valid certificate loads (an operator must be
// able to start a node to replace it) but logs a warning `tls.cert_expired`.
absl::StatusOr<std::shared_ptr<const CertifiedKey>> certified_key_from_pem(
    std::string_view cert_chain_pem, std::string_view private_key_pem);

// Same, from files. NotFound names the missing file; PermissionDenied if unreadable.
absl::StatusOr<std::shared_ptr<const CertifiedKey>> load_certified_key(
    const std::string& cert_chain_path, const std::string& private_key_path);

enum class KeyType : uint8_t { kEcdsaP256, kEd25519 };

// What to put in a generated certificate.
struct CertificateRequest {
  KeyType key_type = KeyType::kEcdsaP256;
  std::string common_name = "herald";
  std::vector<std::string> dns_names;     // subjectAltName dNSName entries
  std::vector<std::string> ip_addresses;  // subjectAltName iPAddress entries (v4 or v6 text)
  // Validity starts at not_before_unix_s, or one hour ago when 0 (tolerates peers whose clocks
  // run a little slow), and lasts validity_s.
  int64_t not_before_unix_s = 0;
  int64_t validity_s = int64_t{365} * 24 * 3600;
  bool is_ca = false;  // basicConstraints CA:TRUE + keyCertSign, to issue client certs (mTLS)
};

// A certificate and its private key, both PEM.
struct PemCertificate {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8
};

// Generates a fresh key and a certificate for it: self-signed when issuer is null, otherwise
// signed by the issuer (which should have been generated with is_ca). Serial numbers are
// 127 random bits (CA/B Forum baseline requirement: at least 64 bits of entropy).
absl::StatusOr<PemCertificate> generate_certificate(const CertificateRequest& request,
                                                    const PemCertificate* issuer = nullptr);

// Writes the certificate (mode 0644) and key (mode 0600) to their paths, each through a
// temporary file, fsync and rename, so a reader never sees a half-written file.
absl::Status write_pem_files(const PemCertificate& pem, const std::string& cert_path,
                             const std::string& key_path);

}  // namespace herald::tls

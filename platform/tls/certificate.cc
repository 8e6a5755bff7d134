// Loading, generating and writing TLS certificates with BoringSSL's X.509 and PEM code.
#include "platform/tls/certificate.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include "platform/log/log.h"

namespace herald::tls {
namespace {

// The library's reason for the most recent failure, for error messages.
std::string last_crypto_error() {
  const uint32_t packed = ERR_get_error();
  ERR_clear_error();
  if (packed == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(packed);
  return reason != nullptr ? std::string(reason) : std::string("unknown error");
}

absl::Status read_file(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError("no such file: " + path);
    if (err == EACCES) return absl::PermissionDeniedError("cannot read: " + path);
    return absl::UnavailableError("cannot open " + path + ": " + std::strerror(err));
  }
  // Certificates and keys are small; a limit keeps a wrong path (a device, a huge log) from
  // being slurped into memory.
  constexpr size_t kMaxPemBytes = 1 << 20;
  out->clear();
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return absl::UnavailableError("cannot read " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > kMaxPemBytes) {
      ::close(fd);
      return absl::InvalidArgumentError("file larger than 1 MiB, not a PEM file: " + path);
    }
  }
  ::close(fd);
  return absl::OkStatus();
}

// Seconds since the Unix epoch for an ASN1_TIME (ASN1_TIME_diff against the epoch; this
// BoringSSL has no ASN1_TIME_to_posix).
bool asn1_time_to_unix(const ASN1_TIME* t, int64_t* out) {
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (epoch == nullptr || ASN1_TIME_diff(&days, &seconds, epoch.get(), t) != 1) return false;
  *out = int64_t{days} * 86400 + seconds;
  return true;
}

std::string subject_line(X509* x509) {
  char buf[256];
  if (X509_NAME_oneline(X509_get_subject_name(x509), buf, sizeof(buf)) == nullptr) return "";
  return buf;
}

absl::Status check_key_type(EVP_PKEY* key) {
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
      const EC_GROUP* group = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key));
      const int nid = group != nullptr ? EC_GROUP_get_curve_name(group) : NID_undef;
      if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1) return absl::OkStatus();
      return absl::InvalidArgumentError("unsupported EC curve (use P-256 or P-384)");
    }
    case EVP_PKEY_ED25519: return absl::OkStatus();
    case EVP_PKEY_RSA:
      if (EVP_PKEY_bits(key) >= 2048) return absl::OkStatus();
      return absl::InvalidArgumentError("RSA key shorter than 2048 bits");
    default: return absl::InvalidArgumentError("unsupported private key type");
  }
}

bssl::UniquePtr<EVP_PKEY> generate_key(KeyType type) {
  if (type == KeyType::kEd25519) {
    bssl::UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
    EVP_PKEY* raw = nullptr;
    if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
        EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
      return nullptr;
    }
    return bssl::UniquePtr<EVP_PKEY>(raw);
  }
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (ec == nullptr || key == nullptr || EC_KEY_generate_key(ec.get()) != 1 ||
      EVP_PKEY_assign_EC_KEY(key.get(), ec.release()) != 1) {
    return nullptr;
  }
  return key;
}

bool add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  return ext != nullptr && X509_add_ext(cert, ext.get(), -1) == 1;
}

// subjectAltName value in the config syntax X509V3_EXT_nconf_nid parses. Names come from the
// operator's config, so characters that would change the syntax are refused.
absl::StatusOr<std::string> san_value(const CertificateRequest& request) {
  std::string value;
  for (const std::string& name : request.dns_names) {
    if (name.empty() || name.find_first_of(",:\n\r ") != std::string::npos) {
      return absl::InvalidArgumentError("bad DNS name for certificate: '" + name + "'");
    }
    if (!value.empty()) value += ',';
    value += "DNS:" + name;
  }
  for (const std::string& ip : request.ip_addresses) {
    in6_addr v6;
    in_addr v4;
    if (inet_pton(AF_INET, ip.c_str(), &v4) != 1 && inet_pton(AF_INET6, ip.c_str(), &v6) != 1) {
      return absl::InvalidArgumentError("bad IP address for certificate: '" + ip + "'");
    }
    if (!value.empty()) value += ',';
    value += "IP:" + ip;
  }
  return value;
}

absl::StatusOr<std::string> bio_to_string(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (BIO_mem_contents(bio, &data, &len) != 1) return absl::InternalError("BIO_mem_contents");
  return std::string(reinterpret_cast<const char*>(data), len);
}

absl::Status write_file_atomically(const std::string& path, const std::string& data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::UnavailableError("cannot create " + tmp + ": " + std::strerror(errno));
  }
  // The umask may have removed bits, and an existing file keeps its old mode: set it exactly.
  bool ok = ::fchmod(fd, mode) == 0;
  size_t done = 0;
  while (ok && done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError("cannot write " + path + ": " + std::strerror(ok ? errno : err));
  }
  return absl::OkStatus();
}

}  // namespace

std::string to_hex(const Sha256& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(digest.size() * 2);
  for (uint8_t b : digest) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

CertifiedKey::CertifiedKey(std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> chain,
                           bssl::UniquePtr<EVP_PKEY> key, int64_t not_before_unix_s,
                           int64_t not_after_unix_s, std::string subject)
    : chain_(std::move(chain)),
      key_(std::move(key)),
      not_before_unix_s_(not_before_unix_s),
      not_after_unix_s_(not_after_unix_s),
      subject_(std::move(subject)) {
  raw_chain_.reserve(chain_.size());
  for (const auto& buf : chain_) raw_chain_.push_back(buf.get());
  if (!chain_.empty()) {
    SHA256(CRYPTO_BUFFER_data(chain_[0].get()), CRYPTO_BUFFER_len(chain_[0].get()),
           leaf_sha256_.data());
  }
}

absl::StatusOr<std::shared_ptr<const CertifiedKey>> certified_key_from_pem(
    std::string_view cert_chain_pem, std::string_view private_key_pem) {
  ERR_clear_error();
  bssl::UniquePtr<BIO> cert_bio(BIO_new_mem_buf(cert_chain_pem.data(), cert_chain_pem.size()));
  if (cert_bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> chain;
  bssl::UniquePtr<X509> leaf;
  for (;;) {
    bssl::UniquePtr<X509> x509(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    if (x509 == nullptr) {
      const uint32_t err = ERR_peek_last_error();
      // Running out of CERTIFICATE blocks ends the chain; anything else is a broken block.
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        break;
      }
      return absl::InvalidArgumentError("bad certificate PEM: " + last_crypto_error());
    }
    uint8_t* der = nullptr;
    const int der_len = i2d_X509(x509.get(), &der);
    if (der_len <= 0) return absl::InvalidArgumentError("cannot encode certificate");
    bssl::UniquePtr<uint8_t> der_owner(der);
    chain.emplace_back(CRYPTO_BUFFER_new(der, static_cast<size_t>(der_len), nullptr));
    if (chain.back() == nullptr) return absl::ResourceExhaustedError("CRYPTO_BUFFER_new");
    if (leaf == nullptr) leaf = std::move(x509);
  }
  if (chain.empty()) return absl::InvalidArgumentError("no CERTIFICATE block in PEM input");

  bssl::UniquePtr<BIO> key_bio(BIO_new_mem_buf(private_key_pem.data(), private_key_pem.size()));
  if (key_bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError("bad private key PEM: " + last_crypto_error());
  }
  if (absl::Status s = check_key_type(key.get()); !s.ok()) return s;
  bssl::UniquePtr<EVP_PKEY> public_key(X509_get_pubkey(leaf.get()));
  if (public_key == nullptr || EVP_PKEY_cmp(public_key.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("private key does not match the certificate");
  }

  int64_t not_before = 0;
  int64_t not_after = 0;
  if (!asn1_time_to_unix(X509_get0_notBefore(leaf.get()), &not_before) ||
      !asn1_time_to_unix(X509_get0_notAfter(leaf.get()), &not_after)) {
    return absl::InvalidArgumentError("certificate has an unreadable validity period");
  }
  std::string subject = subject_line(leaf.get());
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  if (now > not_after || now < not_before) {
    HLOG_WARN("tls.cert_expired")
        .kv("subject", subject)
        .kv("not_before_unix_s", not_before)
        .kv("not_after_unix_s", not_after)
        .kv("now_unix_s", now);
  }
  return std::make_shared<const CertifiedKey>(std::move(chain), std::move(key), not_before,
                                              not_after, std::move(subject));
}

absl::StatusOr<std::shared_ptr<const CertifiedKey>> load_certified_key(
    const std::string& cert_chain_path, const std::string& private_key_path) {
  std::string cert_pem;
  std::string key_pem;
  if (absl::Status s = read_file(cert_chain_path, &cert_pem); !s.ok()) return s;
  if (absl::Status s = read_file(private_key_path, &key_pem); !s.ok()) return s;
  auto loaded = certified_key_from_pem(cert_pem, key_pem);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(), std::string(loaded.status().message()) + " (" +
                                                    cert_chain_path + ", " + private_key_path +
                                                    ")");
  }
  return loaded;
}

absl::StatusOr<PemCertificate> generate_certificate(const CertificateRequest& request,
                                                    const PemCertificate* issuer) {
  ERR_clear_error();
  if (request.validity_s <= 0) return absl::InvalidArgumentError("validity_s must be positive");
  absl::StatusOr<std::string> san = san_value(request);
  if (!san.ok()) return san.status();

  bssl::UniquePtr<EVP_PKEY> key = generate_key(request.key_type);
  if (key == nullptr) return absl::InternalError("key generation: " + last_crypto_error());

  // The issuer's certificate and key; for a self-signed certificate, the certificate itself.
  bssl::UniquePtr<X509> issuer_cert;
  bssl::UniquePtr<EVP_PKEY> issuer_key;
  if (issuer != nullptr) {
    bssl::UniquePtr<BIO> cb(BIO_new_mem_buf(issuer->cert_pem.data(), issuer->cert_pem.size()));
    bssl::UniquePtr<BIO> kb(BIO_new_mem_buf(issuer->key_pem.data(), issuer->key_pem.size()));
    issuer_cert.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
    issuer_key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
    if (issuer_cert == nullptr || issuer_key == nullptr) {
      return absl::InvalidArgumentError("bad issuer PEM: " + last_crypto_error());
    }
  }

  bssl::UniquePtr<X509> cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return absl::InternalError("X509_new");
  }
  // A positive 127-bit serial: 16 random bytes with the top bit cleared.
  uint8_t serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof(serial_bytes));
  serial_bytes[0] &= 0x7f;
  serial_bytes[0] |= 0x01;  // never a short (leading-zero) encoding
  bssl::UniquePtr<BIGNUM> serial_bn(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  if (serial_bn == nullptr ||
      BN_to_ASN1_INTEGER(serial_bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return absl::InternalError("serial number");
  }

  const int64_t now = static_cast<int64_t>(::time(nullptr));
  const int64_t not_before =
      request.not_before_unix_s != 0 ? request.not_before_unix_s : now - 3600;
  const int64_t not_after = not_before + request.validity_s;
  bssl::UniquePtr<ASN1_TIME> nb(ASN1_TIME_set(nullptr, static_cast<time_t>(not_before)));
  bssl::UniquePtr<ASN1_TIME> na(ASN1_TIME_set(nullptr, static_cast<time_t>(not_after)));
  if (nb == nullptr || na == nullptr || X509_set1_notBefore(cert.get(), nb.get()) != 1 ||
      X509_set1_notAfter(cert.get(), na.get()) != 1) {
    return absl::InvalidArgumentError("validity period out of range");
  }

  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const uint8_t*>(request.common_name.data()),
                                 static_cast<int>(request.common_name.size()), -1, 0) != 1) {
    return absl::InvalidArgumentError("bad common name: " + last_crypto_error());
  }
  X509* signer_cert = issuer_cert != nullptr ? issuer_cert.get() : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer_cert)) != 1 ||
      X509_set_pubkey(cert.get(), key.get()) != 1) {
    return absl::InternalError("X509 names/public key");
  }

  bool ok = true;
  if (request.is_ca) {
    ok = ok && add_extension(cert.get(), signer_cert, NID_basic_constraints, "critical,CA:TRUE");
    ok = ok && add_extension(cert.get(), signer_cert, NID_key_usage,
                             "critical,digitalSignature,keyCertSign,cRLSign");
  } else {
    ok = ok && add_extension(cert.get(), signer_cert, NID_basic_constraints, "critical,CA:FALSE");
    // A self-signed certificate is its own issuer, and verifiers (OpenSSL's and BoringSSL's
    // X509_check_issued) only accept an issuer whose keyUsage has keyCertSign; without it a
    // client trusting this very certificate still fails with "unable to get issuer".
    ok = ok && add_extension(cert.get(), signer_cert, NID_key_usage,
                             issuer_cert == nullptr ? "critical,digitalSignature,keyCertSign"
                                                    : "critical,digitalSignature");
    ok = ok && add_extension(cert.get(), signer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  ok = ok && add_extension(cert.get(), signer_cert, NID_subject_key_identifier, "hash");
  if (issuer_cert != nullptr) {
    ok = ok && add_extension(cert.get(), signer_cert, NID_authority_key_identifier, "keyid:always");
  }
  if (!san->empty()) {
    ok = ok && add_extension(cert.get(), signer_cert, NID_subject_alt_name, *san);
  }
  if (!ok) return absl::InternalError("certificate extensions: " + last_crypto_error());

  EVP_PKEY* signer_key = issuer_key != nullptr ? issuer_key.get() : key.get();
  // Ed25519 signs the message itself (RFC 8410 §6): no separate digest.
  const EVP_MD* md = EVP_PKEY_id(signer_key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  if (X509_sign(cert.get(), signer_key, md) <= 0) {
    return absl::InternalError("signing certificate: " + last_crypto_error());
  }

  bssl::UniquePtr<BIO> cert_out(BIO_new(BIO_s_mem()));
  bssl::UniquePtr<BIO> key_out(BIO_new(BIO_s_mem()));
  if (cert_out == nullptr || key_out == nullptr ||
      PEM_write_bio_X509(cert_out.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1) {
    return absl::InternalError("PEM encoding: " + last_crypto_error());
  }
  PemCertificate out;
  absl::StatusOr<std::string> cert_pem = bio_to_string(cert_out.get());
  absl::StatusOr<std::string> key_pem = bio_to_string(key_out.get());
  if (!cert_pem.ok()) return cert_pem.status();
  if (!key_pem.ok()) return key_pem.status();
  out.cert_pem = std::move(*cert_pem);
  out.key_pem = std::move(*key_pem);
  return out;
}

absl::Status write_pem_files(const PemCertificate& pem, const std::string& cert_path,
                             const std::string& key_path) {
  if (absl::Status s = write_file_atomically(key_path, pem.key_pem, 0600); !s.ok()) return s;
  return write_file_atomically(cert_path, pem.cert_pem, 0644);
}

}  // namespace herald::tls

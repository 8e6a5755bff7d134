// The public listener's certificate: from the operator's files when the config names them,
// else a self-signed one generated at first start under <data-dir>/tls/ and reused afterwards
// (so clients that pinned it keep working across restarts).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "platform/tls/certificate.h"

namespace herald::controlplane {

struct CertificateFiles {
  std::string cert_path;   // PEM chain, leaf first
  std::string key_path;    // PEM private key
  bool generated = false;  // true when this start created them
};

// Where the certificate comes from: `configured_cert`/`configured_key` when both are set (an
// error if only one is), else <data_dir>/tls/public.crt and public.key, generated (ECDSA P-256,
// self-signed, subjectAltName localhost, 127.0.0.1, ::1 and `common_name`) when absent.
absl::StatusOr<CertificateFiles> ensure_public_certificate(const std::string& data_dir,
                                                           const std::string& configured_cert,
                                                           const std::string& configured_key,
                                                           const std::string& common_name);

// Loads the files (at start, and again on SIGHUP for a reload without dropping connections).
absl::StatusOr<std::shared_ptr<const tls::CertifiedKey>> load_public_certificate(
    const CertificateFiles& files);

}  // namespace herald::controlplane

// A node listener's certificate files (node_certificate.h).
#include "platform/tls/node_certificate.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "platform/log/log.h"

namespace herald::tls {
namespace {

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

}  // namespace

absl::StatusOr<CertificateFiles> ensure_node_certificate(const NodeCertificateRequest& request) {
  if (request.configured_cert.empty() != request.configured_key.empty()) {
    return absl::InvalidArgumentError(request.config_path +
                                      ": give both the certificate and the key file, or neither");
  }
  if (!request.configured_cert.empty()) {
    return CertificateFiles{request.configured_cert, request.configured_key, false};
  }

  const std::string dir = request.data_dir + "/tls";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError("cannot create " + dir + ": " + std::strerror(errno));
  }
  CertificateFiles files{dir + "/" + request.name + ".crt", dir + "/" + request.name + ".key",
                         false};
  if (exists(files.cert_path) && exists(files.key_path)) return files;

  CertificateRequest cert;
  cert.key_type = request.key_type;
  cert.common_name = request.common_name.empty() ? "herald" : request.common_name;
  cert.dns_names = {"localhost"};
  if (!request.common_name.empty() && request.common_name != "localhost") {
    cert.dns_names.push_back(request.common_name);
  }
  cert.ip_addresses = {"127.0.0.1", "::1"};
  absl::StatusOr<PemCertificate> pem = generate_certificate(cert);
  if (!pem.ok()) return pem.status();
  if (absl::Status s = write_pem_files(*pem, files.cert_path, files.key_path); !s.ok()) return s;
  files.generated = true;
  HLOG_INFO("tls.self_signed_generated").kv("cert", files.cert_path).kv("key", files.key_path);
  return files;
}

absl::StatusOr<std::shared_ptr<const CertifiedKey>> load_node_certificate(
    const CertificateFiles& files) {
  return load_certified_key(files.cert_path, files.key_path);
}

}  // namespace herald::tls

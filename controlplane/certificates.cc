// The public listener's certificate files (certificates.h).
#include "controlplane/certificates.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "platform/log/log.h"

namespace herald::controlplane {
namespace {

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

}  // namespace

absl::StatusOr<CertificateFiles> ensure_public_certificate(const std::string& data_dir,
                                                           const std::string& configured_cert,
                                                           const std::string& configured_key,
                                                           const std::string& common_name) {
  if (configured_cert.empty() != configured_key.empty()) {
    return absl::InvalidArgumentError(
        "controlplane.public_tls: give both the certificate and the key file, or neither");
  }
  if (!configured_cert.empty()) return CertificateFiles{configured_cert, configured_key, false};

  const std::string dir = data_dir + "/tls";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError("cannot create " + dir + ": " + std::strerror(errno));
  }
  CertificateFiles files{dir + "/public.crt", dir + "/public.key", false};
  if (exists(files.cert_path) && exists(files.key_path)) return files;

  tls::CertificateRequest request;
  request.common_name = common_name.empty() ? "herald" : common_name;
  request.dns_names = {"localhost"};
  if (!common_name.empty() && common_name != "localhost") request.dns_names.push_back(common_name);
  request.ip_addresses = {"127.0.0.1", "::1"};
  absl::StatusOr<tls::PemCertificate> pem = tls::generate_certificate(request);
  if (!pem.ok()) return pem.status();
  if (absl::Status s = tls::write_pem_files(*pem, files.cert_path, files.key_path); !s.ok()) {
    return s;
  }
  files.generated = true;
  HLOG_INFO("tls.self_signed_generated").kv("cert", files.cert_path).kv("key", files.key_path);
  return files;
}

absl::StatusOr<std::shared_ptr<const tls::CertifiedKey>> load_public_certificate(
    const CertificateFiles& files) {
  return tls::load_certified_key(files.cert_path, files.key_path);
}

}  // namespace herald::controlplane

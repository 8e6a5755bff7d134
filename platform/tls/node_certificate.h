// A listener's certificate on a node: the operator's files when the config names them, else a
// self-signed pair generated at first start under <data_dir>/tls/ and reused afterwards (so
// clients that pinned it keep working across restarts). Shared by the control plane's public
// HTTPS listener and the dataplane's chat listener.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "platform/tls/certificate.h"

namespace herald::tls {

struct CertificateFiles {
  std::string cert_path;   // PEM chain, leaf first
  std::string key_path;    // PEM private key
  bool generated = false;  // true when this start created them
};

struct NodeCertificateRequest {
  std::string data_dir;
  // Both set: use them as they are. Both empty: generate (or reuse) <data_dir>/tls/<name>.*.
  // Only one set is an error naming `config_path`.
  std::string configured_cert;
  std::string configured_key;
  // The generated certificate's CN and an extra dNSName (beside localhost, 127.0.0.1, ::1).
  std::string common_name;
  // File stem under <data_dir>/tls/: "public" (HTTPS API), "chat" (dataplane).
  std::string name = "public";
  // Key of a generated certificate; an existing pair is reused whatever its type.
  KeyType key_type = KeyType::kEcdsaP256;
  // Config section named in errors, e.g. "tls.public_cert_path/public_key_path".
  std::string config_path = "tls.public_cert_path/public_key_path";
};

// Where the certificate comes from (see NodeCertificateRequest); generates it when needed.
absl::StatusOr<CertificateFiles> ensure_node_certificate(const NodeCertificateRequest& request);

// Loads the files (at start, and again for a reload without dropping connections).
absl::StatusOr<std::shared_ptr<const CertifiedKey>> load_node_certificate(
    const CertificateFiles& files);

}  // namespace herald::tls

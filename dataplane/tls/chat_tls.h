// The chat listener's TLS setup, once per dataplane process and shared by its workers: the
// certificate (configured files, or a self-signed one generated under the data dir at first
// start and reused), TLS versions, ALPN and rotating session-ticket keys, from the node config.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "platform/config/config.h"
#include "platform/tls/context.h"
#include "platform/tls/node_certificate.h"

namespace herald::dataplane {

// The ALPN protocol of the chat protocol (docs/PROTOCOL.md); a client that offers none is
// admitted too.
inline constexpr const char* kChatAlpn = "herald/1";

struct ChatTlsSettings {
  std::string data_dir;
  std::string cert_path;  // both empty: generated <data_dir>/tls/chat.{crt,key}
  std::string key_path;
  std::string common_name = "herald";
  tls::KeyType generated_key = tls::KeyType::kEcdsaP256;
  tls::TlsVersion min_version = tls::TlsVersion::kTls13;
  uint32_t ticket_rotation_s = 3600;
};

// From `tls.chat_*`, `node.name` and `node.data_dir`.
ChatTlsSettings chat_tls_settings(const config::Config& config);

class ChatTls {
 public:
  static absl::StatusOr<std::unique_ptr<ChatTls>> create(const ChatTlsSettings& settings);

  // Shared by every worker's TlsLayer (ServerContext is thread-safe).
  const std::shared_ptr<tls::ServerContext>& context() const { return context_; }
  const tls::CertificateFiles& files() const { return files_; }

  // Reads the certificate files again (SIGHUP, an operator's renewal) and swaps the
  // certificate in for new handshakes; established connections are untouched. On error the
  // old certificate stays and the error is returned.
  absl::Status reload_certificate();
  // Call every ticket_rotation_s() seconds from a timer (any one thread).
  void rotate_ticket_keys() { context_->rotate_ticket_keys(); }
  uint32_t ticket_rotation_s() const { return settings_.ticket_rotation_s; }

 private:
  ChatTls(ChatTlsSettings settings, tls::CertificateFiles files,
          std::shared_ptr<tls::ServerContext> context)
      : settings_(std::move(settings)), files_(std::move(files)), context_(std::move(context)) {}

  ChatTlsSettings settings_;
  tls::CertificateFiles files_;
  std::shared_ptr<tls::ServerContext> context_;
};

}  // namespace herald::dataplane

// The chat listener's TLS context from the node config (chat_tls.h).
#include "dataplane/tls/chat_tls.h"

#include <utility>

#include "platform/log/log.h"

namespace herald::dataplane {

ChatTlsSettings chat_tls_settings(const config::Config& config) {
  const config::Tls& t = config.tls();
  ChatTlsSettings s;
  s.data_dir = config.node().data_dir()->str();
  s.cert_path = t.chat_cert_path()->str();
  s.key_path = t.chat_key_path()->str();
  s.common_name = config.node().name()->str();
  s.generated_key = t.chat_generated_key() == config::TlsKeyType::ed25519
                        ? tls::KeyType::kEd25519
                        : tls::KeyType::kEcdsaP256;
  s.min_version = t.chat_min_version() == config::TlsMinVersion::tls12 ? tls::TlsVersion::kTls12
                                                                       : tls::TlsVersion::kTls13;
  s.ticket_rotation_s = t.chat_ticket_rotation_s();
  return s;
}

absl::StatusOr<std::unique_ptr<ChatTls>> ChatTls::create(const ChatTlsSettings& settings) {
  tls::NodeCertificateRequest request;
  request.data_dir = settings.data_dir;
  request.configured_cert = settings.cert_path;
  request.configured_key = settings.key_path;
  request.common_name = settings.common_name;
  request.name = "chat";
  request.key_type = settings.generated_key;
  request.config_path = "tls.chat_cert_path/chat_key_path";
  absl::StatusOr<tls::CertificateFiles> files = tls::ensure_node_certificate(request);
  if (!files.ok()) return files.status();
  absl::StatusOr<std::shared_ptr<const tls::CertifiedKey>> key = tls::load_node_certificate(*files);
  if (!key.ok()) return key.status();

  tls::ServerOptions options;
  options.min_version = settings.min_version;
  options.alpn_protocols = {kChatAlpn};
  options.session_tickets = true;
  options.ticket_lifetime_s = settings.ticket_rotation_s;
  // One ticket per handshake: a chat client holds one connection and resumes it.
  options.tickets_per_handshake = 1;
  absl::StatusOr<std::shared_ptr<tls::ServerContext>> context =
      tls::ServerContext::create(options, *key);
  if (!context.ok()) return context.status();
  HLOG_INFO("tls.chat_ready")
      .kv("cert", files->cert_path)
      .kv("generated", files->generated)
      .kv("sha256", tls::to_hex((*key)->leaf_sha256()));
  return std::unique_ptr<ChatTls>(new ChatTls(settings, std::move(*files), std::move(*context)));
}

absl::Status ChatTls::reload_certificate() {
  absl::StatusOr<std::shared_ptr<const tls::CertifiedKey>> key = tls::load_node_certificate(files_);
  if (!key.ok()) {
    HLOG_ERROR("tls.chat_reload_failed")
        .kv("cert", files_.cert_path)
        .kv("error", key.status().ToString());
    return key.status();
  }
  context_->set_certificate(std::move(*key));
  return absl::OkStatus();
}

}  // namespace herald::dataplane

// The chat listener's certificate and context from the config: generated under the data dir
// at first start and reused after, the configured files when given, both-or-neither, Ed25519,
// and reload.
#include "dataplane/tls/chat_tls.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "dataplane/session/session_options.h"
#include "platform/tls/certificate.h"

namespace herald::dataplane {
namespace {

class ChatTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "herald_chat_tls_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(ChatTlsTest, GeneratedAtFirstStartAndReused) {
  ChatTlsSettings s;
  s.data_dir = dir_;
  auto first = ChatTls::create(s);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE((*first)->files().generated);
  EXPECT_EQ((*first)->files().cert_path, dir_ + "/tls/chat.crt");
  const tls::Sha256 sha = (*first)->context()->certificate()->leaf_sha256();
  auto second = ChatTls::create(s);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE((*second)->files().generated);
  EXPECT_EQ((*second)->context()->certificate()->leaf_sha256(), sha);
  EXPECT_EQ((*second)->context()->options().min_version, tls::TlsVersion::kTls13);
  EXPECT_EQ((*second)->context()->options().alpn_protocols.at(0), kChatAlpn);
}

TEST_F(ChatTlsTest, Ed25519AndTls12FromSettings) {
  ChatTlsSettings s;
  s.data_dir = dir_;
  s.generated_key = tls::KeyType::kEd25519;
  s.min_version = tls::TlsVersion::kTls12;
  s.ticket_rotation_s = 120;
  auto chat = ChatTls::create(s);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(EVP_PKEY_id((*chat)->context()->certificate()->private_key()), EVP_PKEY_ED25519);
  EXPECT_EQ((*chat)->context()->options().min_version, tls::TlsVersion::kTls12);
  EXPECT_EQ((*chat)->context()->options().ticket_lifetime_s, 120u);
}

TEST_F(ChatTlsTest, ConfiguredFilesBothOrNeitherAndReload) {
  tls::CertificateRequest req;
  auto pem = tls::generate_certificate(req);
  ASSERT_TRUE(pem.ok());
  const std::string cert = dir_ + "/my.crt";
  const std::string key = dir_ + "/my.key";
  ASSERT_TRUE(tls::write_pem_files(*pem, cert, key).ok());

  ChatTlsSettings s;
  s.data_dir = dir_;
  s.cert_path = cert;
  auto half = ChatTls::create(s);
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.status().message().find("tls.chat_cert_path"), std::string::npos);

  s.key_path = key;
  auto chat = ChatTls::create(s);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_FALSE((*chat)->files().generated);
  const tls::Sha256 before = (*chat)->context()->certificate()->leaf_sha256();

  // The operator renews the files; reload swaps the certificate for new handshakes.
  auto renewed = tls::generate_certificate(req);
  ASSERT_TRUE(renewed.ok());
  ASSERT_TRUE(tls::write_pem_files(*renewed, cert, key).ok());
  ASSERT_TRUE((*chat)->reload_certificate().ok());
  EXPECT_NE((*chat)->context()->certificate()->leaf_sha256(), before);

  // A broken file keeps the running certificate.
  std::filesystem::remove(key);
  const tls::Sha256 current = (*chat)->context()->certificate()->leaf_sha256();
  EXPECT_FALSE((*chat)->reload_certificate().ok());
  EXPECT_EQ((*chat)->context()->certificate()->leaf_sha256(), current);
}

TEST_F(ChatTlsTest, SettingsFromConfig) {
  auto config = config::load_config_from_string(
      R"({"node": {"data_dir": "/tmp/x", "name": "n1"},
          "tls": {"chat_min_version": "tls12", "chat_generated_key": "ed25519",
                  "chat_ticket_rotation_s": 600}})");
  ASSERT_TRUE(config.ok()) << config.status();
  const ChatTlsSettings s = chat_tls_settings(*config);
  EXPECT_EQ(s.data_dir, "/tmp/x");
  EXPECT_EQ(s.common_name, "n1");
  EXPECT_EQ(s.min_version, tls::TlsVersion::kTls12);
  EXPECT_EQ(s.generated_key, tls::KeyType::kEd25519);
  EXPECT_EQ(s.ticket_rotation_s, 600u);
  EXPECT_TRUE(s.cert_path.empty());
}

TEST(SessionOptions, FromConfig) {
  auto config = config::load_config_from_string(
      R"({"node": {"id": 9},
          "dataplane": {"session_decode_buffers": 32},
          "limits": {"max_frame_bytes": 4096, "max_body_bytes": 3000, "max_unacked_messages": 7,
                     "idle_timeout_ms": 5000, "handshake_timeout_ms": 700,
                     "max_ids_per_ack": 3, "max_presence_subscriptions": 2}})");
  ASSERT_TRUE(config.ok()) << config.status();
  const SessionLayerOptions o = session_options_from_config(*config);
  EXPECT_EQ(o.node_id, 9);
  EXPECT_EQ(o.max_decode_buffers, 32u);
  EXPECT_EQ(o.limits.max_frame_bytes, 4096u);
  EXPECT_EQ(o.limits.max_body_bytes, 3000u);
  EXPECT_EQ(o.limits.max_unacked_messages, 7u);
  EXPECT_EQ(o.limits.idle_timeout_ms, 5000u);
  EXPECT_EQ(o.limits.handshake_timeout_ms, 700u);
  EXPECT_EQ(o.limits.max_ids_per_ack, 3u);
  EXPECT_EQ(o.limits.max_presence_subscriptions, 2u);
  EXPECT_EQ(o.limits.send_queue_bytes_per_session, 262144u);
}

}  // namespace
}  // namespace herald::dataplane

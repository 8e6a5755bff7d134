// Tests for certificate loading, generation and PEM file writing.
#include "platform/tls/certificate.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "tests/unit/platform/tls/tls_test_util.h"

namespace herald::tls {
namespace {

using testing::make_pem;
using testing::TempDir;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(TlsCertificate, GenerateWriteAndLoadEcdsa) {
  TempDir dir;
  CertificateRequest req;
  req.common_name = "node-1";
  req.dns_names = {"node1.example", "localhost"};
  req.ip_addresses = {"10.0.0.1", "::1"};
  req.validity_s = 30 * 24 * 3600;
  absl::StatusOr<PemCertificate> pem = generate_certificate(req);
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_NE(pem->cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(pem->key_pem.find("BEGIN PRIVATE KEY"), std::string::npos);

  const std::string cert_path = dir.file("node.crt");
  const std::string key_path = dir.file("node.key");
  ASSERT_TRUE(write_pem_files(*pem, cert_path, key_path).ok());
  struct stat st;
  ASSERT_EQ(::stat(key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(cert_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(read_text(cert_path), pem->cert_pem);

  auto loaded = load_certified_key(cert_path, key_path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->chain_length(), 1u);
  EXPECT_NE((*loaded)->subject().find("node-1"), std::string::npos);
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  EXPECT_FALSE((*loaded)->expired_at(now));
  EXPECT_LE((*loaded)->not_before_unix_s(), now);
  EXPECT_NEAR((*loaded)->not_after_unix_s() - (*loaded)->not_before_unix_s(), req.validity_s, 1);
  EXPECT_EQ(to_hex((*loaded)->leaf_sha256()).size(), 64u);
}

TEST(TlsCertificate, Ed25519AndIssuedChainLoad) {
  const PemCertificate ed = make_pem(KeyType::kEd25519);
  auto ed_key = certified_key_from_pem(ed.cert_pem, ed.key_pem);
  ASSERT_TRUE(ed_key.ok()) << ed_key.status();
  EXPECT_EQ(EVP_PKEY_id((*ed_key)->private_key()), EVP_PKEY_ED25519);

  // A leaf issued by a CA, loaded with the CA as the second element of its chain.
  const PemCertificate ca = make_pem(KeyType::kEcdsaP256, nullptr, true, "test CA");
  const PemCertificate leaf = make_pem(KeyType::kEcdsaP256, &ca, false, "leaf");
  auto chain = certified_key_from_pem(leaf.cert_pem + ca.cert_pem, leaf.key_pem);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ((*chain)->chain_length(), 2u);
  EXPECT_NE((*chain)->subject().find("leaf"), std::string::npos);
}

TEST(TlsCertificate, SerialsAndKeysAreFresh) {
  const PemCertificate a = make_pem();
  const PemCertificate b = make_pem();
  EXPECT_NE(a.cert_pem, b.cert_pem);
  EXPECT_NE(a.key_pem, b.key_pem);
}

TEST(TlsCertificate, MissingFilesAreNotFoundAndNamed) {
  TempDir dir;
  auto r = load_certified_key(dir.file("nope.crt"), dir.file("nope.key"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("nope.crt"), std::string::npos);
}

TEST(TlsCertificate, KeyThatDoesNotMatchIsRejected) {
  const PemCertificate a = make_pem();
  const PemCertificate b = make_pem();
  auto r = certified_key_from_pem(a.cert_pem, b.key_pem);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("does not match"), std::string::npos);
}

TEST(TlsCertificate, BadPemIsRejected) {
  const PemCertificate a = make_pem();
  EXPECT_FALSE(certified_key_from_pem("", a.key_pem).ok());
  EXPECT_FALSE(certified_key_from_pem("hello world", a.key_pem).ok());
  EXPECT_FALSE(certified_key_from_pem(a.cert_pem, "").ok());
  // A block whose base64 body is damaged.
  std::string broken = a.cert_pem;
  broken[broken.size() / 2] = '!';
  auto r = certified_key_from_pem(broken, a.key_pem);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  // A truncated chain (END line missing).
  auto t = certified_key_from_pem(a.cert_pem.substr(0, a.cert_pem.size() / 2), a.key_pem);
  EXPECT_FALSE(t.ok());
  // The key where the certificate should be.
  EXPECT_FALSE(certified_key_from_pem(a.key_pem, a.key_pem).ok());
}

TEST(TlsCertificate, ExpiredCertificateLoadsAndReportsExpiry) {
  CertificateRequest req;
  req.not_before_unix_s = static_cast<int64_t>(::time(nullptr)) - 10 * 24 * 3600;
  req.validity_s = 24 * 3600;  // ended nine days ago
  auto pem = generate_certificate(req);
  ASSERT_TRUE(pem.ok()) << pem.status();
  auto key = certified_key_from_pem(pem->cert_pem, pem->key_pem);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_TRUE((*key)->expired_at(static_cast<int64_t>(::time(nullptr))));
}

TEST(TlsCertificate, BadRequestsAreRejected) {
  CertificateRequest req;
  req.dns_names = {"bad,name"};
  EXPECT_EQ(generate_certificate(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.dns_names = {};
  req.ip_addresses = {"300.1.1.1"};
  EXPECT_EQ(generate_certificate(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.ip_addresses = {};
  req.validity_s = 0;
  EXPECT_EQ(generate_certificate(req).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TlsCertificate, WriteOverwritesAndTightensExistingKeyMode) {
  TempDir dir;
  const std::string key_path = dir.file("k.pem");
  { std::ofstream(key_path) << "old"; }
  ::chmod(key_path.c_str(), 0666);
  ASSERT_TRUE(write_pem_files(make_pem(), dir.file("c.pem"), key_path).ok());
  struct stat st;
  ASSERT_EQ(::stat(key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(read_text(key_path).find("PRIVATE KEY"), std::string::npos);
  EXPECT_FALSE(write_pem_files(make_pem(), dir.file("no/such/dir/c.pem"), key_path).ok());
}

}  // namespace
}  // namespace herald::tls

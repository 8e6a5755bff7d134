// Helpers for the TLS tests: throwaway certificates on disk and an in-memory "wire" that
// shuttles ciphertext between two connections.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "platform/tls/certificate.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"

namespace herald::tls::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "herald_tls_XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline PemCertificate make_pem(KeyType type = KeyType::kEcdsaP256,
                               const PemCertificate* issuer = nullptr, bool is_ca = false,
                               const std::string& cn = "localhost") {
  CertificateRequest req;
  req.key_type = type;
  req.common_name = cn;
  req.dns_names = {"localhost"};
  req.ip_addresses = {"127.0.0.1"};
  req.is_ca = is_ca;
  absl::StatusOr<PemCertificate> pem = generate_certificate(req, issuer);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return *pem;
}

inline std::shared_ptr<const CertifiedKey> load(const PemCertificate& pem) {
  auto key = certified_key_from_pem(pem.cert_pem, pem.key_pem);
  EXPECT_TRUE(key.ok()) << key.status();
  return *key;
}

// Moves ciphertext both ways until neither side has anything to send, feeding the other side
// everything (draining its plaintext into `*_plaintext` when its input queue is full).
struct Wire {
  Connection* a;
  Connection* b;
  std::vector<uint8_t> a_received;  // plaintext a read
  std::vector<uint8_t> b_received;  // plaintext b read
  bool a_closed = false;
  bool b_closed = false;

  static void drain(Connection* c, std::vector<uint8_t>* sink, bool* closed) {
    uint8_t buf[4096];
    for (;;) {
      IoResult r = c->read_plaintext(buf);
      if (r.status == IoStatus::kOk) {
        sink->insert(sink->end(), buf, buf + r.bytes);
        continue;
      }
      if (r.status == IoStatus::kClosed) *closed = true;
      return;
    }
  }
  static void deliver(Connection* from, Connection* to, std::vector<uint8_t>* sink, bool* closed) {
    std::vector<uint8_t> bytes = from->take_ciphertext();
    size_t done = 0;
    while (done < bytes.size()) {
      size_t n = to->feed_ciphertext(std::span<const uint8_t>(bytes).subspan(done));
      done += n;
      drain(to, sink, closed);
      if (n == 0 && to->error() != TlsError::kNone) break;
    }
  }
  // Returns the number of rounds that moved bytes.
  int pump(int max_rounds = 64) {
    int moved = 0;
    for (int i = 0; i < max_rounds; ++i) {
      const bool any = !a->pending_ciphertext().empty() || !b->pending_ciphertext().empty();
      deliver(a, b, &b_received, &b_closed);
      deliver(b, a, &a_received, &a_closed);
      drain(a, &a_received, &a_closed);
      drain(b, &b_received, &b_closed);
      if (!any) break;
      ++moved;
    }
    return moved;
  }
};

}  // namespace herald::tls::testing

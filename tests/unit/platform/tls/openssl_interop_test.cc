// Interop: the Debian `openssl s_client` (a separate process, OpenSSL 3) handshakes with a
// loopback TCP server driven by plain blocking sockets and a byte-driven herald Connection,
// and gets its line echoed back. Skips when the openssl CLI is absent. TLS 1.3 runs go through
// the compact record layer (the server frees its SSL after the handshake): every cipher suite,
// and KeyUpdates typed at s_client ('K': update_requested, 'k': update_not_requested).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "tests/unit/platform/tls/tls_test_util.h"

namespace herald::tls {
namespace {

using testing::load;
using testing::make_pem;
using testing::TempDir;

bool send_all(int fd, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return true;
}

bool flush(int fd, Connection* conn) {
  const bool ok = send_all(fd, conn->pending_ciphertext());
  conn->consume_ciphertext(conn->pending_ciphertext().size());
  return ok;
}

struct ServerResult {
  bool handshake_done = false;
  bool echoed = false;
  std::string alpn;
  uint16_t version = 0;
  bool compact = false;
  std::string cipher;
  uint32_t key_updates_received = 0;
  uint32_t key_updates_sent = 0;
  std::string error;
};

// Accepts one connection and echoes the first line with an "echo:" prefix, then closes with
// close_notify. Every blocking call has a timeout so a broken client cannot hang the test.
void serve_one(int listen_fd, std::shared_ptr<ServerContext> ctx, ServerResult* result) {
  pollfd pfd{listen_fd, POLLIN, 0};
  if (::poll(&pfd, 1, 30000) != 1) {
    result->error = "no connection";
    return;
  }
  const int fd = ::accept(listen_fd, nullptr, nullptr);
  if (fd < 0) {
    result->error = "accept failed";
    return;
  }
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  auto conn_or = Connection::server(std::move(ctx));
  Connection* conn = conn_or->get();
  std::string line;
  uint8_t buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      conn->feed_eof();
    } else {
      size_t done = 0;
      while (done < static_cast<size_t>(n)) {
        done += conn->feed_ciphertext(
            std::span<const uint8_t>(buf, static_cast<size_t>(n)).subspan(done));
        uint8_t plain[4096];
        IoResult r{};
        while ((r = conn->read_plaintext(plain)).status == IoStatus::kOk) {
          line.append(reinterpret_cast<const char*>(plain), r.bytes);
        }
        if (r.status == IoStatus::kError || r.status == IoStatus::kClosed) break;
      }
    }
    if (conn->handshake_done() && !result->handshake_done) {
      result->handshake_done = true;
      result->alpn = std::string(conn->alpn());
      result->version = conn->protocol_version();
      result->compact = conn->compact();
      result->cipher = conn->cipher_name();
    }
    result->key_updates_received = conn->key_updates_received();
    result->key_updates_sent = conn->key_updates_sent();
    if (conn->error() != TlsError::kNone) {
      result->error =
          std::string(tls_error_name(conn->error())) + ": " + std::string(conn->error_reason());
      (void)flush(fd, conn);
      break;
    }
    if (const size_t nl = line.find('\n'); nl != std::string::npos && !result->echoed) {
      const std::string reply = "echo:" + line.substr(0, nl + 1);
      const IoResult w = conn->write_plaintext(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(reply.data()), reply.size()));
      result->echoed = w.status == IoStatus::kOk && w.bytes == reply.size();
      conn->close();
      (void)flush(fd, conn);
      break;
    }
    if (!flush(fd, conn) || n <= 0) break;
  }
  ::shutdown(fd, SHUT_WR);
  // Let the client read everything before the socket goes (avoids an RST eating the reply).
  while (::recv(fd, buf, sizeof(buf), 0) > 0) {
  }
  ::close(fd);
}

struct Run {
  const char* name;
  const char* args;   // s_client options
  const char* input;  // shell command producing s_client's stdin
  bool tls12;
  const char* cipher;  // expected (BoringSSL's name); empty: any
  uint32_t key_updates_received;
  uint32_t key_updates_sent;
};

class OpensslInteropTest : public ::testing::TestWithParam<Run> {};

TEST_P(OpensslInteropTest, SClientHandshakesAndGetsEcho) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "openssl CLI not installed";
  }
  TempDir dir;
  const PemCertificate pem = make_pem();
  const std::string ca = dir.file("ca.pem");
  std::ofstream(ca) << pem.cert_pem;
  ServerOptions sopt;
  sopt.min_version = TlsVersion::kTls12;
  sopt.alpn_protocols = {"herald/1", "http/1.1"};
  auto ctx = ServerContext::create(sopt, load(pem));
  ASSERT_TRUE(ctx.ok()) << ctx.status();

  const int listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listen_fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listen_fd, 4), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  ServerResult result;
  std::thread server(serve_one, listen_fd, *ctx, &result);
  const std::string cmd =
      std::string(GetParam().input) +
      " | timeout 30 openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
      " -servername localhost -CAfile " + ca + " -verify_return_error -alpn herald/1 " +
      GetParam().args + " 2>&1";
  std::string output;
  if (FILE* p = ::popen(cmd.c_str(), "r"); p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) output.append(buf, n);
    ::pclose(p);
  }
  server.join();
  ::close(listen_fd);

  EXPECT_TRUE(result.handshake_done) << result.error << "\n" << output;
  EXPECT_TRUE(result.echoed) << result.error << "\n" << output;
  EXPECT_EQ(result.alpn, "herald/1");
  EXPECT_EQ(result.version, GetParam().tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  EXPECT_EQ(result.compact, !GetParam().tls12);
  if (*GetParam().cipher != 0) {
    EXPECT_EQ(result.cipher, GetParam().cipher);
  }
  EXPECT_EQ(result.key_updates_received, GetParam().key_updates_received) << output;
  EXPECT_EQ(result.key_updates_sent, GetParam().key_updates_sent) << output;
  EXPECT_NE(output.find("echo:ping-herald"), std::string::npos) << output;
  EXPECT_NE(output.find("Verify return code: 0 (ok)"), std::string::npos) << output;
  EXPECT_NE(output.find("ALPN protocol: herald/1"), std::string::npos) << output;
}

// s_client reads commands ('K', 'k') only without -ign_eof; stdin then stays open with sleeps
// so it does not quit before the echo arrives.
constexpr char kPing[] = "printf 'ping-herald\\n'";
constexpr char kKeyUpdates[] =
    "(printf 'K\\n'; sleep 1; printf 'k\\n'; sleep 1; printf 'K\\n'; sleep 1; "
    "printf 'ping-herald\\n'; sleep 2)";
INSTANTIATE_TEST_SUITE_P(
    Versions, OpensslInteropTest,
    ::testing::Values(Run{"tls1_3", "-ign_eof -tls1_3", kPing, false, "", 0, 0},
                      Run{"tls1_2", "-ign_eof -tls1_2", kPing, true, "", 0, 0},
                      Run{"aes128", "-ign_eof -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256", kPing,
                          false, "TLS_AES_128_GCM_SHA256", 0, 0},
                      Run{"aes256", "-ign_eof -tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384", kPing,
                          false, "TLS_AES_256_GCM_SHA384", 0, 0},
                      Run{"chacha20", "-ign_eof -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256",
                          kPing, false, "TLS_CHACHA20_POLY1305_SHA256", 0, 0},
                      Run{"key_updates", "-tls1_3", kKeyUpdates, false, "", 3, 2}),
    [](const ::testing::TestParamInfo<Run>& param_info) {
      return std::string(param_info.param.name);
    });

}  // namespace
}  // namespace herald::tls

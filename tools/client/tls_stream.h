// A blocking TLS client stream over one kernel TCP socket, for the tools (herald-chat, the
// registration calls of herald-loadgen) and end-to-end tests: platform/tls's byte-driven
// client connection, driven with poll() and a deadline per call.
//
//   auto stream = TlsStream::connect({.host = "127.0.0.1", .port = 5222,
//                                     .trust = Trust::pinned(cert_pem)});
//   (*stream)->write_all(bytes);
//   auto n = (*stream)->read_some(buffer, /*timeout_ms=*/1000);  // 0 on timeout
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"

namespace herald::tools {

// How the server's certificate is checked: a CA bundle (chain and host name), or one pinned
// leaf certificate (a node's self-signed certificate, whatever its names).
struct Trust {
  std::string ca_file;
  std::string pinned_cert_pem;  // the leaf, PEM
  static Trust ca(std::string file) { return Trust{std::move(file), {}}; }
  static Trust pinned(std::string pem) { return Trust{{}, std::move(pem)}; }
};

// Reads the first certificate of a PEM file, for Trust::pinned.
absl::StatusOr<std::string> read_pem_file(const std::string& path);
// SHA-256 of the DER of the first certificate in `pem`: what a pinned leaf is compared by.
absl::StatusOr<tls::Sha256> leaf_sha256_of_pem(const std::string& pem);

struct TlsStreamOptions {
  std::string host = "127.0.0.1";  // IPv4 or IPv6 literal
  uint16_t port = 0;
  // Sent as SNI and checked against the certificate with Trust::ca; empty: `host`.
  std::string server_name;
  Trust trust;
  std::vector<std::string> alpn_protocols;
  uint32_t connect_timeout_ms = 10'000;  // TCP connect and the TLS handshake together
  // Optional: a session from an earlier stream to the same server (resumption).
  tls::ClientSession resume;
};

class TlsStream {
 public:
  // Connects and completes the handshake. Unavailable when nothing listens, DeadlineExceeded on
  // the timeout, Unauthenticated when the certificate does not pass the trust check,
  // DataLoss/Aborted for other TLS failures (the message names tls::TlsError).
  static absl::StatusOr<std::unique_ptr<TlsStream>> connect(const TlsStreamOptions& options);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Writes all of `bytes` (encrypting and sending as the socket takes them).
  absl::Status write_all(std::span<const uint8_t> bytes, uint32_t timeout_ms = 10'000);
  // Plaintext into `out`: the number of bytes read, 0 when nothing came within `timeout_ms`.
  // OutOfRange once the server closed the stream (close_notify or EOF), other errors as
  // connect's.
  absl::StatusOr<size_t> read_some(std::span<uint8_t> out, uint32_t timeout_ms);
  // Sends close_notify and closes the socket.
  void close();

  const tls::Connection& tls() const { return *tls_; }
  // The newest resumable session (after the first read_some, for TLS 1.3).
  tls::ClientSession session() const { return tls_->session(); }
  int fd() const { return fd_; }

 private:
  TlsStream(int fd, std::shared_ptr<tls::ClientContext> context,
            std::unique_ptr<tls::Connection> connection);
  // Sends pending ciphertext; reads once if `want_read` and the socket is readable within
  // the deadline. Returns false on a timeout.
  absl::StatusOr<bool> pump(bool want_read, int64_t deadline_ms);
  absl::Status tls_status(const char* what) const;
  void feed_pending();

  int fd_;
  std::shared_ptr<tls::ClientContext> context_;
  std::unique_ptr<tls::Connection> tls_;
  bool eof_ = false;      // the socket reached end of stream
  bool eof_fed_ = false;  // ... and the TLS connection was told, after every byte before it
  // Ciphertext received that the connection's input queue could not take yet (it takes more
  // once plaintext is read).
  std::vector<uint8_t> pending_;
};

}  // namespace herald::tools

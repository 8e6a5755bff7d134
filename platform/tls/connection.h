// A TLS connection driven by bytes, not sockets: the caller feeds received ciphertext in,
// takes ciphertext to send out, and reads and writes plaintext. The io_uring server and the
// DPDK TCP stack both drive it the same way.
//
//   conn->feed_ciphertext(received);            // returns how much it took
//   while ((r = conn->read_plaintext(buf)).status == IoStatus::kOk) consume(buf, r.bytes);
//   (void)conn->write_plaintext(reply);
//   send(conn->pending_ciphertext()); conn->consume_ciphertext(sent);
#pragma once

#include <openssl/base.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "platform/tls/certificate.h"
#include "platform/tls/context.h"
#include "platform/tls/record_layer.h"

namespace herald::tls {

// Why a connection failed. Stable: counters and logs key on these names.
enum class TlsError : uint8_t {
  kNone = 0,
  kProtocol,     // malformed or unexpected record or message (garbage, plain HTTP, ...)
  kDecrypt,      // a record failed authentication (RFC 8446 §5.2 bad_record_mac)
  kHandshake,    // no shared version, cipher suite, group, signature algorithm or ALPN
  kCertificate,  // the peer's certificate is missing, untrusted, expired or unpinned
  kPeerAlert,    // the peer sent a fatal alert
  kTruncated,    // the transport ended without close_notify (RFC 8446 §6.1)
  kInternal,     // allocation or library failure on our side
};
inline constexpr int kTlsErrorCount = 8;
std::string_view tls_error_name(TlsError error);

enum class IoStatus : uint8_t {
  kOk,        // `bytes` moved
  kWantMore,  // nothing to do until more ciphertext arrives (or output drains)
  kClosed,    // the peer sent close_notify: no more plaintext will come
  kError,     // fatal; see error(). Send pending_ciphertext() (it may hold an alert), then close
};

struct IoResult {
  IoStatus status;
  size_t bytes;
};

enum class HandshakeState : uint8_t { kInProgress, kDone, kFailed };

// What the peer's certificate was (mTLS on the server; the server's, on a client).
struct PeerCertificate {
  bool present = false;
  Sha256 sha256{};      // of the leaf's DER
  std::string subject;  // one-line subject
};

// Resumable session handed out by a client connection.
using ClientSession = std::shared_ptr<SSL_SESSION>;

class Connection {
 public:
  // Ciphertext held in our input queue before the caller must drain plaintext: two maximum
  // records (RFC 8446 §5.2: 2^14 + 256 bytes of payload plus the 5-byte header).
  static constexpr size_t kMaxBufferedInputBytes = 2 * (16384 + 256 + 5);
  // write_plaintext stops taking plaintext while this much ciphertext awaits sending.
  static constexpr size_t kMaxBufferedOutputBytes = 4 * (16384 + 256 + 5);

  static absl::StatusOr<std::unique_ptr<Connection>> server(std::shared_ptr<ServerContext> context);
  // server_name: sent as SNI (when a DNS name) and checked against the certificate when the
  // context verifies with a CA file. resume: a session from an earlier connection, or null.
  static absl::StatusOr<std::unique_ptr<Connection>> client(std::shared_ptr<ClientContext> context,
                                                            const std::string& server_name,
                                                            ClientSession resume = nullptr);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Takes up to kMaxBufferedInputBytes of buffered ciphertext and advances the handshake.
  // Returns how many bytes it took: fewer than offered means read_plaintext() first.
  [[nodiscard]] size_t feed_ciphertext(std::span<const uint8_t> ciphertext);
  // The transport reached end of stream: after buffered input, reads see kClosed (if the peer
  // sent close_notify) or kError/kTruncated.
  void feed_eof();

  [[nodiscard]] IoResult read_plaintext(std::span<uint8_t> out);
  // Encrypts as much as fits (records of up to 16 KiB); kWantMore with 0 bytes while the
  // handshake is unfinished or output is backed up.
  [[nodiscard]] IoResult write_plaintext(std::span<const uint8_t> plaintext);

  // Ciphertext to send, valid until the next call on this connection.
  [[nodiscard]] std::span<const uint8_t> pending_ciphertext() const;
  void consume_ciphertext(size_t bytes);
  // pending_ciphertext() copied out and consumed; for tests and simple drivers.
  [[nodiscard]] std::vector<uint8_t> take_ciphertext();

  // Queues close_notify (RFC 8446 §6.1). Further writes fail.
  void close();

  // Compact mode (TLS 1.3; ServerOptions and ClientOptions::compact_after_handshake): once the
  // handshake is over and nothing is buffered inside BoringSSL, the connection exports the
  // traffic secrets and sequence numbers, frees its SSL, and protects records itself
  // (RecordLayer).
  bool compact() const { return records_ != nullptr; }
  // Idle: drop the AEAD contexts (~1.2 KB); the next record re-derives them. No-op unless
  // compact. The owner calls it when the connection has been quiet for a while.
  void park();
  bool parked() const { return records_ != nullptr && records_->parked(); }
  // Why compact mode rejected the peer's input (kNone otherwise; error() says the class).
  CompactError compact_error() const { return compact_error_; }
  // TLS 1.3 KeyUpdates processed in compact mode (BoringSSL handles them before the switch).
  uint32_t key_updates_received() const { return key_updates_received_; }
  uint32_t key_updates_sent() const { return key_updates_sent_; }
  // Tests only: put the compact record layer near sequence-number exhaustion.
  void set_sequences_for_testing(uint64_t read, uint64_t write) {
    if (records_ != nullptr) records_->set_sequences_for_testing(read, write);
  }

  HandshakeState handshake_state() const { return state_; }
  bool handshake_done() const { return state_ == HandshakeState::kDone; }
  bool resumed() const { return resumed_; }
  std::string_view alpn() const { return alpn_; }
  uint16_t protocol_version() const { return version_; }  // TLS1_3_VERSION, TLS1_2_VERSION
  const char* cipher_name() const { return cipher_name_; }
  const PeerCertificate& peer_certificate() const { return peer_; }
  bool close_notify_received() const { return close_notify_received_; }
  bool is_server() const { return is_server_; }

  TlsError error() const { return error_; }
  // BoringSSL's reason for the error ("DECRYPTION_FAILED_OR_BAD_RECORD_MAC"); static storage.
  std::string_view error_reason() const { return error_reason_; }

  // The newest resumable session a client received (TLS 1.3 tickets arrive after the
  // handshake, so read_plaintext must have run). Null on a server or before one arrived.
  ClientSession session() const { return session_; }

  // Internal (BIO and BoringSSL callbacks).
  struct ByteQueue {
    std::unique_ptr<uint8_t[]> data;
    size_t capacity = 0;
    size_t begin = 0;
    size_t end = 0;
    size_t size() const { return end - begin; }
    bool append(const uint8_t* bytes, size_t n);
    // Appends `n` uninitialized bytes and returns them (null when out of memory).
    uint8_t* extend(size_t n);
    void consume(size_t n);
  };
  int bio_read(uint8_t* out, int len);
  int bio_write(const uint8_t* in, int len);
  void set_session(SSL_SESSION* session);

 private:
  Connection(std::shared_ptr<const void> context, bool is_server);
  absl::Status init(SSL_CTX* ctx);
  void advance_handshake();
  void on_handshake_done();
  IoStatus fail(int ssl_result);
  // Compact mode (RecordLayer instead of the SSL).
  void try_compact();
  IoResult compact_read(std::span<uint8_t> out);
  IoResult compact_write(std::span<const uint8_t> plaintext);
  // Returns how the record was handled: kOk (go on), kClosed, kError.
  IoStatus compact_handshake(std::span<const uint8_t> content, size_t record_bytes);
  IoStatus compact_fail(CompactError error, uint8_t alert);
  bool send_record(uint8_t type, std::span<const uint8_t> content);

  std::shared_ptr<const void> context_;   // keeps the context (and its callbacks' state) alive
  bssl::UniquePtr<SSL> ssl_;              // null in compact mode
  std::unique_ptr<RecordLayer> records_;  // compact mode only
  ByteQueue in_;
  ByteQueue out_;
  ClientSession session_;
  PeerCertificate peer_;
  const char* cipher_name_ = "";
  const char* error_reason_ = "";
  // Points into the context's options (the protocol chosen is always one of them, and the
  // connection keeps its context alive): 16 bytes instead of a 255-byte copy per connection.
  std::string_view alpn_;
  uint16_t version_ = 0;
  HandshakeState state_ = HandshakeState::kInProgress;
  TlsError error_ = TlsError::kNone;
  bool is_server_;
  bool resumed_ = false;
  bool eof_ = false;
  bool close_notify_received_ = false;
  bool closed_ = false;
  bool compact_enabled_ = false;
  CompactError compact_error_ = CompactError::kNone;
  // Compact mode: a decrypted record's content waits at the front of in_ (decrypted in place):
  // plain_left_ bytes of it, then plain_skip_ bytes of type, padding and tag to drop.
  // A post-handshake message split across records (compact_handshake): header bytes gathered.
  uint8_t handshake_bytes_ = 0;
  uint8_t handshake_[5] = {};
  uint16_t plain_left_ = 0;
  uint16_t plain_skip_ = 0;
  uint32_t key_updates_received_ = 0;
  uint32_t key_updates_sent_ = 0;
};

}  // namespace herald::tls

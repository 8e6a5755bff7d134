// TLS 1.3 record protection (RFC 8446 §5.2-5.4, key schedule §7.1-7.3) on exported traffic
// secrets: what a server Connection keeps after the handshake instead of BoringSSL's SSL.
#pragma once

#include <openssl/aead.h>
#include <openssl/base.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace herald::tls {

// Why the compact record layer rejected the peer's input (counters key on these).
enum class CompactError : uint8_t {
  kNone = 0,
  kBadRecordMac,      // AEAD open failed (bad_record_mac)
  kRecordType,        // outer type not application_data, ChangeCipherSpec included
  kRecordVersion,     // legacy_record_version not 0x0303
  kRecordOverflow,    // ciphertext > 2^14+256 or inner plaintext > 2^14+1 (record_overflow)
  kEmptyRecord,       // inner plaintext with no non-zero byte (unexpected_message)
  kHandshakeMessage,  // not KeyUpdate (or to a client NewSessionTicket), or misaligned with a
                      // key change
  kDecode,            // malformed KeyUpdate or alert (decode_error / illegal_parameter)
  kSequenceOverflow,  // 2^64-1 records on one key: the connection ends
};
inline constexpr int kCompactErrorCount = 9;

class RecordLayer {
 public:
  static constexpr size_t kHeaderBytes = 5;
  static constexpr size_t kTagBytes = 16;                                  // every TLS 1.3 AEAD
  static constexpr size_t kMaxPlaintextBytes = 16384;                      // §5.1: 2^14
  static constexpr size_t kMaxCiphertextBytes = kMaxPlaintextBytes + 256;  // §5.2
  static constexpr uint8_t kAlert = 21;
  static constexpr uint8_t kHandshake = 22;
  static constexpr uint8_t kApplicationData = 23;

  // Null when `cipher_suite` (IANA id) is not one of the three TLS 1.3 AEAD suites or the
  // secrets' lengths do not match its hash.
  static std::unique_ptr<RecordLayer> create(uint16_t cipher_suite,
                                             std::span<const uint8_t> read_secret,
                                             uint64_t read_sequence,
                                             std::span<const uint8_t> write_secret,
                                             uint64_t write_sequence);
  ~RecordLayer();
  RecordLayer(const RecordLayer&) = delete;
  RecordLayer& operator=(const RecordLayer&) = delete;

  struct Opened {
    enum Status : uint8_t { kNeedMore, kRecord, kError } status;
    CompactError error = CompactError::kNone;
    uint8_t alert = 0;         // to send on kError (0: none)
    size_t record_bytes = 0;   // header + ciphertext: what the record occupied
    uint8_t content_type = 0;  // the inner type
    size_t content_bytes = 0;  // content starts at buffer[kHeaderBytes]
  };
  // Checks and decrypts, in place, the record at the front of `buffer` (which may hold a
  // partial record or several). Advances the read sequence number on success.
  Opened open(std::span<uint8_t> buffer);

  // Bytes seal() writes for `content_bytes` of content.
  static constexpr size_t sealed_bytes(size_t content_bytes, size_t padding_bytes = 0) {
    return kHeaderBytes + content_bytes + 1 + padding_bytes + kTagBytes;
  }
  // Protects one record into `out` (sealed_bytes() long; `content` may already sit at
  // out + kHeaderBytes), with `padding_bytes` zeros after the type (§5.4; tests use it to
  // build records a peer may send). False when the inner plaintext would exceed 2^14+1 + 255
  // padding, on sequence exhaustion or library failure.
  bool seal(uint8_t content_type, std::span<const uint8_t> content, uint8_t* out,
            size_t padding_bytes = 0);

  // §7.2: next traffic secret, new key and IV, sequence number back to zero.
  bool update_read_key();
  bool update_write_key();

  // Drops the AEAD contexts (the bulk of this object); the next open/seal re-derives them.
  void park();
  bool parked() const { return read_.ctx == nullptr && write_.ctx == nullptr; }

  uint16_t cipher_suite() const { return cipher_suite_; }
  uint64_t read_sequence() const { return read_.seq; }
  uint64_t write_sequence() const { return write_.seq; }
  void set_sequences_for_testing(uint64_t read, uint64_t write) {
    read_.seq = read;
    write_.seq = write;
  }

 private:
  struct Direction {
    uint8_t secret[48];
    uint8_t iv[12];
    uint64_t seq = 0;
    bssl::UniquePtr<EVP_AEAD_CTX> ctx;  // null while parked
  };
  RecordLayer() = default;
  bool set_secret(Direction& d, std::span<const uint8_t> secret);
  bool update(Direction& d);
  const EVP_AEAD_CTX* context(Direction& d);
  static void nonce(const Direction& d, uint8_t out[12]);

  const EVP_AEAD* aead_ = nullptr;
  const EVP_MD* md_ = nullptr;
  uint16_t cipher_suite_ = 0;
  uint8_t secret_bytes_ = 0;
  Direction read_;
  Direction write_;
};

}  // namespace herald::tls

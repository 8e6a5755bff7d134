// TLS 1.3 record protection on exported traffic secrets (record_layer.h).
#include "platform/tls/record_layer.h"

#include <openssl/digest.h>
#include <openssl/hkdf.h>
#include <openssl/mem.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string_view>

namespace herald::tls {
namespace {

// RFC 8446 §7.1: HKDF-Expand-Label(Secret, Label, "", Length).
bool expand_label(const EVP_MD* md, std::span<const uint8_t> secret, std::string_view label,
                  uint8_t* out, size_t out_bytes) {
  uint8_t info[2 + 1 + 6 + 16 + 1];
  constexpr std::string_view kPrefix = "tls13 ";
  if (label.size() > 16) return false;
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(out_bytes >> 8);
  info[n++] = static_cast<uint8_t>(out_bytes);
  info[n++] = static_cast<uint8_t>(kPrefix.size() + label.size());
  std::memcpy(info + n, kPrefix.data(), kPrefix.size());
  n += kPrefix.size();
  std::memcpy(info + n, label.data(), label.size());
  n += label.size();
  info[n++] = 0;  // empty context
  return HKDF_expand(out, out_bytes, md, secret.data(), secret.size(), info, n) == 1;
}

}  // namespace

std::unique_ptr<RecordLayer> RecordLayer::create(uint16_t cipher_suite,
                                                 std::span<const uint8_t> read_secret,
                                                 uint64_t read_sequence,
                                                 std::span<const uint8_t> write_secret,
                                                 uint64_t write_sequence) {
  std::unique_ptr<RecordLayer> layer(new RecordLayer());
  switch (cipher_suite) {
    case 0x1301:  // TLS_AES_128_GCM_SHA256
      layer->aead_ = EVP_aead_aes_128_gcm();
      layer->md_ = EVP_sha256();
      break;
    case 0x1302:  // TLS_AES_256_GCM_SHA384
      layer->aead_ = EVP_aead_aes_256_gcm();
      layer->md_ = EVP_sha384();
      break;
    case 0x1303:  // TLS_CHACHA20_POLY1305_SHA256
      layer->aead_ = EVP_aead_chacha20_poly1305();
      layer->md_ = EVP_sha256();
      break;
    default: return nullptr;
  }
  layer->cipher_suite_ = cipher_suite;
  layer->secret_bytes_ = static_cast<uint8_t>(EVP_MD_size(layer->md_));
  if (!layer->set_secret(layer->read_, read_secret) ||
      !layer->set_secret(layer->write_, write_secret)) {
    return nullptr;
  }
  layer->read_.seq = read_sequence;
  layer->write_.seq = write_sequence;
  return layer;
}

RecordLayer::~RecordLayer() {
  OPENSSL_cleanse(read_.secret, sizeof(read_.secret));
  OPENSSL_cleanse(write_.secret, sizeof(write_.secret));
}

bool RecordLayer::set_secret(Direction& d, std::span<const uint8_t> secret) {
  if (secret.size() != secret_bytes_) return false;
  std::memcpy(d.secret, secret.data(), secret.size());
  d.seq = 0;
  d.ctx.reset();  // derived on first use
  return expand_label(md_, {d.secret, secret_bytes_}, "iv", d.iv, sizeof(d.iv));
}

bool RecordLayer::update(Direction& d) {
  // §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "",
  // Hash.length)
  uint8_t next[48];
  if (!expand_label(md_, {d.secret, secret_bytes_}, "traffic upd", next, secret_bytes_)) {
    return false;
  }
  const bool ok = set_secret(d, {next, secret_bytes_});
  OPENSSL_cleanse(next, sizeof(next));
  return ok;
}

bool RecordLayer::update_read_key() {
  return update(read_);
}
bool RecordLayer::update_write_key() {
  return update(write_);
}

void RecordLayer::park() {
  read_.ctx.reset();
  write_.ctx.reset();
}

const EVP_AEAD_CTX* RecordLayer::context(Direction& d) {
  if (d.ctx != nullptr) return d.ctx.get();
  uint8_t key[32];
  const size_t key_bytes = EVP_AEAD_key_length(aead_);
  if (key_bytes > sizeof(key) ||
      !expand_label(md_, {d.secret, secret_bytes_}, "key", key, key_bytes)) {
    return nullptr;
  }
  d.ctx.reset(EVP_AEAD_CTX_new(aead_, key, key_bytes, kTagBytes));
  OPENSSL_cleanse(key, sizeof(key));
  return d.ctx.get();
}

void RecordLayer::nonce(const Direction& d, uint8_t out[12]) {
  // §5.3: the 64-bit sequence number, big-endian, left-padded to the IV length, XOR the IV.
  std::memcpy(out, d.iv, 12);
  for (int i = 0; i < 8; ++i) out[11 - i] ^= static_cast<uint8_t>(d.seq >> (8 * i));
}

RecordLayer::Opened RecordLayer::open(std::span<uint8_t> buffer) {
  Opened r{Opened::kNeedMore};
  auto reject = [&r](CompactError error, uint8_t alert) {
    r.status = Opened::kError;
    r.error = error;
    r.alert = alert;
    return r;
  };
  if (buffer.size() < kHeaderBytes) {
    // A wrong type is visible from the first byte: do not wait for a header that a plain-text
    // or ChangeCipherSpec sender may never complete.
    if (!buffer.empty() && buffer[0] != kApplicationData) {
      return reject(CompactError::kRecordType, SSL_AD_UNEXPECTED_MESSAGE);
    }
    return r;
  }
  const uint8_t* h = buffer.data();
  // §5: after the handshake every record is protected (type application_data); a
  // ChangeCipherSpec is only tolerated before the peer's Finished.
  if (h[0] != kApplicationData) return reject(CompactError::kRecordType, SSL_AD_UNEXPECTED_MESSAGE);
  if (h[1] != 0x03 || h[2] != 0x03) {
    return reject(CompactError::kRecordVersion, SSL_AD_PROTOCOL_VERSION);
  }
  const size_t length = (size_t{h[3]} << 8) | h[4];
  if (length > kMaxCiphertextBytes) {
    return reject(CompactError::kRecordOverflow, SSL_AD_RECORD_OVERFLOW);
  }
  if (buffer.size() < kHeaderBytes + length) return r;
  r.record_bytes = kHeaderBytes + length;
  if (read_.seq == UINT64_MAX) return reject(CompactError::kSequenceOverflow, 0);
  const EVP_AEAD_CTX* ctx = context(read_);
  if (ctx == nullptr) return reject(CompactError::kBadRecordMac, SSL_AD_INTERNAL_ERROR);
  uint8_t n[12];
  nonce(read_, n);
  uint8_t* body = buffer.data() + kHeaderBytes;
  size_t plain_bytes = 0;
  if (length < kTagBytes || EVP_AEAD_CTX_open(ctx, body, &plain_bytes, length, n, sizeof(n), body,
                                              length, h, kHeaderBytes) != 1) {
    return reject(CompactError::kBadRecordMac, SSL_AD_BAD_RECORD_MAC);
  }
  ++read_.seq;
  // §5.4: TLSInnerPlaintext is at most 2^14 + 1 bytes, padding included.
  if (plain_bytes > kMaxPlaintextBytes + 1) {
    return reject(CompactError::kRecordOverflow, SSL_AD_RECORD_OVERFLOW);
  }
  // §5.4: the type is the last non-zero byte; none at all is unexpected_message.
  while (plain_bytes > 0 && body[plain_bytes - 1] == 0) --plain_bytes;
  if (plain_bytes == 0) return reject(CompactError::kEmptyRecord, SSL_AD_UNEXPECTED_MESSAGE);
  r.status = Opened::kRecord;
  r.content_type = body[plain_bytes - 1];
  r.content_bytes = plain_bytes - 1;
  return r;
}

bool RecordLayer::seal(uint8_t content_type, std::span<const uint8_t> content, uint8_t* out,
                       size_t padding_bytes) {
  if (content.size() > kMaxPlaintextBytes || padding_bytes > 255 || write_.seq == UINT64_MAX) {
    return false;
  }
  const EVP_AEAD_CTX* ctx = context(write_);
  if (ctx == nullptr) return false;
  const size_t inner = content.size() + 1 + padding_bytes;
  const size_t length = inner + kTagBytes;
  out[0] = kApplicationData;
  out[1] = 0x03;
  out[2] = 0x03;
  out[3] = static_cast<uint8_t>(length >> 8);
  out[4] = static_cast<uint8_t>(length);
  uint8_t* body = out + kHeaderBytes;
  if (!content.empty() && content.data() != body)
    std::memmove(body, content.data(), content.size());
  body[content.size()] = content_type;
  std::memset(body + content.size() + 1, 0, padding_bytes);
  uint8_t n[12];
  nonce(write_, n);
  size_t sealed = 0;
  if (EVP_AEAD_CTX_seal(ctx, body, &sealed, length, n, sizeof(n), body, inner, out, kHeaderBytes) !=
          1 ||
      sealed != length) {
    return false;
  }
  ++write_.seq;
  return true;
}

}  // namespace herald::tls

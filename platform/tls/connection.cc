// TLS connection over a custom BIO whose two byte queues are filled and drained by the caller.
#include "platform/tls/connection.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>
#include <utility>

#include "platform/assert/assert.h"

namespace herald::tls {
namespace {

constexpr size_t kMaxRecordPlaintextBytes = 16384;  // RFC 8446 §5.1: 2^14

// A connection's byte queues are freed whenever they empty, so an idle connection holds no
// buffer; a busy one then takes a block per burst. The smallest block (4 KiB, which holds the
// records of a burst of chat messages) is past glibc's thread cache, and its malloc and free
// were 7% of a loaded dataplane worker: emptied blocks of that size are kept per thread, a few
// for the next burst of any connection on it.
constexpr size_t kQueueBlockBytes = 4096;
constexpr size_t kMaxCachedQueueBlocks = 64;  // 256 KiB a thread at most

class QueueBlockCache {
 public:
  QueueBlockCache() = default;
  QueueBlockCache(const QueueBlockCache&) = delete;
  QueueBlockCache& operator=(const QueueBlockCache&) = delete;
  ~QueueBlockCache() {
    for (size_t i = 0; i < count_; ++i) delete[] blocks_[i];
  }
  // A kQueueBlockBytes block, or null when the cache is empty.
  uint8_t* take() { return count_ == 0 ? nullptr : blocks_[--count_]; }
  // Keeps `block` (kQueueBlockBytes, from new[]) or frees it when the cache is full.
  void give(uint8_t* block) {
    if (count_ < kMaxCachedQueueBlocks) {
      blocks_[count_++] = block;
    } else {
      delete[] block;
    }
  }

 private:
  uint8_t* blocks_[kMaxCachedQueueBlocks] = {};
  size_t count_ = 0;
};

QueueBlockCache& queue_blocks() {
  thread_local QueueBlockCache cache;
  return cache;
}

int connection_ex_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The BIO BoringSSL reads ciphertext from and writes ciphertext to: both ends are queues in
// the Connection, so the transport (io_uring, DPDK TCP) never meets BoringSSL.
BIO_METHOD* connection_bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index(), "herald_tls_connection");
    HERALD_CHECK(m != nullptr, "BIO_meth_new");
    BIO_meth_set_read(m, [](BIO* bio, char* out, int len) -> int {
      BIO_clear_retry_flags(bio);
      auto* conn = static_cast<Connection*>(BIO_get_data(bio));
      const int n = conn->bio_read(reinterpret_cast<uint8_t*>(out), len);
      if (n < 0) BIO_set_retry_read(bio);
      return n;
    });
    BIO_meth_set_write(m, [](BIO* bio, const char* in, int len) -> int {
      BIO_clear_retry_flags(bio);
      auto* conn = static_cast<Connection*>(BIO_get_data(bio));
      return conn->bio_write(reinterpret_cast<const uint8_t*>(in), len);
    });
    BIO_meth_set_ctrl(
        m, [](BIO*, int cmd, long, void*) -> long { return cmd == BIO_CTRL_FLUSH ? 1 : 0; });
    return m;
  }();
  return method;
}

TlsError classify(uint32_t packed) {
  const int lib = ERR_GET_LIB(packed);
  const int reason = ERR_GET_REASON(packed);
  if (reason == ERR_R_MALLOC_FAILURE) return TlsError::kInternal;
  if (lib == ERR_LIB_X509) return TlsError::kCertificate;
  if (lib != ERR_LIB_SSL) return TlsError::kProtocol;  // e.g. ASN.1 in a peer's certificate
  if (reason >= SSL_AD_REASON_OFFSET) return TlsError::kPeerAlert;
  switch (reason) {
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC: return TlsError::kDecrypt;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: return TlsError::kCertificate;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_CIPHERS_AVAILABLE:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_SHARED_GROUP:
    case SSL_R_NO_COMMON_SIGNATURE_ALGORITHMS:
    case SSL_R_WRONG_SIGNATURE_TYPE:
    case SSL_R_NO_APPLICATION_PROTOCOL: return TlsError::kHandshake;
    default: return TlsError::kProtocol;
  }
}

}  // namespace

std::string_view tls_error_name(TlsError error) {
  switch (error) {
    case TlsError::kNone: return "none";
    case TlsError::kProtocol: return "protocol";
    case TlsError::kDecrypt: return "decrypt";
    case TlsError::kHandshake: return "handshake";
    case TlsError::kCertificate: return "certificate";
    case TlsError::kPeerAlert: return "peer_alert";
    case TlsError::kTruncated: return "truncated";
    case TlsError::kInternal: return "internal";
  }
  return "unknown";
}

namespace detail {
int on_new_client_session(SSL* ssl, SSL_SESSION* session) {
  auto* conn = static_cast<Connection*>(SSL_get_ex_data(ssl, connection_ex_index()));
  if (conn == nullptr) return 0;  // BoringSSL keeps ownership and frees it
  conn->set_session(session);
  return 1;  // we took the reference
}
}  // namespace detail

// ---- byte queues ---------------------------------------------------------------------------

bool Connection::ByteQueue::append(const uint8_t* bytes, size_t n) {
  if (n == 0) return true;
  uint8_t* to = extend(n);
  if (to == nullptr) return false;
  std::memcpy(to, bytes, n);
  return true;
}

uint8_t* Connection::ByteQueue::extend(size_t n) {
  if (capacity - end < n) {
    const size_t live = size();
    if (capacity - live >= n) {
      std::memmove(data.get(), data.get() + begin, live);
    } else {
      const size_t new_capacity = std::max({live + n, capacity * 2, kQueueBlockBytes});
      std::unique_ptr<uint8_t[]> grown(new_capacity == kQueueBlockBytes ? queue_blocks().take()
                                                                        : nullptr);
      if (grown == nullptr) grown.reset(new (std::nothrow) uint8_t[new_capacity]);
      if (grown == nullptr) return nullptr;
      if (live > 0) std::memcpy(grown.get(), data.get() + begin, live);
      data = std::move(grown);
      capacity = new_capacity;
    }
    begin = 0;
    end = live;
  }
  uint8_t* to = data.get() + end;
  end += n;
  return to;
}

void Connection::ByteQueue::consume(size_t n) {
  HERALD_DCHECK(n <= size(), "consuming more than is queued");
  begin += std::min(n, size());
  if (begin == end) {
    // Empty: give the memory back. An idle connection then holds no buffer at all, which is
    // what matters with millions of them; a busy one takes a block per burst (recycled).
    if (capacity == kQueueBlockBytes) {
      queue_blocks().give(data.release());
    } else {
      data.reset();
    }
    capacity = begin = end = 0;
  }
}

int Connection::bio_read(uint8_t* out, int len) {
  if (in_.size() == 0) return eof_ ? 0 : -1;
  const size_t n = std::min(in_.size(), static_cast<size_t>(std::max(len, 0)));
  std::memcpy(out, in_.data.get() + in_.begin, n);
  in_.consume(n);
  return static_cast<int>(n);
}

int Connection::bio_write(const uint8_t* in, int len) {
  if (len <= 0) return 0;
  return out_.append(in, static_cast<size_t>(len)) ? len : -1;
}

void Connection::set_session(SSL_SESSION* session) {
  session_ = ClientSession(session, &SSL_SESSION_free);
}

// ---- construction --------------------------------------------------------------------------

Connection::Connection(std::shared_ptr<const void> context, bool is_server)
    : context_(std::move(context)), is_server_(is_server) {}

Connection::~Connection() {
  // SSL_free may still touch the BIO, whose queues are members: free it first.
  ssl_.reset();
}

absl::Status Connection::init(SSL_CTX* ctx) {
  ssl_.reset(SSL_new(ctx));
  if (ssl_ == nullptr) return absl::ResourceExhaustedError("SSL_new");
  BIO* bio = BIO_new(connection_bio_method());
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new");
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_.get(), bio, bio);  // one reference, owned by the SSL
  SSL_set_ex_data(ssl_.get(), connection_ex_index(), this);
  // Free the certificate, key and preference copies once the handshake is over: an
  // established connection needs only its traffic keys.
  SSL_set_shed_handshake_config(ssl_.get(), 1);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::server(
    std::shared_ptr<ServerContext> context) {
  HERALD_CHECK(context != nullptr, "server connection needs a context");
  SSL_CTX* ctx = context->ssl_ctx();
  const bool compact = context->options().compact_after_handshake;
  std::unique_ptr<Connection> conn(new Connection(std::move(context), true));
  if (absl::Status s = conn->init(ctx); !s.ok()) return s;
  conn->compact_enabled_ = compact;
  SSL_set_accept_state(conn->ssl_.get());
  return conn;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::client(
    std::shared_ptr<ClientContext> context, const std::string& server_name, ClientSession resume) {
  HERALD_CHECK(context != nullptr, "client connection needs a context");
  SSL_CTX* ctx = context->ssl_ctx();
  const bool verify_name = !context->options().ca_file.empty();
  const bool compact = context->options().compact_after_handshake;
  std::unique_ptr<Connection> conn(new Connection(std::move(context), false));
  if (absl::Status s = conn->init(ctx); !s.ok()) return s;
  conn->compact_enabled_ = compact;
  SSL* ssl = conn->ssl_.get();
  SSL_set_connect_state(ssl);
  in6_addr ip;
  const bool is_ip = inet_pton(AF_INET, server_name.c_str(), &ip) == 1 ||
                     inet_pton(AF_INET6, server_name.c_str(), &ip) == 1;
  // RFC 6066 §3: SNI carries DNS names only, never literal addresses.
  if (!server_name.empty() && !is_ip && SSL_set_tlsext_host_name(ssl, server_name.c_str()) != 1) {
    return absl::InvalidArgumentError("bad server name: " + server_name);
  }
  if (verify_name && !server_name.empty()) {
    const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str())
                         : SSL_set1_host(ssl, server_name.c_str());
    if (ok != 1) return absl::InvalidArgumentError("bad server name: " + server_name);
  }
  if (resume != nullptr && SSL_set_session(ssl, resume.get()) != 1) {
    return absl::InternalError("SSL_set_session");
  }
  conn->advance_handshake();  // the ClientHello is ready to send at once
  return conn;
}

// ---- driving -------------------------------------------------------------------------------

IoStatus Connection::fail(int ssl_error) {
  state_ = state_ == HandshakeState::kDone ? state_ : HandshakeState::kFailed;
  // The newest entry is the TLS layer's verdict (DECRYPTION_FAILED_OR_BAD_RECORD_MAC); older
  // ones are the lower layer's detail (the cipher's BAD_DECRYPT).
  const uint32_t packed = ERR_peek_last_error();
  if (ssl_error == SSL_ERROR_SYSCALL && packed == 0) {
    // Our BIO only reports end of stream this way: the peer left without close_notify.
    error_ = TlsError::kTruncated;
    error_reason_ = "UNEXPECTED_EOF";
  } else if (packed == 0) {
    error_ = TlsError::kInternal;
    error_reason_ = "UNKNOWN";
  } else {
    error_ = classify(packed);
    const char* reason = ERR_reason_error_string(packed);
    error_reason_ = reason != nullptr ? reason : "UNKNOWN";
  }
  ERR_clear_error();
  return IoStatus::kError;
}

void Connection::advance_handshake() {
  if (state_ != HandshakeState::kInProgress) return;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    on_handshake_done();
    try_compact();
    return;
  }
  const int e = SSL_get_error(ssl_.get(), r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  fail(e);
}

void Connection::on_handshake_done() {
  SSL* ssl = ssl_.get();
  state_ = HandshakeState::kDone;
  resumed_ = SSL_session_reused(ssl) == 1;
  version_ = static_cast<uint16_t>(SSL_version(ssl));
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  cipher_name_ = cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "";
  const uint8_t* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  const std::string_view selected(reinterpret_cast<const char*>(alpn), alpn_len);
  // A server selects from its list; BoringSSL refuses a server's choice a client did not offer.
  const std::vector<std::string>& ours =
      is_server_ ? static_cast<const ServerContext*>(context_.get())->options().alpn_protocols
                 : static_cast<const ClientContext*>(context_.get())->options().alpn_protocols;
  for (const std::string& protocol : ours) {
    if (alpn_len > 0 && protocol == selected) alpn_ = protocol;
  }
  const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(ssl);
  if (chain != nullptr && sk_CRYPTO_BUFFER_num(chain) > 0) {
    const CRYPTO_BUFFER* leaf = sk_CRYPTO_BUFFER_value(chain, 0);
    peer_.present = true;
    SHA256(CRYPTO_BUFFER_data(leaf), CRYPTO_BUFFER_len(leaf), peer_.sha256.data());
    bssl::UniquePtr<X509> x509(SSL_get_peer_certificate(ssl));
    char buf[256];
    if (x509 != nullptr &&
        X509_NAME_oneline(X509_get_subject_name(x509.get()), buf, sizeof(buf)) != nullptr) {
      peer_.subject = buf;
    }
  }
}

size_t Connection::feed_ciphertext(std::span<const uint8_t> ciphertext) {
  // A failed connection swallows input: the caller is about to close it, and must not spin.
  if (error_ != TlsError::kNone) return ciphertext.size();
  const size_t room = in_.size() < kMaxBufferedInputBytes ? kMaxBufferedInputBytes - in_.size() : 0;
  const size_t n = std::min(room, ciphertext.size());
  if (!in_.append(ciphertext.data(), n)) {
    error_ = TlsError::kInternal;
    error_reason_ = "OUT_OF_MEMORY";
    state_ = state_ == HandshakeState::kDone ? state_ : HandshakeState::kFailed;
    return ciphertext.size();
  }
  advance_handshake();
  return n;
}

void Connection::feed_eof() {
  eof_ = true;
  advance_handshake();
}

IoResult Connection::read_plaintext(std::span<uint8_t> out) {
  if (error_ != TlsError::kNone) return {IoStatus::kError, 0};
  if (close_notify_received_) return {IoStatus::kClosed, 0};
  if (records_ != nullptr) return compact_read(out);
  if (state_ == HandshakeState::kInProgress) {
    advance_handshake();
    if (state_ == HandshakeState::kInProgress) return {IoStatus::kWantMore, 0};
    if (state_ == HandshakeState::kFailed) return {IoStatus::kError, 0};
  }
  if (out.empty()) return {IoStatus::kOk, 0};
  ERR_clear_error();
  const int r =
      SSL_read(ssl_.get(), out.data(), static_cast<int>(std::min<size_t>(out.size(), INT_MAX)));
  if (r > 0) return {IoStatus::kOk, static_cast<size_t>(r)};
  const int e = SSL_get_error(ssl_.get(), r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return {IoStatus::kWantMore, 0};
  if (e == SSL_ERROR_ZERO_RETURN) {
    close_notify_received_ = true;
    return {IoStatus::kClosed, 0};
  }
  return {fail(e), 0};
}

IoResult Connection::write_plaintext(std::span<const uint8_t> plaintext) {
  if (error_ != TlsError::kNone) return {IoStatus::kError, 0};
  if (closed_) return {IoStatus::kClosed, 0};
  if (records_ != nullptr) return compact_write(plaintext);
  if (state_ == HandshakeState::kInProgress) {
    advance_handshake();
    if (state_ == HandshakeState::kInProgress) return {IoStatus::kWantMore, 0};
    if (state_ == HandshakeState::kFailed) return {IoStatus::kError, 0};
  }
  size_t total = 0;
  // One record per SSL_write, and only while the output queue has room: our BIO then never
  // refuses a write, so BoringSSL never holds a half-written record that would tie the next
  // call to this same buffer.
  while (total < plaintext.size() && out_.size() < kMaxBufferedOutputBytes) {
    const size_t chunk = std::min(plaintext.size() - total, kMaxRecordPlaintextBytes);
    ERR_clear_error();
    const int r = SSL_write(ssl_.get(), plaintext.data() + total, static_cast<int>(chunk));
    if (r <= 0) {
      const int e = SSL_get_error(ssl_.get(), r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
      const IoStatus status = fail(e);
      if (total == 0) return {status, 0};
      break;
    }
    total += static_cast<size_t>(r);
  }
  return total > 0 ? IoResult{IoStatus::kOk, total} : IoResult{IoStatus::kWantMore, 0};
}

std::span<const uint8_t> Connection::pending_ciphertext() const {
  if (out_.size() == 0) return {};
  return {out_.data.get() + out_.begin, out_.size()};
}

void Connection::consume_ciphertext(size_t bytes) {
  out_.consume(bytes);
}

std::vector<uint8_t> Connection::take_ciphertext() {
  std::span<const uint8_t> pending = pending_ciphertext();
  std::vector<uint8_t> out(pending.begin(), pending.end());
  out_.consume(out.size());
  return out;
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  // Only an established, healthy connection has a close_notify to send; a failed one has
  // already queued its alert.
  if (state_ != HandshakeState::kDone || error_ != TlsError::kNone) return;
  if (records_ != nullptr) {
    static constexpr uint8_t kCloseNotify[2] = {1, SSL_AD_CLOSE_NOTIFY};  // warning, close_notify
    (void)send_record(RecordLayer::kAlert, kCloseNotify);
    return;
  }
  ERR_clear_error();
  (void)SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

// ---- compact mode ----------------------------------------------------------------------------

namespace {

const char* compact_reason(CompactError error) {
  switch (error) {
    case CompactError::kNone: return "";
    case CompactError::kBadRecordMac: return "DECRYPTION_FAILED_OR_BAD_RECORD_MAC";
    case CompactError::kRecordType: return "UNEXPECTED_RECORD";
    case CompactError::kRecordVersion: return "WRONG_VERSION_NUMBER";
    case CompactError::kRecordOverflow: return "RECORD_OVERFLOW";
    case CompactError::kEmptyRecord: return "EMPTY_INNER_PLAINTEXT";
    case CompactError::kHandshakeMessage: return "UNEXPECTED_MESSAGE";
    case CompactError::kDecode: return "DECODE_ERROR";
    case CompactError::kSequenceOverflow: return "SEQUENCE_NUMBER_EXHAUSTED";
  }
  return "UNKNOWN";
}

constexpr uint8_t kKeyUpdateType = 24;        // RFC 8446 §4: HandshakeType key_update
constexpr uint8_t kNewSessionTicketType = 4;  // §4: new_session_ticket
// §4.6.1: lifetime, age_add, a nonce length, a ticket of at least one byte, extensions.
constexpr uint32_t kMinNewSessionTicketBytes = 4 + 4 + 1 + 2 + 1 + 2;

uint32_t get24(const uint8_t* p) {
  return uint32_t{p[0]} << 16 | uint32_t{p[1]} << 8 | p[2];
}
void put24(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 16);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v);
}

}  // namespace

void Connection::try_compact() {
  if (!compact_enabled_ || records_ != nullptr || ssl_ == nullptr ||
      state_ != HandshakeState::kDone || error_ != TlsError::kNone || closed_ ||
      close_notify_received_ || version_ != TLS1_3_VERSION) {
    return;
  }
  SSL* ssl = ssl_.get();
  // Nothing may be left inside the SSL: no decrypted plaintext and no partial record (TLS
  // has no read-ahead, so SSL_has_pending covers both; the handshake consumed exactly the
  // peer's last flight; a server's tickets come only after the client's Finished, so a
  // client switches before any arrives), and no unsent output. BoringSSL holds a TLS 1.3 server's
  // NewSessionTickets back until the first write; a zero-byte SSL_write flushes them (its
  // documented way), and our BIO never refuses a write, so they are then in out_ and the
  // write sequence number counts them.
  if (SSL_in_init(ssl) || SSL_has_pending(ssl)) return;
  ERR_clear_error();
  const uint8_t none = 0;
  (void)SSL_write(ssl, &none, 0);
  ERR_clear_error();
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  bssl::Span<const uint8_t> read_secret;
  bssl::Span<const uint8_t> write_secret;
  if (cipher == nullptr || !bssl::SSL_get_traffic_secrets(ssl, &read_secret, &write_secret)) {
    compact_enabled_ = false;  // stay on the SSL
    ERR_clear_error();
    return;
  }
  records_ =
      RecordLayer::create(SSL_CIPHER_get_protocol_id(cipher),
                          {read_secret.data(), read_secret.size()}, SSL_get_read_sequence(ssl),
                          {write_secret.data(), write_secret.size()}, SSL_get_write_sequence(ssl));
  if (records_ == nullptr) {
    compact_enabled_ = false;
    return;
  }
  ssl_.reset();  // the BIO goes with it; in_ and out_ are ours and carry on
}

void Connection::park() {
  if (records_ != nullptr) records_->park();
}

bool Connection::send_record(uint8_t type, std::span<const uint8_t> content) {
  const size_t bytes = RecordLayer::sealed_bytes(content.size());
  uint8_t* to = out_.extend(bytes);
  if (to == nullptr) {
    error_ = TlsError::kInternal;
    error_reason_ = "OUT_OF_MEMORY";
    return false;
  }
  if (!records_->seal(type, content, to)) {
    out_.end -= bytes;  // the slot we took is the queue's tail
    if (out_.size() == 0) out_.consume(0);
    const bool exhausted = records_->write_sequence() == UINT64_MAX;
    compact_error_ = exhausted ? CompactError::kSequenceOverflow : CompactError::kNone;
    error_ = exhausted ? TlsError::kProtocol : TlsError::kInternal;
    error_reason_ = exhausted ? compact_reason(compact_error_) : "SEAL_FAILED";
    return false;
  }
  return true;
}

IoStatus Connection::compact_fail(CompactError error, uint8_t alert) {
  compact_error_ = error;
  error_ = error == CompactError::kBadRecordMac ? TlsError::kDecrypt : TlsError::kProtocol;
  error_reason_ = compact_reason(error);
  // A fatal alert, protected like any record, unless we already sent close_notify (nothing
  // may follow it).
  if (alert != 0 && !closed_) {
    const uint8_t body[2] = {2, alert};  // fatal
    const TlsError keep = error_;
    const char* keep_reason = error_reason_;
    (void)send_record(RecordLayer::kAlert, body);
    error_ = keep;
    error_reason_ = keep_reason;
  }
  closed_ = true;
  return IoStatus::kError;
}

IoStatus Connection::compact_handshake(std::span<const uint8_t> content, size_t record_bytes) {
  // After the handshake (§4.6) either peer may send a KeyUpdate, and a server may send a
  // client NewSessionTickets, which a compact client passes over (it keeps no session to
  // resume: ClientOptions::compact_after_handshake says so). A message may be split across
  // records: its header (and a KeyUpdate's one-byte body) is gathered in handshake_, a
  // ticket's body only counted off, what is left of it kept in the header's length field
  // (handshake_[1..3]). A KeyUpdate changes the read key, so it must end its record (§5.1).
  if (content.empty())
    return compact_fail(CompactError::kHandshakeMessage, SSL_AD_UNEXPECTED_MESSAGE);
  int request = -1;
  size_t i = 0;
  while (i < content.size()) {
    if (handshake_bytes_ == 4 && handshake_[0] == kNewSessionTicketType) {
      const uint32_t left = get24(&handshake_[1]);
      const auto n = static_cast<uint32_t>(std::min<size_t>(left, content.size() - i));
      i += n;
      put24(&handshake_[1], left - n);
      if (left == n) handshake_bytes_ = 0;
      continue;
    }
    handshake_[handshake_bytes_++] = content[i++];
    if (handshake_bytes_ == 1) {
      const bool ticket = !is_server_ && handshake_[0] == kNewSessionTicketType;
      if (handshake_[0] != kKeyUpdateType && !ticket) {
        return compact_fail(CompactError::kHandshakeMessage, SSL_AD_UNEXPECTED_MESSAGE);
      }
    } else if (handshake_bytes_ == 4) {
      if (handshake_[0] == kNewSessionTicketType) {
        if (get24(&handshake_[1]) < kMinNewSessionTicketBytes) {
          return compact_fail(CompactError::kDecode, SSL_AD_DECODE_ERROR);
        }
      } else if (handshake_[1] != 0 || handshake_[2] != 0 || handshake_[3] != 1) {
        return compact_fail(CompactError::kDecode, SSL_AD_DECODE_ERROR);
      }
    } else if (handshake_bytes_ == 5) {
      if (handshake_[4] > 1) return compact_fail(CompactError::kDecode, SSL_AD_ILLEGAL_PARAMETER);
      if (i != content.size()) {
        return compact_fail(CompactError::kHandshakeMessage, SSL_AD_UNEXPECTED_MESSAGE);
      }
      request = handshake_[4];
      handshake_bytes_ = 0;
    }
  }
  in_.consume(record_bytes);
  if (request < 0) return IoStatus::kOk;  // the rest comes in the next record
  if (!records_->update_read_key()) {
    error_ = TlsError::kInternal;
    error_reason_ = "KEY_UPDATE_FAILED";
    return IoStatus::kError;
  }
  ++key_updates_received_;
  // update_requested: answer with our own KeyUpdate under the current key, then switch ours
  // (§4.6.3). After close_notify we send nothing more, so there is nothing to rekey.
  if (request == 1 && !closed_) {
    static constexpr uint8_t kKeyUpdate[5] = {kKeyUpdateType, 0, 0, 1, 0};  // update_not_requested
    if (!send_record(RecordLayer::kHandshake, kKeyUpdate)) return IoStatus::kError;
    if (!records_->update_write_key()) {
      error_ = TlsError::kInternal;
      error_reason_ = "KEY_UPDATE_FAILED";
      return IoStatus::kError;
    }
    ++key_updates_sent_;
  }
  return IoStatus::kOk;
}

IoResult Connection::compact_read(std::span<uint8_t> out) {
  for (;;) {
    if (plain_left_ > 0) {
      if (out.empty()) return {IoStatus::kOk, 0};
      const size_t n = std::min<size_t>(out.size(), plain_left_);
      std::memcpy(out.data(), in_.data.get() + in_.begin, n);
      in_.consume(n);
      plain_left_ = static_cast<uint16_t>(plain_left_ - n);
      if (plain_left_ == 0) {
        in_.consume(plain_skip_);
        plain_skip_ = 0;
      }
      return {IoStatus::kOk, n};
    }
    const RecordLayer::Opened r = records_->open({in_.data.get() + in_.begin, in_.size()});
    if (r.status == RecordLayer::Opened::kError) return {compact_fail(r.error, r.alert), 0};
    if (r.status == RecordLayer::Opened::kNeedMore) {
      if (!eof_) return {IoStatus::kWantMore, 0};
      error_ = TlsError::kTruncated;  // the stream ended without close_notify (§6.1)
      error_reason_ = "UNEXPECTED_EOF";
      return {IoStatus::kError, 0};
    }
    const uint8_t* content = in_.data.get() + in_.begin + RecordLayer::kHeaderBytes;
    // §5.1: nothing may come between the records of a split handshake message.
    if (handshake_bytes_ > 0 && r.content_type != RecordLayer::kHandshake) {
      return {compact_fail(CompactError::kHandshakeMessage, SSL_AD_UNEXPECTED_MESSAGE), 0};
    }
    switch (r.content_type) {
      case RecordLayer::kApplicationData:
        if (r.content_bytes == 0) {  // §5.4: zero-length application data is legal
          in_.consume(r.record_bytes);
          continue;
        }
        in_.consume(RecordLayer::kHeaderBytes);
        plain_left_ = static_cast<uint16_t>(r.content_bytes);
        plain_skip_ =
            static_cast<uint16_t>(r.record_bytes - RecordLayer::kHeaderBytes - r.content_bytes);
        continue;
      case RecordLayer::kAlert: {
        // §6: one alert per record, never fragmented.
        if (r.content_bytes != 2)
          return {compact_fail(CompactError::kDecode, SSL_AD_DECODE_ERROR), 0};
        const uint8_t description = content[1];
        in_.consume(r.record_bytes);
        if (description == SSL_AD_CLOSE_NOTIFY) {
          close_notify_received_ = true;
          return {IoStatus::kClosed, 0};
        }
        error_ = TlsError::kPeerAlert;
        const char* reason =
            ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, SSL_AD_REASON_OFFSET + description));
        error_reason_ = reason != nullptr ? reason : "PEER_ALERT";
        return {IoStatus::kError, 0};
      }
      case RecordLayer::kHandshake: {
        const IoStatus s = compact_handshake({content, r.content_bytes}, r.record_bytes);
        if (s != IoStatus::kOk) return {s, 0};
        continue;
      }
      default:  // change_cipher_spec or unknown inside protection
        return {compact_fail(CompactError::kRecordType, SSL_AD_UNEXPECTED_MESSAGE), 0};
    }
  }
}

IoResult Connection::compact_write(std::span<const uint8_t> plaintext) {
  size_t total = 0;
  while (total < plaintext.size() && out_.size() < kMaxBufferedOutputBytes) {
    const size_t chunk = std::min(plaintext.size() - total, RecordLayer::kMaxPlaintextBytes);
    if (!send_record(RecordLayer::kApplicationData, plaintext.subspan(total, chunk))) {
      if (total == 0) return {IoStatus::kError, 0};
      break;
    }
    total += chunk;
  }
  return total > 0 ? IoResult{IoStatus::kOk, total} : IoResult{IoStatus::kWantMore, 0};
}

}  // namespace herald::tls

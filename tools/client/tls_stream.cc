// TlsStream: platform/tls's client connection over a non-blocking socket driven by poll().
#include "tools/client/tls_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace herald::tools {
namespace {

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// A non-blocking TCP socket connected to host:port within the deadline.
absl::StatusOr<int> connect_socket(const std::string& host, uint16_t port, int64_t deadline_ms) {
  sockaddr_storage address{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError("not an IP address: " + host);
  }
  const int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 && errno != EINPROGRESS) {
    const int error = errno;
    ::close(fd);
    return absl::UnavailableError(std::string("connect: ") + std::strerror(error));
  }
  pollfd p{fd, POLLOUT, 0};
  const int64_t wait_ms = std::max<int64_t>(0, deadline_ms - now_ms());
  if (poll(&p, 1, static_cast<int>(wait_ms)) != 1) {
    ::close(fd);
    return absl::DeadlineExceededError("connect timed out");
  }
  int error = 0;
  socklen_t error_length = sizeof(error);
  (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length);
  if (error != 0) {
    ::close(fd);
    return absl::UnavailableError(std::string("connect: ") + std::strerror(error));
  }
  return fd;
}

}  // namespace

absl::StatusOr<tls::Sha256> leaf_sha256_of_pem(const std::string& pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr)
    return absl::InvalidArgumentError("pinned certificate: not a PEM certificate");
  uint8_t* der = nullptr;
  const int length = i2d_X509(cert.get(), &der);
  if (length <= 0) return absl::InvalidArgumentError("pinned certificate: cannot encode");
  tls::Sha256 digest{};
  SHA256(der, static_cast<size_t>(length), digest.data());
  OPENSSL_free(der);
  return digest;
}

absl::StatusOr<std::string> read_pem_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TlsStream::TlsStream(int fd, std::shared_ptr<tls::ClientContext> context,
                     std::unique_ptr<tls::Connection> connection)
    : fd_(fd), context_(std::move(context)), tls_(std::move(connection)) {}

TlsStream::~TlsStream() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::unique_ptr<TlsStream>> TlsStream::connect(const TlsStreamOptions& options) {
  tls::ClientOptions client;
  client.alpn_protocols = options.alpn_protocols;
  if (!options.trust.pinned_cert_pem.empty()) {
    auto digest = leaf_sha256_of_pem(options.trust.pinned_cert_pem);
    if (!digest.ok()) return digest.status();
    client.pin = true;
    client.pinned_sha256 = *digest;
  } else if (!options.trust.ca_file.empty()) {
    client.ca_file = options.trust.ca_file;
  } else {
    return absl::InvalidArgumentError("no trust: give a CA file or a pinned certificate");
  }
  auto context = tls::ClientContext::create(std::move(client));
  if (!context.ok()) return context.status();
  const std::string server_name = options.server_name.empty() ? options.host : options.server_name;
  auto connection = tls::Connection::client(*context, server_name, options.resume);
  if (!connection.ok()) return connection.status();

  const int64_t deadline_ms = now_ms() + options.connect_timeout_ms;
  auto fd = connect_socket(options.host, options.port, deadline_ms);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<TlsStream> stream(new TlsStream(*fd, *context, std::move(*connection)));
  while (!stream->tls_->handshake_done()) {
    if (stream->tls_->handshake_state() == tls::HandshakeState::kFailed) {
      (void)stream->pump(false, deadline_ms);  // the alert, best effort
      return stream->tls_status("handshake");
    }
    auto progressed = stream->pump(true, deadline_ms);
    if (!progressed.ok()) return progressed.status();
    if (!*progressed) return absl::DeadlineExceededError("TLS handshake timed out");
    if (stream->eof_ && !stream->tls_->handshake_done()) {
      if (stream->tls_->handshake_state() == tls::HandshakeState::kFailed) {
        return stream->tls_status("handshake");
      }
      return absl::UnavailableError("the server closed the connection during the handshake");
    }
  }
  return stream;
}

void TlsStream::feed_pending() {
  // feed_ciphertext takes at most its input-queue bound; the rest waits for plaintext reads.
  size_t offset = 0;
  while (offset < pending_.size()) {
    const size_t taken = tls_->feed_ciphertext(std::span<const uint8_t>(pending_).subspan(offset));
    if (taken == 0) break;
    offset += taken;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(offset));
  // The end of the stream goes in after the last byte before it.
  if (eof_ && pending_.empty() && !eof_fed_) {
    eof_fed_ = true;
    tls_->feed_eof();
  }
}

absl::Status TlsStream::tls_status(const char* what) const {
  const std::string text = std::string(what) + ": " +
                           std::string(tls::tls_error_name(tls_->error())) + " (" +
                           std::string(tls_->error_reason()) + ")";
  if (tls_->error() == tls::TlsError::kCertificate) return absl::UnauthenticatedError(text);
  return absl::AbortedError(text);
}

absl::StatusOr<bool> TlsStream::pump(bool want_read, int64_t deadline_ms) {
  // Out first: the handshake and writes leave ciphertext behind.
  while (!tls_->pending_ciphertext().empty()) {
    const std::span<const uint8_t> out = tls_->pending_ciphertext();
    const ssize_t n = ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      tls_->consume_ciphertext(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return absl::UnavailableError(std::string("send: ") + std::strerror(errno));
    }
    pollfd p{fd_, POLLOUT, 0};
    const int64_t wait_ms = std::max<int64_t>(0, deadline_ms - now_ms());
    if (poll(&p, 1, static_cast<int>(wait_ms)) == 0) return false;
  }
  if (!want_read || eof_) return true;
  pollfd p{fd_, POLLIN, 0};
  const int64_t wait_ms = std::max<int64_t>(0, deadline_ms - now_ms());
  const int ready = poll(&p, 1, static_cast<int>(wait_ms));
  if (ready == 0) return false;
  if (ready < 0) return errno == EINTR ? true : false;
  uint8_t buffer[16 * 1024];
  const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
  if (n == 0) {
    eof_ = true;
    feed_pending();
    return true;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
    if (errno == ECONNRESET) {
      eof_ = true;
      feed_pending();
      return true;
    }
    return absl::UnavailableError(std::string("recv: ") + std::strerror(errno));
  }
  // In order behind anything the connection could not take yet.
  pending_.insert(pending_.end(), buffer, buffer + n);
  feed_pending();
  // Handshake replies (and post-handshake messages) may have been produced.
  return true;
}

absl::Status TlsStream::write_all(std::span<const uint8_t> bytes, uint32_t timeout_ms) {
  const int64_t deadline_ms = now_ms() + timeout_ms;
  while (!bytes.empty()) {
    const tls::IoResult r = tls_->write_plaintext(bytes);
    if (r.status == tls::IoStatus::kError) return tls_status("write");
    if (r.status == tls::IoStatus::kClosed) return absl::OutOfRangeError("stream closed");
    bytes = bytes.subspan(r.bytes);
    auto progressed = pump(false, deadline_ms);
    if (!progressed.ok()) return progressed.status();
    if (!*progressed) return absl::DeadlineExceededError("write timed out");
  }
  auto flushed = pump(false, deadline_ms);
  if (!flushed.ok()) return flushed.status();
  return *flushed ? absl::OkStatus() : absl::DeadlineExceededError("write timed out");
}

absl::StatusOr<size_t> TlsStream::read_some(std::span<uint8_t> out, uint32_t timeout_ms) {
  const int64_t deadline_ms = now_ms() + timeout_ms;
  for (;;) {
    feed_pending();
    const tls::IoResult r = tls_->read_plaintext(out);
    if (r.status == tls::IoStatus::kOk && r.bytes > 0) return r.bytes;
    if (r.status == tls::IoStatus::kClosed) return absl::OutOfRangeError("the server closed");
    if (r.status == tls::IoStatus::kError) {
      if (eof_ && tls_->error() == tls::TlsError::kTruncated) {
        return absl::OutOfRangeError("the server closed without close_notify");
      }
      return tls_status("read");
    }
    if (eof_ && pending_.empty()) return absl::OutOfRangeError("the server closed");
    auto progressed = pump(true, deadline_ms);
    if (!progressed.ok()) return progressed.status();
    if (!*progressed) return size_t{0};
  }
}

void TlsStream::close() {
  if (fd_ < 0) return;
  tls_->close();
  (void)pump(false, now_ms() + 1000);
  ::close(fd_);
  fd_ = -1;
}

}  // namespace herald::tools

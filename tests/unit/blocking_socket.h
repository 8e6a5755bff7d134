// Blocking loopback client sockets for tests, safe on a thread that owns io_uring rings.
//
// Why EINTR matters here: io_uring notifies a ring's owning thread of queued task work (creating
// an io-wq worker, a deferred completion) the way a signal would. A blocking socket call with a
// send or receive timeout (SO_SNDTIMEO / SO_RCVTIMEO) is then not restarted: it returns EINTR
// with nothing read or sent. Many tests build their server's objects (and so its rings) on the
// test thread, and a client that took that EINTR for a failure made such tests flaky (about one
// run in a hundred under ASan: push_service_test saw "no response" to a request the server had
// answered). Every call here retries it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::testing {

inline sockaddr_in loopback_address(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// Sets both socket timeouts, so a test thread cannot block forever on a silent peer.
inline void set_socket_timeouts(int fd, std::chrono::seconds timeout) {
  const timeval tv{.tv_sec = timeout.count(), .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Connects `fd` (blocking) to `addr`. 0 or an errno. An interrupted connect goes on in the
// kernel: it is waited for with poll (calling connect again would give EALREADY).
inline int connect_retrying(int fd, const sockaddr* addr, socklen_t len,
                            std::chrono::seconds timeout) {
  if (::connect(fd, addr, len) == 0) return 0;
  if (errno != EINTR) return errno;
  pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count() * 1000));
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return ETIMEDOUT;
  if (rc < 0) return errno;
  int err = 0;
  socklen_t err_len = sizeof(err);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) return errno;
  return err;
}

// A blocking client socket connected to 127.0.0.1:port with both timeouts set, or -1.
inline int connect_loopback(uint16_t port, std::chrono::seconds timeout = std::chrono::seconds(5)) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_socket_timeouts(fd, timeout);
  const sockaddr_in addr = loopback_address(port);
  if (connect_retrying(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), timeout) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends all of `data`; false on an error or the send timeout.
inline bool send_all_retrying(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

inline bool send_all_retrying(int fd, std::string_view data) {
  return send_all_retrying(fd, data.data(), data.size());
}

// One recv, EINTR retried: > 0 bytes, 0 at EOF, < 0 on an error or the receive timeout (errno
// says which).
inline ssize_t recv_retrying(int fd, void* buf, size_t size, int flags = 0) {
  for (;;) {
    const ssize_t n = ::recv(fd, buf, size, flags);
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

}  // namespace herald::testing

// Helpers for the io_uring loop tests: loopback sockets on ephemeral ports, temp dirs, and a
// bounded "run until" that fails a test instead of hanging it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "platform/uring/event_loop.h"
#include "tests/unit/blocking_socket.h"

namespace herald::uring::testing {

// Generous: a bound that turns a hang into a failure, never a speed requirement.
inline constexpr std::chrono::seconds kTestDeadline{20};

inline std::unique_ptr<EventLoop> make_loop(const Options& options = {}) {
  auto loop = EventLoop::create(options);
  EXPECT_TRUE(loop.ok()) << loop.status();
  return loop.ok() ? std::move(*loop) : nullptr;
}

// Runs the loop until `done()` holds; false if the deadline passed first.
template <typename Pred>
bool run_until(EventLoop& loop, Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + kTestDeadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    (void)loop.run_once(50'000'000);
  }
  return true;
}

inline sockaddr_in loopback(uint16_t port) {
  return herald::testing::loopback_address(port);
}

// A non-blocking listener on 127.0.0.1 with an ephemeral port.
inline int listen_loopback(uint16_t* port, int backlog = 256) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr = loopback(0);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(fd, backlog), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  *port = ntohs(addr.sin_port);
  return fd;
}

// A blocking client socket connected to 127.0.0.1:port, with send and receive timeouts so a
// test thread cannot block forever (EINTR handled: see tests/unit/blocking_socket.h).
inline int connect_blocking(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  herald::testing::set_socket_timeouts(fd, kTestDeadline);
  const sockaddr_in addr = loopback(port);
  const int err = herald::testing::connect_retrying(fd, reinterpret_cast<const sockaddr*>(&addr),
                                                    sizeof(addr), kTestDeadline);
  EXPECT_EQ(err, 0) << "connect to 127.0.0.1:" << port << ": " << std::strerror(err);
  return fd;
}

// Reads exactly n bytes or fails (timeout, EOF).
inline bool read_exact(int fd, uint8_t* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, out + got, n - got);
    if (r < 0 && errno == EINTR) continue;  // see connect_blocking
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

inline bool write_all(int fd, const uint8_t* data, size_t n) {
  return herald::testing::send_all_retrying(fd, data, n);
}

// Deterministic, position-dependent bytes so misordered or lost data shows.
inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

class TempDir {
 public:
  TempDir() {
    const char* base = ::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/herald_uring_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const char* made = ::mkdtemp(buf.data());
    EXPECT_NE(made, nullptr);
    path_ = made != nullptr ? made : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace herald::uring::testing

// Kernel sockets for the worker (network.h): non-blocking TCP sockets, registered once for read
// and write edges (edge-triggered epoll), reads run to EAGAIN.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/loadgen/engine.h"
#include "tools/loadgen/network.h"

namespace herald::tools::loadgen {
namespace {

std::string errno_name(int e) {
  const char* name = strerrorname_np(e);
  return name != nullptr ? name : "errno" + std::to_string(e);
}

constexpr size_t kReadBytes = 64 * 1024;
constexpr int kEventsPerWait = 1024;

class KernelNetwork final : public ClientNetwork {
 public:
  KernelNetwork(const WorkerPlan& plan, int epoll_fd)
      : plan_(plan), epoll_fd_(epoll_fd), read_buffer_(kReadBytes), events_(kEventsPerWait) {}

  ~KernelNetwork() override {
    for (size_t fd = 0; fd < sockets_.size(); ++fd) {
      if (sockets_[fd].open) ::close(static_cast<int>(fd));
    }
    ::close(epoll_fd_);
  }

  absl::StatusOr<NetHandle> connect(uint64_t token) override {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::UnavailableError("socket_" + errno_name(errno));
    const int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const auto& sources = plan_.options->source_addresses;
    if (!sources.empty()) {
      // The port is chosen at connect() time, per (source, destination) pair, so each source
      // address brings its own ephemeral range to the one destination port.
      (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      sockaddr_in source{};
      source.sin_family = AF_INET;
      source.sin_addr = sources[next_source_++ % sources.size()];
      if (bind(fd, reinterpret_cast<const sockaddr*>(&source), sizeof(source)) != 0) {
        const int e = errno;
        ::close(fd);
        return absl::UnavailableError("bind_" + errno_name(e));
      }
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&plan_.target), sizeof(plan_.target)) !=
            0 &&
        errno != EINPROGRESS) {
      const int e = errno;
      ::close(fd);
      return absl::UnavailableError("connect_" + errno_name(e));
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      const int e = errno;
      ::close(fd);
      return absl::UnavailableError("epoll_ctl_" + errno_name(e));
    }
    if (static_cast<size_t>(fd) >= sockets_.size()) sockets_.resize(fd + 1);
    sockets_[fd] = Socket{.token = token, .open = true, .connecting = true};
    return NetHandle{fd};
  }

  absl::StatusOr<size_t> send(NetHandle handle, std::span<const uint8_t> bytes) override {
    const int fd = static_cast<int>(handle);
    size_t taken = 0;
    while (taken < bytes.size()) {
      const ssize_t n =
          ::send(fd, bytes.data() + taken, bytes.size() - taken, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        taken += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // an EPOLLOUT edge follows
      if (n < 0 && errno == EINTR) continue;
      return absl::UnavailableError("send_" + errno_name(errno));
    }
    return taken;
  }

  void close(NetHandle handle) override {
    const int fd = static_cast<int>(handle);
    if (fd < 0 || static_cast<size_t>(fd) >= sockets_.size() || !sockets_[fd].open) return;
    sockets_[fd] = Socket{};
    ::close(fd);  // also leaves the epoll set
  }

  void wait(int64_t timeout_ns, NetworkEvents& events) override {
    const timespec timeout{static_cast<time_t>(timeout_ns / 1'000'000'000),
                           static_cast<long>(timeout_ns % 1'000'000'000)};
    const int n = epoll_pwait2(epoll_fd_, events_.data(), static_cast<int>(events_.size()),
                               &timeout, nullptr);
    for (int i = 0; i < n; ++i) dispatch(events_[i], events);
  }

 private:
  struct Socket {
    uint64_t token = 0;
    bool open = false;
    bool connecting = false;
  };

  // True while `fd` is still the socket of `token` (a handler may have closed it).
  bool still(int fd, uint64_t token) const {
    return sockets_[fd].open && sockets_[fd].token == token;
  }

  // The handle is gone before on_failed is delivered (network.h).
  void fail(int fd, uint64_t token, const std::string& reason, NetworkEvents& events) {
    close(fd);
    events.on_failed(token, reason);
  }

  void dispatch(const epoll_event& ev, NetworkEvents& events) {
    const int fd = ev.data.fd;
    if (static_cast<size_t>(fd) >= sockets_.size() || !sockets_[fd].open) return;
    const uint64_t token = sockets_[fd].token;
    if (sockets_[fd].connecting) {
      if ((ev.events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      int error = 0;
      socklen_t length = sizeof(error);
      (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        fail(fd, token, "connect_" + errno_name(error), events);
        return;
      }
      sockets_[fd].connecting = false;
      events.on_connected(token);
      if (!still(fd, token)) return;
    }
    if ((ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      if (!read_all(fd, token, events)) return;
    }
    if ((ev.events & EPOLLOUT) != 0) events.on_writable(token);
  }

  // Reads to EAGAIN; false once the socket is no longer `token`'s.
  bool read_all(int fd, uint64_t token, NetworkEvents& events) {
    for (;;) {
      const ssize_t n = recv(fd, read_buffer_.data(), read_buffer_.size(), 0);
      if (n > 0) {
        events.on_data(token,
                       std::span<const uint8_t>(read_buffer_.data(), static_cast<size_t>(n)));
        if (!still(fd, token)) return false;
        continue;
      }
      if (n == 0) {
        events.on_eof(token);
        return still(fd, token);
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      fail(fd, token, "recv_" + errno_name(errno), events);
      return false;
    }
  }

  const WorkerPlan& plan_;
  const int epoll_fd_;
  std::vector<Socket> sockets_;  // by fd
  size_t next_source_ = 0;
  std::vector<uint8_t> read_buffer_;
  std::vector<epoll_event> events_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ClientNetwork>> make_kernel_network(const WorkerPlan& plan) {
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return absl::UnavailableError("epoll_create_" + errno_name(errno));
  return std::make_unique<KernelNetwork>(plan, epoll_fd);
}

}  // namespace herald::tools::loadgen

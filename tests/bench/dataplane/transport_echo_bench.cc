// Echo throughput of the kernel transport (KernelTransport on one io_uring loop) against plain
// kernel-socket clients on loopback: connections, bytes/s each way, and the send requests and
// loop rounds (each one io_uring_enter at most, in blocking mode) per send() call.
//
//   build-rel/tests/bench/dataplane/transport_echo_bench [connections] [message_bytes] [seconds]
//       [worker]   (worker: drive it like the dataplane worker, poll() + prepare_to_sleep())
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/transport/kernel/kernel_transport.h"
#include "platform/uring/event_loop.h"

namespace herald::dataplane {
namespace {

// Echoes, pausing reads while its send queue is high and resuming on on_writable: the
// backpressure the session layer uses.
class Echo : public TransportEvents {
 public:
  Transport* transport = nullptr;
  void on_accepted(ConnectionId, const PeerAddress&) override {}
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    (void)transport->send(id, bytes);
    if (transport->queued_bytes(id) > 128 * 1024) transport->set_reading(id, false);
  }
  void on_writable(ConnectionId id) override { transport->set_reading(id, true); }
  void on_closed(ConnectionId, CloseReason) override {}
};

int connect_nonblocking(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  (void)::fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

int run(int connections, size_t message_bytes, double seconds, bool worker_style) {
  uring::Options loop_options;
  loop_options.mode = uring::RunMode::kBlocking;
  auto loop = uring::EventLoop::create(loop_options);
  if (!loop.ok()) {
    std::fprintf(stderr, "loop: %s\n", loop.status().ToString().c_str());
    return 1;
  }
  KernelTransportOptions options;
  options.listen_address = "127.0.0.1";
  options.limits.send_queue_bytes = 1024 * 1024;
  options.limits.send_low_water_bytes = 32 * 1024;
  auto transport = KernelTransport::create(**loop, options);
  if (!transport.ok()) {
    std::fprintf(stderr, "transport: %s\n", transport.status().ToString().c_str());
    return 1;
  }
  Echo echo;
  echo.transport = transport->get();
  (*transport)->start(echo);
  const uint16_t port = (*transport)->port();

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> echoed_bytes{0};
  // One client thread drives every connection: each keeps up to `window` bytes in flight.
  std::thread client([&] {
    const size_t window = std::max<size_t>(message_bytes * 4, 64 * 1024);
    std::vector<int> fds;
    std::vector<size_t> in_flight(static_cast<size_t>(connections), 0);
    for (int i = 0; i < connections; ++i) fds.push_back(connect_nonblocking(port));
    std::vector<uint8_t> message(message_bytes, 0x5a);
    std::vector<uint8_t> sink(256 * 1024);
    std::vector<pollfd> pfds(fds.size());
    uint64_t local = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      for (size_t i = 0; i < fds.size(); ++i) {
        pfds[i] = {
            fds[i],
            static_cast<short>(POLLIN | (in_flight[i] + message_bytes <= window ? POLLOUT : 0)), 0};
      }
      if (::poll(pfds.data(), pfds.size(), 100) <= 0) continue;
      for (size_t i = 0; i < fds.size(); ++i) {
        if ((pfds[i].revents & POLLIN) != 0) {
          const ssize_t r = ::read(fds[i], sink.data(), sink.size());
          if (r > 0) {
            in_flight[i] -= static_cast<size_t>(r);
            local += static_cast<uint64_t>(r);
          }
        }
        if ((pfds[i].revents & POLLOUT) != 0) {
          while (in_flight[i] + message_bytes <= window) {
            const ssize_t w = ::send(fds[i], message.data(), message.size(), MSG_NOSIGNAL);
            if (w <= 0) break;
            in_flight[i] += static_cast<size_t>(w);
            if (static_cast<size_t>(w) < message.size()) break;
          }
        }
      }
      echoed_bytes.store(local, std::memory_order_relaxed);
    }
    for (int fd : fds) ::close(fd);
  });

  // Warm up, then measure a window of `seconds`.
  const auto warm_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < warm_until) (void)(*loop)->run_once(10'000'000);
  const KernelTransportStats s0 = (*transport)->stats();
  const uring::LoopStats l0 = (*loop)->stats();
  const uint64_t e0 = echoed_bytes.load();
  const auto t0 = std::chrono::steady_clock::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  uint32_t idle_polls = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (!worker_style) {
      (void)(*loop)->run_once(10'000'000);
      continue;
    }
    // As the dataplane worker drives it: poll the loop and the transport's shards each turn,
    // sleep after 64 empty turns once the transport agrees.
    const uint32_t work = (*loop)->poll_once() + (*transport)->poll();
    if (work > 0 || ++idle_polls < 64) continue;
    idle_polls = 0;
    if ((*transport)->prepare_to_sleep()) (void)(*loop)->run_once(10'000'000);
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const KernelTransportStats s1 = (*transport)->stats();
  const uring::LoopStats l1 = (*loop)->stats();
  const uint64_t e1 = echoed_bytes.load();
  stop = true;
  client.join();
  (*transport)->stop();
  while (!(*transport)->idle()) (void)(*loop)->run_once(10'000'000);

  const double sends = static_cast<double>(s1.sends - s0.sends);
  std::printf("connections=%d message_bytes=%zu seconds=%.2f\n", connections, message_bytes,
              elapsed);
  std::printf("server bytes_in/s=%.1f MB/s bytes_out/s=%.1f MB/s client echoed/s=%.1f MB/s\n",
              static_cast<double>(s1.bytes_in - s0.bytes_in) / elapsed / 1e6,
              static_cast<double>(s1.bytes_out - s0.bytes_out) / elapsed / 1e6,
              static_cast<double>(e1 - e0) / elapsed / 1e6);
  std::printf("send() calls/s=%.0f send_requests/send=%.3f partial_sends=%llu\n", sends / elapsed,
              static_cast<double>(s1.send_requests - s0.send_requests) / sends,
              static_cast<unsigned long long>(s1.partial_sends - s0.partial_sends));
  std::printf("loop rounds (io_uring_enter)/send=%.3f sqes/send=%.3f enobufs=%llu\n",
              static_cast<double>(l1.iterations - l0.iterations) / sends,
              static_cast<double>(l1.sqes_submitted - l0.sqes_submitted) / sends,
              static_cast<unsigned long long>(l1.enobufs - l0.enobufs));
  return 0;
}

}  // namespace
}  // namespace herald::dataplane

int main(int argc, char** argv) {
  const int connections = argc > 1 ? std::atoi(argv[1]) : 64;
  const size_t message_bytes = argc > 2 ? static_cast<size_t>(std::atol(argv[2])) : 512;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 2.0;
  const bool worker_style = argc > 4 && std::string(argv[4]) == "worker";
  if (connections <= 0 || message_bytes == 0 || seconds <= 0) {
    std::fprintf(stderr,
                 "usage: transport_echo_bench [connections] [message_bytes] [seconds] [worker]\n");
    return 2;
  }
  return herald::dataplane::run(connections, message_bytes, seconds, worker_style);
}

// Memory per idle connection held by the kernel transport: N loopback connections from forked
// client processes (10,000 each, so no process needs more than its RLIMIT_NOFILE), then the
// server process's RSS, /proc/meminfo Slab and /proc/net/sockstat before and after. Slab and
// sockstat are system-wide: they include the client sockets (one per connection) and whatever
// else the machine does meanwhile, so run it on a quiet machine and read the figures as such.
//
//   build/tests/bench/dataplane/transport_idle_bench [connections]   (default 20000)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "dataplane/transport/kernel/kernel_transport.h"
#include "platform/uring/event_loop.h"

namespace herald::dataplane {
namespace {

constexpr int kPerClient = 10'000;

class Idle : public TransportEvents {
 public:
  void on_accepted(ConnectionId, const PeerAddress&) override {}
  void on_data(ConnectionId, std::span<const uint8_t>) override {}
  void on_writable(ConnectionId) override {}
  void on_closed(ConnectionId, CloseReason) override {}
};

// A "Key: value kB" line of a /proc file, in bytes (or the raw number when there is no unit).
long long proc_value(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream fields(line.substr(key.size()));
    long long v = 0;
    std::string unit;
    fields >> v >> unit;
    return unit == "kB" ? v * 1024 : v;
  }
  return -1;
}

// /proc/net/sockstat "TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 1": field `name`.
long long sockstat_tcp(const std::string& name) {
  std::ifstream in("/proc/net/sockstat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("TCP:", 0) != 0) continue;
    std::istringstream fields(line.substr(4));
    std::string key;
    long long v;
    while (fields >> key >> v) {
      if (key == name) return v;
    }
  }
  return -1;
}

// /proc/slabinfo: cache name -> bytes of its active objects.
std::map<std::string, long long> slab_caches() {
  std::map<std::string, long long> out;
  std::ifstream in("/proc/slabinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind("slabinfo", 0) == 0) continue;
    std::istringstream fields(line);
    std::string name;
    long long active = 0, total = 0, size = 0;
    if (fields >> name >> active >> total >> size) out[name] = active * size;
  }
  return out;
}

struct Snapshot {
  long long rss = 0;
  long long slab = 0;
  long long sunreclaim = 0;
  long long tcp_inuse = 0;
  long long tcp_alloc = 0;
  long long tcp_mem_pages = 0;
  std::map<std::string, long long> caches;
};

Snapshot snapshot() {
  Snapshot s;
  s.rss = proc_value("/proc/self/status", "VmRSS:");
  s.slab = proc_value("/proc/meminfo", "Slab:");
  s.sunreclaim = proc_value("/proc/meminfo", "SUnreclaim:");
  s.tcp_inuse = sockstat_tcp("inuse");
  s.tcp_alloc = sockstat_tcp("alloc");
  s.tcp_mem_pages = sockstat_tcp("mem");
  s.caches = slab_caches();
  return s;
}

int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 65536; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) ++n;
  }
  return n;
}

// A client process: `count` connections, held until the parent closes `hold_fd`'s other end.
[[noreturn]] void run_client(uint16_t port, int count, int ready_fd, int hold_fd) {
  std::vector<int> fds;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      std::perror("client connect");
      ::_exit(1);
    }
    fds.push_back(fd);
  }
  const char done = 'D';
  (void)!::write(ready_fd, &done, 1);
  char byte;
  (void)!::read(hold_fd, &byte, 1);  // EOF when the parent is done measuring
  ::_exit(0);
}

int run(int connections) {
  auto loop = uring::EventLoop::create({});
  if (!loop.ok()) {
    std::fprintf(stderr, "loop: %s\n", loop.status().ToString().c_str());
    return 1;
  }
  KernelTransportOptions o;
  o.listen_address = "127.0.0.1";
  o.limits.max_connections = static_cast<uint32_t>(connections);
  auto t = KernelTransport::create(**loop, o);
  if (!t.ok()) {
    std::fprintf(stderr, "transport: %s\n", t.status().ToString().c_str());
    return 1;
  }
  Idle idle;
  (*t)->start(idle);
  for (int i = 0; i < 10; ++i) (void)(*loop)->run_once(1'000'000);
  const Snapshot before = snapshot();

  int ready[2];
  int hold[2];
  if (::pipe(ready) != 0 || ::pipe(hold) != 0) return 1;
  std::vector<pid_t> clients;
  for (int left = connections; left > 0; left -= kPerClient) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(hold[1]);
      run_client((*t)->port(), std::min(left, kPerClient), ready[1], hold[0]);
    }
    clients.push_back(pid);
  }
  ::close(hold[0]);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(180);
  while ((*t)->connections() < static_cast<uint32_t>(connections) &&
         std::chrono::steady_clock::now() < deadline) {
    (void)(*loop)->run_once(10'000'000);
  }
  const double accept_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < clients.size(); ++i) {
    char c;
    (void)!::read(ready[0], &c, 1);
  }
  // Settle: let the kernel finish what the handshakes left (timers, deferred frees).
  for (int i = 0; i < 100; ++i) (void)(*loop)->run_once(10'000'000);
  const Snapshot after = snapshot();
  const KernelTransportStats& s = (*t)->stats();
  const double n = (*t)->connections();

  std::printf("connections=%u (accepted in %.2f s) shards=%u table_slots=%u table_full=%llu\n",
              (*t)->connections(), accept_s, s.shards, s.table_slots,
              static_cast<unsigned long long>(s.table_full));
  std::printf(
      "server process: %d descriptors open, RSS +%.0f bytes/connection "
      "(connection slot: %zu bytes)\n",
      open_fds(), (after.rss - before.rss) / n, KernelTransport::connection_bytes());
  std::printf(
      "kernel, per connection (its two loopback sockets): Slab +%.0f bytes "
      "(SUnreclaim +%.0f), TCP mem pages +%lld, TCP sockets inuse +%lld alloc +%lld\n",
      (after.slab - before.slab) / n, (after.sunreclaim - before.sunreclaim) / n,
      after.tcp_mem_pages - before.tcp_mem_pages, after.tcp_inuse - before.tcp_inuse,
      after.tcp_alloc - before.tcp_alloc);
  // The slab caches that grew by at least 64 bytes per connection (both sockets of each).
  for (const auto& [name, bytes] : after.caches) {
    const auto it = before.caches.find(name);
    const long long grown = bytes - (it == before.caches.end() ? 0 : it->second);
    if (grown >= 64 * n)
      std::printf("  slab %-20s +%.0f bytes/connection\n", name.c_str(), grown / n);
  }
  std::printf("raw: Slab %lld -> %lld, RSS %lld -> %lld\n", before.slab, after.slab, before.rss,
              after.rss);

  std::fflush(stdout);
  ::close(hold[1]);  // the clients exit, closing their ends
  for (pid_t pid : clients) (void)::waitpid(pid, nullptr, 0);
  (*t)->stop();
  for (int i = 0; i < 30'000 && !(*t)->idle(); ++i) {
    (void)(*loop)->run_once(10'000'000);
    if (i % 500 == 499) {
      std::fprintf(stderr, "stopping: %u connections open\n", (*t)->connections());
    }
  }
  t->reset();
  return 0;
}

}  // namespace
}  // namespace herald::dataplane

int main(int argc, char** argv) {
  const int connections = argc > 1 ? std::atoi(argv[1]) : 20'000;
  if (connections <= 0) {
    std::fprintf(stderr, "usage: transport_idle_bench [connections]\n");
    return 2;
  }
  return herald::dataplane::run(connections);
}

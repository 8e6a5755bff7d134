// KernelTransport's socket shards: connections held as direct descriptors beyond RLIMIT_NOFILE
// (a forked server with a limit of 200 holding 1000 connections from this process), the
// max_connections edge across shards, a full file table counted and recovered from, and a
// sleeping loop woken by the shards' eventfd.
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/transport/kernel/kernel_transport.h"
#include "gtest/gtest.h"
#include "tests/unit/platform/uring/uring_test_util.h"

namespace herald::dataplane {
namespace {

using uring::testing::connect_blocking;
using uring::testing::pattern;
using uring::testing::read_exact;
using uring::testing::run_until;
using uring::testing::write_all;

// Reads until EOF or error: the errno of the end (0 for EOF).
int read_end(int fd) {
  uint8_t buf[4096];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r > 0) continue;
    return r == 0 ? 0 : errno;
  }
}

// Echoes everything; records ids, their shards and closes.
class EchoLayer : public TransportEvents {
 public:
  Transport* transport = nullptr;
  std::vector<ConnectionId> accepted;
  std::set<ConnectionId> open;
  std::map<uint32_t, uint32_t> per_shard;  // connections accepted per shard
  uint32_t closed = 0;
  uint32_t peak = 0;

  void on_accepted(ConnectionId id, const PeerAddress& peer) override {
    (void)peer;
    accepted.push_back(id);
    open.insert(id);
    ++per_shard[KernelTransport::shard_of(id)];
    peak = std::max<uint32_t>(peak, static_cast<uint32_t>(open.size()));
  }
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    (void)transport->send(id, bytes);
  }
  void on_writable(ConnectionId id) override { (void)id; }
  void on_closed(ConnectionId id, CloseReason reason) override {
    (void)reason;
    open.erase(id);
    ++closed;
  }
};

class ShardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_ = uring::testing::make_loop();
    ASSERT_NE(loop_, nullptr);
    options_.listen_address = "127.0.0.1";
    options_.recv_buffer_count = 64;
    options_.recv_buffer_size_bytes = 4096;
  }
  void TearDown() override {
    transport_.reset();
    loop_.reset();
  }
  KernelTransport* make(EchoLayer& layer) {
    auto t = KernelTransport::create(*loop_, options_);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return nullptr;
    transport_ = std::move(*t);
    layer.transport = transport_.get();
    transport_->start(layer);
    return transport_.get();
  }
  template <typename Pred>
  bool run(Pred done) {
    return run_until(*loop_, done);
  }

  std::unique_ptr<uring::EventLoop> loop_;
  KernelTransportOptions options_;
  EchoLayer layer_;  // outlives the transport (declared before it)
  std::unique_ptr<KernelTransport> transport_;
};

// --- 1000 connections in a process whose RLIMIT_NOFILE is 200 ----------------------------------

constexpr uint32_t kForkConnections = 1000;
constexpr size_t kMessageBytes = 3000;
constexpr uint32_t kForkRlimit = 200;

struct ServerReport {
  int32_t error = 0;  // != 0: the server could not run (which step)
  uint32_t shards = 0;
  uint32_t shards_used = 0;
  uint32_t max_per_shard = 0;
  uint32_t table_slots = 0;
  uint32_t peak = 0;
  uint32_t fds_at_peak = 0;  // entries of /proc/self/fd while holding every connection
  uint32_t distinct_ids = 0;
  uint64_t accepts = 0;
  uint64_t refused = 0;
  uint64_t table_full = 0;
  uint64_t accept_errors = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t local_closes = 0;
  uint64_t other_closes = 0;
};

uint32_t count_open_fds() {
  uint32_t n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// The server's layer: echoes; a message starting with 'G' is closed gracefully once echoed, one
// starting with 'A' is aborted when one byte more arrives.
class ForkedServerLayer : public EchoLayer {
 public:
  std::map<ConnectionId, size_t> received;
  std::map<ConnectionId, uint8_t> mode;

  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    size_t& got = received[id];
    if (got == 0) mode[id] = bytes[0];
    got += bytes.size();
    const size_t echo = got > kMessageBytes ? bytes.size() - (got - kMessageBytes) : bytes.size();
    if (echo > 0) (void)transport->send(id, bytes.subspan(0, echo));
    if (mode[id] == 'G' && got == kMessageBytes) transport->close(id, CloseMode::kGraceful);
    if (mode[id] == 'A' && got > kMessageBytes) transport->close(id, CloseMode::kAbort);
  }
};

int run_forked_server(int out_fd) {
  ServerReport report;
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = kForkRlimit;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
  auto loop = uring::EventLoop::create({});
  if (!loop.ok()) return 11;
  KernelTransportOptions o;
  o.listen_address = "127.0.0.1";
  o.fd_reserve = 50;  // tables of 150 entries
  o.limits.max_connections = kForkConnections;
  o.recv_buffer_count = 64;
  o.recv_buffer_size_bytes = 4096;
  auto t = KernelTransport::create(**loop, o);
  if (!t.ok()) {
    report.error = 12;
    (void)!::write(out_fd, &report, sizeof(report));
    return 12;
  }
  ForkedServerLayer layer;
  layer.transport = t->get();
  (*t)->start(layer);
  const uint16_t port = (*t)->port();
  if (::write(out_fd, &port, sizeof(port)) != sizeof(port)) return 13;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool ready_sent = false;
  while (layer.closed < kForkConnections && std::chrono::steady_clock::now() < deadline) {
    (void)(*loop)->run_once(50'000'000);
    if (!ready_sent && (*t)->connections() == kForkConnections) {
      ready_sent = true;
      report.fds_at_peak = count_open_fds();
      const char ready = 'R';
      if (::write(out_fd, &ready, 1) != 1) return 14;
    }
  }
  const KernelTransportStats& s = (*t)->stats();
  report.shards = s.shards;
  report.table_slots = s.table_slots;
  report.shards_used = static_cast<uint32_t>(layer.per_shard.size());
  for (const auto& [shard, n] : layer.per_shard) {
    report.max_per_shard = std::max(report.max_per_shard, n);
  }
  report.peak = layer.peak;
  report.distinct_ids = static_cast<uint32_t>(
      std::set<ConnectionId>(layer.accepted.begin(), layer.accepted.end()).size());
  report.accepts = s.accepts;
  report.refused = s.refused_over_limit;
  report.table_full = s.table_full;
  report.accept_errors = s.accept_errors;
  report.bytes_in = s.bytes_in;
  report.bytes_out = s.bytes_out;
  for (size_t i = 0; i < s.closes.size(); ++i) {
    (i == static_cast<size_t>(CloseReason::kLocalClose) ? report.local_closes
                                                        : report.other_closes) += s.closes[i];
  }
  if (::write(out_fd, &report, sizeof(report)) != sizeof(report)) return 15;
  (*t)->stop();
  for (int i = 0; i < 1000 && !(*t)->idle(); ++i) (void)(*loop)->run_once(10'000'000);
  t->reset();
  return 0;
}

// Reads exactly n bytes from a pipe within the test deadline.
bool read_pipe(int fd, void* out, size_t n) {
  auto* p = static_cast<uint8_t*>(out);
  const auto deadline = std::chrono::steady_clock::now() + uring::testing::kTestDeadline;
  while (n > 0) {
    pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (::poll(&pfd, 1, 100) <= 0) continue;
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

TEST(KernelTransportShards, ThousandConnectionsUnderAnRlimitOf200) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t server = ::fork();
  ASSERT_GE(server, 0);
  if (server == 0) {
    ::close(pipe_fds[0]);
    ::_exit(run_forked_server(pipe_fds[1]));
  }
  ::close(pipe_fds[1]);
  const int from_server = pipe_fds[0];
  // Whatever happens below, the server does not outlive the test.
  struct Reaper {
    pid_t pid;
    int status = -1;
    bool reaped = false;
    ~Reaper() {
      if (!reaped) {
        ::kill(pid, SIGKILL);
        (void)::waitpid(pid, &status, 0);
      }
    }
  } reaper{server};

  uint16_t port = 0;
  ASSERT_TRUE(read_pipe(from_server, &port, sizeof(port)));
  // This process is the client, with its own (larger) limit.
  std::vector<int> fds;
  for (uint32_t i = 0; i < kForkConnections; ++i) {
    const int fd = connect_blocking(port);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  char ready = 0;
  ASSERT_TRUE(read_pipe(from_server, &ready, 1));  // the server holds all of them at once
  ASSERT_EQ(ready, 'R');

  std::vector<std::vector<uint8_t>> sent(kForkConnections);
  for (uint32_t i = 0; i < kForkConnections; ++i) {
    sent[i] = pattern(kMessageBytes, 7000 + i);
    sent[i][0] = i % 2 == 0 ? 'G' : 'A';
    ASSERT_TRUE(write_all(fds[i], sent[i].data(), sent[i].size()));
  }
  uint32_t exact = 0;
  uint32_t graceful_eof = 0;
  uint32_t reset = 0;
  std::vector<uint8_t> got(kMessageBytes);
  for (uint32_t i = 0; i < kForkConnections; ++i) {
    if (read_exact(fds[i], got.data(), got.size()) && got == sent[i]) ++exact;
    if (i % 2 == 0) {
      if (read_end(fds[i]) == 0) ++graceful_eof;
    } else {
      const uint8_t one[1] = {'x'};
      if (write_all(fds[i], one, 1) && read_end(fds[i]) == ECONNRESET) ++reset;
    }
  }
  EXPECT_EQ(exact, kForkConnections);
  EXPECT_EQ(graceful_eof, kForkConnections / 2);
  EXPECT_EQ(reset, kForkConnections / 2);
  for (int fd : fds) ::close(fd);

  ServerReport report;
  ASSERT_TRUE(read_pipe(from_server, &report, sizeof(report)));
  int status = 0;
  ASSERT_EQ(::waitpid(server, &status, 0), server);
  reaper.reaped = true;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(report.error, 0);
  // ceil((1000 + accept_batch 16) / 150) shards, several of them in use, none over its table.
  EXPECT_EQ(report.shards, 7u);
  EXPECT_EQ(report.table_slots, kForkConnections + 16);
  EXPECT_GE(report.shards_used, 7u);
  EXPECT_LE(report.max_per_shard, 150u);
  EXPECT_EQ(report.peak, kForkConnections);
  EXPECT_LT(report.fds_at_peak, kForkRlimit);  // 1000 connections, under 200 descriptors
  EXPECT_EQ(report.distinct_ids, kForkConnections);
  EXPECT_EQ(report.accepts, kForkConnections);
  EXPECT_EQ(report.refused, 0u);
  EXPECT_EQ(report.table_full, 0u);
  EXPECT_EQ(report.accept_errors, 0u);
  EXPECT_EQ(report.bytes_in, kForkConnections * kMessageBytes + kForkConnections / 2);
  EXPECT_EQ(report.bytes_out, kForkConnections * kMessageBytes);
  EXPECT_EQ(report.local_closes, kForkConnections);
  EXPECT_EQ(report.other_closes, 0u);
  ::close(from_server);
}

// --- In-process shard edges ---------------------------------------------------------------------

TEST_F(ShardsTest, MaxConnectionsEdgeAcrossShards) {
  options_.shard_capacity = 40;
  options_.accept_batch = 4;
  options_.limits.max_connections = 100;  // ceil(104 / 40) = 3 shards: 40, 40, 24
  KernelTransport* t = make(layer_);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shards(), 3u);
  EXPECT_EQ(t->stats().table_slots, 104u);
  std::vector<int> fds;
  for (int i = 0; i < 100; ++i) {
    fds.push_back(connect_blocking(t->port()));
    if (i % 10 == 9) {
      ASSERT_TRUE(run([&] { return layer_.accepted.size() == fds.size(); }));
    }
  }
  EXPECT_EQ(t->connections(), 100u);
  // Fill-first: every shard in use, none over its table.
  ASSERT_EQ(layer_.per_shard.size(), 3u);
  EXPECT_LE(layer_.per_shard[0], 40u);
  EXPECT_LE(layer_.per_shard[1], 40u);
  EXPECT_LE(layer_.per_shard[2], 24u);

  const int extra = connect_blocking(t->port());  // the kernel completes the handshake...
  ASSERT_TRUE(run([&] { return t->stats().refused_over_limit == 1; }));  // ...we refuse it
  EXPECT_EQ(read_end(extra), ECONNRESET);
  ::close(extra);
  EXPECT_EQ(layer_.accepted.size(), 100u);
  // Room again once one leaves, on whichever shard has it.
  ::close(fds[0]);
  ASSERT_TRUE(run([&] { return layer_.closed == 1; }));
  fds[0] = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer_.accepted.size() == 101; }));
  EXPECT_EQ(t->connections(), 100u);
  // Echo on every connection still works, whatever its shard.
  for (size_t i = 0; i < fds.size(); ++i) {
    const uint8_t byte[1] = {static_cast<uint8_t>(i)};
    ASSERT_TRUE(write_all(fds[i], byte, 1));
  }
  uint32_t echoed = 0;
  std::thread reader([&] {
    for (size_t i = 0; i < fds.size(); ++i) {
      uint8_t back[1] = {};
      if (read_exact(fds[i], back, 1) && back[0] == static_cast<uint8_t>(i)) ++echoed;
    }
  });
  ASSERT_TRUE(run([&] { return t->stats().bytes_out == 100; }));
  reader.join();
  EXPECT_EQ(echoed, 100u);
  EXPECT_EQ(t->stats().accepts, 101u);
  EXPECT_EQ(t->stats().refused_over_limit, 1u);
  EXPECT_EQ(t->stats().table_full, 0u);
  for (int fd : fds) ::close(fd);
  ASSERT_TRUE(run([&] { return layer_.closed == 101; }));
}

TEST_F(ShardsTest, FullTableIsCountedPausedAndRecovered) {
  options_.shard_capacity = 8;
  options_.accept_batch = 4;
  options_.accept_retry_ms = 20;
  options_.limits.max_connections = 4;  // one shard of 8 entries
  auto created = KernelTransport::create(*loop_, options_);
  ASSERT_TRUE(created.ok()) << created.status();
  transport_ = std::move(*created);
  KernelTransport* t = transport_.get();
  ASSERT_EQ(t->shards(), 1u);
  // Something else holds every entry of the table: the accounting cannot know.
  t->occupy_table_for_testing(0, 8);
  layer_.transport = t;
  t->start(layer_);
  const int lost = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return t->stats().table_full == 1; }));
  // The kernel took the connection and dropped it: the client sees it end.
  const int end = read_end(lost);
  EXPECT_TRUE(end == 0 || end == ECONNRESET) << end;
  ::close(lost);
  EXPECT_EQ(t->stats().accept_errors, 1u);
  EXPECT_TRUE(layer_.accepted.empty());

  t->release_table_for_testing();
  const int fd = connect_blocking(t->port());
  ASSERT_TRUE(run([&] { return layer_.accepted.size() == 1; }));
  const uint8_t byte[1] = {42};
  ASSERT_TRUE(write_all(fd, byte, 1));
  std::atomic<bool> echoed{false};
  std::thread reader([&] {
    uint8_t back[1] = {};
    echoed = read_exact(fd, back, 1) && back[0] == 42;
  });
  ASSERT_TRUE(run([&] { return t->stats().bytes_out == 1; }));
  reader.join();
  EXPECT_TRUE(echoed.load());
  EXPECT_EQ(t->stats().table_full, 1u);
  ::close(fd);
}

// A loop asleep in its own ring wakes for a shard's completion (the eventfd), both when the
// transport is driven by the loop alone and after a worker-style poll() / prepare_to_sleep().
TEST_F(ShardsTest, SleepingLoopWakesForShardCompletions) {
  KernelTransport* t = make(layer_);
  ASSERT_NE(t, nullptr);
  for (int i = 0; i < 3; ++i) (void)loop_->run_once(0);  // the accepts go out
  const int fd = connect_blocking(t->port());
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20 && layer_.accepted.empty(); ++i) (void)loop_->run_once(10'000'000'000);
  ASSERT_EQ(layer_.accepted.size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));

  // Worker style: poll, then announce the sleep; bytes arriving wake the loop.
  (void)t->poll();
  ASSERT_TRUE(t->prepare_to_sleep());
  const uint8_t byte[1] = {9};
  ASSERT_TRUE(write_all(fd, byte, 1));
  const auto before = std::chrono::steady_clock::now();
  (void)loop_->run_once(10'000'000'000);
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(5));
  for (int i = 0; i < 100 && t->stats().bytes_in == 0; ++i) (void)t->poll();
  EXPECT_EQ(t->stats().bytes_in, 1u);
  ::close(fd);
  ASSERT_TRUE(run([&] { return layer_.closed == 1; }));
}

TEST_F(ShardsTest, ShardCountFollowsTheRlimitAndMaxConnections) {
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  options_.limits.max_connections = 100'000;
  auto t = KernelTransport::create(*loop_, options_);
  ASSERT_TRUE(t.ok()) << t.status();
  const uint64_t capacity = rl.rlim_cur - options_.fd_reserve;
  EXPECT_EQ((*t)->shards(), (100'000 + options_.accept_batch + capacity - 1) / capacity);
  t->reset();

  options_.fd_reserve = static_cast<uint32_t>(rl.rlim_cur) - 1;  // no room for a table
  auto refused = KernelTransport::create(*loop_, options_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("RLIMIT_NOFILE"), std::string::npos)
      << refused.status();
  options_.fd_reserve = 256;
  options_.shard_capacity = 8;
  options_.limits.max_connections = 255 * 8;  // 256 shards: more than ids can name
  EXPECT_FALSE(KernelTransport::create(*loop_, options_).ok());
}

// The transport sets TCP_NODELAY once on the listener instead of per direct descriptor: the
// kernel copies it into every accepted socket.
TEST(KernelTransportShards, AcceptedSocketsInheritNoDelayFromTheListener) {
  uint16_t port = 0;
  const int listener = uring::testing::listen_loopback(&port);
  const int one = 1;
  ASSERT_EQ(::setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
  const int client = connect_blocking(port);
  int accepted = -1;
  for (int i = 0; i < 2000 && accepted < 0; ++i) {
    accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) ::usleep(1000);
  }
  ASSERT_GE(accepted, 0);
  int value = 0;
  socklen_t len = sizeof(value);
  ASSERT_EQ(::getsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &value, &len), 0);
  EXPECT_NE(value, 0);
  ::close(accepted);
  ::close(client);
  ::close(listener);
}

}  // namespace
}  // namespace herald::dataplane

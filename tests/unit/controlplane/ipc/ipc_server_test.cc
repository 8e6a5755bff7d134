// IpcServer on a real event loop against real dataplane processes: each child is fork()ed and
// uses only the platform/ipc client, as herald-dataplane will. Children report through the
// rings and their exit status; the deadlines are hang guards, never speed checks.
#include "controlplane/ipc/ipc_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "platform/ipc/client.h"
#include "platform/ipc/envelope.h"
#include "platform/ipc/segment.h"

namespace herald::controlplane {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(30);
// A literal 0 here would pick the object-API overload of CreateAppendDurable (a null pointer).
const flatbuffers::Offset<flatbuffers::Vector<const ipc::AppendOutcome*>> kNoOutcomes;

// --- The dataplane side, run in child processes -------------------------------------------

// Exit codes of dataplane children (0 = success).
enum ChildExit : int {
  kChildOk = 0,
  kChildConnectFailed = 10,
  kChildUnexpectedSuccess,
  kChildWrongError,
  kChildRingFailed,
  kChildWrongRecord,
  kChildTimeout,
  kChildNoEof,
};

struct FakeDataplane {
  ipc::ControlPlaneLink link;
  std::vector<shm::RingProducer> out;  // dp_to_cp per worker
  std::vector<shm::RingConsumer> in;   // cp_to_dp per worker
  std::vector<uint64_t> seq;           // next Envelope.seq per worker
  flatbuffers::FlatBufferBuilder builder{256};
};

std::optional<FakeDataplane> dp_connect(const std::string& path, uint16_t workers,
                                        uint64_t instance_id = 0) {
  auto link = ipc::connect_to_controlplane(
      {.socket_path = path, .workers = workers, .instance_id = instance_id, .timeout_ms = 10000});
  if (!link.ok()) {
    std::fprintf(stderr, "child: connect failed: %s\n", link.status().ToString().c_str());
    return std::nullopt;
  }
  FakeDataplane dp{std::move(*link), {}, {}, {}};
  for (uint16_t w = 0; w < workers; ++w) {
    auto out = dp.link.segment.producer(w, ipc::Direction::kDpToCp);
    auto in = dp.link.segment.consumer(w, ipc::Direction::kCpToDp);
    if (!out.ok() || !in.ok()) return std::nullopt;
    out->set_doorbell(dp.link.cp_doorbell.fd());
    dp.out.push_back(std::move(*out));
    dp.in.push_back(std::move(*in));
    dp.seq.push_back(1);
  }
  return dp;
}

// Enqueues the finished builder on worker w, waiting while the ring is full.
bool dp_put(FakeDataplane& dp, uint16_t w, ipc::Record type) {
  const auto until = Clock::now() + kDeadline;
  while (Clock::now() < until) {
    const shm::RingStatus s =
        ipc::enqueue_envelope(dp.out[w], type, ipc::finished_bytes(dp.builder));
    if (s == shm::RingStatus::kOk) {
      ++dp.seq[w];
      return true;
    }
    if (s != shm::RingStatus::kFull) return false;
    ::usleep(200);
  }
  return false;
}

bool dp_hello(FakeDataplane& dp, uint16_t w) {
  ipc::HelloFields hello;
  hello.ipc_version = ipc::kIpcVersion;
  hello.instance_id = dp.link.instance_id;
  hello.worker = w;
  hello.workers = static_cast<uint16_t>(dp.out.size());
  ipc::build_hello(dp.builder, dp.seq[w], hello, "test");
  return dp_put(dp, w, ipc::Record::Hello);
}

// StoreCancel{append_id} is the test's numbered record.
bool dp_cancel(FakeDataplane& dp, uint16_t w, uint64_t append_id) {
  dp.builder.Clear();
  ipc::finish_envelope(dp.builder, dp.seq[w], ipc::CreateStoreCancel(dp.builder, append_id));
  return dp_put(dp, w, ipc::Record::StoreCancel);
}

// Reads cp_to_dp records of worker w until `count` AppendDurable arrived; checks they carry
// commit_seq first, first+1, ... in order. Other record types (Hello, Heartbeat) are skipped.
int dp_expect_durable(FakeDataplane& dp, uint16_t w, uint64_t first, uint64_t count) {
  const auto until = Clock::now() + kDeadline;
  uint64_t next = first;
  shm::RecordView views[32];
  while (next < first + count) {
    if (Clock::now() > until) return kChildTimeout;
    const shm::ReadResult r = dp.in[w].read_batch(views);
    if (r.status == shm::RingStatus::kCorrupt) return kChildRingFailed;
    for (size_t i = 0; i < r.count; ++i) {
      const ipc::CheckedEnvelope c = ipc::verify_envelope(views[i].type, views[i].payload);
      if (c.error != ipc::EnvelopeError::kNone) return kChildWrongRecord;
      if (c.envelope->record_type() != ipc::Record::AppendDurable) continue;
      if (c.envelope->record_as_AppendDurable()->commit_seq() != next) return kChildWrongRecord;
      ++next;
    }
    dp.in[w].release();
    if (r.count == 0) (void)dp.in[w].wait(dp.link.dp_doorbells[w].fd(), 100);
  }
  return kChildOk;
}

bool wait_for_eof(int sock) {
  pollfd p{sock, POLLRDHUP, 0};
  return ::poll(&p, 1, 30000) == 1;
}

pid_t spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

// --- The control plane side: the test process ---------------------------------------------

struct Seen {
  uint16_t worker;
  ipc::Record type;
  uint64_t seq;
  uint64_t value;  // StoreCancel.append_id, Hello.instance_id
};

class RecordingHandler : public IpcHandler {
 public:
  void on_record(uint16_t worker, const ipc::Envelope& e) override {
    uint64_t value = 0;
    if (e.record_type() == ipc::Record::StoreCancel) value = e.record_as_StoreCancel()->append_id();
    if (e.record_type() == ipc::Record::Hello) value = e.record_as_Hello()->instance_id();
    seen.push_back({worker, e.record_type(), e.seq(), value});
  }
  void on_dataplane_connected(uint64_t instance_id, bool was_restart) override {
    connected.push_back(instance_id);
    restarted.push_back(was_restart);
  }
  void on_dataplane_disconnected() override { ++disconnected; }

  // append_ids of StoreCancel records from one worker, in arrival order.
  std::vector<uint64_t> cancels(uint16_t worker) const {
    std::vector<uint64_t> out;
    for (const Seen& s : seen) {
      if (s.worker == worker && s.type == ipc::Record::StoreCancel) out.push_back(s.value);
    }
    return out;
  }

  std::vector<Seen> seen;
  std::vector<uint64_t> connected;
  std::vector<bool> restarted;
  int disconnected = 0;
};

class IpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herald-ipcsrv-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.socket_path = dir_ + "/ipc.sock";
    options_.workers = 2;
    options_.ring_capacity_bytes = 4096;  // small: rings fill and wrap in every test
    options_.tick_ns = 10'000'000;
    options_.heartbeat_interval_ms = 0;
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
  }
  void TearDown() override {
    server_.reset();
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    loop_.reset();
    std::filesystem::remove_all(dir_);
  }

  void start() {
    auto server = IpcServer::start(*loop_, options_, &handler_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  pid_t child(const std::function<int()>& body) {
    const pid_t pid = spawn(body);
    children_.push_back(pid);
    return pid;
  }

  // Runs the loop until pred() holds; false on the hang-guard deadline.
  bool run_until(const std::function<bool()>& pred) {
    const auto until = Clock::now() + kDeadline;
    while (!pred()) {
      if (Clock::now() > until) return false;
      loop_->run_once(5'000'000);
    }
    return true;
  }

  // Runs the loop until the child exits; returns its exit code (-1 on a signal or hang).
  int join(pid_t pid) {
    int status = 0;
    bool done = false;
    const bool ok = run_until([&] {
      if (!done && ::waitpid(pid, &status, WNOHANG) == pid) done = true;
      return done;
    });
    if (!ok) return -1;
    std::erase(children_, pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string dir_;
  IpcServerOptions options_;
  std::unique_ptr<uring::EventLoop> loop_;
  RecordingHandler handler_;
  std::unique_ptr<IpcServer> server_;
  std::vector<pid_t> children_;
};

TEST_F(IpcServerTest, HandshakeHandsOverSegmentAndDoorbells) {
  auto counters = shm::Segment::create("test-counters", 8192);
  ASSERT_TRUE(counters.ok());
  options_.counters_fd = counters->fd();
  start();
  const uint64_t cp_instance = server_->instance_id();
  const uint64_t generation = server_->segment().generation();
  const std::string path = options_.socket_path;
  const pid_t pid = child([&] {
    auto dp = dp_connect(path, 2, 1111);
    if (!dp) return int{kChildConnectFailed};
    if (dp->link.controlplane.instance_id != cp_instance ||
        dp->link.segment.generation() != generation || dp->link.dp_doorbells.size() != 2 ||
        dp->link.controlplane.plane != ipc::Plane::Controlplane ||
        dp->link.segment.workers() != 2) {
      return int{kChildWrongRecord};
    }
    // The counters segment came along and maps.
    auto cs = shm::Segment::attach(std::move(dp->link.counters_fd));
    if (!cs.ok() || cs->size() != 8192) return int{kChildWrongRecord};
    // The control plane's Hello is the first record on each cp_to_dp ring.
    for (uint16_t w = 0; w < 2; ++w) {
      shm::RecordView view;
      if (dp->in[w].read_batch({&view, 1}).count != 1) return int{kChildRingFailed};
      const ipc::CheckedEnvelope c = ipc::verify_envelope(view.type, view.payload);
      if (c.error != ipc::EnvelopeError::kNone || c.envelope->record_as_Hello() == nullptr ||
          c.envelope->record_as_Hello()->worker() != w) {
        return int{kChildWrongRecord};
      }
    }
    return int{kChildOk};
  });
  EXPECT_EQ(join(pid), kChildOk);
  ASSERT_TRUE(run_until([&] { return handler_.disconnected == 1; }));
  EXPECT_EQ(server_->stats().connects, 1u);
  EXPECT_EQ(server_->stats().disconnects, 1u);
  ASSERT_EQ(handler_.connected.size(), 1u);
  EXPECT_EQ(handler_.connected[0], 1111u);
  EXPECT_FALSE(handler_.restarted[0]);
  EXPECT_FALSE(server_->dataplane_connected());
}

TEST_F(IpcServerTest, VersionAndWorkerMismatchAreRefusedWithAReason) {
  start();
  const std::string path = options_.socket_path;
  auto expect_refusal = [&](uint16_t workers, uint16_t version, const char* reason) {
    return child([=] {
      auto link = ipc::connect_to_controlplane(
          {.socket_path = path, .workers = workers, .timeout_ms = 10000, .ipc_version = version});
      if (link.ok()) return int{kChildUnexpectedSuccess};
      if (link.status().code() != absl::StatusCode::kFailedPrecondition ||
          link.status().message().find(reason) == std::string_view::npos) {
        std::fprintf(stderr, "child: %s\n", link.status().ToString().c_str());
        return int{kChildWrongError};
      }
      return int{kChildOk};
    });
  };
  EXPECT_EQ(join(expect_refusal(2, ipc::kIpcVersion + 1, "version_mismatch")), kChildOk);
  EXPECT_EQ(join(expect_refusal(3, ipc::kIpcVersion, "worker_mismatch")), kChildOk);
  EXPECT_EQ(join(expect_refusal(3, ipc::kIpcVersion, "config says dataplane.workers = 2")),
            kChildOk);
  EXPECT_EQ(server_->stats().rejected_version, 1u);
  EXPECT_EQ(server_->stats().rejected_workers, 2u);
  EXPECT_EQ(server_->stats().connects, 0u);
  EXPECT_TRUE(handler_.connected.empty());
}

TEST_F(IpcServerTest, SecondDataplaneIsRefusedWhileTheFirstIsLive) {
  start();
  const std::string path = options_.socket_path;
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t first = child([&] {
    auto dp = dp_connect(path, 2);
    if (!dp) return int{kChildConnectFailed};
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);  // until the parent says go
    return int{kChildOk};
  });
  ASSERT_TRUE(run_until([&] {
    pollfd p{ready[0], POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }));
  ASSERT_TRUE(server_->dataplane_connected());
  EXPECT_EQ(server_->dataplane_pid(), first);  // SO_PEERCRED: the profiler samples this pid
  const pid_t second = child([&] {
    auto link = ipc::connect_to_controlplane({.socket_path = path, .workers = 2});
    if (link.ok()) return int{kChildUnexpectedSuccess};
    if (link.status().message().find("busy") != std::string_view::npos) return int{kChildOk};
    std::fprintf(stderr, "child: %s\n", link.status().ToString().c_str());
    return int{kChildWrongError};
  });
  EXPECT_EQ(join(second), kChildOk);
  EXPECT_EQ(server_->stats().rejected_busy, 1u);
  EXPECT_TRUE(server_->dataplane_connected());  // the first one was not disturbed
  EXPECT_EQ(server_->dataplane_pid(), first);

  char c = 1;
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  EXPECT_EQ(join(first), kChildOk);
  ASSERT_TRUE(run_until([&] { return !server_->dataplane_connected(); }));
  EXPECT_EQ(server_->dataplane_pid(), 0);
  // The slot is free again.
  const pid_t third =
      child([&] { return dp_connect(path, 2) ? int{kChildOk} : int{kChildConnectFailed}; });
  EXPECT_EQ(join(third), kChildOk);
  EXPECT_EQ(server_->stats().connects, 2u);
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

TEST_F(IpcServerTest, RecordsArriveInOrderPerWorker) {
  options_.drain_batch_records = 16;  // many passes, so the server's yield path runs too
  start();
  const std::string path = options_.socket_path;
  constexpr uint64_t kRecords = 3000;  // many times the 4 KiB ring: it fills and wraps
  const pid_t pid = child([&] {
    auto dp = dp_connect(path, 2);
    if (!dp) return int{kChildConnectFailed};
    for (uint16_t w = 0; w < 2; ++w) {
      if (!dp_hello(*dp, w)) return int{kChildRingFailed};
    }
    for (uint64_t i = 0; i < kRecords; ++i) {
      for (uint16_t w = 0; w < 2; ++w) {
        if (!dp_cancel(*dp, w, i * 10 + w)) return int{kChildRingFailed};
      }
    }
    return int{kChildOk};
  });
  EXPECT_EQ(join(pid), kChildOk);
  ASSERT_TRUE(run_until([&] {
    return handler_.cancels(0).size() == kRecords && handler_.cancels(1).size() == kRecords;
  }));
  for (uint16_t w = 0; w < 2; ++w) {
    const std::vector<uint64_t> got = handler_.cancels(w);
    for (uint64_t i = 0; i < kRecords; ++i) ASSERT_EQ(got[i], i * 10 + w) << "worker " << w;
  }
  const IpcServerStats& s = server_->stats();
  EXPECT_EQ(s.records_in[static_cast<size_t>(ipc::Record::StoreCancel)], 2 * kRecords);
  EXPECT_EQ(s.records_in[static_cast<size_t>(ipc::Record::Hello)], 2u);
  EXPECT_EQ(s.seq_gaps, 0u);
  for (uint64_t bad : s.bad_records) EXPECT_EQ(bad, 0u);
  EXPECT_GT(s.doorbell_wakeups, 0u);  // the dataplane's commits woke the loop
}

TEST_F(IpcServerTest, SendArrivesAtTheDataplane) {
  start();
  const std::string path = options_.socket_path;
  constexpr uint64_t kRecords = 500;  // about 6x the ring: some wait in the backlog
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = child([&] {
    auto dp = dp_connect(path, 2);
    if (!dp) return int{kChildConnectFailed};
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    return dp_expect_durable(*dp, 1, 0, kRecords);
  });
  ASSERT_TRUE(run_until([&] {
    pollfd p{ready[0], POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }));
  for (uint64_t i = 0; i < kRecords; ++i) {
    auto& b = server_->builder();
    const SendResult r = server_->send(1, ipc::CreateAppendDurable(b, kNoOutcomes, i));
    ASSERT_TRUE(r == SendResult::kSent || r == SendResult::kQueued) << send_result_name(r);
  }
  EXPECT_EQ(join(pid), kChildOk);
  EXPECT_EQ(server_->stats().records_out[static_cast<size_t>(ipc::Record::AppendDurable)],
            kRecords);
  EXPECT_EQ(server_->backlog_records(1), 0u);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_F(IpcServerTest, FullRingBacklogsInOrderThenReportsFull) {
  options_.workers = 1;
  options_.backlog_max_records = 8;
  start();
  // Play the dataplane in-process: attach to the same segment, but do not read yet.
  auto dp = ipc::IpcSegment::attach(shm::UniqueFd(::dup(server_->segment().fd())));
  ASSERT_TRUE(dp.ok()) << dp.status();
  auto in = dp->consumer(0, ipc::Direction::kCpToDp);
  ASSERT_TRUE(in.ok());
  uint64_t sent = 0, queued = 0, full = 0;
  for (uint64_t i = 0; i < 1000 && full == 0; ++i) {
    auto& b = server_->builder();
    switch (server_->send(0, ipc::CreateAppendDurable(b, kNoOutcomes, i))) {
      case SendResult::kSent: ++sent; break;
      case SendResult::kQueued: ++queued; break;
      case SendResult::kFull: ++full; break;
      default: FAIL();
    }
  }
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(queued, 8u);
  EXPECT_EQ(full, 1u);
  EXPECT_EQ(server_->stats().backlog_full, 1u);
  EXPECT_EQ(server_->backlog_records(0), 8u);
  // Read everything as the room appears; the retry timer moves the backlog into the ring.
  std::vector<uint64_t> commit_seqs;
  std::vector<uint64_t> env_seqs;
  ASSERT_TRUE(run_until([&] {
    shm::RecordView views[64];
    const shm::ReadResult r = in->read_batch(views);
    for (size_t i = 0; i < r.count; ++i) {
      const ipc::CheckedEnvelope c = ipc::verify_envelope(views[i].type, views[i].payload);
      EXPECT_EQ(c.error, ipc::EnvelopeError::kNone);
      if (c.envelope == nullptr) continue;
      env_seqs.push_back(c.envelope->seq());
      if (auto* d = c.envelope->record_as_AppendDurable()) commit_seqs.push_back(d->commit_seq());
    }
    in->release();
    return commit_seqs.size() == sent + queued;
  }));
  for (uint64_t i = 0; i < commit_seqs.size(); ++i) ASSERT_EQ(commit_seqs[i], i);
  // Envelope seqs run 1 (the Hello), 2, 3, ... without a hole: the refused record took none.
  for (uint64_t i = 0; i < env_seqs.size(); ++i) ASSERT_EQ(env_seqs[i], i + 1);
  EXPECT_EQ(server_->backlog_records(0), 0u);
}

TEST_F(IpcServerTest, BadRecordsAreCountedAndSkipped) {
  start();
  const std::string path = options_.socket_path;
  const pid_t pid = child([&] {
    auto dp = dp_connect(path, 2);
    if (!dp) return int{kChildConnectFailed};
    if (!dp_hello(*dp, 0)) return int{kChildRingFailed};
    // Garbage where an Envelope should be, a type from the future, an Envelope whose ring type
    // lies; then a good record, which must still arrive.
    const char junk[40] = "this is not a flatbuffer at all........";
    if (dp->out[0].try_enqueue(static_cast<uint32_t>(ipc::Record::StoreCancel),
                               std::as_bytes(std::span(junk))) != shm::RingStatus::kOk ||
        dp->out[0].try_enqueue(200, std::as_bytes(std::span(junk))) != shm::RingStatus::kOk) {
      return int{kChildRingFailed};
    }
    dp->builder.Clear();
    ipc::finish_envelope(dp->builder, 99, ipc::CreateStoreCancel(dp->builder, 5));
    if (ipc::enqueue_envelope(dp->out[0], ipc::Record::StoreAck,
                              ipc::finished_bytes(dp->builder)) != shm::RingStatus::kOk) {
      return int{kChildRingFailed};
    }
    if (!dp_cancel(*dp, 0, 7)) return int{kChildRingFailed};
    return int{kChildOk};
  });
  EXPECT_EQ(join(pid), kChildOk);
  ASSERT_TRUE(run_until([&] { return handler_.cancels(0).size() == 1; }));
  EXPECT_EQ(handler_.cancels(0)[0], 7u);
  const IpcServerStats& s = server_->stats();
  EXPECT_EQ(s.bad_records[static_cast<size_t>(ipc::EnvelopeError::kBadFlatbuffer)], 1u);
  EXPECT_EQ(s.bad_records[static_cast<size_t>(ipc::EnvelopeError::kUnknownType)], 1u);
  EXPECT_EQ(s.bad_records[static_cast<size_t>(ipc::EnvelopeError::kTypeMismatch)], 1u);
  EXPECT_EQ(s.seq_gaps, 0u);  // skipped records took no seq
  EXPECT_EQ(s.ring_corrupt, 0u);
}

TEST_F(IpcServerTest, CorruptRingDropsTheDataplaneAndIsRecreatedForTheNext) {
  start();
  const std::string path = options_.socket_path;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = child([&] {
    {
      auto dp = dp_connect(path, 2);
      if (!dp) return int{kChildConnectFailed};
      char c = 1;
      (void)!::write(ready[1], &c, 1);
      // The control plane drops us when it finds the ring corrupt.
      if (!wait_for_eof(dp->link.socket.get())) return int{kChildNoEof};
    }
    // Reconnect, as a dataplane does when the control plane goes away; attach afresh.
    auto dp = dp_connect(path, 2);
    if (!dp) return int{kChildConnectFailed};
    if (!dp_hello(*dp, 0) || !dp_cancel(*dp, 0, 42)) return int{kChildRingFailed};
    return int{kChildOk};
  });
  ASSERT_TRUE(run_until([&] {
    pollfd p{ready[0], POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }));
  // A tail that is not 8-aligned and beyond the capacity: ring.h's tail_out_of_range.
  auto* h = reinterpret_cast<shm::RingHeader*>(
      server_->segment().ring_region(0, ipc::Direction::kDpToCp).data());
  std::atomic_ref<uint64_t>(h->tail).store(1'000'003, std::memory_order_release);
  server_->drain();
  EXPECT_EQ(server_->stats().ring_corrupt, 1u);
  EXPECT_EQ(join(pid), kChildOk);
  ASSERT_TRUE(run_until([&] { return handler_.cancels(0).size() == 1; }));
  EXPECT_EQ(handler_.cancels(0)[0], 42u);
  EXPECT_EQ(server_->stats().connects, 2u);
  EXPECT_EQ(server_->ring_in_stats(0).faults[static_cast<size_t>(shm::RingFault::kTailOutOfRange)],
            0u);  // the re-created ring's consumer starts clean
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_F(IpcServerTest, KilledDataplaneRestartsAndNothingPublishedIsLost) {
  start();
  const std::string path = options_.socket_path;
  constexpr uint64_t kBeforeKill = 1500;
  constexpr uint64_t kAfterRestart = 500;
  constexpr uint64_t kWhileAway = 100;
  const pid_t first = child([&] {
    auto dp = dp_connect(path, 2, 1);
    if (!dp) return int{kChildConnectFailed};
    if (!dp_hello(*dp, 0)) return int{kChildRingFailed};
    for (uint64_t i = 0; i < kBeforeKill; ++i) {
      if (!dp_cancel(*dp, 0, i)) return int{kChildRingFailed};
    }
    ::raise(SIGKILL);  // no clean-up of any kind
    return int{kChildOk};
  });
  EXPECT_EQ(join(first), -1);  // killed by the signal
  ASSERT_TRUE(run_until([&] { return handler_.disconnected == 1; }));
  // While no dataplane is there, the control plane keeps sending: the ring (and backlog) hold it.
  for (uint64_t i = 0; i < kWhileAway; ++i) {
    auto& b = server_->builder();
    const SendResult r = server_->send(0, ipc::CreateAppendDurable(b, kNoOutcomes, i));
    ASSERT_TRUE(r == SendResult::kSent || r == SendResult::kQueued) << send_result_name(r);
  }
  const pid_t second = child([&] {
    auto dp = dp_connect(path, 2, 2);
    if (!dp) return int{kChildConnectFailed};
    if (!dp_hello(*dp, 0)) return int{kChildRingFailed};
    for (uint64_t i = 0; i < kAfterRestart; ++i) {
      if (!dp_cancel(*dp, 0, kBeforeKill + i)) return int{kChildRingFailed};
    }
    // Everything the control plane published while we were away reaches the new instance.
    return dp_expect_durable(*dp, 0, 0, kWhileAway);
  });
  EXPECT_EQ(join(second), kChildOk);
  ASSERT_TRUE(run_until([&] { return handler_.cancels(0).size() >= kBeforeKill + kAfterRestart; }));
  const std::vector<uint64_t> got = handler_.cancels(0);
  ASSERT_EQ(got.size(), kBeforeKill + kAfterRestart);  // this run re-read nothing
  for (uint64_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], i);
  EXPECT_EQ(server_->stats().dataplane_restarts, 1u);
  ASSERT_EQ(handler_.restarted.size(), 2u);
  EXPECT_TRUE(handler_.restarted[1]);
  EXPECT_EQ(server_->stats().seq_gaps, 0u);  // the new Hello restarted the numbering
}

TEST_F(IpcServerTest, StaleSocketFromADeadControlPlaneIsReplaced) {
  // A control plane that died: its socket file stays, nobody accepts on it.
  {
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, options_.socket_path.data(), options_.socket_path.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  start();
  const std::string path = options_.socket_path;
  EXPECT_EQ(
      join(child([&] { return dp_connect(path, 2) ? int{kChildOk} : int{kChildConnectFailed}; })),
      kChildOk);
  // A second control plane on the same path finds it live and leaves it alone.
  RecordingHandler other;
  auto second = IpcServer::start(*loop_, options_, &other);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
}

TEST_F(IpcServerTest, SilentOrGarbledClientsAreDroppedAndFreeTheSlot) {
  options_.handshake_timeout_ms = 100;
  start();
  auto raw_connect = [&] {
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, options_.socket_path.data(), options_.socket_path.size());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  };
  auto reject_code = [](int fd) {
    ipc::RejectHeader h{};
    char buf[ipc::kMaxHandshakeBytes];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < static_cast<ssize_t>(sizeof(h))) return 0u;
    std::memcpy(&h, buf, sizeof(h));
    return h.magic == ipc::kRejectMagic ? h.code : 0u;
  };
  const int silent = raw_connect();
  ASSERT_TRUE(run_until([&] { return server_->stats().handshake_timeouts == 1; }));
  ASSERT_TRUE(run_until([&] {
    pollfd p{silent, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }));
  EXPECT_EQ(reject_code(silent), static_cast<uint32_t>(ipc::RejectCode::kTimeout));
  ::close(silent);

  const int garbled = raw_connect();
  ASSERT_EQ(::send(garbled, "hello?", 6, 0), 6);
  ASSERT_TRUE(run_until([&] { return server_->stats().rejected_bad_hello == 1; }));
  EXPECT_EQ(reject_code(garbled), static_cast<uint32_t>(ipc::RejectCode::kBadHello));
  ::close(garbled);

  const std::string path = options_.socket_path;
  EXPECT_EQ(
      join(child([&] { return dp_connect(path, 2) ? int{kChildOk} : int{kChildConnectFailed}; })),
      kChildOk);
}

TEST_F(IpcServerTest, HeartbeatsFlowBothWays) {
  options_.heartbeat_interval_ms = 20;
  start();
  const std::string path = options_.socket_path;
  const pid_t pid = child([&] {
    auto dp = dp_connect(path, 2);
    if (!dp) return int{kChildConnectFailed};
    dp->builder.Clear();
    ipc::finish_envelope(dp->builder, dp->seq[1],
                         ipc::CreateHeartbeat(dp->builder, dp->link.instance_id, 1, 3, 300));
    if (!dp_put(*dp, 1, ipc::Record::Heartbeat)) return int{kChildRingFailed};
    // Wait for a control-plane heartbeat on worker 1's ring.
    const auto until = Clock::now() + kDeadline;
    shm::RecordView views[8];
    while (Clock::now() < until) {
      const shm::ReadResult r = dp->in[1].read_batch(views);
      for (size_t i = 0; i < r.count; ++i) {
        const ipc::CheckedEnvelope c = ipc::verify_envelope(views[i].type, views[i].payload);
        if (c.envelope != nullptr && c.envelope->record_type() == ipc::Record::Heartbeat) {
          return int{kChildOk};
        }
      }
      dp->in[1].release();
      if (r.count == 0) (void)dp->in[1].wait(dp->link.dp_doorbells[1].fd(), 100);
    }
    return int{kChildTimeout};
  });
  EXPECT_EQ(join(pid), kChildOk);
  ASSERT_TRUE(run_until([&] { return server_->stats().heartbeats_in == 1; }));
  EXPECT_NE(server_->stats().last_heartbeat_ns, 0u);
  EXPECT_EQ(server_->stats().dataplane_held_appends, 3u);
  EXPECT_GT(server_->stats().heartbeats_out, 0u);
}

}  // namespace
}  // namespace herald::controlplane

namespace herald::controlplane {
namespace {

TEST_F(IpcServerTest, ManyWorkersGetTheirOwnDoorbells) {
  // 40 workers: the doorbells travel in three SCM_RIGHTS messages (16 + 16 + 8).
  options_.workers = 40;
  start();
  const std::string path = options_.socket_path;
  constexpr uint16_t kWorker = 37;
  const pid_t pid = child([&] {
    auto dp = dp_connect(path, 40);
    if (!dp) return int{kChildConnectFailed};
    if (dp->link.dp_doorbells.size() != 40) return int{kChildWrongRecord};
    // Skip the control plane's Hello, then sleep on this worker's doorbell only.
    shm::RecordView view;
    if (dp->in[kWorker].read_batch({&view, 1}).count != 1) return int{kChildRingFailed};
    const shm::WaitResult r = dp->in[kWorker].wait(dp->link.dp_doorbells[kWorker].fd(), 30000);
    if (r != shm::WaitResult::kReady || dp->in[kWorker].stats().wakeups != 1) {
      return int{kChildTimeout};
    }
    return dp_expect_durable(*dp, kWorker, 0, 1);
  });
  // Send only once the child sleeps, so only the right doorbell can wake it.
  auto* h = reinterpret_cast<shm::RingHeader*>(
      server_->segment().ring_region(kWorker, ipc::Direction::kCpToDp).data());
  ASSERT_TRUE(run_until([&] {
    return std::atomic_ref<uint32_t>(h->consumer_waiting).load(std::memory_order_acquire) == 1;
  }));
  auto& b = server_->builder();
  ASSERT_EQ(server_->send(kWorker, ipc::CreateAppendDurable(b, kNoOutcomes, /*commit_seq=*/0)),
            SendResult::kSent);
  EXPECT_EQ(join(pid), kChildOk);
  EXPECT_EQ(server_->ring_out_stats(kWorker).doorbell_rings, 1u);
}

}  // namespace
}  // namespace herald::controlplane

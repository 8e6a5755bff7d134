// StoreClient against the real control-plane side in-process: IpcServer + StoreService over a
// QueueTable on a SimDisk whose syncs complete only when the test steps it, the handshake made
// by the platform/ipc client. Plus the reader's defences against a hostile ring, with a
// hand-made segment. Deadlines are hang guards, never speed checks.
#include "dataplane/routing/store_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "controlplane/ipc/ipc_server.h"
#include "controlplane/ipc/store_service.h"
#include "controlplane/storage/sim_disk.h"
#include "platform/ipc/client.h"
#include "platform/ipc/segment.h"
#include "tests/unit/controlplane/ipc/inprocess_store.h"

namespace herald::dataplane {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(30);

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}
wire::DeviceAddress addr(uint32_t n) {
  return wire::DeviceAddress(wire::AccountId(0xACC0, 0x1000 + n), n);
}
storage::DeviceKey dev(uint32_t n) {
  return {0xACC0, 0x1000 + n, n};
}
wire::ServerMsgId msg_id(uint64_t n) {
  return wire::ServerMsgId(n << 16, n);
}

// A Deliver in its own buffer, as the router has one in the frame it built.
class Message {
 public:
  explicit Message(uint64_t n, size_t body_bytes = 16) {
    std::vector<uint8_t> body(body_bytes);
    for (size_t i = 0; i < body_bytes; ++i) body[i] = static_cast<uint8_t>(n * 7 + i);
    const wire::ServerMsgId id = msg_id(n);
    const wire::DeviceAddress sender = addr(99);
    const wire::AccountId to = addr(1).account();
    b_.Finish(wire::CreateDeliver(b_, &id, &sender, wire::Recipient::ToAccount,
                                  wire::CreateToAccount(b_, &to).Union(), b_.CreateVector(body), 3,
                                  0, n * 10));
  }
  const wire::Deliver& deliver() const {
    return *flatbuffers::GetRoot<wire::Deliver>(b_.GetBufferPointer());
  }

 private:
  flatbuffers::FlatBufferBuilder b_;
};

struct SeenBatch {
  uint64_t request_id;
  ipc::DrainStatus status;
  std::vector<uint64_t> ids;  // ServerMsgId.lo of each message
  bool more;
};

// What the callbacks saw.
struct Recorder {
  std::map<uint64_t, std::vector<ipc::AppendStatus>> outcomes;  // by append id
  std::map<uint64_t, uint64_t> cookies;
  std::map<uint64_t, std::vector<uint32_t>> queue_full;
  std::vector<SeenBatch> batches;
  std::vector<ipc::Record> pushes;

  StoreClientCallbacks callbacks() {
    StoreClientCallbacks c;
    c.on_outcome = [this](const StoreOutcome& o) {
      outcomes[o.append_id].push_back(o.status);
      cookies[o.append_id] = o.cookie;
      for (const wire::DeviceAddress& a : o.queue_full)
        queue_full[o.append_id].push_back(a.device());
    };
    c.on_drain = [this](const DrainBatch& b) {
      SeenBatch s{b.request_id, b.status, {}, b.more};
      for (const wire::Deliver* m : b.messages) {
        // A drained message is the stored Deliver: check the body survived the trip.
        EXPECT_NE(m->body(), nullptr);
        s.ids.push_back(m->server_msg_id()->lo());
      }
      batches.push_back(std::move(s));
    };
    return c;
  }
  // The single outcome of append `id` (a second one fails the test: never reported twice).
  std::optional<ipc::AppendStatus> outcome(uint64_t id) const {
    auto it = outcomes.find(id);
    if (it == outcomes.end()) return std::nullopt;
    EXPECT_EQ(it->second.size(), 1u) << "outcome reported more than once for " << id;
    return it->second.front();
  }
  std::vector<uint64_t> drained(uint64_t request_id) const {
    std::vector<uint64_t> v;
    for (const SeenBatch& b : batches) {
      if (b.request_id == request_id) v.insert(v.end(), b.ids.begin(), b.ids.end());
    }
    return v;
  }
};

std::vector<uint64_t> range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> v;
  for (uint64_t i = first; i <= last; ++i) v.push_back(i);
  return v;
}

class StoreClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herald-store-client-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ipc_options_.socket_path = dir_ + "/ipc.sock";
    ipc_options_.workers = 2;
    ipc_options_.ring_capacity_bytes = 64 * 1024;
    ipc_options_.tick_ns = 10'000'000;
    ipc_options_.heartbeat_interval_ms = 0;
    ipc_options_.backlog_retry_ns = 200'000;
    service_options_.held_retry_ns = 200'000;
    log_options_.segment_size_bytes = 1 << 20;
    log_options_.group_commit_bytes = 8 * 1024;
    log_options_.group_commit_delay_us = 1000;
    log_options_.max_write_bytes = 64 * 1024;
    log_options_.max_payload_bytes = 16 * 1024;
    log_options_.max_staged_bytes = 1 << 20;
    client_options_.workers = 2;
    client_options_.max_pending_appends = 64;
    client_options_.max_held_records = 64;
    client_options_.max_drains = 8;
    client_options_.heartbeat_interval_ns = 0;
    client_options_.drain_retry_min_ns = 100'000;
    client_options_.drain_retry_max_ns = 2'000'000;
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    disk_ = std::make_unique<storage::SimDisk>(storage::SimDiskOptions{});
  }

  void TearDown() override {
    client_.reset();
    link_.reset();
    stop_controlplane();
    loop_.reset();
    std::filesystem::remove_all(dir_);
  }

  // (Re)opens the store on the disk (recovering what is durable), starts server + service.
  void start_controlplane() {
    store_.emplace(*loop_, *disk_);
    store_->start(
        {table_options_, log_options_, service_options_, ipc_options_},
        [](controlplane::StoreService& service) {
          service.set_resync([](controlplane::Pusher& p) {
            const uint8_t key[32] = {7};
            ASSERT_TRUE(p.push_session_key({.key_id = 42, .key = key, .not_after_ms = 1000}).ok());
            const uint8_t config[] = {1, 2, 3};
            ASSERT_TRUE(p.push_config(9, config, {}).ok());
          });
        });
  }

  // The control plane dies: the disk keeps only what was synced.
  void stop_controlplane() {
    if (store_) store_->crash();
  }

  // Handshake on a helper thread while the loop serves it.
  void connect(uint64_t instance_id) {
    std::optional<absl::StatusOr<ipc::ControlPlaneLink>> link;
    std::atomic<bool> done{false};
    std::thread t([&] {
      link.emplace(ipc::connect_to_controlplane({.socket_path = ipc_options_.socket_path,
                                                 .workers = ipc_options_.workers,
                                                 .instance_id = instance_id,
                                                 .timeout_ms = 10000}));
      done = true;
    });
    const auto until = Clock::now() + kDeadline;
    while (!(done && server().dataplane_connected() &&
             server().dataplane_instance_id() == instance_id) &&
           Clock::now() < until) {
      loop_->run_once(1'000'000);
    }
    t.join();
    ASSERT_TRUE(link.has_value() && link->ok()) << (link ? link->status().ToString() : "none");
    link_ = std::make_unique<ipc::ControlPlaneLink>(std::move(**link));
  }

  // A client for worker 0 of dataplane instance `instance_id`, attached to the current link.
  void new_client(uint64_t instance_id) {
    client_options_.instance_id = instance_id;
    client_ = std::make_unique<StoreClient>(client_options_, rec_.callbacks());
    for (ipc::Record type :
         {ipc::Record::SessionKeyPush, ipc::Record::ConfigPush, ipc::Record::Hello}) {
      client_->set_push_handler(
          type, [this](const ipc::Envelope& e) { rec_.pushes.push_back(e.record_type()); });
    }
  }
  void attach() {
    auto link = make_store_link(*link_, 0);
    ASSERT_TRUE(link.ok()) << link.status();
    client_->attach(std::move(*link));
  }

  // The dataplane's loop turns and the control plane's, until both are idle for a few rounds
  // (the disk is not stepped, so nothing becomes durable here).
  void pump() {
    for (int idle = 0, rounds = 0; idle < 3 && rounds < 300; ++rounds) {
      size_t n = client_ ? client_->poll(now_ns()) : 0;
      n += loop_->run_once(1'000'000);
      idle = n == 0 ? idle + 1 : 0;
    }
  }
  // Lets the disk complete everything (syncs included), serving both loops around it.
  void settle() {
    for (int i = 0; i < 4; ++i) {
      pump();
      disk_->run_until_idle();
    }
    pump();
  }
  // Serves everything until `done` holds (hang guard: kDeadline).
  template <typename Pred>
  void run_until(Pred done) {
    const auto until = Clock::now() + kDeadline;
    while (!done() && Clock::now() < until) {
      (void)client_->poll(now_ns());
      loop_->run_once(500'000);
      disk_->run_until_idle();
    }
    ASSERT_TRUE(done());
  }

  uint64_t append(uint64_t n, std::vector<uint32_t> to, size_t body_bytes = 16) {
    const Message m(n, body_bytes);
    std::vector<wire::DeviceAddress> recipients;
    for (uint32_t d : to) recipients.push_back(addr(d));
    const AppendResult r = client_->append(m.deliver(), recipients, n + 500, n * 1000);
    EXPECT_TRUE(r.ok()) << static_cast<int>(r.refusal);
    return r.append_id;
  }
  size_t out(ipc::Record type) const {
    return client_->stats().records_out[static_cast<size_t>(type)];
  }

  std::string dir_;
  controlplane::IpcServerOptions ipc_options_;
  controlplane::StoreServiceOptions service_options_;
  storage::QueueTableOptions table_options_;
  storage::LogOptions log_options_;
  StoreClientOptions client_options_;
  std::unique_ptr<uring::EventLoop> loop_;
  std::unique_ptr<storage::SimDisk> disk_;
  std::optional<controlplane::testing::InProcessStore> store_;
  storage::QueueTable& table() { return store_->table(); }
  controlplane::StoreService& service() { return store_->service(); }
  controlplane::IpcServer& server() { return store_->server(); }
  std::unique_ptr<ipc::ControlPlaneLink> link_;
  Recorder rec_;
  std::unique_ptr<StoreClient> client_;
};

TEST_F(StoreClientTest, AppendsAreBatchedAndDurableOnlyAfterTheSync) {
  start_controlplane();
  connect(1111);
  new_client(1111);
  attach();
  const uint64_t a = append(100, {1, 2});
  const uint64_t b = append(101, {3});
  const uint64_t c = append(102, {1});
  EXPECT_EQ(client_->held_appends(), 3u);   // until the end of the loop turn
  EXPECT_EQ(client_->flush(now_ns()), 4u);  // our Hello and three appends...
  EXPECT_EQ(client_->stats().commits, 1u);  // ...in one ring commit
  EXPECT_EQ(client_->held_appends(), 0u);
  EXPECT_EQ(client_->pending_appends(), 3u);
  pump();  // the disk is not stepped: nothing is durable, nothing may be reported
  EXPECT_TRUE(rec_.outcomes.empty());

  settle();
  for (uint64_t id : {a, b, c}) EXPECT_EQ(rec_.outcome(id), ipc::AppendStatus::Durable);
  EXPECT_EQ(rec_.cookies[a], 100'000u);
  EXPECT_EQ(table().queued(dev(1)), 2u);
  EXPECT_EQ(table().queued(dev(3)), 1u);
  EXPECT_EQ(client_->pending_appends(), 0u);
  EXPECT_EQ(client_->stats().outcomes[static_cast<size_t>(ipc::AppendStatus::Durable)], 3u);
  // The resync pushes reached their handlers through the same ring.
  EXPECT_EQ(rec_.pushes,
            (std::vector<ipc::Record>{ipc::Record::Hello, ipc::Record::SessionKeyPush,
                                      ipc::Record::ConfigPush}));  // Hello heads a new ring
  EXPECT_EQ(client_->stats().seq_gaps, 0u);
  EXPECT_EQ(server().stats().seq_gaps, 0u);
}

TEST_F(StoreClientTest, DeviceAcksBeforeTheCommitCancelTheEntries) {
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  const uint64_t both = append(100, {1, 2});
  const uint64_t one = append(101, {1, 2});
  pump();
  EXPECT_EQ(client_->device_acked(both, addr(1)), AckProgress::kPending);
  EXPECT_EQ(client_->device_acked(both, addr(2)), AckProgress::kAllAcked);   // ServerAck now
  EXPECT_EQ(client_->device_acked(both, addr(2)), AckProgress::kAllAcked);   // idempotent
  EXPECT_EQ(client_->device_acked(one, addr(1), 0), AckProgress::kPending);  // index hint
  EXPECT_EQ(client_->device_acked(one, addr(7)), AckProgress::kUnknown);     // not a recipient
  EXPECT_EQ(client_->device_acked(one, addr(7), 1), AckProgress::kUnknown);  // wrong hint
  EXPECT_EQ(client_->device_acked(999, addr(1)), AckProgress::kUnknown);
  (void)client_->flush(now_ns());
  EXPECT_EQ(out(ipc::Record::StoreCancel), 2u);  // one record per append, devices batched
  EXPECT_EQ(client_->stats().cancel_devices, 3u);
  settle();
  EXPECT_EQ(rec_.outcome(both), ipc::AppendStatus::Cancelled);
  EXPECT_EQ(rec_.outcome(one), ipc::AppendStatus::Durable);
  EXPECT_EQ(table().peek(dev(1), std::nullopt, 10, UINT64_MAX).size(), 0u);
  EXPECT_EQ(table().peek(dev(2), std::nullopt, 10, UINT64_MAX),
            (std::vector<storage::MessageId>{{101u << 16, 101}}));
  // A device ack after the outcome finds nothing pending.
  EXPECT_EQ(client_->device_acked(one, addr(2)), AckProgress::kUnknown);
}

TEST_F(StoreClientTest, AnAppendEveryoneAckedBeforeItLeftNeverLeaves) {
  new_client(5);  // the control plane is not there yet
  const uint64_t id = append(100, {1, 2});
  EXPECT_EQ(client_->held_appends(), 1u);
  EXPECT_EQ(client_->device_acked(id, addr(1)), AckProgress::kPending);
  EXPECT_EQ(client_->device_acked(id, addr(2)), AckProgress::kAllAcked);
  EXPECT_EQ(client_->held_appends(), 0u);
  EXPECT_EQ(client_->held_bytes(), 0u);
  EXPECT_FALSE(rec_.outcome(id).has_value());  // outcomes are reported from poll()
  (void)client_->poll(now_ns());
  EXPECT_EQ(rec_.outcome(id), ipc::AppendStatus::Cancelled);
  EXPECT_EQ(client_->stats().cancelled_locally, 1u);

  start_controlplane();
  connect(5);
  attach();
  settle();
  EXPECT_EQ(out(ipc::Record::StoreAppend), 0u);
  EXPECT_EQ(out(ipc::Record::StoreCancel), 0u);
  EXPECT_EQ(table().queued(dev(1)), 0u);
}

TEST_F(StoreClientTest, FullQueuesComeBackPerRecipient) {
  table_options_.max_queued_messages_per_device = 1;
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  const uint64_t first = append(100, {1, 2});
  settle();
  const uint64_t some = append(101, {1, 3});  // device 1 is full, device 3 is not
  const uint64_t none = append(102, {1});     // nobody can take it
  settle();
  EXPECT_EQ(rec_.outcome(first), ipc::AppendStatus::Durable);
  EXPECT_EQ(rec_.outcome(some), ipc::AppendStatus::Durable);
  EXPECT_EQ(rec_.queue_full[some], std::vector<uint32_t>{1});
  EXPECT_EQ(rec_.outcome(none), ipc::AppendStatus::QueueFull);
  EXPECT_EQ(rec_.queue_full[none], std::vector<uint32_t>{1});
  EXPECT_TRUE(rec_.queue_full[first].empty());
}

TEST_F(StoreClientTest, DrainComesInSeveralResponsesWithFlowControl) {
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  // 12 messages of 6 KB: a 64 KB ring takes at most ~5 per DrainResponse record.
  for (uint64_t i = 1; i <= 12; ++i) (void)append(i, {5}, 6000);
  settle();
  ASSERT_EQ(table().queued(dev(5)), 12u);

  const uint64_t all = client_->drain(addr(5), nullptr, 0, 0);
  ASSERT_NE(all, 0u);
  run_until([&] { return client_->drains_in_progress() == 0; });
  EXPECT_EQ(rec_.drained(all), range(1, 12));
  size_t responses = 0;
  for (const SeenBatch& b : rec_.batches) responses += b.request_id == all;
  EXPECT_GE(responses, 3u);
  EXPECT_FALSE(rec_.batches.back().more);

  // Flow control: a window of 5, acknowledged, then the next window after the cursor.
  const uint64_t w1 = client_->drain(addr(5), nullptr, 5, 0);
  run_until([&] { return client_->drains_in_progress() == 0; });  // max_messages reached
  EXPECT_EQ(rec_.drained(w1), range(1, 5));
  EXPECT_TRUE(rec_.batches.back().more);
  std::vector<wire::ServerMsgId> acked;
  for (uint64_t i = 1; i <= 5; ++i) acked.push_back(msg_id(i));
  EXPECT_TRUE(client_->ack_stored(addr(5), acked));
  const wire::ServerMsgId cursor = msg_id(5);
  const uint64_t w2 = client_->drain(addr(5), &cursor, 5, 0);
  run_until([&] { return client_->drains_in_progress() == 0; });
  settle();
  EXPECT_EQ(rec_.drained(w2), range(6, 10));
  EXPECT_EQ(table().queued(dev(5)), 7u);  // the StoreAck removed the first five
  EXPECT_EQ(client_->stats().store_ack_ids, 5u);
}

// Queue order is append order, and ids are ordered only per (node, worker): a later entry may
// carry a lower id (minted on another worker, or held for a device list). None is taken for a
// repeat of a re-asked drain.
TEST_F(StoreClientTest, EntriesWithLowerIdsThanEarlierOnesAreNotRepeats) {
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  for (uint64_t n : {5, 3, 4, 9, 1}) (void)append(n, {5});
  settle();
  const uint64_t all = client_->drain(addr(5), nullptr, 0, 0);
  run_until([&] { return client_->drains_in_progress() == 0; });
  EXPECT_EQ(rec_.drained(all), (std::vector<uint64_t>{5, 3, 4, 9, 1}));
  EXPECT_EQ(client_->stats().drain_repeats, 0u);
  // A window after a cursor whose id is above what follows it.
  const wire::ServerMsgId cursor = msg_id(5);
  const uint64_t next = client_->drain(addr(5), &cursor, 2, 0);
  run_until([&] { return client_->drains_in_progress() == 0; });
  EXPECT_EQ(rec_.drained(next), (std::vector<uint64_t>{3, 4}));
}

TEST_F(StoreClientTest, BusyDrainsAreAskedAgainWithABackoff) {
  service_options_.max_drains_in_flight_per_worker = 1;
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  for (uint32_t d = 1; d <= 4; ++d) (void)append(d, {d});
  settle();
  std::vector<uint64_t> ids;
  for (uint32_t d = 1; d <= 4; ++d) ids.push_back(client_->drain(addr(d), nullptr, 0, 0));
  run_until([&] { return client_->drains_in_progress() == 0; });
  for (uint32_t d = 1; d <= 4; ++d) EXPECT_EQ(rec_.drained(ids[d - 1]), range(d, d)) << d;
  EXPECT_GT(client_->stats().drain_busy, 0u);
  EXPECT_GT(service().stats().drains[static_cast<size_t>(ipc::DrainStatus::Busy)], 0u);
  for (const SeenBatch& b : rec_.batches) EXPECT_EQ(b.status, ipc::DrainStatus::Ok);
}

TEST_F(StoreClientTest, ADrainWhoseSessionLeftIsDropped) {
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  (void)append(1, {1});
  settle();
  const uint64_t id = client_->drain(addr(1), nullptr, 0, 0);
  (void)client_->flush(now_ns());  // on the ring
  client_->forget_drains(addr(1));
  EXPECT_EQ(client_->drains_in_progress(), 0u);
  settle();
  EXPECT_TRUE(rec_.drained(id).empty());
  EXPECT_EQ(client_->stats().drain_responses_dropped, 1u);
  // One forgotten before it even left is never sent.
  const uint64_t requests = out(ipc::Record::DrainRequest);
  (void)client_->drain(addr(1), nullptr, 0, 0);
  client_->forget_drains(addr(1));
  settle();
  EXPECT_EQ(out(ipc::Record::DrainRequest), requests);
}

TEST_F(StoreClientTest, AControlPlaneRestartLosesNothingAndReportsNothingTwice) {
  client_options_.heartbeat_interval_ns = 1'000'000;
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  const uint64_t a = append(100, {1, 2});
  (void)client_->flush(now_ns());
  // Only the control plane runs: a is durable and its AppendDurable is in the ring, unread.
  for (int i = 0; i < 4; ++i) {
    for (int k = 0; k < 5; ++k) loop_->run_once(1'000'000);
    disk_->run_until_idle();
  }
  for (int k = 0; k < 5; ++k) loop_->run_once(1'000'000);
  ASSERT_EQ(table().queued(dev(1)), 1u);
  ASSERT_FALSE(rec_.outcome(a).has_value());
  // b is taken but never synced.
  const uint64_t b = append(101, {1, 2});
  (void)client_->flush(now_ns());
  for (int i = 0; i < 20; ++i) loop_->run_once(1'000'000);
  EXPECT_EQ(service().pending_appends(), 1u);

  // The control plane dies with both outcomes unsent or unread.
  stop_controlplane();
  client_->detach();
  link_.reset();

  // While it is away: acks arrive online, a new append is held, nothing is reported.
  EXPECT_EQ(client_->device_acked(a, addr(2)), AckProgress::kPending);
  EXPECT_EQ(client_->device_acked(b, addr(1)), AckProgress::kPending);
  const uint64_t c = append(102, {3});
  for (int i = 0; i < 5; ++i) (void)client_->poll(now_ns());
  EXPECT_EQ(client_->held_appends(), 1u);
  EXPECT_GT(client_->held_bytes(), 0u);
  EXPECT_TRUE(rec_.outcomes.empty());

  start_controlplane();
  connect(5);
  attach();
  EXPECT_EQ(client_->stats().controlplane_restarts, 1u);
  EXPECT_EQ(client_->held_appends(), 3u);  // a and b go again, before c
  (void)client_->flush(now_ns());          // Hello, a Heartbeat (held: 3), then the records
  for (int k = 0; k < 5; ++k) loop_->run_once(1'000'000);
  EXPECT_EQ(server().stats().dataplane_held_appends, 3u);
  settle();
  EXPECT_EQ(client_->stats().appends_resent, 2u);
  EXPECT_EQ(rec_.outcome(a), ipc::AppendStatus::Durable);
  EXPECT_EQ(rec_.outcome(b), ipc::AppendStatus::Durable);
  EXPECT_EQ(rec_.outcome(c), ipc::AppendStatus::Durable);
  EXPECT_EQ(client_->pending_appends(), 0u);
  // a was durable before the crash: the new control plane said Durable again, and the ack
  // device 2 gave meanwhile removed its entry. b was lost and written again, without device 1.
  EXPECT_EQ(table().peek(dev(1), std::nullopt, 10, UINT64_MAX),
            (std::vector<storage::MessageId>{{100u << 16, 100}}));
  EXPECT_EQ(table().peek(dev(2), std::nullopt, 10, UINT64_MAX),
            (std::vector<storage::MessageId>{{101u << 16, 101}}));
  EXPECT_EQ(table().queued(dev(3)), 1u);
  // The heartbeat told the control plane what was held when it came back.
  EXPECT_GT(client_->stats().heartbeats_out, 0u);
  EXPECT_GT(server().stats().heartbeats_in, 0u);
}

TEST_F(StoreClientTest, ASocketHiccupWithTheSameControlPlaneResendsNothing) {
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  const uint64_t a = append(100, {1});
  (void)client_->flush(now_ns());
  client_->detach();
  link_.reset();
  const auto until = Clock::now() + kDeadline;
  while (server().dataplane_connected() && Clock::now() < until) loop_->run_once(1'000'000);
  settle();  // durable while we are away: the control plane holds the outcome for us
  connect(5);
  attach();
  settle();
  EXPECT_EQ(client_->stats().appends_resent, 0u);
  EXPECT_EQ(rec_.outcome(a), ipc::AppendStatus::Durable);
}

TEST_F(StoreClientTest, BoundsRefuseAppendsWhileTheControlPlaneIsAway) {
  client_options_.max_pending_appends = 3;
  client_options_.max_held_records = 16;
  client_options_.max_held_bytes = 4096;
  new_client(5);
  for (uint64_t i = 1; i <= 3; ++i) (void)append(i, {1});
  const Message m(4);
  const wire::DeviceAddress to = addr(1);
  EXPECT_EQ(client_->append(m.deliver(), {&to, 1}, 1).refusal, AppendRefusal::kPendingFull);
  EXPECT_EQ(client_->append(m.deliver(), {}, 1).refusal, AppendRefusal::kNoRecipients);
  client_->device_acked(1 /*unknown id*/, to);

  // Bytes: a fresh client whose held bytes cannot take a large append.
  rec_ = Recorder();
  new_client(6);
  const Message big(9, 3000);
  EXPECT_TRUE(client_->append(big.deliver(), {&to, 1}, 1).ok());
  EXPECT_EQ(client_->append(big.deliver(), {&to, 1}, 1).refusal, AppendRefusal::kHeldFull);
  const Message huge(10, 70000);  // over max_record_bytes
  EXPECT_EQ(client_->append(huge.deliver(), {&to, 1}, 1).refusal, AppendRefusal::kTooLarge);
  EXPECT_EQ(client_->stats().append_refused[static_cast<size_t>(AppendRefusal::kHeldFull)], 1u);
  EXPECT_EQ(client_->stats().append_refused[static_cast<size_t>(AppendRefusal::kTooLarge)], 1u);
}

TEST_F(StoreClientTest, ADataplaneRestartIgnoresTheOutcomesOfItsPredecessor) {
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  (void)append(100, {1});
  (void)client_->flush(now_ns());
  // The old instance never reads again: its outcome waits in the ring.
  const std::unique_ptr<StoreClient> old = std::move(client_);
  for (int i = 0; i < 4; ++i) {
    for (int k = 0; k < 5; ++k) loop_->run_once(1'000'000);
    disk_->run_until_idle();
  }
  link_.reset();  // the process is gone
  const auto until = Clock::now() + kDeadline;
  while (server().dataplane_connected() && Clock::now() < until) loop_->run_once(1'000'000);

  connect(6);
  new_client(6);
  attach();
  settle();
  EXPECT_TRUE(rec_.outcomes.empty());
  EXPECT_EQ(client_->stats().outcomes_other_instance, 1u);
  EXPECT_EQ(table().queued(dev(1)), 1u);  // durable anyway: nothing was lost
  // The new instance works as usual.
  const uint64_t id = append(101, {1});
  settle();
  EXPECT_EQ(rec_.outcome(id), ipc::AppendStatus::Durable);
}

TEST_F(StoreClientTest, AFullRingHoldsRecordsAndSendsThemInOrder) {
  start_controlplane();
  connect(5);
  new_client(5);
  attach();
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= 30; ++i) ids.push_back(append(i, {1}, 6000));  // ~180 KB
  (void)client_->flush(now_ns());
  EXPECT_GT(client_->stats().ring_full, 0u);
  EXPECT_GT(client_->held_appends(), 0u);
  EXPECT_LT(client_->held_appends(), 30u);
  settle();
  run_until([&] { return client_->pending_appends() == 0; });
  for (uint64_t id : ids) EXPECT_EQ(rec_.outcome(id), ipc::AppendStatus::Durable);
  EXPECT_EQ(client_->held_appends(), 0u);
  const auto queued = table().peek(dev(1), std::nullopt, 100, UINT64_MAX);
  ASSERT_EQ(queued.size(), 30u);
  for (uint64_t i = 0; i < 30; ++i) EXPECT_EQ(queued[i].lo, i + 1);  // in append order
  EXPECT_EQ(server().stats().seq_gaps, 0u);
}

// The reader against a hostile or newer control plane, on a hand-made segment.
TEST(StoreClientRingTest, BadRecordsAreCountedAndSkipped) {
  auto segment = ipc::IpcSegment::create(1, 1 << 16);
  ASSERT_TRUE(segment.ok()) << segment.status();
  auto cp_out = segment->producer(0, ipc::Direction::kCpToDp);
  auto cp_in = segment->consumer(0, ipc::Direction::kDpToCp);
  auto to_cp = segment->producer(0, ipc::Direction::kDpToCp);
  auto from_cp = segment->consumer(0, ipc::Direction::kCpToDp);
  ASSERT_TRUE(cp_out.ok() && cp_in.ok() && to_cp.ok() && from_cp.ok());
  Recorder rec;
  StoreClientOptions options;
  options.instance_id = 5;
  options.heartbeat_interval_ns = 0;
  options.max_pending_appends = 4;
  options.max_held_records = 8;
  options.max_drains = 2;
  StoreClient client(options, rec.callbacks());
  client.attach({std::move(*to_cp), std::move(*from_cp),
                 segment->ring_region(0, ipc::Direction::kCpToDp), 77});
  const Message m(1);
  const wire::DeviceAddress to = addr(1);
  const uint64_t id = client.append(m.deliver(), {&to, 1}, 1).append_id;
  const uint64_t drain = client.drain(to, nullptr, 0, 0);
  (void)client.poll(1);

  flatbuffers::FlatBufferBuilder b;
  uint64_t seq = 1;
  auto put = [&](ipc::Record type, uint32_t ring_type) {
    ASSERT_EQ(cp_out->try_enqueue(ring_type, ipc::finished_bytes(b)), shm::RingStatus::kOk);
    (void)type;
  };
  // Not a FlatBuffer at all.
  const std::byte junk[24] = {std::byte{0xff}};
  ASSERT_EQ(cp_out->try_enqueue(static_cast<uint32_t>(ipc::Record::AppendDurable), junk),
            shm::RingStatus::kOk);
  // A record type newer than this build.
  b.Clear();
  ipc::finish_envelope(b, seq++, ipc::CreateHeartbeat(b, 1, 2, 0, 0));
  put(ipc::Record::Heartbeat, 250);
  // An outcome for another dataplane instance, and one for an append we never made.
  b.Clear();
  {
    const ipc::AppendOutcome o(id, ipc::AppendStatus::Durable);
    ipc::finish_envelope(b, seq++,
                         ipc::CreateAppendDurable(b, b.CreateVectorOfStructs(&o, 1), 1, 0, 4));
  }
  put(ipc::Record::AppendDurable, static_cast<uint32_t>(ipc::Record::AppendDurable));
  b.Clear();
  {
    const ipc::AppendOutcome o(id + 1, ipc::AppendStatus::Durable);
    ipc::finish_envelope(b, seq++,
                         ipc::CreateAppendDurable(b, b.CreateVectorOfStructs(&o, 1), 1, 0, 5));
  }
  put(ipc::Record::AppendDurable, static_cast<uint32_t>(ipc::Record::AppendDurable));
  // AppendDurable without outcomes; a DrainResponse for an unknown request.
  b.Clear();
  ipc::finish_envelope(b, seq++, ipc::CreateAppendDurable(b, 0, 1, 0, 5));
  put(ipc::Record::AppendDurable, static_cast<uint32_t>(ipc::Record::AppendDurable));
  b.Clear();
  ipc::finish_envelope(
      b, seq++, ipc::CreateDrainResponse(b, drain + 1, &to, 0, false, ipc::DrainStatus::Ok, 5));
  put(ipc::Record::DrainResponse, static_cast<uint32_t>(ipc::Record::DrainResponse));
  // A dataplane -> control plane record; a push nobody handles.
  b.Clear();
  ipc::finish_envelope(b, seq++, ipc::CreateStoreAck(b, &to, 0));
  put(ipc::Record::StoreAck, static_cast<uint32_t>(ipc::Record::StoreAck));
  b.Clear();
  {
    ipc::RevocationPushBuilder push(b);  // (CreateRevocationPush(b, 0) is the object API's)
    ipc::finish_envelope(b, seq++, push.Finish());
  }
  put(ipc::Record::RevocationPush, static_cast<uint32_t>(ipc::Record::RevocationPush));
  // A seq that skips.
  seq += 3;
  b.Clear();
  ipc::finish_envelope(b, seq++, ipc::CreateHeartbeat(b, 1, 2, 0, 0));
  put(ipc::Record::Heartbeat, static_cast<uint32_t>(ipc::Record::Heartbeat));

  (void)client.poll(2);
  const StoreClientStats& s = client.stats();
  EXPECT_EQ(s.bad_records[static_cast<size_t>(ipc::EnvelopeError::kBadFlatbuffer)], 1u);
  EXPECT_EQ(s.bad_records[static_cast<size_t>(ipc::EnvelopeError::kUnknownType)] +
                s.bad_records[static_cast<size_t>(ipc::EnvelopeError::kTypeMismatch)],
            1u);
  EXPECT_EQ(s.outcomes_other_instance, 1u);
  EXPECT_EQ(s.outcomes_unknown, 1u);
  EXPECT_EQ(s.malformed, 1u);
  EXPECT_EQ(s.drain_responses_dropped, 1u);
  EXPECT_EQ(s.unexpected, 1u);
  EXPECT_EQ(s.pushes_unhandled, 1u);
  EXPECT_EQ(s.seq_gaps, 1u);
  EXPECT_TRUE(rec.outcomes.empty());  // nothing reported durable that was not
  EXPECT_EQ(client.pending_appends(), 1u);

  // The real outcome still resolves it.
  b.Clear();
  {
    const ipc::AppendOutcome o(id, ipc::AppendStatus::Durable);
    ipc::finish_envelope(b, seq++,
                         ipc::CreateAppendDurable(b, b.CreateVectorOfStructs(&o, 1), 1, 0, 5));
  }
  put(ipc::Record::AppendDurable, static_cast<uint32_t>(ipc::Record::AppendDurable));
  (void)client.poll(3);
  EXPECT_EQ(rec.outcome(id), ipc::AppendStatus::Durable);

  // What the client wrote: Hello first, then the append and the drain, seq from 1.
  shm::RecordView views[8];
  const shm::ReadResult r = cp_in->read_batch(views);
  ASSERT_EQ(r.count, 3u);
  for (size_t i = 0; i < r.count; ++i) {
    const ipc::CheckedEnvelope c = ipc::verify_envelope(views[i].type, views[i].payload);
    ASSERT_EQ(c.error, ipc::EnvelopeError::kNone);
    EXPECT_EQ(c.envelope->seq(), i + 1);
  }
  EXPECT_EQ(views[0].type, static_cast<uint32_t>(ipc::Record::Hello));
  EXPECT_EQ(views[1].type, static_cast<uint32_t>(ipc::Record::StoreAppend));
  EXPECT_EQ(views[2].type, static_cast<uint32_t>(ipc::Record::DrainRequest));
}

// A control plane by hand: the two ends of worker 0's rings, with a fake clock.
class HandRings {
 public:
  explicit HandRings(uint64_t ring_bytes) {
    auto segment = ipc::IpcSegment::create(1, ring_bytes);
    EXPECT_TRUE(segment.ok()) << segment.status();
    segment_.emplace(std::move(*segment));
    cp_in_.emplace(std::move(*segment_->consumer(0, ipc::Direction::kDpToCp)));
  }
  StoreLink link(uint64_t cp_instance) {
    return {std::move(*segment_->producer(0, ipc::Direction::kDpToCp)),
            std::move(*segment_->consumer(0, ipc::Direction::kCpToDp)),
            segment_->ring_region(0, ipc::Direction::kCpToDp), cp_instance};
  }
  // Types of the records the client wrote since the last call.
  std::vector<ipc::Record> written() {
    std::vector<ipc::Record> v;
    shm::RecordView views[64];
    const shm::ReadResult r = cp_in_->read_batch(views);
    for (size_t i = 0; i < r.count; ++i) v.push_back(static_cast<ipc::Record>(views[i].type));
    cp_in_->release();
    return v;
  }

 private:
  std::optional<ipc::IpcSegment> segment_;
  std::optional<shm::RingConsumer> cp_in_;
};

TEST(StoreClientRingTest, ASilentDrainIsAskedAgainAndAnAnsweredOneIsNot) {
  HandRings rings(1 << 16);
  Recorder rec;
  StoreClientOptions options;
  options.instance_id = 5;
  options.heartbeat_interval_ns = 0;
  options.drain_timeout_ns = 1000;
  StoreClient client(options, rec.callbacks());
  client.attach(rings.link(77));
  const wire::DeviceAddress to = addr(1);
  ASSERT_NE(client.drain(to, nullptr, 10, 0), 0u);
  (void)client.poll(10'000);
  EXPECT_EQ(rings.written(),
            (std::vector<ipc::Record>{ipc::Record::Hello, ipc::Record::DrainRequest}));
  (void)client.poll(10'500);  // not yet due
  EXPECT_TRUE(rings.written().empty());
  (void)client.poll(11'000);  // no answer within drain_timeout_ns: asked again
  EXPECT_EQ(rings.written(), std::vector<ipc::Record>{ipc::Record::DrainRequest});
  EXPECT_EQ(client.stats().drain_timeouts, 1u);
  (void)client.poll(100'000);  // the re-ask is not answered either: once more
  EXPECT_EQ(rings.written(), std::vector<ipc::Record>{ipc::Record::DrainRequest});
  EXPECT_EQ(client.stats().drain_requests, 3u);
}

TEST(StoreClientRingTest, AnAppendWithoutOutcomeIsSentAgainAndReportedOnce) {
  auto segment = ipc::IpcSegment::create(1, 1 << 16);
  ASSERT_TRUE(segment.ok()) << segment.status();
  auto cp_out = segment->producer(0, ipc::Direction::kCpToDp);
  auto cp_in = segment->consumer(0, ipc::Direction::kDpToCp);
  ASSERT_TRUE(cp_out.ok() && cp_in.ok());
  auto link = [&] {
    return StoreLink{std::move(*segment->producer(0, ipc::Direction::kDpToCp)),
                     std::move(*segment->consumer(0, ipc::Direction::kCpToDp)),
                     segment->ring_region(0, ipc::Direction::kCpToDp), 77};
  };
  auto written = [&] {
    std::vector<ipc::Record> v;
    shm::RecordView views[16];
    const shm::ReadResult r = cp_in->read_batch(views);
    for (size_t i = 0; i < r.count; ++i) v.push_back(static_cast<ipc::Record>(views[i].type));
    cp_in->release();
    return v;
  };
  Recorder rec;
  StoreClientOptions options;
  options.instance_id = 5;
  options.heartbeat_interval_ns = 0;
  options.append_resend_ns = 1'000'000;
  options.drain_timeout_ns = 1'000'000'000;
  StoreClient client(options, rec.callbacks());
  client.attach(link());
  const Message m(1);
  const wire::DeviceAddress to = addr(1);
  const uint64_t id = client.append(m.deliver(), {&to, 1}, 1).append_id;
  (void)client.drain(addr(2), nullptr, 0, 0);
  (void)client.poll(1'000);
  EXPECT_EQ(written(), (std::vector<ipc::Record>{ipc::Record::Hello, ipc::Record::StoreAppend,
                                                 ipc::Record::DrainRequest}));
  (void)client.poll(500'000);
  EXPECT_TRUE(written().empty());
  (void)client.poll(1'500'000);  // no outcome for append_resend_ns: sent again
  EXPECT_EQ(written(), std::vector<ipc::Record>{ipc::Record::StoreAppend});
  EXPECT_EQ(client.stats().appends_resent_timeout, 1u);

  // A socket hiccup with the same control plane: the unanswered drain is asked again (the
  // control plane orphaned it), the append is not re-sent.
  client.detach();
  client.attach(link());
  (void)client.poll(1'600'000);
  EXPECT_EQ(written(), (std::vector<ipc::Record>{ipc::Record::Hello, ipc::Record::DrainRequest}));
  EXPECT_EQ(client.stats().drain_resends, 1u);

  // Both copies are answered: the caller hears once.
  flatbuffers::FlatBufferBuilder b;
  for (uint64_t seq = 1; seq <= 2; ++seq) {
    b.Clear();
    const ipc::AppendOutcome o(id, ipc::AppendStatus::Durable);
    ipc::finish_envelope(b, seq,
                         ipc::CreateAppendDurable(b, b.CreateVectorOfStructs(&o, 1), 1, 0, 5));
    ASSERT_EQ(ipc::enqueue_envelope(*cp_out, ipc::Record::AppendDurable, ipc::finished_bytes(b)),
              shm::RingStatus::kOk);
  }
  (void)client.poll(1'700'000);
  EXPECT_EQ(rec.outcome(id), ipc::AppendStatus::Durable);
  EXPECT_EQ(client.stats().outcomes_unknown, 1u);
}

TEST(StoreClientRingTest, HeldRecordsTooLargeForTheAttachedRingAreRejectedNotLost) {
  HandRings rings(4096);  // records up to 2040 bytes
  Recorder rec;
  StoreClientOptions options;
  options.instance_id = 5;
  options.heartbeat_interval_ns = 0;
  StoreClient client(options, rec.callbacks());
  const wire::DeviceAddress to = addr(1);
  const Message big(1, 3000);
  const Message small(2, 100);
  // Taken while no ring is attached (max_record_bytes allows it).
  const uint64_t a = client.append(big.deliver(), {&to, 1}, 1).append_id;
  const uint64_t b = client.append(small.deliver(), {&to, 1}, 2).append_id;
  ASSERT_NE(a, 0u);
  EXPECT_TRUE(client.push_hint(to, msg_id(2), addr(99).account(), 3));
  client.attach(rings.link(77));
  (void)client.poll(1);
  (void)client.poll(2);
  EXPECT_EQ(rec.outcome(a), ipc::AppendStatus::Rejected);  // never a false durable
  EXPECT_FALSE(rec.outcome(b).has_value());
  EXPECT_EQ(client.stats().appends_too_large, 1u);
  EXPECT_EQ(rings.written(), (std::vector<ipc::Record>{ipc::Record::Hello, ipc::Record::StoreAppend,
                                                       ipc::Record::PushHint}));
  // Attached, the ring's own limit refuses at once.
  EXPECT_EQ(client.append(big.deliver(), {&to, 1}, 1).refusal, AppendRefusal::kTooLarge);
}

}  // namespace
}  // namespace herald::dataplane

// StoreService behind a real IpcServer on a real event loop, against a fake dataplane that uses
// only the platform/ipc client (handshake on a helper thread, rings from the test thread), over
// a QueueTable on a SimDisk whose syncs complete only when the test steps it. Deadlines are hang
// guards, never speed checks.
#include "controlplane/ipc/store_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "controlplane/storage/sim_disk.h"
#include "platform/ipc/client.h"
#include "platform/ipc/envelope.h"
#include "tests/unit/controlplane/ipc/inprocess_store.h"

namespace herald::controlplane {
namespace {

using storage::DeviceKey;
using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(30);

DeviceKey dev(uint32_t n) {
  return {0xACC0, 0x1000 + n, n};
}
wire::DeviceAddress addr(uint32_t n) {
  return wire::DeviceAddress(wire::AccountId(0xACC0, 0x1000 + n), n);
}
wire::ServerMsgId msg_id(uint64_t n) {
  return wire::ServerMsgId(n << 16, n);
}

storage::LogOptions small_log() {
  storage::LogOptions o;
  o.segment_size_bytes = 1 << 20;
  o.group_commit_bytes = 8 * 1024;
  o.group_commit_delay_us = 1000;
  o.max_write_bytes = 64 * 1024;
  o.max_payload_bytes = 16 * 1024;
  o.max_staged_bytes = 1 << 20;
  return o;
}

// A copy of one record read by the fake dataplane.
struct Got {
  ipc::Record type;
  std::vector<uint8_t> bytes;
  const ipc::Envelope* envelope() const { return ipc::GetEnvelope(bytes.data()); }
};

// One AppendOutcome as the dataplane saw it.
struct SeenOutcome {
  ipc::AppendStatus status;
  uint64_t instance;
  std::vector<uint32_t> queue_full;  // device numbers
};

class FakeDataplane {
 public:
  ipc::ControlPlaneLink link;
  std::vector<shm::RingProducer> out;
  std::vector<shm::RingConsumer> in;
  std::vector<uint64_t> seq;
  flatbuffers::FlatBufferBuilder b{1024};
  std::vector<std::vector<Got>> got;  // per worker, everything read

  explicit FakeDataplane(ipc::ControlPlaneLink l) : link(std::move(l)) {
    for (uint16_t w = 0; w < link.segment.workers(); ++w) {
      auto o = link.segment.producer(w, ipc::Direction::kDpToCp);
      auto i = link.segment.consumer(w, ipc::Direction::kCpToDp);
      EXPECT_TRUE(o.ok() && i.ok());
      o->set_doorbell(link.cp_doorbell.fd());
      out.push_back(std::move(*o));
      in.push_back(std::move(*i));
      seq.push_back(1);
      got.emplace_back();
    }
  }
  uint16_t workers() const { return static_cast<uint16_t>(out.size()); }

  // Reads everything on every cp_to_dp ring; returns how many records.
  size_t read() {
    size_t n = 0;
    for (uint16_t w = 0; w < workers(); ++w) {
      shm::RecordView views[64];
      for (;;) {
        const shm::ReadResult r = in[w].read_batch(views);
        EXPECT_NE(r.status, shm::RingStatus::kCorrupt);
        for (size_t i = 0; i < r.count; ++i) {
          const ipc::CheckedEnvelope c = ipc::verify_envelope(views[i].type, views[i].payload);
          EXPECT_EQ(c.error, ipc::EnvelopeError::kNone);
          const auto* p = reinterpret_cast<const uint8_t*>(views[i].payload.data());
          got[w].push_back({static_cast<ipc::Record>(views[i].type),
                            std::vector<uint8_t>(p, p + views[i].payload.size())});
        }
        in[w].release();
        n += r.count;
        if (r.count == 0) break;
      }
    }
    return n;
  }

  std::vector<const Got*> of_type(uint16_t w, ipc::Record type) const {
    std::vector<const Got*> v;
    for (const Got& g : got[w]) {
      if (g.type == type) v.push_back(&g);
    }
    return v;
  }

  // append_id -> outcome, from every AppendDurable on worker w (a second outcome for the same
  // id fails the test: outcomes are never sent twice).
  std::map<uint64_t, SeenOutcome> outcomes(uint16_t w) const {
    std::map<uint64_t, SeenOutcome> m;
    for (const Got* g : of_type(w, ipc::Record::AppendDurable)) {
      const ipc::AppendDurable* d = g->envelope()->record_as_AppendDurable();
      for (const ipc::AppendOutcome* o : *d->outcomes()) {
        EXPECT_FALSE(m.contains(o->append_id())) << "outcome sent twice: " << o->append_id();
        m[o->append_id()] = {o->status(), d->dataplane_instance_id(), {}};
      }
      if (d->queue_full() == nullptr) continue;
      for (const ipc::QueueFullRecipients* q : *d->queue_full()) {
        for (const wire::DeviceAddress* a : *q->devices()) {
          m[q->append_id()].queue_full.push_back(a->device());
        }
      }
    }
    return m;
  }
};

class StoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herald-store-svc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ipc_options_.socket_path = dir_ + "/ipc.sock";
    ipc_options_.workers = 2;
    ipc_options_.ring_capacity_bytes = 64 * 1024;
    ipc_options_.tick_ns = 10'000'000;
    ipc_options_.heartbeat_interval_ms = 0;
    ipc_options_.backlog_retry_ns = 200'000;
    service_options_.held_retry_ns = 200'000;
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    disk_ = std::make_unique<storage::SimDisk>(storage::SimDiskOptions{});
  }

  void TearDown() override {
    dp_.reset();
    stop_controlplane();
    loop_.reset();
    std::filesystem::remove_all(dir_);
  }

  // (Re)opens the store on the disk (recovering what is durable) and starts server + service.
  void start_controlplane() {
    store_.emplace(*loop_, *disk_);
    store_->start(
        {table_options_, log_options_, service_options_, ipc_options_},
        [this](StoreService& service) {
          service.set_resync([this](Pusher& p) {
            ++resync_calls_;
            const uint8_t key[32] = {7};
            ASSERT_TRUE(p.push_session_key({.key_id = 42, .key = key, .not_after_ms = 1000}).ok());
            const std::string restart[] = {"dataplane.workers"};
            const uint8_t config[] = {1, 2, 3};
            ASSERT_TRUE(p.push_config(9, config, restart).ok());
          });
        });
  }

  // A control plane that dies: the disk keeps only what was synced.
  void stop_controlplane() {
    if (store_) store_->crash();
  }

  // Handshake on a helper thread while the loop serves it, then a Hello on every ring.
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
    // Until the handshake is answered and the server counts the dataplane as live (it may
    // first have to notice the previous one's exit).
    const auto until = Clock::now() + kDeadline;
    while (!(done && server().dataplane_connected() &&
             server().dataplane_instance_id() == instance_id) &&
           Clock::now() < until) {
      loop_->run_once(1'000'000);
    }
    t.join();
    ASSERT_TRUE(link.has_value() && link->ok()) << (link ? link->status().ToString() : "none");
    dp_ = std::make_unique<FakeDataplane>(std::move(**link));
    for (uint16_t w = 0; w < dp_->workers(); ++w) {
      ipc::HelloFields hello;
      hello.ipc_version = ipc::kIpcVersion;
      hello.instance_id = instance_id;
      hello.worker = w;
      hello.workers = dp_->workers();
      ipc::build_hello(dp_->b, dp_->seq[w], hello, "test");
      put(w, ipc::Record::Hello);
    }
    pump();
  }

  void disconnect() {
    dp_.reset();
    const auto until = Clock::now() + kDeadline;
    while (server().dataplane_connected() && Clock::now() < until) loop_->run_once(1'000'000);
    ASSERT_FALSE(server().dataplane_connected());
  }

  // Puts the finished builder on worker w's ring, serving the loop while the ring is full.
  void put(uint16_t w, ipc::Record type) {
    const auto until = Clock::now() + kDeadline;
    for (;;) {
      const shm::RingStatus s =
          ipc::enqueue_envelope(dp_->out[w], type, ipc::finished_bytes(dp_->b));
      if (s == shm::RingStatus::kOk) break;
      ASSERT_EQ(s, shm::RingStatus::kFull);
      ASSERT_LT(Clock::now(), until);
      loop_->run_once(1'000'000);
    }
    ++dp_->seq[w];
  }

  // Serves the loop until nothing happens for a few rounds (the disk is not stepped).
  // Bounded: retry timers (a backlog the dataplane does not read) never let the loop go idle.
  void pump() {
    for (int idle = 0, rounds = 0; idle < 3 && rounds < 200; ++rounds) {
      idle = loop_->run_once(2'000'000) == 0 ? idle + 1 : 0;
    }
  }
  // Lets the disk complete everything (syncs included), serving the loop around it.
  void settle() {
    for (int i = 0; i < 4; ++i) {
      pump();
      disk_->run_until_idle();
    }
    pump();
  }

  void append(uint16_t w, uint64_t append_id, uint64_t id, std::vector<uint32_t> to,
              size_t body_bytes = 16) {
    auto& b = dp_->b;
    b.Clear();
    std::vector<uint8_t> body(body_bytes);
    for (size_t i = 0; i < body_bytes; ++i) body[i] = static_cast<uint8_t>(id * 7 + i);
    const wire::ServerMsgId sid = msg_id(id);
    const wire::DeviceAddress sender = addr(99);
    const auto deliver = wire::CreateDeliver(b, &sid, &sender, wire::Recipient::NONE, 0,
                                             b.CreateVector(body), 3, 0, id * 10);
    std::vector<wire::DeviceAddress> recipients;
    for (uint32_t d : to) recipients.push_back(addr(d));
    ipc::finish_envelope(b, dp_->seq[w],
                         ipc::CreateStoreAppend(b, append_id, deliver,
                                                b.CreateVectorOfStructs(recipients), id + 500));
    put(w, ipc::Record::StoreAppend);
  }
  // A receipt kept for offline devices, as the dataplane appends it (wire.fbs Deliver.receipt):
  // `kind` of message `about`, from device 98, with its own id `id`.
  void append_receipt(uint16_t w, uint64_t append_id, uint64_t id, std::vector<uint32_t> to,
                      wire::ReceiptKind kind, uint64_t about) {
    auto& b = dp_->b;
    b.Clear();
    const wire::ServerMsgId sid = msg_id(id), about_id = msg_id(about);
    const wire::DeviceAddress from = addr(98);
    const wire::AccountId account = addr(to[0]).account();
    const auto receipt = wire::CreateReceipt(b, kind, b.CreateVectorOfStructs(&about_id, 1),
                                             &account, &from, id * 3, &sid, true);
    const auto deliver = wire::CreateDeliver(b, &sid, &from, wire::Recipient::NONE, 0, 0, 0, 0,
                                             id * 10, wire::MessageFlags::NONE, 0, receipt);
    std::vector<wire::DeviceAddress> recipients;
    for (uint32_t d : to) recipients.push_back(addr(d));
    ipc::finish_envelope(
        b, dp_->seq[w],
        ipc::CreateStoreAppend(b, append_id, deliver, b.CreateVectorOfStructs(recipients), 0));
    put(w, ipc::Record::StoreAppend);
  }
  void cancel(uint16_t w, uint64_t append_id, std::vector<uint32_t> devices) {
    auto& b = dp_->b;
    b.Clear();
    std::vector<wire::DeviceAddress> v;
    for (uint32_t d : devices) v.push_back(addr(d));
    ipc::finish_envelope(b, dp_->seq[w],
                         ipc::CreateStoreCancel(b, append_id, b.CreateVectorOfStructs(v)));
    put(w, ipc::Record::StoreCancel);
  }
  void ack(uint16_t w, uint32_t device, std::vector<uint64_t> ids) {
    auto& b = dp_->b;
    b.Clear();
    std::vector<wire::ServerMsgId> v;
    for (uint64_t id : ids) v.push_back(msg_id(id));
    const wire::DeviceAddress a = addr(device);
    ipc::finish_envelope(b, dp_->seq[w], ipc::CreateStoreAck(b, &a, b.CreateVectorOfStructs(v)));
    put(w, ipc::Record::StoreAck);
  }
  void drain(uint16_t w, uint64_t request_id, uint32_t device, uint32_t max_messages = 0,
             uint32_t max_bytes = 0) {
    auto& b = dp_->b;
    b.Clear();
    const wire::DeviceAddress a = addr(device);
    ipc::finish_envelope(
        b, dp_->seq[w],
        ipc::CreateDrainRequest(b, request_id, &a, nullptr, max_messages, max_bytes));
    put(w, ipc::Record::DrainRequest);
  }

  // The DrainResponses for one request, in ring order.
  std::vector<const ipc::DrainResponse*> responses(uint16_t w, uint64_t request_id) {
    std::vector<const ipc::DrainResponse*> v;
    for (const Got* g : dp_->of_type(w, ipc::Record::DrainResponse)) {
      const ipc::DrainResponse* r = g->envelope()->record_as_DrainResponse();
      if (r->request_id() == request_id) v.push_back(r);
    }
    return v;
  }

  std::string dir_;
  IpcServerOptions ipc_options_;
  StoreServiceOptions service_options_;
  storage::QueueTableOptions table_options_;
  storage::LogOptions log_options_ = small_log();
  std::unique_ptr<uring::EventLoop> loop_;
  std::unique_ptr<storage::SimDisk> disk_;
  std::optional<testing::InProcessStore> store_;
  storage::QueueTable& table() { return store_->table(); }
  StoreService& service() { return store_->service(); }
  IpcServer& server() { return store_->server(); }
  std::unique_ptr<FakeDataplane> dp_;
  int resync_calls_ = 0;
};

TEST_F(StoreServiceTest, AppendDurableOnlyAfterTheSync) {
  start_controlplane();
  connect(1111);
  append(0, 1, 100, {1, 2});
  append(1, 1, 101, {3});  // the same append_id on another worker is another append
  pump();                  // the disk is not stepped: nothing is durable yet
  dp_->read();
  EXPECT_TRUE(dp_->outcomes(0).empty());
  EXPECT_TRUE(dp_->outcomes(1).empty());
  EXPECT_EQ(service().pending_appends(), 2u);
  EXPECT_EQ(service().backlog().appends_pending, 2u);  // the gauge the counters segment shows

  settle();
  dp_->read();
  auto o0 = dp_->outcomes(0);
  auto o1 = dp_->outcomes(1);
  ASSERT_EQ(o0.size(), 1u);
  ASSERT_EQ(o1.size(), 1u);
  EXPECT_EQ(o0[1].status, ipc::AppendStatus::Durable);
  EXPECT_EQ(o0[1].instance, 1111u);
  EXPECT_EQ(o1[1].status, ipc::AppendStatus::Durable);
  EXPECT_EQ(table().queued(dev(1)), 1u);
  EXPECT_EQ(table().queued(dev(2)), 1u);
  EXPECT_EQ(table().queued(dev(3)), 1u);
  EXPECT_EQ(service().pending_appends(), 0u);
  EXPECT_EQ(service().backlog().appends_pending, 0u);
  EXPECT_EQ(service().stats().outcomes[static_cast<size_t>(ipc::AppendStatus::Durable)], 2u);
}

TEST_F(StoreServiceTest, DuplicateAppendGetsTheSameOutcome) {
  start_controlplane();
  connect(5);
  append(0, 1, 100, {1});
  append(0, 2, 100, {1});  // re-sent while pending
  settle();
  append(0, 3, 100, {1});  // re-sent after it is durable
  settle();
  dp_->read();
  auto o = dp_->outcomes(0);
  ASSERT_EQ(o.size(), 3u);
  for (uint64_t id : {1, 2, 3}) EXPECT_EQ(o[id].status, ipc::AppendStatus::Durable) << id;
  EXPECT_EQ(table().queued(dev(1)), 1u);
  EXPECT_EQ(service().stats().duplicate_appends, 2u);
}

TEST_F(StoreServiceTest, FullQueuesAreReportedPerRecipient) {
  table_options_.max_queued_messages_per_device = 1;
  start_controlplane();
  connect(5);
  append(0, 1, 100, {1, 2});
  settle();
  append(0, 2, 101, {1, 3});  // device 1 is full, device 3 is not
  append(0, 3, 102, {1});     // nobody can take it
  settle();
  dp_->read();
  auto o = dp_->outcomes(0);
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[1].status, ipc::AppendStatus::Durable);
  EXPECT_TRUE(o[1].queue_full.empty());
  EXPECT_EQ(o[2].status, ipc::AppendStatus::Durable);
  EXPECT_EQ(o[2].queue_full, std::vector<uint32_t>{1});
  EXPECT_EQ(o[3].status, ipc::AppendStatus::QueueFull);
  EXPECT_EQ(o[3].queue_full, std::vector<uint32_t>{1});
  EXPECT_EQ(table().queued(dev(3)), 1u);
  EXPECT_EQ(service().stats().queue_full_recipients, 2u);
}

TEST_F(StoreServiceTest, LogFailureIsAnErrorOutcomeNeverADurableOne) {
  storage::SimDiskOptions d;
  d.sync_error_probability = 1.0;
  disk_ = std::make_unique<storage::SimDisk>(d);
  start_controlplane();
  connect(5);
  disk_->set_faults_enabled(true);
  append(0, 1, 100, {1});
  settle();
  append(0, 2, 101, {1});  // the log has failed: refused at once
  settle();
  dp_->read();
  auto o = dp_->outcomes(0);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[1].status, ipc::AppendStatus::StoreFailed);
  EXPECT_EQ(o[2].status, ipc::AppendStatus::StoreFailed);
  EXPECT_EQ(table().queued(dev(1)), 0u);
}

TEST_F(StoreServiceTest, BackpressureIsStoreBusyAndClearsOnceDurable) {
  log_options_.max_staged_bytes = 20 * 1024;
  start_controlplane();
  connect(5);
  for (uint64_t i = 1; i <= 4; ++i) append(0, i, 100 + i, {1}, 6000);
  pump();  // nothing synced: the fourth does not fit in what may wait
  settle();
  append(0, 5, 105, {1}, 6000);
  settle();
  dp_->read();
  auto o = dp_->outcomes(0);
  ASSERT_EQ(o.size(), 5u);
  for (uint64_t id : {1, 2, 3, 5}) EXPECT_EQ(o[id].status, ipc::AppendStatus::Durable) << id;
  EXPECT_EQ(o[4].status, ipc::AppendStatus::StoreBusy);
  EXPECT_EQ(table().queued(dev(1)), 4u);
}

TEST_F(StoreServiceTest, CancelBeforeTheCommitAndAfterIt) {
  start_controlplane();
  connect(5);
  append(0, 1, 100, {1, 2});  // both devices ack before the commit
  cancel(0, 1, {1, 2});
  append(0, 2, 101, {1, 2});  // one does
  cancel(0, 2, {1});
  pump();
  settle();
  append(0, 3, 102, {1, 2});
  settle();
  cancel(0, 3, {2});   // crossed its AppendDurable
  cancel(0, 77, {1});  // never heard of
  settle();
  dp_->read();
  auto o = dp_->outcomes(0);
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[1].status, ipc::AppendStatus::Cancelled);
  EXPECT_EQ(o[2].status, ipc::AppendStatus::Durable);
  EXPECT_EQ(o[3].status, ipc::AppendStatus::Durable);
  // Device 1 keeps only 102; device 2 keeps only 101.
  EXPECT_EQ(table().peek(dev(1), std::nullopt, 10, UINT64_MAX),
            (std::vector<storage::MessageId>{{102u << 16, 102}}));
  EXPECT_EQ(table().peek(dev(2), std::nullopt, 10, UINT64_MAX),
            (std::vector<storage::MessageId>{{101u << 16, 101}}));
  EXPECT_FALSE(table().has_body({100u << 16, 100}));
  EXPECT_EQ(service().stats().cancels_pending, 3u);
  EXPECT_EQ(service().stats().cancels_late, 1u);
  EXPECT_EQ(service().stats().cancels_unknown, 1u);
}

TEST_F(StoreServiceTest, AckRemovesEntries) {
  start_controlplane();
  connect(5);
  append(0, 1, 100, {1});
  append(0, 2, 101, {1});
  settle();
  ack(1, 1, {100, 555});  // any worker; 555 was never queued
  settle();
  EXPECT_EQ(table().queued(dev(1)), 1u);
  EXPECT_EQ(service().stats().acked_entries, 1u);
  EXPECT_EQ(service().stats().acks_unknown, 1u);
}

TEST_F(StoreServiceTest, DrainAfterAControlPlaneRestartReturnsWhatWasDurable) {
  start_controlplane();
  connect(5);
  for (uint64_t i = 0; i < 3; ++i) append(0, i + 1, 100 + i, {1});
  settle();
  append(0, 9, 200, {1});  // never synced: lost with the control plane, never acknowledged
  pump();
  dp_->read();
  EXPECT_EQ(dp_->outcomes(0).size(), 3u);
  dp_.reset();
  stop_controlplane();

  start_controlplane();
  connect(6);
  drain(1, 77, 1);
  settle();
  dp_->read();
  auto r = responses(1, 77);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->status(), ipc::DrainStatus::Ok);
  EXPECT_FALSE(r[0]->more());
  EXPECT_EQ(r[0]->dataplane_instance_id(), 6u);
  ASSERT_NE(r[0]->messages(), nullptr);
  ASSERT_EQ(r[0]->messages()->size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    const wire::Deliver* m = r[0]->messages()->Get(static_cast<uint32_t>(i));
    EXPECT_EQ(m->server_msg_id()->lo(), 100 + i);
    EXPECT_EQ(m->server_time_ms(), (100 + i) * 10);
    EXPECT_EQ(m->sender()->device(), 99u);
    ASSERT_EQ(m->body()->size(), 16u);
    EXPECT_EQ(m->body()->Get(3), static_cast<uint8_t>((100 + i) * 7 + 3));
  }
  // Drain counters: one drain served, its messages, and their stored bytes (each holds a
  // 16-byte body plus the StoredMessage around it).
  const StoreServiceStats& stats = service().stats();
  EXPECT_EQ(stats.drains[static_cast<size_t>(ipc::DrainStatus::Ok)], 1u);
  EXPECT_EQ(stats.drain_messages, 3u);
  EXPECT_GT(stats.drain_bytes, 3u * 16u);
  EXPECT_LT(stats.drain_bytes, 3u * 1024u);
  EXPECT_EQ(stats.drain_send_failed + stats.drains_orphaned, 0u);
}

// Receipts kept for offline devices are queue entries like messages: in append order with
// them, under the same cap (a full queue refuses with the same counted outcome), deleted on
// the device's ack, and still there (or still gone) after the control plane restarts.
TEST_F(StoreServiceTest, ReceiptEntriesQueueDrainAndLeaveLikeMessagesAcrossRestarts) {
  table_options_.max_queued_messages_per_device = 3;
  start_controlplane();
  connect(5);
  append(0, 1, 100, {1});
  append_receipt(0, 2, 101, {1, 2}, wire::ReceiptKind::Delivered, 100);
  append_receipt(1, 3, 102, {1}, wire::ReceiptKind::Read, 100);
  settle();
  append_receipt(0, 4, 103, {1, 2}, wire::ReceiptKind::Read, 77);  // device 1 is full
  append_receipt(0, 5, 104, {1}, wire::ReceiptKind::Read, 78);     // nobody can take it
  settle();
  dp_->read();
  auto o0 = dp_->outcomes(0);
  ASSERT_EQ(o0.size(), 4u);
  for (uint64_t id : {1, 2, 4}) EXPECT_EQ(o0[id].status, ipc::AppendStatus::Durable) << id;
  EXPECT_EQ(o0[4].queue_full, std::vector<uint32_t>{1});
  EXPECT_EQ(o0[5].status, ipc::AppendStatus::QueueFull);
  EXPECT_EQ(dp_->outcomes(1)[3].status, ipc::AppendStatus::Durable);
  EXPECT_EQ(table().queued(dev(1)), 3u);
  EXPECT_EQ(table().queued(dev(2)), 2u);
  EXPECT_EQ(service().stats().queue_full_recipients, 2u);

  // A restart: everything durable is back, in order, receipts intact.
  dp_.reset();
  stop_controlplane();
  start_controlplane();
  connect(6);
  drain(0, 7, 1);
  settle();
  dp_->read();
  auto r = responses(0, 7);
  ASSERT_EQ(r.size(), 1u);
  ASSERT_NE(r[0]->messages(), nullptr);
  ASSERT_EQ(r[0]->messages()->size(), 3u);
  const wire::Deliver* m = r[0]->messages()->Get(0);
  EXPECT_EQ(m->server_msg_id()->lo(), 100u);
  EXPECT_EQ(m->receipt(), nullptr);
  for (uint32_t i = 1; i < 3; ++i) {
    m = r[0]->messages()->Get(i);
    EXPECT_EQ(m->server_msg_id()->lo(), 100u + i);
    ASSERT_NE(m->receipt(), nullptr) << i;
    const wire::Receipt* rc = m->receipt();
    EXPECT_EQ(rc->kind(), i == 1 ? wire::ReceiptKind::Delivered : wire::ReceiptKind::Read);
    ASSERT_EQ(rc->message_ids()->size(), 1u);
    EXPECT_EQ(rc->message_ids()->Get(0)->lo(), 100u);
    EXPECT_EQ(rc->from()->device(), 98u);
    EXPECT_EQ(rc->client_time_ms(), (100u + i) * 3);
    EXPECT_EQ(rc->server_msg_id()->lo(), 100u + i);
    EXPECT_TRUE(rc->stored());
    EXPECT_EQ(m->server_time_ms(), (100u + i) * 10);
  }

  // Acked like messages (a receipt first, then the rest): gone, and still gone after another
  // restart; device 2 keeps its own two receipts.
  ack(0, 1, {101});
  settle();
  EXPECT_EQ(table().queued(dev(1)), 2u);
  ack(1, 1, {100, 102});
  settle();
  EXPECT_EQ(table().queued(dev(1)), 0u);
  EXPECT_EQ(service().stats().acked_entries, 3u);
  dp_.reset();
  stop_controlplane();
  start_controlplane();
  connect(7);
  EXPECT_EQ(table().queued(dev(1)), 0u);
  EXPECT_EQ(table().queued(dev(2)), 2u);
  drain(1, 8, 2);
  settle();
  dp_->read();
  r = responses(1, 8);
  ASSERT_EQ(r.size(), 1u);
  ASSERT_EQ(r[0]->messages()->size(), 2u);
  EXPECT_EQ(r[0]->messages()->Get(0)->receipt()->kind(), wire::ReceiptKind::Delivered);
  EXPECT_EQ(r[0]->messages()->Get(1)->receipt()->message_ids()->Get(0)->lo(), 77u);
}

TEST_F(StoreServiceTest, LargeDrainIsSplitAcrossRecords) {
  ipc_options_.ring_capacity_bytes = 16 * 1024;  // records of at most 8 KiB
  start_controlplane();
  connect(5);
  constexpr uint64_t kMessages = 20;
  for (uint64_t i = 0; i < kMessages; ++i) {
    append(0, i + 1, 100 + i, {1}, 1000);
    if (i % 4 == 3) settle();
  }
  settle();
  drain(0, 5, 1);
  // The response is larger than the ring: the dataplane reads while the rest waits.
  const auto until = Clock::now() + kDeadline;
  while ((responses(0, 5).empty() || responses(0, 5).back()->more()) && Clock::now() < until) {
    settle();
    dp_->read();
  }
  auto r = responses(0, 5);
  ASSERT_GT(r.size(), 2u);
  uint64_t next = 100;
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_EQ(r[i]->status(), ipc::DrainStatus::Ok);
    EXPECT_EQ(r[i]->more(), i + 1 < r.size()) << i;
    ASSERT_NE(r[i]->messages(), nullptr);
    for (const wire::Deliver* m : *r[i]->messages()) EXPECT_EQ(m->server_msg_id()->lo(), next++);
  }
  EXPECT_EQ(next, 100 + kMessages);
  // A limited drain says there is more.
  drain(0, 6, 1, 3);
  settle();
  dp_->read();
  auto limited = responses(0, 6);
  ASSERT_EQ(limited.size(), 1u);
  EXPECT_EQ(limited[0]->messages()->size(), 3u);
  EXPECT_TRUE(limited[0]->more());
}

TEST_F(StoreServiceTest, TooManyDrainsInFlightAreAnsweredBusy) {
  service_options_.max_drains_in_flight_per_worker = 1;
  start_controlplane();
  connect(5);
  append(0, 1, 100, {1});
  settle();
  drain(0, 1, 1);
  drain(0, 2, 1);  // the first one's body read is still on the disk
  drain(1, 3, 1);  // another worker has its own limit
  pump();
  EXPECT_EQ(service().drains_in_flight(0), 1u);
  EXPECT_EQ(service().backlog().drains_in_flight, 2u);  // worker 0's and worker 1's
  settle();
  dp_->read();
  ASSERT_EQ(responses(0, 1).size(), 1u);
  EXPECT_EQ(responses(0, 1)[0]->status(), ipc::DrainStatus::Ok);
  ASSERT_EQ(responses(0, 2).size(), 1u);
  EXPECT_EQ(responses(0, 2)[0]->status(), ipc::DrainStatus::Busy);
  ASSERT_EQ(responses(1, 3).size(), 1u);
  EXPECT_EQ(responses(1, 3)[0]->status(), ipc::DrainStatus::Ok);
  EXPECT_EQ(service().drains_in_flight(0), 0u);
  EXPECT_EQ(service().backlog().drains_in_flight, 0u);
  EXPECT_EQ(service().stats().drains[static_cast<size_t>(ipc::DrainStatus::Busy)], 1u);
  EXPECT_EQ(service().stats().drains[static_cast<size_t>(ipc::DrainStatus::Ok)], 2u);
}

TEST_F(StoreServiceTest, FullRingAndBacklogHoldOutcomesUntilTheDataplaneReads) {
  ipc_options_.ring_capacity_bytes = 4096;
  ipc_options_.backlog_max_records = 2;
  service_options_.max_outcomes_per_record = 1;  // one record per outcome: fills things fast
  start_controlplane();
  connect(5);
  dp_->read();  // the resync pushes
  constexpr uint64_t kAppends = 200;
  for (uint64_t i = 0; i < kAppends; ++i) {
    append(0, i + 1, 1000 + i, {1 + static_cast<uint32_t>(i % 7)});
    if (i % 16 == 15) settle();
  }
  settle();
  // The dataplane has not read: its ring and the server's backlog are full, the rest is held.
  EXPECT_GT(service().held_outcomes(0), 0u);
  EXPECT_GT(service().stats().outcomes_held, 0u);
  // The backlog gauges: outcomes waiting in the service, records in the server's backlog.
  EXPECT_EQ(service().backlog().outcomes_held, service().held_outcomes(0));
  EXPECT_EQ(server().backlog_records_total(), 2u);
  EXPECT_GT(server().backlog_bytes_total(), 0u);
  EXPECT_GT(server().stats().backlogged, 0u);
  const auto until = Clock::now() + kDeadline;
  while (dp_->outcomes(0).size() < kAppends && Clock::now() < until) {
    dp_->read();
    pump();
  }
  auto o = dp_->outcomes(0);
  ASSERT_EQ(o.size(), kAppends);
  for (const auto& [id, outcome] : o) EXPECT_EQ(outcome.status, ipc::AppendStatus::Durable) << id;
  EXPECT_EQ(service().held_outcomes(0), 0u);
  EXPECT_EQ(service().backlog().outcomes_held, 0u);
  EXPECT_EQ(server().backlog_records_total(), 0u);
  EXPECT_EQ(server().backlog_bytes_total(), 0u);
  EXPECT_EQ(service().stats().outcomes_orphaned, 0u);
}

TEST_F(StoreServiceTest, ReconnectGetsAFullResyncAndNoOutcomeOfTheDeadInstance) {
  start_controlplane();
  connect(5);
  EXPECT_EQ(resync_calls_, 1);
  dp_->read();
  for (uint16_t w = 0; w < 2; ++w) {
    ASSERT_EQ(dp_->of_type(w, ipc::Record::SessionKeyPush).size(), 1u);
    ASSERT_EQ(dp_->of_type(w, ipc::Record::ConfigPush).size(), 1u);
    const ipc::ConfigPush* c =
        dp_->of_type(w, ipc::Record::ConfigPush)[0]->envelope()->record_as_ConfigPush();
    EXPECT_EQ(c->revision(), 9u);
    EXPECT_EQ(c->restart_fields()->Get(0)->str(), "dataplane.workers");
  }
  append(0, 1, 100, {1});
  pump();  // taken, not durable
  disconnect();
  EXPECT_EQ(service().pending_appends(), 1u);
  settle();  // durable while no dataplane is there
  EXPECT_EQ(table().queued(dev(1)), 1u);
  EXPECT_EQ(service().held_outcomes(0), 1u);

  // The same instance reconnecting (a socket hiccup, not a restart) still gets it.
  connect(5);
  EXPECT_EQ(resync_calls_, 2);
  dp_->read();
  EXPECT_EQ(dp_->outcomes(0).size(), 1u);

  append(0, 2, 101, {1});
  pump();
  disconnect();
  settle();
  connect(6);  // a restarted dataplane: the old instance's outcome is an orphan
  EXPECT_EQ(resync_calls_, 3);
  dp_->read();
  EXPECT_TRUE(dp_->outcomes(0).empty());
  EXPECT_EQ(dp_->of_type(0, ipc::Record::SessionKeyPush).size(), 1u);
  EXPECT_EQ(service().stats().outcomes_orphaned, 1u);
  EXPECT_EQ(table().queued(dev(1)), 2u);  // durable all the same: the recipient gets it
  // Pushes with nobody connected are refused (the next resync carries the state).
  disconnect();
  EXPECT_EQ(service().pusher().push_revocation(1, 2, std::nullopt, 3).code(),
            absl::StatusCode::kUnavailable);
}

// A dataplane that dies with a StoreAppend still in its ring: the record is read around the
// successor's handshake, made durable, and its outcome never reaches the successor, which reuses
// the same append_id for another message (a false durable would ack the wrong sender).
TEST_F(StoreServiceTest, RecordsLeftByADeadDataplaneNeverAnswerItsSuccessor) {
  start_controlplane();
  connect(5);
  append(0, 1, 100, {1});  // committed to the ring; the loop has not read it
  dp_.reset();             // dies; the control plane notices when the loop next runs
  connect(6);
  append(0, 1, 300, {2});  // the successor's own append 1
  pump();
  dp_->read();
  EXPECT_TRUE(dp_->outcomes(0).empty());
  settle();
  dp_->read();
  auto o = dp_->outcomes(0);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[1].status, ipc::AppendStatus::Durable);
  EXPECT_EQ(o[1].instance, 6u);
  EXPECT_EQ(table().queued(dev(1)), 1u);  // the dead one's message is durable all the same
  EXPECT_EQ(table().queued(dev(2)), 1u);
  EXPECT_EQ(service().stats().outcomes_orphaned, 1u);
  // Its recipient may have logged in to the successor and drained an empty queue before it
  // was durable: the successor is told to drain that device again. Its own append is not
  // kicked from here (it has the outcome and kicks its recipients itself).
  const auto kicks = dp_->of_type(0, ipc::Record::DrainKick);
  ASSERT_EQ(kicks.size(), 1u);
  const ipc::DrainKick* kick = kicks[0]->envelope()->record_as_DrainKick();
  ASSERT_EQ(kick->devices()->size(), 1u);
  EXPECT_EQ(kick->devices()->Get(0)->account().lo(), dev(1).account_lo);
  EXPECT_EQ(kick->devices()->Get(0)->device(), 1u);
  EXPECT_EQ(service().stats().drain_kicks, 1u);
}

TEST_F(StoreServiceTest, PushesReachEveryWorker) {
  start_controlplane();
  connect(5);
  const std::pair<uint64_t, uint64_t> members[] = {{1, 2}, {3, 4}};
  ASSERT_TRUE(service().pusher().push_group_membership(8, 9, 3, members).ok());
  ASSERT_TRUE(service().pusher().push_revocation(1, 2, 7, 1234).ok());
  pump();
  dp_->read();
  for (uint16_t w = 0; w < 2; ++w) {
    auto groups = dp_->of_type(w, ipc::Record::GroupMembershipPush);
    ASSERT_EQ(groups.size(), 1u);
    const ipc::GroupMembershipPush* g = groups[0]->envelope()->record_as_GroupMembershipPush();
    EXPECT_EQ(g->group()->lo(), 9u);
    EXPECT_EQ(g->version(), 3u);
    ASSERT_EQ(g->members()->size(), 2u);
    EXPECT_EQ(g->members()->Get(1)->hi(), 3u);
    auto revs = dp_->of_type(w, ipc::Record::RevocationPush);
    ASSERT_EQ(revs.size(), 1u);
    const ipc::Revocation* r =
        revs[0]->envelope()->record_as_RevocationPush()->revocations()->Get(0);
    EXPECT_EQ(r->account()->lo(), 2u);
    EXPECT_EQ(r->device(), 7u);
    EXPECT_EQ(r->issued_before_ms(), 1234u);
  }
}

// Device lists for routing: each DeviceListRequest is answered on the worker that asked, with
// the source's list (Ok), UnknownAccount or Rejected; changes are pushed to every worker.
TEST_F(StoreServiceTest, DeviceListRequestsAreAnsweredAndChangesPushed) {
  start_controlplane();
  std::map<std::pair<uint64_t, uint64_t>, StoreService::DeviceList> accounts;
  accounts[{0xA, 0xB}] = StoreService::DeviceList{{1, 3}, 7};
  service().set_device_list_source(
      [&](uint64_t hi, uint64_t lo) -> std::optional<StoreService::DeviceList> {
        auto it = accounts.find({hi, lo});
        if (it == accounts.end()) return std::nullopt;
        return it->second;
      });
  connect(5);
  auto request = [&](uint16_t w, uint64_t request_id, std::optional<wire::AccountId> account) {
    auto& b = dp_->b;
    b.Clear();
    ipc::finish_envelope(
        b, dp_->seq[w], ipc::CreateDeviceListRequest(b, request_id, account ? &*account : nullptr));
    put(w, ipc::Record::DeviceListRequest);
  };
  auto answer = [&](uint16_t w, uint64_t request_id) -> const ipc::DeviceListResponse* {
    for (const Got* g : dp_->of_type(w, ipc::Record::DeviceListResponse)) {
      const ipc::DeviceListResponse* r = g->envelope()->record_as_DeviceListResponse();
      if (r->request_id() == request_id) return r;
    }
    return nullptr;
  };
  request(1, 11, wire::AccountId(0xA, 0xB));
  request(0, 12, wire::AccountId(0xA, 0xC));
  request(0, 13, std::nullopt);
  pump();
  dp_->read();
  const ipc::DeviceListResponse* known = answer(1, 11);
  ASSERT_NE(known, nullptr);
  EXPECT_EQ(answer(0, 11), nullptr);  // only the worker that asked gets the answer
  EXPECT_EQ(known->status(), ipc::DeviceListStatus::Ok);
  EXPECT_EQ(known->account()->lo(), 0xBu);
  ASSERT_NE(known->devices(), nullptr);
  EXPECT_EQ(std::vector<uint32_t>(known->devices()->begin(), known->devices()->end()),
            (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(known->version(), 7u);
  EXPECT_EQ(known->dataplane_instance_id(), 5u);
  const ipc::DeviceListResponse* unknown = answer(0, 12);
  ASSERT_NE(unknown, nullptr);
  EXPECT_EQ(unknown->status(), ipc::DeviceListStatus::UnknownAccount);
  const ipc::DeviceListResponse* rejected = answer(0, 13);
  ASSERT_NE(rejected, nullptr);
  EXPECT_EQ(rejected->status(), ipc::DeviceListStatus::Rejected);
  EXPECT_EQ(service().stats().record_errors[static_cast<size_t>(StoreRecordError::kNoAccount)], 1u);
  EXPECT_EQ(service().stats().device_lists[static_cast<size_t>(ipc::DeviceListStatus::Ok)], 1u);

  // Without a source (a control plane that cannot answer) requests are refused, not dropped.
  service().set_device_list_source(nullptr);
  request(1, 14, wire::AccountId(0xA, 0xB));
  pump();
  dp_->read();
  ASSERT_NE(answer(1, 14), nullptr);
  EXPECT_EQ(answer(1, 14)->status(), ipc::DeviceListStatus::Rejected);

  // A change is pushed to every worker.
  const uint32_t devices[] = {3, 4};
  ASSERT_TRUE(service().pusher().push_device_list(0xA, 0xB, devices, 9).ok());
  pump();
  dp_->read();
  for (uint16_t w = 0; w < 2; ++w) {
    auto pushes = dp_->of_type(w, ipc::Record::DeviceListPush);
    ASSERT_EQ(pushes.size(), 1u);
    const ipc::DeviceListPush* push = pushes[0]->envelope()->record_as_DeviceListPush();
    EXPECT_EQ(push->account()->hi(), 0xAu);
    EXPECT_EQ(push->version(), 9u);
    EXPECT_EQ(std::vector<uint32_t>(push->devices()->begin(), push->devices()->end()),
              (std::vector<uint32_t>{3, 4}));
  }

  // The CP -> DP records are refused when a dataplane sends them.
  auto& b = dp_->b;
  b.Clear();
  ipc::finish_envelope(b, dp_->seq[0], ipc::CreateDeviceListPush(b));
  put(0, ipc::Record::DeviceListPush);
  pump();
  EXPECT_EQ(service().stats().record_errors[static_cast<size_t>(StoreRecordError::kUnexpectedType)],
            1u);
}

// Bad records: each is counted under its reason, answered when it asked for an answer, and the
// records after it are still served.
TEST_F(StoreServiceTest, MalformedRecordsAreCountedAndNeverCrash) {
  start_controlplane();
  connect(5);
  struct Case {
    const char* name;
    std::function<void(flatbuffers::FlatBufferBuilder&, uint64_t seq)> build;
    ipc::Record type;
    StoreRecordError error;  // kCount: an envelope-level error, counted by the IpcServer
  };
  const wire::DeviceAddress zero_device(wire::AccountId(1, 2), 0);
  const std::vector<Case> cases = {
      {"append without message",
       [](auto& b, uint64_t seq) {
         const wire::DeviceAddress a = addr(1);
         ipc::finish_envelope(b, seq,
                              ipc::CreateStoreAppend(b, 901, 0, b.CreateVectorOfStructs(&a, 1)));
       },
       ipc::Record::StoreAppend, StoreRecordError::kNoMessage},
      {"append without recipients",
       [](auto& b, uint64_t seq) {
         const wire::ServerMsgId sid = msg_id(1);
         const auto d = wire::CreateDeliver(b, &sid);
         ipc::finish_envelope(b, seq, ipc::CreateStoreAppend(b, 902, d));
       },
       ipc::Record::StoreAppend, StoreRecordError::kNoRecipients},
      {"append to device 0",
       [&](auto& b, uint64_t seq) {
         const wire::ServerMsgId sid = msg_id(1);
         const auto d = wire::CreateDeliver(b, &sid);
         ipc::finish_envelope(
             b, seq, ipc::CreateStoreAppend(b, 903, d, b.CreateVectorOfStructs(&zero_device, 1)));
       },
       ipc::Record::StoreAppend, StoreRecordError::kBadDevice},
      {"cancel without devices",
       [](auto& b, uint64_t seq) { ipc::finish_envelope(b, seq, ipc::CreateStoreCancel(b, 1)); },
       ipc::Record::StoreCancel, StoreRecordError::kNoRecipients},
      {"ack without device",
       [](auto& b, uint64_t seq) { ipc::finish_envelope(b, seq, ipc::CreateStoreAck(b)); },
       ipc::Record::StoreAck, StoreRecordError::kNoDevice},
      {"drain without device",
       [](auto& b, uint64_t seq) { ipc::finish_envelope(b, seq, ipc::CreateDrainRequest(b, 904)); },
       ipc::Record::DrainRequest, StoreRecordError::kNoDevice},
      {"AppendDurable from the dataplane",
       [](auto& b, uint64_t seq) {
         ipc::finish_envelope(
             b, seq,
             ipc::CreateAppendDurable(
                 b, flatbuffers::Offset<flatbuffers::Vector<const ipc::AppendOutcome*>>()));
       },
       ipc::Record::AppendDurable, StoreRecordError::kUnexpectedType},
      {"ConfigPush from the dataplane",
       [](auto& b, uint64_t seq) { ipc::finish_envelope(b, seq, ipc::CreateConfigPush(b, 1)); },
       ipc::Record::ConfigPush, StoreRecordError::kUnexpectedType},
  };
  StoreServiceStats expected{};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    dp_->b.Clear();
    c.build(dp_->b, dp_->seq[0]);
    put(0, c.type);
    pump();
    ++expected.record_errors[static_cast<size_t>(c.error)];
    EXPECT_EQ(service().stats().record_errors[static_cast<size_t>(c.error)],
              expected.record_errors[static_cast<size_t>(c.error)]);
  }
  // Envelope-level garbage never reaches the service: the server counts it.
  const uint64_t bad_before = [&] {
    uint64_t n = 0;
    for (uint64_t v : server().stats().bad_records) n += v;
    return n;
  }();
  const std::vector<std::vector<uint8_t>> garbage = {
      {}, {1, 2, 3}, std::vector<uint8_t>(64, 0xFF), std::vector<uint8_t>(200, 0)};
  for (const auto& g : garbage) {
    const shm::Reservation r =
        dp_->out[0].reserve(static_cast<uint32_t>(ipc::Record::StoreAppend), g.size());
    ASSERT_EQ(r.status, shm::RingStatus::kOk);
    if (!g.empty()) std::memcpy(r.payload.data(), g.data(), g.size());
    (void)dp_->out[0].commit();
  }
  // An unknown (newer) record type number.
  {
    const shm::Reservation r = dp_->out[0].reserve(200, 8);
    ASSERT_EQ(r.status, shm::RingStatus::kOk);
    (void)dp_->out[0].commit();
  }
  pump();
  uint64_t bad_after = 0;
  for (uint64_t v : server().stats().bad_records) bad_after += v;
  EXPECT_EQ(bad_after - bad_before, garbage.size() + 1);

  // Still serving: a good append after all that is durable, and the refused appends and the
  // bad drain were answered.
  append(0, 1, 100, {1});
  settle();
  dp_->read();
  auto o = dp_->outcomes(0);
  EXPECT_EQ(o[1].status, ipc::AppendStatus::Durable);
  for (uint64_t id : {901, 902, 903}) EXPECT_EQ(o[id].status, ipc::AppendStatus::Rejected) << id;
  ASSERT_EQ(responses(0, 904).size(), 1u);
  EXPECT_EQ(responses(0, 904)[0]->status(), ipc::DrainStatus::Rejected);
}

}  // namespace
}  // namespace herald::controlplane

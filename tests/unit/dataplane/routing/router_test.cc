// WorkerRouter end to end on one thread: two workers (a WorkerMesh between them, one shared
// Directory), each with its real StoreClient against the real control-plane side in-process
// (IpcServer + StoreService + QueueTable on a SimDisk whose syncs complete only when the test
// steps it), and fake sessions that record frames and completions. Deadlines are hang guards.
#include "dataplane/routing/router.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "controlplane/ipc/ipc_server.h"
#include "controlplane/ipc/store_service.h"
#include "controlplane/storage/sim_disk.h"
#include "platform/ipc/client.h"
#include "tests/unit/controlplane/ipc/inprocess_store.h"

namespace herald::dataplane::routing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(30);
constexpr uint64_t kInstance = 77;
constexpr uint16_t kNode = 3;

uint64_t now_ns() {
  return clock::monotonic_ns();
}

// Accounts: A has devices 1 and 2, B has 1, 2 and 3, C has only 1.
const wire::AccountId kA(0xA, 1), kB(0xB, 2), kC(0xC, 3);
wire::DeviceAddress dev(const wire::AccountId& a, uint32_t d) {
  return {a, d};
}
storage::DeviceKey key(const wire::AccountId& a, uint32_t d) {
  return {a.hi(), a.lo(), d};
}

struct Completion {
  uint64_t client_msg_id = 0;
  std::optional<wire::ServerMsgId> id;
  wire::ErrorCode error = wire::ErrorCode::Unspecified;
};

// A session as the router sees it: records what it is sent; closing detaches, as Session does.
class FakeSession final : public SessionPort {
 public:
  FakeSession(Router& router, ConnectionId c, wire::DeviceAddress d)
      : router_(router), connection_(c), device_(d) {}
  ConnectionId connection() const override { return connection_; }
  const wire::DeviceAddress& device() const override { return device_; }
  uint16_t version() const override { return 1; }
  bool send_frame(std::span<const uint8_t> frame) override {
    if (!open) return false;
    frames.emplace_back(frame.begin(), frame.end());
    return true;
  }
  uint32_t queued_bytes() const override { return queued; }
  void complete_message(uint64_t client_msg_id, const wire::ServerMsgId* id, uint64_t,
                        wire::ErrorCode error) override {
    completions.push_back({client_msg_id, id ? std::optional(*id) : std::nullopt, error});
  }
  void close_with_error(wire::ErrorCode code, std::string_view) override {
    if (!open) return;
    open = false;
    closed_with = code;
    router_.detach(*this);
  }
  void close() { close_with_error(wire::ErrorCode::Unspecified, ""); }

  std::vector<const wire::Frame*> of(wire::Payload type) const {
    std::vector<const wire::Frame*> v;
    for (const auto& f : frames) {
      const auto* frame = flatbuffers::GetSizePrefixedRoot<wire::Frame>(f.data());
      if (frame->payload_type() == type) v.push_back(frame);
    }
    return v;
  }
  // ServerMsgId.lo of every Deliver received, in order.
  std::vector<uint64_t> delivered() const {
    std::vector<uint64_t> v;
    for (const wire::Frame* f : of(wire::Payload::Deliver))
      v.push_back(f->payload_as_Deliver()->server_msg_id()->lo());
    return v;
  }

  bool open = true;
  uint32_t queued = 0;
  std::optional<wire::ErrorCode> closed_with;
  std::vector<std::vector<uint8_t>> frames;
  std::vector<Completion> completions;

 private:
  Router& router_;
  ConnectionId connection_;
  wire::DeviceAddress device_;
};

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herald-router-XXXXXX";
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
    client_options_.instance_id = kInstance;
    client_options_.max_pending_appends = 64;
    client_options_.max_held_records = 64;
    client_options_.max_drains = 8;
    client_options_.heartbeat_interval_ns = 0;
    client_options_.drain_retry_min_ns = 100'000;
    client_options_.drain_retry_max_ns = 2'000'000;
    router_options_.node_id = kNode;
    router_options_.workers = 2;
    router_options_.unix_offset_ms = 1'700'000'000'000;
    router_options_.dedup = {.window_per_device = 64, .max_entries = 1024};
    router_options_.device_lists.max_accounts = 16;
    router_options_.device_lists.instance_id = kInstance;
    router_options_.drain_window_messages = 4;
    accounts_[{kA.hi(), kA.lo()}] = {{1, 2}, 1};
    accounts_[{kB.hi(), kB.lo()}] = {{1, 2, 3}, 1};
    accounts_[{kC.hi(), kC.lo()}] = {{1}, 1};
    auto loop = uring::EventLoop::create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    disk_ = std::make_unique<storage::SimDisk>(storage::SimDiskOptions{});
  }

  void TearDown() override {
    sessions_.clear();
    routers_[0].reset();
    routers_[1].reset();
    stores_[0].reset();
    stores_[1].reset();
    link_.reset();
    stop_controlplane();
    loop_.reset();
    std::filesystem::remove_all(dir_);
  }

  void start_controlplane() {
    store_.emplace(*loop_, *disk_);
    store_->start(
        {table_options_, log_options_, service_options_, ipc_options_},
        [this](controlplane::StoreService& service) {
          service.set_device_list_source(
              [this](uint64_t hi,
                     uint64_t lo) -> std::optional<controlplane::StoreService::DeviceList> {
                auto it = accounts_.find({hi, lo});
                if (it == accounts_.end()) return std::nullopt;
                return it->second;
              });
        });
  }

  void stop_controlplane() {
    if (store_) store_->crash();
  }

  void connect() {
    std::optional<absl::StatusOr<ipc::ControlPlaneLink>> link;
    std::atomic<bool> done{false};
    std::thread t([&] {
      link.emplace(ipc::connect_to_controlplane({.socket_path = ipc_options_.socket_path,
                                                 .workers = ipc_options_.workers,
                                                 .instance_id = kInstance,
                                                 .timeout_ms = 10000}));
      done = true;
    });
    const auto until = Clock::now() + kDeadline;
    while (!(done && server().dataplane_connected()) && Clock::now() < until) {
      loop_->run_once(1'000'000);
    }
    t.join();
    ASSERT_TRUE(link.has_value() && link->ok()) << (link ? link->status().ToString() : "none");
    link_ = std::make_unique<ipc::ControlPlaneLink>(std::move(**link));
  }

  void attach_stores() {
    for (uint16_t w = 0; w < 2; ++w) {
      auto link = make_store_link(*link_, w);
      ASSERT_TRUE(link.ok()) << link.status();
      stores_[w]->attach(std::move(*link));
    }
  }

  // The control plane, the mesh, the directory and both workers.
  void start() {
    start_controlplane();
    connect();
    auto mesh = WorkerMesh::create({.workers = 2});
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = std::move(*mesh);
    directory_ = std::make_unique<Directory>(DirectoryOptions{.max_devices = 64});
    for (uint16_t w = 0; w < 2; ++w) {
      StoreClientOptions o = client_options_;
      o.worker = w;
      StoreClientCallbacks callbacks;
      callbacks.on_outcome = [this, w](const StoreOutcome& x) { routers_[w]->on_store_outcome(x); };
      callbacks.on_drain = [this, w](const DrainBatch& b) { routers_[w]->on_drain_batch(b); };
      stores_[w] = std::make_unique<StoreClient>(o, std::move(callbacks));
      stores_[w]->set_push_handler(ipc::Record::DeviceListResponse, [this, w](const auto& e) {
        routers_[w]->on_device_list_response(*e.record_as_DeviceListResponse());
      });
      stores_[w]->set_push_handler(ipc::Record::DeviceListPush, [this, w](const auto& e) {
        routers_[w]->on_device_list_push(*e.record_as_DeviceListPush());
      });
      WorkerRouterOptions ro = router_options_;
      ro.worker = w;
      routers_[w] = std::make_unique<WorkerRouter>(ro, clock::Clock::monotonic(), *directory_,
                                                   *stores_[w], mesh_->endpoint(w));
    }
    attach_stores();
  }

  FakeSession& login(uint16_t w, const wire::AccountId& a, uint32_t d, uint32_t queued = 0) {
    auto s = std::make_unique<FakeSession>(*routers_[w], next_connection_++, dev(a, d));
    FakeSession& ref = *s;
    ref.queued = queued;
    sessions_.push_back(std::move(s));
    routers_[w]->attach(ref);
    if (settle_logins_) pump();  // the dedup hand-over: Messages wait for the other worker
    return ref;
  }
  WorkerRouter& router_of(const FakeSession& s) {
    return *routers_[directory_->find(s.device()).value_or(DeviceLocation{}).worker];
  }

  // One loop turn of both workers and the control plane (the disk is not stepped).
  size_t turn() {
    size_t n = 0;
    for (uint16_t w = 0; w < 2; ++w) {
      n += routers_[w]->poll(now_ns());
      n += stores_[w]->poll(now_ns());
      n += mesh_->endpoint(w).flush();
    }
    return n + loop_->run_once(500'000);
  }
  void pump() {
    for (int idle = 0, rounds = 0; idle < 3 && rounds < 300; ++rounds) {
      idle = turn() == 0 ? idle + 1 : 0;
    }
  }
  void settle() {
    for (int i = 0; i < 4; ++i) {
      pump();
      disk_->run_until_idle();
    }
    pump();
  }
  template <typename Pred>
  void run_until(Pred done) {
    const auto until = Clock::now() + kDeadline;
    while (!done() && Clock::now() < until) {
      turn();
      disk_->run_until_idle();
    }
    ASSERT_TRUE(done());
  }

  // Sends a Message from `s` (to one of ToDevice / ToAccount / ToGroup).
  void send(FakeSession& s, uint64_t client_msg_id, const wire::DeviceAddress* to_device,
            const wire::AccountId* to_account = nullptr, const wire::GroupId* to_group = nullptr,
            wire::MessageFlags flags = wire::MessageFlags::NONE) {
    flatbuffers::FlatBufferBuilder b;
    wire::Recipient type;
    flatbuffers::Offset<void> to;
    if (to_device) {
      type = wire::Recipient::ToDevice;
      to = wire::CreateToDevice(b, to_device).Union();
    } else if (to_account) {
      type = wire::Recipient::ToAccount;
      to = wire::CreateToAccount(b, to_account).Union();
    } else {
      type = wire::Recipient::ToGroup;
      to = wire::CreateToGroup(b, to_group).Union();
    }
    const uint8_t body[] = {1, 2, 3, static_cast<uint8_t>(client_msg_id)};
    b.Finish(wire::CreateMessage(b, type, to, client_msg_id, b.CreateVector(body, sizeof body), 5,
                                 1000 + client_msg_id, flags));
    router_of(s).on_message(s, *flatbuffers::GetRoot<wire::Message>(b.GetBufferPointer()));
  }
  void ack(FakeSession& s, const std::vector<uint64_t>& lows) {
    std::vector<wire::ServerMsgId> ids;
    for (uint64_t lo : lows) {
      for (const wire::Frame* f : s.of(wire::Payload::Deliver)) {
        if (f->payload_as_Deliver()->server_msg_id()->lo() == lo)
          ids.push_back(*f->payload_as_Deliver()->server_msg_id());
      }
    }
    ASSERT_EQ(ids.size(), lows.size());
    flatbuffers::FlatBufferBuilder b;
    b.Finish(wire::CreateDeliveryAck(b, b.CreateVectorOfStructs(ids)));
    router_of(s).on_delivery_ack(s, *flatbuffers::GetRoot<wire::DeliveryAck>(b.GetBufferPointer()));
  }
  // A Receipt from `s` to `to` about the messages `about` (ServerMsgId.lo values).
  void receipt(FakeSession& s, const wire::AccountId& to, wire::ReceiptKind kind,
               const std::vector<uint64_t>& about) {
    std::vector<wire::ServerMsgId> ids;
    for (uint64_t lo : about) ids.emplace_back(lo << 16, lo);
    flatbuffers::FlatBufferBuilder b;
    b.Finish(wire::CreateReceipt(b, kind, b.CreateVectorOfStructs(ids), &to, nullptr, 4242));
    router_of(s).on_receipt(s, *flatbuffers::GetRoot<wire::Receipt>(b.GetBufferPointer()));
  }
  // Acks every Deliver and stored Receipt `s` got, as a client does.
  void ack_queued(FakeSession& s) {
    std::vector<wire::ServerMsgId> ids;
    for (const auto& bytes : s.frames) {
      const auto* f = flatbuffers::GetSizePrefixedRoot<wire::Frame>(bytes.data());
      if (const auto* d = f->payload_as_Deliver()) ids.push_back(*d->server_msg_id());
      if (const auto* r = f->payload_as_Receipt(); r != nullptr && r->stored())
        ids.push_back(*r->server_msg_id());
    }
    flatbuffers::FlatBufferBuilder b;
    b.Finish(wire::CreateDeliveryAck(b, b.CreateVectorOfStructs(ids)));
    router_of(s).on_delivery_ack(s, *flatbuffers::GetRoot<wire::DeliveryAck>(b.GetBufferPointer()));
  }
  // What `s` received, in order: "D<lo>" for a Deliver (its id), "R<kind>:<about lo>" for a
  // Receipt (stored ones marked "*").
  static std::vector<std::string> received(const FakeSession& s) {
    std::vector<std::string> v;
    for (const auto& bytes : s.frames) {
      const auto* f = flatbuffers::GetSizePrefixedRoot<wire::Frame>(bytes.data());
      if (const auto* d = f->payload_as_Deliver()) {
        v.push_back("D" + std::to_string(d->server_msg_id()->lo()));
      } else if (const auto* r = f->payload_as_Receipt()) {
        std::string e =
            std::string(r->stored() ? "R*" : "R") + wire::EnumNameReceiptKind(r->kind());
        for (const wire::ServerMsgId* id : *r->message_ids()) e += ":" + std::to_string(id->lo());
        v.push_back(e);
      }
    }
    return v;
  }

  void push_group(const wire::GroupId& g, std::vector<wire::AccountId> members) {
    for (uint16_t w = 0; w < 2; ++w) {
      flatbuffers::FlatBufferBuilder b;
      b.Finish(ipc::CreateGroupMembershipPush(b, &g, 1, b.CreateVectorOfStructs(members)));
      routers_[w]->on_group_push(
          *flatbuffers::GetRoot<ipc::GroupMembershipPush>(b.GetBufferPointer()));
    }
  }

  std::string dir_;
  controlplane::IpcServerOptions ipc_options_;
  controlplane::StoreServiceOptions service_options_;
  storage::QueueTableOptions table_options_;
  storage::LogOptions log_options_;
  StoreClientOptions client_options_;
  WorkerRouterOptions router_options_;
  std::map<std::pair<uint64_t, uint64_t>, controlplane::StoreService::DeviceList> accounts_;
  std::unique_ptr<uring::EventLoop> loop_;
  std::unique_ptr<storage::SimDisk> disk_;
  std::optional<controlplane::testing::InProcessStore> store_;
  storage::QueueTable& table() { return store_->table(); }
  controlplane::IpcServer& server() { return store_->server(); }
  std::unique_ptr<ipc::ControlPlaneLink> link_;
  std::unique_ptr<WorkerMesh> mesh_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<StoreClient> stores_[2];
  std::unique_ptr<WorkerRouter> routers_[2];
  std::vector<std::unique_ptr<FakeSession>> sessions_;
  ConnectionId next_connection_ = 100;
  bool settle_logins_ = true;
};

TEST_F(RouterTest, OneToOneOnlineAckedByTheRecipientBeforeTheStoreOutcome) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  FakeSession& b1 = login(1, kB, 1);  // on the other worker: delivery and ack cross the mesh
  const wire::DeviceAddress to = dev(kB, 1);
  send(c1, 1, &to);
  pump();  // the disk is not stepped: nothing is durable
  ASSERT_EQ(b1.delivered().size(), 1u);
  EXPECT_TRUE(c1.completions.empty());
  const auto* d = b1.of(wire::Payload::Deliver)[0]->payload_as_Deliver();
  EXPECT_EQ(d->sender()->account().lo(), kC.lo());
  EXPECT_EQ(d->body()->size(), 4u);
  EXPECT_EQ(d->server_msg_id()->hi() & 0xFFFF, kNode);
  EXPECT_EQ(d->client_msg_id(), 1u);

  ack(b1, b1.delivered());
  pump();
  ASSERT_EQ(c1.completions.size(), 1u);  // every recipient acked: ServerAck, before any sync
  EXPECT_EQ(c1.completions[0].error, wire::ErrorCode::Unspecified);
  EXPECT_EQ(c1.completions[0].id->lo(), b1.delivered()[0]);
  EXPECT_EQ(routers_[1]->stats().device_acks_forwarded, 1u);
  EXPECT_EQ(routers_[0]->stats().acks_all_devices, 1u);
  settle();
  EXPECT_EQ(table().queued(key(kB, 1)), 0u);  // cancelled: never queued

  // Not acked: the ServerAck waits for the sync; the later ack deletes the queued entry.
  send(c1, 2, &to);
  pump();
  ASSERT_EQ(b1.delivered().size(), 2u);
  EXPECT_EQ(c1.completions.size(), 1u);
  settle();
  ASSERT_EQ(c1.completions.size(), 2u);
  EXPECT_EQ(c1.completions[1].id->lo(), b1.delivered()[1]);
  EXPECT_EQ(routers_[0]->stats().acks_durable, 1u);
  EXPECT_EQ(table().queued(key(kB, 1)), 1u);
  ack(b1, {b1.delivered()[1]});
  settle();
  EXPECT_EQ(table().queued(key(kB, 1)), 0u);
}

TEST_F(RouterTest, OfflineMessagesDrainInOrderWithFlowControl) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kB, 3);
  for (uint64_t i = 1; i <= 6; ++i) send(c1, i, &to);
  run_until([&] { return c1.completions.size() == 6; });
  std::vector<uint64_t> acked;
  for (const Completion& c : c1.completions) {
    ASSERT_EQ(c.error, wire::ErrorCode::Unspecified);
    acked.push_back(c.id->lo());
  }
  EXPECT_EQ(table().queued(key(kB, 3)), 6u);
  EXPECT_EQ(routers_[0]->stats().push_hints, 6u);  // B3 was offline

  FakeSession& b3 = login(1, kB, 3);
  settle();
  // The window: 4 Delivers, then nothing more until the device acks.
  ASSERT_EQ(b3.delivered().size(), 4u);
  EXPECT_EQ(b3.delivered(), std::vector<uint64_t>(acked.begin(), acked.begin() + 4));
  const auto* d = b3.of(wire::Payload::Deliver)[0]->payload_as_Deliver();
  ASSERT_NE(d->body(), nullptr);
  EXPECT_EQ(d->body()->Get(3), 1u);   // the stored body came back
  EXPECT_EQ(d->client_msg_id(), 1u);  // and the sender's id, for the client's own dedup
  ack(b3, {acked[0], acked[1]});
  settle();
  EXPECT_EQ(b3.delivered(), acked);  // the rest, in order, no repeat
  EXPECT_EQ(table().queued(key(kB, 3)), 4u);
  ack(b3, {acked[2], acked[3], acked[4], acked[5]});
  settle();
  EXPECT_EQ(table().queued(key(kB, 3)), 0u);
  EXPECT_EQ(b3.delivered(), acked);
}

// The race the loadgen's kill -9 runs found: a message for an offline device is appended; the
// device logs in and drains before that append is durable (the store reads only durable
// entries: empty); the append turns durable. Without a kick the message waited for the
// device's next login. Both placements: the device on the sender's worker, and on the other.
TEST_F(RouterTest, AMessageDurableAfterTheRecipientsEmptyDrainIsDrainedAtOnce) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  for (uint16_t recipient_worker : {0, 1}) {
    SCOPED_TRACE(recipient_worker);
    const uint32_t device = 3 - recipient_worker;  // B's devices are 1, 2, 3
    const wire::DeviceAddress to = dev(kB, device);
    const uint64_t client_msg_id = 10 + recipient_worker;
    send(c1, client_msg_id, &to);
    pump();  // the append is on its way; the disk is not stepped: not durable
    FakeSession& b = login(recipient_worker, kB, device);
    pump();  // its drain comes back empty
    ASSERT_TRUE(b.delivered().empty());
    const uint64_t kicks = routers_[recipient_worker]->stats().drain_kicks_restarted;
    run_until([&] { return !b.delivered().empty(); });  // durable now: kicked, drained
    EXPECT_EQ(routers_[recipient_worker]->stats().drain_kicks_restarted, kicks + 1);
    EXPECT_EQ(b.delivered().size(), 1u);
    EXPECT_EQ(b.of(wire::Payload::Deliver)[0]->payload_as_Deliver()->client_msg_id(),
              client_msg_id);
  }
  EXPECT_EQ(routers_[0]->stats().drain_kicks_sent, 1u);  // the second one crossed the mesh
}

TEST_F(RouterTest, ADrainPausesOnAFullSendQueueAndSurvivesAReplacedSession) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kB, 3);
  for (uint64_t i = 1; i <= 3; ++i) send(c1, i, &to);
  run_until([&] { return c1.completions.size() == 3; });

  // An older session of B3 on the same worker is replaced while the new one logs in: the old
  // one's detach (inside attach) must not end the new session's drain.
  FakeSession& old = login(1, kB, 3, router_options_.drain_queue_bytes + 1);  // never drains
  FakeSession& b3 = login(1, kB, 3);
  EXPECT_EQ(old.closed_with, wire::ErrorCode::SessionReplaced);
  settle();
  EXPECT_EQ(b3.delivered().size(), 3u);

  // A session whose send queue is over drain_queue_bytes gets nothing until on_writable.
  FakeSession& newer = login(1, kB, 3, router_options_.drain_queue_bytes + 1);
  EXPECT_EQ(b3.closed_with, wire::ErrorCode::SessionReplaced);
  settle();
  EXPECT_TRUE(newer.delivered().empty());
  newer.queued = 0;
  routers_[1]->on_writable(newer);
  settle();
  EXPECT_EQ(newer.delivered(), b3.delivered());  // nothing was acked: all again, in order
}

TEST_F(RouterTest, ToAccountReachesEveryDeviceAndTheSendersOtherDevices) {
  start();
  FakeSession& a1 = login(0, kA, 1);  // A2 offline
  FakeSession& b1 = login(0, kB, 1);
  FakeSession& b2 = login(1, kB, 2);  // B3 offline
  send(a1, 9, nullptr, &kB);
  pump();
  EXPECT_GE(routers_[0]->stats().held_for_device_lists, 1u);  // B's and A's lists were asked
  ASSERT_EQ(b1.delivered().size(), 1u);
  ASSERT_EQ(b2.delivered(), b1.delivered());
  EXPECT_TRUE(a1.delivered().empty());  // never to the sending device
  ack(b1, b1.delivered());
  ack(b2, b2.delivered());
  pump();
  EXPECT_TRUE(a1.completions.empty());  // B3 and A2 have not acked: wait for the store
  settle();
  ASSERT_EQ(a1.completions.size(), 1u);
  EXPECT_EQ(a1.completions[0].error, wire::ErrorCode::Unspecified);
  EXPECT_EQ(table().queued(key(kB, 3)), 1u);
  EXPECT_EQ(table().queued(key(kA, 2)), 1u);  // the sender's copy
  EXPECT_EQ(table().queued(key(kB, 1)), 0u);
  EXPECT_EQ(table().queued(key(kB, 2)), 0u);

  // An unknown account.
  const wire::AccountId nobody(0xDEAD, 1);
  send(a1, 10, nullptr, &nobody);
  run_until([&] { return a1.completions.size() == 2; });
  EXPECT_EQ(a1.completions[1].error, wire::ErrorCode::RecipientNotFound);
  // A device the account does not have.
  const wire::DeviceAddress no_device = dev(kB, 9);
  send(a1, 11, &no_device);
  ASSERT_EQ(a1.completions.size(), 3u);  // B's list is cached: answered at once
  EXPECT_EQ(a1.completions[2].error, wire::ErrorCode::RecipientNotFound);
  EXPECT_EQ(routers_[0]->stats().errors_recipient_not_found, 2u);
}

TEST_F(RouterTest, GroupFanOutAndNotGroupMember) {
  start();
  const wire::GroupId g(0x6, 0x7);
  push_group(g, {kA, kC});
  FakeSession& c1 = login(0, kC, 1);
  FakeSession& a1 = login(1, kA, 1);
  FakeSession& b1 = login(1, kB, 1);
  send(c1, 1, nullptr, nullptr, &g);
  pump();
  EXPECT_EQ(a1.delivered().size(), 1u);
  EXPECT_TRUE(b1.delivered().empty());
  EXPECT_EQ(a1.of(wire::Payload::Deliver)[0]->payload_as_Deliver()->to_type(),
            wire::Recipient::ToGroup);
  settle();
  ASSERT_EQ(c1.completions.size(), 1u);
  EXPECT_EQ(c1.completions[0].error, wire::ErrorCode::Unspecified);
  EXPECT_EQ(table().queued(key(kA, 2)), 1u);

  send(b1, 2, nullptr, nullptr, &g);
  ASSERT_EQ(b1.completions.size(), 1u);
  EXPECT_EQ(b1.completions[0].error, wire::ErrorCode::NotGroupMember);
  const wire::GroupId unknown(0x6, 0x8);
  send(b1, 3, nullptr, nullptr, &unknown);
  ASSERT_EQ(b1.completions.size(), 2u);
  EXPECT_EQ(b1.completions[1].error, wire::ErrorCode::RecipientNotFound);
}

TEST_F(RouterTest, AResendGetsTheSameServerAckAndIsDeliveredOnce) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kB, 3);
  send(c1, 42, &to);
  pump();
  ASSERT_TRUE(c1.completions.empty());
  // The sender reconnects before its ServerAck and resends.
  c1.close();
  FakeSession& again = login(0, kC, 1);
  send(again, 42, &to);
  EXPECT_EQ(routers_[0]->stats().resends_joined, 1u);
  settle();
  ASSERT_EQ(again.completions.size(), 1u);
  const wire::ServerMsgId first = *again.completions[0].id;
  EXPECT_EQ(table().queued(key(kB, 3)), 1u);
  // Once more after the ack: answered at once, nothing stored.
  send(again, 42, &to);
  ASSERT_EQ(again.completions.size(), 2u);
  EXPECT_TRUE(message_id_equal(*again.completions[1].id, first));
  settle();
  EXPECT_EQ(table().queued(key(kB, 3)), 1u);
  EXPECT_EQ(routers_[0]->stats().resends_acked, 1u);
}

TEST_F(RouterTest, DedupEntriesFollowTheDeviceToAnotherWorker) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kB, 3);
  send(c1, 42, &to);
  send(c1, 43, &to);
  pump();
  ASSERT_TRUE(c1.completions.empty());  // both pending on worker 0

  // The device reconnects on worker 1 and resends at once: held until worker 0 handed its
  // entries over (worker 0 also closes the replaced session).
  settle_logins_ = false;
  FakeSession& moved = login(1, kC, 1);
  send(moved, 42, &to);
  EXPECT_TRUE(moved.completions.empty());
  EXPECT_EQ(routers_[1]->stats().held_for_handover, 1u);
  pump();
  EXPECT_EQ(c1.closed_with, wire::ErrorCode::SessionReplaced);
  EXPECT_EQ(routers_[1]->stats().resends_joined_remote, 1u);
  settle();  // worker 0 gets the outcomes and forwards them
  ASSERT_EQ(moved.completions.size(), 1u);
  EXPECT_EQ(moved.completions[0].error, wire::ErrorCode::Unspecified);
  EXPECT_EQ(table().queued(key(kB, 3)), 2u);  // stored once each
  // 43 was acked meanwhile (the outcome followed the entry): answered at once, same id.
  send(moved, 43, &to);
  ASSERT_EQ(moved.completions.size(), 2u);
  EXPECT_EQ(moved.completions[1].error, wire::ErrorCode::Unspecified);
  EXPECT_EQ(routers_[1]->stats().resends_acked, 1u);

  // The session leaves first, then the device logs in on worker 0 (no replacement): the
  // entries are still asked for and found.
  moved.close();
  FakeSession& back = login(0, kC, 1);
  pump();
  send(back, 42, &to);
  ASSERT_EQ(back.completions.size(), 1u);
  EXPECT_TRUE(message_id_equal(*back.completions[0].id, *moved.completions[0].id));
  settle();
  EXPECT_EQ(table().queued(key(kB, 3)), 2u);
  EXPECT_GE(routers_[0]->stats().handover_records_in, 2u);
}

TEST_F(RouterTest, ALoginStopsWaitingForAWorkerThatDoesNotAnswer) {
  router_options_.handover_timeout_ns = 20'000'000;
  start();
  FakeSession& b1 = login(0, kB, 1);
  const wire::DeviceAddress to = dev(kC, 1);
  send(b1, 1, &to);  // caches the lists on worker 0 (worker 1 asks for its own)
  settle_logins_ = false;
  FakeSession& c1 = login(1, kC, 1);
  const wire::DeviceAddress to_b1 = dev(kB, 1);
  send(c1, 5, &to_b1);
  ASSERT_TRUE(c1.completions.empty());
  // Only worker 1 runs: worker 0 never reads the query.
  const auto until = Clock::now() + kDeadline;
  while (c1.completions.empty() && Clock::now() < until) {
    (void)routers_[1]->poll(now_ns());
    (void)stores_[1]->poll(now_ns());
    (void)mesh_->endpoint(1).flush();
    loop_->run_once(500'000);
    disk_->run_until_idle();
  }
  ASSERT_EQ(c1.completions.size(), 1u);
  EXPECT_EQ(routers_[1]->stats().handover_timeouts, 1u);
  // The late answer changes nothing.
  settle();
  EXPECT_EQ(c1.completions.size(), 1u);
}

TEST_F(RouterTest, ARefusedDrainIsAskedAgain) {
  client_options_.max_drains = 1;
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress b3 = dev(kB, 3), b2 = dev(kB, 2);
  send(c1, 1, &b3);
  send(c1, 2, &b2);
  run_until([&] { return c1.completions.size() == 2; });
  settle_logins_ = false;
  FakeSession& s3 = login(1, kB, 3);
  FakeSession& s2 = login(1, kB, 2);  // the store client takes one drain at a time
  EXPECT_GE(routers_[1]->stats().drains_refused, 1u);
  run_until([&] { return s3.delivered().size() == 1 && s2.delivered().size() == 1; });
}

TEST_F(RouterTest, ANewerLoginReplacesTheOlderSessionOnEitherWorker) {
  start();
  FakeSession& first = login(0, kA, 1);
  FakeSession& second = login(0, kA, 1);
  EXPECT_EQ(first.closed_with, wire::ErrorCode::SessionReplaced);
  EXPECT_FALSE(second.closed_with.has_value());
  FakeSession& third = login(1, kA, 1);
  pump();
  EXPECT_EQ(second.closed_with, wire::ErrorCode::SessionReplaced);
  EXPECT_EQ(routers_[0]->stats().mesh_closes, 1u);
  EXPECT_EQ(routers_[0]->sessions(), 0u);
  ASSERT_TRUE(directory_->find(dev(kA, 1)).has_value());
  EXPECT_EQ(directory_->find(dev(kA, 1))->connection, third.connection());
  // Messages now reach the newest session only.
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kA, 1);
  send(c1, 1, &to);
  pump();
  EXPECT_EQ(third.delivered().size(), 1u);
  EXPECT_TRUE(second.delivered().empty());
}

TEST_F(RouterTest, PendingMessagesAndRecipientsAreBoundedAtTheirLimits) {
  router_options_.max_pending_messages = 2;
  router_options_.max_recipients = 3;
  start();
  FakeSession& c1 = login(0, kC, 1);
  FakeSession& a1 = login(0, kA, 1);
  const wire::DeviceAddress to = dev(kB, 3);
  send(c1, 1, &to);
  send(c1, 2, &to);  // two pending (nothing is durable until the disk is stepped)
  send(c1, 3, &to);  // one over: refused at once, nothing stored
  ASSERT_EQ(c1.completions.size(), 1u);
  EXPECT_EQ(c1.completions[0].client_msg_id, 3u);
  EXPECT_EQ(c1.completions[0].error, wire::ErrorCode::Overloaded);
  settle();
  ASSERT_EQ(c1.completions.size(), 3u);
  EXPECT_EQ(table().queued(key(kB, 3)), 2u);
  send(c1, 3, &to);  // room again: the refused id is taken anew
  run_until([&] { return c1.completions.size() == 4; });
  EXPECT_EQ(c1.completions[3].error, wire::ErrorCode::Unspecified);

  // B's three devices are exactly max_recipients; A's other device makes four.
  send(c1, 4, nullptr, &kB);
  run_until([&] { return c1.completions.size() == 5; });
  EXPECT_EQ(c1.completions[4].error, wire::ErrorCode::Unspecified);
  send(a1, 1, nullptr, &kB);
  run_until([&] { return a1.completions.size() == 1; });
  EXPECT_EQ(a1.completions[0].error, wire::ErrorCode::InvalidRequest);
  EXPECT_EQ(routers_[0]->stats().errors_invalid, 1u);
  EXPECT_EQ(routers_[0]->stats().errors_overloaded, 1u);
}

TEST_F(RouterTest, AFullQueueIsAnErrorForTheSender) {
  table_options_.max_queued_messages_per_device = 1;
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kB, 3);
  send(c1, 1, &to);
  send(c1, 2, &to);
  run_until([&] { return c1.completions.size() == 2; });
  // The refusal needs no sync, so it may come first: look the answers up by client id.
  for (const Completion& c : c1.completions) {
    EXPECT_EQ(c.error, c.client_msg_id == 1 ? wire::ErrorCode::Unspecified
                                            : wire::ErrorCode::RecipientQueueFull);
    EXPECT_EQ(c.id.has_value(), c.client_msg_id == 1);
  }
  EXPECT_EQ(routers_[0]->stats().errors_queue_full, 1u);
  // Failed ids are forgotten: the resend is tried again (and fails again while full).
  send(c1, 2, &to);
  run_until([&] { return c1.completions.size() == 3; });
  EXPECT_EQ(c1.completions[2].error, wire::ErrorCode::RecipientQueueFull);
}

TEST_F(RouterTest, WhileTheStoreIsAwayMessagesAreHeldThenMadeDurable) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kB, 3);
  send(c1, 1, &to);  // caches the lists
  run_until([&] { return c1.completions.size() == 1; });

  stop_controlplane();
  for (auto& s : stores_) s->detach();
  link_.reset();
  send(c1, 2, &to);
  for (int i = 0; i < 20; ++i) {
    for (uint16_t w = 0; w < 2; ++w) {
      (void)routers_[w]->poll(now_ns());
      (void)stores_[w]->poll(now_ns());
    }
  }
  EXPECT_EQ(c1.completions.size(), 1u);  // nothing acknowledged while nothing is durable
  EXPECT_EQ(stores_[0]->held_appends(), 1u);

  start_controlplane();
  connect();
  attach_stores();
  run_until([&] { return c1.completions.size() == 2; });
  EXPECT_EQ(c1.completions[1].error, wire::ErrorCode::Unspecified);
  EXPECT_EQ(table().queued(key(kB, 3)), 2u);
}

TEST_F(RouterTest, EphemeralMessagesReachOnlineDevicesAndAreNeverStored) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  FakeSession& b1 = login(1, kB, 1);
  const wire::DeviceAddress to_b1 = dev(kB, 1), to_b3 = dev(kB, 3);
  send(c1, 1, &to_b1);  // caches the lists (stored: not ephemeral)
  run_until([&] { return c1.completions.size() == 1; });
  send(c1, 2, &to_b1, nullptr, nullptr, wire::MessageFlags::Ephemeral);
  ASSERT_EQ(c1.completions.size(), 2u);  // accepted when handed over
  EXPECT_EQ(c1.completions[1].error, wire::ErrorCode::Unspecified);
  send(c1, 3, &to_b3, nullptr, nullptr, wire::MessageFlags::Ephemeral);
  ASSERT_EQ(c1.completions.size(), 3u);
  settle();
  EXPECT_EQ(b1.delivered().size(), 2u);
  EXPECT_EQ(table().queued(key(kB, 1)), 1u);  // the first message only
  EXPECT_EQ(table().queued(key(kB, 3)), 0u);
  EXPECT_EQ(routers_[0]->stats().acks_ephemeral, 2u);
}

TEST_F(RouterTest, ReceiptsTypingAndGroupOps) {
  start();
  FakeSession& a1 = login(0, kA, 1);
  FakeSession& b1 = login(1, kB, 1);
  {
    flatbuffers::FlatBufferBuilder b;
    const wire::ServerMsgId about(5 << 16, 5);
    std::vector<wire::ServerMsgId> ids{about};
    b.Finish(wire::CreateReceipt(b, wire::ReceiptKind::Read, b.CreateVectorOfStructs(ids), &kA));
    routers_[1]->on_receipt(b1, *flatbuffers::GetRoot<wire::Receipt>(b.GetBufferPointer()));
  }
  {
    flatbuffers::FlatBufferBuilder b;
    b.Finish(wire::CreateTyping(b, wire::Recipient::ToAccount,
                                wire::CreateToAccount(b, &kA).Union(), wire::TypingState::Started));
    routers_[1]->on_typing(b1, *flatbuffers::GetRoot<wire::Typing>(b.GetBufferPointer()));
  }
  pump();
  const auto receipts = a1.of(wire::Payload::Receipt);
  ASSERT_EQ(receipts.size(), 1u);
  const auto* r = receipts[0]->payload_as_Receipt();
  EXPECT_EQ(r->from()->device(), 1u);
  EXPECT_EQ(r->from()->account().lo(), kB.lo());
  ASSERT_NE(r->server_msg_id(), nullptr);
  EXPECT_EQ(r->message_ids()->size(), 1u);
  EXPECT_EQ(r->kind(), wire::ReceiptKind::Read);
  const auto typing = a1.of(wire::Payload::Typing);
  ASSERT_EQ(typing.size(), 1u);
  EXPECT_EQ(typing[0]->payload_as_Typing()->from()->account().lo(), kB.lo());
  EXPECT_TRUE(b1.of(wire::Payload::Typing).empty());

  flatbuffers::FlatBufferBuilder b;
  b.Finish(wire::CreateGroupOp(b, 31, wire::GroupOpKind::Create));
  routers_[0]->on_group_op(a1, *flatbuffers::GetRoot<wire::GroupOp>(b.GetBufferPointer()));
  const auto results = a1.of(wire::Payload::GroupOpResult);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]->payload_as_GroupOpResult()->request_id(), 31u);
  EXPECT_EQ(results[0]->payload_as_GroupOpResult()->code(), wire::GroupResultCode::Unavailable);
}

TEST_F(RouterTest, PresenceReachesSubscribersOnEveryWorkerOnly) {
  start();
  FakeSession& a1 = login(0, kA, 1);
  FakeSession& c1 = login(1, kC, 1);
  FakeSession& b1 = login(1, kB, 1);
  auto subscribe = [&](FakeSession& s, std::vector<wire::AccountId> accounts) {
    flatbuffers::FlatBufferBuilder b;
    b.Finish(wire::CreatePresenceSubscribe(b, b.CreateVectorOfStructs(accounts)));
    router_of(s).on_presence_subscribe(
        s, *flatbuffers::GetRoot<wire::PresenceSubscribe>(b.GetBufferPointer()));
  };
  auto presence = [&](FakeSession& s, wire::PresenceState state) {
    flatbuffers::FlatBufferBuilder b;
    const wire::AccountId claimed(0x99, 0x99);  // ignored: the sender's own account is used
    b.Finish(wire::CreatePresence(b, &claimed, state, 1234));
    router_of(s).on_presence(s, *flatbuffers::GetRoot<wire::Presence>(b.GetBufferPointer()));
  };
  subscribe(a1, {kB, kB});  // a repeated account counts once
  subscribe(c1, {kB});
  presence(b1, wire::PresenceState::Online);
  pump();
  for (FakeSession* s : {&a1, &c1}) {
    const auto got = s->of(wire::Payload::Presence);
    ASSERT_EQ(got.size(), 1u) << s->connection() << " frames " << s->frames.size() << " fwd0 "
                              << routers_[0]->stats().presence_forwarded << " fwd1 "
                              << routers_[1]->stats().presence_forwarded << " subs "
                              << routers_[0]->stats().presence_subscribes;
    const auto* p = got[0]->payload_as_Presence();
    EXPECT_EQ(p->account()->lo(), kB.lo());
    EXPECT_EQ(p->state(), wire::PresenceState::Online);
    EXPECT_EQ(p->last_seen_ms(), 1234u);
  }
  EXPECT_TRUE(b1.of(wire::Payload::Presence).empty());
  // Unsubscribed (an empty list) and detached sessions get nothing more.
  subscribe(a1, {});
  c1.close();
  presence(b1, wire::PresenceState::Away);
  pump();
  EXPECT_EQ(a1.of(wire::Payload::Presence).size(), 1u);
  EXPECT_EQ(c1.of(wire::Payload::Presence).size(), 1u);
  EXPECT_EQ(routers_[0]->stats().presence_forwarded + routers_[1]->stats().presence_forwarded, 2u);
}

}  // namespace
}  // namespace herald::dataplane::routing

namespace herald::dataplane::routing {
namespace {

// A receipt for a device that is offline goes to its queue, between the messages around it,
// drains at its login as a stored Receipt, and leaves on the device's ack like a message.
// B's worker has no device list of A yet: the receipt waits for it first.
TEST_F(RouterTest, AReceiptForAnOfflineDeviceIsStoredAndDrainsInOrderWithMessages) {
  start();
  FakeSession& c1 = login(0, kC, 1);
  FakeSession& b1 = login(1, kB, 1);
  const wire::DeviceAddress to = dev(kA, 2);
  send(c1, 1, &to);
  run_until([&] { return c1.completions.size() == 1; });
  const uint64_t m1 = c1.completions[0].id->lo();

  receipt(b1, kA, wire::ReceiptKind::Delivered, {7});
  receipt(b1, kA, wire::ReceiptKind::Read, {7});
  EXPECT_EQ(routers_[1]->stats().receipts_held_for_device_lists, 2u);
  run_until([&] { return table().queued(key(kA, 2)) == 3; });
  send(c1, 2, &to);
  run_until([&] { return c1.completions.size() == 2; });
  const uint64_t m2 = c1.completions[1].id->lo();
  settle();
  EXPECT_EQ(table().queued(key(kA, 1)), 2u);  // A1 was offline too
  EXPECT_EQ(routers_[1]->stats().receipts_stored, 2u);
  EXPECT_EQ(routers_[1]->stats().receipts_stored_devices, 4u);
  EXPECT_EQ(routers_[1]->stats().receipts_dropped, 0u);

  FakeSession& a2 = login(0, kA, 2);
  settle();
  const std::vector<std::string> want{"D" + std::to_string(m1), "R*Delivered:7", "R*Read:7",
                                      "D" + std::to_string(m2)};
  EXPECT_EQ(received(a2), want);
  EXPECT_EQ(routers_[0]->stats().receipts_drained, 2u);
  const auto r = a2.of(wire::Payload::Receipt);
  ASSERT_EQ(r.size(), 2u);
  const wire::Receipt* first = r[0]->payload_as_Receipt();
  EXPECT_EQ(first->from()->account().lo(), kB.lo());
  EXPECT_EQ(first->from()->device(), 1u);
  EXPECT_EQ(first->to()->lo(), kA.lo());
  EXPECT_EQ(first->client_time_ms(), 4242u);
  ASSERT_NE(first->server_msg_id(), nullptr);
  EXPECT_EQ(split_message_id(*first->server_msg_id()).worker, 1u);  // minted by B's worker

  // Unacknowledged, they come again at the next login (same ids: the client dedups on them).
  const wire::ServerMsgId first_id = *first->server_msg_id();
  FakeSession& again = login(1, kA, 2);
  settle();
  EXPECT_EQ(received(again), want);
  EXPECT_TRUE(message_id_equal(
      *again.of(wire::Payload::Receipt)[0]->payload_as_Receipt()->server_msg_id(), first_id));
  ack_queued(again);
  settle();
  EXPECT_EQ(table().queued(key(kA, 2)), 0u);
  FakeSession& last = login(0, kA, 2);
  settle();
  EXPECT_TRUE(last.frames.empty());
}

// Online devices get the receipt live (stored = false) and nothing is queued for them; a device
// whose list is cached does not wait.
TEST_F(RouterTest, AReceiptForOnlineDevicesIsForwardedAndNotStored) {
  start();
  FakeSession& a1 = login(0, kA, 1);
  FakeSession& a2 = login(1, kA, 2);
  FakeSession& b1 = login(1, kB, 1);
  receipt(b1, kA, wire::ReceiptKind::Read, {9});
  settle();
  receipt(b1, kA, wire::ReceiptKind::Read, {10});  // the list is cached now
  settle();
  EXPECT_EQ(received(a1), (std::vector<std::string>{"RRead:9", "RRead:10"}));
  EXPECT_EQ(received(a2), (std::vector<std::string>{"RRead:9", "RRead:10"}));
  EXPECT_TRUE(b1.frames.empty());  // never to the device that sent it
  EXPECT_EQ(table().queued(key(kA, 1)) + table().queued(key(kA, 2)), 0u);
  EXPECT_EQ(routers_[1]->stats().receipts_held_for_device_lists, 1u);
  EXPECT_EQ(routers_[1]->stats().receipts_stored, 0u);
  EXPECT_EQ(routers_[1]->stats().receipts_dropped, 0u);
  // A receipt to one's own account reaches the other devices only.
  receipt(a1, kA, wire::ReceiptKind::Read, {11});
  settle();
  EXPECT_EQ(received(a2).back(), "RRead:11");
  EXPECT_EQ(received(a1).size(), 2u);
}

// A receipt the store cannot keep is dropped and counted by reason: a full queue (the same
// counted refusal a message gets), the store client's own limit while the store is away.
TEST_F(RouterTest, AReceiptTheStoreRefusesIsADropCountedByReason) {
  table_options_.max_queued_messages_per_device = 1;
  client_options_.max_pending_appends = 2;
  start();
  FakeSession& c1 = login(0, kC, 1);
  const wire::DeviceAddress to = dev(kA, 2);
  send(c1, 1, &to);  // A2's queue is full now; A1's is empty
  run_until([&] { return c1.completions.size() == 1; });
  receipt(c1, kA, wire::ReceiptKind::Delivered, {1});
  settle();
  const WorkerRouterStats& st = routers_[0]->stats();
  EXPECT_EQ(st.receipts_stored, 1u);
  EXPECT_EQ(st.receipts_dropped, 1u);
  EXPECT_EQ(st.receipts_dropped_queue_full, 1u);  // A2
  EXPECT_EQ(table().queued(key(kA, 1)), 1u);      // A1 has it
  EXPECT_EQ(table().queued(key(kA, 2)), 1u);      // the message only

  // The store away: appends are held up to max_pending_appends, then refused.
  stop_controlplane();
  for (auto& s : stores_) s->detach();
  link_.reset();
  receipt(c1, kA, wire::ReceiptKind::Read, {2});  // held by the store client (1 of 2)
  receipt(c1, kA, wire::ReceiptKind::Read, {3});  // 2 of 2
  receipt(c1, kA, wire::ReceiptKind::Read, {4});  // refused
  EXPECT_EQ(st.receipts_stored, 3u);
  EXPECT_EQ(st.receipts_dropped, 2u);
  EXPECT_EQ(st.receipts_dropped_store, 2u);  // A1 and A2
  EXPECT_EQ(stores_[0]->stats().append_refused[static_cast<size_t>(AppendRefusal::kPendingFull)],
            1u);
}

}  // namespace
}  // namespace herald::dataplane::routing

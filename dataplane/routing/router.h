// WorkerRouter: one dataplane worker's Router (session/router.h). Composes the routing parts
// (ids, dedup, directory, groups, device lists, the store client, the worker mesh) into
// DESIGN.md's "One message, end to end": recipients, online delivery, the durability rule,
// offline drains with flow control, receipts and typing. README.md ("The router") argues it.
//
//   StoreClient store(store_options, {outcome -> router->on_store_outcome,
//                                     drain -> router->on_drain_batch});
//   WorkerRouter router(options, clock, directory, store, mesh.endpoint(w));
//   store.set_push_handler(GroupMembershipPush / DeviceListResponse / DeviceListPush, ...);
//   loop turn: router.poll(now_ns); store.poll(now_ns); mesh.flush();
#pragma once

#include <cstdint>
#include <memory>
#include <queue>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/routing/dedup_window.h"
#include "dataplane/routing/device_lists.h"
#include "dataplane/routing/directory.h"
#include "dataplane/routing/group_cache.h"
#include "dataplane/routing/message_ids.h"
#include "dataplane/routing/store_client.h"
#include "dataplane/routing/worker_mesh.h"
#include "dataplane/session/router.h"
#include "platform/clock/clock.h"
#include "platform/containers/hash_maps.h"
#include "schemas/codec/frame_builder.h"

namespace herald::dataplane::routing {

struct WorkerRouterOptions {
  uint16_t node_id = 0;
  uint16_t worker = 0;
  uint16_t workers = 1;
  // Unix time = the clock's monotonic ns / 1e6 + unix_offset_ms (server ids, server_time_ms).
  int64_t unix_offset_ms = 0;
  DedupOptions dedup;
  GroupCacheOptions groups;
  DeviceListOptions device_lists;
  // Drained Delivers sent and not yet acknowledged by the device: the drain's window.
  uint32_t drain_window_messages = 64;
  // The drain pauses while the session has more than this queued (on_writable resumes it),
  // and one drain batch asks for at most this many bytes of bodies.
  uint32_t drain_queue_bytes = 256 << 10;
  // Messages taken and not yet answered (held for device lists, waiting for their outcome);
  // beyond it a Message gets Error{Overloaded}. Bounds this worker's memory per message.
  uint32_t max_pending_messages = 65536;
  // Recipient devices of one message (a group's members' devices together); beyond it the
  // message gets Error{InvalidRequest} rather than reaching part of the group.
  uint32_t max_recipients = 8192;
  // Hand-offs read from the mesh per poll().
  uint32_t mesh_records_per_poll = 256;
  // Dedup hand-over at login: a worker that does not answer by then is not waited for.
  uint64_t handover_timeout_ns = 1'000'000'000;
  // Dedup entries per hand-off (40 bytes each): keeps each record well under the ring's limit.
  uint32_t handover_chunk_records = 256;
  // A resend joined to a message pending on another worker that sent no outcome by then is
  // answered StoreUnavailable (the entry stays pending: the next resend joins again).
  uint64_t remote_join_timeout_ns = 30'000'000'000;
};

// Every counter of one worker's router (the parts' own stats are reachable through the parts).
struct WorkerRouterStats {
  uint64_t attaches = 0;
  uint64_t revoked_closed = 0;  // sessions closed by a RevocationPush
  uint64_t detaches = 0;
  uint64_t logins_refused = 0;        // Directory full: the session is closed Overloaded
  uint64_t replaced_local = 0;        // an older session of the device on this worker closed
  uint64_t replaced_remote = 0;       // ... on another worker: a close asked over the mesh
  uint64_t handover_send_failed = 0;  // a dedup hand-off the mesh refused
  uint64_t handover_timeouts = 0;     // logins that stopped waiting for a worker's entries
  uint64_t handover_records_out = 0;  // dedup entries handed to another worker
  uint64_t handover_records_in = 0;
  uint64_t handover_outcomes = 0;      // answers of handed-over pending messages received
  uint64_t held_for_handover = 0;      // Messages held until the hand-over finished
  uint64_t resends_joined_remote = 0;  // a resend waiting for another worker's answer
  uint64_t remote_join_timeouts = 0;
  uint64_t messages = 0;        // on_message calls
  uint64_t resends_acked = 0;   // a resend answered with the first ServerAck again
  uint64_t resends_joined = 0;  // a resend waiting for the first copy's answer
  uint64_t server_acks = 0;
  uint64_t acks_all_devices = 0;  // ServerAcks because every recipient device acked
  uint64_t acks_durable = 0;      // ... because the store made it durable (or cancelled it)
  uint64_t acks_ephemeral = 0;
  // Error{code, client_msg_id} answers, by code.
  uint64_t errors_recipient_not_found = 0;
  uint64_t errors_not_group_member = 0;
  uint64_t errors_queue_full = 0;
  uint64_t errors_store_unavailable = 0;  // refused append, store failure, device list timeout
  uint64_t errors_overloaded = 0;         // max_pending_messages, device-list cache busy
  uint64_t errors_invalid = 0;            // no recipient, or over max_recipients
  uint64_t acks_no_recipients = 0;        // nobody to deliver to (a lone device to itself)
  uint64_t held_for_device_lists = 0;     // messages that waited for a device list
  uint64_t delivered_local = 0;           // frames handed to a session of this worker
  uint64_t delivered_remote = 0;          // frames handed to another worker
  uint64_t delivery_refused = 0;          // a session or the mesh did not take a frame
  uint64_t appends = 0;
  uint64_t queue_full_partial = 0;  // durable, but some recipients' queues were full
  uint64_t outcomes_unknown = 0;    // an outcome for a message already answered
  uint64_t push_hints = 0;
  uint64_t device_acks = 0;          // ids in DeliveryAcks
  uint64_t device_acks_pending = 0;  // of those, for a pending append on this worker
  uint64_t device_acks_forwarded = 0;
  uint64_t device_acks_stored = 0;  // turned into StoreAck (drained or already durable)
  uint64_t drains_started = 0;
  uint64_t drains_refused = 0;
  uint64_t drain_batches = 0;
  uint64_t drained_sent = 0;
  uint64_t drain_errors = 0;  // StoreError / Rejected batches (asked again on the next ack)
  uint64_t drain_batches_stale = 0;
  // A message stored for a device that was offline became durable after the device logged in
  // and its drain had found the queue empty: the drain is started again (drain kick).
  uint64_t drain_kicks_sent = 0;        // to a session of another worker, over the mesh
  uint64_t drain_kicks_restarted = 0;   // drains started (or re-asked) because of a kick
  uint64_t drain_kicks_from_store = 0;  // devices in DrainKick records (a restart's orphans)
  uint64_t mesh_frames_delivered = 0;
  uint64_t mesh_frames_dropped = 0;  // the session was gone (the store keeps the message)
  uint64_t mesh_closes = 0;
  uint64_t mesh_closes_gone = 0;
  uint64_t mesh_malformed = 0;
  uint64_t receipts = 0;
  // Receipts for the addressee's devices that are not online (README "Receipts"): appended to
  // their queues, sent from drains, or dropped for one of the reasons below.
  uint64_t receipts_held_for_device_lists = 0;  // waited for the addressee's device list
  uint64_t receipts_stored = 0;                 // appends (one per receipt, its offline devices)
  uint64_t receipts_stored_devices = 0;         // queue entries those appends asked for
  uint64_t receipts_drained = 0;                // stored receipts sent from drains
  // Receipts that reached some device neither online nor in its queue (one per receipt), and
  // the devices so missed by reason.
  uint64_t receipts_dropped = 0;
  uint64_t receipts_dropped_device_list = 0;  // the list was unknown, timed out or busy
  uint64_t receipts_dropped_store = 0;        // the store client refused, or the store failed
  uint64_t receipts_dropped_queue_full = 0;   // the device's queue was at its cap
  uint64_t typing_forwarded = 0;
  uint64_t presence_updates = 0;    // Presence frames from clients
  uint64_t presence_forwarded = 0;  // copies handed to subscribed sessions of this worker
  uint64_t presence_dropped = 0;    // the mesh refused a broadcast to another worker
  uint64_t presence_subscribes = 0;
  uint64_t group_ops_unavailable = 0;
  uint64_t device_list_requests_dropped = 0;
};

class WorkerRouter final : public Router, private DeviceListSink {
 public:
  // `directory` is shared by all workers; `store` and `mesh` are this worker's. All must
  // outlive the router.
  WorkerRouter(const WorkerRouterOptions& options, clock::Clock clock, Directory& directory,
               StoreClient& store, MeshEndpoint& mesh);
  ~WorkerRouter() override;
  WorkerRouter(const WorkerRouter&) = delete;
  WorkerRouter& operator=(const WorkerRouter&) = delete;

  // ---- Router (session/router.h) ----
  uint32_t attach(SessionPort& session) override;
  void detach(SessionPort& session) override;
  void on_message(SessionPort& from, const wire::Message& message) override;
  void on_delivery_ack(SessionPort& from, const wire::DeliveryAck& ack) override;
  void on_receipt(SessionPort& from, const wire::Receipt& receipt) override;
  void on_presence(SessionPort& from, const wire::Presence& presence) override;
  void on_presence_subscribe(SessionPort& from, const wire::PresenceSubscribe& subscribe) override;
  void on_typing(SessionPort& from, const wire::Typing& typing) override;
  void on_group_op(SessionPort& from, const wire::GroupOp& op) override;
  void on_writable(SessionPort& session) override;

  // ---- Wiring (the worker loop) ----
  // This worker's StoreClient callbacks (made before the router: forward to these).
  void on_store_outcome(const StoreOutcome& outcome);
  void on_drain_batch(const DrainBatch& batch);
  // Control-plane pushes (StoreClient::set_push_handler).
  void on_group_push(const ipc::GroupMembershipPush& push) { groups_.apply(push); }
  void on_device_list_response(const ipc::DeviceListResponse& r);
  void on_device_list_push(const ipc::DeviceListPush& p);
  // The control plane's DrainKick: entries durable after the dataplane that appended them was
  // restarted away. Each online device's drain runs again (routed to its worker).
  void on_drain_kick(const ipc::DrainKick& kick);
  // After each handshake: ids above the store's highest, cached lists dropped (changes made
  // while disconnected were not pushed).
  void on_controlplane_hello(uint64_t server_msg_time_floor_ms);
  // Once per loop turn, before store.poll() and mesh.flush(): hand-offs from other workers,
  // device-list timers. Returns the hand-offs handled.
  size_t poll(uint64_t now_ns);

  // The control plane revoked `account`'s tokens (one device, or kAllDevices = UINT32_MAX):
  // sessions of this worker authenticated as those devices get Error{code} and close. Returns
  // how many. (Sessions do not keep their token's issue time, so every matching session goes:
  // revocations are made at the moment of the change they enforce.)
  size_t close_device_sessions(const wire::AccountId& account, uint32_t device,
                               wire::ErrorCode code);
  size_t sessions() const { return sessions_.size(); }
  size_t pending_messages() const { return pending_.size(); }
  const WorkerRouterStats& stats() const { return stats_; }
  const DedupWindow& dedup() const { return dedup_; }
  const DeviceListCache& device_lists() const { return device_lists_; }
  const MessageIdMinter& minter() const { return minter_; }
  const GroupCache& groups() const { return groups_; }

 private:
  struct Session;
  struct Pending;
  struct Recipient {
    wire::DeviceAddress device;
    bool online = false;                        // the Deliver was handed to a session of the device
    ConnectionId delivered_to = kNoConnection;  // ... this one
  };

  // DeviceListSink
  bool send_device_list_request(uint64_t request_id, const wire::AccountId& account) override;
  void device_list_answer(uint64_t waiter, const wire::AccountId& account, DeviceListResult result,
                          std::span<const uint32_t> devices) override;

  uint64_t now_ns() const { return clock_.now_ns(); }
  uint64_t unix_ms() const;
  Session* find_session(ConnectionId c);
  Pending* find_pending(uint64_t pending_id);
  Pending& pending_at(uint64_t pending_id);  // one that must be there
  const wire::Deliver& deliver_of(const Pending& p) const;

  // The message path, after dedup and minting.
  void resolve(uint64_t pending_id);
  // Adds `account`'s devices (all, or only `only_device`) to `out`; false when waiting.
  enum class Lookup : uint8_t { kDone, kWaiting, kUnknown, kBusy };
  Lookup add_account(Pending& p, uint64_t pending_id, const wire::AccountId& account,
                     uint32_t only_device, std::vector<Recipient>& out);
  void dispatch(uint64_t pending_id);
  void answer(uint64_t pending_id, wire::ErrorCode error);
  void complete(ConnectionId c, uint64_t client_msg_id, const MintedId& id, wire::ErrorCode e);
  // Sends `frame` to the device's live session wherever it is; false when not reached.
  bool deliver_online(const wire::DeviceAddress& device, std::span<const uint8_t> frame,
                      ConnectionId* delivered_to = nullptr);
  bool send_local(ConnectionId c, std::span<const uint8_t> frame);

  // Drains.
  void start_drain(Session& s);
  void retry_drain(Session& s, uint64_t delay_ns);
  void continue_drain(Session& s);
  void kick_drain(const wire::DeviceAddress& device);
  void kick_drain_local(ConnectionId connection, const wire::DeviceAddress& device);

  // Receipts for devices not online: `deliver` is the queue entry (wire.fbs Deliver.receipt),
  // `reached` the devices already given the receipt live.
  struct HeldReceipt;
  void store_receipt(const wire::Deliver& deliver, const wire::AccountId& to,
                     const wire::DeviceAddress& sender, std::span<const uint32_t> devices,
                     std::span<const uint32_t> tried, std::span<const uint32_t> reached);
  void receipt_device_list_answer(uint64_t waiter, DeviceListResult result);
  void on_receipt_outcome(const StoreOutcome& outcome);

  // Device acks for ids minted by this worker (from a local session or another worker).
  void device_ack_local(const wire::DeviceAddress& device, const wire::ServerMsgId& id,
                        std::vector<wire::ServerMsgId>& stored);
  void handle_mesh(const MeshRecord& r);
  void handle_dedup_query(const MeshRecord& r);
  void handle_dedup_records(const MeshRecord& r);
  void handle_dedup_outcome(const MeshRecord& r);
  void finish_handover_step(Session& s);
  // Presence of `account` (hi, lo) to this worker's sessions subscribed to it.
  void presence_local(uint64_t hi, uint64_t lo, std::span<const uint8_t> frame);
  void unsubscribe(Session& s);

  struct AccountKey {
    uint64_t hi = 0, lo = 0;
    bool operator==(const AccountKey&) const = default;
  };
  struct JoinKey {
    uint64_t hi = 0, lo = 0;
    uint32_t device = 0;
    uint64_t client_msg_id = 0;
    bool operator==(const JoinKey&) const = default;
  };
  struct JoinKeyHash {
    size_t operator()(const JoinKey& k) const {
      return (k.hi * 0x9E3779B97F4A7C15ull ^ k.lo) * 31 + k.device * 0x85EBCA6Bull +
             k.client_msg_id * 0xC2B2AE3D27D4EB4Full;
    }
  };
  struct RemoteJoin {
    uint64_t deadline_ns = 0;
    std::vector<ConnectionId> connections;
  };
  struct AccountKeyHash {
    size_t operator()(const AccountKey& k) const { return k.hi * 0x9E3779B97F4A7C15ull ^ k.lo; }
  };

  WorkerRouterOptions options_;
  clock::Clock clock_;
  Directory& directory_;
  StoreClient& store_;
  MeshEndpoint& mesh_;
  MessageIdMinter minter_;
  DedupWindow dedup_;
  GroupCache groups_;
  DeviceListCache device_lists_;
  codec::FrameBuilder frames_;

  // Looked up several times per message (FlatMap: no node per entry). Values are pointers, so
  // a Session& or Pending& stays valid while its map grows.
  // Slots move on insert and erase: keep no pointer into a map across a change of it.
  FlatMap<ConnectionId, std::unique_ptr<Session>, U64Hash> sessions_;
  FlatMap<uint64_t, std::unique_ptr<Pending>, U64Hash> pending_;  // by pending id
  FlatMap<uint64_t, uint64_t, U64Hash> pending_by_lo_;            // ServerMsgId.lo -> pending id
  // Answered Pendings kept for the next messages with their vectors' capacity (a loaded worker
  // takes and answers thousands a second in bursts, past what malloc's thread cache holds).
  static constexpr size_t kMaxSparePendings = 1024;
  std::vector<std::unique_ptr<Pending>> spare_pendings_;
  std::unique_ptr<Pending> take_pending();
  void recycle(std::unique_ptr<Pending> p);
  uint64_t next_pending_id_ = 1;
  std::vector<wire::ServerMsgId> scratch_ids_;
  // Presence subscriptions of this worker's sessions: account -> subscribed connections.
  std::unordered_map<AccountKey, std::vector<ConnectionId>, AccountKeyHash> subscribers_;
  // Per-session deadlines (drain retries, hand-over timeouts), earliest first; checked lazily.
  enum class TimerKind : uint8_t { kDrainRetry, kHandover };
  struct Timer {
    uint64_t at_ns = 0;
    ConnectionId connection = kNoConnection;
    TimerKind kind = TimerKind::kDrainRetry;
  };
  struct Later {
    bool operator()(const Timer& a, const Timer& b) const { return a.at_ns > b.at_ns; }
  };
  std::priority_queue<Timer, std::vector<Timer>, Later> timers_;
  // Resends of messages pending on another worker (entries handed over), by device and id.
  std::unordered_map<JoinKey, RemoteJoin, JoinKeyHash> remote_joins_;
  uint64_t next_remote_join_check_ns_ = 0;
  std::vector<DedupRecord> records_scratch_;  // one device's export (window_per_device)
  std::vector<wire::DeviceAddress> append_devices_scratch_;  // one append's recipients
  // An account's online devices (receipts, typing): max_devices_per_account entries.
  std::vector<OnlineDevice> online_scratch_;
  // Receipts waiting for their addressee's device list, by waiter token (kReceiptToken | n;
  // bounded by the cache's max_waiters), and receipt appends awaiting their outcome, by
  // cookie (same tag; bounded by the store client's max_pending_appends): their devices.
  std::unordered_map<uint64_t, std::unique_ptr<HeldReceipt>> held_receipts_;
  std::unordered_map<uint64_t, std::vector<wire::DeviceAddress>> stored_receipts_;
  uint64_t next_receipt_ = 1;
  flatbuffers::FlatBufferBuilder receipt_fbb_{256};
  WorkerRouterStats stats_;
};

}  // namespace herald::dataplane::routing

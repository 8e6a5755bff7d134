// The control plane's store service on the IPC rings: StoreAppend/StoreCancel/StoreAck/
// DrainRequest from the dataplane workers served from the QueueTable under DESIGN.md's
// durability rule (an AppendDurable only once the log synced it), and pushes of auth, group and
// config state to the dataplane (Pusher), with a full resync after every (re)connect.
//
//   StoreService service(loop, table, &log, StoreServiceOptions{});
//   service.set_resync([&](Pusher& p) { p.push_session_key(...); ... });
//   auto server = IpcServer::start(loop, ipc_options, &service);
//   service.attach(**server);                  // before the loop runs
//   service.pusher().push_revocation(...);      // any time on the loop's thread
//
// README.md in this folder has the record flows and the decisions.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/ipc/ipc_server.h"
#include "controlplane/storage/log.h"
#include "controlplane/storage/queue_table.h"
#include "platform/uring/event_loop.h"

namespace herald::controlplane {

struct StoreServiceOptions {
  // Drains in flight per worker (body reads pending); one more is answered DrainStatus.Busy at
  // once, and the dataplane asks again (it owns the retry timing, so the control plane holds no
  // unbounded queue of requests).
  uint32_t max_drains_in_flight_per_worker = 8;
  // Caps on one DrainRequest (0 in the request: the cap).
  uint32_t max_drain_messages = 256;
  uint64_t max_drain_bytes = 4u << 20;
  // Appends that completed, remembered per worker (append_id -> message id), so a StoreCancel
  // that crossed its AppendDurable on the rings still deletes the acked devices' entries.
  // Older ones are forgotten: their entries stay and the device gets a duplicate it drops by id.
  uint32_t recent_appends_per_worker = 16384;
  // Outcomes per AppendDurable record (each costs 16 bytes on the ring).
  uint32_t max_outcomes_per_record = 1024;
  // Retry period for outcomes the IpcServer could not take (its backlog was full).
  uint64_t held_retry_ns = 1'000'000;
};

// Why a record's content was refused (it passed the Envelope verifier). Named counters.
#define HERALD_STORE_RECORD_ERRORS(X)                                           \
  X(kNoMessage, "no_message", "StoreAppend without a message or server_msg_id") \
  X(kNoRecipients, "no_recipients", "StoreAppend/StoreCancel without devices")  \
  X(kBadDevice, "bad_device", "a device address with device 0")                 \
  X(kNoDevice, "no_device", "StoreAck/DrainRequest without a device")           \
  X(kNoAccount, "no_account", "DeviceListRequest without an account")           \
  X(kUnexpectedType, "unexpected_type", "a CP -> DP record type sent by the DP")

enum class StoreRecordError : uint8_t {
#define HERALD_STORE_RECORD_ERROR_ENUM(name, text, doc) name,
  HERALD_STORE_RECORD_ERRORS(HERALD_STORE_RECORD_ERROR_ENUM)
#undef HERALD_STORE_RECORD_ERROR_ENUM
      kCount
};
inline constexpr size_t kStoreRecordErrorCount = static_cast<size_t>(StoreRecordError::kCount);
const char* store_record_error_name(StoreRecordError error);

inline constexpr size_t kAppendStatusCount = static_cast<size_t>(ipc::AppendStatus::MAX) + 1;
inline constexpr size_t kDrainStatusCount = static_cast<size_t>(ipc::DrainStatus::MAX) + 1;
inline constexpr size_t kDeviceListStatusCount =
    static_cast<size_t>(ipc::DeviceListStatus::MAX) + 1;

// Plain counters written on the loop thread (the control plane mirrors them into the counters
// segment, like IpcServerStats).
struct StoreServiceStats {
  uint64_t records[ipc::kRecordTypeCount] = {};  // handled, by Record type
  uint64_t record_errors[kStoreRecordErrorCount] = {};
  uint64_t outcomes[kAppendStatusCount] = {};  // AppendOutcome by status, as decided
  uint64_t duplicate_appends = 0;              // an id already pending or queued
  uint64_t queue_full_recipients = 0;
  uint64_t outcome_records = 0;     // AppendDurable records handed to the IpcServer
  uint64_t outcomes_held = 0;       // flushes that left outcomes waiting (IpcServer refused)
  uint64_t outcomes_orphaned = 0;   // for a dataplane instance that is gone: never sent
  uint64_t drain_kicks = 0;         // DrainKick records for orphaned durable appends
  uint64_t drain_kicks_failed = 0;  // ... the ring refused (the device drains at next login)
  uint64_t cancels_pending = 0;     // devices cancelled before durability
  uint64_t cancels_late = 0;        // devices cancelled after durability (deleted like acks)
  uint64_t cancels_unknown = 0;     // StoreCancel for an append not remembered
  uint64_t cancel_tombstones = 0;   // entries removed because of a cancel
  uint64_t acked_entries = 0;       // entries removed by StoreAck
  uint64_t acks_unknown = 0;        // StoreAck ids that were not queued
  uint64_t remove_errors = 0;       // remove() refused or its tombstone failed
  uint64_t drains[kDrainStatusCount] = {};  // DrainRequests answered, by status
  uint64_t drain_responses = 0;             // DrainResponse records (a drain may be split)
  uint64_t drain_messages = 0;
  uint64_t drain_bytes = 0;        // StoredMessage bytes of the messages in sent DrainResponses
  uint64_t drains_orphaned = 0;    // the requesting dataplane left before the bodies were read
  uint64_t drain_send_failed = 0;  // the IpcServer refused a DrainResponse (the DP re-asks)
  uint64_t pushes[ipc::kRecordTypeCount] = {};         // push records sent, per worker
  uint64_t push_failures[ipc::kRecordTypeCount] = {};  // per worker that refused one
  uint64_t resyncs = 0;
  uint64_t device_lists[kDeviceListStatusCount] = {};  // DeviceListRequests answered, by status
  uint64_t device_list_send_failed = 0;  // the IpcServer refused a DeviceListResponse (the DP
                                         // times out and asks again)
};

class StoreService;

// Pushes control-plane state to every dataplane worker (each worker verifies tokens, closes
// revoked sessions, fans out to groups and applies config on its own: nothing is shared between
// workers, DESIGN.md). A push is one record per worker; the result is OK when every worker's
// ring (or the IpcServer's backlog) took it, else Unavailable naming how many refused. State
// lost that way is restored by the next resync, which the lead should also trigger after an
// Unavailable (the dataplane reconnects or the lead re-pushes).
class Pusher {
 public:
  struct SessionKey {
    uint32_t key_id = 0;
    std::span<const uint8_t> key;  // HMAC-SHA256, 32 bytes
    uint64_t not_before_ms = 0;
    uint64_t not_after_ms = 0;
  };
  struct Revocation {
    storage::DeviceKey account;  // account_hi/lo; device 0 = every device of the account
    uint64_t issued_before_ms = 0;
  };

  absl::Status push_session_key(const SessionKey& key);
  absl::Status push_revocations(std::span<const Revocation> revocations);
  absl::Status push_revocation(uint64_t account_hi, uint64_t account_lo,
                               std::optional<uint32_t> device, uint64_t issued_before_ms);
  // `members` as (hi, lo) account ids.
  absl::Status push_group_membership(uint64_t group_hi, uint64_t group_lo, uint64_t version,
                                     std::span<const std::pair<uint64_t, uint64_t>> members,
                                     bool deleted = false);
  // `config` is the normalized config FlatBuffer; `restart_fields` the dotted paths of changed
  // fields that take effect only after a restart.
  absl::Status push_config(uint64_t revision, std::span<const uint8_t> config,
                           std::span<const std::string> restart_fields);
  // An account's device list changed (durably): `devices` active ids ascending, `version` as
  // in DeviceListResponse.
  absl::Status push_device_list(uint64_t account_hi, uint64_t account_lo,
                                std::span<const uint32_t> devices, uint64_t version);

 private:
  friend class StoreService;
  explicit Pusher(StoreService& service) : service_(service) {}
  StoreService& service_;
};

class StoreService : public IpcHandler {
 public:
  using ResyncFn = std::function<void(Pusher&)>;
  // An account's device list for DeviceListRequest, from the registration store; nullopt for
  // an unknown account.
  struct DeviceList {
    std::vector<uint32_t> devices;  // active ids, ascending
    uint64_t version = 0;
  };
  using DeviceListSource =
      std::function<std::optional<DeviceList>(uint64_t account_hi, uint64_t account_lo)>;

  // `table` is started (recovered) and outlives the service; `log` (optional) gives
  // AppendDurable.commit_seq. Construct, then IpcServer::start(..., this), then attach().
  // Destroy the IpcServer first: it calls this handler until it is gone.
  StoreService(uring::EventLoop& loop, storage::QueueTable& table, const storage::Log* log,
               const StoreServiceOptions& options);
  ~StoreService() override;
  StoreService(const StoreService&) = delete;
  StoreService& operator=(const StoreService&) = delete;

  void attach(IpcServer& server);
  // Called after every dataplane handshake, before any record of the new connection is read:
  // push everything a fresh dataplane needs (keys, revocations in force, groups, config).
  void set_resync(ResyncFn resync) { resync_ = std::move(resync); }
  // PushHint records (the push gateway's, not the store's) go here; without one they are counted.
  void set_push_hint_handler(std::function<void(uint16_t worker, const ipc::PushHint&)> fn) {
    push_hint_ = std::move(fn);
  }
  // DeviceListRequest records are answered from here; without a source they are Rejected.
  void set_device_list_source(DeviceListSource source) { device_lists_ = std::move(source); }
  Pusher& pusher() { return pusher_; }

  // IpcHandler.
  void on_record(uint16_t worker, const ipc::Envelope& envelope) override;
  void on_dataplane_connected(uint64_t instance_id, bool restarted) override;
  void on_dataplane_disconnected() override;

  const StoreServiceStats& stats() const { return stats_; }
  // Appends taken and not yet durable (all workers).
  size_t pending_appends() const { return pending_.size(); }
  // Outcomes waiting to be sent (not yet taken by the IpcServer) for one worker.
  size_t held_outcomes(uint16_t worker) const;
  size_t drains_in_flight(uint16_t worker) const;
  // Work waiting, all workers: gauges for the counters segment.
  struct Backlog {
    uint64_t appends_pending = 0;   // taken, not yet durable
    uint64_t outcomes_held = 0;     // decided, not yet taken by the IpcServer
    uint64_t drains_in_flight = 0;  // body reads pending
  };
  Backlog backlog() const;

 private:
  friend class Pusher;

  // Who asked for an append, and so who gets its outcome.
  struct Requester {
    uint16_t worker = 0;
    uint64_t instance = 0;
    uint64_t append_id = 0;
  };
  struct Pending {
    storage::MessageId id;
    std::vector<storage::DeviceKey> accepted;    // recipients with an entry staged
    std::vector<storage::DeviceKey> queue_full;  // refused by the cap
    std::vector<storage::DeviceKey> cancelled;   // acked by the device before durability
    std::vector<Requester> requesters;           // the first, then duplicates
  };
  struct Outcome {
    uint64_t instance = 0;
    uint64_t append_id = 0;
    ipc::AppendStatus status = ipc::AppendStatus::Durable;
    std::vector<storage::DeviceKey> queue_full;
  };
  struct WorkerState {
    // Who wrote the records now being read from this worker's dp_to_cp ring: the instance of
    // the last Hello read on it, else the dataplane connected before the current one (records
    // it left in the ring are read after the new handshake), else the current one.
    uint64_t writer_instance = 0;
    std::unordered_map<uint64_t, storage::MessageId> pending_by_append;
    // Completed appends, oldest first, for late cancels.
    std::deque<std::pair<uint64_t, storage::MessageId>> recent;
    std::unordered_map<uint64_t, storage::MessageId> recent_by_append;
    std::deque<Outcome> outcomes;  // decided, not yet taken by the IpcServer
    uint32_t drains_in_flight = 0;
  };

  void on_append(uint16_t w, uint64_t instance, const ipc::StoreAppend& append);
  void on_cancel(uint16_t w, const ipc::StoreCancel& cancel);
  void on_ack(uint16_t w, const ipc::StoreAck& ack);
  void on_drain(uint16_t w, uint64_t instance, const ipc::DrainRequest& request);
  void on_device_list(uint16_t w, uint64_t instance, const ipc::DeviceListRequest& request);
  void on_append_done(const storage::MessageId& id, const absl::Status& status);
  void kick_if_orphaned(const Pending& pending);
  void remember_completed(uint16_t w, uint64_t append_id, const storage::MessageId& id);
  void remove_entries(const storage::DeviceKey& device, std::span<const storage::MessageId> ids,
                      uint64_t& counter);
  void add_outcome(const Requester& r, ipc::AppendStatus status,
                   std::vector<storage::DeviceKey> queue_full);
  void schedule_flush();
  void flush_outcomes();
  // Sends what fits of one worker's outcomes; false when the IpcServer refused (retry later).
  bool flush_worker(uint16_t w);
  void send_drain(uint16_t w, uint64_t instance, uint64_t request_id,
                  const storage::DeviceKey& device, ipc::DrainStatus status,
                  std::span<const storage::DrainedMessage> messages, bool more);
  void bad_record(uint16_t w, StoreRecordError error);
  uint64_t current_instance(uint16_t w) const;
  bool instance_live(uint64_t instance) const;
  template <typename Build>
  absl::Status broadcast(ipc::Record type, const Build& build);

  static void on_flush_timer(uring::Operation& op, const uring::Completion& c);

  uring::EventLoop& loop_;
  storage::QueueTable& table_;
  const storage::Log* log_;
  const StoreServiceOptions options_;
  IpcServer* server_ = nullptr;
  ResyncFn resync_;
  std::function<void(uint16_t, const ipc::PushHint&)> push_hint_;
  DeviceListSource device_lists_;
  // The dataplane instance connected last (0: none yet since this process started).
  uint64_t last_instance_ = 0;
  Pusher pusher_{*this};
  std::vector<WorkerState> workers_;
  std::unordered_map<storage::MessageId, Pending, storage::MessageIdHash> pending_;
  flatbuffers::FlatBufferBuilder body_builder_{1024};
  uring::Operation flush_op_;
  bool stopping_ = false;
  // Bumped on destruction: table callbacks that outlive the service (drain's `done` may) check
  // it through this shared token and do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  StoreServiceStats stats_;
};

}  // namespace herald::controlplane

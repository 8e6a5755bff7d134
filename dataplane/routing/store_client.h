// A dataplane worker's client of the control plane's store over its IPC ring pair: the
// dataplane half of DESIGN.md's durability rule (StoreAppend / StoreCancel / StoreAck /
// DrainRequest / PushHint out, batched per loop turn; AppendDurable / DrainResponse back), a
// bounded hold of requests while the control plane is away, and the hand-off of every other
// control-plane push to the worker (the cp_to_dp ring has one reader: this client).
//
//   StoreClient store(options, callbacks);
//   store.attach(*make_store_link(link, worker));       // after each handshake
//   auto r = store.append(deliver, recipients, client_msg_id, cookie);
//   store.device_acked(r.append_id, device);            // a recipient acked online
//   store.poll(now_ns);                                  // once per loop turn: read, then flush
//
// Callbacks run inside poll() only; they may call append/device_acked/ack_stored/drain/
// forget_drains/push_hint, never attach/detach/poll.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "flatbuffers/flatbuffers.h"
#include "platform/ipc/client.h"
#include "platform/ipc/envelope.h"
#include "platform/shm/ring.h"
#include "schemas/ipc_generated.h"
#include "schemas/wire_generated.h"

namespace herald::dataplane {

struct StoreClientOptions {
  // This dataplane process start (Hello.instance_id): outcomes for another one are ignored.
  uint64_t instance_id = 0;
  uint16_t worker = 0;
  uint16_t workers = 1;
  uint16_t node_id = 0;
  // Appends without an outcome (held or sent): the pending-store limit. Beyond it append()
  // refuses and the caller answers the sender StoreUnavailable.
  uint32_t max_pending_appends = 4096;
  // Records waiting to go on the ring (the control plane away, the ring full), appends
  // included. Beyond them append() refuses and the other requests are dropped (counted).
  uint32_t max_held_records = 8192;
  uint64_t max_held_bytes = 16u << 20;
  // The largest record accepted while no ring is attached (a ring's own limit applies after).
  uint32_t max_record_bytes = 64u << 10;
  // Drains in progress (one per device being drained, normally).
  uint32_t max_drains = 1024;
  // StoreCancel devices gathered in one loop turn.
  uint32_t max_cancels_per_turn = 4096;
  // Records read from the cp_to_dp ring per poll().
  uint32_t max_records_per_poll = 256;
  // A Heartbeat (with the held gauges) this often while attached; 0: none.
  uint64_t heartbeat_interval_ns = 1'000'000'000;
  // DrainStatus.Busy: ask again after this, doubling up to the max.
  uint64_t drain_retry_min_ns = 1'000'000;
  uint64_t drain_retry_max_ns = 256'000'000;
  // A sent drain with no response at all for this long is asked again (the control plane
  // drops a response its ring cannot take; the dataplane re-asks).
  uint64_t drain_timeout_ns = 5'000'000'000;
  // An append sent this long ago without an outcome is sent again (the control plane answers
  // a repeat of a pending or durable message id with that message's outcome): the safety net
  // for records lost in a ring the control plane had to re-create. 0: never.
  uint64_t append_resend_ns = 30'000'000'000;
  // Bytes reserved up front in each record buffer. 0: a buffer grows on its first use and keeps
  // its capacity (free buffers are reused last-in first-out, so only the working set grows).
  uint32_t initial_record_bytes = 0;
};

// The worker's ends of its ring pair. The segment they map (ipc::ControlPlaneLink) must outlive
// the attachment.
struct StoreLink {
  shm::RingProducer to_cp;                // dp_to_cp, doorbell set to the control plane's
  shm::RingConsumer from_cp;              // cp_to_dp
  std::span<std::byte> from_cp_region;    // for the sleep announcement
  uint64_t controlplane_instance_id = 0;  // from the handshake: a new one = a restart
};
// Worker `worker`'s ends of a link made by ipc::connect_to_controlplane.
absl::StatusOr<StoreLink> make_store_link(const ipc::ControlPlaneLink& link, uint16_t worker);

// Why append() refused (the caller answers the sender StoreUnavailable).
enum class AppendRefusal : uint8_t {
  kNone = 0,
  kPendingFull,   // max_pending_appends appends await their outcome
  kHeldFull,      // max_held_records / max_held_bytes reached (the control plane away)
  kTooLarge,      // the record exceeds the ring's (or max_record_bytes) limit
  kNoRecipients,  // nothing to store
  kCount,
};
inline constexpr size_t kAppendRefusalCount = static_cast<size_t>(AppendRefusal::kCount);

struct AppendResult {
  uint64_t append_id = 0;  // 0 when refused
  AppendRefusal refusal = AppendRefusal::kNone;
  bool ok() const { return refusal == AppendRefusal::kNone; }
};

// What device_acked() found.
enum class AckProgress : uint8_t {
  kUnknown,   // no such pending append (already resolved), or not one of its recipients
  kPending,   // other recipients have not acked yet
  kAllAcked,  // every recipient acked: the sender may have its ServerAck now
};

// An append's outcome, exactly once per append_id. Only kDurable and kCancelled (every
// recipient acked) allow a ServerAck; the others are errors for the sender.
struct StoreOutcome {
  uint64_t append_id = 0;
  uint64_t cookie = 0;  // the caller's, from append()
  ipc::AppendStatus status = ipc::AppendStatus::Durable;
  // Recipients whose queue was full (status Durable: the others are durable; QueueFull: all).
  // Valid only during the callback.
  std::span<const wire::DeviceAddress> queue_full;
};

// One DrainResponse for a drain() (Busy is retried internally and never shows here).
struct DrainBatch {
  uint64_t request_id = 0;
  uint64_t cookie = 0;
  wire::DeviceAddress device;
  ipc::DrainStatus status = ipc::DrainStatus::Ok;  // Ok, StoreError or Rejected
  // Oldest first (queue order, which is not id order), each after the previous batch's last:
  // repeats (a re-asked drain) are filtered out. Valid only during the callback.
  std::span<const wire::Deliver* const> messages;
  // DrainResponse.more: the queue holds more after these (another batch of this request may
  // follow, or the request's limits were reached: the caller asks again, from its cursor, as
  // the device acknowledges). False: the queue is drained and the request is over.
  bool more = false;
};

struct StoreClientCallbacks {
  std::function<void(const StoreOutcome&)> on_outcome;
  std::function<void(const DrainBatch&)> on_drain;
  // Optional: each control-plane outcome's latency, from the append's (last) send to the
  // answer (the counters' dp.store.append_latency_ns).
  std::function<void(uint64_t latency_ns)> on_append_latency;
};

// Plain counters of one worker's store client.
struct StoreClientStats {
  uint64_t appends = 0;  // taken by append()
  uint64_t append_refused[kAppendRefusalCount] = {};
  uint64_t outcomes[static_cast<size_t>(ipc::AppendStatus::MAX) + 1] = {};  // reported, by status
  uint64_t cancelled_locally = 0;  // every recipient acked before the append left: not sent
  uint64_t outcomes_unknown = 0;   // an outcome for no pending append (a repeat after a re-send)
  uint64_t outcomes_other_instance = 0;  // AppendDurable records for another dataplane instance
  uint64_t appends_resent = 0;           // re-sent to a restarted control plane
  uint64_t appends_resent_timeout = 0;   // re-sent after append_resend_ns without an outcome
  uint64_t appends_too_large = 0;  // held, then larger than the attached ring allows: Rejected
  uint64_t device_acks = 0;        // device_acked() calls that found their append
  uint64_t device_acks_unknown = 0;
  uint64_t cancel_devices = 0;   // devices put in StoreCancel records
  uint64_t cancels_dropped = 0;  // over max_cancels_per_turn or held limits (a duplicate later)
  uint64_t store_acks = 0;       // StoreAck records
  uint64_t store_ack_ids = 0;
  uint64_t store_acks_dropped = 0;  // held limits (the device gets a duplicate it drops by id)
  uint64_t records_dropped = 0;     // send_record(): held limits or too large
  uint64_t push_hints = 0;
  uint64_t push_hints_dropped = 0;
  uint64_t drains = 0;             // drain() requests taken
  uint64_t drains_refused = 0;     // max_drains or held limits
  uint64_t drains_superseded = 0;  // a newer drain() for the same device replaced it
  uint64_t drain_requests = 0;     // DrainRequest records (first asks and re-asks)
  uint64_t drain_busy = 0;         // DrainStatus.Busy answers (asked again after a backoff)
  uint64_t drain_timeouts = 0;     // asked again after drain_timeout_ns of silence
  uint64_t drain_resends = 0;      // asked again of a restarted control plane
  uint64_t drain_batches = 0;      // batches handed to on_drain
  uint64_t drain_messages = 0;
  uint64_t drain_repeats = 0;            // messages at or before the drain's cursor, filtered
  uint64_t drain_responses_dropped = 0;  // for a forgotten (session left) or unknown drain
  uint64_t drain_responses_other_instance = 0;
  uint64_t records_in[ipc::kRecordTypeCount] = {};      // verified cp_to_dp records, by type
  uint64_t records_out[ipc::kRecordTypeCount] = {};     // dp_to_cp records, by type
  uint64_t bad_records[ipc::kEnvelopeErrorCount] = {};  // skipped: not a valid Envelope
  uint64_t malformed = 0;         // a valid Envelope missing what its type needs (skipped)
  uint64_t unexpected = 0;        // a dp_to_cp record type on the cp_to_dp ring (skipped)
  uint64_t pushes_unhandled = 0;  // a push type without a handler (skipped)
  uint64_t seq_gaps = 0;          // Envelope.seq not following on (a bug on the other side)
  uint64_t commits = 0;           // dp_to_cp ring commits (one per loop turn with records)
  uint64_t ring_full = 0;         // flushes stopped by a full ring
  uint64_t ring_corrupt = 0;      // a ring found corrupt: away until the next attach
  uint64_t attaches = 0;
  uint64_t detaches = 0;
  uint64_t controlplane_restarts = 0;  // attaches to a new control-plane instance
  uint64_t heartbeats_out = 0;
};

class StoreClient {
 public:
  using PushFn = std::function<void(const ipc::Envelope&)>;

  StoreClient(const StoreClientOptions& options, StoreClientCallbacks callbacks);
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  // A record type the store does not own (SessionKeyPush, RevocationPush, GroupMembershipPush,
  // ConfigPush, DeviceListResponse, DeviceListPush, later additions) goes to `fn`; the Envelope
  // is valid only during the call. Types without a handler are counted and skipped. Hello and
  // Heartbeat may have an observer too. Not for the store's own types (checked).
  void set_push_handler(ipc::Record type, PushFn fn);

  // The control plane is reachable over `link` (after a handshake). Writes our Hello first.
  // When the control plane is a new instance, every append and drain it may have lost is sent
  // again, in their original order, before the requests held meanwhile.
  void attach(StoreLink link);
  // The control plane went away (socket hang-up): requests are held from now on.
  void detach();
  bool attached() const { return link_.has_value(); }

  // Stores `message` for `recipients` (devices that may not ack it online). The outcome comes
  // through on_outcome. Nothing but the control plane's AppendStatus.Durable is reported
  // durable.
  [[nodiscard]] AppendResult append(const wire::Deliver& message,
                                    std::span<const wire::DeviceAddress> recipients,
                                    uint64_t client_msg_id, uint64_t cookie = 0);
  // `device` acknowledged append `append_id` online before its outcome: a StoreCancel for it
  // leaves with this turn's batch. `recipient_index` (optional) is the device's position in the
  // recipients given to append(): a group fan-out then costs no search.
  AckProgress device_acked(uint64_t append_id, const wire::DeviceAddress& device,
                           uint32_t recipient_index = UINT32_MAX);
  // `device` acknowledged these queued messages (from a drain): a StoreAck. False: dropped
  // (held limits; counted: the entries stay and the device later drops the repeat by id).
  bool ack_stored(const wire::DeviceAddress& device, std::span<const wire::ServerMsgId> ids);
  // Asks for up to max_messages / max_bytes of `device`'s queue strictly after `after`
  // (nullptr: from the start); 0 = the control plane's cap. Returns the request id, 0 when
  // refused (max_drains or held limits). One drain per device: a new one supersedes the
  // previous (its late responses are dropped; the new one covers them from `after`). A request
  // ends with a response whose more is false, an error status, max_messages messages, or when
  // superseded or forgotten. One that got no answer in drain_timeout_ns is asked again.
  uint64_t drain(const wire::DeviceAddress& device, const wire::ServerMsgId* after,
                 uint32_t max_messages, uint32_t max_bytes, uint64_t cookie = 0);
  // The device's session left: its drains end now; responses still coming are dropped.
  void forget_drains(const wire::DeviceAddress& device);
  // A message was stored for offline `device`: tell the push gateway. False: dropped (counted).
  bool push_hint(const wire::DeviceAddress& device, const wire::ServerMsgId& id,
                 const wire::AccountId& sender, uint16_t content_type);

  // Any other dataplane -> control plane record (e.g. DeviceListRequest): build its table in
  // builder(), then send_record(). Held and bounded like the store's requests; false: dropped
  // (held limits or too large; counted in records_dropped).
  flatbuffers::FlatBufferBuilder& builder() {
    builder_.Clear();
    return builder_;
  }
  template <typename T>
  bool send_record(flatbuffers::Offset<T> record) {
    return send_record(ipc::RecordTraits<T>::enum_value, record.Union());
  }
  bool send_record(ipc::Record type, flatbuffers::Offset<void> record);

  // Once per loop turn: reads the cp_to_dp ring (callbacks run here), retries drains that are
  // due, then puts every request of this turn (and whatever was held) on the dp_to_cp ring
  // with one commit. Returns records read + written.
  size_t poll(uint64_t now_ns);
  // Only the write half of poll() (e.g. right after a burst of appends).
  size_t flush(uint64_t now_ns);

  // Adaptive mode: announce on the cp_to_dp ring that the worker sleeps (on its doorbell);
  // false when records arrived meanwhile (do not sleep). woke() after the sleep.
  [[nodiscard]] bool prepare_to_sleep();
  void woke();

  // Gauges (the Heartbeat carries the first two).
  uint32_t held_appends() const { return held_appends_; }
  uint64_t held_bytes() const { return held_bytes_; }
  size_t held_records() const { return held_records_; }
  size_t pending_appends() const { return pending_appends_; }
  size_t drains_in_progress() const { return drains_in_progress_; }
  const StoreClientStats& stats() const { return stats_; }

 private:
  enum class SlotState : uint8_t { kFree, kHeld, kSent };

  // A record built and waiting, or an append's record kept until its outcome (for a re-send).
  struct Buffer {
    std::vector<uint8_t> bytes;  // a finished Envelope, seq to be patched when sent
    ipc::Record type = ipc::Record::NONE;
    uint32_t gen = 0;    // bumped when freed: queue entries for an older use are stale
    uint64_t owner = 0;  // append_id or drain request id (0: none)
    bool queued = false;
  };
  struct QueueEntry {
    uint32_t buffer;
    uint32_t gen;
  };
  struct AppendSlot {
    uint64_t id = 0;  // append_id while in use
    uint32_t gen = 0;
    SlotState state = SlotState::kFree;
    uint32_t buffer = 0;
    uint64_t cookie = 0;
    uint64_t sent_order = 0;
    uint64_t sent_ns = 0;
    bool ever_sent = false;
    bool resent = false;
    wire::ServerMsgId msg_id;
    std::vector<wire::DeviceAddress> recipients;
    std::vector<uint8_t> acked;
    uint32_t acked_count = 0;
  };
  struct DrainSlot {
    uint64_t id = 0;
    uint32_t gen = 0;
    SlotState state = SlotState::kFree;  // kHeld: queued or backing off; kSent: on the ring
    wire::DeviceAddress device;
    bool has_cursor = false;
    wire::ServerMsgId cursor;
    uint32_t max_messages = 0;
    uint32_t max_bytes = 0;
    uint64_t cookie = 0;
    uint64_t sent_ns = 0;
    uint64_t retry_ns = 0;  // kHeld and retry_ns != 0: backing off until then
    uint64_t backoff_ns = 0;
    bool answered = false;  // a response came since the last (re)send: no timeout re-ask
    uint32_t received = 0;  // messages received for this request
    // Ids returned since drain(), over its re-asks (each at most max_messages): a re-ask that
    // restarts at the head (its cursor acked meanwhile) repeats some; they are filtered.
    std::vector<wire::ServerMsgId> seen;
  };
  struct Cancel {
    uint64_t append_id;
    wire::DeviceAddress device;
  };
  struct LocalOutcome {
    uint64_t append_id;
    uint64_t cookie;
    ipc::AppendStatus status;
  };

  // Buffers and the held queue.
  std::optional<uint32_t> take_buffer();
  void free_buffer(uint32_t index);
  bool room_for(size_t bytes) const;
  // Copies the builder's finished Envelope into a new buffer queued at the back.
  std::optional<uint32_t> queue_built(ipc::Record type, uint64_t owner);
  void queue_push_back(uint32_t buffer);
  void queue_push_front(uint32_t buffer);
  void unqueue_accounting(Buffer& b);
  void compact_fifo();
  void fifo_pop();

  AppendSlot* find_append(uint64_t append_id);
  DrainSlot* find_drain(uint64_t request_id);
  void release_append(AppendSlot& slot);
  void release_drain(DrainSlot& slot);
  bool queue_drain_request(DrainSlot& slot);
  void build_cancels();

  size_t write(uint64_t now_ns);
  bool put_hello();
  void maybe_heartbeat(uint64_t now_ns);
  void drain_timers(uint64_t now_ns);
  void append_timers(uint64_t now_ns);
  size_t read(uint64_t now_ns);
  void dispatch(uint32_t ring_type, std::span<const std::byte> payload, uint64_t now_ns);
  void on_append_durable(const ipc::AppendDurable& d, uint64_t now_ns);
  void on_drain_response(const ipc::DrainResponse& r, uint64_t now_ns);
  void deliver_local_outcomes();
  void mark_broken();

  const StoreClientOptions options_;
  StoreClientCallbacks callbacks_;
  PushFn push_handlers_[ipc::kRecordTypeCount];

  std::optional<StoreLink> link_;
  // read()'s views, kept here: a local array is zeroed on every call, and read runs every loop
  // turn (nothing read() dispatches to polls the store again).
  shm::RecordView read_views_[64];
  bool hello_due_ = false;
  bool broken_ = false;        // the attached rings are corrupt: away until the next attach
  bool lost_records_ = false;  // a ring broke: what it held is lost, re-send at the next attach
  uint64_t controlplane_instance_ = 0;
  uint64_t out_seq_ = 1;
  uint64_t in_seq_ = 0;  // next expected cp_to_dp Envelope.seq; 0: take the next one
  uint64_t last_heartbeat_ns_ = 0;
  uint64_t send_order_ = 0;
  uint64_t next_drain_timer_ns_ = 0;  // earliest drain retry or timeout (0: none)
  uint64_t next_append_check_ns_ = 0;

  std::vector<Buffer> buffers_;
  std::vector<uint32_t> free_buffers_;
  std::vector<QueueEntry> fifo_;  // circular, capacity buffers_.size()
  size_t fifo_head_ = 0;
  size_t fifo_size_ = 0;     // entries, stale ones (freed buffers) included
  size_t held_records_ = 0;  // live entries
  uint32_t held_appends_ = 0;
  uint64_t held_bytes_ = 0;

  std::vector<AppendSlot> appends_;
  std::vector<uint32_t> free_appends_;
  size_t pending_appends_ = 0;
  std::vector<DrainSlot> drains_;
  std::vector<uint32_t> free_drains_;
  size_t drains_in_progress_ = 0;
  std::vector<Cancel> cancels_;
  std::vector<LocalOutcome> local_outcomes_;
  std::vector<uint32_t> scratch_;                    // slot indices (re-send order)
  std::vector<wire::DeviceAddress> cancel_devices_;  // one StoreCancel's devices
  std::vector<const wire::Deliver*> drained_;        // one batch's messages
  flatbuffers::FlatBufferBuilder builder_{1024};
  StoreClientStats stats_;
};

}  // namespace herald::dataplane

// The control plane's IPC server: owns the shared segment (one ring pair per dataplane worker)
// and the doorbells, hands them to the dataplane over the IPC Unix socket, drains the
// dataplane's records into an IpcHandler and sends records back, all on the control plane's
// io_uring loop. Outlives dataplane restarts: the segment stays, a restarted dataplane attaches
// again and both sides resume at the published ring positions (at-least-once, ARCHITECTURE 19).
//
//   auto server = IpcServer::start(*loop, IpcServerOptions::from_config(config), &handler);
//   auto& b = (*server)->builder();                   // build one record table in it, then
//   SendResult r = (*server)->send(worker, CreateAppendDurable(b, ...));
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flatbuffers/flatbuffers.h"
#include "platform/config/config.h"
#include "platform/ipc/envelope.h"
#include "platform/ipc/handshake.h"
#include "platform/ipc/segment.h"
#include "platform/shm/doorbell.h"
#include "platform/shm/ring.h"
#include "platform/uring/event_loop.h"

namespace herald::controlplane {

// What the storage and registration owners implement. Called on the loop's thread.
class IpcHandler {
 public:
  virtual ~IpcHandler() = default;
  // One verified record from `worker`'s dp_to_cp ring, in ring order. The Envelope points into
  // the ring and is valid only during the call: copy what you keep. Records may arrive twice
  // after a dataplane restart (at-least-once), so handling must be idempotent. Hello and
  // Heartbeat arrive here too (the server has already noted them). May call IpcServer::send.
  virtual void on_record(uint16_t worker, const ipc::Envelope& envelope) = 0;
  // A dataplane finished the handshake; `restarted` when its instance id differs from the
  // previous dataplane's (its pending requests died with it).
  virtual void on_dataplane_connected(uint64_t instance_id, bool restarted) {
    (void)instance_id;
    (void)restarted;
  }
  virtual void on_dataplane_disconnected() {}
};

struct IpcServerOptions {
  std::string socket_path;
  uint16_t workers = 1;
  uint64_t ring_capacity_bytes = 1 << 20;
  uint32_t max_record_bytes = 0;  // 0: the ring's maximum (half the ring)
  // Records taken from one worker's ring per drain pass before the loop serves other work;
  // a worker with more is drained again right after (the server rings its own doorbell).
  uint32_t drain_batch_records = 256;
  // Records and bytes per worker held when its cp_to_dp ring is full. Beyond them send()
  // returns kFull and keeps nothing.
  uint32_t backlog_max_records = 4096;
  uint64_t backlog_max_bytes = 16u << 20;
  // How often a non-empty backlog is retried (also retried on every doorbell).
  uint64_t backlog_retry_ns = 1'000'000;
  // A connection that has not sent its Hello by then is dropped.
  uint32_t handshake_timeout_ms = 5000;
  // Housekeeping period: handshake deadlines, control-plane heartbeats.
  uint64_t tick_ns = 100'000'000;
  // Heartbeat sent to every worker while a dataplane is connected; 0: none.
  uint32_t heartbeat_interval_ms = 1000;
  // The counters segment, handed to the dataplane with the IPC segment (not owned; -1: none).
  int counters_fd = -1;
  uint16_t node_id = 0;
  std::string build;

  // socket path, workers and ring size from the node config.
  static IpcServerOptions from_config(const config::Config& config);
};

enum class SendResult : uint8_t {
  kSent,      // in the ring; the worker's doorbell was rung if it sleeps
  kQueued,    // the ring is full (or older records wait): held in the worker's backlog, and
              // sent in order as the worker frees room. Counted in backlogged.
  kFull,      // the backlog is at its limit too: nothing was kept. The caller must handle it
              // (retry later, or treat the worker as stalled). Counted in backlog_full.
  kTooLarge,  // larger than the ring's record limit; never fits. Counted.
  kBroken,    // the worker's ring is corrupt until the dataplane reconnects. Counted.
};
const char* send_result_name(SendResult result);

// Plain counters, written on the loop thread; the control plane maps them into the counters
// segment.
struct IpcServerStats {
  uint64_t records_in[ipc::kRecordTypeCount] = {};      // verified, dispatched, by Record type
  uint64_t records_out[ipc::kRecordTypeCount] = {};     // into a cp_to_dp ring, by Record type
  uint64_t bad_records[ipc::kEnvelopeErrorCount] = {};  // skipped, by EnvelopeError
  uint64_t seq_gaps = 0;      // a worker's Envelope.seq skipped or went back (a bug)
  uint64_t ring_corrupt = 0;  // rings found corrupt (ring.h faults); connection dropped
  uint64_t ring_full = 0;     // cp_to_dp reservations that found no room
  uint64_t backlogged = 0;    // send() -> kQueued
  uint64_t backlog_full = 0;  // send() -> kFull
  uint64_t too_large = 0;     // send() -> kTooLarge
  uint64_t broken_sends = 0;  // send() -> kBroken
  uint64_t drain_passes = 0;
  uint64_t doorbell_wakeups = 0;
  uint64_t connects = 0;
  uint64_t disconnects = 0;
  uint64_t dataplane_restarts = 0;  // a connect with a new instance id after an earlier one
  uint64_t rejected_bad_hello = 0;
  uint64_t rejected_version = 0;
  uint64_t rejected_workers = 0;
  uint64_t rejected_busy = 0;
  uint64_t rejected_internal = 0;
  uint64_t handshake_timeouts = 0;
  uint64_t unexpected_messages = 0;  // socket messages after the handshake (ignored)
  uint64_t accept_errors = 0;
  uint64_t heartbeats_in = 0;
  uint64_t heartbeats_out = 0;
  uint64_t last_heartbeat_ns = 0;       // monotonic, when the last DP heartbeat was read
  uint64_t dataplane_held_appends = 0;  // from the last DP heartbeat
};

class IpcServer {
 public:
  // Creates the segment and doorbells, listens on options.socket_path (replacing a stale socket
  // file) and arms accept and the doorbell poll on `loop`. `handler` must outlive the server.
  static absl::StatusOr<std::unique_ptr<IpcServer>> start(uring::EventLoop& loop,
                                                          IpcServerOptions options,
                                                          IpcHandler* handler);
  // Cancels its operations, waits for them on the loop (do not call from a callback), closes
  // the connection and removes the socket file.
  ~IpcServer();
  IpcServer(const IpcServer&) = delete;
  IpcServer& operator=(const IpcServer&) = delete;

  // A cleared builder for the next send(): build one record table in it, then send().
  flatbuffers::FlatBufferBuilder& builder() {
    builder_.Clear();
    return builder_;
  }
  // Wraps `record` (built in builder()) in an Envelope with the worker's next seq and puts it on
  // the worker's cp_to_dp ring, or in its backlog; see SendResult.
  template <typename T>
  [[nodiscard]] SendResult send(uint16_t worker, flatbuffers::Offset<T> record) {
    return send_record(worker, ipc::RecordTraits<T>::enum_value, record.Union());
  }
  [[nodiscard]] SendResult send_record(uint16_t worker, ipc::Record type,
                                       flatbuffers::Offset<void> record);

  // Drains every dp_to_cp ring now (the doorbell does it on its own; tests and shutdown use it).
  void drain();

  // Stored in the Hello the next dataplane receives (the store's highest ServerMsgId time).
  void set_server_msg_time_floor_ms(uint64_t ms) { server_msg_time_floor_ms_ = ms; }

  bool dataplane_connected() const { return state_ == ConnState::kLive; }
  // The connected dataplane's pid (SO_PEERCRED at accept), 0 when none is live: the profiler
  // samples it as process "dataplane" and points perf at it.
  int dataplane_pid() const { return state_ == ConnState::kLive ? peer_pid_ : 0; }
  uint64_t dataplane_instance_id() const { return dp_instance_id_; }
  uint64_t instance_id() const { return instance_id_; }
  const ipc::IpcSegment& segment() const { return segment_; }
  size_t backlog_records(uint16_t worker) const { return workers_[worker].backlog.size(); }
  // Every worker's backlog: records (and their bytes) waiting for room in a full cp_to_dp ring.
  size_t backlog_records_total() const {
    size_t n = 0;
    for (const Worker& w : workers_) n += w.backlog.size();
    return n;
  }
  uint64_t backlog_bytes_total() const {
    uint64_t n = 0;
    for (const Worker& w : workers_) n += w.backlog_bytes;
    return n;
  }
  const IpcServerStats& stats() const { return stats_; }
  const shm::RingConsumerStats& ring_in_stats(uint16_t worker) const {
    return workers_[worker].in.stats();
  }
  const shm::RingProducerStats& ring_out_stats(uint16_t worker) const {
    return workers_[worker].out.stats();
  }

 private:
  enum class ConnState : uint8_t { kNone, kHandshaking, kLive };

  // A whole Envelope waiting for room in a cp_to_dp ring.
  struct Held {
    ipc::Record type;
    std::vector<uint8_t> bytes;
  };

  struct Worker {
    Worker(shm::RingConsumer in_ring, shm::RingProducer out_ring, shm::Doorbell doorbell)
        : in(std::move(in_ring)), out(std::move(out_ring)), dp_doorbell(std::move(doorbell)) {}
    shm::RingConsumer in;   // dp_to_cp
    shm::RingProducer out;  // cp_to_dp
    shm::Doorbell dp_doorbell;
    uint64_t next_in_seq = 0;  // expected Envelope.seq; 0: unknown (take the next one)
    uint64_t next_out_seq = 1;
    bool in_broken = false;
    bool out_broken = false;
    std::deque<Held> backlog;  // in send order; always drained before new records
    uint64_t backlog_bytes = 0;
  };

  IpcServer(uring::EventLoop& loop, IpcServerOptions options, IpcHandler* handler,
            ipc::IpcSegment segment, shm::Doorbell cp_doorbell, shm::UniqueFd listen_fd);
  absl::Status init_workers(std::vector<shm::Doorbell> dp_doorbells);
  void arm();

  static void on_accept(uring::Operation& op, const uring::Completion& c);
  static void on_conn_recv(uring::Operation& op, const uring::Completion& c);
  static void on_doorbell(uring::Operation& op, const uring::Completion& c);
  static void on_tick(uring::Operation& op, const uring::Completion& c);
  static void on_retry(uring::Operation& op, const uring::Completion& c);
  static void on_accept_retry(uring::Operation& op, const uring::Completion& c);

  void handle_hello(size_t bytes);
  void reject(int fd, ipc::RejectCode code, const std::string& reason);
  absl::Status hand_over(int fd);
  void end_connection();
  void drop_connection(const char* why);
  absl::Status repair_broken_rings();

  bool drain_worker(uint16_t w);
  void note_record(uint16_t w, const ipc::Envelope& envelope);
  void flush_backlogs();
  bool flush_backlog(Worker& worker);
  void schedule_retry();
  void send_heartbeats();
  SendResult enqueue(uint16_t w, ipc::Record type, std::span<const std::byte> envelope);

  uring::EventLoop& loop_;
  IpcServerOptions options_;
  IpcHandler* handler_;
  ipc::IpcSegment segment_;
  shm::Doorbell cp_doorbell_;
  shm::UniqueFd listen_fd_;
  std::vector<Worker> workers_;
  flatbuffers::FlatBufferBuilder builder_{1024};
  uint64_t instance_id_;
  uint64_t server_msg_time_floor_ms_ = 0;

  ConnState state_ = ConnState::kNone;
  int conn_fd_ = -1;
  int peer_pid_ = 0;  // of conn_fd_, from SO_PEERCRED
  uint64_t handshake_deadline_ns_ = 0;
  uint64_t dp_instance_id_ = 0;
  uint64_t last_heartbeat_sent_ns_ = 0;
  alignas(8) uint8_t recv_buf_[ipc::kMaxHandshakeBytes];

  uring::Operation accept_op_;
  uring::Operation accept_retry_op_;
  uring::Operation conn_recv_op_;
  uring::Operation doorbell_op_;
  uring::Operation tick_op_;
  uring::Operation retry_op_;
  bool stopping_ = false;
  IpcServerStats stats_;
};

}  // namespace herald::controlplane

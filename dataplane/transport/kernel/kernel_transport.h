// The kernel port backend: `Transport` on kernel TCP sockets, one instance per worker, each with
// its own listening socket on the shared port (SO_REUSEPORT), so the kernel spreads connections
// across workers.
//
// Accepted sockets are io_uring direct descriptors: they live in a registered file table, not
// in the process fd table, so RLIMIT_NOFILE does not bound the connections a process holds. A
// table is itself capped at RLIMIT_NOFILE entries per ring, so the transport runs several
// "socket shards", each a ring of its own (DirectRing) with its own table and buffer ring, as
// many as max_connections needs. The worker's uring::EventLoop watches one eventfd the shards
// signal, so a sleeping worker wakes for them; a worker that polls calls poll() every turn.
//
//   auto t = KernelTransport::create(loop, options);   // binds, listens, sets up the shards
//   (*t)->start(sessions);                             // accepts from here on
//   loop: (*t)->poll(); loop.poll_once(); ...          // or just loop.run(): the eventfd
//         before sleeping: if (!(*t)->prepare_to_sleep()) don't sleep
//   (*t)->stop(); run the loop until (*t)->idle();     // then destroy the transport
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/transport/transport.h"
#include "platform/uring/event_loop.h"

namespace herald::dataplane {

struct KernelTransportOptions {
  // An IPv4 or IPv6 literal ("0.0.0.0", "::", "127.0.0.1", "::1"). IPv6 listeners are
  // IPV6_V6ONLY: a worker that wants both families runs two transports.
  std::string listen_address = "0.0.0.0";
  uint16_t port = 0;  // 0: an ephemeral port (read it back with port())
  uint32_t listen_backlog = 4096;
  TransportLimits limits;
  // Socket shards. A shard's file table holds min(RLIMIT_NOFILE - fd_reserve, shard_capacity)
  // connections (shard_capacity 0: no cap of our own); there are as many shards as
  // max_connections (plus accept_batch slots to refuse over-limit connections with) needs.
  // fd_reserve leaves the process fd table room for everything else (rings, eventfds, files).
  uint32_t shard_capacity = 0;
  uint32_t fd_reserve = 256;
  // Accepts kept in flight, each into a table slot counted as taken: the table never fills
  // under the kernel (which would make it drop the connection), and over-limit connections are
  // refused (RST) with a slot of their own.
  uint32_t accept_batch = 16;
  // Each shard ring's SQ and CQ sizes (the CQ overflows into the kernel, nothing is lost).
  uint32_t shard_sq_entries = 512;
  uint32_t shard_cq_entries = 4096;
  // The provided-buffer ring every connection of a shard receives into: the kernel picks a
  // buffer only when bytes arrive, so idle connections hold none. count is a power of two up to
  // 32768; each shard has its own (a buffer ring belongs to one io_uring).
  uint32_t recv_buffer_count = 1024;
  uint32_t recv_buffer_size_bytes = 16 * 1024;
  // Send chunks: queued bytes are copied into chunks of this size from a per-transport pool;
  // small sends coalesce into the last chunk, and each chunk goes out in one send request.
  uint32_t send_chunk_bytes = 16 * 1024;
  // Free chunks kept for reuse; beyond this, chunks freed after a burst go back to the heap.
  uint32_t send_chunk_cache = 4096;
  // A graceful close waits this long for the peer's FIN after ours before closing anyway.
  uint32_t close_linger_ms = 5000;
  // After accept fails (ENFILE: the shard's table was full; ENOMEM...), that shard resumes
  // accepting after this pause rather than spinning on the error.
  uint32_t accept_retry_ms = 100;
};

// Plain members written by the worker's thread only; the lead mirrors them into the counters
// segment (names in README.md).
struct KernelTransportStats {
  uint64_t accepts = 0;             // connections taken on
  uint64_t refused_over_limit = 0;  // accepted by the kernel, closed at once (max_connections)
  uint64_t accept_errors = 0;       // accepts that ended in an error (ENFILE...), then paused
  uint64_t table_full = 0;    // accepts that found a shard's file table full: the kernel had taken
                              // the connection and dropped it (never happens under the accounting)
  uint64_t close_errors = 0;  // close_direct / SO_LINGER requests that failed
  uint32_t shards = 0;        // socket shards (rings with a file table each)
  uint32_t table_slots = 0;   // file table entries over all shards
  uint64_t bytes_in = 0;      // bytes received (including those dropped while closing)
  uint64_t bytes_out = 0;     // bytes the kernel took
  uint64_t recv_buffers_exhausted = 0;  // receives that found the buffer ring empty (ENOBUFS)
  uint64_t recv_rearms = 0;             // receives armed: at accept, on resume, to drain at close
  uint64_t sends = 0;                   // send() / send_gather() calls accepted
  uint64_t send_requests = 0;           // send requests handed to the kernel
  uint64_t partial_sends = 0;           // send requests the kernel took only part of
  uint64_t send_chunks_allocated = 0;   // chunks taken from the heap (the pool was empty)
  uint64_t queue_full = 0;              // send() refused with kQueueFull
  uint64_t writable_events = 0;         // on_writable calls
  uint64_t paused_bytes = 0;            // bytes held back because reading was paused
  uint64_t unknown_id_calls = 0;        // calls naming a connection that is not (or no longer) open
  uint64_t linger_timeouts = 0;         // graceful closes that gave up waiting for the peer's FIN
  std::array<uint64_t, static_cast<size_t>(CloseReason::kCount)> closes{};  // per CloseReason
};

class KernelTransport final : public Transport {
 public:
  // Creates the listening socket (SO_REUSEADDR, SO_REUSEPORT, TCP_NODELAY, which accepted
  // sockets inherit) and the shards; `loop` must outlive the transport. Fails with a message
  // naming what is missing on a kernel without direct-descriptor sockets (5.19) or setsockopt
  // by uring_cmd (6.7), or when RLIMIT_NOFILE leaves no room for a table. Nothing is accepted
  // before start().
  static absl::StatusOr<std::unique_ptr<KernelTransport>> create(
      uring::EventLoop& loop, const KernelTransportOptions& options);
  // Stops if needed and runs the loop until every operation has ended. Must not be called from
  // inside one of the loop's callbacks.
  ~KernelTransport() override;
  KernelTransport(const KernelTransport&) = delete;
  KernelTransport& operator=(const KernelTransport&) = delete;

  void start(TransportEvents& events) override;
  SendResult send(ConnectionId id, std::span<const uint8_t> bytes) override;
  SendResult send_gather(ConnectionId id, std::span<const std::span<const uint8_t>> parts) override;
  void close(ConnectionId id, CloseMode mode) override;
  void set_reading(ConnectionId id, bool reading) override;
  uint32_t queued_bytes(ConnectionId id) const override;
  uint32_t connections() const override { return open_connections_; }
  void stop() override;

  // The port the listening socket is bound to (the ephemeral one when options.port was 0).
  uint16_t port() const { return port_; }
  // One polling turn: submits what is queued on every shard and handles what completed.
  // Returns the work done. A worker that calls it keeps the shards' eventfd quiet until
  // prepare_to_sleep().
  uint32_t poll();
  // Before the worker sleeps in its loop: re-enables the shards' eventfd so a completion wakes
  // the loop. False when there is work already (do not sleep; poll again).
  bool prepare_to_sleep();
  uint32_t shards() const { return static_cast<uint32_t>(shards_.size()); }
  // Which shard a connection is on (ids carry it).
  static uint32_t shard_of(ConnectionId id) { return static_cast<uint32_t>(id >> 24) & 0xff; }
  // User-space bytes held per open connection beyond the shared pools (slot + bookkeeping).
  static size_t connection_bytes();
  // Testing: occupies `count` slots of shard `shard`'s table behind the accounting's back
  // (sockets created straight into it), as if something else used the table; the next accepts
  // then meet a full table. release_table_for_testing() frees them again.
  void occupy_table_for_testing(uint32_t shard, uint32_t count);
  void release_table_for_testing();
  // After stop(): true once the listener and every connection are closed and nothing of this
  // transport is in flight on the loop.
  bool idle() const;
  const KernelTransportStats& stats() const;
  const KernelTransportOptions& options() const { return options_; }

 private:
  struct Connection;  // kernel_transport.cc
  struct Chunk;
  struct Shard;

  KernelTransport(uring::EventLoop& loop, const KernelTransportOptions& options, int listen_fd,
                  uint16_t port, int event_fd);

  static void on_doorbell(uring::Operation& op, const uring::Completion& c);
  static void on_kick(uring::Operation& op, const uring::Completion& c);

  uint32_t pump();
  uint32_t reap_shard(Shard& shard);
  void handle(Shard& shard, uint64_t user_data, int32_t res, uint32_t flags);
  void want_pump();
  void arm_accepts();
  void on_accept(Shard& shard, uint32_t accept_slot, int32_t res);
  void on_accept_retry(Shard& shard, int32_t res);
  void accept_one(Shard& shard, uint32_t file_index, const PeerAddress& peer);
  void close_direct(Shard& shard, uint32_t file_index, bool reset);
  void maybe_close_listener();
  Connection* find(ConnectionId id) const;  // counts unknown ids
  SendResult enqueue(Connection& conn, std::span<const std::span<const uint8_t>> parts);
  void send_head(Connection& conn);
  void arm_recv(Connection& conn);
  void on_recv(Connection& conn, int32_t res, uint32_t flags);
  void recv_ended(Connection& conn, int32_t res);
  void on_send(Connection& conn, int32_t res);
  void on_timer(Connection& conn, int32_t res);
  void on_shutdown(Connection& conn, int32_t res);
  void cancel_op(Connection& conn, uint8_t kind);
  void cancel_recv(Connection& conn);
  void schedule(Connection& conn);  // finish work from the loop, outside the caller's stack
  void run_scheduled();
  void resume(Connection& conn);
  void begin_close(Connection& conn, CloseReason reason);
  void send_fin(Connection& conn);
  void teardown(Connection& conn, CloseReason reason, bool reset);
  void maybe_finish(Connection& conn);
  Chunk* take_chunk();
  void release_chunk(Chunk* chunk);
  void release_chunks(Connection& conn);

  uring::EventLoop& loop_;
  const KernelTransportOptions options_;
  int listen_fd_;
  const uint16_t port_;
  int event_fd_;  // every shard ring signals it; the loop polls it
  bool multishot_recv_;
  TransportEvents* events_ = nullptr;
  bool stopping_ = false;
  bool driven_ = false;   // the worker calls poll(): no kick needed, eventfd quiet while busy
  bool pumping_ = false;  // inside pump(): what is queued goes out at its end
  uring::Operation doorbell_op_;
  uring::Operation kick_op_;
  std::vector<std::unique_ptr<Shard>> shards_;
  uint32_t accepts_in_flight_ = 0;
  uint32_t open_connections_ = 0;
  // Connections with work to finish from the loop (the old per-connection nop, without an SQE).
  std::vector<Connection*> scheduled_;
  std::vector<Connection*> running_;
  Chunk* free_chunks_ = nullptr;
  uint32_t free_chunk_count_ = 0;
  mutable KernelTransportStats stats_;
};

}  // namespace herald::dataplane

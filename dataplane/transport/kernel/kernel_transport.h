// The kernel port backend: `Transport` on kernel TCP sockets driven by one worker's io_uring
// loop (platform/uring). One instance per worker and loop, each with its own listening socket
// on the shared port (SO_REUSEPORT), so the kernel spreads connections across workers.
//
//   auto t = KernelTransport::create(loop, options);   // binds and listens
//   (*t)->start(sessions);                             // accepts from here on
//   loop.run();                                        // events arrive on this thread
//   (*t)->stop(); run the loop until (*t)->idle();     // then destroy the transport
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/transport/transport.h"
#include "platform/uring/buffer_ring.h"
#include "platform/uring/event_loop.h"

namespace herald::dataplane {

struct KernelTransportOptions {
  // An IPv4 or IPv6 literal ("0.0.0.0", "::", "127.0.0.1", "::1"). IPv6 listeners are
  // IPV6_V6ONLY: a worker that wants both families runs two transports.
  std::string listen_address = "0.0.0.0";
  uint16_t port = 0;  // 0: an ephemeral port (read it back with port())
  uint32_t listen_backlog = 4096;
  TransportLimits limits;
  // The provided-buffer ring every connection of this transport receives into: the kernel
  // picks a buffer only when bytes arrive, so idle connections hold none. count is a power of
  // two up to 32768.
  uint32_t recv_buffer_count = 1024;
  uint32_t recv_buffer_size_bytes = 16 * 1024;
  // Send chunks: queued bytes are copied into chunks of this size from a per-transport pool;
  // small sends coalesce into the last chunk, and each chunk goes out in one send request.
  uint32_t send_chunk_bytes = 16 * 1024;
  // Free chunks kept for reuse; beyond this, chunks freed after a burst go back to the heap.
  uint32_t send_chunk_cache = 4096;
  // A graceful close waits this long for the peer's FIN after ours before closing anyway.
  uint32_t close_linger_ms = 5000;
  // After accept fails for want of descriptors or memory (EMFILE, ENFILE, ENOMEM), accepting
  // resumes after this pause rather than spinning on the error.
  uint32_t accept_retry_ms = 100;
};

// Plain members written by the worker's thread only; the lead mirrors them into the counters
// segment (names in README.md).
struct KernelTransportStats {
  uint64_t accepts = 0;                 // connections taken on
  uint64_t refused_over_limit = 0;      // accepted by the kernel, closed at once (max_connections)
  uint64_t accept_errors = 0;           // accepts that ended in an error (EMFILE...), then paused
  uint64_t bytes_in = 0;                // bytes received (including those dropped while closing)
  uint64_t bytes_out = 0;               // bytes the kernel took
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
  // Creates the listening socket (SO_REUSEADDR, SO_REUSEPORT) and the buffer ring on `loop`,
  // which must outlive the transport. Nothing is accepted before start().
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
  // After stop(): true once the listener and every connection are closed and nothing of this
  // transport is in flight on the loop.
  bool idle() const;
  const KernelTransportStats& stats() const;
  const KernelTransportOptions& options() const { return options_; }

 private:
  struct Connection;  // kernel_transport.cc
  struct Chunk;

  KernelTransport(uring::EventLoop& loop, const KernelTransportOptions& options, int listen_fd,
                  uint16_t port, std::unique_ptr<uring::BufferRing> buffers);

  static void on_accept(uring::Operation& op, const uring::Completion& c);
  static void on_accept_retry(uring::Operation& op, const uring::Completion& c);
  static void on_recv(uring::Operation& op, const uring::Completion& c);
  static void on_send(uring::Operation& op, const uring::Completion& c);
  static void on_timer(uring::Operation& op, const uring::Completion& c);
  static void on_nop(uring::Operation& op, const uring::Completion& c);

  void accept_one(int fd);
  Connection* find(ConnectionId id) const;  // counts unknown ids
  SendResult enqueue(Connection& conn, std::span<const std::span<const uint8_t>> parts);
  void send_head(Connection& conn);
  void arm_recv(Connection& conn);
  void schedule(Connection& conn);  // a nop: finish work outside the caller's stack
  void resume(Connection& conn);
  void begin_close(Connection& conn, CloseReason reason);
  void send_fin(Connection& conn);
  void teardown(Connection& conn, CloseReason reason, bool reset);
  void maybe_finish(Connection& conn);
  void maybe_close_listener();
  Chunk* take_chunk();
  void release_chunk(Chunk* chunk);
  void release_chunks(Connection& conn);

  uring::EventLoop& loop_;
  const KernelTransportOptions options_;
  int listen_fd_;
  const uint16_t port_;
  std::unique_ptr<uring::BufferRing> buffers_;
  TransportEvents* events_ = nullptr;
  bool stopping_ = false;
  uring::Operation accept_op_;
  uring::Operation accept_retry_op_;
  // Slots never move (Operations inside are the kernel's user_data); freed slots are reused
  // with the next generation, so steady state allocates nothing per connection.
  std::vector<std::unique_ptr<Connection>> slots_;
  std::vector<uint32_t> free_slots_;
  uint32_t open_connections_ = 0;
  Chunk* free_chunks_ = nullptr;
  uint32_t free_chunk_count_ = 0;
  mutable KernelTransportStats stats_;
};

}  // namespace herald::dataplane

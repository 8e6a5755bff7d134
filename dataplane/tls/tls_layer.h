// TLS per connection between a worker's Transport and its session layer: each accepted
// connection gets a byte-driven platform/tls server connection; ciphertext comes in through
// TransportEvents and goes out with Transport::send, plaintext goes up through
// PlaintextEvents and comes down through PlaintextChannel.
//
//   TlsLayer tls(transport, chat_tls.context(), {.max_connections = n});
//   SessionLayer sessions(tls, router, ...);   // implements PlaintextEvents
//   tls.set_upper(sessions);
//   transport.start(tls);
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/tls/connection_map.h"
#include "dataplane/tls/plaintext.h"
#include "dataplane/tls/tls_stats.h"
#include "dataplane/transport/transport.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"

namespace herald::dataplane {

struct TlsLayerOptions {
  // Connections this worker holds at most (slots and the id map are sized from it once).
  uint32_t max_connections = 1024;
};

class TlsLayer final : public TransportEvents, public PlaintextChannel {
 public:
  // `context` may be shared by every worker (it is thread-safe); `transport` must outlive this.
  TlsLayer(Transport& transport, std::shared_ptr<tls::ServerContext> context,
           const TlsLayerOptions& options);
  ~TlsLayer() override;
  TlsLayer(const TlsLayer&) = delete;
  TlsLayer& operator=(const TlsLayer&) = delete;

  // Must be called before the transport starts delivering events.
  void set_upper(PlaintextEvents& upper) { upper_ = &upper; }

  // Certificate reload without dropping connections: handshakes that start from now on present
  // `certificate`; established connections keep their keys (they never need the certificate
  // again: the handshake configuration was shed). On the shared context, so every worker sees it.
  void reload_certificate(std::shared_ptr<const tls::CertifiedKey> certificate);
  // A new context (new options) for the connections accepted from now on; existing ones keep
  // the context they were made with (a connection holds a reference to it).
  void set_context(std::shared_ptr<tls::ServerContext> context);
  const std::shared_ptr<tls::ServerContext>& context() const { return context_; }

  const TlsStats& stats() const { return stats_; }
  uint32_t connections() const { return map_.size(); }
  // The TLS connection of `id` (tests, diagnostics); null when unknown.
  const tls::Connection* connection(ConnectionId id) const;

  // PlaintextChannel::park: drops the AEAD contexts of an idle compact-mode connection
  // (~1.2 KB); its next record re-derives them. The session layer calls it after
  // tls.chat_park_idle_ms without traffic. No-op for unknown, closing or non-compact ones.
  void park(ConnectionId id) override;

  // TransportEvents.
  void on_accepted(ConnectionId id, const PeerAddress& peer) override;
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override;
  void on_writable(ConnectionId id) override;
  void on_closed(ConnectionId id, CloseReason reason) override;

  // PlaintextChannel.
  [[nodiscard]] bool send(ConnectionId id, std::span<const uint8_t> bytes) override;
  void close(ConnectionId id, CloseMode mode) override;
  [[nodiscard]] uint32_t queued_bytes(ConnectionId id) const override;
  void set_reading(ConnectionId id, bool reading) override;

 private:
  struct Slot {
    ConnectionId id = kNoConnection;
    std::unique_ptr<tls::Connection> tls;
    bool handshake_done = false;
    bool failed = false;
    // close() was called (by us or the session), or the transport refused a send: ignore input
    // and refuse output until the transport's on_closed frees the slot.
    bool closing = false;
    uint32_t next_free = 0;
  };

  Slot* find(ConnectionId id);
  const Slot* find(ConnectionId id) const;
  // Sends the connection's pending ciphertext; false if the transport refused it.
  bool flush(Slot& slot);
  void on_handshake_done(Slot& slot);
  // A TLS error: count it, send the alert BoringSSL queued, close.
  void fail(Slot& slot);
  void start_close(Slot& slot, CloseMode mode);
  // Counts the KeyUpdates the connection handled since `received`/`sent` were read.
  void count_key_updates(const Slot& slot, uint32_t received, uint32_t sent);

  Transport& transport_;
  std::shared_ptr<tls::ServerContext> context_;
  PlaintextEvents* upper_ = nullptr;
  std::unique_ptr<Slot[]> slots_;
  uint32_t free_head_;
  ConnectionMap map_;
  // One record's plaintext: decrypted bytes pass through here on their way up (one per worker).
  std::unique_ptr<uint8_t[]> scratch_;
  TlsStats stats_;
};

}  // namespace herald::dataplane

// A worker's sessions: implements PlaintextEvents above the TLS layer (or any PlaintextChannel),
// owns one Session per connection (slots and timers taken once, at construction) and drives
// their timeouts on the worker's timer wheel.
//
//   SessionLayer sessions(tls, router, verifier, wheel, clock, options);
//   tls.set_upper(sessions);
//   ... the worker's loop: transport events, then (void)wheel.advance(clock.now_ns());
#pragma once

#include <cstdint>
#include <memory>

#include "dataplane/session/router.h"
#include "dataplane/session/session.h"
#include "dataplane/session/session_options.h"
#include "dataplane/session/session_stats.h"
#include "dataplane/tls/connection_map.h"
#include "dataplane/tls/plaintext.h"
#include "platform/auth/token_verifier.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"

namespace herald::dataplane {

class SessionLayer final : public PlaintextEvents {
 public:
  // Every reference must outlive the layer. The verifier is the worker's (the control plane's
  // key and revocation pushes go to it); the wheel is the worker's, advanced by its loop; it
  // needs options.max_sessions free timers.
  SessionLayer(PlaintextChannel& channel, Router& router, auth::TokenVerifier& verifier,
               timer::TimerWheel& wheel, const clock::Clock& clock,
               const SessionLayerOptions& options);
  ~SessionLayer() override;
  SessionLayer(const SessionLayer&) = delete;
  SessionLayer& operator=(const SessionLayer&) = delete;

  // A committed config changed the `limits` table: sessions see the new values from their next
  // frame (a decoder holding a partial frame keeps its old frame size until it empties), and
  // HelloOk tells new sessions. send_queue_bytes_per_session is a restart field: kept.
  void set_limits(const SessionLimits& limits);

  const SessionStats& stats() const { return env_.stats; }
  uint32_t sessions() const { return map_.size(); }
  // The session of `id` (tests, diagnostics); null when unknown.
  Session* session(ConnectionId id);
  // Frame buffers lent to sessions with a partial frame right now.
  uint32_t decode_buffers_lent() const { return env_.decode_buffers.lent(); }

  // PlaintextEvents.
  void on_open(ConnectionId id, const PeerAddress& peer) override;
  void on_plaintext(ConnectionId id, std::span<const uint8_t> bytes) override;
  void on_writable(ConnectionId id) override;
  void on_closed(ConnectionId id, CloseReason reason) override;

 private:
  static void on_timer(timer::TimerWheel& wheel, timer::TimerId id, uint64_t arg);

  SessionEnv env_;
  std::unique_ptr<Session[]> slots_;
  std::unique_ptr<timer::TimerId[]> timers_;
  std::unique_ptr<uint32_t[]> free_list_;
  uint32_t free_count_ = 0;
  uint32_t max_sessions_;
  ConnectionMap map_;
};

}  // namespace herald::dataplane

// One client connection after TLS: its frames (schemas/codec), its protocol state (Hello, Auth,
// then the session frames routed to the Router), its limits, timeouts and Error frames. The
// SessionLayer (session_layer.h) owns the sessions and feeds them; routing sees a session
// through SessionPort.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/session/decode_buffer_pool.h"
#include "dataplane/session/router.h"
#include "dataplane/session/session_options.h"
#include "dataplane/session/session_stats.h"
#include "dataplane/tls/plaintext.h"
#include "platform/auth/token_verifier.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"
#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_decoder.h"

namespace herald::dataplane {

// What every session of a worker shares; owned by the SessionLayer.
struct SessionEnv {
  SessionEnv(PlaintextChannel& channel_in, Router& router_in, auth::TokenVerifier& verifier_in,
             timer::TimerWheel& wheel_in, const clock::Clock& clock_in,
             const SessionLayerOptions& options_in)
      : channel(channel_in),
        router(router_in),
        verifier(verifier_in),
        wheel(wheel_in),
        clock(clock_in),
        options(options_in),
        decode_buffers(codec::FrameDecoder::storage_bytes(options_in.limits.decoder_limits()),
                       options_in.max_decode_buffers, options_in.cached_decode_buffers) {}

  PlaintextChannel& channel;
  Router& router;
  auth::TokenVerifier& verifier;
  timer::TimerWheel& wheel;
  clock::Clock clock;
  SessionLayerOptions options;
  SessionStats stats;
  DecodeBufferPool decode_buffers;
  // Frames the session layer writes itself (one at a time: nothing re-enters while one is
  // being built and sent).
  codec::FrameBuilder builder;
  // Frames the router sends to a session while Router::attach runs: they go out after AuthOk
  // (attach never runs for two sessions at once).
  std::vector<uint8_t> attach_deferred;

  uint64_t now_ns() const { return clock.now_ns(); }
  uint64_t unix_now_ms() const {
    return static_cast<uint64_t>(static_cast<int64_t>(clock.now_ns() / 1'000'000) +
                                 options.unix_offset_ms);
  }
};

class Session final : public SessionPort {
 public:
  enum class State : uint8_t {
    kFree,           // slot unused
    kAwaitHello,     // accepted (TLS handshake and Hello pending)
    kAwaitAuth,      // HelloOk sent
    kAuthenticated,  // AuthOk sent (or being sent: attach runs)
    kClosing,        // closed by us or the peer; on_closed frees the slot
  };

  Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // SessionLayer's calls.
  void open(SessionEnv& env, ConnectionId id, timer::TimerId timer);
  void on_plaintext(std::span<const uint8_t> bytes);
  void on_writable();
  // The connection is gone: detach if attached, release everything. The slot is free after.
  void on_closed();
  void on_timer();
  State state() const { return state_; }

  // SessionPort.
  ConnectionId connection() const override { return id_; }
  const wire::DeviceAddress& device() const override { return device_; }
  uint16_t version() const override { return version_; }
  bool send_frame(std::span<const uint8_t> frame) override;
  uint32_t queued_bytes() const override;
  void complete_message(uint64_t client_msg_id, const wire::ServerMsgId* server_msg_id,
                        uint64_t server_time_ms, wire::ErrorCode error) override;
  void close_with_error(wire::ErrorCode code, std::string_view message) override;

  // For tests: Messages handed to the router and not completed yet.
  size_t unacked() const { return unacked_.size(); }

 private:
  void handle_frame(const codec::FrameView& frame);
  void on_hello(const wire::Hello& hello);
  void on_auth(const wire::Auth& auth);
  void on_token_refresh(const wire::Auth& auth);
  void send_auth_error(auth::TokenError error);
  uint64_t authenticated_deadline_ns() const;
  // Traffic on a parked session: park again after park_idle_ms of quiet.
  void unpark_on_traffic();
  // From on_timer: parks the session if it was quiet for park_idle_ms, else moves park_at_ns_.
  void park_if_quiet(uint64_t now_ns);
  void on_message(const wire::Message& message);
  void on_ping(const wire::Ping& ping);

  // Sends a frame this layer built; applies the send-queue limit like the router's frames.
  bool send_own(std::span<const uint8_t> frame);
  void send_error(wire::ErrorCode code, std::string_view message, bool fatal,
                  std::optional<uint64_t> client_msg_id = std::nullopt,
                  uint32_t retry_after_ms = 0);
  // Error{code, fatal}, then a graceful close.
  void fail(SessionEvent event, wire::ErrorCode code, std::string_view message);
  void begin_close(CloseMode mode);
  void detach_if_attached();
  bool acquire_decoder();
  void release_decoder();
  void arm_timer_ms(uint64_t from_ns, uint32_t delay_ms);

  SessionEnv* env_ = nullptr;
  ConnectionId id_ = kNoConnection;
  timer::TimerId timer_ = timer::kInvalidTimerId;
  State state_ = State::kFree;
  uint16_t version_ = 0;
  bool attached_ = false;   // Router::attach called and detach not yet
  bool attaching_ = false;  // inside Router::attach
  wire::DeviceAddress device_;
  uint64_t token_expires_ms_ = 0;
  uint64_t last_rx_ns_ = 0;
  // Parking (SessionLayerOptions::park_idle_ms): when to ask the channel to park the session if
  // nothing moved until then; 0 once parked (until the next traffic) or when parking is off.
  // Receives are seen through last_rx_ns_, sends through a flag (no clock read per frame), which
  // answers to a receive do not set (cleared when on_plaintext ends).
  uint64_t park_at_ns_ = 0;
  bool sent_since_park_check_ = false;
  // client_msg_ids handed to the router and not completed, oldest first (at most
  // max_unacked_messages; searched linearly: a few hundred entries at most).
  std::vector<uint64_t> unacked_;
  // The decoder exists only while a partial frame is held (storage from the pool).
  DecodeBufferPool::Buffer decode_storage_;
  size_t decode_storage_bytes_ = 0;
  std::optional<codec::FrameDecoder> decoder_;
};

}  // namespace herald::dataplane

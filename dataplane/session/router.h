// The contract between the session layer (session/: one authenticated client connection, its
// frames, its protocol state) and routing (routing/: the directory, fan-out, the durability rule,
// offline queues through the store). Sessions call the Router; the Router answers through each
// session's SessionPort. Both live on one worker's thread: no call here crosses threads (the
// Router hands work to other workers through the platform's SPSC rings on its own).
//
// What each side owns:
//   session: TLS, frame decoding and verification, Hello/Auth/Ping, timeouts, per-session limits
//            (frame size, unacked messages, ids per ack), the Error frames of its own checks;
//   router:  server message ids, dedup of client_msg_id per sending device, recipients
//            (directory, account device lists, groups), online delivery, the store (StoreAppend,
//            StoreCancel, StoreAck, DrainRequest over IPC), ServerAck timing (DESIGN.md's
//            durability rule), receipts, presence and typing forwarding.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/transport/transport.h"
#include "schemas/wire_generated.h"

namespace herald::dataplane {

// A session as routing sees it. Valid from Router::attach until Router::detach returns; the
// router must not keep the reference past detach (it keeps ConnectionIds, which are never
// reused, to name sessions it may have lost).
class SessionPort {
 public:
  virtual ~SessionPort() = default;
  virtual ConnectionId connection() const = 0;
  // The device this session authenticated as.
  virtual const wire::DeviceAddress& device() const = 0;
  // The session's protocol version (HelloOk.version): frame types newer than it are not sent.
  virtual uint16_t version() const = 0;

  // Sends one encoded frame (u32 length + FlatBuffer, as codec::FrameBuilder makes it; the
  // same bytes may go to many sessions: encoded once, encrypted per session). False when the
  // frame was not taken: the session is closing, or its send queue is over
  // send_queue_bytes_per_session (then the session closes as a slow consumer; what it did not
  // acknowledge stays in the store).
  virtual bool send_frame(std::span<const uint8_t> frame) = 0;
  // Bytes queued to this session and not yet on the wire (plaintext before TLS): flow control
  // for an offline-queue drain.
  virtual uint32_t queued_bytes() const = 0;

  // Finishes one Message the router took in on_message: a ServerAck (`server_msg_id` set) or an
  // Error{code, client_msg_id} (non-fatal 2xx/3xx codes), and frees one of the session's
  // max_unacked_messages slots. Exactly once per on_message call; later calls are ignored.
  virtual void complete_message(uint64_t client_msg_id, const wire::ServerMsgId* server_msg_id,
                                uint64_t server_time_ms, wire::ErrorCode error) = 0;

  // Sends Error{code, fatal} and closes (a newer session of the same device replaced this one,
  // its tokens were revoked, ...). detach follows.
  virtual void close_with_error(wire::ErrorCode code, std::string_view message) = 0;
};

// Called by sessions, on the worker's thread. Frames are verified and inside the session's
// limits before they get here; the references are valid only during the call.
class Router {
 public:
  virtual ~Router() = default;

  // The session authenticated (AuthOk is sent by the session after this returns, with
  // `queued_messages` from the return value when known, else 0). The router registers it in
  // the directory, closes an older session of the same device (one live session per device),
  // and starts draining the device's offline queue.
  virtual uint32_t attach(SessionPort& session) = 0;
  // The session is closing or closed; no call on it after this returns.
  virtual void detach(SessionPort& session) = 0;

  // A Message: the router must call session.complete_message exactly once, now or later.
  virtual void on_message(SessionPort& from, const wire::Message& message) = 0;
  virtual void on_delivery_ack(SessionPort& from, const wire::DeliveryAck& ack) = 0;
  virtual void on_receipt(SessionPort& from, const wire::Receipt& receipt) = 0;
  virtual void on_presence(SessionPort& from, const wire::Presence& presence) = 0;
  virtual void on_presence_subscribe(SessionPort& from,
                                     const wire::PresenceSubscribe& subscribe) = 0;
  virtual void on_typing(SessionPort& from, const wire::Typing& typing) = 0;
  // A group operation: answered with a GroupOpResult frame through send_frame, now or later.
  virtual void on_group_op(SessionPort& from, const wire::GroupOp& op) = 0;
  // The session's send queue drained below its low-water mark: continue a paused drain.
  virtual void on_writable(SessionPort& session) = 0;
};

}  // namespace herald::dataplane

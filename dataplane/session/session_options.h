// What a worker's session layer is configured with: the per-session limits (the node config's
// `limits` table, sent to clients in HelloOk) and the layer's own sizing.
#pragma once

#include <cstdint>
#include <string>

#include "platform/config/config.h"
#include "schemas/codec/frame_decoder.h"

namespace herald::dataplane {

// Defaults are the config's defaults (schemas/config.fbs Limits).
struct SessionLimits {
  uint32_t max_frame_bytes = 65536;
  uint32_t frame_max_depth = 16;
  uint32_t frame_max_tables = 256;
  uint32_t max_body_bytes = 64000;
  uint32_t max_group_members = 1024;
  uint32_t max_linked_devices = 4;
  uint32_t max_unacked_messages = 256;
  uint32_t max_ids_per_ack = 512;
  uint32_t max_presence_subscriptions = 1000;
  uint32_t idle_timeout_ms = 300000;
  uint32_t handshake_timeout_ms = 10000;
  uint32_t send_queue_bytes_per_session = 262144;

  codec::DecoderLimits decoder_limits() const {
    return codec::DecoderLimits{max_frame_bytes, frame_max_depth, frame_max_tables};
  }
};

SessionLimits session_limits_from_config(const config::Config& config);

struct SessionLayerOptions {
  // Sessions this worker holds at most: slots and one timer each are taken at construction.
  uint32_t max_sessions = 1024;
  // Frame buffers (max_frame_bytes each) held at once by sessions with a partial frame; a
  // session that needs one when none is left is closed with Error{Overloaded}. Bounds what
  // many slow senders of partial frames can pin.
  uint32_t max_decode_buffers = 4096;
  // Free frame buffers kept for reuse instead of returned to the allocator.
  uint32_t cached_decode_buffers = 64;
  uint16_t node_id = 1;
  std::string server_version = "herald";
  SessionLimits limits;
  // Unix time in ms = clock ms + unix_offset_ms (tokens and server_time_ms are unix times;
  // timers run on the monotonic clock). The worker computes it at start; tests pass 0.
  int64_t unix_offset_ms = 0;
  // AuthError{UnknownKey}.retry_after_ms: the key push from the control plane may lag a login.
  uint32_t unknown_key_retry_after_ms = 1000;
  // retry_after_ms on 3xx Errors of complete_message (StoreUnavailable, Overloaded, ...).
  uint32_t retry_after_ms = 1000;
  // An authenticated session that has neither received nor sent for this long asks the channel
  // to park it (PlaintextChannel::park: TLS drops its record keys); 0: never.
  uint32_t park_idle_ms = 0;
};

// The config's parts of the options: limits, node.id, dataplane.session_decode_buffers,
// tls.chat_park_idle_ms.
// max_sessions, server_version and unix_offset_ms are the worker's to fill in.
SessionLayerOptions session_options_from_config(const config::Config& config);

}  // namespace herald::dataplane

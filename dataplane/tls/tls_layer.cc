// TLS per connection over a Transport (tls_layer.h).
#include "dataplane/tls/tls_layer.h"

#include <openssl/ssl.h>

#include <utility>

#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::dataplane {
namespace {

// RFC 8446 §5.1: a record carries at most 2^14 bytes of plaintext, so one read never returns
// more and one scratch buffer of that size serves every connection of the worker.
constexpr size_t kScratchBytes = 16384;
constexpr uint32_t kNoSlot = UINT32_MAX;

}  // namespace

TlsLayer::TlsLayer(Transport& transport, std::shared_ptr<tls::ServerContext> context,
                   const TlsLayerOptions& options)
    : transport_(transport),
      context_(std::move(context)),
      slots_(std::make_unique<Slot[]>(options.max_connections)),
      free_head_(options.max_connections > 0 ? 0 : kNoSlot),
      map_(options.max_connections),
      scratch_(std::make_unique<uint8_t[]>(kScratchBytes)) {
  HERALD_CHECK(context_ != nullptr, "TlsLayer needs a server context");
  for (uint32_t i = 0; i < options.max_connections; ++i) {
    slots_[i].next_free = i + 1 < options.max_connections ? i + 1 : kNoSlot;
  }
}

TlsLayer::~TlsLayer() = default;

void TlsLayer::reload_certificate(std::shared_ptr<const tls::CertifiedKey> certificate) {
  context_->set_certificate(std::move(certificate));
  stats_.count(TlsEvent::kCertificateReloads);
}

void TlsLayer::set_context(std::shared_ptr<tls::ServerContext> context) {
  HERALD_CHECK(context != nullptr, "set_context needs a context");
  context_ = std::move(context);
}

TlsLayer::Slot* TlsLayer::find(ConnectionId id) {
  const uint32_t index = map_.find(id);
  return index == ConnectionMap::kNotFound ? nullptr : &slots_[index];
}

const TlsLayer::Slot* TlsLayer::find(ConnectionId id) const {
  const uint32_t index = map_.find(id);
  return index == ConnectionMap::kNotFound ? nullptr : &slots_[index];
}

const tls::Connection* TlsLayer::connection(ConnectionId id) const {
  const Slot* slot = find(id);
  return slot != nullptr ? slot->tls.get() : nullptr;
}

// ---- transport events ------------------------------------------------------------------------

void TlsLayer::on_accepted(ConnectionId id, const PeerAddress& peer) {
  HERALD_CHECK(upper_ != nullptr, "TlsLayer::set_upper before the transport starts");
  stats_.count(TlsEvent::kAccepted);
  if (free_head_ == kNoSlot) {
    // The transport has its own cap; ours is the pool we sized. Either way: refuse now.
    stats_.count(TlsEvent::kRejectedFull);
    transport_.close(id, CloseMode::kAbort);
    return;
  }
  absl::StatusOr<std::unique_ptr<tls::Connection>> conn = tls::Connection::server(context_);
  if (!conn.ok()) {
    stats_.count(TlsEvent::kCreateFailed);
    transport_.close(id, CloseMode::kAbort);
    return;
  }
  const uint32_t index = free_head_;
  if (!map_.insert(id, index)) {
    // A transport that repeats an id is broken; refuse rather than mix two connections.
    HLOG_RATE_LIMITED(kError, "tls.duplicate_connection_id", 1).kv("id", id);
    stats_.count(TlsEvent::kRejectedFull);
    transport_.close(id, CloseMode::kAbort);
    return;
  }
  Slot& slot = slots_[index];
  free_head_ = slot.next_free;
  slot.id = id;
  slot.tls = std::move(*conn);
  slot.handshake_done = false;
  slot.failed = false;
  slot.closing = false;
  upper_->on_open(id, peer);
}

void TlsLayer::on_data(ConnectionId id, std::span<const uint8_t> bytes) {
  Slot* slot = find(id);
  if (slot == nullptr || slot->closing) return;  // closing: the rest of the stream is moot
  tls::Connection& conn = *slot->tls;
  // KeyUpdates are counted from the connection's totals: the slot (and its connection) stays
  // ours until on_closed, which the transport delivers later, never from inside this call.
  struct KeyUpdateCount {
    TlsLayer* layer;
    const Slot* slot;
    uint32_t received;
    uint32_t sent;
    ~KeyUpdateCount() { layer->count_key_updates(*slot, received, sent); }
  } key_updates{this, slot, conn.key_updates_received(), conn.key_updates_sent()};
  while (!bytes.empty() && !slot->closing) {
    const size_t taken = conn.feed_ciphertext(bytes);
    bytes = bytes.subspan(taken);
    if (!slot->handshake_done && conn.handshake_done()) on_handshake_done(*slot);
    if (conn.error() != tls::TlsError::kNone) {
      fail(*slot);
      return;
    }
    // Decrypt everything that is complete and hand it up, record by record.
    bool progressed = taken > 0;
    while (!slot->closing) {
      const tls::IoResult r = conn.read_plaintext({scratch_.get(), kScratchBytes});
      if (r.status == tls::IoStatus::kOk) {
        if (r.bytes == 0) break;
        progressed = true;
        // The session may close the connection from here; the slot stays ours until the
        // transport's on_closed, so `slot` remains valid and `closing` tells.
        upper_->on_plaintext(id, {scratch_.get(), r.bytes});
        continue;
      }
      if (r.status == tls::IoStatus::kClosed) {
        // RFC 8446 §6.1: answer close_notify with ours, then finish the TCP side.
        stats_.count(TlsEvent::kPeerCloseNotify);
        start_close(*slot, CloseMode::kGraceful);
        return;
      }
      if (r.status == tls::IoStatus::kError) {
        fail(*slot);
        return;
      }
      break;  // kWantMore
    }
    if (!slot->handshake_done && conn.handshake_done()) on_handshake_done(*slot);
    if (!slot->closing && !flush(*slot)) return;
    if (!progressed) {
      // Nothing taken and nothing decrypted: cannot happen with a healthy connection (its
      // input queue holds two records and we drain it); never spin on it.
      HLOG_RATE_LIMITED(kError, "tls.stalled", 1).kv("id", id);
      start_close(*slot, CloseMode::kAbort);
      return;
    }
  }
}

void TlsLayer::on_handshake_done(Slot& slot) {
  slot.handshake_done = true;
  stats_.count(TlsEvent::kHandshakeOk);
  if (slot.tls->resumed()) stats_.count(TlsEvent::kResumed);
  if (slot.tls->compact()) stats_.count(TlsEvent::kCompactSwitches);
  stats_.count(slot.tls->protocol_version() == TLS1_3_VERSION ? TlsEvent::kTls13
                                                              : TlsEvent::kTls12);
}

void TlsLayer::fail(Slot& slot) {
  if (slot.failed) return;
  slot.failed = true;
  const tls::TlsError error = slot.tls->error();
  ++stats_.errors[static_cast<size_t>(error)];
  if (slot.tls->compact_error() != tls::CompactError::kNone) {
    stats_.count(compact_error_event(slot.tls->compact_error()));
  }
  stats_.count(slot.handshake_done ? TlsEvent::kFailedAfterHandshake : TlsEvent::kHandshakeFailed);
  HLOG_RATE_LIMITED(kInfo, "tls.failed", 10)
      .kv("reason", std::string(tls::tls_error_name(error)))
      .kv("detail", std::string(slot.tls->error_reason()))
      .kv("handshake_done", slot.handshake_done);
  // The alert BoringSSL queued (if any) goes out before the FIN.
  (void)flush(slot);
  if (!slot.closing) {
    slot.closing = true;
    transport_.close(slot.id, CloseMode::kGraceful);
  }
}

void TlsLayer::count_key_updates(const Slot& slot, uint32_t received, uint32_t sent) {
  if (slot.tls == nullptr) return;
  stats_.events[static_cast<size_t>(TlsEvent::kKeyUpdatesReceived)] +=
      slot.tls->key_updates_received() - received;
  stats_.events[static_cast<size_t>(TlsEvent::kKeyUpdatesSent)] +=
      slot.tls->key_updates_sent() - sent;
}

void TlsLayer::park(ConnectionId id) {
  Slot* slot = find(id);
  if (slot == nullptr || slot->closing || !slot->tls->compact() || slot->tls->parked()) return;
  slot->tls->park();
  stats_.count(TlsEvent::kParked);
}

void TlsLayer::on_writable(ConnectionId id) {
  Slot* slot = find(id);
  if (slot == nullptr || slot->closing || !slot->handshake_done) return;
  upper_->on_writable(id);
}

void TlsLayer::on_closed(ConnectionId id, CloseReason reason) {
  const uint32_t index = map_.find(id);
  if (index == ConnectionMap::kNotFound) return;  // refused at accept: the upper never saw it
  Slot& slot = slots_[index];
  if (!slot.handshake_done && !slot.failed) stats_.count(TlsEvent::kHandshakeAbandoned);
  if (slot.handshake_done && !slot.failed && !slot.closing && reason == CloseReason::kPeerClosed &&
      !slot.tls->close_notify_received()) {
    // RFC 8446 §6.1: a FIN without close_notify. Harmless for framed data (a partial frame is
    // simply dropped), common with mobile clients; counted, not treated as an attack.
    ++stats_.errors[static_cast<size_t>(tls::TlsError::kTruncated)];
  }
  stats_.count(TlsEvent::kClosed);
  upper_->on_closed(id, reason);
  (void)map_.erase(id);
  slot.tls.reset();  // frees the SSL and its buffers now, not when the slot is reused
  slot.id = kNoConnection;
  slot.next_free = free_head_;
  free_head_ = index;
}

// ---- plaintext channel -----------------------------------------------------------------------

bool TlsLayer::flush(Slot& slot) {
  const std::span<const uint8_t> pending = slot.tls->pending_ciphertext();
  if (pending.empty()) return true;
  const SendResult r = transport_.send(slot.id, pending);
  slot.tls->consume_ciphertext(pending.size());
  if (r == SendResult::kOk) return true;
  // kQueueFull: the transport closes the connection (slow consumer); kClosed: it is going.
  slot.closing = true;
  return false;
}

bool TlsLayer::send(ConnectionId id, std::span<const uint8_t> bytes) {
  Slot* slot = find(id);
  if (slot == nullptr || slot->closing || !slot->handshake_done || slot->failed) {
    stats_.count(TlsEvent::kSendRefused);
    return false;
  }
  tls::Connection& conn = *slot->tls;
  while (!bytes.empty()) {
    const tls::IoResult r = conn.write_plaintext(bytes);
    if (r.status == tls::IoStatus::kError) {
      fail(*slot);
      stats_.count(TlsEvent::kSendRefused);
      return false;
    }
    if (r.status != tls::IoStatus::kOk && r.status != tls::IoStatus::kWantMore) {
      stats_.count(TlsEvent::kSendRefused);
      return false;
    }
    bytes = bytes.subspan(r.bytes);
    // Hand each batch of records to the transport at once (it copies), so the connection's
    // own output queue empties and is freed: an idle connection holds no buffer.
    if (!flush(*slot)) {
      stats_.count(TlsEvent::kSendRefused);
      return false;
    }
    if (r.bytes == 0) {
      // Output was empty after the flush and still nothing was taken: the connection is
      // finished for writing (close() was called on it).
      stats_.count(TlsEvent::kSendRefused);
      return false;
    }
  }
  return true;
}

void TlsLayer::start_close(Slot& slot, CloseMode mode) {
  if (slot.closing) return;
  if (mode == CloseMode::kGraceful && slot.handshake_done && !slot.failed) {
    slot.tls->close();  // queues close_notify
    (void)flush(slot);
  }
  slot.closing = true;
  transport_.close(slot.id, mode);
}

void TlsLayer::close(ConnectionId id, CloseMode mode) {
  Slot* slot = find(id);
  if (slot == nullptr) return;
  start_close(*slot, mode);
}

uint32_t TlsLayer::queued_bytes(ConnectionId id) const {
  const Slot* slot = find(id);
  if (slot == nullptr) return 0;
  return transport_.queued_bytes(id) +
         static_cast<uint32_t>(slot->tls->pending_ciphertext().size());
}

void TlsLayer::set_reading(ConnectionId id, bool reading) {
  if (find(id) == nullptr) return;
  transport_.set_reading(id, reading);
}

}  // namespace herald::dataplane

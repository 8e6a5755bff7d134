// An in-memory Transport for the TLS and session tests: both ends in one process, no sockets.
// The test plays the client: it pushes bytes in with client_send() and takes what the server
// sent with take(); closes are delivered as on_closed by run(), later, as a real transport does.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "dataplane/transport/transport.h"

namespace herald::dataplane::testing {

class FakeTransport final : public Transport {
 public:
  struct Conn {
    std::vector<uint8_t> to_client;  // sent by the server, not yet taken by the client
    bool open = true;                // on_closed not yet delivered
    bool closing = false;            // close() called or the peer left: on_closed pending
    bool reading = true;
    bool above_low_water = false;
    CloseMode mode = CloseMode::kGraceful;
    CloseReason reason = CloseReason::kPeerClosed;
  };

  TransportLimits limits;

  void start(TransportEvents& events) override { events_ = &events; }

  // A client connects: on_accepted now.
  ConnectionId connect() {
    // Generation in the high bits, as the contract says: ids are never reused.
    ++generation_;
    const ConnectionId id = (uint64_t{generation_} << 32) | (generation_ % 7 + 1);
    conns_[id] = Conn{};
    PeerAddress peer;
    peer.length = sizeof(sockaddr_in);
    events_->on_accepted(id, peer);
    return id;
  }

  void client_send(ConnectionId id, std::span<const uint8_t> bytes) {
    Conn* c = find(id);
    if (c == nullptr || !c->open || c->closing || bytes.empty()) return;
    events_->on_data(id, bytes);
  }

  // What the server sent so far (even after the connection closed: the last bytes, an alert
  // or an Error frame, are still readable).
  std::vector<uint8_t> take(ConnectionId id) {
    Conn* c = find(id);
    if (c == nullptr) return {};
    std::vector<uint8_t> out;
    out.swap(c->to_client);
    if (c->above_low_water && c->open && !c->closing) {
      c->above_low_water = false;
      writable_.push_back(id);
    }
    return out;
  }

  // The client leaves (FIN or RST).
  void client_close(ConnectionId id, CloseReason reason = CloseReason::kPeerClosed) {
    Conn* c = find(id);
    if (c == nullptr || !c->open || c->closing) return;
    c->closing = true;
    c->reason = reason;
    pending_.push_back(id);
  }

  // Delivers the events that are due (on_writable, on_closed). Returns how many.
  int run() {
    int n = 0;
    while (!pending_.empty() || !writable_.empty()) {
      if (!writable_.empty()) {
        const ConnectionId id = writable_.front();
        writable_.pop_front();
        Conn* c = find(id);
        if (c != nullptr && c->open && !c->closing) events_->on_writable(id);
        ++n;
        continue;
      }
      const ConnectionId id = pending_.front();
      pending_.pop_front();
      Conn* c = find(id);
      if (c == nullptr || !c->open) continue;
      c->open = false;
      if (c->mode == CloseMode::kAbort) c->to_client.clear();
      events_->on_closed(id, c->reason);
      ++n;
    }
    return n;
  }

  SendResult send(ConnectionId id, std::span<const uint8_t> bytes) override {
    ++sends_;
    Conn* c = find(id);
    if (c == nullptr || !c->open || c->closing) return SendResult::kClosed;
    if (c->to_client.size() + bytes.size() > limits.send_queue_bytes) {
      begin_close(*c, id, CloseMode::kAbort, CloseReason::kSendQueueFull);
      return SendResult::kQueueFull;
    }
    c->to_client.insert(c->to_client.end(), bytes.begin(), bytes.end());
    if (c->to_client.size() > limits.send_low_water_bytes) c->above_low_water = true;
    return SendResult::kOk;
  }

  SendResult send_gather(ConnectionId id,
                         std::span<const std::span<const uint8_t>> parts) override {
    size_t total = 0;
    for (const auto& p : parts) total += p.size();
    std::vector<uint8_t> all;
    all.reserve(total);
    for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    return send(id, all);
  }

  void close(ConnectionId id, CloseMode mode) override {
    Conn* c = find(id);
    if (c == nullptr || !c->open || c->closing) return;
    begin_close(*c, id, mode, CloseReason::kLocalClose);
  }

  void set_reading(ConnectionId id, bool reading) override {
    if (Conn* c = find(id); c != nullptr) c->reading = reading;
  }

  uint32_t queued_bytes(ConnectionId id) const override {
    auto it = conns_.find(id);
    if (it == conns_.end() || !it->second.open) return 0;
    return static_cast<uint32_t>(it->second.to_client.size());
  }

  uint32_t connections() const override {
    uint32_t n = 0;
    for (const auto& [id, c] : conns_) n += c.open ? 1 : 0;
    return n;
  }

  void stop() override {
    for (auto& [id, c] : conns_) {
      if (c.open && !c.closing) begin_close(c, id, CloseMode::kAbort, CloseReason::kShutdown);
    }
    (void)run();
  }

  // Test inspection.
  const Conn* conn(ConnectionId id) const {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : &it->second;
  }
  bool is_open(ConnectionId id) const {
    const Conn* c = conn(id);
    return c != nullptr && c->open && !c->closing;
  }
  uint64_t sends() const { return sends_; }

 private:
  Conn* find(ConnectionId id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : &it->second;
  }
  void begin_close(Conn& c, ConnectionId id, CloseMode mode, CloseReason reason) {
    c.closing = true;
    c.mode = mode;
    c.reason = reason;
    pending_.push_back(id);
  }

  TransportEvents* events_ = nullptr;
  std::map<ConnectionId, Conn> conns_;
  std::deque<ConnectionId> pending_;
  std::deque<ConnectionId> writable_;
  uint32_t generation_ = 0;
  uint64_t sends_ = 0;
};

}  // namespace herald::dataplane::testing

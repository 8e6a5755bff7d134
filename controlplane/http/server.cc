// The HTTP/1.1 server on the io_uring loop: connections, the per-connection response queue
// (responses leave in request order), limits and the timeout lists. See server.h.
#include "controlplane/http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "controlplane/http/status.h"
#include "platform/assert/assert.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::http {
namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
// After the last response of a closing connection its write side is shut and what the client
// still sends is read and dropped for this long: closing with unread bytes would send an RST,
// which can destroy the response before the client reads it (the "lingering close").
constexpr uint64_t kLingerMs = 2'000;
// Per-connection buffers keep their capacity between requests (no allocation in steady state)
// up to this size; a rare large body or response gives its memory back, so a million idle
// connections do not each keep the largest request they ever saw.
constexpr size_t kKeepBufferBytes = 16 * 1024;
// Decrypted bytes are handed on in pieces of this size (one maximum TLS record, RFC 8446 §5.1).
constexpr size_t kTlsPlaintextBytes = 16384;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// A rejected connection gets this and is closed at once; written with one non-blocking send on
// a fresh socket, whose send buffer is empty.
constexpr std::string_view kBusy =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    "Content-Length: 60\r\n\r\n{\"error\":\"too_many_connections\",\"message\":\"try again "
    "later\"}";
static_assert(std::string_view("{\"error\":\"too_many_connections\",\"message\":\"try again "
                               "later\"}")
                  .size() == 60);

}  // namespace

// One accepted socket. Pooled: the parser, the slots and their buffers are reused by the next
// connection, so steady-state requests allocate nothing once the buffers reached their size.
struct Connection {
  enum class SlotState : uint8_t { kFree, kWaiting, kReady, kQueued };
  struct Slot {
    std::string out;
    uring::SendChunk chunk;
    SlotState state = SlotState::kFree;
    bool close_after = false;
    bool head_request = false;
    bool http10 = false;
  };

  // Ciphertext handed to the SendStream. `slots_completed`: responses whose last bytes are in
  // it, finished when it is sent (0 for handshake flights and tickets).
  struct CipherChunk {
    std::string data;
    uring::SendChunk chunk;
    uint32_t slots_completed = 0;
    bool close_after = false;  // carries close_notify: the connection lingers once it is sent
  };

  Connection(Server& s, uint32_t i)
      : server(s),
        index(i),
        parser(s.limits_.parser, RequestParser::NoStorage{}),
        slots(s.limits_.max_pipeline_depth) {
    recv_op.set_callback(&Connection::on_recv, this);
    close_op.set_callback(&Connection::on_close, this);
    continue_chunk.data = reinterpret_cast<const uint8_t*>(kContinue.data());
    continue_chunk.size_bytes = static_cast<uint32_t>(kContinue.size());
  }

  void start(int new_fd, const Server::AddressKey& key, const sockaddr_storage& peer_address,
             socklen_t peer_address_len);
  // The TLS seam: decrypted (here: received) bytes in, queued response bytes out.
  void on_plaintext(std::string_view data);
  void transmit();
  // TLS between the socket and the seam.
  void on_ciphertext(std::span<const uint8_t> data);
  void transmit_tls();
  void flush_ciphertext(bool close_after = false);
  void tls_fail();
  void close_quietly();
  bool handshaking() const { return tls != nullptr && !tls->handshake_done(); }
  bool pop_head_slot();
  void after_send(int32_t result, bool close_after, bool progressed);

  size_t feed(std::string_view input);
  // Gives the head storage back to the server's pool when no request is being read.
  void return_head();
  void dispatch();
  void fail_parse(ParseError error);
  void timed_out(Server::TimerKind kind);
  uint32_t allocate_slot(bool close_after);
  void write_error(uint32_t slot, int status, std::string_view name, std::string_view message);
  void finish_slot(Slot& slot);
  void pause();
  void resume();
  void arm_recv();
  void update_timer();
  void begin_close();
  void start_linger();
  void maybe_finish_close();

  static void on_recv(uring::Operation& op, const uring::Completion& c);
  static void on_close(uring::Operation& op, const uring::Completion& c);
  static void on_send_done(uring::SendStream& stream, uring::SendChunk& chunk, int32_t result);

  Server& server;
  const uint32_t index;
  uint64_t generation = 0;
  int fd = -1;
  Server::AddressKey address;
  // Head storage borrowed from the server's pool while a request is being read, so an idle
  // keep-alive connection holds none (about 26 KiB at the default limits).
  std::optional<Server::HeadBlock> head;
  sockaddr_storage peer{};  // the client's address, for handlers (rate limits, logs)
  socklen_t peer_len = 0;   // 0: unknown
  RequestParser parser;
  std::optional<uring::SendStream> stream;
  uring::Operation recv_op;
  uring::Operation close_op;
  uring::SendChunk continue_chunk;
  std::unique_ptr<tls::Connection> tls;                     // null on a plain-TCP server
  std::vector<std::unique_ptr<CipherChunk>> cipher_chunks;  // grows to the peak, reused
  std::vector<CipherChunk*> cipher_free;
  size_t tls_offset = 0;             // bytes of the next response already encrypted
  uint32_t tls_slots_encrypted = 0;  // responses fully encrypted since the last flush
  bool tls_failed = false;
  bool tls_handshake_counted = false;
  std::string body;
  std::string pending_in;  // received while reading was paused
  size_t pending_offset = 0;
  std::vector<Slot> slots;
  uint32_t slot_head = 0;    // oldest request without its response fully sent
  uint32_t slot_count = 0;   // slots in use
  uint32_t slot_queued = 0;  // of those, handed to the SendStream
  uint32_t requests = 0;
  bool recv_armed = false;
  bool paused = false;
  bool stop_parsing = false;  // a closing response is queued: later bytes are dropped
  bool in_body = false;
  bool peer_eof = false;
  bool lingering = false;
  bool closing = false;
  bool close_started = false;
  bool continue_in_flight = false;
  bool in_use = false;
  // Timer list links.
  Server::TimerKind timer_kind = Server::TimerKind::kNone;
  uint64_t deadline_ns = 0;
  Connection* timer_prev = nullptr;
  Connection* timer_next = nullptr;
};

// --- Connection ----------------------------------------------------------------------------

void Connection::start(int new_fd, const Server::AddressKey& key,
                       const sockaddr_storage& peer_address, socklen_t peer_address_len) {
  ++generation;
  fd = new_fd;
  address = key;
  peer = peer_address;
  peer_len = peer_address_len;
  parser.reset();
  stream.emplace(server.loop_, fd, &Connection::on_send_done, this);
  body.clear();
  pending_in.clear();
  pending_offset = 0;
  for (Slot& s : slots) s.state = SlotState::kFree;
  slot_head = slot_count = slot_queued = 0;
  requests = 0;
  recv_armed = paused = stop_parsing = in_body = peer_eof = lingering = false;
  closing = close_started = continue_in_flight = false;
  tls_offset = 0;
  tls_slots_encrypted = 0;
  tls_failed = tls_handshake_counted = false;
  in_use = true;
  if (server.tls_ != nullptr) {
    auto t = tls::Connection::server(server.tls_);
    if (!t.ok()) {
      HLOG_RATE_LIMITED(kError, "http.tls_connection_failed", 1)
          .kv("error", std::string(t.status().message()));
      ++server.stats_.tls_errors[static_cast<size_t>(tls::TlsError::kInternal)];
      begin_close();
      return;
    }
    tls = std::move(*t);
  }
  arm_recv();
  update_timer();
}

void Connection::arm_recv() {
  if (recv_armed || closing) return;
  recv_armed = true;
  server.loop_.recv_multishot(recv_op, fd, *server.buffers_);
}

void Connection::on_recv(uring::Operation& op, const uring::Completion& c) {
  auto* conn = op.context_as<Connection>();
  if (c.result > 0 && c.buffer_ring != nullptr) {
    if (conn->tls != nullptr) {
      // A lingering connection only drains what the client still sends.
      if (!conn->closing && !conn->lingering) {
        conn->on_ciphertext(std::span<const uint8_t>(c.data, static_cast<size_t>(c.result)));
      }
    } else if (!conn->closing) {
      conn->on_plaintext(
          std::string_view(reinterpret_cast<const char*>(c.data), static_cast<size_t>(c.result)));
    }
    c.buffer_ring->recycle(c.buffer_id);
  }
  if (c.more) return;
  conn->recv_armed = false;
  if (conn->closing) {
    conn->maybe_finish_close();
    return;
  }
  if (c.result == 0) {
    // EOF. A client may half-close after its last pipelined request and still read the
    // answers, so the connection closes once nothing is left to send.
    conn->peer_eof = true;
    conn->stop_parsing = true;
    if (conn->lingering || (conn->slot_count == 0 && conn->stream->idle())) {
      conn->begin_close();
    } else {
      conn->update_timer();
    }
    return;
  }
  if (c.result == -ECANCELED && conn->paused) return;  // resume() re-arms
  if (c.result < 0 && c.result != -ECANCELED) {
    conn->begin_close();
    return;
  }
  // Ended without an error while we still want bytes (a cancel that raced a resume).
  if (!conn->paused) conn->arm_recv();
}

void Connection::on_plaintext(std::string_view data) {
  if (stop_parsing) return;
  if (paused || pending_offset < pending_in.size()) {
    pending_in.append(data);
    return;
  }
  const size_t used = feed(data);
  if (used < data.size() && !stop_parsing) {
    pending_in.assign(data.substr(used));
    pending_offset = 0;
  }
}

// Parses until the input is used up, the queue of unanswered requests is full (then reading
// pauses) or the connection stops parsing. Returns the bytes consumed (all when dropped).
size_t Connection::feed(std::string_view input) {
  const size_t total = input.size();
  for (;;) {
    if (stop_parsing || closing) return total;
    if (slot_count == slots.size()) {
      pause();
      break;
    }
    if (!parser.has_storage()) {
      if (input.empty()) break;  // nothing to parse: keep none
      head.emplace(server.acquire_head());
      parser.attach_storage(head->storage());
    }
    const ParseStep step = parser.parse(input);
    input.remove_prefix(step.consumed_bytes);
    bool done = false;
    switch (step.event) {
      case ParseEvent::kNeedMore: done = true; break;
      case ParseEvent::kHeadersComplete: {
        in_body = true;
        body.clear();
        const Request& req = parser.request();
        // 100 (Continue) only when every earlier response is already in the SendStream, so it
        // cannot overtake one (RFC 9110 §10.1.1). Otherwise the client sends after its wait.
        if (req.expect_continue() && req.body_framing() != BodyFraming::kNone && slot_count == 0 &&
            !continue_in_flight && !server.shutting_down_) {
          if (tls != nullptr) {
            // Through the TLS stream, which keeps it in order with everything else sent.
            const auto* p = reinterpret_cast<const uint8_t*>(kContinue.data());
            const tls::IoResult w = tls->write_plaintext(std::span(p, kContinue.size()));
            if (w.status == tls::IoStatus::kOk && w.bytes == kContinue.size()) {
              ++server.stats_.continues_sent;
              flush_ciphertext();
            }
          } else if (stream->push(continue_chunk) == 0) {
            continue_in_flight = true;
            ++server.stats_.continues_sent;
          }
        }
        break;
      }
      case ParseEvent::kBodyData: body.append(step.body); break;
      case ParseEvent::kMessageComplete:
        in_body = false;
        dispatch();
        break;
      case ParseEvent::kError:
        fail_parse(parser.error());
        return_head();
        return total;
    }
    if (done) break;
  }
  return_head();
  update_timer();
  return total - input.size();
}

void Connection::return_head() {
  if (!head || parser.in_progress()) return;
  (void)parser.release_storage();
  server.release_head(std::move(*head));
  head.reset();
}

uint32_t Connection::allocate_slot(bool close_after) {
  HERALD_CHECK(slot_count < slots.size(), "http connection slot overflow");
  const uint32_t i = static_cast<uint32_t>((slot_head + slot_count) % slots.size());
  ++slot_count;
  Slot& s = slots[i];
  s.state = SlotState::kWaiting;
  s.close_after = close_after;
  s.head_request = false;
  s.http10 = false;
  if (close_after) stop_parsing = true;
  return i;
}

void Connection::dispatch() {
  ++requests;
  ++server.stats_.requests;
  const Request& req = parser.request();
  bool close_after = !req.keep_alive() || server.shutting_down_;
  if (!close_after && requests >= server.limits_.max_requests_per_connection) {
    close_after = true;
    ++server.stats_.max_requests_closes;
  }
  const uint32_t i = allocate_slot(close_after);
  slots[i].head_request = req.method() == Method::kHead;
  slots[i].http10 = req.version() == Version::kHttp10;
  Responder responder(&server, index, generation, i);
  server.handler_.handle(req, body, responder);
  if (body.capacity() > kKeepBufferBytes) std::string().swap(body);
}

void Connection::write_error(uint32_t slot, int status, std::string_view name,
                             std::string_view message) {
  Slot& s = slots[slot];
  s.close_after = true;
  stop_parsing = true;
  std::string json = "{\"error\":\"";
  json.append(name);
  json.append("\",\"message\":\"");
  json.append(message);
  json.append("\"}");
  s.out.clear();
  ResponseWriter w(s.out, status);
  w.header("Date", server.dates_.now());
  w.header("Content-Type", "application/json");
  w.header("Connection", "close");
  const bool ok = w.finish(json);
  HERALD_DCHECK(ok, "error response refused by the writer");
  (void)ok;
  s.state = SlotState::kReady;
  ++server.stats_.responses;
  transmit();
}

void Connection::fail_parse(ParseError error) {
  ++server.stats_.parse_errors[static_cast<size_t>(error) - 1];
  const int status = parse_error_status(error);
  const uint32_t i = allocate_slot(true);
  std::string message(reason_phrase(status));
  write_error(i, status, parse_error_name(error), message);
}

void Connection::timed_out(Server::TimerKind kind) {
  switch (kind) {
    case Server::TimerKind::kHeader:
    case Server::TimerKind::kBody:
      if (kind == Server::TimerKind::kHeader) {
        ++server.stats_.header_timeouts;
      } else {
        ++server.stats_.body_timeouts;
      }
      if (slot_count < slots.size() && !stop_parsing && !handshaking() && !tls_failed) {
        const uint32_t i = allocate_slot(true);
        write_error(i, 408, kind == Server::TimerKind::kHeader ? "header_timeout" : "body_timeout",
                    "the request did not arrive in time");
      } else {
        begin_close();
      }
      return;
    case Server::TimerKind::kIdle:
      ++server.stats_.idle_timeouts;
      close_quietly();
      return;
    case Server::TimerKind::kSend:
      ++server.stats_.send_timeouts;
      begin_close();
      return;
    case Server::TimerKind::kLinger:
    case Server::TimerKind::kNone: begin_close(); return;
  }
}

// Hands every response that is next in request order to the SendStream.
void Connection::transmit() {
  if (tls != nullptr) {
    transmit_tls();
    return;
  }
  while (slot_queued < slot_count && !closing) {
    Slot& s = slots[(slot_head + slot_queued) % slots.size()];
    if (s.state != SlotState::kReady) break;
    s.chunk.data = reinterpret_cast<const uint8_t*>(s.out.data());
    s.chunk.size_bytes = static_cast<uint32_t>(s.out.size());
    s.chunk.user = &s;
    s.state = SlotState::kQueued;
    ++slot_queued;
    if (stream->push(s.chunk) != 0) {
      s.state = SlotState::kReady;
      --slot_queued;
      begin_close();
      return;
    }
  }
  update_timer();
}

void Connection::on_send_done(uring::SendStream& stream, uring::SendChunk& chunk, int32_t result) {
  auto* conn = static_cast<Connection*>(stream.context());
  if (&chunk == &conn->continue_chunk) {
    conn->continue_in_flight = false;
    if (result < 0) conn->begin_close();
    conn->maybe_finish_close();
    return;
  }
  if (conn->tls != nullptr) {
    auto* cc = static_cast<CipherChunk*>(chunk.user);
    const uint32_t n = cc->slots_completed;
    if (cc->data.capacity() > kKeepBufferBytes) std::string().swap(cc->data);
    conn->cipher_free.push_back(cc);
    bool close_after = cc->close_after;
    for (uint32_t k = 0; k < n; ++k) close_after = conn->pop_head_slot() || close_after;
    // An idle TLS connection keeps no ciphertext buffers: with millions of them open, 16 KiB
    // each would dwarf everything else. A busy one reuses them (no allocation per response).
    if (conn->stream->idle()) {
      for (CipherChunk* free_chunk : conn->cipher_free) std::string().swap(free_chunk->data);
    }
    conn->after_send(result, close_after, n > 0);
    return;
  }
  HERALD_DCHECK(chunk.user == &conn->slots[conn->slot_head],
                "http response completed out of order");
  const bool close_after = conn->pop_head_slot();
  conn->after_send(result, close_after, true);
}

// The oldest response was sent: frees its slot. Returns whether it closes the connection.
bool Connection::pop_head_slot() {
  Slot& slot = slots[slot_head];
  slot.state = SlotState::kFree;
  if (slot.out.capacity() > kKeepBufferBytes) std::string().swap(slot.out);
  slot_head = static_cast<uint32_t>((slot_head + 1) % slots.size());
  --slot_count;
  --slot_queued;
  return slot.close_after;
}

// After a chunk was sent (or failed). `progressed`: a response completed.
void Connection::after_send(int32_t result, bool close_after, bool progressed) {
  if (result < 0) {
    if (result != -ECANCELED) ++server.stats_.send_errors;
    begin_close();
    maybe_finish_close();
    return;
  }
  if (closing) {
    maybe_finish_close();
    return;
  }
  if (close_after) {
    start_linger();
    return;
  }
  if (tls_failed) {
    if (stream->idle()) begin_close();  // the alert went out
    return;
  }
  if (peer_eof && slot_count == 0) {
    begin_close();
    return;
  }
  // Progress: a send timeout counts from the last completed response, not the first queued.
  if (progressed && timer_kind == Server::TimerKind::kSend) server.unlink_timer(*this);
  if (paused) resume();
  update_timer();
}

// --- TLS -----------------------------------------------------------------------------------

// Received ciphertext: advances the handshake and hands decrypted bytes to on_plaintext().
void Connection::on_ciphertext(std::span<const uint8_t> data) {
  if (tls_failed) return;
  uint8_t* plain = server.tls_plaintext_.get();
  for (;;) {
    const size_t took = data.empty() ? 0 : tls->feed_ciphertext(data);
    data = data.subspan(took);
    bool progressed = took > 0;
    for (;;) {
      const tls::IoResult r = tls->read_plaintext(std::span(plain, kTlsPlaintextBytes));
      if (r.status == tls::IoStatus::kOk) {
        progressed = true;
        on_plaintext(std::string_view(reinterpret_cast<const char*>(plain), r.bytes));
        if (closing) return;
        continue;
      }
      if (r.status == tls::IoStatus::kError) {
        tls_fail();
        return;
      }
      if (r.status == tls::IoStatus::kClosed && !peer_eof) {
        // close_notify: no more requests come; answer those in progress, then close.
        peer_eof = true;
        stop_parsing = true;
        if (slot_count == 0 && stream->idle() && tls->pending_ciphertext().empty()) {
          begin_close();
          return;
        }
      }
      break;
    }
    if (tls->handshake_state() == tls::HandshakeState::kFailed) {
      tls_fail();
      return;
    }
    if (!tls_handshake_counted && tls->handshake_done()) {
      tls_handshake_counted = true;
      ++server.stats_.tls_handshakes;
    }
    if (data.empty()) break;
    if (!progressed) {
      // The engine took nothing and gave nothing back: cannot happen with its queue drained.
      HERALD_BUG_IF(true, "tls connection stalled with input left");
      tls_fail();
      return;
    }
  }
  flush_ciphertext();  // handshake flights, session tickets, responses
  update_timer();
}

// Encrypts every response that is next in request order; the ciphertext goes to the stream.
void Connection::transmit_tls() {
  if (handshaking() || tls_failed || closing) {
    update_timer();
    return;
  }
  while (slot_queued < slot_count && !closing) {
    Slot& s = slots[(slot_head + slot_queued) % slots.size()];
    if (s.state != SlotState::kReady) break;
    while (tls_offset < s.out.size()) {
      const auto* p = reinterpret_cast<const uint8_t*>(s.out.data()) + tls_offset;
      const tls::IoResult w = tls->write_plaintext(std::span(p, s.out.size() - tls_offset));
      if (w.status == tls::IoStatus::kError) {
        tls_fail();
        return;
      }
      tls_offset += w.bytes;
      if (w.bytes == 0) {
        // The engine's output queue is full: move it to the stream and go on.
        if (tls->pending_ciphertext().empty()) {
          HERALD_BUG_IF(true, "tls write refused with no output pending");
          tls_fail();
          return;
        }
        flush_ciphertext();
        if (closing) return;
      }
    }
    tls_offset = 0;
    s.state = SlotState::kQueued;
    ++slot_queued;
    ++tls_slots_encrypted;
    // The last response of the connection is followed by close_notify (RFC 8446 §6.1).
    if (s.close_after) tls->close();
  }
  flush_ciphertext();
  update_timer();
}

// Moves the engine's pending ciphertext into a chunk on the SendStream.
void Connection::flush_ciphertext(bool close_after) {
  if (closing) return;
  const std::span<const uint8_t> pending = tls->pending_ciphertext();
  if (pending.empty()) {
    HERALD_DCHECK(tls_slots_encrypted == 0, "tls response encrypted to nothing");
    return;
  }
  CipherChunk* cc = nullptr;
  if (!cipher_free.empty()) {
    cc = cipher_free.back();
    cipher_free.pop_back();
  } else {
    cipher_chunks.push_back(std::make_unique<CipherChunk>());
    cc = cipher_chunks.back().get();
  }
  cc->data.assign(reinterpret_cast<const char*>(pending.data()), pending.size());
  tls->consume_ciphertext(pending.size());
  cc->slots_completed = tls_slots_encrypted;
  cc->close_after = close_after;
  tls_slots_encrypted = 0;
  cc->chunk = uring::SendChunk{};
  cc->chunk.data = reinterpret_cast<const uint8_t*>(cc->data.data());
  cc->chunk.size_bytes = static_cast<uint32_t>(cc->data.size());
  cc->chunk.user = cc;
  if (stream->push(cc->chunk) != 0) {
    cipher_free.push_back(cc);
    begin_close();
  }
}

// Closes a connection with nothing in progress (idle timeout, graceful shutdown). Over TLS it
// first sends close_notify (RFC 8446 §6.1), so the client can tell the end from a truncation,
// and lingers like after a last response; plain TCP closes at once.
void Connection::close_quietly() {
  if (closing) return;
  if (tls == nullptr || handshaking() || tls_failed || lingering || !stream->idle()) {
    begin_close();
    return;
  }
  stop_parsing = true;
  tls->close();
  if (tls->pending_ciphertext().empty()) {
    begin_close();
    return;
  }
  flush_ciphertext(/*close_after=*/true);
  if (!closing) server.set_timer(*this, Server::TimerKind::kSend);
}

// A failed handshake or a TLS error: counted, the alert (if any) sent, then the connection is
// closed. Responses still queued are dropped (the stream cannot carry them any more).
void Connection::tls_fail() {
  if (tls_failed) return;
  tls_failed = true;
  stop_parsing = true;
  const tls::TlsError e = tls->error();
  ++server.stats_.tls_errors[static_cast<size_t>(e)];
  HLOG_RATE_LIMITED(kInfo, "http.tls_error", 1)
      .kv("error", std::string(tls::tls_error_name(e)))
      .kv("reason", std::string(tls->error_reason()));
  flush_ciphertext();
  if (!closing && stream->idle()) {
    begin_close();
  } else {
    update_timer();
  }
}

void Connection::pause() {
  paused = true;
  if (recv_armed) (void)server.loop_.cancel(recv_op);
}

void Connection::resume() {
  paused = false;
  if (pending_offset < pending_in.size()) {
    const std::string_view rest = std::string_view(pending_in).substr(pending_offset);
    pending_offset += feed(rest);
    if (closing) return;
    if (pending_offset >= pending_in.size()) {
      pending_in.clear();
      pending_offset = 0;
      if (pending_in.capacity() > kKeepBufferBytes) std::string().swap(pending_in);
    }
  }
  if (!paused && !peer_eof) arm_recv();
}

void Connection::start_linger() {
  ::shutdown(fd, SHUT_WR);
  lingering = true;
  stop_parsing = true;
  if (peer_eof) {
    begin_close();
    return;
  }
  paused = false;
  arm_recv();
  update_timer();
}

// Which timeout runs follows from the connection's state; a timer that keeps its kind keeps
// its deadline (the header timeout runs from a request's first byte, not its latest).
void Connection::update_timer() {
  if (closing) return;
  Server::TimerKind kind = Server::TimerKind::kNone;
  if (lingering) {
    kind = Server::TimerKind::kLinger;
  } else if (handshaking()) {
    kind = Server::TimerKind::kHeader;  // from the accept: a silent client is cut off
  } else if (tls_failed) {
    kind = Server::TimerKind::kSend;  // the alert goes out, or the connection goes
  } else if (parser.in_progress()) {
    kind = in_body ? Server::TimerKind::kBody : Server::TimerKind::kHeader;
  } else if (slot_count == 0 && stream->idle()) {
    if (server.shutting_down_) {
      close_quietly();  // graceful shutdown: an idle connection goes now
      return;
    }
    kind = Server::TimerKind::kIdle;
  } else if (!stream->idle()) {
    kind = Server::TimerKind::kSend;
  }
  if (kind != timer_kind) server.set_timer(*this, kind);
}

void Connection::begin_close() {
  if (closing) return;
  closing = true;
  server.unlink_timer(*this);
  if (recv_armed) (void)server.loop_.cancel(recv_op);
  if (!stream->idle()) stream->cancel();
  maybe_finish_close();
}

void Connection::maybe_finish_close() {
  if (!closing || close_started || recv_armed || !stream->idle()) return;
  close_started = true;
  server.loop_.close(close_op, fd);
}

void Connection::on_close(uring::Operation& op, const uring::Completion&) {
  op.context_as<Connection>()->server.release_connection(*op.context_as<Connection>());
}

// --- Responder -----------------------------------------------------------------------------

void Responder::respond(int status, std::string_view content_type, std::string_view body,
                        std::span<const HeaderField> headers) {
  if (server_ == nullptr) return;
  server_->respond(*this, status, content_type, body, headers);
}

bool Responder::pending() const {
  return server_ != nullptr && server_->responder_pending(*this);
}

const sockaddr* Responder::peer_address(socklen_t* length) const {
  *length = 0;
  if (server_ == nullptr || conn_index_ >= server_->connections_.size()) return nullptr;
  const Connection& conn = *server_->connections_[conn_index_];
  if (conn.generation != generation_ || conn.peer_len == 0) return nullptr;
  *length = conn.peer_len;
  return reinterpret_cast<const sockaddr*>(&conn.peer);
}

// --- Server --------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Server>> Server::create(uring::EventLoop& loop, Handler& handler,
                                                       const ServerLimits& limits) {
  if (limits.max_pipeline_depth == 0 || limits.max_connections == 0 ||
      limits.max_connections_per_address == 0 || limits.max_requests_per_connection == 0) {
    return absl::InvalidArgumentError("http server limits must be positive");
  }
  if (limits.header_timeout_ms == 0 || limits.body_timeout_ms == 0 || limits.idle_timeout_ms == 0 ||
      limits.send_timeout_ms == 0) {
    return absl::InvalidArgumentError("http server timeouts must be positive");
  }
  auto buffers =
      uring::BufferRing::create(loop, limits.recv_buffer_count, limits.recv_buffer_size_bytes);
  if (!buffers.ok()) return buffers.status();
  return std::unique_ptr<Server>(new Server(loop, handler, limits, std::move(*buffers)));
}

Server::Server(uring::EventLoop& loop, Handler& handler, const ServerLimits& limits,
               std::unique_ptr<uring::BufferRing> buffers)
    : loop_(loop),
      handler_(handler),
      limits_(limits),
      buffers_(std::move(buffers)),
      accept_op_(&Server::on_accept, this),
      tick_op_(&Server::on_tick, this) {}

Server::~Server() {
  shutting_down_ = true;
  if (accept_op_.in_flight()) (void)loop_.cancel(accept_op_);
  if (tick_op_.in_flight()) (void)loop_.cancel(tick_op_);
  for (auto& conn : connections_) {
    if (conn->in_use) conn->begin_close();
  }
  // Bounded: every cancel completes promptly; the loop's own shutdown covers a stuck kernel.
  for (int i = 0; i < 1000; ++i) {
    bool busy = accept_op_.in_flight() || tick_op_.in_flight();
    for (auto& conn : connections_) busy = busy || conn->in_use;
    if (!busy) break;
    (void)loop_.run_once(10 * kNsPerMs);
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

absl::Status Server::listen(const std::string& address, uint16_t port,
                            std::shared_ptr<tls::ServerContext> tls) {
  if (listen_fd_ >= 0) return absl::FailedPreconditionError("http server already listening");
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError("not an IPv4 or IPv6 address: " + address);
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "http listen socket");
  const int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, "http bind/listen " + address + ":" + std::to_string(port));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  listen_fd_ = fd;
  if (tls != nullptr) {
    tls_ = std::move(tls);
    tls_plaintext_ = std::make_unique<uint8_t[]>(kTlsPlaintextBytes);
  }
  loop_.accept(accept_op_, listen_fd_);
  // One tick serves every timeout list; a quarter of the shortest timeout bounds how late a
  // timeout fires (never early: deadlines are compared, the tick only samples them).
  const uint64_t shortest_ms = std::min({limits_.header_timeout_ms, limits_.body_timeout_ms,
                                         limits_.idle_timeout_ms, limits_.send_timeout_ms});
  const uint64_t period_ms = std::clamp<uint64_t>(shortest_ms / 4, 10, 1000);
  if (!tick_op_.in_flight()) loop_.tick(tick_op_, period_ms * kNsPerMs);
  HLOG_INFO("http.listening").kv("address", address).kv("port", port_).kv("tls", tls_ != nullptr);
  return absl::OkStatus();
}

void Server::on_accept(uring::Operation& op, const uring::Completion& c) {
  auto* server = op.context_as<Server>();
  if (c.result >= 0) {
    server->accept_one(c.result);
  } else if (c.result != -ECANCELED) {
    ++server->stats_.accept_errors;
    HLOG_RATE_LIMITED(kWarn, "http.accept_failed", 1).kv("errno", -c.result);
  }
  // EMFILE and the like end the accept (more == false); the next tick re-arms it rather than
  // spinning here.
}

void Server::on_tick(uring::Operation& op, const uring::Completion& c) {
  auto* server = op.context_as<Server>();
  if (c.result < 0 && !c.more) return;
  server->expire_timers(clock::monotonic_ns());
  if (!server->shutting_down_ && server->listen_fd_ >= 0 && !server->accept_op_.in_flight()) {
    server->loop_.accept(server->accept_op_, server->listen_fd_);
  }
  server->maybe_finish_tick();
}

void Server::reject(int fd, uint64_t& counter) {
  ++counter;
  (void)::send(fd, kBusy.data(), kBusy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

void Server::accept_one(int fd) {
  ++stats_.accepted;
  if (shutting_down_) {
    ::close(fd);
    return;
  }
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof(peer);
  AddressKey key;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) peer_len = 0;
  if (peer_len != 0) {
    if (peer.ss_family == AF_INET) {
      key.hi = 4;
      key.lo = reinterpret_cast<sockaddr_in*>(&peer)->sin_addr.s_addr;
    } else if (peer.ss_family == AF_INET6) {
      const uint8_t* a = reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr.s6_addr;
      static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      if (memcmp(a, kMapped, sizeof(kMapped)) == 0) {
        key.hi = 4;  // an IPv4 client on a dual-stack listener counts as its IPv4 address
        uint32_t v4 = 0;
        memcpy(&v4, a + 12, 4);
        key.lo = v4;
      } else {
        key.hi = 6;
        memcpy(&key.lo, a, 8);  // the /64
      }
    }
  }
  if (stats_.live_connections >= limits_.max_connections) {
    reject(fd, stats_.rejected_max_connections);
    return;
  }
  uint32_t& count = per_address_[key];
  if (count >= limits_.max_connections_per_address) {
    if (count == 0) per_address_.erase(key);
    reject(fd, stats_.rejected_per_address);
    return;
  }
  ++count;
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Connection* conn = acquire_connection();
  ++stats_.live_connections;
  conn->start(fd, key, peer, peer_len);
}

Connection* Server::acquire_connection() {
  if (!free_connections_.empty()) {
    const uint32_t i = free_connections_.back();
    free_connections_.pop_back();
    return connections_[i].get();
  }
  const auto i = static_cast<uint32_t>(connections_.size());
  connections_.push_back(std::make_unique<Connection>(*this, i));
  return connections_.back().get();
}

Server::HeadBlock Server::acquire_head() {
  ++stats_.head_storage_in_use;
  if (!free_heads_.empty()) {
    HeadBlock block = std::move(free_heads_.back());
    free_heads_.pop_back();
    return block;
  }
  HeadBlock block;
  block.bytes_size = HeadStorage::bytes_needed(limits_.parser);
  block.fields_size = HeadStorage::fields_needed(limits_.parser);
  block.bytes.reset(new char[block.bytes_size]);
  block.fields.reset(new HeaderField[block.fields_size]);
  return block;
}

void Server::release_head(HeadBlock block) {
  --stats_.head_storage_in_use;
  // Keep a few for the next requests; beyond that give memory back (a burst of slow clients
  // must not pin its peak for good).
  if (free_heads_.size() < kFreeHeadsKept) free_heads_.push_back(std::move(block));
}

void Server::release_connection(Connection& conn) {
  if (conn.head) {
    conn.parser.reset();  // back to idle, so the storage can be released mid-request
    (void)conn.parser.release_storage();
    release_head(std::move(*conn.head));
    conn.head.reset();
  }
  unlink_timer(conn);
  release_address(conn.address);
  conn.stream.reset();
  conn.tls.reset();
  conn.fd = -1;
  conn.in_use = false;
  ++conn.generation;  // a Responder kept from this use is now stale
  ++stats_.closed;
  --stats_.live_connections;
  free_connections_.push_back(conn.index);
  maybe_finish_tick();
}

void Server::release_address(const AddressKey& key) {
  auto it = per_address_.find(key);
  if (it == per_address_.end()) return;
  if (--it->second == 0) per_address_.erase(it);
}

void Server::shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  if (accept_op_.in_flight()) (void)loop_.cancel(accept_op_);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
  for (auto& conn : connections_) {
    if (conn->in_use && !conn->closing) conn->update_timer();  // closes the idle ones
  }
  maybe_finish_tick();
  HLOG_INFO("http.shutdown").kv("live_connections", stats_.live_connections);
}

bool Server::finished() const {
  return shutting_down_ && stats_.live_connections == 0 && !accept_op_.in_flight();
}

void Server::maybe_finish_tick() {
  if (shutting_down_ && stats_.live_connections == 0 && tick_op_.in_flight()) {
    (void)loop_.cancel(tick_op_);
  }
}

uint64_t Server::timer_duration_ns(TimerKind kind) const {
  switch (kind) {
    case TimerKind::kHeader: return limits_.header_timeout_ms * kNsPerMs;
    case TimerKind::kBody: return limits_.body_timeout_ms * kNsPerMs;
    case TimerKind::kIdle: return limits_.idle_timeout_ms * kNsPerMs;
    case TimerKind::kSend: return limits_.send_timeout_ms * kNsPerMs;
    case TimerKind::kLinger: return kLingerMs * kNsPerMs;
    case TimerKind::kNone: return 0;
  }
  return 0;
}

void Server::set_limits(const ServerLimits& limits) {
  limits_.max_connections = limits.max_connections;
  limits_.max_connections_per_address = limits.max_connections_per_address;
  limits_.max_requests_per_connection = limits.max_requests_per_connection;
  limits_.header_timeout_ms = limits.header_timeout_ms;
  limits_.body_timeout_ms = limits.body_timeout_ms;
  limits_.idle_timeout_ms = limits.idle_timeout_ms;
  limits_.send_timeout_ms = limits.send_timeout_ms;
  // Each timer list must stay sorted by deadline (a tick only looks at its heads). Clamping
  // every deadline to now + new duration keeps the order (min with a constant is monotonic),
  // and every timer armed later ends after all of them.
  const uint64_t now_ns = clock::monotonic_ns();
  for (size_t k = 1; k < kTimerKinds; ++k) {
    const uint64_t cap_ns = now_ns + timer_duration_ns(static_cast<TimerKind>(k));
    for (Connection* c = timers_[k].head; c != nullptr; c = c->timer_next) {
      c->deadline_ns = std::min(c->deadline_ns, cap_ns);
    }
  }
}

void Server::set_timer(Connection& conn, TimerKind kind) {
  unlink_timer(conn);
  conn.timer_kind = kind;
  if (kind == TimerKind::kNone) return;
  conn.deadline_ns = clock::monotonic_ns() + timer_duration_ns(kind);
  TimerList& list = timers_[static_cast<size_t>(kind)];
  conn.timer_prev = list.tail;
  conn.timer_next = nullptr;
  if (list.tail != nullptr) {
    list.tail->timer_next = &conn;
  } else {
    list.head = &conn;
  }
  list.tail = &conn;
}

void Server::unlink_timer(Connection& conn) {
  if (conn.timer_kind == TimerKind::kNone) return;
  TimerList& list = timers_[static_cast<size_t>(conn.timer_kind)];
  if (conn.timer_prev != nullptr) {
    conn.timer_prev->timer_next = conn.timer_next;
  } else {
    list.head = conn.timer_next;
  }
  if (conn.timer_next != nullptr) {
    conn.timer_next->timer_prev = conn.timer_prev;
  } else {
    list.tail = conn.timer_prev;
  }
  conn.timer_prev = conn.timer_next = nullptr;
  conn.timer_kind = TimerKind::kNone;
}

void Server::expire_timers(uint64_t now_ns) {
  for (size_t k = 1; k < kTimerKinds; ++k) {
    TimerList& list = timers_[k];
    while (list.head != nullptr && list.head->deadline_ns <= now_ns) {
      Connection& conn = *list.head;
      unlink_timer(conn);
      conn.timed_out(static_cast<TimerKind>(k));
    }
  }
}

bool Server::responder_pending(const Responder& r) const {
  if (r.conn_index_ >= connections_.size()) return false;
  const Connection& conn = *connections_[r.conn_index_];
  return conn.in_use && !conn.closing && conn.generation == r.generation_ &&
         conn.slots[r.slot_].state == Connection::SlotState::kWaiting;
}

void Server::respond(const Responder& r, int status, std::string_view content_type,
                     std::string_view body, std::span<const HeaderField> headers) {
  if (!responder_pending(r)) {
    ++stats_.late_responses_dropped;
    return;
  }
  Connection& conn = *connections_[r.conn_index_];
  Connection::Slot& slot = conn.slots[r.slot_];
  if (shutting_down_ && !slot.close_after) {
    slot.close_after = true;
    conn.stop_parsing = true;
  }
  const bool bodiless = status < 200 || status == 204 || status == 304;
  bool ok = status >= 200 && status <= 999 && !(bodiless && !body.empty());
  if (ok) {
    slot.out.clear();
    ResponseWriter w(slot.out, status);
    w.header("Date", dates_.now());
    if (!content_type.empty()) w.header("Content-Type", content_type);
    for (const HeaderField& h : headers) w.header(h.name, h.value);
    if (slot.close_after) {
      w.header("Connection", "close");
    } else if (slot.http10) {
      w.header("Connection", "keep-alive");  // HTTP/1.0 closes unless told (RFC 9112 §9.3)
    }
    if (slot.head_request && !bodiless) {
      w.header("Content-Length", static_cast<uint64_t>(body.size()));
      ok = w.finish_head_only();
    } else {
      ok = w.finish(slot.head_request ? std::string_view() : body);
    }
  }
  if (!ok) {
    ++stats_.invalid_responses;
    HLOG_RATE_LIMITED(kError, "http.invalid_response", 1).kv("status", status);
    conn.write_error(r.slot_, 500, "internal", "the server produced an invalid response");
    return;
  }
  slot.state = Connection::SlotState::kReady;
  ++stats_.responses;
  conn.transmit();
}

}  // namespace herald::http

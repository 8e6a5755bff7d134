// The control plane's HTTP/1.1 server on the io_uring loop (plain TCP): multishot accept,
// buffered multishot receive, the strict parser, responses in request order, limits and timeouts.
//
//   class Api : public http::Handler {
//     void handle(const http::Request& req, std::string_view body, http::Responder& r) override {
//       r.respond(200, "application/json", "{\"ok\":true}");   // now, or later from a copy of r
//     }
//   };
//   auto server = http::Server::create(*loop, api, limits);
//   (*server)->listen("127.0.0.1", 8080);
//   loop->run();
//
// Threading: everything, the handler included, runs on the loop's thread.
//
// TLS seam: bytes enter a connection only through Connection::on_plaintext() and leave only
// through Connection::transmit(). With a tls::ServerContext given to listen(), each connection
// gets a tls::Connection between the receive and on_plaintext(), and between the response
// queue and the SendStream; request handling does not change.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/http/parse_error.h"
#include "controlplane/http/request.h"
#include "controlplane/http/request_parser.h"
#include "controlplane/http/response_writer.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"
#include "platform/uring/buffer_ring.h"
#include "platform/uring/event_loop.h"
#include "platform/uring/send_stream.h"

namespace herald::http {

class Server;
struct Connection;

struct ServerLimits {
  Limits parser;  // line, header and body limits of one request
  // Beyond it a new connection gets a best-effort 503 and is closed at once.
  uint32_t max_connections = 10000;
  // Per IPv4 address or IPv6 /64 (one subscriber usually holds a whole /64). 503 beyond it.
  uint32_t max_connections_per_address = 256;
  // The response to the last one carries "Connection: close".
  uint32_t max_requests_per_connection = 1000;
  // Requests parsed but not yet sent back, per connection; reading stops while it is full.
  uint32_t max_pipeline_depth = 16;
  // First byte of a request to its complete head: 408 and close (slowloris).
  uint64_t header_timeout_ms = 10'000;
  // Complete head to complete body: 408 and close.
  uint64_t body_timeout_ms = 30'000;
  // Nothing in progress and nothing to send: closed without a response.
  uint64_t idle_timeout_ms = 60'000;
  // A queued response that makes no progress (a client that stopped reading): closed. Restarts
  // whenever a response completes.
  uint64_t send_timeout_ms = 30'000;
  // Provided receive buffers for the whole server (not per connection).
  uint32_t recv_buffer_count = 256;  // power of two
  uint32_t recv_buffer_size_bytes = 16384;
};

// Plain members written on the loop thread; the counters segment can copy them out.
struct ServerStats {
  uint64_t accepted = 0;
  uint64_t rejected_max_connections = 0;
  uint64_t rejected_per_address = 0;
  uint64_t accept_errors = 0;
  uint64_t closed = 0;
  uint64_t requests = 0;
  uint64_t responses = 0;
  uint64_t continues_sent = 0;
  uint64_t header_timeouts = 0;  // with TLS, also handshakes not done within the timeout
  uint64_t body_timeouts = 0;
  uint64_t idle_timeouts = 0;
  uint64_t send_timeouts = 0;
  uint64_t max_requests_closes = 0;
  uint64_t late_responses_dropped = 0;  // answered after the connection was gone
  uint64_t invalid_responses = 0;       // the writer refused a header: 500 sent instead
  uint64_t send_errors = 0;
  uint64_t live_connections = 0;                 // gauge
  uint64_t head_storage_in_use = 0;              // gauge: connections reading a request head/body
  uint64_t parse_errors[kParseErrorCount] = {};  // index: static_cast<size_t>(error) - 1
  uint64_t tls_handshakes = 0;                   // completed
  // Failed handshakes and TLS errors after one; index: static_cast<size_t>(tls::TlsError)
  // (names: tls::tls_error_name).
  uint64_t tls_errors[tls::kTlsErrorCount] = {};
};

// How a handler answers one request, now or later. A small value: copy it to answer after an
// asynchronous step (a disk commit); answering after the connection closed is a counted no-op.
// Exactly one respond() per request; later calls are ignored. A Responder must not outlive its
// Server. The handler must answer every request eventually: no timeout runs while a connection
// waits for its handler (the handler owns that deadline, e.g. a storage commit's).
class Responder {
 public:
  Responder() = default;
  // `headers` must not include Content-Length, Transfer-Encoding, Connection or Date (the
  // server writes those). A HEAD request gets the head only, with the body's Content-Length.
  void respond(int status, std::string_view content_type, std::string_view body,
               std::span<const HeaderField> headers = {});
  // Whether the connection still waits for this answer.
  bool pending() const;
  // The client's address (AF_INET or AF_INET6) and its length, while the connection lives;
  // nullptr (and *length = 0) once it is gone or when unknown. Valid until the loop runs on.
  const sockaddr* peer_address(socklen_t* length) const;

 private:
  friend class Server;
  friend struct Connection;
  Responder(Server* server, uint32_t conn_index, uint64_t generation, uint32_t slot)
      : server_(server), conn_index_(conn_index), generation_(generation), slot_(slot) {}

  Server* server_ = nullptr;
  uint32_t conn_index_ = 0;
  uint64_t generation_ = 0;  // the connection's use: a reused Connection has a new one
  uint32_t slot_ = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // `request` and `body` are valid during this call only (the next pipelined request reuses
  // their storage); copy what a later answer needs.
  virtual void handle(const Request& request, std::string_view body, Responder& responder) = 0;
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> create(uring::EventLoop& loop, Handler& handler,
                                                        const ServerLimits& limits = {});
  // Closes whatever is left (on the loop thread, outside callbacks), running the loop until
  // its operations have ended.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds (SO_REUSEADDR) and starts accepting. `address` is an IPv4 or IPv6 literal; port 0
  // picks an ephemeral port (see port()). With `tls`, every connection speaks TLS (HTTPS); the
  // header timeout then runs from the accept, so it also bounds the handshake. A certificate
  // reload is tls->set_certificate(): new handshakes present the new certificate, established
  // connections keep going.
  absl::Status listen(const std::string& address, uint16_t port,
                      std::shared_ptr<tls::ServerContext> tls = nullptr);
  uint16_t port() const { return port_; }

  // Graceful shutdown: stops accepting, closes idle connections, lets requests in progress
  // finish (their responses carry "Connection: close") and closes each connection after its
  // last response. finished() turns true when nothing is left.
  void shutdown();
  bool finished() const;

  const ServerStats& stats() const { return stats_; }
  const ServerLimits& limits() const { return limits_; }
  // A committed config revision: the connection caps apply to the next accept, the request
  // cap to the next request, and the header/body/idle/send timeouts to every timer armed from
  // now on; a running timer longer than its new timeout is cut to now + new timeout (never
  // lengthened; the timer tick keeps the period listen() chose, at most 1 s, so a much shorter
  // timeout may fire up to that late). The parser limits, pipeline depth and receive buffers
  // size per-connection memory at creation and keep their values (restart fields).
  void set_limits(const ServerLimits& limits);

 private:
  friend class Responder;
  friend struct Connection;
  // One parser's head storage (HeadStorage points into it), pooled across connections.
  struct HeadBlock {
    std::unique_ptr<char[]> bytes;
    std::unique_ptr<HeaderField[]> fields;
    size_t bytes_size = 0;
    size_t fields_size = 0;
    HeadStorage storage() const { return {{bytes.get(), bytes_size}, {fields.get(), fields_size}}; }
  };
  static constexpr size_t kFreeHeadsKept = 64;
  HeadBlock acquire_head();
  void release_head(HeadBlock block);

  struct AddressKey {
    uint64_t hi = 0;
    uint64_t lo = 0;
    bool operator==(const AddressKey&) const = default;
  };
  struct AddressKeyHash {
    size_t operator()(const AddressKey& k) const {
      return static_cast<size_t>(k.hi * 0x9E3779B97F4A7C15ULL ^ (k.lo + (k.hi >> 29)));
    }
  };
  enum class TimerKind : uint8_t { kNone, kHeader, kBody, kIdle, kSend, kLinger };
  static constexpr size_t kTimerKinds = 6;
  struct TimerList {
    Connection* head = nullptr;
    Connection* tail = nullptr;
  };

  Server(uring::EventLoop& loop, Handler& handler, const ServerLimits& limits,
         std::unique_ptr<uring::BufferRing> buffers);

  static void on_accept(uring::Operation& op, const uring::Completion& c);
  static void on_tick(uring::Operation& op, const uring::Completion& c);
  void accept_one(int fd);
  void reject(int fd, uint64_t& counter);
  Connection* acquire_connection();
  void release_connection(Connection& conn);
  void release_address(const AddressKey& key);

  // Timers: one FIFO list per kind. Every timer of a kind has the same duration, so appending
  // at arm time keeps each list sorted by deadline: arm and disarm are O(1) and a tick only
  // looks at the expired heads.
  void set_timer(Connection& conn, TimerKind kind);
  void unlink_timer(Connection& conn);
  void expire_timers(uint64_t now_ns);
  uint64_t timer_duration_ns(TimerKind kind) const;

  void respond(const Responder& r, int status, std::string_view content_type, std::string_view body,
               std::span<const HeaderField> headers);
  bool responder_pending(const Responder& r) const;
  void maybe_finish_tick();

  uring::EventLoop& loop_;
  Handler& handler_;
  ServerLimits limits_;  // set_limits() changes the fields that are safe to change
  std::unique_ptr<uring::BufferRing> buffers_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  bool shutting_down_ = false;
  uring::Operation accept_op_;
  uring::Operation tick_op_;
  std::vector<std::unique_ptr<Connection>> connections_;  // grows to the peak, reused
  std::vector<uint32_t> free_connections_;
  std::vector<HeadBlock> free_heads_;
  std::unordered_map<AddressKey, uint32_t, AddressKeyHash> per_address_;
  TimerList timers_[kTimerKinds];
  DateCache dates_;
  ServerStats stats_;
  std::shared_ptr<tls::ServerContext> tls_;  // null: plain TCP
  // Decrypted bytes go through here into on_plaintext() (which copies what it keeps), so one
  // buffer serves every connection of the loop.
  std::unique_ptr<uint8_t[]> tls_plaintext_;
};

}  // namespace herald::http

// The worker's event loop (engine.h) over a ClientNetwork (network.h: kernel sockets or
// Herald's own stack on DPDK). Output is gathered per connection during a turn and written once
// at its end, so a busy connection costs one send per turn however many messages, acks and
// pings it carries.
#include "tools/loadgen/engine.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "platform/assert/assert.h"
#include "platform/tls/connection.h"
#include "tools/loadgen/dpdk_network.h"
#include "tools/loadgen/message_body.h"
#include "tools/loadgen/network.h"
#include "tools/loadgen/schedule.h"

namespace herald::tools::loadgen {
namespace {

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

constexpr int64_t kSweepNs = 100'000'000;  // pings, handshake deadlines, backoff expiries
constexpr uint32_t kMaxRetries = 50;       // per message, for retryable refusals
constexpr size_t kPlainBytes = 64 * 1024;
constexpr uint32_t kMaxArrivalsPerTurn = 65'536;

enum class State : uint8_t {
  kIdle,        // not part of the current phase
  kQueued,      // waiting for a connect slot
  kConnecting,  // TCP connect in progress
  kTls,         // TLS handshake
  kLogin,       // Hello / Auth
  kReady,
  kBackoff,   // reconnect after due_ns
  kDisabled,  // its credentials were refused for good
};

bool handshaking(State s) {
  return s == State::kConnecting || s == State::kTls || s == State::kLogin;
}

struct InFlight {
  uint64_t sequence = 0;
  int64_t send_ns = 0;
  Target target;
  uint16_t retries = 0;
  bool on_wire = false;
};

// A client's unacknowledged messages by client message id, ascending (resends go out in the
// order first sent). A window holds a handful, so a sorted vector searched by bisection: a
// std::map allocated a node per message and chased pointers on every ack, and that was the
// loadgen's largest single cost over memif at 40,000 msg/s (its own 8% of samples).
class InFlightList {
 public:
  using Item = std::pair<uint64_t, InFlight>;
  using iterator = std::vector<Item>::iterator;

  // A new id (a fresh sequence: after every id held, in practice).
  InFlight& insert(uint64_t id) {
    auto at = std::lower_bound(items_.begin(), items_.end(), id, less_id);
    HERALD_CHECK(at == items_.end() || at->first != id, "in-flight id inserted twice");
    return items_.insert(at, Item{id, InFlight{}})->second;
  }
  iterator find(uint64_t id) {
    auto at = std::lower_bound(items_.begin(), items_.end(), id, less_id);
    return at != items_.end() && at->first == id ? at : items_.end();
  }
  void erase(iterator at) { items_.erase(at); }
  void clear() { items_.clear(); }
  iterator begin() { return items_.begin(); }
  iterator end() { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  static bool less_id(const Item& item, uint64_t id) { return item.first < id; }
  std::vector<Item> items_;
};

struct Client {
  uint32_t index = 0;
  uint32_t generation = 0;
  NetHandle conn = kNoHandle;
  State state = State::kIdle;
  bool dirty = false;
  bool active = false;
  bool ever_logged_in = false;
  // Set by a session error inside protocol->feed(); acted on once feed() returns.
  bool drop_pending = false;
  bool drop_retry = false;
  uint32_t drop_after_ms = 0;
  uint32_t max_unacked = 1;
  uint32_t ping_interval_ms = 0;
  uint32_t backoff_ms = 0;
  uint32_t ready_slot = 0;
  uint32_t drain_sent = 0;
  int64_t connect_start_ns = 0;
  int64_t due_ns = 0;
  int64_t last_send_ns = 0;
  uint64_t next_sequence = 1;
  uint64_t last_sequence_received = 0;
  std::string drop_reason;
  std::unique_ptr<tls::Connection> tls;
  std::unique_ptr<ClientProtocol> protocol;
  std::vector<uint8_t> out;  // plaintext the TLS connection has not taken yet
  InFlightList in_flight;    // by client message id (= run << 32 | sequence)
};

struct DeliveryKey {
  uint64_t pair;  // recipient << 32 | sender
  uint64_t sequence;
  friend bool operator==(const DeliveryKey&, const DeliveryKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const DeliveryKey& k) {
    return H::combine(std::move(h), k.pair, k.sequence);
  }
};

struct Retry {
  int64_t due_ns;
  uint32_t local;
  uint64_t client_msg_id;
  bool operator>(const Retry& o) const { return due_ns > o.due_ns; }
};

class Engine final : public ProtocolEvents, private NetworkEvents {
 public:
  Engine(const WorkerPlan& plan, ControlBlock& control, ClientNetwork& network)
      : plan_(plan),
        network_(network),
        options_(*plan.options),
        control_(control),
        progress_(control.workers[plan.worker]),
        rng_(plan.options->seed * 7919 + plan.worker),
        body_(plan.options->body_bytes, 0),
        plain_buffer_(kPlainBytes) {
    clients_.resize(plan.end - plan.begin);
    for (uint32_t i = 0; i < clients_.size(); ++i) {
      clients_[i].index = plan.begin + i;
      clients_[i].protocol = plan.make_protocol(plan.begin + i);
    }
    ready_.reserve(clients_.size());
  }

  WorkerResult run() {
    now_ = mono_ns();
    enter(Phase::kConnect);
    int64_t next_sweep_ns = now_ + kSweepNs;
    for (;;) {
      now_ = mono_ns();
      const auto phase = static_cast<Phase>(control_.phase.load(std::memory_order_acquire));
      if (phase != phase_) {
        enter(phase);
        if (phase == Phase::kStop) break;
      }
      if (const uint32_t storm = control_.storm.load(std::memory_order_acquire);
          storm != storm_seen_) {
        run_storm();
        storm_seen_ = storm;
      }
      arrivals();
      drain_senders();
      retries();
      start_connects();
      if (now_ >= next_sweep_ns) {
        sweep();
        next_sweep_ns = now_ + kSweepNs;
      }
      flush_all();
      check_relogin();
      publish();

      int64_t next_ns = next_sweep_ns;
      if (schedule_.has_value()) next_ns = std::min(next_ns, schedule_->next_ns());
      if (!retry_queue_.empty()) next_ns = std::min(next_ns, retry_queue_.top().due_ns);
      now_ = mono_ns();
      network_.wait(std::max<int64_t>(0, next_ns - now_), *this);
    }
    result_.sessions_held = ready_.size();
    // Connections still open end with the network (network.h): the DPDK stack resets them,
    // paced, rather than a FIN each.
    for (Client& c : clients_) c.conn = kNoHandle;
    publish();
    return std::move(result_);
  }

  // ProtocolEvents, for current_.
  void on_ready(uint32_t max_unacked, uint32_t ping_interval_ms) override {
    Client& c = *current_;
    if (c.state != State::kLogin) return;
    c.state = State::kReady;
    --connecting_;
    c.ready_slot = static_cast<uint32_t>(ready_.size());
    ready_.push_back(local_of(c));
    c.max_unacked =
        max_unacked == 0 ? options_.window : std::min<uint32_t>(options_.window, max_unacked);
    c.ping_interval_ms = ping_interval_ms;
    c.backoff_ms = 0;
    ++result_.logins;
    result_.login_us.record(static_cast<uint64_t>(now_ - c.connect_start_ns) / 1000);
    if (!c.ever_logged_in) {
      c.ever_logged_in = true;
      if (phase_ == Phase::kConnect) result_.connect_end_ns = now_;
    }
    // What the last connection left unacked goes again, with the same ids, in order.
    for (auto& [id, f] : c.in_flight) {
      if (!f.on_wire) {
        write_message(c, id, f);
        ++result_.resent;
        result_.resent_messages.push_back({c.index, 0, f.sequence});
      }
    }
  }

  void on_ack(uint64_t client_msg_id) override {
    Client& c = *current_;
    auto it = c.in_flight.find(client_msg_id);
    if (it == c.in_flight.end()) {
      result_.error("ack_unknown");
      return;
    }
    const InFlight& f = it->second;
    const AckRecord record{c.index, f.target.index, f.sequence};
    result_.acks.push_back(record);
    result_.ack_latency_us.record(static_cast<uint64_t>(std::max<int64_t>(0, now_ - f.send_ns)) /
                                  1000);
    ++result_.acked;
    expected_ += recipients_of(record);
    --in_flight_total_;
    c.in_flight.erase(it);
  }

  void on_deliver(std::span<const uint8_t> body, const ServerId& id) override {
    Client& c = *current_;
    const std::optional<BodyHeader> h = decode_body_header(body);
    if (!h.has_value()) {
      result_.error("foreign_body");
      return;
    }
    if (h->run_id != plan_.run_id) {
      ++result_.stale;
      return;
    }
    const DeliveryKey key{uint64_t{c.index} << 32 | h->sender, h->sequence};
    auto [it, inserted] = delivered_.try_emplace(key, id);
    if (!inserted) {
      // The same server id again is a redelivery an app drops; another id for the same
      // message is a duplicate an app would show twice.
      if (it->second == id || id.empty()) {
        ++result_.redeliveries;
      } else {
        ++result_.duplicates;
        // The merge tells a message sent once from a resend (results.h: retry_duplicates).
        result_.duplicate_deliveries.push_back({h->sender, c.index, h->sequence});
      }
      return;
    }
    ++result_.delivered;
    result_.deliveries.push_back({h->sender, c.index, h->sequence});
    if (options_.recheck_reconnect && options_.scenario != Scenario::kReconnectStorm &&
        storm_seen_ > 0 && late_traced_ < kLateTraceLimit) {
      // Found only after everyone logged in again (--recheck-reconnect): the server id and the
      // age say which dataplane minted it and when, for the engineer chasing the cause.
      ++late_traced_;
      std::fprintf(stderr,
                   "herald-loadgen: late delivery: sender %u recipient %u sequence %llu "
                   "server_id %016llx%016llx age_ms %lld\n",
                   h->sender, c.index, static_cast<unsigned long long>(h->sequence),
                   static_cast<unsigned long long>(id.hi), static_cast<unsigned long long>(id.lo),
                   static_cast<long long>((now_ - h->send_time_ns) / 1'000'000));
    }
    result_.latency_us.record(static_cast<uint64_t>(std::max<int64_t>(0, now_ - h->send_time_ns)) /
                              1000);
    if (options_.scenario == Scenario::kOfflineDrain) {
      // One sender per recipient here, so its sequences must arrive in increasing order.
      if (h->sequence <= c.last_sequence_received) ++result_.order_violations;
      c.last_sequence_received = h->sequence;
    }
  }

  void on_send_error(uint64_t client_msg_id, std::string_view code, bool retry,
                     uint32_t retry_after_ms) override {
    Client& c = *current_;
    result_.error("send_" + std::string(code));
    if (client_msg_id == 0) return;
    auto it = c.in_flight.find(client_msg_id);
    if (it == c.in_flight.end()) return;
    InFlight& f = it->second;
    if (retry && f.retries < kMaxRetries) {
      ++f.retries;
      f.on_wire = false;
      const int64_t delay_ms = std::max<uint32_t>(retry_after_ms, 50);
      retry_queue_.push({now_ + delay_ms * 1'000'000, local_of(c), client_msg_id});
      return;
    }
    // Never acked, so never expected: it leaves the books with a named error.
    result_.error("gave_up_" + std::string(code));
    --in_flight_total_;
    c.in_flight.erase(it);
  }

  void on_session_error(std::string_view code, bool retry, uint32_t retry_after_ms) override {
    Client& c = *current_;
    c.drop_pending = true;
    c.drop_reason = std::string(code);
    c.drop_retry = retry;
    c.drop_after_ms = retry_after_ms;
  }

  void on_pong() override {}

 private:
  uint32_t local_of(const Client& c) const { return c.index - plan_.begin; }

  uint64_t recipients_of(const AckRecord& a) const {
    if (!plan_.topology.groups) return 1;
    const Topology& t = plan_.topology;
    const uint32_t members = t.group_end(a.target) - t.group_begin(a.target);
    const bool sender_in = a.sender >= t.group_begin(a.target) && a.sender < t.group_end(a.target);
    return members - (sender_in ? 1 : 0);
  }

  // Which clients take part in a phase, and what it starts.
  void enter(Phase phase) {
    phase_ = phase;
    const Scenario scenario = options_.scenario;
    switch (phase) {
      case Phase::kConnect:
        for (Client& c : clients_) {
          // offline-drain: odd accounts receive, and stay away until the drain.
          if (scenario == Scenario::kOfflineDrain && c.index % 2 == 1) continue;
          activate(c);
        }
        break;
      case Phase::kSend: {
        const int64_t start_ns = control_.send_start_ns.load(std::memory_order_acquire);
        const bool sends = scenario == Scenario::kOneToOne || scenario == Scenario::kGroup ||
                           scenario == Scenario::kReconnectStorm;
        if (sends && options_.rate_per_s > 0) {
          schedule_.emplace(options_.rate_per_s / options_.processes, start_ns,
                            options_.seed * 1'000'003 + plan_.worker);
        }
        if (scenario == Scenario::kOfflineDrain) {
          for (Client& c : clients_) {
            if (c.active) drain_pending_.push_back(local_of(c));
          }
        }
        break;
      }
      case Phase::kSettle: schedule_.reset(); break;
      case Phase::kDrain:
        schedule_.reset();
        for (Client& c : clients_) {
          if (!c.active) activate(c);
        }
        break;
      case Phase::kStop: break;
    }
  }

  void activate(Client& c) {
    c.active = true;
    ++active_;
    c.state = State::kQueued;
    connect_queue_.push_back(local_of(c));
  }

  void arrivals() {
    if (!schedule_.has_value() || phase_ != Phase::kSend) return;
    for (uint32_t budget = kMaxArrivalsPerTurn; budget > 0 && schedule_->next_ns() <= now_;
         --budget) {
      const int64_t due_ns = schedule_->next_ns();
      schedule_->advance();
      if (ready_.empty()) {
        result_.error("arrival_no_sender");
        continue;
      }
      bool sent = false;
      // A sender whose window is full passes the arrival on; open loop means it is never
      // postponed, so a loadgen that cannot keep up shows as this error, not as lower load.
      for (int attempt = 0; attempt < 4 && !sent; ++attempt) {
        Client& c = clients_[ready_[rng_() % ready_.size()]];
        sent = send_new(c, pick_target(c), due_ns);
      }
      if (!sent) result_.error("arrival_window_full");
    }
  }

  Target pick_target(const Client& c) {
    if (plan_.topology.groups) {
      return {Target::Kind::kGroup, plan_.topology.group_of(c.index)};
    }
    uint32_t to = static_cast<uint32_t>(rng_() % (plan_.topology.accounts - 1));
    if (to >= c.index) ++to;
    return {Target::Kind::kAccount, to};
  }

  // offline-drain: each sender fills its window towards its pair until it has sent M.
  void drain_senders() {
    if (phase_ != Phase::kSend || options_.scenario != Scenario::kOfflineDrain) return;
    for (size_t i = 0; i < drain_pending_.size();) {
      Client& c = clients_[drain_pending_[i]];
      while (c.drain_sent < options_.messages_per_sender &&
             send_new(c, {Target::Kind::kAccount, c.index + 1}, now_)) {
        ++c.drain_sent;
      }
      // A sender whose credentials were refused for good sends no more (its error is counted).
      if (c.drain_sent == options_.messages_per_sender || c.state == State::kDisabled) {
        drain_pending_[i] = drain_pending_.back();
        drain_pending_.pop_back();
      } else {
        ++i;
      }
    }
    if (drain_pending_.empty() && in_flight_total_ == 0) send_done_ = true;
  }

  bool send_new(Client& c, const Target& to, int64_t due_ns) {
    if (c.state != State::kReady || c.in_flight.size() >= c.max_unacked) return false;
    const uint64_t sequence = c.next_sequence++;
    const uint64_t id = client_msg_id_of(plan_.run_id, sequence);
    InFlight& f = c.in_flight.insert(id);
    f.sequence = sequence;
    f.send_ns = due_ns;
    f.target = to;
    write_message(c, id, f);
    ++result_.sent;
    ++in_flight_total_;
    return true;
  }

  void write_message(Client& c, uint64_t id, InFlight& f) {
    encode_body_header({plan_.run_id, c.index, f.sequence, f.send_ns}, body_);
    c.protocol->send(f.target, id, body_, c.out);
    f.on_wire = true;
    c.last_send_ns = now_;
    mark_dirty(c);
  }

  void retries() {
    while (!retry_queue_.empty() && retry_queue_.top().due_ns <= now_) {
      const Retry r = retry_queue_.top();
      retry_queue_.pop();
      Client& c = clients_[r.local];
      auto it = c.in_flight.find(r.client_msg_id);
      // Not ready: the login resends it.
      if (it == c.in_flight.end() || it->second.on_wire || c.state != State::kReady) continue;
      write_message(c, r.client_msg_id, it->second);
      ++result_.resent;
      result_.resent_messages.push_back({c.index, 0, it->second.sequence});
    }
  }

  void run_storm() {
    for (Client& c : clients_) {
      if (!c.active || c.state == State::kDisabled) continue;
      if (c.state != State::kQueued) {
        drop(c, "storm", /*reconnect=*/true, 0, /*count=*/false);
        c.state = State::kQueued;
        connect_queue_.push_back(local_of(c));
      }
    }
  }

  void start_connects() {
    // While the link is down nothing can connect: the queue waits (wait() sleeps meanwhile).
    if (!link_up_) return;
    while (!connect_queue_.empty() && connecting_ < options_.connect_concurrency) {
      const uint32_t local = connect_queue_.front();
      connect_queue_.pop_front();
      Client& c = clients_[local];
      if (c.state == State::kQueued) start_connect(c);
    }
  }

  void start_connect(Client& c) {
    if (result_.connect_start_ns == 0) result_.connect_start_ns = now_;
    ++c.generation;
    absl::StatusOr<NetHandle> conn = network_.connect(token_of(c));
    if (!conn.ok()) {
      backoff(c, std::string(conn.status().message()));
      return;
    }
    c.conn = *conn;
    c.state = State::kConnecting;
    c.connect_start_ns = now_;
    c.due_ns = now_ + static_cast<int64_t>(options_.handshake_timeout_s * 1e9);
    ++connecting_;
  }

  // A connection attempt failed before the network started it.
  void backoff(Client& c, const std::string& reason) {
    result_.error(reason);
    c.backoff_ms = Backoff::next_ms(c.backoff_ms);
    c.state = State::kBackoff;
    c.due_ns = now_ + jitter(c.backoff_ms) * 1'000'000;
  }

  // Half to the full delay: clients that failed together do not come back together.
  int64_t jitter(uint32_t ms) { return Backoff::jittered_ms(ms, rng_()); }

  void drop(Client& c, const std::string& reason, bool reconnect, uint32_t after_ms,
            bool count = true) {
    if (c.conn != kNoHandle) network_.close(c.conn);
    c.conn = kNoHandle;
    ++c.generation;
    if (c.state == State::kReady) {
      const uint32_t moved = ready_.back();
      ready_[c.ready_slot] = moved;
      clients_[moved].ready_slot = c.ready_slot;
      ready_.pop_back();
      ++result_.disconnects;
    } else if (handshaking(c.state)) {
      --connecting_;
    }
    c.tls.reset();
    c.out.clear();
    if (c.out.capacity() > 64 * 1024) c.out.shrink_to_fit();
    c.drop_pending = false;
    for (auto& [id, f] : c.in_flight) f.on_wire = false;
    if (count) result_.error(reason);
    if (reconnect) {
      c.backoff_ms = Backoff::next_ms(c.backoff_ms);
      c.state = State::kBackoff;
      c.due_ns = now_ + std::max<int64_t>(after_ms, jitter(c.backoff_ms)) * 1'000'000;
      return;
    }
    c.state = State::kDisabled;
    ++given_up_;
    result_.error("gave_up_client");
    // Its unacked messages will never be acked: they leave the books (and are not expected).
    if (!c.in_flight.empty()) result_.error("gave_up_message", c.in_flight.size());
    in_flight_total_ -= c.in_flight.size();
    c.in_flight.clear();
  }

  void sweep() {
    for (Client& c : clients_) {
      switch (c.state) {
        case State::kBackoff:
          if (now_ >= c.due_ns) {
            c.state = State::kQueued;
            connect_queue_.push_back(local_of(c));
          }
          break;
        case State::kConnecting:
        case State::kTls:
        case State::kLogin:
          if (now_ >= c.due_ns) drop(c, "handshake_timeout", true, 0);
          break;
        case State::kReady:
          if (c.ping_interval_ms > 0 &&
              now_ - c.last_send_ns >= int64_t{c.ping_interval_ms} * 1'000'000) {
            c.protocol->ping(c.out);
            c.last_send_ns = now_;
            ++result_.pings;
            mark_dirty(c);
          }
          break;
        default: break;
      }
    }
  }

  void mark_dirty(Client& c) {
    if (!c.dirty) {
      c.dirty = true;
      dirty_.push_back(local_of(c));
    }
  }

  uint64_t token_of(const Client& c) const { return uint64_t{c.generation} << 32 | local_of(c); }

  // The client a network event is for; nullptr for a connection since dropped.
  Client* client_of(uint64_t token) {
    const uint32_t local = static_cast<uint32_t>(token);
    if (local >= clients_.size()) return nullptr;
    Client& c = clients_[local];
    if (c.generation != static_cast<uint32_t>(token >> 32) || c.conn == kNoHandle) return nullptr;
    return &c;
  }

  // NetworkEvents
  void on_connected(uint64_t token) override {
    Client* c = client_of(token);
    if (c == nullptr || c->state != State::kConnecting) return;
    ++result_.connects;
    auto tls = tls::Connection::client(plan_.tls, plan_.server_name);
    if (!tls.ok()) {
      drop(*c, "tls_init", true, 0);
      return;
    }
    c->tls = std::move(*tls);
    c->state = State::kTls;
    mark_dirty(*c);  // the ClientHello
  }

  void on_data(uint64_t token, std::span<const uint8_t> bytes) override {
    Client* c = client_of(token);
    if (c == nullptr || c->tls == nullptr) return;
    now_ = mono_ns();  // latencies are taken here
    (void)feed(*c, bytes);
  }

  void on_eof(uint64_t token) override {
    Client* c = client_of(token);
    if (c == nullptr) return;
    if (c->tls != nullptr) {
      c->tls->feed_eof();
      if (!after_tls_input(*c)) return;
    }
    drop(*c, handshaking(c->state) ? "closed_in_handshake" : "server_closed", true, 0);
  }

  void on_failed(uint64_t token, const std::string& reason) override {
    Client* c = client_of(token);
    if (c == nullptr) return;
    if (!link_up_) ++result_.link_dropped;
    c->conn = kNoHandle;  // the network ended it already
    drop(*c, reason, true, 0);
  }

  void on_writable(uint64_t token) override {
    if (Client* c = client_of(token); c != nullptr) mark_dirty(*c);
  }

  // The dataplane restarted (its memif link went down, then up): every connection failed with
  // "link_down" and backs off; connects wait for the link; from its return, the time until
  // every active client is logged in again is the reconnect figure.
  void on_link(bool up) override {
    const int64_t now = mono_ns();
    if (!up) {
      link_up_ = false;
      link_down_ns_ = now;
      ++result_.link_downs;
      relogin_pending_ = true;
      // At once, not at the turn's end: dropping a million clients takes seconds, and a
      // coordinator ending its hold meanwhile must know this worker is reconnecting.
      progress_.link_pending.store(1, std::memory_order_release);
      return;
    }
    link_up_ = true;
    link_up_ns_ = now;
    result_.link_outage_ns = now - link_down_ns_;
  }

  void check_relogin() {
    if (!relogin_pending_ || !link_up_ || ready_.size() + given_up_ < active_) return;
    relogin_pending_ = false;
    result_.relogin_ns = mono_ns() - link_up_ns_;
    std::fprintf(stderr,
                 "herald-loadgen: worker %u: %zu sessions logged in again %.3f s after the link "
                 "came back\n",
                 plan_.worker, ready_.size(), static_cast<double>(result_.relogin_ns) / 1e9);
  }

  // Ciphertext in; false once the client was dropped.
  bool feed(Client& c, std::span<const uint8_t> data) {
    while (!data.empty()) {
      const size_t taken = c.tls->feed_ciphertext(data);
      data = data.subspan(taken);
      if (!after_tls_input(c)) return false;
      if (taken == 0 && !data.empty() && c.tls->feed_ciphertext(data) == 0) {
        // after_tls_input drained all plaintext, so the queue must have room now.
        drop(c, "tls_input_stuck", true, 0);
        return false;
      }
    }
    return true;
  }

  bool after_tls_input(Client& c) {
    if (c.state == State::kTls) {
      const tls::HandshakeState hs = c.tls->handshake_state();
      if (hs == tls::HandshakeState::kFailed) {
        drop(c, "tls_" + std::string(tls::tls_error_name(c.tls->error())), true, 0);
        return false;
      }
      if (hs == tls::HandshakeState::kDone) {
        ++result_.handshakes;
        c.state = State::kLogin;
        c.out.clear();  // anything left from the previous connection
        c.protocol->start(c.out);
        c.last_send_ns = now_;
      }
    }
    if (!c.tls->pending_ciphertext().empty()) mark_dirty(c);
    if (c.state != State::kLogin && c.state != State::kReady) return true;
    for (;;) {
      const tls::IoResult r = c.tls->read_plaintext(plain_buffer_);
      if (r.status == tls::IoStatus::kOk) {
        const uint32_t generation = c.generation;
        current_ = &c;
        const absl::Status s =
            c.protocol->feed(std::span<const uint8_t>(plain_buffer_.data(), r.bytes), c.out, *this);
        current_ = nullptr;
        if (c.generation != generation) return false;
        // A session error the protocol named comes before its generic failure.
        if (c.drop_pending) {
          drop(c, c.drop_reason, c.drop_retry, c.drop_after_ms);
          return false;
        }
        if (!s.ok()) {
          drop(c, "protocol_error", true, 0);
          return false;
        }
        // Even with nothing in `out`: the protocol may hold acknowledgements for flush().
        mark_dirty(c);
        continue;
      }
      if (r.status == tls::IoStatus::kWantMore) break;
      if (r.status == tls::IoStatus::kClosed) {
        drop(c, "server_closed", true, 0);
      } else {
        drop(c, "tls_" + std::string(tls::tls_error_name(c.tls->error())), true, 0);
      }
      return false;
    }
    if (!c.tls->pending_ciphertext().empty()) mark_dirty(c);
    return true;
  }

  void flush_all() {
    flushing_.swap(dirty_);
    for (const uint32_t local : flushing_) {
      Client& c = clients_[local];
      c.dirty = false;
      if (c.conn != kNoHandle && c.tls != nullptr) flush(c);
    }
    flushing_.clear();
  }

  void flush(Client& c) {
    if (c.state == State::kLogin || c.state == State::kReady) c.protocol->flush(c.out);
    for (;;) {
      size_t taken = 0;
      if (c.tls->handshake_done()) {
        while (taken < c.out.size()) {
          const tls::IoResult r =
              c.tls->write_plaintext(std::span<const uint8_t>(c.out).subspan(taken));
          if (r.status == tls::IoStatus::kOk) {
            taken += r.bytes;
          } else if (r.status == tls::IoStatus::kWantMore) {
            break;
          } else {
            drop(c, "tls_" + std::string(tls::tls_error_name(c.tls->error())), true, 0);
            return;
          }
        }
        c.out.erase(c.out.begin(), c.out.begin() + static_cast<ptrdiff_t>(taken));
      }
      // Ciphertext to the network; a short send means its queue is full (on_writable brings
      // us back).
      for (;;) {
        const std::span<const uint8_t> pending = c.tls->pending_ciphertext();
        if (pending.empty()) break;
        const absl::StatusOr<size_t> n = network_.send(c.conn, pending);
        if (!n.ok()) {
          drop(c, std::string(n.status().message()), true, 0);
          return;
        }
        c.tls->consume_ciphertext(*n);
        if (*n < pending.size()) return;
      }
      if (c.out.empty() || taken == 0) return;
    }
  }

  void publish() {
    WorkerProgress& p = progress_;
    p.logged_in.store(ready_.size(), std::memory_order_relaxed);
    p.active.store(active_, std::memory_order_relaxed);
    p.connects.store(result_.connects, std::memory_order_relaxed);
    p.handshakes.store(result_.handshakes, std::memory_order_relaxed);
    p.logins.store(result_.logins, std::memory_order_relaxed);
    p.sent.store(result_.sent, std::memory_order_relaxed);
    p.acked.store(result_.acked, std::memory_order_relaxed);
    p.expected.store(expected_, std::memory_order_relaxed);
    p.delivered.store(result_.delivered, std::memory_order_relaxed);
    p.in_flight.store(in_flight_total_, std::memory_order_relaxed);
    p.given_up.store(given_up_, std::memory_order_relaxed);
    p.send_done.store(send_done_ ? 1 : 0, std::memory_order_relaxed);
    p.link_pending.store(relogin_pending_ ? 1 : 0, std::memory_order_relaxed);
    // Last, with release: a coordinator that sees the storm acted on (or the phase entered)
    // sees the counts after it.
    p.phase_seen.store(static_cast<uint32_t>(phase_), std::memory_order_release);
    p.storm_seen.store(storm_seen_, std::memory_order_release);
  }

  const WorkerPlan& plan_;
  ClientNetwork& network_;
  const Options& options_;
  ControlBlock& control_;
  WorkerProgress& progress_;
  WorkerResult result_;
  int64_t now_ = 0;
  Phase phase_ = Phase::kConnect;
  uint32_t storm_seen_ = 0;
  static constexpr int kLateTraceLimit = 10;
  int late_traced_ = 0;
  std::mt19937_64 rng_;
  std::vector<Client> clients_;
  std::vector<uint32_t> ready_;  // local indices of kReady clients (random senders)
  std::deque<uint32_t> connect_queue_;
  std::vector<uint32_t> dirty_;
  std::vector<uint32_t> flushing_;
  std::vector<uint32_t> drain_pending_;
  std::priority_queue<Retry, std::vector<Retry>, std::greater<Retry>> retry_queue_;
  std::optional<PoissonSchedule> schedule_;
  absl::flat_hash_map<DeliveryKey, ServerId> delivered_;
  Client* current_ = nullptr;
  uint32_t connecting_ = 0;
  uint64_t active_ = 0;
  uint64_t expected_ = 0;
  uint64_t in_flight_total_ = 0;
  uint64_t given_up_ = 0;
  bool send_done_ = false;
  // Link state (on_link): down stops connects; a loss is "pending" until all logged in again.
  bool link_up_ = true;
  bool relogin_pending_ = false;
  int64_t link_down_ns_ = 0;
  int64_t link_up_ns_ = 0;
  std::vector<uint8_t> body_;
  std::vector<uint8_t> plain_buffer_;
};

}  // namespace

WorkerResult run_worker(const WorkerPlan& plan, ControlBlock& control) {
  absl::StatusOr<std::unique_ptr<ClientNetwork>> network =
      plan.options->dpdk_port.empty() ? make_kernel_network(plan) : make_dpdk_network(plan);
  WorkerResult result;
  if (network.ok()) {
    Engine engine(plan, control, **network);
    result = engine.run();
  } else {
    std::fprintf(stderr, "herald-loadgen: worker %u: %s\n", plan.worker,
                 std::string(network.status().message()).c_str());
    result.error("network_setup");
  }
  control.workers[plan.worker].exited.store(1, std::memory_order_release);
  return result;
}

}  // namespace herald::tools::loadgen

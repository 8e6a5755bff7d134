// The TCP engine's deterministic simulation: two engines over a simulated link in virtual time
// (FakeClock + TimerWheel) with seeded loss, duplication, reordering, delay and corruption. Both
// sides stream pseudo-random bytes both ways and close; every stream must arrive byte-exact,
// both sides must end with a normal close, and every connection block must be gone after
// TIME-WAIT. Replay one seed with HERALD_SIM_SEED=N; HERALD_SIM_SEEDS=N runs N seeds (default
// 3000), HERALD_SIM_FIRST_SEED moves the range.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dataplane/net/tcp/tcp.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"

namespace herald::net::tcp {
namespace {

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strtoull(v, nullptr, 10);
}

struct LinkParams {
  double loss = 0, duplicate = 0, corrupt = 0, reorder = 0;
  uint64_t delay_ns = 0, jitter_ns = 0;
  // Loss bursts (Gilbert-Elliott): a good state (loss above) and a bad one that loses
  // `burst_loss` of the packets; enter with `burst_enter`, leave with `burst_exit`.
  double burst_enter = 0, burst_exit = 1, burst_loss = 0;
  int lossy_to = -1;  // -1: loss both ways; 0 or 1: only packets towards that engine
};

struct Packet {
  IpAddr src, dst;
  std::vector<uint8_t> bytes;
  int to;  // 0 = engine A, 1 = engine B
};

class Link {
 public:
  Link(uint64_t seed, const LinkParams& p, clock::FakeClock& clock)
      : random_(seed), params_(p), clock_(clock) {}

  void send(int to, const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> bytes) {
    ++sent_;
    if (trace_) print(to, bytes);
    Segment seg;
    const size_t payload =
        parse_segment(src, dst, bytes, true, &seg) == ParseError::kNone ? seg.payload.size() : 0;
    const bool lossy = params_.lossy_to < 0 || params_.lossy_to == to;
    if (lossy && params_.burst_enter > 0) {
      // A burst is an outage in time too (at most 200 ms): counted only in packets, a sender
      // backing off its RTO would stay inside one forever.
      const bool was_bad = bad_;
      bad_ = bad_ ? !chance(params_.burst_exit) : chance(params_.burst_enter);
      if (bad_ && !was_bad) bad_since_ns_ = clock_.now_ns();
      if (bad_ && clock_.now_ns() - bad_since_ns_ > 200'000'000) bad_ = false;
    }
    if (lossy && chance(bad_ ? params_.burst_loss : params_.loss)) {
      lost_bytes_[to] += payload;
      if (trace_) std::printf("           (lost)\n");
      return;
    }
    int copies = chance(params_.duplicate) ? 2 : 1;
    bool delivered = false;
    for (int i = 0; i < copies; ++i) {
      Packet p{src, dst, std::vector<uint8_t>(bytes.begin(), bytes.end()), to};
      if (chance(params_.corrupt) && !p.bytes.empty()) {
        // A single flipped bit always fails the checksum: the receiver drops it.
        p.bytes[random_() % p.bytes.size()] ^= static_cast<uint8_t>(1u << (random_() % 8));
      } else {
        delivered = true;
      }
      uint64_t at = clock_.now_ns() + params_.delay_ns +
                    (params_.jitter_ns ? random_() % params_.jitter_ns : 0);
      if (chance(params_.reorder)) at += params_.delay_ns + random_() % (20'000'000);
      queue_.emplace(std::make_pair(at, order_++), std::move(p));
    }
    if (!delivered) lost_bytes_[to] += payload;
  }
  uint64_t next_ns() const { return queue_.empty() ? UINT64_MAX : queue_.begin()->first.first; }
  bool pop_due(uint64_t now, Packet* out) {
    if (queue_.empty() || queue_.begin()->first.first > now) return false;
    *out = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    return true;
  }
  uint64_t sent() const { return sent_; }
  // Payload bytes towards engine `to` that never arrived intact (lost or every copy corrupt).
  uint64_t lost_bytes(int to) const { return lost_bytes_[to]; }
  bool trace_ = false;

 private:
  // HERALD_SIM_TRACE=1 with a replayed seed: one line per segment sent.
  void print(int to, std::span<const uint8_t> bytes) {
    Segment s;
    IpAddr x;
    if (parse_segment(x, x, bytes, true, &s) != ParseError::kNone) return;
    std::printf("%10.3f %c>%c seq %u ack %u len %zu win %u %s%s%s%s%s ts %u/%u\n",
                clock_.now_ns() / 1e6, to ? 'A' : 'B', to ? 'B' : 'A', s.seq, s.ack,
                s.payload.size(), s.window, s.has(kSyn) ? "S" : "", s.has(kAck) ? "A" : "",
                s.has(kFin) ? "F" : "", s.has(kRst) ? "R" : "", s.has(kPsh) ? "P" : "",
                s.options.ts_val, s.options.ts_ecr);
    for (uint8_t i = 0; i < s.options.sack_count; ++i) {
      std::printf("           sack %u-%u\n", s.options.sack[i].left, s.options.sack[i].right);
    }
  }

  bool chance(double p) {
    return p > 0 && std::uniform_real_distribution<double>(0, 1)(random_) < p;
  }

  std::mt19937_64 random_;
  LinkParams params_;
  clock::FakeClock& clock_;
  std::map<std::pair<uint64_t, uint64_t>, Packet> queue_;
  uint64_t order_ = 0;
  uint64_t sent_ = 0;
  uint64_t lost_bytes_[2] = {0, 0};
  bool bad_ = false;
  uint64_t bad_since_ns_ = 0;
};

class Side : public TcpEvents, public TcpOutput {
 public:
  Side(int index, Link& link, std::vector<uint8_t> out_stream, size_t expect_bytes)
      : index_(index), link_(link), out_(std::move(out_stream)), expect_bytes_(expect_bytes) {}

  void attach(TcpEngine* engine, const std::vector<uint8_t>* peer_stream) {
    engine_ = engine;
    peer_stream_ = peer_stream;
  }

  // TcpOutput
  bool send_segment(const IpAddr& src, const IpAddr& dst,
                    std::span<const uint8_t> segment) override {
    link_.send(1 - index_, src, dst, segment);
    return true;
  }

  // TcpEvents
  void on_accepted(ConnectionId id, const FourTuple&) override {
    if (id_ != kNoConnection) failure("second connection accepted");
    id_ = id;
    pump();
  }
  void on_connected(ConnectionId id) override {
    if (id != id_) failure("on_connected for an unknown id");
    connected_ = true;
    pump();
  }
  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    if (id != id_) return failure("on_data for an unknown id");
    if (peer_closed_) return failure("on_data after on_peer_closed");
    if (received_ + bytes.size() > expect_bytes_) return failure("more bytes than sent");
    if (std::memcmp(bytes.data(), peer_stream_->data() + received_, bytes.size()) != 0) {
      return failure("stream corrupted at offset " + std::to_string(received_));
    }
    received_ += bytes.size();
  }
  void on_peer_closed(ConnectionId id) override {
    if (id != id_) return failure("on_peer_closed for an unknown id");
    if (received_ != expect_bytes_) {
      return failure("FIN after " + std::to_string(received_) + " of " +
                     std::to_string(expect_bytes_) + " bytes");
    }
    peer_closed_ = true;
  }
  void on_writable(ConnectionId id) override {
    if (id != id_) return failure("on_writable for an unknown id");
    pump();
  }
  void on_closed(ConnectionId id, TcpCloseReason reason) override {
    if (id != id_) return failure("on_closed for an unknown id");
    if (closed_) return failure("on_closed twice");
    closed_ = true;
    reason_ = reason;
  }

  // Queues as much of the stream as the send buffer takes; closes when all is queued.
  void pump() {
    if (id_ == kNoConnection || closed_ || close_called_) return;
    uint32_t space = engine_->send_space(id_);
    size_t n = std::min<size_t>(space, out_.size() - queued_);
    if (n > 0) {
      if (engine_->send(id_, {out_.data() + queued_, n}) != SendResult::kOk) {
        return failure("send refused");
      }
      queued_ += n;
    }
    if (queued_ == out_.size()) {
      close_called_ = true;
      engine_->close(id_, CloseMode::kGraceful);
    }
  }
  void set_reading(bool reading) {
    if (id_ != kNoConnection && !closed_) engine_->set_reading(id_, reading);
  }

  void failure(const std::string& what) {
    if (error_.empty()) error_ = "side " + std::to_string(index_) + ": " + what;
  }

  int index_;
  Link& link_;
  TcpEngine* engine_ = nullptr;
  std::vector<uint8_t> out_;
  const std::vector<uint8_t>* peer_stream_ = nullptr;
  size_t expect_bytes_;
  ConnectionId id_ = kNoConnection;
  bool connected_ = false;
  size_t queued_ = 0;
  size_t received_ = 0;
  bool peer_closed_ = false;
  bool close_called_ = false;
  bool closed_ = false;
  TcpCloseReason reason_ = TcpCloseReason::kCount;
  std::string error_;
};

struct Outcome {
  std::string error;  // empty: passed
  uint64_t retransmits = 0;
  uint64_t retransmitted_bytes = 0;  // payload bytes both engines sent again
  uint64_t lost_bytes = 0;           // payload bytes the link lost, both ways
  uint64_t sack_recoveries = 0;
  uint64_t transfer_ns = 0;  // from the start until both streams were fully received
};

// What a run varies. `sack`: 0 off on both sides, 1 on on both, 2 a coin per side.
// `bursts`: the recovery scenario instead of the general one: a one-way bulk transfer from A
// over a link that loses packets in bursts towards B only, with no reordering, duplication,
// jitter or corruption, so every byte B does not SACK really was lost.
// `cc`: congestion control, 0 NewReno on both sides, 1 CUBIC on both, 2 a coin per side.
// `long_fat`: a one-way bulk transfer over a long-delay link with rare random loss towards B
// and buffers that never limit: what congestion control alone decides.
struct Mode {
  int sack = 2;
  bool bursts = false;
  int cc = 2;
  bool long_fat = false;
};

std::vector<uint8_t> make_stream(std::mt19937_64& r, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(r());
  return v;
}

Outcome run_seed(uint64_t seed, bool verbose, const Mode& mode) {
  std::mt19937_64 r(seed * 0x9e3779b97f4a7c15ULL + 7);
  auto pick = [&r](std::initializer_list<double> v) { return *(v.begin() + r() % v.size()); };
  LinkParams lp;
  lp.loss = pick({0.0, 0.01, 0.03, 0.08, 0.15});
  lp.duplicate = pick({0.0, 0.02, 0.1});
  lp.corrupt = pick({0.0, 0.01, 0.05});
  lp.reorder = pick({0.0, 0.02, 0.1});
  lp.delay_ns = (1 + r() % 40) * 1'000'000;
  lp.jitter_ns = pick({0.0, 1.0, 5.0, 30.0}) * 1'000'000;

  TcpConfig cfg[2];
  for (auto& c : cfg) {
    c.mss = static_cast<uint16_t>(pick({88, 256, 536, 1460}));
    c.window_scaling = r() % 4 != 0;
    c.window_scale = static_cast<uint8_t>(r() % 9);
    c.timestamps = r() % 4 != 0;
    c.send_buffer_bytes = static_cast<uint32_t>(pick({700, 4096, 20000, 70000, 300000}));
    c.send_low_water_bytes = c.send_buffer_bytes / 4;
    c.recv_buffer_bytes =
        std::max<uint32_t>(c.mss, static_cast<uint32_t>(pick({1500, 6000, 33000, 200000})));
    c.reassembly_intervals = static_cast<uint32_t>(pick({1, 4, 16}));
    c.min_rto_ms = static_cast<uint64_t>(pick({200, 1000}));
    c.initial_rto_ms = 1000;
    c.max_rto_ms = 10'000;
    c.max_retransmits = 30;
    // The same for a side that has closed: under this much loss a graceful close can see more
    // than the default orphan limit's RTOs in a row, and this sim checks that every stream
    // completes, not the limit (its own unit tests do).
    c.max_orphan_retransmits = 30;
    c.max_syn_retransmits = 30;
    c.msl_ms = 60000;  // longer than the peer's FIN retransmissions under heavy loss
    // A peer that is only retransmitting into a loss burst is silent for up to
    // max_retransmits * max_rto: FIN-WAIT-2's idle timeout must outlast that here.
    c.fin_wait2_timeout_ms = 600'000;
    c.delayed_ack = r() % 3 != 0;
    c.delayed_ack_ms = static_cast<uint64_t>(pick({10, 40, 200}));
    c.persist_max_ms = 5000;
    c.isn_key[0] = r();
    c.isn_key[1] = r();
    c.initial_cwnd_segments = static_cast<uint32_t>(pick({1, 4, 10}));
    c.sack = mode.sack == 2 ? r() % 2 == 0 : mode.sack == 1;
    c.sack_scoreboard_ranges = static_cast<uint32_t>(pick({1, 4, 32}));
  }
  // From its own generator, so adding the choice left every seed's other draws as they were.
  std::mt19937_64 cc_coin(seed ^ 0xc0b1cc0b1cULL);
  for (auto& c : cfg) {
    const bool cubic = mode.cc == 2 ? cc_coin() % 2 == 0 : mode.cc == 1;
    c.congestion_control = cubic ? CongestionControl::kCubic : CongestionControl::kNewReno;
  }
  size_t bytes_a = static_cast<size_t>(pick({0, 1, 1000, 30000, 150000})) + r() % 5000;
  size_t bytes_b = static_cast<size_t>(pick({0, 1, 1000, 30000, 150000})) + r() % 5000;
  bool simultaneous = r() % 8 == 0;
  bool pauses = r() % 3 == 0;
  if (mode.bursts) {
    lp = LinkParams{};
    lp.loss = pick({0.0, 0.005, 0.02});
    lp.burst_enter = pick({0.005, 0.02, 0.05});
    lp.burst_exit = pick({0.2, 0.5});
    lp.burst_loss = pick({0.3, 0.6, 1.0});
    lp.lossy_to = 1;
    lp.delay_ns = (5 + r() % 40) * 1'000'000;
    for (auto& c : cfg) {
      c.mss = static_cast<uint16_t>(pick({536, 1460}));
      c.window_scaling = true;
      c.send_buffer_bytes = 300000;
      c.send_low_water_bytes = 75000;
      c.recv_buffer_bytes = 400000;  // the window never limits: losses are the link's only
      c.reassembly_intervals = 64;
      c.sack_scoreboard_ranges = 64;
      c.min_rto_ms = 1000;  // far above the RTT: no spurious timeouts
    }
    bytes_a = 200000 + r() % 200000;
    bytes_b = 0;
    simultaneous = false;
    pauses = false;
  }

  if (mode.long_fat) {
    lp = LinkParams{};
    lp.loss = pick({0.0005, 0.001, 0.002});
    lp.lossy_to = 1;
    lp.delay_ns = (30 + r() % 30) * 1'000'000;  // RTT 60-120 ms
    for (auto& c : cfg) {
      c.mss = 1460;
      c.window_scaling = true;
      c.window_scale = 8;
      c.sack = true;
      c.send_buffer_bytes = 8 << 20;
      c.send_low_water_bytes = 2 << 20;
      c.recv_buffer_bytes = 16 << 20;
      c.reassembly_intervals = 256;
      c.sack_scoreboard_ranges = 64;
      c.min_rto_ms = 1000;
      c.initial_cwnd_segments = 10;
    }
    bytes_a = 24 << 20;
    bytes_b = 0;
    simultaneous = false;
    pauses = false;
  }

  clock::FakeClock fake(1'000'000'000);
  timer::TimerWheel wheel(
      {.capacity = 16, .tick_ns = 1'000'000, .levels = 4, .start_ns = fake.now_ns()});
  Link link(seed, lp, fake);
  link.trace_ = verbose && std::getenv("HERALD_SIM_TRACE") != nullptr;
  std::vector<uint8_t> stream_a = make_stream(r, bytes_a), stream_b = make_stream(r, bytes_b);
  Side a(0, link, stream_a, bytes_b), b(1, link, stream_b, bytes_a);
  TcpEngine ea(cfg[0], clock::Clock::fake(&fake), wheel, a, a);
  TcpEngine eb(cfg[1], clock::Clock::fake(&fake), wheel, b, b);
  a.attach(&ea, &b.out_);
  b.attach(&eb, &a.out_);
  const IpAddr ip_a = IpAddr::v4(0x0a000001), ip_b = IpAddr::v4(0x0a000002);
  if (simultaneous) {
    a.id_ = ea.connect(ip_a, 5000, ip_b, 6000);
    b.id_ = eb.connect(ip_b, 6000, ip_a, 5000);
  } else {
    eb.listen(ip_b, 80);
    a.id_ = ea.connect(ip_a, 0, ip_b, 80);
  }
  if (a.id_ == kNoConnection) return {"connect failed", 0};

  const uint64_t limit_ns =
      fake.now_ns() + 6 * 3600ull * 1'000'000'000;  // tiny windows at 15% loss are slow
  uint64_t next_pause_ns = fake.now_ns() + 50'000'000;
  bool paused = false;
  const uint64_t start_ns = fake.now_ns();
  uint64_t transfer_ns = 0;
  Packet p;
  while (true) {
    if (!a.error_.empty() || !b.error_.empty()) break;
    a.pump();
    b.pump();
    ea.poll();
    eb.poll();
    uint64_t next = std::min(link.next_ns(), wheel.next_wakeup_ns());
    if (pauses && !(a.closed_ && b.closed_)) next = std::min(next, next_pause_ns);
    if (next == UINT64_MAX) break;
    if (next > limit_ns) break;
    if (next > fake.now_ns()) fake.set_ns(next);
    const uint64_t now = fake.now_ns();
    if (pauses && now >= next_pause_ns) {
      // B's application stops reading for a while: zero windows and the persist timer.
      paused = !paused;
      b.set_reading(!paused);
      next_pause_ns = now + (paused ? 300'000'000 + r() % 3'000'000'000 : 500'000'000);
    }
    while (link.pop_due(now, &p)) {
      (p.to == 0 ? ea : eb).input(p.src, p.dst, p.bytes, false);
    }
    (void)wheel.advance(now);
    if (transfer_ns == 0 && a.received_ == bytes_b && b.received_ == bytes_a) {
      transfer_ns = fake.now_ns() - start_ns;
    }
  }
  Outcome out;
  out.transfer_ns = transfer_ns;
  out.retransmits =
      ea.stats()[TcpStats::segments_retransmitted] + eb.stats()[TcpStats::segments_retransmitted];
  out.retransmitted_bytes =
      ea.stats()[TcpStats::bytes_retransmitted] + eb.stats()[TcpStats::bytes_retransmitted];
  out.lost_bytes = link.lost_bytes(0) + link.lost_bytes(1);
  out.sack_recoveries =
      ea.stats()[TcpStats::sack_recoveries] + eb.stats()[TcpStats::sack_recoveries];
  auto fail = [&](const std::string& why) {
    std::string s = why + " (loss " + std::to_string(lp.loss) + " dup " +
                    std::to_string(lp.duplicate) + " corrupt " + std::to_string(lp.corrupt) +
                    " reorder " + std::to_string(lp.reorder) + " bytes " + std::to_string(bytes_a) +
                    "/" + std::to_string(bytes_b) + (simultaneous ? " simultaneous" : "") + ")";
    return s;
  };
  if (!a.error_.empty())
    out.error = fail(a.error_);
  else if (!b.error_.empty())
    out.error = fail(b.error_);
  else if (!a.closed_ || !b.closed_)
    out.error = fail("not closed by the time limit");
  else if (a.reason_ != TcpCloseReason::kNormal || b.reason_ != TcpCloseReason::kNormal)
    out.error = fail(std::string("close reasons ") + tcp_close_reason_name(a.reason_) + "/" +
                     tcp_close_reason_name(b.reason_));
  else if (a.received_ != bytes_b || b.received_ != bytes_a)
    out.error = fail("short stream");
  else if (ea.connections() != 0 || eb.connections() != 0)
    out.error = fail("blocks left");
  if (verbose) {
    for (uint32_t i = 0; i < TcpStats::kCount; ++i) {
      auto idx = static_cast<TcpStats::Index>(i);
      if (ea.stats()[idx] || eb.stats()[idx]) {
        std::printf("  %-28s %8llu %8llu\n", TcpStats::name(idx),
                    static_cast<unsigned long long>(ea.stats()[idx]),
                    static_cast<unsigned long long>(eb.stats()[idx]));
      }
    }
    std::printf("  virtual time %.3f s, link segments %llu, lost bytes %llu, resent bytes %llu\n",
                (fake.now_ns() - 1'000'000'000) / 1e9, static_cast<unsigned long long>(link.sent()),
                static_cast<unsigned long long>(out.lost_bytes),
                static_cast<unsigned long long>(out.retransmitted_bytes));
  }
  return out;
}

struct Totals {
  uint64_t failures = 0, retransmits = 0, retransmitted_bytes = 0, lost_bytes = 0;
  uint64_t sack_recoveries = 0, over_seeds = 0;
};

// Runs the seed range (or the one seed of HERALD_SIM_SEED) in `mode`.
Totals run_seeds(const Mode& mode, uint64_t default_count) {
  Totals t;
  if (const char* one = std::getenv("HERALD_SIM_SEED")) {
    uint64_t seed = std::strtoull(one, nullptr, 10);
    Outcome o = run_seed(seed, true, mode);
    EXPECT_TRUE(o.error.empty()) << "seed " << seed << ": " << o.error;
    t.retransmits = o.retransmits;
    t.retransmitted_bytes = o.retransmitted_bytes;
    t.lost_bytes = o.lost_bytes;
    return t;
  }
  const uint64_t first = env_or("HERALD_SIM_FIRST_SEED", 1);
  const uint64_t count = env_or("HERALD_SIM_SEEDS", default_count);
  for (uint64_t seed = first; seed < first + count; ++seed) {
    Outcome o = run_seed(seed, false, mode);
    t.retransmits += o.retransmits;
    t.retransmitted_bytes += o.retransmitted_bytes;
    t.lost_bytes += o.lost_bytes;
    t.sack_recoveries += o.sack_recoveries;
    if (o.retransmitted_bytes > o.lost_bytes) {
      ++t.over_seeds;
      if (mode.bursts && mode.sack == 1) {
        std::printf("seed %llu resent %llu bytes, lost %llu\n",
                    static_cast<unsigned long long>(seed),
                    static_cast<unsigned long long>(o.retransmitted_bytes),
                    static_cast<unsigned long long>(o.lost_bytes));
      }
    }
    if (!o.error.empty()) {
      ADD_FAILURE() << "seed " << seed << ": " << o.error << " (replay: HERALD_SIM_SEED=" << seed
                    << (mode.bursts ? " --gtest_filter=*Burst*" : "") << ")";
      if (++t.failures >= 10) break;
    }
  }
  std::printf(
      "sack %d bursts %d: %llu seeds, %llu segments resent, %llu bytes lost by the link, "
      "%llu resent (%.3f), %llu SACK recoveries, %llu seeds resent more than lost\n",
      mode.sack, mode.bursts ? 1 : 0, static_cast<unsigned long long>(count),
      static_cast<unsigned long long>(t.retransmits), static_cast<unsigned long long>(t.lost_bytes),
      static_cast<unsigned long long>(t.retransmitted_bytes),
      t.lost_bytes ? static_cast<double>(t.retransmitted_bytes) / t.lost_bytes : 0.0,
      static_cast<unsigned long long>(t.sack_recoveries),
      static_cast<unsigned long long>(t.over_seeds));
  return t;
}

// HERALD_SIM_SACK=0|1|2 picks SACK off, on, or a coin per side (the default); HERALD_SIM_CC the
// same for NewReno / CUBIC.
TEST(TcpSim, StreamsAreByteExactBothWaysAcrossSeeds) {
  Mode mode;
  mode.sack = static_cast<int>(env_or("HERALD_SIM_SACK", 2));
  mode.cc = static_cast<int>(env_or("HERALD_SIM_CC", 2));
  const uint64_t count = env_or("HERALD_SIM_SEEDS", 3000);
  Totals t = run_seeds(mode, 3000);
  // The impairments must really bite: retransmissions happened.
  if (std::getenv("HERALD_SIM_SEED") == nullptr) {
    EXPECT_GT(t.retransmits, count);
  }
}

// Loss bursts on a link that neither reorders nor duplicates: with SACK, recovery resends only
// what the link lost (the retransmitted payload bytes equal the lost ones); without it, the
// same seeds resend more (go-back-N after timeouts, NewReno's one hole per round trip).
TEST(TcpSim, BurstLossRecoveryResendsOnlyWhatWasLost) {
  const uint64_t count = 300;  // HERALD_SIM_SEEDS overrides
  Mode with{.sack = 1, .bursts = true}, without{.sack = 0, .bursts = true};
  Totals s = run_seeds(with, count);
  Totals n = run_seeds(without, count);
  if (std::getenv("HERALD_SIM_SEED") != nullptr) return;
  ASSERT_GT(s.lost_bytes, 0u);
  EXPECT_GT(s.sack_recoveries, 0u);
  EXPECT_EQ(n.sack_recoveries, 0u);
  // Every seed: SACK resent at most what was lost.
  EXPECT_EQ(s.over_seeds, 0u);
  EXPECT_LE(s.retransmitted_bytes, s.lost_bytes);
  EXPECT_GT(n.retransmitted_bytes, s.retransmitted_bytes);
}

// CUBIC's point (RFC 9438 1): on a long-delay path NewReno regains its window at one segment
// per RTT after each loss, CUBIC along its curve back to W_max. Same seeds (same link, same
// losses per packet) with each: CUBIC moves the stream in less virtual time, byte-exact both.
TEST(TcpSim, CubicOutpacesNewRenoOnALongFatLink) {
  const uint64_t first = env_or("HERALD_SIM_FIRST_SEED", 1);
  uint64_t cubic_ns = 0, reno_ns = 0;
  int cubic_faster = 0;
  const int seeds = 12;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    const Outcome c = run_seed(seed, false, Mode{.sack = 1, .cc = 1, .long_fat = true});
    const Outcome n = run_seed(seed, false, Mode{.sack = 1, .cc = 0, .long_fat = true});
    ASSERT_TRUE(c.error.empty()) << "seed " << seed << " cubic: " << c.error;
    ASSERT_TRUE(n.error.empty()) << "seed " << seed << " newreno: " << n.error;
    ASSERT_GT(c.lost_bytes, 0u) << "seed " << seed << ": the link must lose something";
    std::printf("seed %llu: cubic %.2f s, newreno %.2f s\n", static_cast<unsigned long long>(seed),
                c.transfer_ns / 1e9, n.transfer_ns / 1e9);
    cubic_ns += c.transfer_ns;
    reno_ns += n.transfer_ns;
    if (c.transfer_ns < n.transfer_ns) ++cubic_faster;
  }
  std::printf("24 MiB one way, %d seeds: cubic %.1f s, newreno %.1f s in total\n", seeds,
              cubic_ns / 1e9, reno_ns / 1e9);
  EXPECT_LT(cubic_ns * 10, reno_ns * 8);  // at least 20% less time over all seeds
  EXPECT_GE(cubic_faster, seeds * 3 / 4);
}

}  // namespace
}  // namespace herald::net::tcp

// libFuzzer target for the TCP engine (dataplane/net/tcp): an engine with a listener, two
// established passive connections and one active open in SYN-SENT takes a script of segments
// (raw bytes, or built around the connections' real sequence numbers with SACK blocks,
// timestamps and payload), time steps and application calls. It must never crash, only emit
// well-formed segments, and hold no block after stop().
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dataplane/net/tcp/tcp.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"

namespace {

using namespace herald::net::tcp;  // NOLINT: a fuzz target
namespace clock = herald::clock;
namespace timer = herald::timer;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>((u8() << 8) | u8()); }
  uint32_t u32() { return (uint32_t{u16()} << 16) | u16(); }
  std::span<const uint8_t> take(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::span<const uint8_t> s(data_ + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

const IpAddr kLocal = IpAddr::v4(0x0a000001);
const IpAddr kPeer = IpAddr::v4(0x0a000002);
constexpr uint16_t kPort = 80;

class Harness : public TcpEvents, public TcpOutput {
 public:
  bool send_segment(const IpAddr& src, const IpAddr& dst,
                    std::span<const uint8_t> segment) override {
    Segment seg;
    check(parse_segment(src, dst, segment, false, &seg) == ParseError::kNone);
    check(segment.size() <= kTcpMaxHeaderBytes + 65535);
    last = seg;
    last_valid = true;
    return true;
  }
  void on_accepted(ConnectionId id, const FourTuple&) override { ids.push_back(id); }
  void on_connected(ConnectionId) override {}
  void on_data(ConnectionId, std::span<const uint8_t> bytes) override { received += bytes.size(); }
  void on_peer_closed(ConnectionId) override {}
  void on_writable(ConnectionId) override {}
  void on_closed(ConnectionId, TcpCloseReason reason) override {
    check(reason < TcpCloseReason::kCount);
  }

  std::vector<ConnectionId> ids;
  Segment last;
  bool last_valid = false;
  uint64_t received = 0;
};

void inject(TcpEngine& engine, uint16_t peer_port, const SegmentSpec& spec,
            std::span<const uint8_t> payload) {
  std::vector<uint8_t> buf(kTcpMaxHeaderBytes + payload.size());
  SegmentSpec s = spec;
  s.src_port = peer_port;
  s.dst_port = s.dst_port == 0 ? kPort : s.dst_port;
  const size_t n = build_segment(kPeer, kLocal, s, payload, false, buf);
  engine.input(kPeer, kLocal, {buf.data(), n}, false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  clock::FakeClock fake(1'000'000'000);
  timer::TimerWheel wheel(
      {.capacity = 32, .tick_ns = 1'000'000, .levels = 4, .start_ns = fake.now_ns()});
  TcpConfig config;
  config.mss = 536;
  config.window_scale = 2;
  config.send_buffer_bytes = 4096;
  config.send_low_water_bytes = 1024;
  config.recv_buffer_bytes = 4096;
  config.reassembly_intervals = 4;
  config.sack_scoreboard_ranges = 4;
  config.max_connections = 8;
  config.syn_queue = 2;
  config.accept_backlog = 2;
  config.min_rto_ms = 200;
  config.challenge_ack_limit_per_s = 20;
  config.rst_limit_per_s = 20;
  config.fin_wait2_timeout_ms = 3000;
  config.msl_ms = 1000;
  config.keepalive_idle_ms = (in.u8() & 1) ? 2000 : 0;
  config.timestamps = (in.u8() & 1) != 0;
  Harness h;
  {
    TcpEngine engine(config, clock::Clock::fake(&fake), wheel, h, h);
    engine.listen(kLocal, kPort);
    // Two established passive connections from the peer's ports 40000 and 40001 (SACK and
    // timestamps offered), and an active open left in SYN-SENT.
    uint32_t peer_seq[2] = {1000, 900000};
    uint32_t our_iss[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
      SegmentSpec syn;
      syn.flags = kSyn;
      syn.seq = peer_seq[i];
      syn.mss = true;
      syn.mss_value = 536;
      syn.wscale = true;
      syn.wscale_value = 3;
      syn.sack_permitted = true;
      syn.timestamps = true;
      syn.ts_val = 10;
      h.last_valid = false;
      inject(engine, static_cast<uint16_t>(40000 + i), syn, {});
      check(h.last_valid);
      our_iss[i] = h.last.seq;
      SegmentSpec ack;
      ack.flags = kAck;
      ack.seq = peer_seq[i] + 1;
      ack.ack = our_iss[i] + 1;
      ack.window = 4000;
      ack.timestamps = true;
      ack.ts_val = 11;
      ack.ts_ecr = h.last.options.ts_val;
      inject(engine, static_cast<uint16_t>(40000 + i), ack, {});
    }
    const ConnectionId active = engine.connect(kLocal, 5555, kPeer, 443);
    uint32_t ts = 100;
    static const uint8_t kFiller[1024] = {};

    while (!in.empty()) {
      const uint8_t op = in.u8();
      switch (op % 5) {
        case 0: {  // time passes
          fake.advance_ns(uint64_t{in.u16()} * 1'000'000);
          (void)wheel.advance(fake.now_ns());
          engine.poll();
          break;
        }
        case 1: {  // raw bytes as a segment (checksum taken as verified: reach the parser)
          const size_t n = in.u8() + (op & 0x80 ? 256 : 0);
          std::span<const uint8_t> raw = in.take(n);
          engine.input(kPeer, kLocal, raw, true);
          break;
        }
        case 2:
        case 3: {  // a segment around a connection's real sequence numbers
          const uint8_t which = in.u8() % 4;
          ConnectionId id = which < h.ids.size() ? h.ids[which] : active;
          ConnectionInfo info;
          const bool known = engine.info(id, &info);
          SegmentSpec s;
          s.flags = in.u8() & 0x3f;
          const int16_t dseq = static_cast<int16_t>(in.u16());
          const int16_t dack = static_cast<int16_t>(in.u16());
          s.seq = (known ? info.rcv_nxt : in.u32()) + static_cast<uint32_t>(dseq);
          s.ack = (known ? info.snd_una : in.u32()) + static_cast<uint32_t>(dack);
          s.window = in.u16();
          const uint8_t opts = in.u8();
          if (opts & 1) {
            s.timestamps = true;
            s.ts_val = (opts & 2) ? ts++ : in.u32();
            s.ts_ecr = in.u32();
          }
          if (s.flags & kSyn) {
            s.mss = (opts & 4) != 0;
            s.mss_value = in.u16();
            s.wscale = (opts & 8) != 0;
            s.wscale_value = in.u8();
            s.sack_permitted = (opts & 16) != 0;
          } else {
            s.sack_count = static_cast<uint8_t>((opts >> 5) % (s.timestamps ? 4 : 5));
            for (uint8_t b = 0; b < s.sack_count; ++b) {
              const uint32_t base = known ? info.snd_una : 0;
              s.sack[b].left = base + static_cast<uint32_t>(static_cast<int16_t>(in.u16()));
              s.sack[b].right = s.sack[b].left + in.u16();
            }
          }
          const size_t len = std::min<size_t>(in.u16() % 1200, sizeof(kFiller));
          uint16_t port = which == 3 ? 443 : static_cast<uint16_t>(40000 + which);
          if (which == 3) {
            s.dst_port = 5555;
          } else if (which == 2) {
            port = static_cast<uint16_t>(40002 + (in.u8() % 4));  // new tuples: SYN queue
          }
          inject(engine, port, s, {kFiller, len});
          break;
        }
        case 4: {  // the application
          const uint8_t what = in.u8();
          ConnectionId id = h.ids.empty() ? active : h.ids[what % h.ids.size()];
          switch ((what >> 4) % 6) {
            case 0: {
              const uint32_t n = std::min<uint32_t>(in.u16() % 3000, engine.send_space(id));
              (void)engine.send(id, {kFiller, std::min<size_t>(n, sizeof(kFiller))});
              break;
            }
            case 1: engine.close(id, herald::dataplane::CloseMode::kGraceful); break;
            case 2: engine.close(id, herald::dataplane::CloseMode::kAbort); break;
            case 3: engine.set_reading(id, (what & 1) != 0); break;
            case 4: engine.set_accepting(kPort, (what & 1) != 0); break;
            case 5: (void)engine.queued_bytes(id); break;
          }
          engine.poll();
          break;
        }
      }
    }
    engine.stop();
    check(engine.connections() == 0);
  }
  return 0;
}

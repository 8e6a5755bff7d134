// The impairment layer (there is no netem here): seeded drop, duplicate, reorder, delay and
// corrupt of frames, separately on rx and tx of a port, over the caller's (virtual) time. Off
// unless a probability is set; the same seed, options and input give the same output.
//
//   rx: ImpairedRx rx(options.rx);   rx.receive(frame, meta, now_ns, deliver);
//                                    rx.release_due(now_ns, deliver);   // every loop turn
//   tx: ImpairedPort port(options.tx, real_port);   NetStack stack(net_options, port);
//                                    port.release_due(now_ns);          // before each flush
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dataplane/net/frame_io.h"

namespace herald::net {

// One direction of one port. Probabilities are parts per million of frames.
struct ImpairmentOptions {
  uint32_t drop_ppm = 0;
  uint32_t duplicate_ppm = 0;  // the copy follows the original
  uint32_t reorder_ppm = 0;    // held reorder_hold_us, so frames behind it overtake it
  uint32_t delay_ppm = 0;      // held delay_us plus up to delay_jitter_us
  uint32_t corrupt_ppm = 0;    // one bit flipped anywhere in the frame
  uint32_t delay_us = 1000;
  uint32_t delay_jitter_us = 0;
  uint32_t reorder_hold_us = 100;
  uint32_t hold_frames = 256;       // frames held at once; beyond it they go on time (counted)
  uint32_t max_frame_bytes = 2048;  // larger frames are never held or corrupted (counted)
  uint64_t seed = 1;

  bool enabled() const {
    return (drop_ppm | duplicate_ppm | reorder_ppm | delay_ppm | corrupt_ppm) != 0;
  }
};

struct PortImpairmentOptions {
  ImpairmentOptions rx;
  ImpairmentOptions tx;
};

// Empty when usable, else what is wrong.
std::string validate(const ImpairmentOptions& options);

// X(enumerator, "stable_name", "when"): dp.net.impair.<rx|tx>.<name> in the counters segment.
#define HERALD_NET_IMPAIRMENTS(X)                                            \
  X(kFrames, "frames", "frames that went through an enabled impairment")     \
  X(kDropped, "dropped", "frames dropped")                                   \
  X(kDuplicated, "duplicated", "extra copies made")                          \
  X(kReordered, "reordered", "frames held back so later ones overtake them") \
  X(kDelayed, "delayed", "frames delayed")                                   \
  X(kCorrupted, "corrupted", "frames with a bit flipped")                    \
  X(kHoldOverflow, "hold_overflow",                                          \
    "frames that should have been held or corrupted but "                    \
    "found no room (hold_frames, max_frame_bytes)")                          \
  X(kTxAllocFailed, "tx_alloc_failed", "tx: no port buffer for a duplicate or a release")

enum class Impairment : uint8_t {
#define HERALD_NET_ENUM(e, name, doc) e,
  HERALD_NET_IMPAIRMENTS(HERALD_NET_ENUM)
#undef HERALD_NET_ENUM
      kCount,
};
inline constexpr size_t kImpairmentCount = static_cast<size_t>(Impairment::kCount);
std::string_view impairment_name(Impairment impairment);

struct ImpairmentStats {
  uint64_t counts[kImpairmentCount] = {};
  uint64_t count(Impairment i) const { return counts[static_cast<size_t>(i)]; }
  void add(Impairment i) { ++counts[static_cast<size_t>(i)]; }
};

// What happens to one frame. Every frame draws the same number of random numbers whatever the
// options, so one impairment's pattern for a seed does not move when another's rate changes.
struct ImpairmentDecision {
  bool drop = false;
  bool duplicate = false;
  bool corrupt = false;
  uint32_t corrupt_bit = 0;  // bit index within the frame
  uint64_t hold_ns = 0;      // 0: goes now
  bool reorder = false;
};

// The dice and the hold queue shared by both directions; the frame's metadata rides along as
// up to 8 opaque bytes.
class ImpairmentEngine {
 public:
  explicit ImpairmentEngine(const ImpairmentOptions& options);

  bool enabled() const { return enabled_; }
  const ImpairmentOptions& options() const { return options_; }
  const ImpairmentStats& stats() const { return stats_; }
  ImpairmentStats& mutable_stats() { return stats_; }

  // Rolls for one frame of `frame_bytes` and counts what was decided (hold overflows are
  // counted by hold()).
  ImpairmentDecision decide(uint32_t frame_bytes);
  // Flips bit `bit` (from decide(): below the frame's size in bits).
  static void flip(std::span<uint8_t> frame, uint32_t bit) {
    frame[bit / 8] = static_cast<uint8_t>(frame[bit / 8] ^ (1u << (bit % 8)));
  }
  // Copies `frame` to be released at `due_ns`; false (hold_overflow counted) when full or too big.
  [[nodiscard]] bool hold(std::span<const uint8_t> frame, uint64_t meta, uint64_t due_ns);
  // Hands every frame due by `now_ns`, earliest first (ties in arrival order), to
  // fn(std::span<const uint8_t>, uint64_t meta).
  template <typename Fn>
  void release_due(uint64_t now_ns, Fn&& fn) {
    while (!heap_.empty() && heap_.front().due_ns <= now_ns) {
      std::pop_heap(heap_.begin(), heap_.end(), Later{});
      const Held held = heap_.back();
      heap_.pop_back();
      free_slots_.push_back(held.slot);
      fn(std::span<const uint8_t>(slot_data(held.slot), held.length_bytes), held.meta);
    }
  }
  uint64_t next_due_ns() const { return heap_.empty() ? UINT64_MAX : heap_.front().due_ns; }
  size_t held() const { return heap_.size(); }

  template <typename Meta>
  static uint64_t pack(const Meta& meta) {
    static_assert(std::is_trivially_copyable_v<Meta> && sizeof(Meta) <= sizeof(uint64_t));
    uint64_t bits = 0;
    std::memcpy(&bits, &meta, sizeof(Meta));
    return bits;
  }
  template <typename Meta>
  static Meta unpack(uint64_t bits) {
    Meta meta{};
    std::memcpy(static_cast<void*>(&meta), &bits, sizeof(Meta));
    return meta;
  }

 private:
  struct Held {
    uint64_t due_ns;
    uint64_t sequence;
    uint64_t meta;
    uint32_t length_bytes;
    uint32_t slot;
  };
  struct Later {
    bool operator()(const Held& a, const Held& b) const {
      return a.due_ns != b.due_ns ? a.due_ns > b.due_ns : a.sequence > b.sequence;
    }
  };
  uint64_t next_random();
  bool roll(uint32_t ppm) { return next_random() % 1'000'000 < ppm; }
  uint8_t* slot_data(uint32_t slot) {
    return storage_.data() + size_t{slot} * options_.max_frame_bytes;
  }

  ImpairmentOptions options_;
  bool enabled_;
  uint64_t rng_state_;
  uint64_t sequence_ = 0;
  std::vector<uint8_t> storage_;
  std::vector<uint32_t> free_slots_;
  std::vector<Held> heap_;
  ImpairmentStats stats_;
};

// The receive side: frames from the port go through here on their way to the stack. A held or
// corrupted frame is a copy, so `frame` need only be valid for the call, as for the stack.
class ImpairedRx {
 public:
  explicit ImpairedRx(const ImpairmentOptions& options);

  // deliver(std::span<const uint8_t> frame, const RxMeta& meta), now or from release_due().
  template <typename Deliver>
  void receive(std::span<const uint8_t> frame, const RxMeta& meta, uint64_t now_ns,
               Deliver&& deliver) {
    if (!engine_.enabled()) {
      deliver(frame, meta);
      return;
    }
    const ImpairmentDecision d = engine_.decide(static_cast<uint32_t>(frame.size()));
    if (d.drop) return;
    RxMeta m = meta;
    if (d.corrupt) {
      if (frame.size() <= scratch_.size()) {
        std::memcpy(scratch_.data(), frame.data(), frame.size());
        frame = std::span<const uint8_t>(scratch_.data(), frame.size());
        ImpairmentEngine::flip({scratch_.data(), frame.size()}, d.corrupt_bit);
        // The bit flipped on the wire, before the NIC looked: its verdicts no longer hold.
        m = RxMeta{};
      } else {
        engine_.mutable_stats().add(Impairment::kHoldOverflow);
      }
    }
    const int copies = d.duplicate ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      if (d.hold_ns == 0 || !engine_.hold(frame, ImpairmentEngine::pack(m), now_ns + d.hold_ns)) {
        deliver(frame, m);
      }
    }
  }

  template <typename Deliver>
  void release_due(uint64_t now_ns, Deliver&& deliver) {
    engine_.release_due(now_ns, [&](std::span<const uint8_t> frame, uint64_t meta) {
      deliver(frame, ImpairmentEngine::unpack<RxMeta>(meta));
    });
  }

  uint64_t next_due_ns() const { return engine_.next_due_ns(); }
  const ImpairmentStats& stats() const { return engine_.stats(); }

 private:
  ImpairmentEngine engine_;
  std::vector<uint8_t> scratch_;
};

// The transmit side: a FramePort in front of the real one. Frames that go on time are the
// port's own buffers (no copy); held frames are copied out and the buffer returned, then copied
// into a fresh buffer when due. With corruption on it hides the port's checksum offloads, so
// the stack computes checksums in software and the flipped bit reaches the peer's check.
class ImpairedPort final : public FramePort {
 public:
  // `lower` must outlive this.
  ImpairedPort(const ImpairmentOptions& options, FramePort& lower);

  PortCapabilities capabilities() const override;
  [[nodiscard]] bool alloc(uint32_t length_bytes, TxFrame* frame) override {
    return lower_.alloc(length_bytes, frame);
  }
  void queue(const TxFrame& frame, uint32_t length_bytes, const TxOffload& offload) override;
  void release(const TxFrame& frame) override { lower_.release(frame); }

  // Sends what is due by `now_ns` (call before each flush, with the time the stack runs on),
  // and makes `now_ns` the time that later queue() calls hold frames from: FramePort::queue
  // carries no time, so the loop sets it here once per turn.
  void release_due(uint64_t now_ns);

  uint64_t next_due_ns() const { return engine_.next_due_ns(); }
  const ImpairmentStats& stats() const { return engine_.stats(); }

 private:
  void send_copy(std::span<const uint8_t> bytes, const TxOffload& offload);

  ImpairmentEngine engine_;
  FramePort& lower_;
  uint64_t now_ns_ = 0;
};

}  // namespace herald::net

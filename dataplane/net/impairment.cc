// The impairment layer's dice (splitmix64, seeded), hold queue (a binary heap over a fixed pool
// of frame slots, sized at construction) and the rx and tx adapters' non-template parts.
#include "dataplane/net/impairment.h"

#include "platform/assert/assert.h"

namespace herald::net {
namespace {

constexpr std::string_view kImpairmentNames[] = {
#define HERALD_NET_NAME(e, name, doc) name,
    HERALD_NET_IMPAIRMENTS(HERALD_NET_NAME)
#undef HERALD_NET_NAME
};
static_assert(std::size(kImpairmentNames) == kImpairmentCount);

constexpr uint64_t kNsPerUs = 1000;

const ImpairmentOptions& checked(const ImpairmentOptions& options) {
  HERALD_CHECK(validate(options).empty(), "impairment options must pass validate()");
  return options;
}

}  // namespace

std::string_view impairment_name(Impairment impairment) {
  const auto i = static_cast<size_t>(impairment);
  return i < kImpairmentCount ? kImpairmentNames[i] : "invalid";
}

std::string validate(const ImpairmentOptions& o) {
  for (uint32_t ppm : {o.drop_ppm, o.duplicate_ppm, o.reorder_ppm, o.delay_ppm, o.corrupt_ppm}) {
    if (ppm > 1'000'000) return "impairment probabilities are parts per million: 0..1000000";
  }
  if (o.hold_frames > 65536) return "hold_frames must be 0..65536";
  if (o.max_frame_bytes < 60 || o.max_frame_bytes > 65536)
    return "max_frame_bytes must be 60..65536";
  if (o.delay_us > 60'000'000 || o.delay_jitter_us > 60'000'000 || o.reorder_hold_us > 60'000'000)
    return "delays must be at most 60 s";
  return "";
}

ImpairmentEngine::ImpairmentEngine(const ImpairmentOptions& options)
    : options_(checked(options)), enabled_(options.enabled()), rng_state_(options.seed) {
  if (!enabled_) return;  // off costs no memory
  storage_.resize(size_t{options.hold_frames} * options.max_frame_bytes);
  heap_.reserve(options.hold_frames);
  free_slots_.reserve(options.hold_frames);
  for (uint32_t i = options.hold_frames; i-- > 0;) free_slots_.push_back(i);
}

// splitmix64 (Steele, Lea, Flood 2014): one add and three mixes, full period, good enough for
// choosing which frames to hurt, and trivially reproducible from the seed.
uint64_t ImpairmentEngine::next_random() {
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

ImpairmentDecision ImpairmentEngine::decide(uint32_t frame_bytes) {
  ImpairmentDecision d;
  // A fixed number of draws per frame, in a fixed order (see ImpairmentDecision).
  d.drop = roll(options_.drop_ppm);
  d.corrupt = roll(options_.corrupt_ppm);
  const uint64_t bit_draw = next_random();
  d.duplicate = roll(options_.duplicate_ppm);
  const bool delay = roll(options_.delay_ppm);
  const uint64_t jitter_draw = next_random();
  d.reorder = roll(options_.reorder_ppm);

  stats_.add(Impairment::kFrames);
  if (d.drop) {
    stats_.add(Impairment::kDropped);
    return ImpairmentDecision{.drop = true};
  }
  if (d.corrupt && frame_bytes > 0) {
    d.corrupt_bit = static_cast<uint32_t>(bit_draw % (uint64_t{frame_bytes} * 8));
    stats_.add(Impairment::kCorrupted);
  } else {
    d.corrupt = false;
  }
  if (d.duplicate) stats_.add(Impairment::kDuplicated);
  if (delay) {
    const uint64_t jitter_us =
        options_.delay_jitter_us == 0 ? 0 : jitter_draw % (uint64_t{options_.delay_jitter_us} + 1);
    d.hold_ns = (options_.delay_us + jitter_us) * kNsPerUs;
    stats_.add(Impairment::kDelayed);
  }
  if (d.reorder) {
    d.hold_ns += uint64_t{options_.reorder_hold_us} * kNsPerUs;
    stats_.add(Impairment::kReordered);
  }
  // A hold of zero microseconds still means "after what is already queued for now".
  if ((delay || d.reorder) && d.hold_ns == 0) d.hold_ns = 1;
  return d;
}

bool ImpairmentEngine::hold(std::span<const uint8_t> frame, uint64_t meta, uint64_t due_ns) {
  if (free_slots_.empty() || frame.size() > options_.max_frame_bytes) {
    stats_.add(Impairment::kHoldOverflow);
    return false;
  }
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  // An empty span may have no data pointer, and memcpy from null is undefined even for 0.
  if (!frame.empty()) std::memcpy(slot_data(slot), frame.data(), frame.size());
  heap_.push_back(Held{due_ns, sequence_++, meta, static_cast<uint32_t>(frame.size()), slot});
  std::push_heap(heap_.begin(), heap_.end(), Later{});
  return true;
}

ImpairedRx::ImpairedRx(const ImpairmentOptions& options) : engine_(options) {
  if (engine_.enabled()) scratch_.resize(options.max_frame_bytes);
}

ImpairedPort::ImpairedPort(const ImpairmentOptions& options, FramePort& lower)
    : engine_(options), lower_(lower) {}

PortCapabilities ImpairedPort::capabilities() const {
  PortCapabilities caps = lower_.capabilities();
  if (engine_.options().corrupt_ppm != 0) caps = PortCapabilities{};
  return caps;
}

void ImpairedPort::send_copy(std::span<const uint8_t> bytes, const TxOffload& offload) {
  TxFrame copy;
  if (!lower_.alloc(static_cast<uint32_t>(bytes.size()), &copy)) {
    engine_.mutable_stats().add(Impairment::kTxAllocFailed);
    return;
  }
  if (!bytes.empty()) std::memcpy(copy.data, bytes.data(), bytes.size());
  lower_.queue(copy, static_cast<uint32_t>(bytes.size()), offload);
}

void ImpairedPort::queue(const TxFrame& frame, uint32_t length_bytes, const TxOffload& offload) {
  if (!engine_.enabled()) {
    lower_.queue(frame, length_bytes, offload);
    return;
  }
  const ImpairmentDecision d = engine_.decide(length_bytes);
  if (d.drop) {
    lower_.release(frame);
    return;
  }
  const std::span<uint8_t> bytes(frame.data, length_bytes);
  if (d.corrupt) ImpairmentEngine::flip(bytes, d.corrupt_bit);
  if (d.hold_ns != 0) {
    const uint64_t meta = ImpairmentEngine::pack(offload);
    const int copies = d.duplicate ? 2 : 1;
    bool sent_original = false;
    for (int i = 0; i < copies; ++i) {
      if (engine_.hold(bytes, meta, now_ns_ + d.hold_ns)) continue;
      // No room to hold: this copy goes on time instead.
      if (!sent_original) {
        lower_.queue(frame, length_bytes, offload);
        sent_original = true;
      } else {
        send_copy(bytes, offload);
      }
    }
    if (!sent_original) lower_.release(frame);
    return;
  }
  // The copy is made before the original is handed over: the port owns it after queue().
  if (d.duplicate) {
    TxFrame copy;
    if (lower_.alloc(length_bytes, &copy)) {
      std::memcpy(copy.data, frame.data, length_bytes);
      lower_.queue(frame, length_bytes, offload);
      lower_.queue(copy, length_bytes, offload);
      return;
    }
    engine_.mutable_stats().add(Impairment::kTxAllocFailed);
  }
  lower_.queue(frame, length_bytes, offload);
}

void ImpairedPort::release_due(uint64_t now_ns) {
  now_ns_ = now_ns;
  engine_.release_due(now_ns, [this](std::span<const uint8_t> bytes, uint64_t meta) {
    send_copy(bytes, ImpairmentEngine::unpack<TxOffload>(meta));
  });
}

}  // namespace herald::net

// Encoder and bounds-checked decoder of the .hprof capture format (capture.h).
#include "controlplane/profiler/capture.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/crc32c/crc32c.h"

namespace herald::profiler {
namespace {

// magic(8) version(2) flags(2) total_bytes(8)
constexpr size_t kHeaderBytes = 20;
constexpr size_t kTrailerBytes = 4;

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}
uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t unzigzag(uint64_t u) {
  return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
}

// A cursor over the body that turns every overrun into a kDataLoss naming the byte offset.
class Cursor {
 public:
  Cursor(std::string_view bytes, size_t pos, size_t end) : bytes_(bytes), pos_(pos), end_(end) {}

  absl::Status varint(uint64_t* out, std::string_view what) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= end_) return error(absl::StrCat("truncated in ", std::string(what)));
      const auto b = static_cast<unsigned char>(bytes_[pos_++]);
      if (shift == 63 && b > 1)
        return error(absl::StrCat("varint overflow in ", std::string(what)));
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) {
        // One value, one encoding: a trailing zero group is padding a writer never makes.
        if (b == 0 && shift != 0) {
          return error(absl::StrCat("non-minimal varint in ", std::string(what)));
        }
        *out = v;
        return absl::OkStatus();
      }
    }
    return error(absl::StrCat("varint too long in ", std::string(what)));
  }
  absl::Status byte(uint8_t* out, std::string_view what) {
    if (pos_ >= end_) return error(absl::StrCat("truncated in ", std::string(what)));
    *out = static_cast<uint8_t>(bytes_[pos_++]);
    return absl::OkStatus();
  }
  absl::Status string(std::string* out, std::string_view what,
                      uint64_t max_bytes = kMaxStringBytes) {
    uint64_t n = 0;
    if (auto s = varint(&n, what); !s.ok()) return s;
    if (n > max_bytes) return error(absl::StrCat(std::string(what), " longer than limit"));
    if (n > end_ - pos_) return error(absl::StrCat("truncated in ", std::string(what)));
    out->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status take(size_t n, const unsigned char** out, std::string_view what) {
    if (n > end_ - pos_) return error(absl::StrCat("truncated in ", std::string(what)));
    *out = reinterpret_cast<const unsigned char*>(bytes_.data() + pos_);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status error(std::string_view message) const {
    return absl::DataLossError(
        absl::StrCat("corrupt capture at byte ", pos_, ": ", std::string(message)));
  }
  size_t remaining() const { return end_ - pos_; }

 private:
  std::string_view bytes_;
  size_t pos_;
  size_t end_;
};

#define HPROF_TRY(expr)                                \
  do {                                                 \
    if (absl::Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)

}  // namespace

std::string_view series_kind_name(SeriesKind kind) {
  return kind == SeriesKind::kCounter ? "counter" : "gauge";
}

std::string encode_capture(const Capture& capture) {
  std::string out(kMagic, sizeof(kMagic));
  put_le(out, kFormatVersion, 2);
  put_le(out, capture.flame ? kFlagFlame : 0, 2);
  put_le(out, 0, 8);  // total_bytes, patched below
  put_string(out, capture.meta.node);
  put_string(out, capture.meta.host);
  put_varint(out, capture.meta.start_unix_ms);
  put_varint(out, capture.meta.interval_ns);
  put_varint(out, capture.series.size());
  for (const SeriesInfo& s : capture.series) {
    put_string(out, s.name);
    put_string(out, s.unit);
    out.push_back(static_cast<char>(s.kind));
  }
  put_varint(out, capture.samples.size());
  const size_t n = capture.series.size();
  std::vector<int64_t> last(n, 0);
  uint64_t last_ns = 0;
  std::string bitmap;
  for (const Sample& sample : capture.samples) {
    HERALD_CHECK(sample.values.size() == n, "sample width differs from the series directory");
    // Time goes forward within a capture (monotonic clock); a zigzag delta tolerates either.
    put_varint(out, zigzag(static_cast<int64_t>(sample.mono_ns - last_ns)));
    last_ns = sample.mono_ns;
    bitmap.assign((n + 7) / 8, '\0');
    for (size_t i = 0; i < n; ++i) {
      if (sample.values[i]) bitmap[i / 8] = static_cast<char>(bitmap[i / 8] | (1 << (i % 8)));
    }
    out.append(bitmap);
    for (size_t i = 0; i < n; ++i) {
      if (!sample.values[i]) continue;
      const int64_t v = *sample.values[i];
      // Wrapping difference: a counter that wraps or a gauge that swings still round-trips.
      put_varint(out, zigzag(static_cast<int64_t>(static_cast<uint64_t>(v) -
                                                  static_cast<uint64_t>(last[i]))));
      last[i] = v;
    }
  }
  if (capture.flame) {
    const FlameProfile& f = *capture.flame;
    put_string(out, f.status);
    put_varint(out, f.frequency_hz);
    put_varint(out, f.pid);
    put_varint(out, f.stacks.size());
    for (const FoldedStack& stack : f.stacks) {
      put_string(out, stack.frames);
      put_varint(out, stack.samples);
    }
  }
  const uint64_t total = out.size() + kTrailerBytes;
  for (int i = 0; i < 8; ++i) out[12 + i] = static_cast<char>((total >> (8 * i)) & 0xff);
  put_le(out, crc32c::value(out.data(), out.size()), 4);
  return out;
}

absl::StatusOr<Capture> decode_capture(std::string_view bytes) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError("not a Herald profiler capture (bad magic)");
  }
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < kHeaderBytes + kTrailerBytes) {
    return absl::DataLossError(
        absl::StrCat("truncated capture: ", bytes.size(), " bytes, shorter than its header"));
  }
  const uint64_t version = get_le(u + 8, 2);
  if (version != 1 && version != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "capture format version ", version, " (this reader knows 1..", kFormatVersion, ")"));
  }
  // Version 1 has no flags; version 2 knows the flame section's.
  const uint64_t flags = get_le(u + 10, 2);
  const uint64_t known_flags = version == 1 ? 0 : kFlagFlame;
  if ((flags & ~known_flags) != 0) {
    return absl::DataLossError("corrupt capture: unknown flags in the header");
  }
  const uint64_t total = get_le(u + 12, 8);
  if (bytes.size() < total) {
    return absl::DataLossError(
        absl::StrCat("truncated capture: ", bytes.size(), " of ", total, " bytes"));
  }
  if (bytes.size() > total) {
    return absl::DataLossError(absl::StrCat("corrupt capture: ", bytes.size() - total,
                                            " bytes after its end (", total, " bytes)"));
  }
  const uint32_t want = static_cast<uint32_t>(get_le(u + total - kTrailerBytes, 4));
  const uint32_t got = crc32c::value(bytes.data(), total - kTrailerBytes);
  if (want != got) return absl::DataLossError("corrupt capture: checksum mismatch");

  Capture c;
  Cursor in(bytes, kHeaderBytes, total - kTrailerBytes);
  HPROF_TRY(in.string(&c.meta.node, "node name"));
  HPROF_TRY(in.string(&c.meta.host, "host name"));
  HPROF_TRY(in.varint(&c.meta.start_unix_ms, "start time"));
  HPROF_TRY(in.varint(&c.meta.interval_ns, "interval"));
  uint64_t series = 0;
  HPROF_TRY(in.varint(&series, "series count"));
  // Each entry takes at least 3 bytes: a count above what is left is corrupt, and it is checked
  // before anything is sized from it.
  if (series > kMaxSeries || series * 3 > in.remaining()) {
    return in.error(absl::StrCat("series count ", series, " out of bounds"));
  }
  c.series.resize(series);
  for (SeriesInfo& s : c.series) {
    HPROF_TRY(in.string(&s.name, "series name"));
    HPROF_TRY(in.string(&s.unit, "series unit"));
    uint8_t kind = 0;
    HPROF_TRY(in.byte(&kind, "series kind"));
    if (kind != 1 && kind != 2) return in.error(absl::StrCat("unknown series kind ", kind));
    s.kind = static_cast<SeriesKind>(kind);
  }
  uint64_t samples = 0;
  HPROF_TRY(in.varint(&samples, "sample count"));
  const size_t bitmap_bytes = (series + 7) / 8;
  // A sample takes at least its time varint and bitmap.
  if (samples > in.remaining() / (1 + bitmap_bytes) ||
      (series != 0 && samples > kMaxValuesPerCapture / series)) {
    return in.error(absl::StrCat("sample count ", samples, " out of bounds"));
  }
  c.samples.resize(samples);
  std::vector<int64_t> last(series, 0);
  uint64_t last_ns = 0;
  for (Sample& sample : c.samples) {
    uint64_t dt = 0;
    HPROF_TRY(in.varint(&dt, "sample time"));
    last_ns += static_cast<uint64_t>(unzigzag(dt));
    sample.mono_ns = last_ns;
    const unsigned char* bitmap = nullptr;
    HPROF_TRY(in.take(bitmap_bytes, &bitmap, "sample bitmap"));
    sample.values.resize(series);
    for (size_t i = 0; i < series; ++i) {
      if ((bitmap[i / 8] & (1 << (i % 8))) == 0) continue;
      uint64_t d = 0;
      HPROF_TRY(in.varint(&d, "sample value"));
      last[i] =
          static_cast<int64_t>(static_cast<uint64_t>(last[i]) + static_cast<uint64_t>(unzigzag(d)));
      sample.values[i] = last[i];
    }
    // Unused bits past the last series must be zero, so one capture has one encoding.
    if (series % 8 != 0 && (bitmap[bitmap_bytes - 1] >> (series % 8)) != 0) {
      return in.error("bits set past the last series");
    }
  }
  if ((flags & kFlagFlame) != 0) {
    FlameProfile& f = c.flame.emplace();
    HPROF_TRY(in.string(&f.status, "flame status"));
    HPROF_TRY(in.varint(&f.frequency_hz, "flame frequency"));
    HPROF_TRY(in.varint(&f.pid, "flame pid"));
    uint64_t stacks = 0;
    HPROF_TRY(in.varint(&stacks, "flame stack count"));
    // A stack takes at least two bytes (empty frames, one-byte count).
    if (stacks > kMaxFlameStacks || stacks > in.remaining() / 2) {
      return in.error(absl::StrCat("flame stack count ", stacks, " out of bounds"));
    }
    f.stacks.resize(stacks);
    for (FoldedStack& stack : f.stacks) {
      HPROF_TRY(in.string(&stack.frames, "flame stack", kMaxFlameStackBytes));
      HPROF_TRY(in.varint(&stack.samples, "flame samples"));
    }
  }
  if (in.remaining() != 0) {
    return in.error((flags & kFlagFlame) != 0 ? "bytes left after the flame section"
                                              : "bytes left after the last sample");
  }
  return c;
}

}  // namespace herald::profiler

// The profiler's capture format (.hprof, docs/PROFILER_FORMAT.md): metadata, a directory of
// series and integer samples, delta + zigzag varint encoded, with a CRC32C trailer. Shared by
// the control plane (writer) and heraldctl (reader, report, CSV).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace herald::profiler {

// How a series is read: a counter only grows and is reported as a rate per second; a gauge is
// reported as is.
enum class SeriesKind : uint8_t { kCounter = 1, kGauge = 2 };

struct SeriesInfo {
  std::string name;  // "os.cpu0.user", "proc.controlplane.rss", "ctr.tcp.rx_packets"
  std::string unit;  // "jiffies", "bytes", "packets", "ns", ...
  SeriesKind kind = SeriesKind::kGauge;
  friend bool operator==(const SeriesInfo&, const SeriesInfo&) = default;
};

struct CaptureMeta {
  std::string node;  // node name
  std::string host;  // uname nodename
  uint64_t start_unix_ms = 0;
  uint64_t interval_ns = 0;
  friend bool operator==(const CaptureMeta&, const CaptureMeta&) = default;
};

// One sample: the monotonic time it was taken and one value per series of the directory
// (nullopt: not available in this sample, e.g. a perf counter the host refuses, or a series
// that appeared later).
struct Sample {
  uint64_t mono_ns = 0;
  std::vector<std::optional<int64_t>> values;
  friend bool operator==(const Sample&, const Sample&) = default;
};

// One distinct call stack of a CPU profile and how many samples landed on it, root first:
// "herald-dataplane;main;herald::dataplane::Worker::run;...;leaf" (Brendan Gregg's folded
// format, so any flame-graph tool reads an export of it).
struct FoldedStack {
  std::string frames;  // ';'-separated, root first
  uint64_t samples = 0;
  friend bool operator==(const FoldedStack&, const FoldedStack&) = default;
};

// The dataplane's CPU profile over the capture, when one was asked for (perf record).
struct FlameProfile {
  std::string status;  // "ok", or why there is no profile ("perf not installed", ...)
  uint64_t frequency_hz = 0;
  uint64_t pid = 0;                 // the process profiled
  std::vector<FoldedStack> stacks;  // heaviest first
  friend bool operator==(const FlameProfile&, const FlameProfile&) = default;
};

struct Capture {
  CaptureMeta meta;
  std::vector<SeriesInfo> series;
  std::vector<Sample> samples;
  std::optional<FlameProfile> flame;  // absent: none was asked for
};

inline constexpr char kMagic[8] = {'H', 'P', 'R', 'O', 'F', '\r', '\n', '\x1a'};
// Version 2 added the flame section (flags bit 0); version 1 files are still read.
inline constexpr uint16_t kFormatVersion = 2;
inline constexpr uint16_t kFlagFlame = 1;
// Reader limits: a capture asking for more is rejected as corrupt before anything is allocated.
inline constexpr uint32_t kMaxSeries = 65536;
inline constexpr uint32_t kMaxStringBytes = 1024;
inline constexpr uint64_t kMaxValuesPerCapture = 64ull << 20;  // series x samples
// The flame section's own limits: a folded stack is many frames, so it is not a 1024-byte
// string; the control plane's configured limits (FlameLimits) stay inside these.
inline constexpr uint32_t kMaxFlameStacks = 1u << 20;
inline constexpr uint32_t kMaxFlameStackBytes = 128 * 1024;

// Encodes `capture`. Every sample must have series.size() values (HERALD_CHECK).
std::string encode_capture(const Capture& capture);

// Decodes a capture. Errors (never a crash, whatever the bytes):
//   kInvalidArgument     not a capture (magic)
//   kFailedPrecondition  another format version
//   kDataLoss            truncated or corrupt; the message says what and at which byte offset
absl::StatusOr<Capture> decode_capture(std::string_view bytes);

std::string_view series_kind_name(SeriesKind kind);

}  // namespace herald::profiler

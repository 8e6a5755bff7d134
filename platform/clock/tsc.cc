// TSC frequency discovery (CPUID or measurement against CLOCK_MONOTONIC) and invariance checks.
#include "platform/clock/tsc.h"

#include <cpuid.h>
#include <time.h>

#include <fstream>
#include <sstream>
#include <string>

#include "platform/assert/assert.h"
#include "platform/clock/clock.h"

namespace herald::clock {
namespace {

__extension__ using U128 = unsigned __int128;

constexpr uint64_t kNsPerSecond = 1'000'000'000;
// A TSC outside this range is not a TSC we understand (or the measurement went wrong).
constexpr uint64_t kMinPlausibleHz = 100'000'000;
constexpr uint64_t kMaxPlausibleHz = 20'000'000'000;

bool has_token(std::string_view line, std::string_view token) {
  size_t pos = 0;
  while (pos < line.size()) {
    size_t start = line.find_first_not_of(" \t", pos);
    if (start == std::string_view::npos) break;
    size_t end = line.find_first_of(" \t", start);
    if (end == std::string_view::npos) end = line.size();
    if (line.substr(start, end - start) == token) return true;
    pos = end;
  }
  return false;
}

bool cpuid_says_tsc_invariant() {
  unsigned int eax, ebx, ecx, edx;
  if (static_cast<unsigned int>(__get_cpuid_max(0x80000000, nullptr)) < 0x80000007u) return false;
  __cpuid(0x80000007, eax, ebx, ecx, edx);
  return (edx & (1u << 8)) != 0;
}

// Intel's CPUID leaf 0x15: TSC = crystal Hz * EBX / EAX. This is what the kernel trusts when it
// sets tsc_known_freq on bare metal. ECX (crystal Hz) is 0 on parts where the kernel uses a
// model table instead; we then measure rather than copy that table.
uint64_t cpuid_crystal_hz() {
  unsigned int eax, ebx, ecx, edx;
  if (__get_cpuid_max(0, nullptr) < 0x15) return 0;
  __cpuid_count(0x15, 0, eax, ebx, ecx, edx);
  if (eax == 0 || ebx == 0 || ecx == 0) return 0;
  return static_cast<uint64_t>(ecx) * ebx / eax;
}

// The hypervisor timing leaf 0x40000010 (VMware's, also offered by KVM with
// -cpu ...,+vmware-cpuid-freq): EAX = TSC kHz. Only looked at when CPUID.1:ECX[31] says we run
// under a hypervisor and its vendor leaf says 0x40000010 exists.
uint64_t cpuid_hypervisor_hz() {
  unsigned int eax, ebx, ecx, edx;
  __cpuid(1, eax, ebx, ecx, edx);
  if ((ecx & (1u << 31)) == 0) return 0;
  __cpuid(0x40000000, eax, ebx, ecx, edx);
  if (eax < 0x40000010 || eax > 0x400000FF) return 0;
  __cpuid(0x40000010, eax, ebx, ecx, edx);
  return static_cast<uint64_t>(eax) * 1000;
}

// One (TSC, CLOCK_MONOTONIC) pair, as tight as we can get it: the clock read bracketed by two
// fenced TSC reads, best of several tries so an interrupt or preemption does not skew it.
struct AnchorPair {
  uint64_t tsc;
  uint64_t ns;
};

AnchorPair read_anchor_pair() {
  AnchorPair best{0, 0};
  uint64_t best_spread = UINT64_MAX;
  for (int i = 0; i < 32; ++i) {
    uint64_t before = read_tsc_start();
    uint64_t ns = monotonic_ns();
    uint64_t after = read_tsc_end();
    if (after - before < best_spread) {
      best_spread = after - before;
      best = {before + (after - before) / 2, ns};
    }
  }
  return best;
}

void sleep_ns(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / kNsPerSecond), static_cast<long>(ns % kNsPerSecond)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

// Frequency = TSC cycles / CLOCK_MONOTONIC nanoseconds between two tight pairs `window_ns`
// apart. Each pair is good to about its TSC spread (tens of ns), so 20 ms gives a few ppm.
uint64_t measure_hz(uint64_t window_ns) {
  AnchorPair first = read_anchor_pair();
  sleep_ns(window_ns);
  AnchorPair second = read_anchor_pair();
  // A TSC that stood still or ran backwards is unusable; 0 makes the caller say so.
  if (second.ns <= first.ns || second.tsc <= first.tsc) return 0;
  U128 cycles = second.tsc - first.tsc;
  return static_cast<uint64_t>(cycles * kNsPerSecond / (second.ns - first.ns));
}

}  // namespace

bool cpuinfo_says_tsc_invariant(std::string_view text) {
  // Every CPU's block has its own flags line; all of them must have both flags.
  bool saw_flags = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.starts_with("flags")) {
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) return false;
      std::string_view flags = line.substr(colon + 1);
      if (!has_token(flags, "constant_tsc") || !has_token(flags, "nonstop_tsc")) return false;
      saw_flags = true;
    }
    pos = end + 1;
  }
  return saw_flags;
}

bool tsc_is_invariant() {
  std::ifstream file("/proc/cpuinfo");
  if (file) {
    std::ostringstream text;
    text << file.rdbuf();
    std::string s = text.str();
    if (s.find("flags") != std::string::npos) return cpuinfo_says_tsc_invariant(s);
  }
  return cpuid_says_tsc_invariant();
}

std::string_view tsc_frequency_source_name(TscFrequencySource source) {
  switch (source) {
    case TscFrequencySource::kCpuidCrystal: return "cpuid_crystal";
    case TscFrequencySource::kCpuidHypervisor: return "cpuid_hypervisor";
    case TscFrequencySource::kMeasured: return "measured";
    case TscFrequencySource::kGiven: return "given";
  }
  return "unknown";
}

std::optional<TscClock> TscClock::calibrate(uint64_t window_ns) {
  // The kernel's own tsc_known_freq value is not exported to user space (no sysfs file, and
  // the perf mmap page's time_mult is absent under many hypervisors), so we read the same
  // CPUID leaves it reads; where neither answers (AMD, plain KVM) we measure.
  TscFrequencySource source = TscFrequencySource::kCpuidCrystal;
  uint64_t hz = cpuid_crystal_hz();
  if (hz < kMinPlausibleHz || hz > kMaxPlausibleHz) {
    source = TscFrequencySource::kCpuidHypervisor;
    hz = cpuid_hypervisor_hz();
  }
  if (hz < kMinPlausibleHz || hz > kMaxPlausibleHz) return measure(window_ns);
  AnchorPair anchor = read_anchor_pair();
  TscClock clock = from_hz(hz, anchor.tsc, anchor.ns);
  clock.source_ = source;
  return clock;
}

std::optional<TscClock> TscClock::measure(uint64_t window_ns) {
  HERALD_CHECK(window_ns >= 1'000'000, "calibration window under 1 ms is too noisy");
  uint64_t hz = measure_hz(window_ns);
  if (hz < kMinPlausibleHz || hz > kMaxPlausibleHz) return std::nullopt;
  AnchorPair anchor = read_anchor_pair();
  TscClock clock = from_hz(hz, anchor.tsc, anchor.ns);
  clock.source_ = TscFrequencySource::kMeasured;
  return clock;
}

TscClock TscClock::from_hz(uint64_t hz, uint64_t anchor_tsc, uint64_t anchor_ns) {
  TscClock clock;
  clock.set_hz(hz);
  clock.anchor_tsc_ = anchor_tsc;
  clock.anchor_ns_ = anchor_ns;
  clock.source_ = TscFrequencySource::kGiven;
  return clock;
}

void TscClock::set_hz(uint64_t hz) {
  HERALD_CHECK(hz >= kMinPlausibleHz && hz <= kMaxPlausibleHz, "implausible TSC frequency");
  hz_ = hz;
  // Rounded to nearest: both fit in 64 bits for any plausible hz (ns per cycle < 10, cycles
  // per ns < 20, times 2^32).
  ns_per_cycle_q32_ =
      static_cast<uint64_t>(((static_cast<U128>(kNsPerSecond) << 32) + hz / 2) / hz);
  cycles_per_ns_q32_ =
      static_cast<uint64_t>(((static_cast<U128>(hz) << 32) + kNsPerSecond / 2) / kNsPerSecond);
}

}  // namespace herald::clock

// The x86 time-stamp counter: raw reads (plain and fenced) and TscClock, which turns TSC
// readings into CLOCK_MONOTONIC nanoseconds without a system call.
#pragma once

#include <x86intrin.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace herald::clock {

// Plain RDTSC. Not ordered: the CPU may execute it before earlier instructions finish or after
// later ones start. Right for timestamps, where tens of cycles do not matter.
inline uint64_t read_tsc() {
  return __rdtsc();
}

// For measuring a stretch of code: LFENCE before RDTSC keeps the read from starting before
// earlier instructions complete (on AMD, Linux makes LFENCE dispatch-serialising).
inline uint64_t read_tsc_start() {
  _mm_lfence();
  uint64_t tsc = __rdtsc();
  _mm_lfence();
  return tsc;
}

// End of a measured stretch: RDTSCP waits for earlier instructions; the LFENCE after it keeps
// later ones from starting before the read.
inline uint64_t read_tsc_end() {
  unsigned int aux;
  uint64_t tsc = __rdtscp(&aux);
  _mm_lfence();
  return tsc;
}

// True when /proc/cpuinfo's flags say the TSC ticks at a fixed rate whatever the P-state
// (constant_tsc) and keeps ticking in deep C-states (nonstop_tsc). Without both, TSC deltas are
// not time, and Clock falls back to CLOCK_MONOTONIC. Takes the file's text so tests can feed it.
bool cpuinfo_says_tsc_invariant(std::string_view cpuinfo_text);

// Reads /proc/cpuinfo; if that cannot be read, asks CPUID leaf 0x80000007 (EDX bit 8,
// "invariant TSC", the bit the kernel derives nonstop_tsc from).
bool tsc_is_invariant();

// Where TscClock's frequency came from.
enum class TscFrequencySource : uint8_t {
  kCpuidCrystal,     // CPUID leaf 0x15 (Intel: crystal clock x ratio), as the kernel's
                     // tsc_known_freq path uses
  kCpuidHypervisor,  // CPUID leaf 0x40000010 (VMware/KVM timing leaf, TSC kHz)
  kMeasured,         // counted against CLOCK_MONOTONIC over a window
  kGiven,            // from_hz(): a caller-supplied frequency (tests, replays)
};
std::string_view tsc_frequency_source_name(TscFrequencySource source);

// Converts TSC readings to nanoseconds on CLOCK_MONOTONIC's time line. Fixed-point Q32.32
// multipliers with a 128-bit product, so a conversion is one MUL and a shift and cannot
// overflow for any cycle count whose result fits in 64 bits (584 years of nanoseconds); larger
// results saturate. The multiplier's rounding error is below 1e-9 relative; the frequency's
// own error (a few ppm when measured) dominates, so TscClock drifts from CLOCK_MONOTONIC by at
// most that much (and CLOCK_MONOTONIC itself is slewed by NTP): fine for timeouts and
// latencies, not a wall clock. A copy per worker core keeps the constants in its own cache.
class TscClock {
 public:
  // The usual constructor: frequency from CPUID when the CPU or hypervisor states it, else
  // measured over `window_ns` of CLOCK_MONOTONIC (sleeping); anchored to CLOCK_MONOTONIC at
  // the end. Costs about `window_ns` when measuring. Does not check tsc_is_invariant().
  // nullopt if the frequency is implausible (outside 100 MHz..20 GHz): a TSC not to be used.
  static std::optional<TscClock> calibrate(uint64_t window_ns = kDefaultCalibrationWindowNs);
  // Measures even if CPUID states a frequency (tests compare the two).
  static std::optional<TscClock> measure(uint64_t window_ns = kDefaultCalibrationWindowNs);
  // A given frequency and anchor: reading `anchor_tsc` means `anchor_ns`. HERALD_CHECKs that
  // `hz` is plausible.
  static TscClock from_hz(uint64_t hz, uint64_t anchor_tsc, uint64_t anchor_ns);

  static constexpr uint64_t kDefaultCalibrationWindowNs = 20'000'000;  // 20 ms: ~2 ppm

  // Now, in CLOCK_MONOTONIC nanoseconds.
  uint64_t now_ns() const { return to_ns(read_tsc()); }
  // An absolute TSC reading, in CLOCK_MONOTONIC nanoseconds (readings from before the anchor
  // work too; saturates at 0).
  uint64_t to_ns(uint64_t tsc) const {
    return tsc >= anchor_tsc_ ? anchor_ns_ + cycles_to_ns(tsc - anchor_tsc_)
                              : sat_sub(anchor_ns_, cycles_to_ns(anchor_tsc_ - tsc));
  }
  // Durations.
  uint64_t cycles_to_ns(uint64_t cycles) const { return mul_q32(cycles, ns_per_cycle_q32_); }
  uint64_t ns_to_cycles(uint64_t ns) const { return mul_q32(ns, cycles_per_ns_q32_); }

  uint64_t hz() const { return hz_; }
  TscFrequencySource source() const { return source_; }

 private:
  TscClock() = default;
  // Fills the multipliers from hz_; HERALD_CHECKs a plausible frequency.
  void set_hz(uint64_t hz);

  // (a * b) / 2^32 rounded to nearest, saturating at UINT64_MAX. Rounding (not truncating)
  // makes exact ratios exact: 2.5e9 cycles at 2.5 GHz is 1e9 ns, not 999999999.
  static uint64_t mul_q32(uint64_t a, uint64_t b_q32) {
    __extension__ using U128 = unsigned __int128;
    U128 product = static_cast<U128>(a) * b_q32;
    U128 shifted = (product + (U128{1} << 31)) >> 32;
    return (shifted >> 64) != 0 ? UINT64_MAX : static_cast<uint64_t>(shifted);
  }
  static uint64_t sat_sub(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

  uint64_t anchor_tsc_ = 0;
  uint64_t anchor_ns_ = 0;
  uint64_t ns_per_cycle_q32_ = 0;
  uint64_t cycles_per_ns_q32_ = 0;
  uint64_t hz_ = 0;
  TscFrequencySource source_ = TscFrequencySource::kGiven;
};

}  // namespace herald::clock

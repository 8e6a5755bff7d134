// Hashing and prefetching for the open-addressing tables of both planes (hash_maps.h, the
// dataplane's SlotIndex tables).
#pragma once

#include <cstddef>
#include <cstdint>

namespace herald {

// splitmix64's finalizer (Steele, Lea, Flood 2014): spreads keys whose entropy sits in a few
// bits (time-ordered message ids, dense sequences and connection numbers) over all 64, so the
// low bits can pick a slot and the high bits make a tag.
inline uint64_t hash_mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// The hash functor for tables keyed by one 64-bit number.
struct U64Hash {
  size_t operator()(uint64_t key) const { return hash_mix(key); }
};

// Starts loading the cache line at `p` (a hint: never faults). Not __builtin_prefetch: once the
// hashes were made inline, GCC 12 at -O3 dropped the index prefetches from the binary without a
// word (objdump found one prefetcht0 left; the 10 M-message restart went from 2.5 s to 3.4 s).
// An asm statement is always emitted.
inline void prefetch_line(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

}  // namespace herald

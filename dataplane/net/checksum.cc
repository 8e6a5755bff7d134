// RFC 1071 sum: four bytes at a time into a 64-bit accumulator, so no carry is lost before the
// final fold (a 64 KiB datagram adds at most 2^14 words of 2^32).
#include "dataplane/net/checksum.h"

#include "dataplane/net/wire.h"

namespace herald::net {

uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> bytes) {
  uint64_t acc = sum;
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  while (n >= 4) {
    acc += wire::load32(p);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    acc += wire::load16(p);
    p += 2;
    n -= 2;
  }
  if (n == 1) acc += uint32_t{p[0]} << 8;
  // A 32-bit word's sum folds to the same 16-bit one's-complement sum (RFC 1071 §2(B)).
  while (acc >> 32) acc = (acc & 0xffffffff) + (acc >> 32);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint32_t>(acc);
}

}  // namespace herald::net

// Size-classed byte buffers for the TCP engine's send and receive rings: one pool per engine
// (per lcore, no locks), a byte limit with a refusal count, and a bounded cache of freed
// buffers so a busy connection's grow/release cycle does not hit malloc every time.
#pragma once

#include <cstdint>
#include <vector>

namespace herald::net::tcp {

class BufferPool {
 public:
  // Classes grow 4x from 2 KiB (2, 8, 32, 128, 512 KiB, ...), each capped at the caller's max.
  static constexpr uint32_t kMinClassBytes = 2048;
  static uint32_t class_bytes(uint32_t need_bytes, uint32_t max_bytes);

  // limit_bytes: buffers handed out at once (0: no limit). cache_bytes: freed buffers kept for
  // reuse; past it they go back to malloc.
  BufferPool(uint64_t limit_bytes, uint64_t cache_bytes);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of exactly `bytes`, or nullptr when that would pass the limit (counted).
  uint8_t* alloc(uint32_t bytes);
  void release(uint8_t* buffer, uint32_t bytes);
  // Whether alloc(bytes) would succeed now.
  bool can_alloc(uint64_t bytes) const {
    return limit_bytes_ == 0 || in_use_bytes_ + bytes <= limit_bytes_;
  }

  uint64_t in_use_bytes() const { return in_use_bytes_; }
  uint64_t high_water_bytes() const { return high_water_bytes_; }
  uint64_t cached_bytes() const { return cached_bytes_; }
  uint64_t refused() const { return refused_; }

 private:
  // Freed buffers of one size, linked through their first bytes (every class holds a pointer).
  struct FreeList {
    uint32_t bytes = 0;
    uint8_t* head = nullptr;
  };
  FreeList* list_for(uint32_t bytes, bool create);

  uint64_t limit_bytes_;
  uint64_t cache_limit_bytes_;
  uint64_t in_use_bytes_ = 0;
  uint64_t high_water_bytes_ = 0;
  uint64_t cached_bytes_ = 0;
  uint64_t refused_ = 0;
  // A handful of sizes (the classes below each configured max): a linear search is enough.
  std::vector<FreeList> lists_;
};

}  // namespace herald::net::tcp

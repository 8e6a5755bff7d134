// Test helper: a heap region of exactly the requested size, 64-byte aligned, so ASan flags any
// read past its end (the reader must never make one, whatever the segment says).
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <span>

namespace herald::counters::testing {

class AlignedRegion {
 public:
  explicit AlignedRegion(size_t size_bytes)
      : size_(size_bytes),
        data_(static_cast<std::byte*>(::operator new (size_bytes, std::align_val_t{64}))) {
    std::memset(data_, 0xA5, size_);  // not zero: format must clear what it owns
  }
  AlignedRegion(const AlignedRegion&) = delete;
  AlignedRegion& operator=(const AlignedRegion&) = delete;
  ~AlignedRegion() { ::operator delete (data_, std::align_val_t{64}); }

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }

 private:
  size_t size_;
  std::byte* data_;
};

}  // namespace herald::counters::testing

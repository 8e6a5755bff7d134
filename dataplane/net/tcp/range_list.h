// RangeList: the sorted [start, end) sequence ranges a connection holds (out-of-order data,
// the SACK scoreboard) as one pointer in the connection block, nothing allocated while empty
// of capacity. The subset of std::vector's interface the engine uses, so call sites read alike.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <new>
#include <utility>

namespace herald::net::tcp {

class RangeList {
 public:
  using value_type = std::pair<uint32_t, uint32_t>;
  using iterator = value_type*;
  using const_iterator = const value_type*;
  using reverse_iterator = std::reverse_iterator<iterator>;
  using const_reverse_iterator = std::reverse_iterator<const_iterator>;

  RangeList() = default;
  RangeList(const RangeList&) = delete;
  RangeList& operator=(const RangeList&) = delete;
  RangeList(RangeList&& o) noexcept : rep_(std::exchange(o.rep_, nullptr)) {}
  RangeList& operator=(RangeList&& o) noexcept {
    if (this != &o) {
      std::free(rep_);
      rep_ = std::exchange(o.rep_, nullptr);
    }
    return *this;
  }
  ~RangeList() { std::free(rep_); }

  size_t size() const { return rep_ == nullptr ? 0 : rep_->size; }
  size_t capacity() const { return rep_ == nullptr ? 0 : rep_->capacity; }
  bool empty() const { return size() == 0; }
  iterator begin() { return rep_ == nullptr ? nullptr : items(); }
  iterator end() { return begin() + size(); }
  const_iterator begin() const { return rep_ == nullptr ? nullptr : items(); }
  const_iterator end() const { return begin() + size(); }
  reverse_iterator rbegin() { return reverse_iterator(end()); }
  reverse_iterator rend() { return reverse_iterator(begin()); }
  const_reverse_iterator rbegin() const { return const_reverse_iterator(end()); }
  const_reverse_iterator rend() const { return const_reverse_iterator(begin()); }
  value_type& operator[](size_t i) { return items()[i]; }
  const value_type& operator[](size_t i) const { return items()[i]; }
  value_type& front() { return items()[0]; }
  const value_type& front() const { return items()[0]; }
  value_type& back() { return items()[rep_->size - 1]; }
  const value_type& back() const { return items()[rep_->size - 1]; }

  void clear() {
    if (rep_ != nullptr) rep_->size = 0;
  }
  // Frees the allocation too (clear() keeps it for the next range).
  void release() {
    std::free(rep_);
    rep_ = nullptr;
  }
  iterator erase(const_iterator first, const_iterator last) {
    iterator f = begin() + (first - begin());
    const size_t n = static_cast<size_t>(last - first);
    if (n == 0) return f;
    std::copy(f + n, end(), f);
    rep_->size -= static_cast<uint32_t>(n);
    return f;
  }
  iterator erase(const_iterator pos) { return erase(pos, pos + 1); }
  iterator insert(const_iterator pos, const value_type& v) {
    const size_t at = static_cast<size_t>(pos - begin());
    if (size() == capacity()) grow();
    iterator p = begin() + at;
    std::copy_backward(p, end(), end() + 1);
    *p = v;
    ++rep_->size;
    return p;
  }
  void push_back(const value_type& v) { insert(end(), v); }

 private:
  // The header; `capacity` ranges follow it in the same allocation.
  struct Rep {
    uint32_t size;
    uint32_t capacity;
  };
  static_assert(sizeof(Rep) % alignof(value_type) == 0);
  value_type* items() const { return reinterpret_cast<value_type*>(rep_ + 1); }
  void grow() {
    const uint32_t cap = rep_ == nullptr ? 4 : rep_->capacity * 2;
    const size_t bytes = sizeof(Rep) + cap * sizeof(value_type);
    Rep* r = static_cast<Rep*>(std::realloc(static_cast<void*>(rep_), bytes));
    if (r == nullptr) throw std::bad_alloc();
    if (rep_ == nullptr) r->size = 0;
    r->capacity = cap;
    rep_ = r;
  }
  Rep* rep_ = nullptr;
};

}  // namespace herald::net::tcp

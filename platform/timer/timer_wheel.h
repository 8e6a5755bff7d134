// A hierarchical timer wheel (Varghese & Lauck 1987, scheme 7) for millions of timers on one
// thread: O(1) schedule, cancel and reschedule; expiry costs O(1) per timer plus at most one
// move per level it passes through. One wheel per dataplane worker (TCP retransmit, delayed
// ACK, keepalive, TIME-WAIT) and one in the control plane's event loop.
//
// Timers live in a pool sized at construction and are named by TimerId, an index into it. A
// caller allocates a timer once (e.g. per TCP connection and kind) and then schedules, cancels
// and reschedules it as often as it likes; nothing allocates after construction. A timer that
// fires becomes idle, not free, so its id stays the caller's: no stale handles to chase.
//
// Time is uint64_t nanoseconds (CLOCK_MONOTONIC's line, or a FakeClock's), rounded to ticks:
//  * A timer with deadline D fires in the first advance(now) with now >= expiry_ns(), where
//    expiry_ns() = D rounded up to a whole tick. It never fires early; it fires late by less
//    than a tick plus however late advance() is called.
//  * D <= the wheel's now (the last advance's `now`) means "overdue": it fires on the next
//    advance(), even one with the same now.
//  * Within one advance(), overdue timers fire first, then the rest in order of expiry tick.
//    Timers due in the same tick fire in an unspecified order (roughly FIFO): callers who need
//    an order inside a tick keep it themselves.
//  * A callback may schedule, cancel, reschedule or release any timer, including its own.
//    A timer armed (or re-armed) while advance() runs never fires in that same advance(), even
//    if overdue: it fires on the next call. That bounds each advance() and makes "re-arm myself
//    for now" safe.
//  * Deadlines of any size work. A timer is filed in the level of the most significant 8-bit
//    digit in which its expiry tick differs from the current tick, and moved down a level when
//    that digit's turn comes (so at most levels-1 moves). One whose tick lies in a later
//    revolution of the top level (revolution_ns()) waits in an overflow list, re-filed when
//    its revolution begins: distance costs one more move, nothing else.
//
// Not thread-safe: one wheel, one thread.
#pragma once

#include <cstdint>
#include <memory>

namespace herald::timer {

using TimerId = uint32_t;
inline constexpr TimerId kInvalidTimerId = UINT32_MAX;

class TimerWheel;
// Called when a timer fires, with the id's callback argument. The timer is idle by then.
// A plain function pointer, not std::function: no allocation, one indirect call.
using TimerFn = void (*)(TimerWheel& wheel, TimerId id, uint64_t arg);

struct TimerWheelConfig {
  // Timers that may be allocated at once. Memory: 32 bytes each (1M timers: 32 MiB).
  uint32_t capacity = 0;
  // Granularity. 1 ms suits TCP (RFC 6298's 1 s minimum RTO, 200 ms delayed-ACK ceiling);
  // 10 ms suits the control plane.
  uint64_t tick_ns = 1'000'000;
  // 256 slots per level. 4 levels span 2^32 ticks (49 days at 1 ms) before the overflow list
  // is used. 1..7.
  uint32_t levels = 4;
  // The wheel's now before the first advance().
  uint64_t start_ns = 0;
};

class TimerWheel {
 public:
  static constexpr uint32_t kSlotBits = 8;
  static constexpr uint32_t kSlotsPerLevel = 1u << kSlotBits;
  static constexpr uint32_t kMaxLevels = 7;
  // Pool indices above this are reserved for list heads and state markers.
  static constexpr uint32_t kMaxCapacity = 1u << 30;

  // HERALD_CHECKs the config (capacity 1..kMaxCapacity, tick_ns > 0, levels 1..kMaxLevels):
  // it comes from code or validated configuration, not from the wire.
  explicit TimerWheel(const TimerWheelConfig& config);
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // An idle timer with this callback, or kInvalidTimerId if the pool is exhausted.
  [[nodiscard]] TimerId alloc(TimerFn fn, uint64_t arg);
  // Cancels it if armed and returns it to the pool. The id must not be used afterwards.
  void release(TimerId id);
  void set_callback(TimerId id, TimerFn fn, uint64_t arg);

  // Arms the timer for `deadline_ns`, moving it if it was armed already.
  void schedule(TimerId id, uint64_t deadline_ns);
  // Arms it for now_ns() + delay_ns.
  void schedule_after(TimerId id, uint64_t delay_ns);
  // Disarms it; returns whether it was armed.
  bool cancel(TimerId id);

  [[nodiscard]] bool armed(TimerId id) const;
  // For an armed timer: the tick boundary at or after its deadline, i.e. the earliest `now`
  // at which advance() fires it (overdue ones fire on the next call whatever this says).
  [[nodiscard]] uint64_t expiry_ns(TimerId id) const;

  // Moves the wheel to `now_ns` and fires every timer that is due, as described above.
  // Returns how many fired. A `now_ns` behind the wheel's now is taken as the wheel's now
  // (time never goes backwards here, even if a caller's clock reading does). Must not be
  // called from a callback.
  [[nodiscard]] uint64_t advance(uint64_t now_ns);

  // The earliest time at which advance() may have work to do (fire timers, or move a batch
  // down a level): sleep until then. now_ns() if overdue timers wait, UINT64_MAX if nothing is
  // armed. May be earlier than the next firing, never later.
  [[nodiscard]] uint64_t next_wakeup_ns() const;

  uint64_t now_ns() const { return now_ns_; }
  uint64_t tick_ns() const { return tick_ns_; }
  uint32_t capacity() const { return capacity_; }
  uint32_t allocated_count() const { return allocated_count_; }
  uint32_t armed_count() const { return armed_count_; }
  // tick_ns * 256^levels: the span of one turn of the top level.
  uint64_t revolution_ns() const;

 private:
  // 32 bytes, so two share a cache line and none straddles one.
  struct alignas(32) Node {
    uint32_t next;
    uint32_t prev;  // also the state: kStateFree, kStateIdle, or a list link (armed)
    uint64_t expiry_tick;
    TimerFn fn;
    uint64_t arg;
  };
  static_assert(sizeof(Node) == 32);

  static constexpr uint32_t kStateFree = UINT32_MAX;
  static constexpr uint32_t kStateIdle = UINT32_MAX - 1;
  static constexpr uint32_t kWordsPerLevel = kSlotsPerLevel / 64;

  uint32_t slot_head(uint32_t level, uint32_t slot) const {
    return capacity_ + level * kSlotsPerLevel + slot;
  }
  bool is_slot_head(uint32_t index) const { return index >= capacity_ && index < overdue_head_; }
  void check_id(TimerId id) const;

  void link_tail(uint32_t head, uint32_t id);
  void unlink(uint32_t id);
  // Moves every node of `from` (non-empty) onto `to` (empty).
  void splice(uint32_t from, uint32_t to);
  bool list_empty(uint32_t head) const { return nodes_[head].next == head; }

  // Files an armed node by its expiry_tick relative to cur_tick_ (expiry_tick >= cur_tick_).
  void place(uint32_t id);
  void set_occupied(uint32_t level, uint32_t slot);
  void clear_occupied(uint32_t level, uint32_t slot);
  // First occupied slot >= from at `level`, or kSlotsPerLevel.
  uint32_t first_occupied(uint32_t level, uint32_t from) const;
  // The smallest tick >= cur_tick_ at which some slot needs processing, or UINT64_MAX.
  uint64_t next_activation_tick() const;
  // Re-files the timers of every slot of level >= 1 whose turn begins at `tick`, and of the
  // overflow list when the revolution of its earliest timer begins.
  void cascade(uint64_t tick);
  // Re-files everything on the cascade list.
  void drain_cascade_list();
  // Fires everything on the firing list; returns the count.
  uint64_t fire_list();

  const uint32_t capacity_;
  const uint32_t levels_;
  const uint64_t tick_ns_;
  // List heads live in nodes_ after the pool: one per slot, then these four.
  const uint32_t overdue_head_;
  const uint32_t overflow_head_;
  const uint32_t firing_head_;
  const uint32_t cascade_head_;

  std::unique_ptr<Node[]> nodes_;
  uint64_t occupied_[kMaxLevels][kWordsPerLevel] = {};

  uint64_t now_ns_;
  // Every tick < cur_tick_ has been processed.
  uint64_t cur_tick_;
  // A lower bound on the expiry_tick of the timers on the overflow list (cancels leave it low,
  // which costs at most one early, idle re-filing).
  uint64_t overflow_min_tick_ = UINT64_MAX;
  uint32_t free_head_;
  uint32_t allocated_count_ = 0;
  uint32_t armed_count_ = 0;
  bool in_advance_ = false;
};

}  // namespace herald::timer

// The hierarchical timer wheel: placement by differing digit, cascading, and firing.
//
// Invariant (c = cur_tick_, the first tick not yet processed; digit(x, k) = bits 8k..8k+7):
// an armed timer with expiry tick e >= c sits in level k = the most significant digit in which
// e and c differ (0 if e == c), slot digit(e, k); above that digit e and c agree. Level k's
// slot j gets its turn when c reaches the tick whose digits above k are c's, digit k is j and
// lower digits are 0: the timers there are re-filed relative to that tick, landing in a lower
// level (or, at level 0, fire). Time can therefore jump straight to the next tick at which any
// slot's turn comes, found with one occupancy bitmap per level, and a jump of hours with few
// timers costs a handful of steps rather than one per tick. Linux's pre-4.8 wheel and VPP's
// tw_timer cascade the same way; unlike Linux's current wheel, nothing is fired early or late
// to avoid a cascade.
#include "platform/timer/timer_wheel.h"

#include <algorithm>

#include "platform/assert/assert.h"

namespace herald::timer {
namespace {

// Times past 2^63 ns (292 years) are clamped, so tick arithmetic can never wrap.
constexpr uint64_t kMaxNowNs = UINT64_MAX / 2;

uint64_t sat_mul(uint64_t a, uint64_t b) {
  uint64_t product;
  return __builtin_mul_overflow(a, b, &product) ? UINT64_MAX : product;
}

uint64_t ceil_div(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0 ? 1 : 0);
}

uint64_t low_mask(uint32_t bits) {
  return bits >= 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
}

const TimerWheelConfig& validated(const TimerWheelConfig& config) {
  HERALD_CHECK(config.capacity >= 1 && config.capacity <= TimerWheel::kMaxCapacity,
               "timer wheel capacity out of range");
  HERALD_CHECK(config.tick_ns >= 1, "timer wheel tick_ns must be positive");
  HERALD_CHECK(config.levels >= 1 && config.levels <= TimerWheel::kMaxLevels,
               "timer wheel levels out of range");
  return config;
}

}  // namespace

TimerWheel::TimerWheel(const TimerWheelConfig& config)
    : capacity_(validated(config).capacity),
      levels_(config.levels),
      tick_ns_(config.tick_ns),
      overdue_head_(capacity_ + levels_ * kSlotsPerLevel),
      overflow_head_(overdue_head_ + 1),
      firing_head_(overdue_head_ + 2),
      cascade_head_(overdue_head_ + 3),
      nodes_(new Node[cascade_head_ + 1]),
      now_ns_(std::min(config.start_ns, kMaxNowNs)),
      cur_tick_(now_ns_ / tick_ns_ + 1),
      free_head_(0) {
  for (uint32_t i = 0; i < capacity_; ++i) {
    nodes_[i] = Node{i + 1 < capacity_ ? i + 1 : kInvalidTimerId, kStateFree, 0, nullptr, 0};
  }
  for (uint32_t head = capacity_; head <= cascade_head_; ++head) {
    nodes_[head] = Node{head, head, 0, nullptr, 0};
  }
}

TimerWheel::~TimerWheel() = default;

void TimerWheel::check_id(TimerId id) const {
  HERALD_CHECK(id < capacity_, "timer id out of range");
  HERALD_DCHECK(nodes_[id].prev != kStateFree, "timer id used after release");
}

TimerId TimerWheel::alloc(TimerFn fn, uint64_t arg) {
  HERALD_CHECK(fn != nullptr, "timer callback is null");
  if (free_head_ == kInvalidTimerId) return kInvalidTimerId;
  TimerId id = free_head_;
  free_head_ = nodes_[id].next;
  nodes_[id] = Node{kInvalidTimerId, kStateIdle, 0, fn, arg};
  ++allocated_count_;
  return id;
}

void TimerWheel::release(TimerId id) {
  check_id(id);
  (void)cancel(id);
  nodes_[id].prev = kStateFree;
  nodes_[id].next = free_head_;
  free_head_ = id;
  --allocated_count_;
}

void TimerWheel::set_callback(TimerId id, TimerFn fn, uint64_t arg) {
  check_id(id);
  HERALD_CHECK(fn != nullptr, "timer callback is null");
  nodes_[id].fn = fn;
  nodes_[id].arg = arg;
}

void TimerWheel::schedule(TimerId id, uint64_t deadline_ns) {
  check_id(id);
  Node& node = nodes_[id];
  if (node.prev == kStateIdle) {
    ++armed_count_;
  } else {
    unlink(id);
  }
  node.expiry_tick = ceil_div(deadline_ns, tick_ns_);
  if (deadline_ns <= now_ns_) {
    // Overdue: kept apart so it fires on the next advance() even if that advance does not
    // reach a new tick, and (when armed from a callback) not in the running one.
    link_tail(overdue_head_, id);
  } else {
    // deadline > now_ns_ >= (cur_tick_ - 1) * tick_ns_, so expiry_tick >= cur_tick_.
    place(id);
  }
}

void TimerWheel::schedule_after(TimerId id, uint64_t delay_ns) {
  uint64_t deadline_ns;
  if (__builtin_add_overflow(now_ns_, delay_ns, &deadline_ns)) deadline_ns = UINT64_MAX;
  schedule(id, deadline_ns);
}

bool TimerWheel::cancel(TimerId id) {
  check_id(id);
  Node& node = nodes_[id];
  if (node.prev == kStateIdle) return false;
  unlink(id);
  node.prev = kStateIdle;
  --armed_count_;
  return true;
}

bool TimerWheel::armed(TimerId id) const {
  check_id(id);
  return nodes_[id].prev != kStateIdle;
}

uint64_t TimerWheel::expiry_ns(TimerId id) const {
  check_id(id);
  HERALD_DCHECK(nodes_[id].prev != kStateIdle, "expiry_ns() of an idle timer");
  return sat_mul(nodes_[id].expiry_tick, tick_ns_);
}

uint64_t TimerWheel::revolution_ns() const {
  return sat_mul(tick_ns_, low_mask(kSlotBits * levels_) + 1);
}

void TimerWheel::link_tail(uint32_t head, uint32_t id) {
  Node& h = nodes_[head];
  uint32_t tail = h.prev;
  nodes_[id].next = head;
  nodes_[id].prev = tail;
  nodes_[tail].next = id;
  h.prev = id;
}

void TimerWheel::unlink(uint32_t id) {
  uint32_t prev = nodes_[id].prev;
  uint32_t next = nodes_[id].next;
  nodes_[prev].next = next;
  nodes_[next].prev = prev;
  // prev == next only when the one left is the list's head: the list is now empty.
  if (prev == next) {
    if (is_slot_head(prev)) {
      uint32_t rel = prev - capacity_;
      clear_occupied(rel / kSlotsPerLevel, rel % kSlotsPerLevel);
    } else if (prev == overflow_head_) {
      overflow_min_tick_ = UINT64_MAX;
    }
  }
}

void TimerWheel::splice(uint32_t from, uint32_t to) {
  HERALD_DCHECK(!list_empty(from) && list_empty(to), "splice needs a full source, empty target");
  Node& f = nodes_[from];
  Node& t = nodes_[to];
  t.next = f.next;
  t.prev = f.prev;
  nodes_[t.next].prev = to;
  nodes_[t.prev].next = to;
  f.next = from;
  f.prev = from;
  if (is_slot_head(from)) {
    uint32_t rel = from - capacity_;
    clear_occupied(rel / kSlotsPerLevel, rel % kSlotsPerLevel);
  } else if (from == overflow_head_) {
    overflow_min_tick_ = UINT64_MAX;
  }
}

void TimerWheel::set_occupied(uint32_t level, uint32_t slot) {
  occupied_[level][slot / 64] |= uint64_t{1} << (slot % 64);
}

void TimerWheel::clear_occupied(uint32_t level, uint32_t slot) {
  occupied_[level][slot / 64] &= ~(uint64_t{1} << (slot % 64));
}

uint32_t TimerWheel::first_occupied(uint32_t level, uint32_t from) const {
  for (uint32_t word = from / 64; word < kWordsPerLevel; ++word) {
    uint64_t bits = occupied_[level][word];
    if (word == from / 64) bits &= ~uint64_t{0} << (from % 64);
    if (bits != 0) return word * 64 + static_cast<uint32_t>(__builtin_ctzll(bits));
  }
  return kSlotsPerLevel;
}

void TimerWheel::place(uint32_t id) {
  uint64_t expiry = nodes_[id].expiry_tick;
  HERALD_DCHECK(expiry >= cur_tick_, "placing a timer behind the wheel");
  uint64_t differ = expiry ^ cur_tick_;
  uint32_t level =
      differ == 0 ? 0 : static_cast<uint32_t>(63 - __builtin_clzll(differ)) / kSlotBits;
  if (level >= levels_) {
    link_tail(overflow_head_, id);
    overflow_min_tick_ = std::min(overflow_min_tick_, expiry);
    return;
  }
  uint32_t slot = static_cast<uint32_t>(expiry >> (level * kSlotBits)) & (kSlotsPerLevel - 1);
  link_tail(slot_head(level, slot), id);
  set_occupied(level, slot);
}

uint64_t TimerWheel::next_activation_tick() const {
  uint64_t best = UINT64_MAX;
  for (uint32_t level = 0; level < levels_; ++level) {
    uint32_t shift = level * kSlotBits;
    uint32_t digit = static_cast<uint32_t>(cur_tick_ >> shift) & (kSlotsPerLevel - 1);
    // The current digit's slot has had its turn unless the lower digits are all zero (its turn
    // is this very tick). Level 0 has no lower digits.
    uint32_t from = (cur_tick_ & low_mask(shift)) == 0 ? digit : digit + 1;
    HERALD_DCHECK(first_occupied(level, 0) >= from, "timer filed behind its level's turn");
    uint32_t slot = first_occupied(level, from);
    if (slot == kSlotsPerLevel) continue;
    uint64_t tick = (cur_tick_ & ~low_mask(shift + kSlotBits)) | (uint64_t{slot} << shift);
    best = std::min(best, tick);
  }
  if (!list_empty(overflow_head_)) {
    uint64_t revolution_start = overflow_min_tick_ & ~low_mask(kSlotBits * levels_);
    best = std::min(best, std::max(revolution_start, cur_tick_));
  }
  return best;
}

void TimerWheel::cascade(uint64_t tick) {
  // Re-filing is relative to cur_tick_ == tick; a timer re-filed at level k lands in a slot
  // whose digit differs from tick's, so never in a slot whose turn is now: the order in which
  // the levels are handled does not matter.
  if (!list_empty(overflow_head_) &&
      tick >= (overflow_min_tick_ & ~low_mask(kSlotBits * levels_))) {
    splice(overflow_head_, cascade_head_);
    drain_cascade_list();
  }
  for (uint32_t level = levels_ - 1; level >= 1; --level) {
    uint32_t shift = level * kSlotBits;
    if ((tick & low_mask(shift)) != 0) continue;  // not this level's turn; a lower one's may be
    uint32_t slot = static_cast<uint32_t>(tick >> shift) & (kSlotsPerLevel - 1);
    uint32_t head = slot_head(level, slot);
    if (list_empty(head)) continue;
    splice(head, cascade_head_);
    drain_cascade_list();
  }
}

void TimerWheel::drain_cascade_list() {
  while (!list_empty(cascade_head_)) {
    uint32_t id = nodes_[cascade_head_].next;
    unlink(id);
    place(id);
  }
}

uint64_t TimerWheel::fire_list() {
  uint64_t fired = 0;
  while (!list_empty(firing_head_)) {
    uint32_t id = nodes_[firing_head_].next;
    unlink(id);
    Node& node = nodes_[id];
    node.prev = kStateIdle;
    --armed_count_;
    ++fired;
    // The callback may re-arm, cancel or release anything, this timer included, and may
    // unlink other timers from the firing list: nothing is cached across the call.
    node.fn(*this, id, node.arg);
  }
  return fired;
}

uint64_t TimerWheel::advance(uint64_t now_ns) {
  HERALD_CHECK(!in_advance_, "TimerWheel::advance() called from a timer callback");
  now_ns = std::min(now_ns, kMaxNowNs);
  if (now_ns > now_ns_) now_ns_ = now_ns;
  uint64_t target = now_ns_ / tick_ns_;
  // The common case on a busy-polling worker: still inside the current tick, nothing overdue.
  if (target < cur_tick_ && list_empty(overdue_head_)) return 0;

  in_advance_ = true;
  uint64_t fired = 0;
  if (!list_empty(overdue_head_)) {
    // Spliced away first so that timers made overdue by callbacks wait for the next call.
    splice(overdue_head_, firing_head_);
    fired += fire_list();
  }
  for (;;) {
    uint64_t tick = next_activation_tick();
    if (tick > target) break;
    cur_tick_ = tick;
    cascade(tick);
    uint32_t head = slot_head(0, static_cast<uint32_t>(tick) & (kSlotsPerLevel - 1));
    // Timers armed by the callbacks below have deadlines > now_ns_, so expiry ticks > target:
    // they cannot fire in this call.
    cur_tick_ = tick + 1;
    if (!list_empty(head)) {
      splice(head, firing_head_);
      fired += fire_list();
    }
  }
  cur_tick_ = std::max(cur_tick_, target + 1);
  in_advance_ = false;
  return fired;
}

uint64_t TimerWheel::next_wakeup_ns() const {
  if (!list_empty(overdue_head_)) return now_ns_;
  uint64_t tick = next_activation_tick();
  return tick == UINT64_MAX ? UINT64_MAX : sat_mul(tick, tick_ns_);
}

}  // namespace herald::timer

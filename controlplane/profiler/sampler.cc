// The profiler's sampler (sampler.h).
#include "controlplane/profiler/sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace herald::profiler {
namespace {

uint64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Sampler::Sampler(SamplerOptions options, clock::Clock clock)
    : options_(std::move(options)),
      clock_(clock),
      perf_(std::make_unique<PerfCounters>(options_.perf_cpus)) {
  options_.ring_samples = std::max<uint32_t>(options_.ring_samples, 2);
  ring_.resize(options_.ring_samples);
  // The hardware series are in the directory from the start, so an unavailable counter shows
  // as a named series without values rather than not at all.
  for (const std::string& name : perf_->names()) {
    if (series_.size() >= options_.max_series) break;
    index_.emplace(name, series_.size());
    series_.push_back(SeriesInfo{name, "events", SeriesKind::kCounter});
  }
  // The derived figures are listed from the start too: without a dataplane (or perf) they are
  // named series without values.
  DerivedSlots& d = derived_;
  d.out_cycles_per_message =
      series_index("derived.cycles_per_message", "cycles", SeriesKind::kGauge);
  d.out_cpu_ns_per_message = series_index("derived.cpu_ns_per_message", "ns", SeriesKind::kGauge);
  d.out_dpdk_useful = series_index("derived.dpdk.useful_polls", "per_s", SeriesKind::kGauge);
  d.out_dpdk_empty = series_index("derived.dpdk.empty_polls", "per_s", SeriesKind::kGauge);
  d.out_dpdk_empty_permille =
      series_index("derived.dpdk.empty_poll_permille", "permille", SeriesKind::kGauge);
  d.out_useful_turns = series_index("derived.worker.useful_turns", "per_s", SeriesKind::kGauge);
  d.out_empty_turns = series_index("derived.worker.empty_turns", "per_s", SeriesKind::kGauge);
  d.out_empty_turns_permille =
      series_index("derived.worker.empty_turn_permille", "permille", SeriesKind::kGauge);
  d.out_commit_p50 = series_index("derived.store.commit_ns.p50", "ns", SeriesKind::kGauge);
  d.out_commit_p99 = series_index("derived.store.commit_ns.p99", "ns", SeriesKind::kGauge);
  d.out_commit_p999 = series_index("derived.store.commit_ns.p999", "ns", SeriesKind::kGauge);
  d.cycles.assign(options_.perf_cpus.size(), kNoSeries);
  for (const int cpu : options_.perf_cpus) {
    d.cycles_names.push_back(absl::StrCat("hw.cpu", cpu, ".cycles"));
    cpu_cycles_per_message_.push_back(series_index(
        absl::StrCat("derived.cpu", cpu, ".cycles_per_message"), "cycles", SeriesKind::kGauge));
  }
  // Only these few counters are read per block (one load each per worker), not the whole
  // snapshot per block: the reader resolves the names once per layout.
  for (const char* name : kPerWorkerCounters) snapshot_.per_thread_names.emplace_back(name);
  d.dp_cpu_user_name = absl::StrCat("proc.", options_.dataplane_label, ".cpu_user");
  d.dp_cpu_system_name = absl::StrCat("proc.", options_.dataplane_label, ".cpu_system");
  const long tick = ::sysconf(_SC_CLK_TCK);
  if (tick > 0) ns_per_jiffy_ = 1'000'000'000 / tick;
}

Sampler::~Sampler() {
  for (auto& entry : open_files_) {
    if (entry.second >= 0) ::close(entry.second);
  }
}

void Sampler::set_counters_source(std::function<absl::Status(counters::Snapshot*)> read) {
  read_counters_ = std::move(read);
}

void Sampler::set_processes(std::function<std::vector<ProcessRef>()> processes) {
  processes_ = std::move(processes);
}

bool Sampler::read_proc(std::string_view relative, std::string_view* text) {
  const std::string key(relative);
  auto it = open_files_.find(key);
  if (it == open_files_.end()) {
    const std::string path = absl::StrCat(options_.proc_root, "/", key);
    it = open_files_.emplace(key, ::open(path.c_str(), O_RDONLY | O_CLOEXEC)).first;
  }
  if (it->second < 0) {
    // Retried next time: a process's files appear when it starts.
    open_files_.erase(it);
    return false;
  }
  // One buffer for every file, allocated once: no zero-filling or allocation per read.
  if (!read_buffer_) read_buffer_ = std::make_unique<char[]>(kMaxProcFileBytes);
  // One pread of the whole buffer: procfs's seq files fill it to EOF in one call, and a second
  // pread at a non-zero offset would make the kernel generate the whole text again to find it.
  ssize_t n = 0;
  do {
    n = ::pread(it->second, read_buffer_.get(), kMaxProcFileBytes, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    // The process went away (ESRCH): reopen next time.
    ::close(it->second);
    open_files_.erase(it);
    return false;
  }
  const size_t got = static_cast<size_t>(n);
  *text = std::string_view(read_buffer_.get(), got);
  return true;
}

void Sampler::read_os(bool slow, std::vector<Reading>* out) {
  struct Source {
    const char* file;
    ParseResult (*parse)(std::string_view, std::vector<Reading>*);
    bool slow;
  };
  static constexpr Source kSources[] = {
      {"stat", parse_proc_stat, false},
      {"meminfo", parse_meminfo, true},
      {"net/dev", parse_net_dev, false},
      {"diskstats", parse_diskstats, true},
  };
  for (const Source& s : kSources) {
    if (s.slow && !slow) continue;
    if (!read_proc(s.file, &text_)) {
      ++stats_.source_errors;
      continue;
    }
    stats_.malformed_lines += s.parse(text_, out).malformed_lines;
  }
  if (!slow) return;
  if (read_proc("net/sockstat", &text_)) {
    stats_.malformed_lines += parse_sockstat(text_, "os", out).malformed_lines;
  } else {
    ++stats_.source_errors;
  }
}

void Sampler::read_processes(bool slow, std::vector<Reading>* out) {
  // Both files at the slow period: PID/stat's CPU times are in jiffies (10 ms), so a 10 ms
  // sample of them is 0 or 1 tick of noise, and generating it (do_task_stat walks the thread
  // group) was a quarter of a 10 ms sample's cost.
  if (!processes_ || !slow) return;
  std::vector<std::string> live;
  std::vector<int> pids;
  for (const ProcessRef& p : processes_()) {
    if (p.pid <= 0) continue;
    pids.push_back(p.pid);
    live.push_back(absl::StrCat(p.pid, "/"));
    const std::string label = sanitize_component(p.label);
    if (read_proc(absl::StrCat(p.pid, "/stat"), &text_)) {
      stats_.malformed_lines += parse_pid_stat(text_, label, out).malformed_lines;
    } else {
      ++stats_.source_errors;
    }
    if (read_proc(absl::StrCat(p.pid, "/status"), &text_)) {
      stats_.malformed_lines += parse_pid_status(text_, label, out).malformed_lines;
    } else {
      ++stats_.source_errors;
    }
  }
  // Files of processes no longer listed (a restarted dataplane has a new pid) are closed; the
  // scan runs only when the list changed.
  if (pids == last_pids_) return;
  last_pids_ = std::move(pids);
  for (auto it = open_files_.begin(); it != open_files_.end();) {
    const std::string& key = it->first;
    const bool pid_file = !key.empty() && key[0] >= '0' && key[0] <= '9';
    bool keep = !pid_file;
    for (const std::string& prefix : live)
      keep = keep || key.compare(0, prefix.size(), prefix) == 0;
    if (keep) {
      ++it;
    } else {
      if (it->second >= 0) ::close(it->second);
      open_files_.erase(it++);
    }
  }
}

size_t Sampler::series_index(std::string_view name, std::string_view unit, SeriesKind kind) {
  auto it = index_.find(std::string(name));
  if (it != index_.end()) return it->second;
  if (series_.size() >= options_.max_series) {
    ++stats_.series_dropped;
    return kNoSeries;
  }
  index_.emplace(std::string(name), series_.size());
  series_.push_back(SeriesInfo{std::string(name), std::string(unit), kind});
  return series_.size() - 1;
}

void Sampler::read_counters() {
  direct_.clear();
  if (!read_counters_) return;
  if (absl::Status s = read_counters_(&snapshot_); !s.ok()) {
    ++stats_.counters_errors;
    return;
  }
  // The metric -> series mapping is resolved once per counters-segment layout (epoch), so a
  // steady sample builds no names and hashes nothing: most of a sample's cost otherwise.
  if (counter_slots_epoch_ != snapshot_.epoch ||
      counter_slots_.size() != snapshot_.metrics.size()) {
    counter_slots_.assign(snapshot_.metrics.size(), CounterSlots{});
    counter_slots_epoch_ = snapshot_.epoch;
    for (size_t m = 0; m < snapshot_.metrics.size(); ++m) {
      const counters::Metric& metric = snapshot_.metrics[m];
      const std::string name = absl::StrCat("ctr.", metric.name);
      CounterSlots& cs = counter_slots_[m];
      switch (metric.kind) {
        case counters::Kind::kCounter:
          cs.value = series_index(name, "count", SeriesKind::kCounter);
          break;
        case counters::Kind::kGauge:
          cs.value = series_index(name, "value", SeriesKind::kGauge);
          break;
        case counters::Kind::kHistogram:
          cs.value = series_index(name + ".count", "count", SeriesKind::kCounter);
          cs.sum = series_index(name + ".sum", "value", SeriesKind::kCounter);
          cs.max = series_index(name + ".max", "value", SeriesKind::kGauge);
          cs.p50 = series_index(name + ".p50", "value", SeriesKind::kGauge);
          cs.p99 = series_index(name + ".p99", "value", SeriesKind::kGauge);
          cs.p999 = series_index(name + ".p999", "value", SeriesKind::kGauge);
          cs.store_commit = metric.name == kStoreCommitHistogram;
          break;
      }
    }
  }
  auto put = [this](size_t index, int64_t value) {
    if (index != kNoSeries) direct_.push_back({index, value});
  };
  for (size_t m = 0; m < snapshot_.metrics.size(); ++m) {
    const counters::Metric& metric = snapshot_.metrics[m];
    const CounterSlots& cs = counter_slots_[m];
    switch (metric.kind) {
      case counters::Kind::kCounter: put(cs.value, static_cast<int64_t>(metric.counter)); break;
      case counters::Kind::kGauge: put(cs.value, metric.gauge); break;
      case counters::Kind::kHistogram: {
        const counters::HistogramData& h = metric.histogram;
        put(cs.value, static_cast<int64_t>(h.count()));
        put(cs.sum, static_cast<int64_t>(h.sum()));
        put(cs.max, static_cast<int64_t>(h.max()));
        // Percentiles of what was recorded since the previous sample (bucket deltas), not of
        // the histogram's whole life: a latency spike shows in the interval it happened.
        std::vector<uint64_t>& last = last_buckets_[metric.name];
        const auto buckets = h.buckets();
        if (last.size() == buckets.size()) {
          interval_.reset(h.spec());
          delta_.resize(buckets.size());
          for (size_t i = 0; i < buckets.size(); ++i) delta_[i] = buckets[i] - last[i];
          interval_.add(0, h.max(), delta_);
          if (interval_.count() > 0) {
            put(cs.p50, static_cast<int64_t>(interval_.percentile(0.5)));
            put(cs.p99, static_cast<int64_t>(interval_.percentile(0.99)));
            put(cs.p999, static_cast<int64_t>(interval_.percentile(0.999)));
            if (cs.store_commit) {
              put(derived_.out_commit_p50, static_cast<int64_t>(interval_.percentile(0.5)));
              put(derived_.out_commit_p99, static_cast<int64_t>(interval_.percentile(0.99)));
              put(derived_.out_commit_p999, static_cast<int64_t>(interval_.percentile(0.999)));
            }
          }
        }
        last.assign(buckets.begin(), buckets.end());
        break;
      }
    }
  }
  read_worker_counters();
}

void Sampler::read_worker_counters() {
  enum : size_t { kMessages, kPolls, kEmptyPolls, kTurns, kEmptyTurns };
  auto present = [this](size_t i) {
    return i < snapshot_.per_thread_present.size() && snapshot_.per_thread_present[i];
  };
  bool any = false;
  for (size_t i = 0; i < kPerWorkerCounterCount; ++i) any = any || present(i);
  if (!any) return;  // no dataplane counters registered: no worker series
  for (uint32_t block = options_.first_worker_block; block < snapshot_.threads; ++block) {
    const size_t w = block - options_.first_worker_block;
    if (w >= workers_.size()) {
      // A worker block seen for the first time: its series, once (the directory only grows).
      WorkerSlots ws;
      for (size_t i = 0; i < kPerWorkerCounterCount; ++i) {
        ws.inputs[i] = present(i)
                           ? series_index(absl::StrCat("ctr.worker", w, ".", kPerWorkerCounters[i]),
                                          "count", SeriesKind::kCounter)
                           : kNoSeries;
      }
      const std::string prefix = absl::StrCat("derived.worker", w, ".");
      auto out = [&](bool when, const char* name, const char* unit) {
        return when ? series_index(prefix + name, unit, SeriesKind::kGauge) : kNoSeries;
      };
      ws.out_messages = out(present(kMessages), "messages_per_s", "per_s");
      const bool turns = present(kTurns) && present(kEmptyTurns);
      ws.out_useful_turns = out(turns, "useful_turns", "per_s");
      ws.out_empty_turns = out(turns, "empty_turns", "per_s");
      ws.out_empty_turns_permille = out(turns, "empty_turn_permille", "permille");
      const bool polls = present(kPolls) && present(kEmptyPolls);
      ws.out_useful_polls = out(polls, "useful_polls", "per_s");
      ws.out_empty_polls = out(polls, "empty_polls", "per_s");
      ws.out_empty_poll_permille = out(polls, "empty_poll_permille", "permille");
      workers_.push_back(ws);
    }
    const WorkerSlots& ws = workers_[w];
    for (size_t i = 0; i < kPerWorkerCounterCount; ++i) {
      const auto v = snapshot_.thread_value(block, i);
      if (v && ws.inputs[i] != kNoSeries) {
        direct_.push_back({ws.inputs[i], static_cast<int64_t>(*v)});
      }
    }
  }
  // The dataplane pins worker N to dataplane.cores[N] only when there is one core per worker
  // (dataplane.cc); otherwise no core is one worker's, and per-core figures stay missing.
  if (workers_.size() == options_.perf_cpus.size()) {
    for (size_t w = 0; w < workers_.size(); ++w) {
      if (workers_[w].out_cycles_per_message != kNoSeries) continue;
      if (const auto i = index_of(derived_.cycles_names[w])) workers_[w].cycles = *i;
      workers_[w].out_cycles_per_message = cpu_cycles_per_message_[w];
    }
  }
}

void Sampler::sample() {
  const uint64_t cpu_start_ns = thread_cpu_ns();
  readings_.clear();
  // The slow files are due a little early (15/16 of their period) so that a 10 ms tick landing
  // just short of 100 ms does not push their read to the next tick.
  const uint64_t start_ns = clock_.now_ns();
  const bool slow = !slow_read_once_ || start_ns - last_slow_ns_ >=
                                            options_.slow_period_ns - options_.slow_period_ns / 16;
  if (slow) {
    slow_read_once_ = true;
    last_slow_ns_ = start_ns;
    ++stats_.slow_reads;
  }
  if (options_.read_os) {
    read_os(slow, &readings_);
    read_processes(slow, &readings_);
  }
  perf_->read(&readings_);
  read_counters();
  const uint64_t now_ns = clock_.now_ns();

  std::vector<ReadingSlot>& cache = reading_slots_[slow ? 1 : 0];
  if (cache.size() < readings_.size()) cache.resize(readings_.size());
  for (size_t k = 0; k < readings_.size(); ++k) {
    const Reading& r = readings_[k];
    ReadingSlot& slot = cache[k];
    // A series index never changes once given, so a name match is enough; a miss (a new
    // interface, a process that came or went) hashes and refreshes the slot.
    if (slot.index == kNoSeries || slot.name != r.name) {
      slot.index = series_index(r.name, r.unit, r.kind);
      slot.name = r.name;
    }
    direct_.push_back({slot.index, r.value});
  }
  RingSlot& slot = ring_[ring_head_];
  slot.mono_ns = now_ns;
  slot.values.assign(series_.size(), kMissing);
  for (const auto& [index, value] : direct_) {
    if (index != kNoSeries) slot.values[index] = value;
  }
  derive(slot);
  ring_head_ = (ring_head_ + 1) % ring_.size();
  ring_count_ = std::min(ring_count_ + 1, ring_.size());
  ++stats_.samples;
  stats_.last_sample_cpu_ns = thread_cpu_ns() - cpu_start_ns;
  stats_.total_sample_cpu_ns += stats_.last_sample_cpu_ns;
}

size_t Sampler::cached_index(size_t* cache, std::string_view name) const {
  if (*cache == kNoSeries) {
    if (const auto i = index_of(name)) *cache = *i;
  }
  return *cache;
}

void Sampler::derive(RingSlot& slot) {
  const RingSlot* previous = nullptr;
  size_t window_age = 0;
  for (; window_age < ring_count_; ++window_age) {
    const RingSlot* s = slot_back(window_age);
    if (s->mono_ns + options_.derive_window_ns <= slot.mono_ns) {
      previous = s;
      break;
    }
  }
  if (previous == nullptr || previous->mono_ns >= slot.mono_ns) return;
  const double seconds = static_cast<double>(slot.mono_ns - previous->mono_ns) / 1e9;
  auto per_second = [seconds](int64_t n) {
    return static_cast<int64_t>(static_cast<double>(n) / seconds + 0.5);
  };
  auto has = [](const RingSlot* s, size_t i) {
    return i != kNoSeries && i < s->values.size() && s->values[i] != kMissing;
  };
  // The delta of series `i` from `base` to this sample; nullopt when either lacks it.
  auto delta_from = [&](const RingSlot* base, size_t i) -> std::optional<int64_t> {
    if (!has(base, i) || slot.values[i] == kMissing) return std::nullopt;
    return static_cast<int64_t>(static_cast<uint64_t>(slot.values[i]) -
                                static_cast<uint64_t>(base->values[i]));
  };
  auto delta = [&](size_t i) { return delta_from(previous, i); };
  auto set = [&](size_t out, int64_t value) {
    if (out != kNoSeries) slot.values[out] = value;
  };
  auto permille = [](int64_t part, int64_t whole) { return whole > 0 ? part * 1000 / whole : 0; };
  DerivedSlots& d = derived_;
  const auto messages = delta(cached_index(&d.messages, kDerivedMessagesCounter));
  if (messages && *messages > 0) {
    // Cycles of every dataplane core over the messages the router took in the interval: only
    // when every core's counter read in both samples (a partial sum would be too low).
    int64_t cycles = 0;
    bool all = !d.cycles.empty();
    for (size_t c = 0; all && c < d.cycles.size(); ++c) {
      const auto v = delta(cached_index(&d.cycles[c], d.cycles_names[c]));
      all = v.has_value();
      if (v) cycles += *v;
    }
    if (all) set(d.out_cycles_per_message, cycles / *messages);
  }
  // The dataplane's CPU time (PID/stat) is read every slow period: the figure is computed in the
  // samples that have it, from the newest sample at least the window older that has it too,
  // with the messages over that same span.
  const size_t user_i = cached_index(&d.dp_cpu_user, d.dp_cpu_user_name);
  const size_t system_i = cached_index(&d.dp_cpu_system, d.dp_cpu_system_name);
  if (has(&slot, user_i) && has(&slot, system_i)) {
    const RingSlot* base = nullptr;
    for (size_t age = window_age; age < ring_count_ && base == nullptr; ++age) {
      const RingSlot* s = slot_back(age);
      if (has(s, user_i) && has(s, system_i)) base = s;
    }
    const auto span_messages = base == nullptr ? std::nullopt : delta_from(base, d.messages);
    if (span_messages && *span_messages > 0) {
      const int64_t jiffies = *delta_from(base, user_i) + *delta_from(base, system_i);
      set(d.out_cpu_ns_per_message, jiffies * ns_per_jiffy_ / *span_messages);
    }
  }
  const auto polls = delta(cached_index(&d.dpdk_polls, kDerivedDpdkPolls));
  const auto empty = delta(cached_index(&d.dpdk_empty, kDerivedDpdkEmptyPolls));
  if (polls && empty && *empty <= *polls) {
    set(d.out_dpdk_useful, per_second(*polls - *empty));
    set(d.out_dpdk_empty, per_second(*empty));
    set(d.out_dpdk_empty_permille, permille(*empty, *polls));
  }
  const auto turns = delta(cached_index(&d.turns, kDerivedWorkerTurns));
  const auto empty_turns = delta(cached_index(&d.empty_turns, kDerivedWorkerEmptyTurns));
  if (turns && empty_turns && *empty_turns <= *turns) {
    set(d.out_useful_turns, per_second(*turns - *empty_turns));
    set(d.out_empty_turns, per_second(*empty_turns));
    set(d.out_empty_turns_permille, permille(*empty_turns, *turns));
  }
  derive_workers(slot, previous, seconds);
}

void Sampler::derive_workers(RingSlot& slot, const RingSlot* previous, double seconds) {
  enum : size_t { kMessages, kPolls, kEmptyPolls, kTurns, kEmptyTurns };
  auto delta = [&](size_t i) -> std::optional<int64_t> {
    if (i == kNoSeries || i >= previous->values.size() || previous->values[i] == kMissing ||
        slot.values[i] == kMissing) {
      return std::nullopt;
    }
    return static_cast<int64_t>(static_cast<uint64_t>(slot.values[i]) -
                                static_cast<uint64_t>(previous->values[i]));
  };
  auto set = [&](size_t out, int64_t value) {
    if (out != kNoSeries) slot.values[out] = value;
  };
  auto per_second = [seconds](int64_t n) {
    return static_cast<int64_t>(static_cast<double>(n) / seconds + 0.5);
  };
  auto permille = [](int64_t part, int64_t whole) { return whole > 0 ? part * 1000 / whole : 0; };
  // The same window and rules as the whole-dataplane figures, from each worker's own block.
  for (const WorkerSlots& ws : workers_) {
    const auto messages = delta(ws.inputs[kMessages]);
    // A restarted dataplane republishes from 0 into the same block: no figure across that.
    if (messages && *messages >= 0) set(ws.out_messages, per_second(*messages));
    if (messages && *messages > 0) {
      if (const auto cycles = delta(ws.cycles)) {
        set(ws.out_cycles_per_message, *cycles / *messages);
      }
    }
    const auto turns = delta(ws.inputs[kTurns]);
    const auto empty_turns = delta(ws.inputs[kEmptyTurns]);
    if (turns && empty_turns && *empty_turns >= 0 && *empty_turns <= *turns) {
      set(ws.out_useful_turns, per_second(*turns - *empty_turns));
      set(ws.out_empty_turns, per_second(*empty_turns));
      set(ws.out_empty_turns_permille, permille(*empty_turns, *turns));
    }
    const auto polls = delta(ws.inputs[kPolls]);
    const auto empty_polls = delta(ws.inputs[kEmptyPolls]);
    if (polls && empty_polls && *empty_polls >= 0 && *empty_polls <= *polls) {
      set(ws.out_useful_polls, per_second(*polls - *empty_polls));
      set(ws.out_empty_polls, per_second(*empty_polls));
      set(ws.out_empty_poll_permille, permille(*empty_polls, *polls));
    }
  }
}

const Sampler::RingSlot* Sampler::slot_back(size_t age) const {
  if (age >= ring_count_) return nullptr;
  return &ring_[(ring_head_ + ring_.size() - 1 - age) % ring_.size()];
}

std::optional<size_t> Sampler::index_of(std::string_view name) const {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

std::optional<int64_t> Sampler::latest(std::string_view name) const {
  const auto i = index_of(name);
  const RingSlot* s = slot_back(0);
  if (!i || s == nullptr || *i >= s->values.size() || s->values[*i] == kMissing) {
    return std::nullopt;
  }
  return s->values[*i];
}

std::optional<double> Sampler::rate(std::string_view name) const {
  const auto i = index_of(name);
  if (!i) return std::nullopt;
  // The newest two samples that have the series: a slow /proc series is present every
  // slow_period_ns only, and its rate divides by the time between its own readings.
  const RingSlot* now = nullptr;
  const RingSlot* before = nullptr;
  for (size_t age = 0; age < ring_count_ && before == nullptr; ++age) {
    const RingSlot* s = slot_back(age);
    if (*i >= s->values.size() || s->values[*i] == kMissing) continue;
    (now == nullptr ? now : before) = s;
  }
  if (now == nullptr || before == nullptr || now->mono_ns <= before->mono_ns) return std::nullopt;
  const double delta = static_cast<double>(now->values[*i] - before->values[*i]);
  return delta * 1e9 / static_cast<double>(now->mono_ns - before->mono_ns);
}

Capture Sampler::capture_since(uint64_t since_ns, const CaptureMeta& meta) const {
  Capture c;
  c.meta = meta;
  c.series = series_;
  for (size_t age = ring_count_; age-- > 0;) {
    const RingSlot* s = slot_back(age);
    if (s->mono_ns < since_ns) continue;
    Sample out;
    out.mono_ns = s->mono_ns;
    out.values.resize(series_.size());
    for (size_t i = 0; i < s->values.size(); ++i) {
      if (s->values[i] != kMissing) out.values[i] = s->values[i];
    }
    c.samples.push_back(std::move(out));
  }
  return c;
}

}  // namespace herald::profiler

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

void Sampler::read_os(std::vector<Reading>* out) {
  struct Source {
    const char* file;
    ParseResult (*parse)(std::string_view, std::vector<Reading>*);
  };
  static constexpr Source kSources[] = {
      {"stat", parse_proc_stat},
      {"meminfo", parse_meminfo},
      {"net/dev", parse_net_dev},
      {"diskstats", parse_diskstats},
  };
  for (const Source& s : kSources) {
    if (!read_proc(s.file, &text_)) {
      ++stats_.source_errors;
      continue;
    }
    stats_.malformed_lines += s.parse(text_, out).malformed_lines;
  }
  if (read_proc("net/sockstat", &text_)) {
    stats_.malformed_lines += parse_sockstat(text_, "os", out).malformed_lines;
  } else {
    ++stats_.source_errors;
  }
}

void Sampler::read_processes(std::vector<Reading>* out) {
  if (!processes_) return;
  std::vector<std::string> live;
  for (const ProcessRef& p : processes_()) {
    if (p.pid <= 0) continue;
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
  // Files of processes no longer listed (a restarted dataplane has a new pid) are closed.
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
          }
        }
        last.assign(buckets.begin(), buckets.end());
        break;
      }
    }
  }
}

void Sampler::sample() {
  const uint64_t cpu_start_ns = thread_cpu_ns();
  readings_.clear();
  if (options_.read_os) {
    read_os(&readings_);
    read_processes(&readings_);
  }
  perf_->read(&readings_);
  read_counters();
  const uint64_t now_ns = clock_.now_ns();

  for (Reading& r : readings_) {
    direct_.push_back({series_index(r.name, r.unit, r.kind), r.value});
  }
  RingSlot& slot = ring_[ring_head_];
  slot.mono_ns = now_ns;
  slot.values.assign(series_.size(), kMissing);
  for (const auto& [index, value] : direct_) {
    if (index != kNoSeries) slot.values[index] = value;
  }
  ring_head_ = (ring_head_ + 1) % ring_.size();
  ring_count_ = std::min(ring_count_ + 1, ring_.size());
  ++stats_.samples;
  stats_.last_sample_cpu_ns = thread_cpu_ns() - cpu_start_ns;
  stats_.total_sample_cpu_ns += stats_.last_sample_cpu_ns;
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
  const RingSlot* now = slot_back(0);
  const RingSlot* before = slot_back(1);
  if (!i || now == nullptr || before == nullptr || *i >= before->values.size() ||
      now->values[*i] == kMissing || before->values[*i] == kMissing ||
      now->mono_ns <= before->mono_ns) {
    return std::nullopt;
  }
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

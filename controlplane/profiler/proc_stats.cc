// /proc text parsers (proc_stats.h).
#include "controlplane/profiler/proc_stats.h"

#include <algorithm>
#include <charconv>
#include <span>

#include "absl/strings/str_cat.h"

namespace herald::profiler {
namespace {

std::string_view next_line(std::string_view& text) {
  const size_t nl = text.find('\n');
  std::string_view line = text.substr(0, nl);
  text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  return line;
}

// Splits on spaces and tabs, up to out.size() tokens; returns how many were found.
size_t split(std::string_view line, std::span<std::string_view> out) {
  size_t n = 0;
  size_t i = 0;
  while (i < line.size() && n < out.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size()) break;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    out[n++] = line.substr(start, i - start);
  }
  return n;
}

bool to_int(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return false;
  *out = static_cast<int64_t>(v);  // /proc values are unsigned; wrap like the kernel's u64
  return true;
}

void add(std::vector<Reading>* out, std::string name, std::string_view unit, SeriesKind kind,
         int64_t value) {
  out->push_back(Reading{std::move(name), std::string(unit), kind, value});
}

}  // namespace

std::string sanitize_component(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return out;
}

ParseResult parse_proc_stat(std::string_view text, std::vector<Reading>* out) {
  ParseResult r;
  std::string_view tok[12];
  while (!text.empty()) {
    std::string_view line = next_line(text);
    const size_t n = split(line, tok);
    if (n == 0) continue;
    if (tok[0].substr(0, 3) == "cpu") {
      // user nice system idle iowait irq softirq ...
      int64_t v[7];
      bool ok = n >= 8;
      for (size_t i = 0; ok && i < 7; ++i) ok = to_int(tok[1 + i], &v[i]);
      const std::string_view id = tok[0].substr(3);
      int64_t cpu_index = 0;
      if (!ok || (!id.empty() && !to_int(id, &cpu_index))) {
        ++r.malformed_lines;
        continue;
      }
      const std::string p = absl::StrCat("os.", std::string(tok[0]), ".");
      add(out, p + "user", "jiffies", SeriesKind::kCounter, v[0] + v[1]);
      add(out, p + "system", "jiffies", SeriesKind::kCounter, v[2]);
      add(out, p + "idle", "jiffies", SeriesKind::kCounter, v[3]);
      add(out, p + "iowait", "jiffies", SeriesKind::kCounter, v[4]);
      add(out, p + "irq", "jiffies", SeriesKind::kCounter, v[5]);
      add(out, p + "softirq", "jiffies", SeriesKind::kCounter, v[6]);
      continue;
    }
    struct Simple {
      std::string_view key;
      const char* name;
      const char* unit;
      SeriesKind kind;
    };
    static constexpr Simple kSimple[] = {
        {"ctxt", "os.context_switches", "switches", SeriesKind::kCounter},
        {"intr", "os.interrupts", "interrupts", SeriesKind::kCounter},
        {"processes", "os.forks", "processes", SeriesKind::kCounter},
        {"procs_running", "os.procs_running", "processes", SeriesKind::kGauge},
        {"procs_blocked", "os.procs_blocked", "processes", SeriesKind::kGauge},
    };
    for (const Simple& s : kSimple) {
      if (tok[0] != s.key) continue;
      int64_t v = 0;
      if (n < 2 || !to_int(tok[1], &v)) {
        ++r.malformed_lines;
      } else {
        add(out, s.name, s.unit, s.kind, v);
      }
    }
  }
  return r;
}

namespace {

// The "Key: value [kB]" files (meminfo, PID/status): for each line whose key is one of
// `fields`, `emit(field, value)` with kB values in bytes; a listed key with a bad value (or a
// kB field without its "kB") is a malformed line.
struct KeyedField {
  std::string_view key;
  const char* name;
  bool kib;  // "kB" suffix; e.g. the huge page counts and context switches have none
};

template <size_t N, typename Emit>
void parse_keyed_lines(std::string_view text, const KeyedField (&fields)[N], ParseResult* r,
                       Emit emit) {
  std::string_view tok[3];
  while (!text.empty()) {
    std::string_view line = next_line(text);
    const size_t n = split(line, tok);
    if (n == 0) continue;
    for (const KeyedField& f : fields) {
      if (tok[0] != f.key) continue;
      int64_t v = 0;
      if (n < 2 || !to_int(tok[1], &v) || (f.kib && (n < 3 || tok[2] != "kB"))) {
        ++r->malformed_lines;
        break;
      }
      emit(f, f.kib ? v * 1024 : v);
    }
  }
}

}  // namespace

ParseResult parse_meminfo(std::string_view text, std::vector<Reading>* out) {
  ParseResult r;
  static constexpr KeyedField kFields[] = {
      {"MemTotal:", "os.mem.total", true},
      {"MemFree:", "os.mem.free", true},
      {"MemAvailable:", "os.mem.available", true},
      {"Buffers:", "os.mem.buffers", true},
      {"Cached:", "os.mem.cached", true},
      {"Dirty:", "os.mem.dirty", true},
      {"HugePages_Total:", "os.hugepages.total", false},
      {"HugePages_Free:", "os.hugepages.free", false},
      {"Hugepagesize:", "os.hugepages.size", true},
  };
  parse_keyed_lines(text, kFields, &r, [out](const KeyedField& f, int64_t v) {
    add(out, f.name, f.kib ? "bytes" : "pages", SeriesKind::kGauge, v);
  });
  return r;
}

ParseResult parse_net_dev(std::string_view text, std::vector<Reading>* out) {
  ParseResult r;
  std::string_view tok[17];
  while (!text.empty()) {
    std::string_view line = next_line(text);
    const size_t colon = line.find(':');
    if (line.find('|') != std::string_view::npos) continue;  // the two header lines
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    if (colon == std::string_view::npos) {
      ++r.malformed_lines;
      continue;
    }
    std::string_view name = line.substr(0, colon);
    name.remove_prefix(std::min(name.find_first_not_of(' '), name.size()));
    const size_t n = split(line.substr(colon + 1), std::span(tok, 16));
    int64_t v[16];
    bool ok = n == 16 && !name.empty();
    for (size_t i = 0; ok && i < 16; ++i) ok = to_int(tok[i], &v[i]);
    if (!ok) {
      ++r.malformed_lines;
      continue;
    }
    const std::string p = absl::StrCat("os.net.", sanitize_component(name), ".");
    add(out, p + "rx_bytes", "bytes", SeriesKind::kCounter, v[0]);
    add(out, p + "rx_packets", "packets", SeriesKind::kCounter, v[1]);
    add(out, p + "rx_drops", "packets", SeriesKind::kCounter, v[3]);
    add(out, p + "tx_bytes", "bytes", SeriesKind::kCounter, v[8]);
    add(out, p + "tx_packets", "packets", SeriesKind::kCounter, v[9]);
    add(out, p + "tx_drops", "packets", SeriesKind::kCounter, v[11]);
  }
  return r;
}

ParseResult parse_diskstats(std::string_view text, std::vector<Reading>* out) {
  ParseResult r;
  std::string_view tok[20];
  while (!text.empty()) {
    std::string_view line = next_line(text);
    const size_t n = split(line, tok);
    if (n == 0) continue;
    // major minor name reads merged sectors ms writes merged sectors ms in_flight io_ms ...
    int64_t v[11];
    bool ok = n >= 14;
    for (size_t i = 0; ok && i < 11; ++i) ok = to_int(tok[3 + i], &v[i]);
    if (!ok) {
      ++r.malformed_lines;
      continue;
    }
    if (v[0] == 0 && v[4] == 0) continue;  // never did I/O: loop and ram devices
    const std::string p = absl::StrCat("os.disk.", sanitize_component(tok[2]), ".");
    add(out, p + "reads", "ios", SeriesKind::kCounter, v[0]);
    add(out, p + "read_bytes", "bytes", SeriesKind::kCounter, v[2] * 512);
    add(out, p + "writes", "ios", SeriesKind::kCounter, v[4]);
    add(out, p + "write_bytes", "bytes", SeriesKind::kCounter, v[6] * 512);
    add(out, p + "io_ms", "ms", SeriesKind::kCounter, v[9]);
  }
  return r;
}

ParseResult parse_sockstat(std::string_view text, std::string_view prefix,
                           std::vector<Reading>* out) {
  ParseResult r;
  std::string_view tok[16];
  while (!text.empty()) {
    std::string_view line = next_line(text);
    const size_t n = split(line, tok);
    if (n == 0) continue;
    const bool tcp = tok[0] == "TCP:" || tok[0] == "TCP6:";
    const bool sockets = tok[0] == "sockets:";
    if (!tcp && !sockets) continue;
    if (n % 2 != 1) {
      ++r.malformed_lines;
      continue;
    }
    for (size_t i = 1; i + 1 < n; i += 2) {
      int64_t v = 0;
      if (!to_int(tok[i + 1], &v)) {
        ++r.malformed_lines;
        break;
      }
      const std::string_view key = tok[i];
      if (sockets && key == "used") {
        add(out, absl::StrCat(std::string(prefix), ".sockets_used"), "sockets", SeriesKind::kGauge,
            v);
      } else if (tcp && (key == "inuse" || key == "orphan" || key == "tw" || key == "alloc")) {
        add(out, absl::StrCat(std::string(prefix), ".tcp.", std::string(key)), "sockets",
            SeriesKind::kGauge, v);
      }
    }
  }
  return r;
}

ParseResult parse_pid_stat(std::string_view text, std::string_view label,
                           std::vector<Reading>* out) {
  ParseResult r;
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos) {
    r.malformed_lines = 1;
    return r;
  }
  // After "pid (comm) ": state(3) ppid pgrp session tty tpgid flags minflt(10) cminflt
  // majflt(12) cmajflt utime(14) stime(15) cutime cstime priority nice num_threads(20).
  std::string_view tok[18];
  std::string_view rest = text.substr(close + 1);
  const size_t n = split(next_line(rest), tok);
  int64_t minflt = 0, majflt = 0, utime = 0, stime = 0, threads = 0;
  if (n < 18 || !to_int(tok[7], &minflt) || !to_int(tok[9], &majflt) || !to_int(tok[11], &utime) ||
      !to_int(tok[12], &stime) || !to_int(tok[17], &threads)) {
    r.malformed_lines = 1;
    return r;
  }
  const std::string p = absl::StrCat("proc.", std::string(label), ".");
  add(out, p + "cpu_user", "jiffies", SeriesKind::kCounter, utime);
  add(out, p + "cpu_system", "jiffies", SeriesKind::kCounter, stime);
  add(out, p + "minor_faults", "faults", SeriesKind::kCounter, minflt);
  add(out, p + "major_faults", "faults", SeriesKind::kCounter, majflt);
  add(out, p + "threads", "threads", SeriesKind::kGauge, threads);
  return r;
}

ParseResult parse_pid_status(std::string_view text, std::string_view label,
                             std::vector<Reading>* out) {
  ParseResult r;
  static constexpr KeyedField kFields[] = {
      {"VmRSS:", "rss", true},
      {"VmSize:", "vm_size", true},
      {"HugetlbPages:", "hugetlb", true},
      {"voluntary_ctxt_switches:", "ctx_switches_voluntary", false},
      {"nonvoluntary_ctxt_switches:", "ctx_switches_involuntary", false},
  };
  const std::string p = absl::StrCat("proc.", std::string(label), ".");
  parse_keyed_lines(text, kFields, &r, [out, &p](const KeyedField& f, int64_t v) {
    add(out, p + f.name, f.kib ? "bytes" : "switches",
        f.kib ? SeriesKind::kGauge : SeriesKind::kCounter, v);
  });
  return r;
}

}  // namespace herald::profiler

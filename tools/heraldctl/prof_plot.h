// heraldctl prof plot: a capture's series as time-series charts grouped by subsystem, as one
// standalone SVG or one self-contained HTML page (charts, report table, flame graph).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/profiler/capture.h"
#include "tools/heraldctl/prof.h"

namespace herald::tools {

struct PlotOptions {
  int width_px = 960;                     // clamped to [400, 4000]
  std::vector<std::string> series_globs;  // '*' and '?' on series names; empty: every series
  std::string source;                     // the capture's file name, shown in the header
  uint64_t rate_window_ns = kDefaultRateWindowNs;  // counter rates (SeriesPoints)
};

// The subsystem a series is charted under: "os.cpu", "os.kernel" (context switches,
// interrupts, forks, run queue), "os.mem" (with huge pages), "os.net", "os.disk", "os.tcp"
// (with sockets_used), "proc.<label>", "ctr.<first name component>" ("ctr" for undotted
// names), "hw", "derived", else the name's first component.
std::string plot_group(std::string_view series_name);

// Shell-style match: '*' any run of bytes (dots included), '?' one byte, everything else itself.
bool glob_match(std::string_view pattern, std::string_view text);

// Indices of the series matching any of `globs` (all of them for no globs), in capture order.
std::vector<size_t> select_series(const profiler::Capture& capture,
                                  const std::vector<std::string>& globs);

// The median distance, in samples, between the values `series` has (1 when fewer than two).
size_t sample_spacing(const profiler::Capture& capture, size_t series);

// One drawn point: seconds from the first sample, and the value (a counter's rate per second).
struct PlotPoint {
  double t_s = 0;
  double value = 0;
};
// Series `series` as polyline runs (points from SeriesPoints). A run ends where the series has
// no value for longer than its usual spacing (the median distance between its values: 1 sample
// for most, 10 for /proc files read every 100 ms in a 10 ms capture; 1.5 times that for those,
// as late ticks move their reads by a sample), so a gap is drawn as a
// gap, never as a line through 0, and a slow series is still a line. Within a run, points in
// the same of `columns` time columns are reduced to their minimum and maximum (in time order),
// so a spike stays visible and the output is bounded by the chart's width, not the samples.
std::vector<std::vector<PlotPoint>> plot_runs(const profiler::Capture& capture, size_t series,
                                              size_t columns, uint64_t rate_window_ns = 0);

// "1.5k", "20M", "250m", "0": 3 significant digits with an SI prefix (p..P).
std::string format_si(double v);

// The documents. Series with no value are listed as unavailable and constant series are
// collapsed into one note per group instead of drawing flat lines.
std::string render_plot_svg(const profiler::Capture& capture, const PlotOptions& options);
std::string render_plot_html(const profiler::Capture& capture, const PlotOptions& options);

}  // namespace herald::tools

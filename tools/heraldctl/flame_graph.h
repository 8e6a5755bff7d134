// Flame graphs for heraldctl prof: folded CPU stacks (profiler::FoldedStack) merged into a tree
// and drawn as a standalone SVG in Brendan Gregg's style, plus the folded text export and the
// top functions by self samples. Also the XML escaping every heraldctl SVG/HTML writer uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/profiler/capture.h"

namespace herald::tools {

// `text` made safe as XML/HTML character data or an attribute value: & < > " ' escaped, bytes
// that are not valid UTF-8 and control characters XML 1.0 forbids become U+FFFD. Names in a
// capture come from a file, so nothing is written into markup without this.
std::string xml_escape(std::string_view text);

// One drawn frame: a node of the merged call tree.
struct FlameFrame {
  std::string name;
  size_t depth = 0;      // 0: the synthetic root "all"
  uint64_t samples = 0;  // this frame and everything it called
  uint64_t self = 0;     // samples where it was the leaf
  double x = 0;          // start, as a share of all samples [0, 1)
  double width = 0;      // samples / total
};

struct FlameLayout {
  uint64_t total_samples = 0;
  std::vector<FlameFrame> frames;  // parents before children, siblings in name order
  size_t dropped_frames = 0;       // frames (and their callees) narrower than min_fraction
  size_t max_depth = 0;            // of the drawn frames
  size_t truncated_stacks = 0;     // stacks deeper than kMaxFlameDepth, cut there
};

// Deeper stacks are cut (and counted): bounds the tree walk whatever the input holds.
inline constexpr size_t kMaxFlameDepth = 512;

// Merges `stacks` into a call tree (siblings with the same name merged, in alphabetical order,
// as flamegraph.pl does, so the x order carries no time meaning) and lays it out. Frames with
// samples / total < min_fraction are dropped with everything above them. Empty frame names
// read as "[unknown]"; stacks with 0 samples are ignored.
FlameLayout layout_flame(const std::vector<profiler::FoldedStack>& stacks, double min_fraction);

struct FlameOptions {
  int width_px = 1200;
  double min_fraction = 0.001;  // ~0.1%: narrower frames are dropped and counted
  std::string title = "CPU flame graph";
  std::string subtitle;  // e.g. "node a, pid 42, 99 Hz"
};

// A standalone SVG document (xmlns set): one <g> per frame with a <title> "name (N samples,
// P%)", warm colours from a hash of the name (the same function has the same colour in every
// graph), labels where they fit. An empty profile gives a small SVG saying so.
std::string render_flame_svg(const std::vector<profiler::FoldedStack>& stacks,
                             const FlameOptions& options);

// "frame;frame;leaf count" lines, for flamegraph.pl, speedscope, inferno.
void write_folded(const std::vector<profiler::FoldedStack>& stacks, std::ostream& out);

// The leaf functions with the most samples (self time), summed over stacks, heaviest first
// (ties by name).
struct SelfSamples {
  std::string name;
  uint64_t samples = 0;
};
std::vector<SelfSamples> top_self(const std::vector<profiler::FoldedStack>& stacks, size_t n);

// Sum of all stacks' samples (saturating).
uint64_t flame_total(const std::vector<profiler::FoldedStack>& stacks);

}  // namespace herald::tools

// Flame graphs for heraldctl prof (flame_graph.h): the merged call tree, its layout, the SVG.
#include "tools/heraldctl/flame_graph.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <unordered_map>

namespace herald::tools {

using profiler::FoldedStack;

std::string xml_escape(std::string_view text) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        case '\t':
        case '\n':
        case '\r': out.push_back(static_cast<char>(c)); break;
        default:
          if (c < 0x20) {
            out += kReplacement;  // XML 1.0 has no way to write these, escaped or not
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // A multi-byte sequence: its length from the lead byte, then the ranges that exclude
    // overlong forms, surrogates and code points past U+10FFFF (RFC 3629).
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    bool valid = len != 0 && i + len <= n;
    for (size_t k = 1; valid && k < len; ++k) {
      const unsigned char b = p[i + k];
      valid = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    }
    // U+FFFE and U+FFFF are not XML characters either.
    if (valid && len == 3 && c == 0xEF && p[i + 1] == 0xBF && p[i + 2] >= 0xBE) valid = false;
    if (!valid) {
      out += kReplacement;
      ++i;
      continue;
    }
    out.append(text.substr(i, len));
    i += len;
  }
  return out;
}

namespace {

uint64_t add_saturating(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

struct Node {
  std::string name;
  uint64_t samples = 0;
  size_t descendants = 0;  // nodes below this one: what dropping it hides
  std::map<std::string, std::unique_ptr<Node>, std::less<>> children;  // name order
};

// Calls `fn(frame)` for each ';'-separated frame of `frames`, root first, at most `limit`;
// returns false when the stack had more.
template <typename Fn>
bool for_each_frame(std::string_view frames, size_t limit, Fn&& fn) {
  size_t count = 0;
  size_t start = 0;
  while (true) {
    const size_t end = frames.find(';', start);
    if (count == limit) return false;
    std::string_view f = frames.substr(start, end == std::string_view::npos ? end : end - start);
    fn(f.empty() ? std::string_view("[unknown]") : f);
    ++count;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

std::string percent(double share) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", share * 100);
  return buf;
}

// flamegraph.pl's "hot" palette, driven by a hash of the name instead of a random number, so a
// function keeps its colour across graphs and runs.
std::string warm_colour(std::string_view name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  const auto v = [&](int shift) { return static_cast<double>((h >> shift) & 0xff) / 255.0; };
  char buf[32];
  std::snprintf(buf, sizeof buf, "rgb(%d,%d,%d)", 205 + static_cast<int>(50 * v(0)),
                static_cast<int>(230 * v(8)), static_cast<int>(55 * v(16)));
  return buf;
}

// `name` cut to at most `max_chars` bytes (".." marks the cut), never inside a UTF-8 sequence.
std::string fit_label(std::string_view name, size_t max_chars) {
  if (name.size() <= max_chars) return std::string(name);
  if (max_chars < 3) return "";
  size_t cut = max_chars - 2;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
  return std::string(name.substr(0, cut)) + "..";
}

std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

uint64_t flame_total(const std::vector<FoldedStack>& stacks) {
  uint64_t total = 0;
  for (const FoldedStack& s : stacks) total = add_saturating(total, s.samples);
  return total;
}

FlameLayout layout_flame(const std::vector<FoldedStack>& stacks, double min_fraction) {
  FlameLayout layout;
  Node root;
  root.name = "all";
  std::vector<Node*> path;
  for (const FoldedStack& s : stacks) {
    if (s.samples == 0) continue;
    root.samples = add_saturating(root.samples, s.samples);
    path.assign(1, &root);
    const bool whole = for_each_frame(s.frames, kMaxFlameDepth, [&](std::string_view f) {
      Node* parent = path.back();
      auto it = parent->children.find(f);
      if (it == parent->children.end()) {
        auto node = std::make_unique<Node>();
        node->name = std::string(f);
        it = parent->children.emplace(node->name, std::move(node)).first;
        for (Node* ancestor : path) ++ancestor->descendants;
      }
      it->second->samples = add_saturating(it->second->samples, s.samples);
      path.push_back(it->second.get());
    });
    if (!whole) ++layout.truncated_stacks;
  }
  layout.total_samples = root.samples;
  if (root.samples == 0) return layout;
  const double total = static_cast<double>(root.samples);

  // Pre-order walk with an explicit stack: the depth is bounded, but hostile input should not
  // be able to choose how deep this recursion goes.
  struct Item {
    const Node* node;
    size_t depth;
    double x;
  };
  std::vector<Item> todo{{&root, 0, 0.0}};
  while (!todo.empty()) {
    const Item item = todo.back();
    todo.pop_back();
    const Node& n = *item.node;
    FlameFrame f;
    f.name = n.name;
    f.depth = item.depth;
    f.samples = n.samples;
    f.x = item.x;
    f.width = static_cast<double>(n.samples) / total;
    uint64_t below = 0;
    for (const auto& [name, child] : n.children) below = add_saturating(below, child->samples);
    f.self = n.samples > below ? n.samples - below : 0;
    layout.max_depth = std::max(layout.max_depth, item.depth);
    layout.frames.push_back(std::move(f));
    // Children start where the previous sibling ends; pushed in reverse so the first name is
    // laid out (and emitted) first.
    std::vector<Item> kids;
    double x = item.x;
    for (const auto& [name, child] : n.children) {
      const double w = static_cast<double>(child->samples) / total;
      if (w < min_fraction) {
        layout.dropped_frames += 1 + child->descendants;
      } else {
        kids.push_back({child.get(), item.depth + 1, x});
      }
      x += w;
    }
    todo.insert(todo.end(), kids.rbegin(), kids.rend());
  }
  return layout;
}

std::string render_flame_svg(const std::vector<FoldedStack>& stacks, const FlameOptions& o) {
  constexpr double kFrameHeight = 16, kTop = 44, kBottom = 28, kPad = 10;
  constexpr double kCharWidth = 6.6;  // 11 px sans-serif, an average glyph
  const FlameLayout layout = layout_flame(stacks, o.min_fraction);
  const double width = std::max(200, o.width_px);
  const double inner = width - 2 * kPad;
  const double height =
      kTop + kBottom +
      (layout.total_samples == 0 ? kFrameHeight
                                 : static_cast<double>(layout.max_depth + 1) * kFrameHeight);
  std::string svg;
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + px(width) +
         "\" height=\"" + px(height) + "\" viewBox=\"0 0 " + px(width) + " " + px(height) +
         "\" font-family=\"Verdana, sans-serif\" font-size=\"11\">\n";
  svg += "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#f8f8f0\"/>\n";
  svg += "<text x=\"" + px(width / 2) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"15\">" +
         xml_escape(o.title) + "</text>\n";
  if (!o.subtitle.empty()) {
    svg += "<text x=\"" + px(width / 2) + "\" y=\"34\" text-anchor=\"middle\" fill=\"#555\">" +
           xml_escape(o.subtitle) + "</text>\n";
  }
  if (layout.total_samples == 0) {
    svg += "<text x=\"" + px(width / 2) + "\" y=\"" + px(kTop + 12) +
           "\" text-anchor=\"middle\">no samples in this profile</text>\n</svg>\n";
    return svg;
  }
  const double base_y = kTop + static_cast<double>(layout.max_depth) * kFrameHeight;
  for (const FlameFrame& f : layout.frames) {
    const double x = kPad + f.x * inner;
    const double w = f.width * inner;
    const double y = base_y - static_cast<double>(f.depth) * kFrameHeight;
    svg += "<g><title>" + xml_escape(f.name) + " (" + std::to_string(f.samples) + " samples, " +
           percent(f.width) + ")</title><rect x=\"" + px(x) + "\" y=\"" + px(y) + "\" width=\"" +
           px(w) + "\" height=\"" + px(kFrameHeight - 1) + "\" rx=\"2\" fill=\"" +
           warm_colour(f.name) + "\"/>";
    const double room = (w - 6) / kCharWidth;
    if (room >= 3) {
      const std::string label = fit_label(f.name, static_cast<size_t>(room));
      if (!label.empty()) {
        svg += "<text x=\"" + px(x + 3) + "\" y=\"" + px(y + 11.5) + "\">" + xml_escape(label) +
               "</text>";
      }
    }
    svg += "</g>\n";
  }
  std::string footer = std::to_string(layout.total_samples) + " samples, " +
                       std::to_string(layout.frames.size()) + " frames drawn";
  if (layout.dropped_frames != 0) {
    footer += ", " + std::to_string(layout.dropped_frames) + " frames narrower than " +
              percent(o.min_fraction) + " not drawn";
  }
  if (layout.truncated_stacks != 0) {
    footer += ", " + std::to_string(layout.truncated_stacks) + " stacks cut at depth " +
              std::to_string(kMaxFlameDepth);
  }
  footer += "; x: share of samples (siblings in name order), y: call depth";
  svg += "<text x=\"" + px(kPad) + "\" y=\"" + px(height - 10) + "\" fill=\"#555\">" +
         xml_escape(footer) + "</text>\n</svg>\n";
  return svg;
}

void write_folded(const std::vector<FoldedStack>& stacks, std::ostream& out) {
  for (const FoldedStack& s : stacks) {
    if (s.samples == 0) continue;
    // A newline inside a frame would start a bogus line for the tools that read this.
    std::string frames = s.frames;
    std::replace(frames.begin(), frames.end(), '\n', ' ');
    std::replace(frames.begin(), frames.end(), '\r', ' ');
    out << frames << ' ' << s.samples << '\n';
  }
}

std::vector<SelfSamples> top_self(const std::vector<FoldedStack>& stacks, size_t n) {
  std::unordered_map<std::string, uint64_t> by_leaf;
  for (const FoldedStack& s : stacks) {
    if (s.samples == 0) continue;
    const size_t cut = s.frames.rfind(';');
    std::string leaf = cut == std::string::npos ? s.frames : s.frames.substr(cut + 1);
    if (leaf.empty()) leaf = "[unknown]";
    uint64_t& sum = by_leaf[leaf];
    sum = add_saturating(sum, s.samples);
  }
  std::vector<SelfSamples> out;
  out.reserve(by_leaf.size());
  for (auto& [name, samples] : by_leaf) out.push_back({name, samples});
  std::sort(out.begin(), out.end(), [](const SelfSamples& a, const SelfSamples& b) {
    return a.samples != b.samples ? a.samples > b.samples : a.name < b.name;
  });
  if (out.size() > n) out.resize(n);
  return out;
}

}  // namespace herald::tools

// results.svg: a hand-written SVG plot of a sweep (no dependencies). One panel per value of the
// `panel` axis (up to 4 per row), x axis log2 scale of the `x` axis values (ticks at each grid
// value), y axis the metric over [0, 1] (extended to the next integer if a value exceeds 1), one
// polyline with circle markers per `line` value, a shared legend on the right.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "train/sweep/sweep.h"
#include "train/sweep/sweep_internal.h"

namespace seqmix::sweep {

namespace {

constexpr double kLegendW = 220, kTitleH = 30;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

// The numeric x of a displayed x value (first component of zipped values), or nullopt.
std::optional<double> x_number(const std::string& shown) {
  const std::string first = shown.substr(0, shown.find(','));
  char* end = nullptr;
  const double v = std::strtod(first.c_str(), &end);
  if (end == first.c_str() || *end != '\0' || !(v > 0)) return std::nullopt;
  return v;
}

std::string num(double v) {
  return fmt::format("{:.2f}", v);
}

}  // namespace

double SvgGeometry::x_px(int panel, double x) const {
  const int col = panel % columns;
  const double w = kPanelW - kLeft - kRight;
  return col * kPanelW + kLeft + (std::log2(x) - x_lo) / (x_hi - x_lo) * w;
}

double SvgGeometry::y_px(int panel, double y) const {
  const int row = panel / columns;
  const double h = kPanelH - kTop - kBottom;
  return kTitleH + row * kPanelH + kTop + (1.0 - (y - y_lo) / (y_hi - y_lo)) * h;
}

std::string results_svg(const SweepSpec& spec, const std::vector<SweepCell>& cells,
                        const std::vector<CellResult>& results) {
  const detail::Table t = detail::build_table(spec, cells, results);
  // x positions: log2 of numeric x values, else evenly spaced categories (2^index).
  bool numeric = true;
  for (const auto& x : t.xs) numeric = numeric && x_number(x).has_value();
  std::vector<double> xv;
  for (size_t i = 0; i < t.xs.size(); ++i)
    xv.push_back(numeric ? *x_number(t.xs[i]) : std::exp2(double(i)));
  SvgGeometry g;
  const double lmin = std::log2(*std::min_element(xv.begin(), xv.end()));
  const double lmax = std::log2(*std::max_element(xv.begin(), xv.end()));
  const double pad = lmax > lmin ? 0.08 * (lmax - lmin) : 1.0;
  g.x_lo = lmin - pad;
  g.x_hi = lmax + pad;
  double vmax = 1;
  for (const auto& [k, e] : t.entries)
    if (e.value && std::isfinite(*e.value)) vmax = std::max(vmax, *e.value);
  g.y_lo = 0;
  g.y_hi = std::ceil(vmax);
  const int npanels = int(t.panels.size());
  g.columns = std::min(npanels, 4);
  const int rows = (npanels + g.columns - 1) / g.columns;
  const double width = g.columns * SvgGeometry::kPanelW + kLegendW;
  const double height = kTitleH + rows * SvgGeometry::kPanelH;

  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text class=\"title\" x=\"{2}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">"
      "{3}: best {4}</text>\n",
      num(width), num(height), num(width / 2), esc(spec.name), esc(spec.metric));
  const double w = SvgGeometry::kPanelW - SvgGeometry::kLeft - SvgGeometry::kRight;
  const double h = SvgGeometry::kPanelH - SvgGeometry::kTop - SvgGeometry::kBottom;
  for (int p = 0; p < npanels; ++p) {
    const double x0 = g.x_px(p, std::exp2(g.x_lo)), y0 = g.y_px(p, g.y_hi);
    s += fmt::format("<g class=\"panel\" id=\"panel-{}\">\n", p);
    const std::string title =
        spec.plot.panel.empty() ? spec.name : fmt::format("{} = {}", spec.plot.panel, t.panels[p]);
    s += fmt::format(
        "<text class=\"panel-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        num(x0 + w / 2), num(y0 - 12), esc(title));
    s += fmt::format(
        "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
        "stroke=\"black\"/>\n",
        num(x0), num(y0), num(w), num(h));
    // y ticks and grid lines every 0.2 (of the [0, 1] range; scaled when extended).
    const int ny = 5 * int(g.y_hi - g.y_lo);
    for (int i = 0; i <= ny; ++i) {
      const double yv = g.y_lo + (g.y_hi - g.y_lo) * i / ny, yp = g.y_px(p, yv);
      s += fmt::format(
          "<line class=\"ytick\" x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#ddd\"/>\n"
          "<text class=\"ytick-label\" x=\"{3}\" y=\"{4}\" text-anchor=\"end\">{5:.1f}</text>\n",
          num(x0), num(yp), num(x0 + w), num(x0 - 5), num(yp + 4), yv);
    }
    for (size_t i = 0; i < xv.size(); ++i) {
      const double xp = g.x_px(p, xv[i]), yb = g.y_px(p, g.y_lo);
      s += fmt::format(
          "<line class=\"xtick\" x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n"
          "<text class=\"xtick-label\" x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
          num(xp), num(yb), num(yb + 5), num(yb + 18), esc(t.xs[i]));
    }
    s +=
        fmt::format("<text class=\"xlabel\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>\n",
                    num(x0 + w / 2), num(g.y_px(p, g.y_lo) + 38), esc(spec.plot.x),
                    numeric ? " (log2 scale)" : "");
    const double ymid = (y0 + g.y_px(p, g.y_lo)) / 2;
    s += fmt::format(
        "<text class=\"ylabel\" x=\"{0}\" y=\"{1}\" text-anchor=\"middle\" "
        "transform=\"rotate(-90 {0} {1})\">{2}</text>\n",
        num(x0 - 40), num(ymid), esc(spec.metric));
    for (size_t l = 0; l < t.lines.size(); ++l) {
      const char* color = kColors[l % std::size(kColors)];
      std::string pts, marks;
      for (size_t x = 0; x < xv.size(); ++x) {
        const auto it = t.entries.find({size_t(p), l, x});
        if (it == t.entries.end() || !it->second.value) continue;
        const double xp = g.x_px(p, xv[x]), yp = g.y_px(p, *it->second.value);
        pts += fmt::format("{}{},{}", pts.empty() ? "" : " ", num(xp), num(yp));
        marks += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"/>\n", num(xp),
                             num(yp), color);
      }
      if (pts.empty()) continue;
      s += fmt::format(
          "<polyline class=\"series\" data-line=\"{}\" points=\"{}\" fill=\"none\" "
          "stroke=\"{}\" stroke-width=\"2\"/>\n{}",
          esc(t.lines[l]), pts, color, marks);
    }
    s += "</g>\n";
  }
  // Legend.
  const double lx = g.columns * SvgGeometry::kPanelW + 10;
  s += "<g class=\"legend\">\n";
  for (size_t l = 0; l < t.lines.size(); ++l) {
    const double ly = kTitleH + SvgGeometry::kTop + 18.0 * double(l);
    const char* color = kColors[l % std::size(kColors)];
    s += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\"/>"
        "<circle cx=\"{4}\" cy=\"{1}\" r=\"3.5\" fill=\"{3}\"/>"
        "<text class=\"legend-label\" x=\"{5}\" y=\"{6}\">{7}</text>\n",
        num(lx), num(ly), num(lx + 24), color, num(lx + 12), num(lx + 30), num(ly + 4),
        esc(t.lines[l].empty() ? spec.metric : t.lines[l]));
  }
  s += "</g>\n</svg>\n";
  return s;
}

}  // namespace seqmix::sweep

#include "sim/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/report/svg.h"

namespace hansa {
namespace {

constexpr double kWidth = 640, kHeight = 400;
constexpr double kLeft = 64, kRight = 170, kTop = 36, kBottom = 52;
const char* const kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string TickLabel(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", std::abs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over span.
double NiceStep(double span, int target) {
  const double raw = span / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

}  // namespace

std::string LinePlotSvg(const PlotSpec& spec) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  size_t points = 1;
  for (const PlotSeries& s : spec.series) {
    points = std::max(points, s.y.size());
    for (double v : s.y) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const double ystep = NiceStep(hi - lo, 5);
  lo = std::floor(lo / ystep) * ystep;
  hi = std::ceil(hi / ystep) * ystep;
  const double x_max = std::max<double>(2, static_cast<double>(points));
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - 1) / (x_max - 1) * pw; };
  auto py = [&](double y) { return kTop + (hi - y) / (hi - lo) * ph; };

  std::string svg = absl::StrCat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", kWidth, "\" height=\"", kHeight,
      "\" viewBox=\"0 0 ", kWidth, " ", kHeight,
      "\" font-family=\"sans-serif\" font-size=\"12\">\n",
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", "<text x=\"", Num(kLeft + pw / 2),
      "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">", HtmlEscape(spec.title), "</text>\n");
  // Grid and y ticks.
  for (double y = lo; y <= hi + ystep / 2; y += ystep) {
    absl::StrAppend(&svg, "<line x1=\"", Num(kLeft), "\" y1=\"", Num(py(y)), "\" x2=\"",
                    Num(kLeft + pw), "\" y2=\"", Num(py(y)), "\" stroke=\"#ddd\"/>\n", "<text x=\"",
                    Num(kLeft - 6), "\" y=\"", Num(py(y) + 4), "\" text-anchor=\"end\">",
                    TickLabel(y), "</text>\n");
  }
  const double xstep = std::max(1.0, NiceStep(x_max - 1, 8));
  for (double x = 1; x <= x_max + 1e-9; x += xstep) {
    absl::StrAppend(&svg, "<text x=\"", Num(px(x)), "\" y=\"", Num(kTop + ph + 18),
                    "\" text-anchor=\"middle\">", TickLabel(x), "</text>\n");
  }
  absl::StrAppend(&svg, "<rect x=\"", Num(kLeft), "\" y=\"", Num(kTop), "\" width=\"", Num(pw),
                  "\" height=\"", Num(ph), "\" fill=\"none\" stroke=\"black\"/>\n", "<text x=\"",
                  Num(kLeft + pw / 2), "\" y=\"", Num(kHeight - 12), "\" text-anchor=\"middle\">",
                  HtmlEscape(spec.x_label), "</text>\n", "<text transform=\"translate(16,",
                  Num(kTop + ph / 2), ") rotate(-90)\" text-anchor=\"middle\">",
                  HtmlEscape(spec.y_label), "</text>\n");
  for (size_t k = 0; k < spec.series.size(); ++k) {
    const PlotSeries& s = spec.series[k];
    const char* colour = kColours[k % (sizeof(kColours) / sizeof(kColours[0]))];
    std::string pts;
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      absl::StrAppend(&pts, pts.empty() ? "" : " ", Num(px(static_cast<double>(i + 1))), ",",
                      Num(py(s.y[i])));
    }
    absl::StrAppend(&svg, "<polyline fill=\"none\" stroke=\"", colour,
                    "\" stroke-width=\"2\" points=\"", pts, "\"/>\n");
    const double ly = kTop + 10 + 18 * static_cast<double>(k);
    absl::StrAppend(&svg, "<line x1=\"", Num(kLeft + pw + 12), "\" y1=\"", Num(ly), "\" x2=\"",
                    Num(kLeft + pw + 32), "\" y2=\"", Num(ly), "\" stroke=\"", colour,
                    "\" stroke-width=\"2\"/>\n", "<text x=\"", Num(kLeft + pw + 38), "\" y=\"",
                    Num(ly + 4), "\">", HtmlEscape(s.name), "</text>\n");
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace hansa

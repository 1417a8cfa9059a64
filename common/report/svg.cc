#include "common/report/svg.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hansa {
namespace {

// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
constexpr const char* kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                    "#56B4E9", "#D55E00", "#999933", "#000000"};
constexpr double kWidth = 640, kHeight = 320;
constexpr double kLeft = 70, kRight = 150, kTop = 40, kBottom = 50;
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;

const char* Color(size_t i) { return kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))]; }

std::string Num(double v) { return absl::StrFormat("%.1f", v); }

std::string Label(double v) {
  if (v == 0) return "0";
  return absl::StrFormat("%.4g", v);
}

struct Axis {
  double lo, hi;
  std::vector<double> ticks;
  double Map(double v, double from, double to) const {
    return hi == lo ? from : from + (v - lo) / (hi - lo) * (to - from);
  }
};

Axis MakeAxis(double lo, double hi, bool integer) {
  Axis axis;
  axis.ticks = NiceTicks(lo, hi);
  if (integer && axis.ticks.size() > 1 && axis.ticks[1] - axis.ticks[0] < 1) {
    axis.ticks.clear();
    for (double t = std::floor(lo); t <= std::ceil(hi) + 1e-9; t += 1) axis.ticks.push_back(t);
  }
  axis.lo = axis.ticks.front();
  axis.hi = axis.ticks.back();
  return axis;
}

std::string Open(const std::string& id, const std::string& title) {
  std::string esc_id = HtmlEscape(id);
  return absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"", esc_id,
                      "\" viewBox=\"0 0 ", kWidth, " ", kHeight,
                      "\" role=\"img\" aria-labelledby=\"", esc_id, "-title\"><title id=\"", esc_id,
                      "-title\">", HtmlEscape(title), "</title>", "<rect x=\"0\" y=\"0\" width=\"",
                      kWidth, "\" height=\"", kHeight, "\" fill=\"#ffffff\"/><text x=\"", kLeft,
                      "\" y=\"22\" class=\"chart-title\">", HtmlEscape(title), "</text>");
}

std::string AxisLabels(const std::string& x_label, const std::string& y_label) {
  return absl::StrCat("<text x=\"", Num(kLeft + kPlotW / 2), "\" y=\"", Num(kHeight - 10),
                      "\" text-anchor=\"middle\" class=\"axis-label\">", HtmlEscape(x_label),
                      "</text><text transform=\"translate(16,", Num(kTop + kPlotH / 2),
                      ") rotate(-90)\" text-anchor=\"middle\" class=\"axis-label\">",
                      HtmlEscape(y_label), "</text>");
}

std::string YGrid(const Axis& y, bool bytes) {
  std::string out;
  for (double t : y.ticks) {
    double py = y.Map(t, kTop + kPlotH, kTop);
    absl::StrAppend(&out, "<line x1=\"", kLeft, "\" x2=\"", kLeft + kPlotW, "\" y1=\"", Num(py),
                    "\" y2=\"", Num(py), "\" stroke=\"#dddddd\"/><text x=\"", kLeft - 6, "\" y=\"",
                    Num(py + 4), "\" text-anchor=\"end\" class=\"tick\">",
                    bytes ? FormatBytes(t) : Label(t), "</text>");
  }
  absl::StrAppend(&out, "<line x1=\"", kLeft, "\" x2=\"", kLeft, "\" y1=\"", kTop, "\" y2=\"",
                  kTop + kPlotH, "\" stroke=\"#555555\"/><line x1=\"", kLeft, "\" x2=\"",
                  kLeft + kPlotW, "\" y1=\"", kTop + kPlotH, "\" y2=\"", kTop + kPlotH,
                  "\" stroke=\"#555555\"/>");
  return out;
}

std::string Legend(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    double y = kTop + 8 + 18 * static_cast<double>(i);
    absl::StrAppend(&out, "<rect x=\"", kLeft + kPlotW + 16, "\" y=\"", Num(y - 9),
                    "\" width=\"12\" height=\"12\" fill=\"", Color(i), "\"/><text x=\"",
                    kLeft + kPlotW + 34, "\" y=\"", Num(y + 1), "\" class=\"legend\">",
                    HtmlEscape(names[i]), "</text>");
  }
  return out;
}

}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> NiceTicks(double lo, double hi, int target_count) {
  if (!(hi > lo)) hi = lo + 1;
  double raw = (hi - lo) / std::max(target_count, 1);
  double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double norm = raw / magnitude;
  double step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * magnitude;
  double start = std::floor(lo / step + 1e-9) * step;
  double end = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (int i = 0; start + i * step <= end + step * 1e-6; ++i) {
    double t = start + i * step;
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

std::string FormatBytes(double bytes) {
  if (bytes >= 1e9) return absl::StrFormat("%.3g GB", bytes / 1e9);
  if (bytes >= 1e6) return absl::StrFormat("%.3g MB", bytes / 1e6);
  if (bytes >= 1e3) return absl::StrFormat("%.3g kB", bytes / 1e3);
  return absl::StrFormat("%.0f B", bytes);
}

std::string RenderLineChart(const LineChart& chart) {
  double x_lo = 1e300, x_hi = -1e300, y_lo = 1e300, y_hi = -1e300;
  for (const ChartSeries& s : chart.series) {
    for (auto [x, y] : s.points) {
      x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
      y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y);
    }
  }
  if (x_lo > x_hi) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  if (chart.fixed_y) y_lo = std::min(y_lo, chart.y_min), y_hi = std::max(y_hi, chart.y_max);
  if (y_lo > 0 && !chart.fixed_y) y_lo = 0;  // start at zero: honest scale for costs
  Axis x = MakeAxis(x_lo, x_hi, /*integer=*/true);
  Axis y = MakeAxis(y_lo, y_hi, /*integer=*/false);

  std::string out = Open(chart.id, chart.title);
  absl::StrAppend(&out, YGrid(y, false));
  for (double t : x.ticks) {
    absl::StrAppend(&out, "<text x=\"", Num(x.Map(t, kLeft, kLeft + kPlotW)), "\" y=\"",
                    Num(kTop + kPlotH + 18), "\" text-anchor=\"middle\" class=\"tick\">", Label(t),
                    "</text>");
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const ChartSeries& s = chart.series[i];
    names.push_back(s.name);
    std::string points, dots;
    for (auto [px, py] : s.points) {
      std::string sx = Num(x.Map(px, kLeft, kLeft + kPlotW));
      std::string sy = Num(y.Map(py, kTop + kPlotH, kTop));
      absl::StrAppend(&points, points.empty() ? "" : " ", sx, ",", sy);
      absl::StrAppend(&dots, "<circle cx=\"", sx, "\" cy=\"", sy, "\" r=\"3\" fill=\"", Color(i),
                      "\"><title>", HtmlEscape(s.name), " ", Label(px), ": ", Label(py),
                      "</title></circle>");
    }
    absl::StrAppend(&out, "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"", Color(i),
                    "\" points=\"", points, "\"/>", dots);
  }
  absl::StrAppend(&out, Legend(names), AxisLabels(chart.x_label, chart.y_label), "</svg>");
  return out;
}

std::string RenderBarChart(const BarChart& chart) {
  double y_hi = 0;
  for (const auto& row : chart.values) {
    for (double v : row) y_hi = std::max(y_hi, v);
  }
  Axis y = MakeAxis(0, y_hi > 0 ? y_hi : 1, /*integer=*/false);
  std::string out = Open(chart.id, chart.title);
  absl::StrAppend(&out, YGrid(y, chart.bytes));
  size_t categories = std::max<size_t>(chart.categories.size(), 1);
  size_t series = std::max<size_t>(chart.series_names.size(), 1);
  double group = kPlotW / static_cast<double>(categories);
  double bar = group * 0.8 / static_cast<double>(series);
  for (size_t c = 0; c < chart.categories.size(); ++c) {
    double gx = kLeft + group * static_cast<double>(c);
    absl::StrAppend(&out, "<text x=\"", Num(gx + group / 2), "\" y=\"", Num(kTop + kPlotH + 18),
                    "\" text-anchor=\"middle\" class=\"tick\">", HtmlEscape(chart.categories[c]),
                    "</text>");
    for (size_t s = 0; s < chart.series_names.size(); ++s) {
      double v = s < chart.values.size() && c < chart.values[s].size() ? chart.values[s][c] : 0;
      double top = y.Map(v, kTop + kPlotH, kTop);
      absl::StrAppend(&out, "<rect class=\"bar\" x=\"",
                      Num(gx + group * 0.1 + bar * static_cast<double>(s)), "\" y=\"", Num(top),
                      "\" width=\"", Num(std::max(bar - 1, 1.0)), "\" height=\"",
                      Num(kTop + kPlotH - top), "\" fill=\"", Color(s), "\"><title>",
                      HtmlEscape(chart.series_names[s]), ", ", HtmlEscape(chart.x_label), " ",
                      HtmlEscape(chart.categories[c]), ": ",
                      chart.bytes ? FormatBytes(v) : Label(v), "</title></rect>");
    }
  }
  absl::StrAppend(&out, Legend(chart.series_names), AxisLabels(chart.x_label, chart.y_label),
                  "</svg>");
  return out;
}

}  // namespace hansa

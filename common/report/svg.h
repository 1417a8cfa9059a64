// Inline SVG charts for the compliance report, drawn here so the report needs no scripts and
// no assets from anywhere. Text is escaped; the output can be pasted into HTML as is.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hansa {

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string HtmlEscape(std::string_view text);

struct ChartSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x increasing
};

struct LineChart {
  std::string id;  // the <svg> element's id
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<ChartSeries> series;
  // When set, the y axis spans at least [y_min, y_max] (accuracy: 0..1).
  bool fixed_y = false;
  double y_min = 0, y_max = 1;
};

// Grouped bars: one group per category (a round), one bar per series (a site).
struct BarChart {
  std::string id;
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<std::string> categories;
  std::vector<std::string> series_names;
  std::vector<std::vector<double>> values;  // [series][category]
  bool bytes = false;                       // format the y axis as kB/MB/GB
};

std::string RenderLineChart(const LineChart& chart);
std::string RenderBarChart(const BarChart& chart);

// Tick positions covering [lo, hi] at a round step (1, 2 or 5 times a power of ten).
std::vector<double> NiceTicks(double lo, double hi, int target_count = 5);
// "1.5 MB", "820 kB", "12 B".
std::string FormatBytes(double bytes);

}  // namespace hansa

// Line plots as standalone SVG text, drawn by Hansa itself so a simulation's figures need no
// external tools. Plain functions; thread-safe.
#pragma once

#include <string>
#include <vector>

namespace hansa {

struct PlotSeries {
  std::string name;
  std::vector<double> y;  // y[i] is plotted at x = i + 1 (rounds); NaN values are skipped
};

struct PlotSpec {
  std::string title;
  std::string x_label = "round";
  std::string y_label;
  std::vector<PlotSeries> series;
};

// A 640x400 SVG with axes, ticks, one coloured polyline per series and a legend.
std::string LinePlotSvg(const PlotSpec& spec);

}  // namespace hansa

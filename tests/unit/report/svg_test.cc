#include "common/report/svg.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::DoubleNear;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pointwise;

TEST(SvgTest, TicksAreRoundNumbersCoveringTheRange) {
  auto near = [](std::vector<double> v) { return Pointwise(DoubleNear(1e-9), v); };
  EXPECT_THAT(NiceTicks(0, 1), near({0, 0.2, 0.4, 0.6, 0.8, 1}));
  EXPECT_THAT(NiceTicks(0, 2000), near({0, 500, 1000, 1500, 2000}));
  EXPECT_THAT(NiceTicks(1.5, 2.25), near({1.4, 1.6, 1.8, 2.0, 2.2, 2.4}));
  EXPECT_THAT(NiceTicks(3, 3), near({3, 3.2, 3.4, 3.6, 3.8, 4}));
  EXPECT_THAT(NiceTicks(0, 535464), near({0, 200000, 400000, 600000}));
}

TEST(SvgTest, FormatsBytes) {
  EXPECT_EQ(FormatBytes(12), "12 B");
  EXPECT_EQ(FormatBytes(1500), "1.5 kB");
  EXPECT_EQ(FormatBytes(535464), "535 kB");
  EXPECT_EQ(FormatBytes(2.5e9), "2.5 GB");
}

TEST(SvgTest, ChartsEscapeTextAndDrawEveryPoint) {
  LineChart line{"acc", "A <b> & \"c\"", "round", "accuracy", {}, true, 0, 1};
  line.series.push_back({"s<1>", {{0, 0.1}, {1, 0.5}, {2, 0.9}}});
  std::string svg = RenderLineChart(line);
  EXPECT_THAT(svg, HasSubstr("id=\"acc\""));
  EXPECT_THAT(svg, HasSubstr("A &lt;b&gt; &amp; &quot;c&quot;"));
  EXPECT_THAT(svg, Not(HasSubstr("<b>")));
  EXPECT_THAT(svg, HasSubstr("s&lt;1&gt;"));
  size_t circles = 0;
  for (size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1)) {
    ++circles;
  }
  EXPECT_EQ(circles, 3u);

  BarChart bars{
      "b", "Bytes", "round", "bytes", {"1", "2"}, {"berlin", "paris"}, {{1000, 2000}, {1000}},
      true};
  svg = RenderBarChart(bars);
  size_t rects = 0;
  for (size_t at = svg.find("class=\"bar\""); at != std::string::npos;
       at = svg.find("class=\"bar\"", at + 1)) {
    ++rects;
  }
  EXPECT_EQ(rects, 4u);
  EXPECT_THAT(svg, HasSubstr("paris, round 2: 0 B"));  // missing value drawn as zero
  EXPECT_THAT(svg, HasSubstr("berlin, round 2: 2 kB"));
}

}  // namespace
}  // namespace hansa

// CSV data of a site (client/tabular.h): what a good file gives, that every bad row is refused
// naming the file, line and column, and that sites' feature moments add up to the pooled ones.
#include "client/tabular.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

CsvSchema Schema() {
  CsvSchema s;
  s.label = "diagnosis";
  s.label_classes = {"benign", "malignant"};
  s.categorical = {{"site", {"berlin", "paris"}}};
  s.ignore = {"id"};
  return s;
}

TEST(TabularTest, ReadsFeaturesCategoriesAndClassLabels) {
  auto d = ParseCsv(
      "id,radius,diagnosis,site,texture\n"
      "1,12.5,benign,paris,3\n"
      "2, 20 ,malignant,berlin,-1.5e1\n",
      "a.csv", Schema());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->feature_names, ElementsAre("radius", "texture", "site=berlin", "site=paris"));
  EXPECT_THAT(d->features, ElementsAre(12.5f, 3.0f, 0.0f, 1.0f, 20.0f, -15.0f, 1.0f, 0.0f));
  EXPECT_THAT(d->labels, ElementsAre(0.0f, 1.0f));
  EXPECT_EQ(d->rows(), 2);
  EXPECT_EQ(d->width(), 4);
}

TEST(TabularTest, QuotesCrlfAndChosenFeatures) {
  CsvSchema s;
  s.label = "y";
  s.features = {"b", "a"};
  auto d =
      ParseCsv("a,\"note, with comma\",b,y\r\n1,\"say \"\"hi\"\"\r\nthere\",2,0\r\n", "q.csv", s);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->feature_names, ElementsAre("b", "a"));
  EXPECT_THAT(d->features, ElementsAre(2.0f, 1.0f));
  EXPECT_THAT(d->labels, ElementsAre(0.0f));
}

// sklearn's bundled CSVs: a first line of counts, no header, the target last.
TEST(TabularTest, HeaderlessFilesWithNamedColumnsAndSkippedLines) {
  CsvSchema s;
  s.columns = {"x1", "x2", "target"};
  s.label = "target";
  s.skip_lines = 1;
  auto d = ParseCsv("3,2,malignant,benign\n1.0,2.0,0\n3.0,4.0,1\n5.0,6.0,1", "bc.csv", s);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->features, ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(d->labels, ElementsAre(0, 1, 1));
  s.regression = true;
  auto r = ParseCsv("n\n1,2,151.5\n", "diabetes.csv", s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->labels, ElementsAre(151.5f));
}

TEST(TabularTest, MissingValuesAreAnErrorUnlessAnImputationIsDeclared) {
  CsvSchema s;
  s.label = "y";
  auto bad = ParseCsv("a,b,y\n1,,0\n", "m.csv", s);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("m.csv:2: column 'b' is empty and the schema declares no imputation"));
  s.impute_missing = -1.0;
  auto ok = ParseCsv("a,b,y\n1,,0\n", "m.csv", s);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(ok->features, ElementsAre(1.0f, -1.0f));
  // A missing label is never imputed.
  EXPECT_EQ(ParseCsv("a,b,y\n1,2,\n", "m.csv", s).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Every bad file is refused whole, naming the file, the line and the column.
TEST(TabularTest, BadFilesGetClearErrors) {
  const CsvSchema s = Schema();
  const std::string header = "id,radius,diagnosis,site,texture\n";
  struct Case {
    std::string text;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {"", "b.csv: the file is empty"},
           {header, "b.csv: the file has no data rows"},
           {"id,radius,site,texture\n1,2,paris,3\n", "no label column 'diagnosis'"},
           {header + "1,12,benign,paris,3\n2,abc,benign,paris,3\n",
            "b.csv:3: column 'radius' holds 'abc', which is not a number"},
           {header + "1,nan,benign,paris,3\n", "b.csv:2: column 'radius' holds 'nan' (NaN"},
           {header + "1,inf,benign,paris,3\n", "(NaN or infinite)"},
           {header + "1,12,benign,milan,3\n",
            "b.csv:2: column 'site' holds 'milan', which is not one of the study's categories"},
           {header + "1,12,benign,paris\n", "b.csv:2: 4 fields, but the header has 5"},
           {header + "1,12,benign,paris,3,9\n", "b.csv:2: 6 fields, but the header has 5"},
           {header + "1,12,unknown,paris,3\n", "b.csv:2: label 'unknown' is not one of"},
           {header + "1,12,benign,\"paris,3\n", "not closed before the end of the file"},
           {"id,radius,radius,diagnosis,site\n", "column 'radius' appears twice"},
       }) {
    auto d = ParseCsv(c.text, "b.csv", s);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(c.why)) << c.text;
  }
  CsvSchema ids;
  ids.label = "y";
  auto negative = ParseCsv("a,y\n1,-1\n", "c.csv", ids);
  EXPECT_THAT(std::string(negative.status().message()),
              HasSubstr("c.csv:2: label '-1' is not a class id"));
  EXPECT_EQ(LoadCsv("/nonexistent/data.csv", ids).status().code(), absl::StatusCode::kNotFound);
}

// Pooled standardisation: the sites' moments add up to those of their concatenated files, and
// standardising with them gives every feature mean 0 and deviation 1 over the federation.
TEST(TabularTest, SitesMomentsAddUpToThePooledMeanAndDeviation) {
  CsvSchema s;
  s.label = "y";
  const std::vector<std::string> files = {"a,b,y\n1,10,0\n2,20,1\n", "a,b,y\n3,30,0\n",
                                          "a,b,y\n4,40,1\n5,50,0\n6,60,1\n"};
  std::string pooled_text = "a,b,y\n";
  FeatureMoments sum;
  std::vector<TabularData> sites;
  for (size_t i = 0; i < files.size(); ++i) {
    auto d = ParseCsv(files[i], "f.csv", s);
    ASSERT_TRUE(d.ok()) << d.status();
    if (i == 0) {
      sum = FeatureMoments::Of(*d);
    } else {
      ASSERT_TRUE(sum.Add(FeatureMoments::Of(*d)).ok());
    }
    pooled_text += files[i].substr(6);
    sites.push_back(*std::move(d));
  }
  auto pooled = ParseCsv(pooled_text, "pooled.csv", s);
  ASSERT_TRUE(pooled.ok()) << pooled.status();
  std::vector<double> mean, sd;
  ASSERT_TRUE(sum.MeanAndStd(&mean, &sd).ok());
  EXPECT_EQ(sum.count, 6);
  EXPECT_DOUBLE_EQ(mean[0], 3.5);
  EXPECT_DOUBLE_EQ(mean[1], 35.0);
  EXPECT_NEAR(sd[0], std::sqrt(17.5 / 6), 1e-12);  // population deviation of 1..6
  EXPECT_NEAR(sd[1], 10 * std::sqrt(17.5 / 6), 1e-12);
  // Standardised, every site's rows together have mean 0 and deviation 1.
  FeatureMoments after;
  for (size_t i = 0; i < sites.size(); ++i) {
    ASSERT_TRUE(Standardize(mean, sd, &sites[i]).ok());
    if (i == 0) {
      after = FeatureMoments::Of(sites[i]);
    } else {
      ASSERT_TRUE(after.Add(FeatureMoments::Of(sites[i])).ok());
    }
  }
  std::vector<double> m2, s2;
  ASSERT_TRUE(after.MeanAndStd(&m2, &s2).ok());
  for (size_t j = 0; j < 2; ++j) {
    EXPECT_NEAR(m2[j], 0.0, 1e-6);
    EXPECT_NEAR(s2[j], 1.0, 1e-6);
  }
  FeatureMoments narrow;
  narrow.sum = {1};
  narrow.sum_squares = {1};
  EXPECT_EQ(sum.Add(narrow).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FeatureMoments().MeanAndStd(&mean, &sd).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace hansa

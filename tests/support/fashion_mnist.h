// The real Fashion-MNIST sample the trainer tests learn on, from dataset-fashion-mnist.
#pragma once

#include <gtest/gtest.h>

#include "client/data.h"

namespace hansa::test_support {

struct FashionMnistSample {
  Dataset train;  // shard 0 of 30 of the training set: 2,000 examples
  Dataset test;   // the first 1,000 test examples
};

// Fails the test (and returns empty datasets) when the files cannot be read.
inline FashionMnistSample LoadFashionMnistSample() {
  StatusOr<Dataset> train = LoadMnistStyle(kFashionMnistDir, Split::kTrain);
  StatusOr<Dataset> test = LoadMnistStyle(kFashionMnistDir, Split::kTest);
  EXPECT_TRUE(train.ok()) << train.status();
  EXPECT_TRUE(test.ok()) << test.status();
  if (!train.ok() || !test.ok()) return {};
  return {*Shard(*train, 0, 30), Head(*test, 1000)};
}

}  // namespace hansa::test_support

// The key types a federation may use, as a GoogleTest parameter: both values, and the name each
// gives its tests ("Ed25519", "EcdsaP256"), so every test over keys runs over both the same way.
// Header only; no state.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/pki/key.h"

namespace hansa::testing {

// Both key types, for INSTANTIATE_TEST_SUITE_P.
inline auto AllKeyTypes() { return ::testing::Values(KeyType::kEd25519, KeyType::kEcdsaP256); }

// The name a KeyType parameter gives its test: "Ed25519" or "EcdsaP256".
inline std::string KeyTypeTestName(const ::testing::TestParamInfo<KeyType>& info) {
  return info.param == KeyType::kEd25519 ? "Ed25519" : "EcdsaP256";
}

}  // namespace hansa::testing

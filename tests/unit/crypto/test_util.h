// Hex helpers for known-answer tests.
#pragma once

#include <string>
#include <string_view>

#include "common/crypto/secret.h"

namespace hansa::testing_util {

inline std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

inline SecretBytes SecretFromHex(std::string_view hex) { return SecretBytes(Unhex(hex)); }

template <typename Array>
Array ArrayFromHex(std::string_view hex) {
  Array a{};
  std::string raw = Unhex(hex);
  std::copy(raw.begin(), raw.end(), a.begin());
  return a;
}

inline std::string Hex(std::string_view raw) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

template <typename Bytes>
std::string HexOf(const Bytes& b) {
  return Hex(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

}  // namespace hansa::testing_util

#include "common/audit/record_text.h"

#include <algorithm>
#include <cstdint>

namespace hansa {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed sequence at the start of `text`, or 0 when it is ill-formed;
// `*consumed` is then the length of its maximal ill-formed subpart (at least 1).
size_t Utf8SequenceLength(std::string_view text, size_t* consumed) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(0);
  *consumed = 1;
  if (lead < 0x80) return 1;
  size_t length = 0;
  uint8_t low = 0x80, high = 0xBF;  // the range of the second byte (Unicode table 3-7)
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong encodings
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // no overlong encodings
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  for (size_t i = 1; i < length; ++i) {
    if (i >= text.size()) return 0;
    const uint8_t b = byte(i);
    if (b < (i == 1 ? low : 0x80) || b > (i == 1 ? high : 0xBF)) return 0;
    *consumed = i + 1;
  }
  return length;
}

}  // namespace

std::string RecordText(std::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  while (!text.empty()) {
    size_t consumed = 0;
    const size_t length = Utf8SequenceLength(text, &consumed);
    const std::string_view unit = length > 0 ? text.substr(0, length) : kReplacement;
    if (out.size() + unit.size() > max_bytes) break;
    out.append(unit);
    text.remove_prefix(length > 0 ? length : consumed);
  }
  return out;
}

bool IsValidUtf8(std::string_view text) {
  while (!text.empty()) {
    size_t consumed = 0;
    const size_t length = Utf8SequenceLength(text, &consumed);
    if (length == 0) return false;
    text.remove_prefix(length);
  }
  return true;
}

}  // namespace hansa

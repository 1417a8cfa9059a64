// Text from a peer (a site's refusal reason, an error it reported) made fit for a record.
//
// A record's strings must be valid UTF-8 (record.h), and a peer's text is bounded before it is
// written. Cutting at a byte count can split a character, and a peer may send bytes that are
// not UTF-8 at all; either would make the append fail and the event go unrecorded. Thread-safe
// (pure functions).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace hansa {

// `text` as valid UTF-8 of at most `max_bytes` bytes: each ill-formed sequence (a stray
// continuation byte, a truncated, overlong or surrogate encoding, a code point above U+10FFFF)
// becomes U+FFFD, one per maximal ill-formed subpart as Unicode recommends; then the result is
// cut after its last whole character that fits.
std::string RecordText(std::string_view text, size_t max_bytes);

// True when `text` is well-formed UTF-8 (what the record writer accepts).
bool IsValidUtf8(std::string_view text);

}  // namespace hansa

// Secret byte strings that wipe themselves, and constant-time comparison.
//
// Every key, seed and share in Hansa lives in a SecretBytes: its destructor (and assignment
// over it) overwrites the bytes with OPENSSL_cleanse, so secrets do not linger in freed memory.
// A SecretBytes never changes size after construction (no reallocation leaves stale copies).
// Not thread-safe; one owner, like std::vector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace hansa {

// True when the two buffers hold the same bytes; the time taken depends only on `size`.
bool ConstantTimeEquals(const void* a, const void* b, size_t size);

// Overwrites `size` bytes at `p` in a way the compiler cannot optimise away.
void SecureWipe(void* p, size_t size);

class SecretBytes {
 public:
  SecretBytes() = default;
  // `size` zero bytes.
  explicit SecretBytes(size_t size) : bytes_(size) {}
  SecretBytes(const void* data, size_t size)
      : bytes_(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size) {}
  explicit SecretBytes(std::string_view s) : SecretBytes(s.data(), s.size()) {}

  SecretBytes(const SecretBytes& other) = default;
  SecretBytes(SecretBytes&& other) noexcept = default;
  SecretBytes& operator=(const SecretBytes& other);
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes() { Wipe(); }

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  uint8_t& operator[](size_t i) { return bytes_[i]; }
  uint8_t operator[](size_t i) const { return bytes_[i]; }
  // A view for passing to APIs; the view must not outlive this object.
  std::string_view view() const {
    return std::string_view(reinterpret_cast<const char*>(bytes_.data()), bytes_.size());
  }

  // Constant-time comparison (the sizes are not secret).
  bool Equals(const SecretBytes& other) const {
    return size() == other.size() && ConstantTimeEquals(data(), other.data(), size());
  }

  // Wipes the bytes and empties the buffer.
  void Wipe();

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace hansa

// The one scratch folder of a fuzz target's process: made on first use under /dev/shm when there
// is one (the engine target writes state on every input) or the temporary folder, and removed
// with everything in it when the process exits; and whole-file reads and writes for a target's
// files. Header-only; single-threaded like libFuzzer.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace hansa::fuzz {

// A folder named after `name` (e.g. "hansa-transfer-fuzz"), the same on every call.
inline const std::string& ScratchFolder(const char* name) {
  static std::string* folder = nullptr;
  if (folder == nullptr) {
    namespace fs = std::filesystem;
    std::error_code error;
    const fs::path base =
        fs::is_directory("/dev/shm", error) ? fs::path("/dev/shm") : fs::temp_directory_path(error);
    std::string dir = (base / (std::string(name) + "-XXXXXX")).string();
    if (mkdtemp(dir.data()) == nullptr) abort();
    folder = new std::string(dir);
    std::atexit([] {
      std::error_code ignored;
      fs::remove_all(*folder, ignored);
    });
  }
  return *folder;
}

// `bytes` as the whole file at `path`; aborts when it cannot be written.
inline void WriteBytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) abort();
}

// The whole file at `path`; empty when it cannot be read.
inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace hansa::fuzz

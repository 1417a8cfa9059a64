// The one scratch folder of a fuzz target's process: made on first use under /dev/shm when there
// is one (the engine target writes state on every input) or the temporary folder, and removed
// with everything in it when the process exits. Header-only; single-threaded like libFuzzer.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

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

}  // namespace hansa::fuzz

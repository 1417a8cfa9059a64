// The readers of the TOML files users write (config_fuzz covers the generic reader under
// them): the first byte picks coordinator.toml (LoadCoordinatorConfig), site.toml
// (LoadSiteConfig) or an experiment file (ParseExperiment); the rest is the file. An
// experiment that parses must read back from its ResolvedToml() to the same text.
//
// The two file readers take a path: the text is written to fuzz.toml in a folder of its own
// under TMPDIR (removed at exit), which is also the base of relative paths. A model.file that
// is not a small regular file is skipped, so that the readers hash no device or /proc file.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "client/site_config.h"
#include "common/config/config.h"
#include "coordinator/coordinator_config.h"
#include "fuzz/scratch_folder.h"
#include "sim/simulation.h"

namespace {

namespace fs = std::filesystem;

const std::string& Folder() { return hansa::fuzz::ScratchFolder("hansa-config-fuzz"); }

// False when model.file names something other than a small regular file.
bool ModelFileIsHarmless(std::string_view text) {
  auto cfg = hansa::ConfigReader::Parse(text, "fuzz.toml", Folder());
  if (!cfg.ok()) return true;
  const std::string file = cfg->Path("model.file", "");
  if (file.empty()) return true;
  std::error_code error;
  const fs::path resolved = fs::weakly_canonical(file, error);
  if (error) return false;
  const std::string name = resolved.string();
  if (name.rfind("/proc", 0) == 0 || name.rfind("/sys", 0) == 0) return false;
  if (!fs::is_regular_file(resolved, error)) return !fs::exists(resolved, error) && !error;
  return fs::file_size(resolved, error) <= (1u << 20) && !error;
}

void Experiment(std::string_view text) {
  auto experiment = hansa::ParseExperiment(std::string(text), "fuzz.toml", Folder());
  if (!experiment.ok()) return;
  const std::string resolved = experiment->ResolvedToml();
  auto again = hansa::ParseExperiment(resolved, "resolved.toml", Folder());
  if (!again.ok() || again->ResolvedToml() != resolved) abort();
}

}  // namespace

namespace hansa {
// The one function of sim/simulation.cc that the experiment reader calls; that file brings the
// simulator (LibTorch, gRPC servers) along, so its definition is repeated here, word for word.
const char* TransportName(Transport transport) {
  return transport == Transport::kGrpc ? "grpc" : "in-process";
}
}  // namespace hansa

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const int reader = data[0] % 3;
  if (reader != 1 && !ModelFileIsHarmless(text)) return 0;
  if (reader == 2) {
    Experiment(text);
    return 0;
  }
  const std::string path = Folder() + "/fuzz.toml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) abort();
  }
  if (reader == 0) {
    (void)hansa::LoadCoordinatorConfig(path);
  } else {
    (void)hansa::LoadSiteConfig(path);
  }
  return 0;
}

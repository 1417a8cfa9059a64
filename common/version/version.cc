#include "common/version/version.h"

#include "hansa_version_commit.h"  // generated at build time: HANSA_GIT_COMMIT

namespace hansa {

const BuildInfo& GetBuildInfo() {
#ifdef HANSA_HAVE_CUDA
  static const BuildInfo info{HANSA_VERSION, HANSA_GIT_COMMIT, HANSA_BUILD_TYPE, true};
#else
  static const BuildInfo info{HANSA_VERSION, HANSA_GIT_COMMIT, HANSA_BUILD_TYPE, false};
#endif
  return info;
}

std::string VersionText(const std::string& program) {
  const BuildInfo& info = GetBuildInfo();
  std::string text = program;
  text.append(" ").append(info.version);
  text.append("\ncommit: ").append(info.commit);
  text.append("\nbuild: ").append(info.build_type);
  text.append("\ncuda: ").append(info.cuda ? "yes" : "no");
  return text;
}

}  // namespace hansa

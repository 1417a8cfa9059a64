// What a Hansa program reports for --version: the project's version, the git commit it was
// built from, the build type and whether the CUDA kernels are built in. The version, build type
// and CUDA are fixed when CMake configures; the commit is read again at every build
// (cmake/write_version_commit.cmake), so a binary never reports a commit it was not built from.
// Constants only: any thread may call these.
#ifndef HANSA_COMMON_VERSION_VERSION_H_
#define HANSA_COMMON_VERSION_VERSION_H_

#include <string>

namespace hansa {

struct BuildInfo {
  const char* version;     // the project's, e.g. "0.1.0"
  const char* commit;      // 12 hex digits, "-dirty" when tracked files differed; or "unknown"
  const char* build_type;  // CMAKE_BUILD_TYPE, e.g. "RelWithDebInfo"
  bool cuda;               // the CUDA kernels are built in (a device is still chosen at run time)
};

const BuildInfo& GetBuildInfo();

// The text of `PROGRAM --version`, one field a line, without a final newline:
//   hansa-client 0.1.0
//   commit: 0123456789ab
//   build: RelWithDebInfo
//   cuda: no
std::string VersionText(const std::string& program);

}  // namespace hansa

#endif  // HANSA_COMMON_VERSION_VERSION_H_

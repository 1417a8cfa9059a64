#!/usr/bin/env bash
# make package: builds the Debian packages hansa-coordinator, hansa-client and hansa-tools
# (CPack, packaging/CMakeLists.txt) from a Release-like build of their own (build-package/:
# -O2, Debian's hardening flags, CUDA off, no tests), leaving build/ alone. The .deb files
# land in build-package/packages/ and their names are printed.
#
# CUDA stays off: Debian 12's LibTorch is CPU-only and no Debian package provides the CUDA
# runtime that dpkg-shlibdeps would have to name as a dependency.
# HANSA_PACKAGE_BUILD_DIR (build-package) and JOBS (nproc) change the build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${HANSA_PACKAGE_BUILD_DIR:-$root/build-package}
jobs=${JOBS:-$(nproc)}
cd "$root"
"$root/scripts/install-deps.sh" dpkg-dev lintian

# What Debian's own packages are built with (dpkg-buildflags with hardening=+all), so lintian's
# hardening checks pass: fortified libc calls, stack protector, full RELRO, bind now.
hardening="-D_FORTIFY_SOURCE=2 -fstack-protector-strong -fstack-clash-protection -fcf-protection"
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHANSA_WITH_CUDA=OFF \
  -DHANSA_BUILD_TESTS=OFF -DHANSA_BUILD_BENCH=OFF \
  -DCMAKE_C_FLAGS="$hardening" -DCMAKE_CXX_FLAGS="$hardening" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-z,relro -Wl,-z,now" >/dev/null
cmake --build "$dir" --target hansa-coordinator hansa-client hansa hansa_package_docs -j "$jobs"
rm -rf "$dir/packages"
(cd "$dir" && cpack -G DEB -B "$dir/packages" >/dev/null)
ls -l "$dir"/packages/*.deb

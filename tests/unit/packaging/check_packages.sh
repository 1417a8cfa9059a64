#!/usr/bin/env bash
# check_packages.sh BUILD_DIR WORK_DIR: the Debian packages CPack makes from BUILD_DIR's install
# rules (packaging/CMakeLists.txt), checked without a network: their names and control fields,
# their exact file lists, stripped binaries, the library packages dpkg-shlibdeps finds for each
# binary (the client and tools need LibTorch, the coordinator must not), and no lintian error.
#
# Dependencies: CPack's own dpkg-shlibdeps step is switched off here and dpkg-shlibdeps is run
# with --ignore-missing-info instead, because a build with CUDA links the CUDA runtime, which no
# Debian package provides (scripts/package.sh builds the real packages without CUDA, with
# CPack's step on). For the same reason lintian's missing-dependency-on-libc and
# undeclared-elf-prerequisites (binaries whose libraries no Depends names) are left out here.
set -euo pipefail
build=$(cd "$1" && pwd)
work=$2
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
[ -n "$version" ] || fail "no CPACK_PACKAGE_VERSION in $build/CPackConfig.cmake"
(cd "$build" && cpack -G DEB -B "$work" --config CPackConfig.cmake \
  -D CPACK_DEBIAN_PACKAGE_SHLIBDEPS=OFF -D CPACK_DEBIAN_COMPRESSION_TYPE=gzip >"$work/cpack.log") ||
  { cat "$work/cpack.log"; fail "cpack failed"; }
arch=$(dpkg --print-architecture)

# The shared libraries a binary needs, as Debian package names (dpkg-shlibdeps wants a
# debian/control in its working directory).
mkdir -p "$work/shlibs/debian"
printf 'Source: hansa\n\nPackage: hansa\nArchitecture: any\n' >"$work/shlibs/debian/control"
depends_of() {
  (cd "$work/shlibs" && dpkg-shlibdeps --ignore-missing-info -O "$1" 2>/dev/null) |
    sed -n 's/^shlibs:Depends=//p' | tr ',' '\n' | sed 's/^ *//; s/ .*//' | sort -u
}

check_package() {
  local package=$1 program=$2 deb extra=${3:-}
  deb=$work/${package}_${version}_${arch}.deb
  [ -f "$deb" ] || fail "CPack made no $deb (made: $(cd "$work" && ls ./*.deb 2>/dev/null))"
  for field in Package:$package Version:$version Architecture:$arch Section:science \
               Priority:optional; do
    [ "$(dpkg-deb -f "$deb" "${field%%:*}")" = "${field#*:}" ] ||
      fail "$package: ${field%%:*} is '$(dpkg-deb -f "$deb" "${field%%:*}")', not '${field#*:}'"
  done
  dpkg-deb -f "$deb" Maintainer | grep -Eq '^[^<]+ <[^@ ]+@[^> ]+>$' ||
    fail "$package: Maintainer '$(dpkg-deb -f "$deb" Maintainer)' is not 'Name <address>'"
  dpkg-deb -f "$deb" Description | sed -n 2p | grep -q . ||
    fail "$package: Description has no long text"

  # Every file, none elsewhere than the binary, its manual page and its doc folder.
  dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|' | sort >"$work/$package.files"
  local expected
  expected=$(printf '%s\n' "/usr/bin/$program" "/usr/share/man/man1/$program.1.gz" \
    "/usr/share/doc/$package/changelog.gz" "/usr/share/doc/$package/copyright" \
    "/usr/share/doc/$package/operations.md" $extra | sort)
  [ "$(grep -v "^/usr/share/doc/$package/examples/" "$work/$package.files")" = "$expected" ] ||
    fail "$package holds $(tr '\n' ' ' <"$work/$package.files"), expected $(echo $expected)"

  mkdir -p "$work/root-$package"
  dpkg-deb -x "$deb" "$work/root-$package"
  local binary=$work/root-$package/usr/bin/$program
  [ -x "$binary" ] || fail "$package: /usr/bin/$program is not executable"
  if readelf -S "$binary" | grep -q '\.debug_info'; then fail "$package: $program is not stripped"; fi
  "$binary" --version | head -1 | grep -qx "$program $version" ||
    fail "$package: $program --version says '$("$binary" --version | head -1)'"
  depends_of "$binary" >"$work/$package.depends"
  grep -qx libc6 "$work/$package.depends" || fail "$package: no libc6 among its dependencies"
  echo "$package: $(wc -l <"$work/$package.files") files, depends on $(tr '\n' ' ' <"$work/$package.depends")"
}

# The services: a unit, a sysusers.d file creating its system user, and maintainer scripts
# that run systemd-sysusers and reload a running systemd but enable and start nothing.
check_package hansa-coordinator hansa-coordinator \
  "/usr/lib/systemd/system/hansa-coordinator.service /usr/lib/sysusers.d/hansa-coordinator.conf"
check_package hansa-client hansa-client \
  "/usr/lib/systemd/system/hansa-client@.service /usr/lib/sysusers.d/hansa-client.conf"
grep -qx /usr/share/doc/hansa-client/examples/systemd/gpu.conf "$work/hansa-client.files" ||
  fail "hansa-client lacks the GPU drop-in /usr/share/doc/hansa-client/examples/systemd/gpu.conf"
for package in hansa-coordinator hansa-client; do
  deb=$work/${package}_${version}_${arch}.deb
  dpkg-deb -f "$deb" Depends | grep -q 'systemd-standalone-sysusers | systemd-sysusers' ||
    fail "$package: Depends '$(dpkg-deb -f "$deb" Depends)' names no systemd-sysusers"
  mkdir -p "$work/control-$package"
  dpkg-deb -e "$deb" "$work/control-$package"
  for script in postinst prerm postrm; do
    [ -x "$work/control-$package/$script" ] || fail "$package has no executable $script"
    sh -n "$work/control-$package/$script" || fail "$package: $script is not valid sh"
  done
  grep -q "systemd-sysusers .*$package.conf" "$work/control-$package/postinst" ||
    fail "$package: postinst does not run systemd-sysusers $package.conf"
  if grep -Eq 'systemctl[^|]*(enable|start|restart)|deb-systemd-invoke' \
      "$work/control-$package"/post* "$work/control-$package/prerm"; then
    fail "$package: a maintainer script enables or starts a unit"
  fi
done
check_package hansa-tools hansa
[ -f "$work/hansa-tools.files" ] &&
  grep -q '^/usr/share/doc/hansa-tools/examples/niid-bench/fmnist.toml$' "$work/hansa-tools.files" ||
  fail "hansa-tools lacks the example /usr/share/doc/hansa-tools/examples/niid-bench/fmnist.toml"
for template in slurm-array.sh slurm-submit.sh indexed-job.yaml summarize-job.yaml; do
  grep -q "^/usr/share/doc/hansa-tools/examples/niid-bench/jobs/$template\$" \
    "$work/hansa-tools.files" || fail "hansa-tools lacks the job template jobs/$template"
done

for package in hansa-client hansa-tools; do
  grep -q '^libtorch' "$work/$package.depends" || fail "$package does not depend on LibTorch"
done
if grep '^libtorch' "$work/hansa-coordinator.depends"; then
  fail "hansa-coordinator depends on LibTorch"
fi
for package in hansa-coordinator hansa-client; do
  grep -q '^libgrpc++' "$work/$package.depends" || fail "$package does not depend on libgrpc++"
done

if command -v lintian >/dev/null; then
  lintian --fail-on error --suppress-tags missing-dependency-on-libc,undeclared-elf-prerequisites \
    "$work"/*.deb \
    >"$work/lintian.txt" 2>&1 || { cat "$work/lintian.txt"; fail "lintian found errors"; }
  echo "lintian: $(grep -c '^E:' "$work/lintian.txt" || true) errors," \
    "$(grep -c '^W:' "$work/lintian.txt" || true) warnings"
  cat "$work/lintian.txt"
else
  echo "lintian not installed (scripts/install-deps.sh installs it): its check skipped"
fi
rm -rf "$work"

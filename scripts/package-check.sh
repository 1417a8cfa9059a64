#!/usr/bin/env bash
# Proves the Debian packages on a clean Debian 12 root without a compiler: mmdebstrap builds a
# minimal bookworm root from the Debian mirror, apt installs hansa-coordinator, hansa-client and
# hansa-tools into it (their Depends resolving from the mirror) with dataset-fashion-mnist, the
# systemd units and system users are checked, the root is checked to hold no compiler, and
# scripts/demo.sh runs the 3-site demo federation there from the installed /usr/bin programs
# (provision, coordinator, three sites over mutual TLS), in a network namespace of its own
# (loopback only), then checks the audit log is closed and
# verifies and each site's ledger reconciles (demo.sh does both).
#
#   scripts/package-check.sh [DEB_DIR]     DEB_DIR: the .deb files (build-package/packages,
#                                          as `make package` leaves them)
# Root only (chroot, mounts). Downloads from the Debian mirror: not part of `make test`.
# HANSA_PACKAGE_CHECK_DIR (/var/tmp/hansa-package-check) holds the root (about 1.5 GB) and the
# logs; the root is removed after a pass unless HANSA_PACKAGE_CHECK_KEEP=1.
# HANSA_DEMO_ROUNDS (3) rounds; HANSA_DEBIAN_MIRROR (http://deb.debian.org/debian).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
debs=$(cd "${1:-$repo/build-package/packages}" && pwd)
work=${HANSA_PACKAGE_CHECK_DIR:-/var/tmp/hansa-package-check}
mirror=${HANSA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
rounds=${HANSA_DEMO_ROUNDS:-3}
rootfs=$work/root
say() { echo "package-check: $*"; }
fail() { echo "package-check: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap's root mode, chroot, mounts)"
packages=()
for name in hansa-coordinator hansa-client hansa-tools; do
  deb=$(ls "$debs/${name}"_*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || fail "no ${name}_*.deb in $debs: run make package first"
  packages+=("$deb")
done
"$repo/scripts/install-deps.sh" mmdebstrap
rm -rf "$work"
mkdir -p "$work/debs"
cp "${packages[@]}" "$work/debs/"
for deb in "${packages[@]}"; do
  say "$(basename "$deb"): $(du -h "$deb" | cut -f1)  Depends: $(dpkg-deb -f "$deb" Depends)"
done

# 1. A minimal bookworm root (essential packages and apt), then the packages through apt, so
# that their dependencies come from the mirror as on a hospital's server.
start=$(date +%s)
mmdebstrap --quiet --variant=apt --mode=root bookworm "$rootfs" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb ${mirror%/debian}/debian-security bookworm-security main" >"$work/mmdebstrap.log" 2>&1 ||
  { tail -20 "$work/mmdebstrap.log"; fail "mmdebstrap failed (log: $work/mmdebstrap.log)"; }
made=$(date +%s)
size_before=$(du -sm "$rootfs" | cut -f1)
say "bookworm root made in $((made - start)) s, ${size_before} MB"

# Everything inside the root runs in its own mount and network namespaces: the mounts vanish
# with it and nothing but loopback is reachable there (apt alone runs with the host network).
. "$repo/scripts/chroot-root.sh"
in_root() {
  local net=$1
  shift
  in_debian_root "$rootfs" "$net" tmpfs "$@"
}
mkdir -p "$rootfs/opt/hansa-check/debs"
cp "$work"/debs/*.deb "$rootfs/opt/hansa-check/debs/"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
in_debs=()
for deb in "${packages[@]}"; do in_debs+=("/opt/hansa-check/debs/$(basename "$deb")"); done
in_root "" apt-get update -q >"$work/apt-install.log" 2>&1 ||
  { tail -30 "$work/apt-install.log"; fail "apt-get update failed in the root"; }
in_root "" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "${in_debs[@]}" dataset-fashion-mnist >>"$work/apt-install.log" 2>&1 ||
  { tail -30 "$work/apt-install.log"; fail "apt could not install the packages"; }
installed=$(date +%s)
size_after=$(du -sm "$rootfs" | cut -f1)
say "apt installed the packages and their dependencies in $((installed - made)) s;" \
  "root now ${size_after} MB ($((size_after - size_before)) MB more)," \
  "$(grep -c '^Setting up' "$work/apt-install.log") packages set up"

# 2. The services: the units and sysusers.d files are installed, the postinst's systemd-sysusers
# made the system users, and nothing was enabled. systemd itself cannot run in a chroot (it
# must be PID 1 of its own container), so the units are not started here; check_units.sh
# verifies them with systemd-analyze in make test.
for file in /usr/lib/systemd/system/hansa-coordinator.service \
    /usr/lib/systemd/system/hansa-client@.service /usr/lib/sysusers.d/hansa-coordinator.conf \
    /usr/lib/sysusers.d/hansa-client.conf; do
  [ -f "$rootfs$file" ] || fail "the packages did not install $file"
done
for user in hansa-coordinator hansa-site; do
  entry=$(in_root --net getent passwd "$user") || fail "the postinst made no system user $user"
  say "system user: $entry"
done
if [ -n "$(find "$rootfs/etc/systemd/system" -name 'hansa-*' 2>/dev/null)" ]; then
  fail "installing the packages enabled a unit: $(find "$rootfs/etc/systemd/system" -name 'hansa-*')"
fi
# Running the postinst again (a reinstall or upgrade) changes nothing.
cp "$rootfs/etc/passwd" "$work/passwd.before"
for package in hansa-coordinator hansa-client; do
  in_root --net "/var/lib/dpkg/info/$package.postinst" configure >>"$work/apt-install.log" 2>&1 ||
    fail "running the postinst of $package again failed"
done
cmp -s "$rootfs/etc/passwd" "$work/passwd.before" || fail "a second postinst changed /etc/passwd"
say "units in /usr/lib/systemd/system, users made by systemd-sysusers, nothing enabled"

# 3. No compiler in the root.
compilers=$(in_root --net sh -c 'for c in cc c++ gcc g++ cpp clang clang++ as ld; do
  command -v "$c" || true; done; dpkg-query -W -f "\${Package}\n" |
  grep -E "^(gcc|g\+\+|cpp|clang|binutils|libstdc\+\+-[0-9]+-dev|libc6-dev)" |
  grep -vx "gcc-[0-9]*-base" || true')
[ -z "$compilers" ] || fail "the root holds a compiler or toolchain: $compilers"
say "no compiler, assembler, linker or C/C++ headers in the root"
for program in hansa-coordinator hansa-client hansa; do
  in_root --net "$program" --version | tr '\n' ' ' | sed "s/^/package-check: /; s/ $/\n/"
done

# 4. The demo federation from the installed programs: scripts/demo.sh, with BIN pointing at a
# folder shaped like a build tree whose programs are links to /usr/bin.
mkdir -p "$rootfs/opt/hansa-check/scripts" "$rootfs/opt/hansa-check/installed"/{coordinator,client,tools}
cp "$repo/scripts/demo.sh" "$repo/scripts/federation.sh" "$rootfs/opt/hansa-check/scripts/"
ln -s /usr/bin/hansa-coordinator "$rootfs/opt/hansa-check/installed/coordinator/hansa-coordinator"
ln -s /usr/bin/hansa-client "$rootfs/opt/hansa-check/installed/client/hansa-client"
ln -s /usr/bin/hansa "$rootfs/opt/hansa-check/installed/tools/hansa"
demo_start=$(date +%s)
if ! in_root --net env HANSA_DEMO_ROUNDS="$rounds" HANSA_DEMO_DIR=/opt/hansa-check/demo-run \
    /opt/hansa-check/scripts/demo.sh installed >"$work/demo.log" 2>&1; then
  cat "$work/demo.log"
  for log in "$rootfs"/opt/hansa-check/demo-run/logs/*.log; do
    echo "--- $log"
    tail -20 "$log"
  done
  fail "the demo federation failed in the root (log: $work/demo.log)"
fi
demo_end=$(date +%s)
state=$rootfs/opt/hansa-check/demo-run/federation/coordinator/state
evaluated=$(wc -l <"$state/metrics.jsonl")
[ "$evaluated" -ge "$rounds" ] || fail "metrics.jsonl has $evaluated rows, fewer than $rounds rounds"
# demo.sh stops on a failed check; the audit log is verified here once more, from the root.
kit=/opt/hansa-check/demo-run/federation
in_root --net hansa audit verify --ca "$kit/ca/ca.pem" --certificate "$kit/coordinator/cert.pem" \
  --require-closed "$kit/coordinator/state/audit.jsonl" >"$work/audit-verify.log" 2>&1 ||
  { cat "$work/audit-verify.log"; fail "hansa audit verify refused the demo's audit log"; }
sed -n '/^round sites/,/^$/p' "$work/demo.log"
say "accuracy by round: $(sed 's/^{"round":\([0-9]*\),.*,"accuracy":\([0-9.e-]*\),"loss".*per_site.*/\1:\2/' \
  "$state/metrics.jsonl" | tr '\n' ' ')"
say "demo: $rounds rounds in $((demo_end - demo_start)) s; audit log verified and closed," \
  "the three egress ledgers reconciled, report written"
[ "${HANSA_PACKAGE_CHECK_KEEP:-0}" = 1 ] || rm -rf "$rootfs"
say "PASS in $(($(date +%s) - start)) s (logs in $work)"

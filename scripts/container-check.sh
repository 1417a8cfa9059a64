#!/usr/bin/env bash
# Checks the container images' filesystem trees without a container engine: for each role
# (coordinator, client) it builds the tree the Containerfile's runtime stage produces, an
# mmdebstrap --variant=minbase root of Debian 12 with debian:bookworm-slim's dpkg path
# excludes, then packaging/container/runtime-setup.sh in it (the very script the Containerfile
# runs: apt installs hansa-ROLE from the .deb, the user "hansa" 10001:10001, /var/lib/hansa).
# Then it checks what the Containerfile promises:
#   - USER, ENTRYPOINT and VOLUME of the role's stage name that user, binary and state path;
#   - the binary runs as UID 10001 with no capabilities and no-new-privs (`--version`);
#   - that user can write the state directory and nothing else (besides the sticky /tmp and
#     /var/tmp, which a read-only root removes); nothing outside it belongs to the user;
#   - no compiler, assembler, linker or C/C++ headers;
#   - coordinator: with the root mounted read-only, a kit (from build/tools/hansa provision)
#     mounted read-only at /etc/hansa and only /var/lib/hansa writable, the ENTRYPOINT starts,
#     listens and writes its audit log into the state directory.
# It lints the Containerfile with hadolint when one is on PATH (Debian has no Dockerfile
# linter). With HANSA_CONTAINER_RUN=1 and podman installed, it also imports the coordinator's
# tree as an image with the Containerfile's settings and runs it with --read-only --cap-drop=ALL.
#
#   scripts/container-check.sh [DEB_DIR] [ROLE...]   DEB_DIR: build-package/packages
# Root only (mmdebstrap's root mode, chroot, mounts); downloads from the Debian mirror, so not
# part of `make test`. Builds the packages with scripts/package.sh when DEB_DIR has none.
# HANSA_CONTAINER_CHECK_DIR (/var/tmp/hansa-container-check) holds the roots and logs; they are
# removed after a pass unless HANSA_CONTAINER_CHECK_KEEP=1. HANSA_DEBIAN_MIRROR as in
# scripts/package-check.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
debs=${1:-$repo/build-package/packages}
shift || true
roles=("$@")
[ ${#roles[@]} -gt 0 ] || roles=(coordinator client)
work=${HANSA_CONTAINER_CHECK_DIR:-/var/tmp/hansa-container-check}
mirror=${HANSA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
containerfile=$repo/packaging/container/Containerfile
uid=10001
say() { echo "container-check: $*"; }
fail() { echo "container-check: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap's root mode, chroot, mounts)"
if ! ls "$debs"/hansa-coordinator_*.deb >/dev/null 2>&1; then
  say "no packages in $debs: building them (scripts/package.sh)"
  "$repo/scripts/package.sh"
  debs=$repo/build-package/packages
fi
debs=$(cd "$debs" && pwd)
"$repo/scripts/install-deps.sh" mmdebstrap
start=$(date +%s)
rm -rf "$work"
mkdir -p "$work"

# 1. The Containerfile: each stage's USER, ENTRYPOINT and VOLUME, and a linter if one exists.
stage_lines() { # ROLE: the lines of that stage
  awk -v s="$1" '/^FROM /{on = ($NF == s)} on' "$containerfile"
}
for role in "${roles[@]}"; do
  lines=$(stage_lines "$role")
  [ -n "$lines" ] || fail "the Containerfile has no stage '$role'"
  grep -qx "USER $uid:$uid" <<<"$lines" || fail "stage $role does not run as USER $uid:$uid"
  grep -qx 'VOLUME \["/var/lib/hansa"\]' <<<"$lines" || fail "stage $role: no VOLUME /var/lib/hansa"
  config=site.toml
  [ "$role" = coordinator ] && config=coordinator.toml
  grep -qx "ENTRYPOINT \[\"/usr/bin/hansa-$role\", \"--config\", \"/etc/hansa/$config\", \"--state-dir\", \"/var/lib/hansa\"\]" \
    <<<"$lines" || fail "stage $role: ENTRYPOINT is not hansa-$role --config /etc/hansa/$config"
  ! grep -q '^HEALTHCHECK' <<<"$lines" || fail "stage $role has a HEALTHCHECK, but no program has one"
done
if command -v hadolint >/dev/null 2>&1; then
  hadolint "$containerfile" || fail "hadolint: $containerfile"
  say "hadolint $(hadolint --version | head -1): no findings"
else
  say "no Containerfile linter on PATH (hadolint is not packaged in Debian); not linted"
fi

# 2. The runtime trees. One bookworm-slim-like root, copied for each role.
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias')
mmdebstrap --quiet --variant=minbase --mode=root "${slim[@]}" bookworm "$work/slim" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb ${mirror%/debian}/debian-security bookworm-security main" >"$work/mmdebstrap.log" 2>&1 ||
  { tail -20 "$work/mmdebstrap.log"; fail "mmdebstrap failed (log: $work/mmdebstrap.log)"; }
say "bookworm-slim-like root (minbase) in $(($(date +%s) - start)) s, $(du -sm "$work/slim" | cut -f1) MB"

# Runs in ROOT, in mount and network namespaces of its own (net: "" = the host's, for apt).
. "$repo/scripts/chroot-root.sh"
in_root() {
  local root=$1 net=$2
  shift 2
  in_debian_root "$root" "$net" "" "$@"
}
# As the image's user, without capabilities and with no-new-privs, as the container runs.
as_user=(setpriv "--reuid=$uid" "--regid=$uid" --clear-groups --no-new-privs --inh-caps=-all
  --bounding-set=-all)

for role in "${roles[@]}"; do
  root=$work/$role
  t0=$(date +%s)
  cp -a "$work/slim" "$root"
  mkdir -p "$root/tmp/hansa-debs"
  cp "$debs"/hansa-"$role"_*.deb "$root/tmp/hansa-debs/"
  cp "$repo/packaging/container/runtime-setup.sh" "$root/usr/local/sbin/hansa-runtime-setup"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  in_root "$root" "" /usr/local/sbin/hansa-runtime-setup "$role" /tmp/hansa-debs \
    >"$work/$role-setup.log" 2>&1 ||
    { tail -30 "$work/$role-setup.log"; fail "$role: runtime-setup.sh failed in the root"; }
  rm -rf "$root/tmp/hansa-debs" "$root/usr/local/sbin/hansa-runtime-setup"
  : >"$root/etc/resolv.conf"
  size=$(du -sm --exclude=./proc --exclude=./dev "$root" | cut -f1)
  say "$role: tree built in $(($(date +%s) - t0)) s, ${size} MB," \
    "$(grep -c '^Setting up' "$work/$role-setup.log") packages set up"

  # The binary, as the user.
  who=$(in_root "$root" --net "${as_user[@]}" sh -c 'id -u; id -g; grep ^CapEff /proc/self/status')
  [ "$(echo "$who" | sed -n 1p):$(echo "$who" | sed -n 2p)" = "$uid:$uid" ] ||
    fail "$role: not running as $uid:$uid: $who"
  grep -q 'CapEff:[[:space:]]*0*$' <<<"$who" || fail "$role: capabilities left: $who"
  version=$(in_root "$root" --net "${as_user[@]}" /usr/bin/hansa-"$role" --version) ||
    fail "$role: hansa-$role --version failed as $uid"
  say "$role: as $uid:$uid without capabilities: $(echo "$version" | tr '\n' ' ')"
  [ "$(in_root "$root" --net getent passwd hansa | cut -d: -f3,4,6,7)" = \
    "$uid:$uid:/var/lib/hansa:/usr/sbin/nologin" ] || fail "$role: user hansa is not as expected"

  # Writable paths: the state directory, and nothing else the user owns or may write.
  in_root "$root" --net "${as_user[@]}" sh -c \
    'touch /var/lib/hansa/.probe && rm /var/lib/hansa/.probe' ||
    fail "$role: the user cannot write /var/lib/hansa"
  [ "$(stat -c '%u:%g %a' "$root/var/lib/hansa")" = "$uid:$uid 700" ] ||
    fail "$role: /var/lib/hansa is $(stat -c '%u:%g %a' "$root/var/lib/hansa")"
  # (find also says what it may not read; only what it prints counts)
  writable=$({ in_root "$root" --net "${as_user[@]}" find / -xdev \
    \( -path /proc -o -path /dev -o -path /sys \) -prune -o -writable -print 2>/dev/null ||
    true; } | sort)
  unexpected=$(grep -vxE '/var/lib/hansa|/tmp|/var/tmp|/run/lock|/var/lock' <<<"$writable" || true)
  [ -z "$unexpected" ] || fail "$role: the user may write: $unexpected"
  owned=$(find "$root" -xdev \( -uid $uid -o -gid $uid \) -printf '/%P\n' | grep -vx /var/lib/hansa || true)
  [ -z "$owned" ] || fail "$role: the user owns paths outside its state directory: $owned"
  others=$(find "$root" -xdev \( ! -uid 0 -o ! -gid 0 \) ! -path "$root/var/lib/hansa" \
    -printf '/%P (%u:%g)\n' | sort | tr '\n' ' ')
  say "$role: the user may write $(echo "$writable" | tr '\n' ' ')(/tmp, /var/tmp, /run/lock (/var/lock) are" \
    "the image's sticky dirs; read-only under --read-only/readOnlyRootFilesystem); paths not" \
    "root's besides the state dir: ${others:-none}"

  # No toolchain.
  compilers=$(in_root "$root" --net sh -c 'for c in cc c++ gcc g++ cpp clang clang++ as ld; do
    command -v "$c" || true; done; dpkg-query -W -f "\${Package}\n" |
    grep -E "^(gcc|g\+\+|cpp|clang|binutils|libstdc\+\+-[0-9]+-dev|libc6-dev)" |
    grep -vx "gcc-[0-9]*-base" || true')
  [ -z "$compilers" ] || fail "$role: the tree holds a compiler or toolchain: $compilers"
  say "$role: no compiler, assembler, linker or C/C++ headers;" \
    "$(in_root "$root" --net dpkg-query -W -f '${Package}\n' | wc -l) packages installed"
done

# 3. The coordinator's ENTRYPOINT in its tree as a container would run it: root read-only,
# the kit read-only at /etc/hansa, only /var/lib/hansa writable, as 10001 without capabilities,
# on loopback. It must listen and open its audit log in the state directory.
if [[ " ${roles[*]} " == *" coordinator "* ]]; then
  root=$work/coordinator
  hansa=${HANSA_TOOL:-$repo/build/tools/hansa}
  [ -x "$hansa" ] || fail "no $hansa to provision a kit with (build the hansa target)"
  "$hansa" provision --out "$work/kit" --federation container-check --coordinator coordinator:DE \
    --site a:DE --site b:FR --site c:NL --listen 0.0.0.0:50051 --host localhost \
    >"$work/provision.log" 2>&1 || { cat "$work/provision.log"; fail "hansa provision failed"; }
  kit=$work/kit/coordinator
  chown -R $uid:$uid "$kit"
  mkdir -p "$work/coordinator-state"
  chown $uid:$uid "$work/coordinator-state"
  chmod 0700 "$work/coordinator-state"
  # The program keeps this shell's PID through the execs (chroot, sh, setpriv): unshare
  # ignores SIGTERM, so the program itself is stopped.
  unshare --mount --net --fork sh -c '
    root=$1 kit=$2 state=$3; shift 3
    echo $$ >"$state.pid"
    ip link set lo up
    mount --bind "$root" "$root" && mount -o remount,bind,ro "$root"
    mount --bind "$kit" "$root/etc/hansa" && mount -o remount,bind,ro "$root/etc/hansa"
    mount --bind "$state" "$root/var/lib/hansa"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    cd / && exec chroot "$root" "$@"' run-root "$root" "$kit" "$work/coordinator-state" \
    sh -c 'cd /var/lib/hansa && exec "$@"' entrypoint "${as_user[@]}" \
    /usr/bin/hansa-coordinator --config /etc/hansa/coordinator.toml --state-dir /var/lib/hansa \
    >"$work/coordinator-run.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    grep -q 'coordinator listening on' "$work/coordinator-run.log" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
  done
  listening=$(grep 'coordinator listening on' "$work/coordinator-run.log" || true)
  kill -TERM "$(cat "$work/coordinator-state.pid")" 2>/dev/null || true
  wait $pid 2>/dev/null || true
  [ -n "$listening" ] || { cat "$work/coordinator-run.log"; fail "the coordinator did not start in its tree"; }
  [ -s "$work/coordinator-state/audit.jsonl" ] || fail "no audit.jsonl in the state directory"
  say "coordinator: ENTRYPOINT on a read-only root, kit read-only, as $uid: ${listening#*] };" \
    "state written: $(cd "$work/coordinator-state" && ls | tr '\n' ' ')"
  ! grep -qi 'read-only file system' "$work/coordinator-run.log" ||
    fail "the coordinator tried to write outside its state directory: $(grep -i 'read-only' "$work/coordinator-run.log")"
fi

# 4. Optionally in a real engine: the tree imported with the Containerfile's settings.
if [ "${HANSA_CONTAINER_RUN:-0}" = 1 ] && [[ " ${roles[*]} " == *" coordinator "* ]]; then
  command -v podman >/dev/null || fail "HANSA_CONTAINER_RUN=1 needs podman"
  tar -C "$work/coordinator" --exclude=./proc/* --exclude=./dev/* -c . |
    podman import --change 'USER 10001:10001' --change 'WORKDIR /var/lib/hansa' \
      --change 'VOLUME ["/var/lib/hansa"]' --change 'EXPOSE 50051/tcp' \
      --change 'ENTRYPOINT ["/usr/bin/hansa-coordinator", "--config", "/etc/hansa/coordinator.toml", "--state-dir", "/var/lib/hansa"]' \
      - localhost/hansa-coordinator-check >/dev/null
  rm -rf "$work/podman-state" && mkdir -p "$work/podman-state" && chown $uid:$uid "$work/podman-state"
  podman run --rm localhost/hansa-coordinator-check --version >"$work/podman-version.log" 2>&1 || {
    cat "$work/podman-version.log"
    podman rmi localhost/hansa-coordinator-check >/dev/null
    fail "podman imports the tree but cannot run it here (a sandbox without setrlimit fails in crun)"
  }
  podman run -d --name hansa-coordinator-check --read-only --cap-drop=ALL \
    --security-opt=no-new-privileges --network=none \
    -v "$kit:/etc/hansa:ro" -v "$work/podman-state:/var/lib/hansa" \
    localhost/hansa-coordinator-check >/dev/null
  for _ in $(seq 1 60); do
    podman logs hansa-coordinator-check 2>&1 | grep -q 'coordinator listening on' && break
    sleep 1
  done
  listening=$(podman logs hansa-coordinator-check 2>&1 | grep 'coordinator listening on' || true)
  podman logs hansa-coordinator-check >"$work/podman-run.log" 2>&1 || true
  podman rm -f hansa-coordinator-check >/dev/null
  podman rmi localhost/hansa-coordinator-check >/dev/null
  [ -n "$listening" ] || { cat "$work/podman-run.log"; fail "the coordinator did not start under podman"; }
  say "podman $(podman --version | cut -d' ' -f3): --read-only --cap-drop=ALL: ${listening#*] }"
fi

[ "${HANSA_CONTAINER_CHECK_KEEP:-0}" = 1 ] || rm -rf "$work/slim" "$work/coordinator" "$work/client"
say "PASS in $(($(date +%s) - start)) s (logs in $work)"

#!/usr/bin/env bash
# check_units.sh SOURCE_DIR WORK_DIR: the systemd units of packaging/systemd/ pass
# `systemd-analyze verify` and keep their hardening, so dropping a setting fails here.
#
# verify wants each ExecStart program to exist: the units are copied into WORK_DIR with
# /usr/bin/ pointed at stub programs there (the template as the instance hansa-client@study),
# and their man: documentation is looked up in the project's own pages (packaging/man).
# No network, no running systemd; a few seconds.
set -euo pipefail
src=$(cd "$1" && pwd)
work=$2
rm -rf "$work"
mkdir -p "$work/bin" "$work/man/man1"
work=$(cd "$work" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (package systemd)"

units=$src/packaging/systemd
for program in hansa-coordinator hansa-client; do
  printf '#!/bin/sh\nexit 0\n' >"$work/bin/$program"
  chmod +x "$work/bin/$program"
done
cp "$src"/packaging/man/*.1 "$work/man/man1/"
sed "s|/usr/bin/|$work/bin/|g" "$units/hansa-coordinator.service" >"$work/hansa-coordinator.service"
sed "s|/usr/bin/|$work/bin/|g" "$units/hansa-client@.service" >"$work/hansa-client@study.service"
man=yes
command -v man >/dev/null || man=no
for unit in hansa-coordinator.service hansa-client@study.service; do
  if ! MANPATH=$work/man systemd-analyze verify --man=$man "$work/$unit" >"$work/verify.log" 2>&1 ||
    [ -s "$work/verify.log" ]; then
    cat "$work/verify.log"
    fail "systemd-analyze verify $unit"
  fi
  echo "$unit: systemd-analyze verify passed"
done

# key=value settings a unit must hold, exactly, as the key's last assignment (a later line
# would override it); SystemCallFilter= lines add up, so each must only be present.
require() {
  local unit=$1 line key last
  shift
  for line in "$@"; do
    key=${line%%=*}
    if [ "$key" = SystemCallFilter ]; then
      grep -qxF -- "$line" "$units/$unit" || fail "$unit lacks '$line'"
      continue
    fi
    last=$(sed -n "s/^\($key=\)/\1/p" "$units/$unit" | tail -1)
    [ "$last" = "$line" ] || fail "$unit: '${last:-no $key=}' where '$line' is required"
  done
}
hardening=(
  NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes
  PrivateMounts=yes
  ProtectProc=invisible CapabilityBoundingSet= AmbientCapabilities=
  "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" SystemCallArchitectures=native
  SystemCallFilter=@system-service SystemCallErrorNumber=EPERM LockPersonality=yes
  ProtectKernelTunables=yes ProtectKernelModules=yes ProtectKernelLogs=yes
  ProtectControlGroups=yes ProtectClock=yes ProtectHostname=yes RestrictNamespaces=yes
  RestrictRealtime=yes RestrictSUIDSGID=yes RemoveIPC=yes UMask=0077 StateDirectoryMode=0700
  Restart=on-failure RestartPreventExitStatus=2)
require hansa-coordinator.service "${hardening[@]}" User=hansa-coordinator \
  StateDirectory=hansa-coordinator MemoryDenyWriteExecute=yes \
  "SystemCallFilter=~@privileged @resources" \
  "ExecStart=/usr/bin/hansa-coordinator --config /etc/hansa/coordinator/coordinator.toml --state-dir /var/lib/hansa-coordinator"
require hansa-client@.service "${hardening[@]}" User=hansa-site StateDirectory=hansa/%i \
  "SystemCallFilter=~@privileged" \
  "ExecStart=/usr/bin/hansa-client --config /etc/hansa/sites/%i/site.toml --state-dir /var/lib/hansa/%i"
# LibTorch's oneDNN kernels make JIT code executable (mprotect with PROT_EXEC), which
# MemoryDenyWriteExecute forbids, and set_mempolicy (@resources) places their memory.
if grep -q '^MemoryDenyWriteExecute=yes' "$units/hansa-client@.service"; then
  fail "hansa-client@.service sets MemoryDenyWriteExecute=yes: LibTorch's JIT kernels would fail"
fi
# Nothing may write outside the state directory.
for unit in hansa-coordinator.service hansa-client@.service; do
  if grep -Eq '^(ReadWritePaths|LogsDirectory|CacheDirectory|RuntimeDirectory)=' "$units/$unit"; then
    fail "$unit has a writable path besides its StateDirectory"
  fi
done
# Each unit's system user is the one its sysusers.d file creates.
grep -Eq '^u hansa-coordinator ' "$src/packaging/sysusers/hansa-coordinator.conf" ||
  fail "packaging/sysusers/hansa-coordinator.conf creates no user hansa-coordinator"
grep -Eq '^u hansa-site ' "$src/packaging/sysusers/hansa-client.conf" ||
  fail "packaging/sysusers/hansa-client.conf creates no user hansa-site"
# and systemd-sysusers makes them as system users without a login, on an empty root.
mkdir -p "$work/root/etc"
for conf in hansa-coordinator hansa-client; do
  systemd-sysusers --root="$work/root" "$src/packaging/sysusers/$conf.conf" >"$work/sysusers.log" 2>&1 ||
    { cat "$work/sysusers.log"; fail "systemd-sysusers refused packaging/sysusers/$conf.conf"; }
done
for user in hansa-coordinator hansa-site; do
  entry=$(grep "^$user:" "$work/root/etc/passwd") || fail "systemd-sysusers made no user $user"
  uid=$(echo "$entry" | cut -d: -f3)
  [ "$uid" -lt 1000 ] || fail "$user has uid $uid, not a system user's"
  echo "$entry" | grep -q ':/usr/sbin/nologin$' || fail "$user may log in: $entry"
  grep -q "^$user:" "$work/root/etc/group" || fail "systemd-sysusers made no group $user"
done
echo "both units hold their hardening; systemd-sysusers creates hansa-coordinator and hansa-site"
rm -rf "$work"

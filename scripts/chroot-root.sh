# Sourced by scripts/package-check.sh and scripts/container-check.sh: runs a command in a
# Debian root made by mmdebstrap, as root, in mount (and optionally network) namespaces of its
# own, so /proc, /dev (and a tmpfs /tmp) mounted there vanish with it.
#
#   in_debian_root ROOT NET TMP COMMAND...
#     NET: "--net" for a network namespace with only loopback up, "" for the host's network
#          (apt needs the mirror); TMP: "tmpfs" mounts a fresh /tmp, "" keeps the root's.

in_debian_root() {
  local root=$1 net=$2 tmp=$3
  shift 3
  unshare --mount $net --fork sh -c '
    set -e
    root=$1 tmp=$2; shift 2
    if ip link show lo >/dev/null 2>&1; then ip link set lo up; fi
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    if [ "$tmp" = tmpfs ]; then mount -t tmpfs tmpfs "$root/tmp"; fi
    exec chroot "$root" "$@"' in-root "$root" "$tmp" "$@"
}

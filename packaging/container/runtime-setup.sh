#!/bin/sh
# The runtime stage of packaging/container/Containerfile, as one script that both the
# Containerfile (RUN) and scripts/container-check.sh (in an mmdebstrap root) run, so the tree
# the check inspects is the one the image holds:
#   runtime-setup.sh ROLE DEB_DIR     ROLE: coordinator or client
# installs hansa-ROLE from DEB_DIR with apt (its dependencies from the Debian mirror, no
# recommends), empties apt's caches, and creates the role's user: "hansa", UID and GID 10001
# (fixed, so volume ownership and Kubernetes' runAsUser/fsGroup can name it), no login shell,
# home and state directory /var/lib/hansa (0700, the only path it owns). The kit is mounted at
# /etc/hansa and the data (client) at /data, both read-only; the script creates the empty
# mount points, owned by root.
set -eu
role=$1
debs=$2
uid=10001
case "$role" in
  coordinator | client) ;;
  *) echo "runtime-setup: unknown role '$role' (coordinator or client)" >&2; exit 2 ;;
esac
deb=$(ls "$debs"/hansa-"$role"_*.deb)
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "$deb"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/cache/debconf/*-old
groupadd --system --gid "$uid" hansa
useradd --system --uid "$uid" --gid hansa --home-dir /var/lib/hansa --no-create-home \
  --shell /usr/sbin/nologin --comment "Hansa $role" hansa
install -d -o hansa -g hansa -m 0700 /var/lib/hansa
install -d -o root -g root -m 0755 /etc/hansa
if [ "$role" = client ]; then install -d -o root -g root -m 0755 /data; fi
/usr/bin/hansa-"$role" --version

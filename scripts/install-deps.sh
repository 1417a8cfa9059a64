#!/usr/bin/env bash
# Installs the Debian 12 packages Hansa needs, only those missing, non-interactively.
# Runs as root or through sudo. Does nothing (and needs no privileges) when all are present.
set -euo pipefail

packages=(
  build-essential cmake make pkg-config git ccache
  libtorch-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libssl-dev openssl zlib1g-dev libpng-dev libjpeg62-turbo-dev
  libdcmtk-dev dcmtk
  libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev nlohmann-json3-dev libsqlite3-dev
  dataset-fashion-mnist
  libgloo-dev
  chromium chromium-driver
  lintian systemd
  tinyproxy
  libcivetweb-dev prometheus-cpp-dev
)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "hansa: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "hansa: these packages are missing and this user is not root and has no sudo:" >&2
  echo "       ${missing[*]}" >&2
  echo "       ask an administrator to run: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

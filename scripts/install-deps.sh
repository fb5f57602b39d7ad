#!/usr/bin/env bash
# Installs everything sluice needs to build and test on Debian 12 (run as root, or with sudo).
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libuv1-dev libtomlplusplus-dev liblmdb-dev libzstd-dev librdkafka-dev libcurl4-openssl-dev
  libsimdjson-dev libpcre2-dev libhttp-parser-dev libcli11-dev libspdlog-dev libsystemd-dev
  libssl-dev zlib1g-dev catch2
  prometheus curl python3 python3-avro openssl clang-format systemd
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

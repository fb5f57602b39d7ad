#!/usr/bin/env bash
# Installs everything sluice needs to build and test on Debian 12 (run as root, or with sudo).
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config dpkg-dev lld
  libuv1-dev libtomlplusplus-dev liblmdb-dev libzstd-dev librdkafka-dev libcurl4-openssl-dev
  libsimdjson-dev libpcre2-dev libhttp-parser-dev libcli11-dev libspdlog-dev libsystemd-dev
  libssl-dev zlib1g-dev catch2
  prometheus curl python3 python3-avro openssl clang-format systemd
  influxdb nghttp2-server tmux python3-yaml zstd
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # The tests start their own influxd (and other peers) on free ports: installing a package must
  # not start its service. Without a policy-rc.d (a systemd machine), deny starts while installing.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || { [ -z "$own_policy" ] || $sudo rm -f "$policy"; exit 1; }
  [ -z "$own_policy" ] || $sudo rm -f "$policy"
fi

#!/bin/sh
# Unpacks Debian's rsyslog (with omelasticsearch, its only HTTP output) and syslog-ng (with the
# libraries they need that this machine lacks) into DIR (default /tmp/sluice-peers) for
# bench/run_all.sh's baselines, without installing them: both packages conflict with each other
# (each Provides system-log-daemon) and would replace the machine's logger. Needs the bookworm
# apt sources; nothing is started or configured.
#   bench/fetch_peers.sh [DIR]
set -eu
dir=${1:-/tmp/sluice-peers}
mkdir -p "$dir/debs"
cd "$dir/debs"
apt-get download rsyslog rsyslog-elasticsearch libestr0 libfastjson4 liblognorm5 \
  syslog-ng-core syslog-ng-mod-http libivykis0 libnet1 libwrap0
for deb in ./*.deb; do dpkg-deb -x "$deb" "$dir"; done
echo "unpacked into $dir: $(ls "$dir/usr/sbin" | tr '\n' ' ')"

#!/bin/sh
# Runs every benchmark scenario and prints one table; writes bench/RESULTS.md. See bench/run_all.py.
#   bench/run_all.sh [--quick] [--lines N] [--runs R] [--only a,b] [--peers DIR]
# rsyslog and syslog-ng rows need bench/fetch_peers.sh first (Debian's packages, unpacked).
# --only keys also pick the figures after the table: "RSS" (idle, dead sink), "lmdb channel"
# (bench/lmdb_bench.cc), "backlog" (the whole agent's start with a 10 GB lmdb backlog).
exec /usr/bin/python3 "$(dirname "$0")/run_all.py" "$@"

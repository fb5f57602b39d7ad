#!/bin/sh
# Runs every benchmark scenario and prints one table; writes bench/RESULTS.md. See bench/run_all.py.
#   bench/run_all.sh [--quick] [--lines N] [--runs R] [--only a,b] [--peers DIR] [--strict]
# rsyslog and syslog-ng rows need bench/fetch_peers.sh first (Debian's packages, unpacked); without
# them their rows say "not run".
# --only keys also pick the figures after the table: "RSS" (idle, dead sink), "lmdb channel"
# (bench/lmdb_bench.cc), "backlog" (the whole agent's start with a 10 GB lmdb backlog).
# Rows with one of issue 16's targets say "met" or "**missed**"; the last lines count them. Exit
# status 1 when a scenario failed; with --strict also when a target is missed or a row did not run.
# --self-test checks the table's verdicts on fake results (no build needed).
exec /usr/bin/python3 "$(dirname "$0")/run_all.py" "$@"

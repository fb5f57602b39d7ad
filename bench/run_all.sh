#!/bin/sh
# Runs every benchmark scenario and prints one table; writes bench/RESULTS.md. See bench/run_all.py.
#   bench/run_all.sh [--quick] [--lines N] [--runs R] [--only a,b] [--peers DIR]
# rsyslog and syslog-ng rows need bench/fetch_peers.sh first (Debian's packages, unpacked).
exec /usr/bin/python3 "$(dirname "$0")/run_all.py" "$@"

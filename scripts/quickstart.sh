#!/usr/bin/env bash
# Installs dependencies, builds sluice and runs the PV/UV quickstart (conf/quickstart.toml) until
# Ctrl-C: a generated access log, followed by taildir, counted per page every 5 seconds by SQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release --target sluice
exec ./build/release/agent/sluice run -c conf/quickstart.toml

#!/usr/bin/env bash
# Installs dependencies, builds sluice and runs the self-contained example until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release --target sluice
exec ./build/release/agent/sluice run -c conf/example.toml

#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 30) on a copy of its corpus in tests/fuzz/corpus. A crash, leak or
# sanitizer report fails the run and leaves the reproducer in build/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
targets=(fuzz_avro fuzz_http_body fuzz_parse fuzz_sketch fuzz_sql fuzz_config
  fuzz_lmdb_record fuzz_lmdb_salvage fuzz_answers fuzz_ilp)
cmake --preset fuzz >/dev/null
# Builds exactly the targets run below (the preset's own list once lacked one).
cmake --build --preset fuzz --target "${targets[@]}"
mkdir -p build/fuzz/artifacts
for target in "${targets[@]}"; do
  work=$(mktemp -d)
  cp tests/fuzz/corpus/"$target"/* "$work"/
  echo "fuzz: $target for ${seconds}s"
  build/fuzz/tests/fuzz/"$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/"$target"- \
    "$work" 2>&1 | tail -n 12
  rm -rf "$work"
done

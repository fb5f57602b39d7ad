#!/bin/sh
# Checks the shipped unit with systemd's own tools: `systemd-analyze verify` must print nothing,
# and `systemd-analyze security --offline=true` must score 2.5 or better, alone and with each
# drop-in of systemd/drop-ins. Usage: check_unit.sh SOURCE_DIR SLUICE_BINARY
set -eu
src=$1
bin=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/unit"
sed "s#/usr/bin/sluice#$bin#g" "$src/systemd/sluice.service" > "$tmp/unit/sluice.service"
out=$(systemd-analyze verify "$tmp/unit/sluice.service" 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "systemd-analyze verify: $out"; exit 1; }
score() {
  systemd-analyze security --offline=true "$1" 2>&1 |
    sed -n 's/.*Overall exposure level for sluice.service: \([0-9.]*\).*/\1/p'
}
fail=0
check() {
  s=$(score "$1")
  [ -n "$s" ] || { echo "$2: no score"; systemd-analyze security --offline=true "$1"; exit 1; }
  if awk -v s="$s" 'BEGIN { exit !(s <= 2.5) }'; then
    echo "$2: exposure $s (at most 2.5)"
  else
    echo "$2: exposure $s, more than 2.5"
    fail=1
  fi
}
check "$tmp/unit/sluice.service" "sluice.service"
for d in "$src"/systemd/drop-ins/*.conf; do
  [ -e "$d" ] || continue
  mkdir -p "$tmp/$(basename "$d")"
  { cat "$tmp/unit/sluice.service"; echo; cat "$d"; } > "$tmp/$(basename "$d")/sluice.service"
  check "$tmp/$(basename "$d")/sluice.service" "sluice.service + $(basename "$d")"
done
exit $fail

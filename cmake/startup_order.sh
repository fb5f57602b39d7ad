#!/usr/bin/env bash
# Writes cmake/startup_order.txt: the functions of the sluice binary that run from start-up through
# ten seconds of idling (taildir on an empty directory -> memory -> null, with the admin endpoint
# scraped, as bench/run_all.py and tests/integration/idle_rss_test.cc measure it), one mangled
# name per line. The release link (SLUICE_STATIC_CXX) places them first and together, so the pages
# an idle agent touches, and the kernel's fault-around beside them, hold only code it runs. A
# stale list costs resident memory, not correctness (functions it does not name go after it);
# tests/integration/idle_rss_test.cc says when it is time to run this again.
#   cmake/startup_order.sh build/release/agent/sluice
# Needs valgrind (callgrind) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(readlink -f "${1:-build/release/agent/sluice}")
out=cmake/startup_order.txt
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/empty" "$dir/data"
cat > "$dir/idle.toml" <<TOML
[agent]
name = "idle"
data_dir = "$dir/data"
admin = "127.0.0.1:0"
shutdown_timeout = "5s"
[sources.t]
type = "taildir"
paths = ["$dir/empty/*.log"]
channel = "buf"
[channels.buf]
type = "memory"
max_bytes = "64MiB"
[sinks.out]
type = "null"
channel = "buf"
TOML
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/cg.out" \
  "$binary" run -c "$dir/idle.toml" > "$dir/log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$dir/data/admin.addr" ] && break; sleep 0.3; done
admin=$(cat "$dir/data/admin.addr")
for _ in $(seq 20); do
  curl -fsS "$admin/metrics" > /dev/null
  curl -fsS "$admin/healthz" > /dev/null
  curl -fsS "$admin/readyz" > /dev/null
  sleep 0.5
done
# A dump, then kill -9: the shutdown path is not idle code.
callgrind_control -d "$pid" > /dev/null 2>&1
for _ in $(seq 50); do ls "$dir"/cg.out.* > /dev/null 2>&1 && break; sleep 0.2; done
sleep 1
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
python3 - "$dir"/cg.out.* "$binary" > "$out" <<'PY'
import re, sys
# callgrind names objects and functions once ("fn=(12) name") and by number after.
pat = re.compile(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")
binary = sys.argv[-1]
obs, fns, current, seen = {}, {}, None, []
for path in sys.argv[1:-1]:
    for line in open(path, errors="replace"):
        m = pat.match(line.rstrip("\n"))
        if not m:
            continue
        kind, num, name = m.groups()
        table = obs if kind.endswith("ob") else fns
        if name:
            table[num] = name
        if kind == "ob":
            current = obs.get(num)
        elif kind == "fn" and current == binary:
            # "name'2" is callgrind's mark for a recursion level, not part of the symbol.
            seen.append(re.sub(r"'\d+$", "", fns[num]))
# Addresses callgrind could not name are no symbols.
print("\n".join(n for n in dict.fromkeys(seen) if not n.startswith("0x")))
PY
echo "$out: $(wc -l < "$out") functions"

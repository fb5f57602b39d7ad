#!/usr/bin/python3
"""stdin -> memory -> datahub with 200-byte lines against the local DataHub of
tests/support/datahub_peer.py (count-only), beside stdin -> memory -> null in the same run.

The python server is the bottleneck for wall time, so the figure that matters is sluice's own CPU
seconds (user + system of the sluice process, measured by bench/sluice_measure): records per
CPU-second. Usage:
  bench/datahub_bench.py [--lines N] [--runs R] [--compression none|deflate]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__ in the tree
sys.path.insert(0, os.path.join(ROOT, "bench"))
from stdin_null import make_input, measure  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compression", default="none", choices=["none", "deflate"])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--measure", default=os.path.join(ROOT, "build/release/bench/sluice_measure"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        data = os.path.join(tmp, "input.log")
        make_input(data, args.lines)
        size = os.path.getsize(data)
        addr_file = os.path.join(tmp, "peer.addr")
        peer = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "tests/support/datahub_peer.py"),
                                 "--addr-file", addr_file, "--count-only", "--shards", "4"])
        try:
            for _ in range(100):
                if os.path.exists(addr_file):
                    break
                time.sleep(0.05)
            address = open(addr_file).read().strip()

            def stats():
                with urllib.request.urlopen(f"http://{address}/_stats") as r:
                    return json.load(r)

            confs = {}
            for name in ("stdin_null", "stdin_datahub"):
                with open(os.path.join(ROOT, f"bench/conf/{name}.toml")) as f:
                    text = f.read().replace("@DATA_DIR@", os.path.join(tmp, "data-" + name))
                text = text.replace("@ENDPOINT@", f"http://{address}").replace("@COMPRESSION@", args.compression)
                confs[name] = os.path.join(tmp, name + ".toml")
                with open(confs[name], "w") as f:
                    f.write(text)

            print(f"input: {args.lines} lines of 200 bytes, {size / 1e6:.1f} MB; compression {args.compression}; "
                  f"best of {args.runs} runs (by sluice CPU seconds)")
            print(f"{'pipeline':<30}{'wall s':>8}{'CPU s':>8}{'records/CPU-s':>15}{'peak RSS MB':>13}")
            for name, label in (("stdin_null", "sluice stdin->memory->null"),
                                ("stdin_datahub", "sluice stdin->memory->datahub")):
                best = None
                for _ in range(args.runs):
                    before = stats()["records"]
                    err = os.path.join(tmp, "stderr")
                    result = measure(args.measure, [args.binary, "run", "-c", confs[name]], data, err)
                    log = open(err).read()
                    m = re.search(r"source in: (\d+) events", log)
                    if not m or int(m.group(1)) != args.lines:
                        sys.exit("sluice did not report every line read:\n" + log)
                    if name == "stdin_datahub":
                        got = stats()["records"] - before
                        if got != args.lines:
                            sys.exit(f"DataHub accepted {got} records, not {args.lines}:\n" + log)
                    if best is None or result[1] < best[1]:
                        best = result
                wall, cpu, rss = best
                print(f"{label:<30}{wall:>8.2f}{cpu:>8.3f}{args.lines / cpu:>15,.0f}{rss:>13.1f}")
            s = stats()
            if s["signature_failures"] or s["bad_requests"]:
                sys.exit(f"the peer refused requests: {s}")
        finally:
            peer.terminate()
            peer.wait()


if __name__ == "__main__":
    main()

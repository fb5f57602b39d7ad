#!/usr/bin/python3
"""stdin -> memory -> null with 200-byte lines, beside `wc -l` on the same file in the same run.

Prints lines/s, MB/s, CPU seconds and peak RSS for both. Usage:
  bench/stdin_null.py [--lines N] [--binary build/release/agent/sluice] [--runs R]
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_input(path, lines):
    # 199 printable bytes + newline = 200 bytes per line, with a sequence number in front.
    filler = "x" * 200
    with open(path, "w") as f:
        chunk = []
        for i in range(lines):
            head = f"{i:012d} GET /api/v1/items?id={i % 9973} HTTP/1.1 200 "
            chunk.append(head + filler[: 199 - len(head)] + "\n")
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))


def measure(measure_bin, argv, stdin_path, stderr_path):
    out = subprocess.run([measure_bin, stdin_path, stderr_path] + argv, check=True, capture_output=True, text=True)
    wall, cpu, rss_kib, code = out.stdout.split()
    if int(code) != 0:
        sys.exit(f"{argv[0]} exited with {code}: " + open(stderr_path).read())
    return float(wall), float(cpu), int(rss_kib) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--measure", default=os.path.join(ROOT, "build/release/bench/sluice_measure"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        data = os.path.join(tmp, "input.log")
        make_input(data, args.lines)
        size = os.path.getsize(data)
        conf = os.path.join(tmp, "bench.toml")
        with open(os.path.join(ROOT, "bench/conf/stdin_null.toml")) as f:
            text = f.read().replace("@DATA_DIR@", os.path.join(tmp, "data"))
        with open(conf, "w") as f:
            f.write(text)

        print(f"input: {args.lines} lines of 200 bytes, {size / 1e6:.1f} MB (page cache warm); best of {args.runs} runs")
        print(f"{'program':<28}{'wall s':>8}{'lines/s':>14}{'MB/s':>9}{'CPU s':>8}{'MB/CPU-s':>10}{'peak RSS MB':>13}")
        rows = [("wc -l", ["wc", "-l"], False), ("sluice stdin->memory->null", [args.binary, "run", "-c", conf], True)]
        for name, argv, is_sluice in rows:
            best = None
            for _ in range(args.runs):
                err = os.path.join(tmp, "stderr")
                result = measure(args.measure, argv, data, err)
                if is_sluice:
                    log = open(err).read()
                    m = re.search(r"source in: (\d+) events", log)
                    if not m or int(m.group(1)) != args.lines:
                        sys.exit("sluice did not report every line read:\n" + log)
                if best is None or result[0] < best[0]:
                    best = result
            wall, cpu, rss = best
            print(f"{name:<28}{wall:>8.3f}{args.lines / wall:>14,.0f}{size / 1e6 / wall:>9.1f}{cpu:>8.3f}"
                  f"{size / 1e6 / cpu if cpu else float('inf'):>10.1f}{rss:>13.1f}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Parsing cost: stdin -> memory -> null with `format` = raw, json (all fields), json (one field),
regex (the ready "combined" pattern) and logfmt, on ~200-byte lines, in the same run.

Prints events/s, MB/s, CPU seconds and events per CPU-second for each, beside the raw path on the
same input, and `wc -l` as the floor. A run fails if any line did not parse (on_parse_error =
"drop" and the events counted must equal the lines). Usage:
  bench/parse_bench.py [--lines N] [--runs R] [--binary build/release/agent/sluice]
"""
import argparse
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from stdin_null import measure  # noqa: E402
EVENTS = ["login", "logout", "chat", "levelup", "purchase"]


def pad(line, width=199):
    return line + "\n" if len(line) >= width else None


def make_json(path, n):
    with open(path, "w") as f:
        out = []
        for i in range(n):
            head = (f'{{"create_time":"2025-06-24 20:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}",'
                    f'"event":"{EVENTS[i % 5]}","game_id":"g{i % 7}","role":"warrior","server_id":"s{i % 50}",'
                    f'"uid":{148950000 + i % 100000},"msg":"')
            out.append(head + "x" * (199 - len(head) - 2) + '"}\n')
            if len(out) == 10000:
                f.write("".join(out))
                out = []
        f.write("".join(out))


def make_combined(path, n):
    with open(path, "w") as f:
        out = []
        for i in range(n):
            head = (f'10.{i % 256}.{(i // 256) % 256}.7 - - [24/Jun/2025:14:30:{i % 60:02d} +0200] '
                    f'"GET /api/v1/items?id={i % 9973} HTTP/1.1" {200 if i % 10 else 500} {i % 5000} '
                    f'"https://example.com/" "')
            out.append(head + "Mozilla/5.0 " + "x" * (199 - len(head) - 13) + '"\n')
            if len(out) == 10000:
                f.write("".join(out))
                out = []
        f.write("".join(out))


def make_logfmt(path, n):
    with open(path, "w") as f:
        out = []
        for i in range(n):
            head = (f'ts=2025-06-24T12:30:{i % 60:02d}Z level=info event={EVENTS[i % 5]} uid={i % 100000} '
                    f'path=/api/v1/items duration_ms={i % 300} msg="')
            out.append(head + "y" * (199 - len(head) - 1) + '"\n')
            if len(out) == 10000:
                f.write("".join(out))
                out = []
        f.write("".join(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--measure", default=os.path.join(ROOT, "build/release/bench/sluice_measure"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-parse-bench-") as tmp:
        inputs = {"json": os.path.join(tmp, "json.log"), "combined": os.path.join(tmp, "access.log"),
                  "logfmt": os.path.join(tmp, "logfmt.log")}
        make_json(inputs["json"], args.lines)
        make_combined(inputs["combined"], args.lines)
        make_logfmt(inputs["logfmt"], args.lines)
        with open(os.path.join(ROOT, "bench/conf/stdin_parse_null.toml")) as f:
            template = f.read().replace("@DATA_DIR@", os.path.join(tmp, "data"))

        def conf(name, keys):
            path = os.path.join(tmp, name + ".toml")
            with open(path, "w") as f:
                f.write(template.replace("@FORMAT@", keys))
            return path

        rows = [
            ("wc -l (json input)", "json", ["wc", "-l"]),
            ("raw (json input)", "json", None, ""),
            ("json, all 7 fields", "json", None, 'format = "json"\non_parse_error = "drop"'),
            ("json, one field", "json", None, 'format = "json"\nfields = ["event"]\non_parse_error = "drop"'),
            ("json + event time", "json", None,
             'format = "json"\non_parse_error = "drop"\n'
             'timestamp = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", timezone = "Asia/Shanghai" }'),
            ("raw (access log)", "combined", None, ""),
            ("regex combined", "combined", None, 'format = "regex"\npattern = "combined"\non_parse_error = "drop"'),
            ("raw (logfmt input)", "logfmt", None, ""),
            ("logfmt", "logfmt", None, 'format = "logfmt"\non_parse_error = "drop"'),
        ]
        print(f"input: {args.lines} lines of ~200 bytes per format (page cache warm); best of {args.runs} runs")
        print(f"{'pipeline':<24}{'wall s':>8}{'events/s':>13}{'MB/s':>8}{'CPU s':>8}{'events/CPU-s':>14}{'RSS MB':>8}")
        for row in rows:
            name, kind = row[0], row[1]
            data = inputs[kind]
            size = os.path.getsize(data)
            if row[2] is not None:
                argv, is_sluice = row[2], False
            else:
                argv, is_sluice = [args.binary, "run", "-c", conf(name.replace(" ", "_").replace(",", ""), row[3])], True
            best = None
            for _ in range(args.runs):
                err = os.path.join(tmp, "stderr")
                result = measure(args.measure, argv, data, err)
                if is_sluice:
                    log = open(err).read()
                    m = re.search(r"source in: (\d+) events", log)
                    if not m or int(m.group(1)) != args.lines:
                        sys.exit(f"{name}: not every line was parsed and delivered:\n" + log[-2000:])
                if best is None or result[1] < best[1]:
                    best = result
            wall, cpu, rss = best
            print(f"{name:<24}{wall:>8.3f}{args.lines / wall:>13,.0f}{size / 1e6 / wall:>8.0f}{cpu:>8.3f}"
                  f"{args.lines / cpu if cpu else float('inf'):>14,.0f}{rss:>8.1f}")


if __name__ == "__main__":
    main()

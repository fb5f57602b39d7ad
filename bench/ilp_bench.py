#!/usr/bin/python3
"""file (JSON lines, 200 bytes, event time parsed) -> memory -> ilp sink over HTTP to a fast local
receiver (a second sluice: http source -> memory -> null, which answers 200 per request), beside
stdin -> memory -> null on the same file in the same run. Prints rows/s, CPU seconds and peak RSS
of the sending agent (and the receiver's), and rows per CPU-second of the sender.
  bench/ilp_bench.py [--rows 1000000] [--binary ...]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from taildir_null import metric, proc_cpu_rss  # noqa: E402
from tcp_bench import baseline, print_header, print_row, run_agent  # noqa: E402


def make_json_input(path, rows):
    # Scenario 2's events padded to 200 bytes with a field that is not sent.
    events = ["login", "logout", "chat", "levelup"]
    with open(path, "w") as f:
        chunk = []
        for i in range(rows):
            ms = i % 1000
            s = (i // 1000) % 60
            head = ('{"create_time":"2025-06-24 20:%02d:%02d.%03d","event":"%s","game_id":"g%d",'
                    '"role":"warrior","server_id":"s%d","uid":%d,"pad":"' %
                    ((i // 60000) % 60, s, ms, events[i % 4], i % 7, i % 50, 148950000 + i))
            chunk.append(head + "x" * (199 - len(head) - 2) + '"}\n')
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))


def wait_file(path, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and open(path).read().endswith("\n"):
            return open(path).read().strip()
        time.sleep(0.01)
    sys.exit(f"{path} did not appear")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--measure", default=os.path.join(ROOT, "build/release/bench/sluice_measure"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-ilp-bench-") as tmp:
        os.makedirs(os.path.join(tmp, "logs"))
        data = os.path.join(tmp, "logs", "events.log")
        make_json_input(data, args.rows)
        size = os.path.getsize(data)
        rconf = os.path.join(tmp, "receiver.toml")
        with open(rconf, "w") as f:
            f.write(f"""[agent]
data_dir = "{tmp}/r"
admin = "127.0.0.1:0"
[sources.write]
type = "http"
listen = "127.0.0.1:0"
channel = "buf"
[channels.buf]
type = "memory"
max_events = 50000
[sinks.discard]
type = "null"
channel = "buf"
""")
        receiver = subprocess.Popen([args.binary, "run", "-c", rconf], stderr=subprocess.DEVNULL)
        radmin = wait_file(f"{tmp}/r/admin.addr")
        raddr = wait_file(f"{tmp}/r/write.addr")
        conf = os.path.join(tmp, "ilp.toml")
        with open(conf, "w") as f:
            f.write(f"""[agent]
data_dir = "{tmp}/data"
admin = "127.0.0.1:0"
[sources.tail]
type = "taildir"
paths = ["{tmp}/logs/*.log"]
format = "json"
timestamp = {{ field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", timezone = "Asia/Shanghai" }}
channel = "buf"
[channels.buf]
type = "memory"
[sinks.questdb]
type = "ilp"
channel = "buf"
url = "http://{raddr}/write"
table = "game_event_table"
tags = ["game_id", "event"]
fields = {{ uid = "integer", role = "string", server_id = "string" }}
""")
        series = 'sluice_sink_events_total{component="discard",type="null",outcome="ok"}'
        print(f"input: {args.rows} JSON events of 200 bytes, {size / 1e6:.0f} MB")
        print_header()
        wall, cpu, rss = run_agent(args.binary, conf, tmp, lambda: (metric(radmin, series) or 0) >= args.rows)
        print_row("sluice taildir(json)->memory->ilp http", args.rows, wall, cpu, rss)
        rcpu, rrss = proc_cpu_rss(receiver.pid)
        receiver.terminate()
        receiver.wait()
        print(f"{'  receiver: http source->null':<40}{'':>8}{'':>13}{rcpu:>8.3f}{'':>13}{rrss:>13.1f}")
        wall, cpu, rss = baseline(args, tmp, data)
        print_row("sluice stdin->memory->null (same file)", args.rows, wall, cpu, rss)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""HTTP source -> memory -> null, loaded by build/release/bench/sluice_http_load (keep-alive
connections, POST text/plain bodies of 200-byte lines, one request at a time per connection).
Prints requests/s, events/s, MB/s and the agent's CPU seconds and peak RSS; in the same run,
stdin -> memory -> null on the same events as a baseline.
  bench/http_bench.py [--requests N] [--events-per-request E] [--connections C]
"""
import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from avro_bench import baseline_stdin_null, wait_file  # noqa: E402
from taildir_null import proc_cpu_rss  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--events-per-request", type=int, default=100)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--load", default=os.path.join(ROOT, "build/release/bench/sluice_http_load"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-http-bench-") as tmp:
        conf = os.path.join(tmp, "http.toml")
        with open(conf, "w") as f:
            f.write(f"""[agent]
data_dir = "{tmp}/d"
admin = "127.0.0.1:0"
[sources.web]
type = "http"
listen = "127.0.0.1:0"
channel = "buf"
[channels.buf]
type = "memory"
max_events = 100000
[sinks.discard]
type = "null"
channel = "buf"
""")
        agent = subprocess.Popen([args.binary, "run", "-c", conf], stderr=subprocess.DEVNULL)
        address = wait_file(f"{tmp}/d/web.addr")
        out = subprocess.run([args.load, address, str(args.requests), str(args.events_per_request),
                              str(args.connections)], check=True, capture_output=True, text=True).stdout
        wall, requests, events, ok, other = out.split()
        cpu, rss = proc_cpu_rss(agent.pid)
        agent.terminate()
        agent.wait(timeout=30)
        wall, events = float(wall), int(events)
        if int(other) != 0:
            sys.exit(f"{other} requests were not answered 200")
        # Baseline: the same lines through stdin -> memory -> null.
        data = os.path.join(tmp, "lines.txt")
        with open(data, "w") as f:
            line = (" GET /api/v1/items HTTP/1.1 200 ")
            for i in range(events):
                s = (str(i % args.events_per_request) + line).ljust(199, "x")
                f.write(s + "\n")
        base = baseline_stdin_null(args.binary, tmp, data)
        mb = events * 200 / 1e6
        print(f"{requests} requests of {args.events_per_request} events (200 bytes), {args.connections} keep-alive connections")
        print(f"{'run':<34}{'wall s':>8}{'requests/s':>12}{'events/s':>12}{'MB/s':>7}{'CPU s':>7}{'RSS MB':>8}")
        print(f"{'http source -> memory -> null':<34}{wall:>8.3f}{int(requests) / wall:>12,.0f}{events / wall:>12,.0f}"
              f"{mb / wall:>7.0f}{cpu:>7.2f}{rss:>8.1f}")
        print(f"{'baseline stdin -> null (same)':<34}{base:>8.3f}{'':>12}{events / base:>12,.0f}{mb / base:>7.0f}")


if __name__ == "__main__":
    main()

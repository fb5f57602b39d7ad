#!/usr/bin/python3
"""file (taildir, from the head) -> memory (64 MiB) -> http sink (NDJSON, keep-alive, 4 in flight)
to a local receiver that discards (build/release/bench/sluice_http_sink_receiver), with 200-byte
events. Prints events/s, CPU seconds, events per CPU-second and peak RSS of the sluice under test
(from its start until its sink counted every event as delivered), the receiver's count, and, in
the same run, stdin -> memory -> null on the same file as a baseline.
  bench/http_sink_bench.py [--events N] [--batch B] [--format ndjson|json|raw]
                           [--compression none|gzip|zstd] [--runs R]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from avro_bench import wait_file  # noqa: E402
from stdin_null import make_input, measure  # noqa: E402
from taildir_null import metric, proc_cpu_rss  # noqa: E402


def run_once(args, tmp, data, address, run):
    logs = os.path.dirname(data)
    conf = os.path.join(tmp, f"sender{run}.toml")
    with open(conf, "w") as f:
        f.write(f"""[agent]
data_dir = "{tmp}/s{run}"
admin = "127.0.0.1:0"
[sources.tail]
type = "taildir"
paths = ["{logs}/*.log"]
channel = "buf"
[channels.buf]
type = "memory"
max_bytes = "64MiB"
transaction_events = {args.batch}
[sink_groups.up]
channel = "buf"
sinks = ["hook"]
max_in_flight = 4
batch_events = {args.batch}
[sinks.hook]
type = "http"
url = "http://{address}/ingest"
format = "{args.format}"
compression = "{args.compression}"
max_in_flight = 4
""")
    series = 'sluice_sink_events_total{component="hook",type="http",outcome="ok"}'
    err_path = os.path.join(tmp, f"sender{run}.err")
    start = time.monotonic()
    with open(err_path, "w") as err:
        proc = subprocess.Popen([args.binary, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=err)
        admin = wait_file(f"{tmp}/s{run}/admin.addr")
        while (metric(admin, series) or 0) < args.events:
            if proc.poll() is not None:
                sys.exit("sluice exited early:\n" + open(err_path).read())
            if time.monotonic() - start > 300:
                sys.exit("timed out")
            time.sleep(0.005)
        wall = time.monotonic() - start
        cpu, rss = proc_cpu_rss(proc.pid)
        raw = metric(admin, 'sluice_http_sink_bytes_total{component="hook",type="http",stage="uncompressed"}') or 0
        sent = metric(admin, 'sluice_http_sink_bytes_total{component="hook",type="http",stage="compressed"}') or 0
        proc.terminate()
        if proc.wait(timeout=30) != 0:
            sys.exit("sluice did not exit 0:\n" + open(err_path).read())
    return wall, cpu, rss, raw, sent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--format", default="ndjson")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--receiver", default=os.path.join(ROOT, "build/release/bench/sluice_http_sink_receiver"))
    ap.add_argument("--measure", default=os.path.join(ROOT, "build/release/bench/sluice_measure"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-http-sink-bench-") as tmp:
        os.makedirs(os.path.join(tmp, "logs"))
        data = os.path.join(tmp, "logs", "input.log")
        make_input(data, args.events)
        size = os.path.getsize(data)
        receiver = subprocess.Popen([args.receiver, f"{tmp}/recv.addr", f"{tmp}/recv.stats"])
        address = wait_file(f"{tmp}/recv.addr")
        results = [run_once(args, tmp, data, address, i) for i in range(args.runs)]
        receiver.terminate()
        receiver.wait(timeout=10)
        requests, lines, body_bytes = (int(x) for x in open(f"{tmp}/recv.stats").read().split())
        wall, cpu, rss, raw, sent = min(results, key=lambda r: r[1])  # the run with least CPU
        # Baseline: the same file through stdin -> memory -> null.
        base_conf = os.path.join(tmp, "base.toml")
        with open(base_conf, "w") as f:
            f.write(f'[agent]\ndata_dir = "{tmp}/b"\nadmin = "127.0.0.1:0"\n'
                    '[sources.in]\ntype = "stdin"\nchannel = "buf"\n[channels.buf]\ntype = "memory"\n'
                    '[sinks.d]\ntype = "null"\nchannel = "buf"\n')
        b_wall, b_cpu, b_rss = measure(args.measure, [args.binary, "run", "-c", base_conf], data,
                                       os.path.join(tmp, "base.err"))
        print(f"{args.events} events of 200 bytes ({size / 1e6:.0f} MB), batches of {args.batch}, "
              f"format {args.format}, compression {args.compression}; least-CPU of {args.runs} run(s)")
        print(f"{'run':<36}{'wall s':>8}{'events/s':>13}{'CPU s':>8}{'events/CPU-s':>14}{'RSS MB':>8}")
        print(f"{'file -> memory -> http sink':<36}{wall:>8.3f}{args.events / wall:>13,.0f}{cpu:>8.2f}"
              f"{args.events / cpu:>14,.0f}{rss:>8.1f}")
        print(f"{'baseline stdin -> memory -> null':<36}{b_wall:>8.3f}{args.events / b_wall:>13,.0f}{b_cpu:>8.2f}"
              f"{args.events / b_cpu:>14,.0f}{b_rss:>8.1f}")
        print(f"http body bytes {raw / 1e6:.0f} MB before compression, {sent / 1e6:.0f} MB sent; receiver got "
              f"{requests} requests, {lines} lines (all runs: {args.events * args.runs} events expected)")
        if args.format != "json" and args.compression == "none" and lines < args.events * args.runs:
            sys.exit("the receiver counted fewer lines than events")


if __name__ == "__main__":
    main()

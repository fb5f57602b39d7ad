#!/usr/bin/python3
"""Avro RPC between two sluice agents: a sender (stdin -> memory -> avro sink) and a collector
(avro source -> memory -> null) on 127.0.0.1, with 200-byte events. Prints events/s and MB/s
(from the sender's start until the collector's sink counted every event), CPU seconds and peak
RSS of each agent, and, in the same run, stdin -> memory -> null on the same file as a baseline.
  bench/avro_bench.py [--events N] [--batch B] [--compression none|deflate]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from stdin_null import make_input  # noqa: E402
from taildir_null import metric, proc_cpu_rss  # noqa: E402


def wait_file(path, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and open(path).read().strip():
            return open(path).read().strip()
        time.sleep(0.01)
    sys.exit(f"{path} did not appear")


def baseline_stdin_null(binary, tmp, data):
    """Wall seconds of stdin -> memory -> null over `data`: the floor for a network path."""
    conf = os.path.join(tmp, "base.toml")
    with open(conf, "w") as f:
        f.write(f'[agent]\ndata_dir = "{tmp}/b"\nadmin = "127.0.0.1:0"\n'
                '[sources.in]\ntype = "stdin"\nchannel = "buf"\n[channels.buf]\ntype = "memory"\n'
                '[sinks.d]\ntype = "null"\nchannel = "buf"\n')
    t0 = time.time()
    with open(data) as stdin:
        subprocess.run([binary, "run", "-c", conf], stdin=stdin, stderr=subprocess.DEVNULL, check=True)
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-avro-bench-") as tmp:
        data = os.path.join(tmp, "input.log")
        make_input(data, args.events)
        size = os.path.getsize(data)
        comp = f'compression = "{args.compression}"'
        collector_conf = os.path.join(tmp, "collector.toml")
        with open(collector_conf, "w") as f:
            f.write(f"""[agent]
data_dir = "{tmp}/c"
admin = "127.0.0.1:0"
[sources.av]
type = "avro"
listen = "127.0.0.1:0"
{comp}
channel = "buf"
[channels.buf]
type = "memory"
max_events = {args.batch * 20}
transaction_events = {args.batch}
[sinks.discard]
type = "null"
channel = "buf"
""")
        collector = subprocess.Popen([args.binary, "run", "-c", collector_conf], stderr=subprocess.DEVNULL)
        admin = wait_file(f"{tmp}/c/admin.addr")
        address = wait_file(f"{tmp}/c/av.addr")
        sender_conf = os.path.join(tmp, "sender.toml")
        with open(sender_conf, "w") as f:
            f.write(f"""[agent]
data_dir = "{tmp}/s"
admin = "127.0.0.1:0"
[sources.in]
type = "stdin"
channel = "buf"
[channels.buf]
type = "memory"
max_events = {args.batch * 20}
transaction_events = {args.batch}
[sink_groups.up]
channel = "buf"
sinks = ["up"]
max_in_flight = 4
[sinks.up]
type = "avro"
address = "{address}"
{comp}
""")
        series = 'sluice_sink_events_total{component="discard",type="null",outcome="ok"}'
        start = time.time()
        err_path = os.path.join(tmp, "sender.err")
        with open(data) as stdin, open(err_path, "w") as err:
            sender = subprocess.Popen([args.binary, "run", "-c", sender_conf], stdin=stdin, stderr=err)
            while (metric(admin, series) or 0) < args.events:
                if time.time() - start > 300:
                    sys.exit("timed out")
                time.sleep(0.005)
            wall = time.time() - start
            _, status, usage = os.wait4(sender.pid, 0)  # the sender exits at end of input
        s_cpu, s_rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0
        c_cpu, c_rss = proc_cpu_rss(collector.pid)
        collector.terminate()
        collector.wait(timeout=30)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("sender failed:\n" + open(err_path).read())
        base_wall = baseline_stdin_null(args.binary, tmp, data)
        print(f"{args.events} events of 200 bytes ({size / 1e6:.0f} MB), appendBatch of {args.batch}, compression {args.compression}")
        print(f"{'run':<36}{'wall s':>8}{'events/s':>13}{'MB/s':>8}{'CPU s':>8}{'RSS MB':>8}")
        print(f"{'sender stdin->avro sink':<36}{wall:>8.3f}{args.events / wall:>13,.0f}{size / 1e6 / wall:>8.0f}{s_cpu:>8.2f}{s_rss:>8.1f}")
        print(f"{'collector avro source->null':<36}{'':>8}{'':>13}{'':>8}{c_cpu:>8.2f}{c_rss:>8.1f}")
        print(f"{'baseline stdin->null (same file)':<36}{base_wall:>8.3f}{args.events / base_wall:>13,.0f}{size / 1e6 / base_wall:>8.0f}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""taildir (read from the head) -> memory -> null on one large file of 200-byte lines, beside
`wc -l` on the same file in the same run. Prints lines/s, MB/s, CPU seconds, GB per CPU-second and
peak RSS. The agent runs until its source counted every line (polled on /metrics), then stops.
Usage: bench/taildir_null.py [--mb 1000] [--binary build/release/agent/sluice]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from stdin_null import make_input  # noqa: E402


def proc_cpu_rss(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024.0
    return cpu, rss


def metric(addr, series):
    try:
        body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--measure", default=os.path.join(ROOT, "build/release/bench/sluice_measure"))
    args = ap.parse_args()
    lines = args.mb * 1_000_000 // 200
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        os.makedirs(os.path.join(tmp, "logs"))
        data = os.path.join(tmp, "logs", "big.log")
        make_input(data, lines)
        size = os.path.getsize(data)
        print(f"input: {lines} lines of 200 bytes, {size / 1e6:.1f} MB (page cache warm)")
        print(f"{'program':<30}{'wall s':>8}{'lines/s':>14}{'MB/s':>9}{'CPU s':>8}{'GB/CPU-s':>10}{'peak RSS MB':>13}")
        out = subprocess.run([args.measure, data, os.path.join(tmp, "wc.err"), "wc", "-l"], check=True,
                             capture_output=True, text=True).stdout.split()
        wall, cpu, rss = float(out[0]), float(out[1]), int(out[2]) / 1024.0
        print(f"{'wc -l':<30}{wall:>8.3f}{lines / wall:>14,.0f}{size / 1e6 / wall:>9.1f}{cpu:>8.3f}"
              f"{size / 1e9 / cpu:>10.2f}{rss:>13.1f}")
        conf = os.path.join(tmp, "bench.toml")
        with open(conf, "w") as f:
            f.write(f"""[agent]
data_dir = "{tmp}/data"
admin = "127.0.0.1:0"
[sources.tail]
type = "taildir"
paths = ["{tmp}/logs/*.log"]
file_header = "{os.environ.get("FILE_HEADER", "file")}"
channel = "buf"
[channels.buf]
type = "memory"
[sinks.discard]
type = "null"
channel = "buf"
""")
        err = open(os.path.join(tmp, "sluice.err"), "wb")
        start = time.monotonic()
        proc = subprocess.Popen([args.binary, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=err)
        addr_file = os.path.join(tmp, "data", "admin.addr")
        while not (os.path.exists(addr_file) and open(addr_file).read().endswith("\n")):
            time.sleep(0.005)
        addr = open(addr_file).read().strip()
        series = 'sluice_sink_events_total{component="discard",type="null",outcome="ok"}'
        while (metric(addr, series) or 0) < lines:
            if proc.poll() is not None:
                sys.exit("sluice exited early:\n" + open(os.path.join(tmp, "sluice.err")).read())
            time.sleep(0.01)
        wall = time.monotonic() - start
        cpu, rss = proc_cpu_rss(proc.pid)
        proc.terminate()
        proc.wait()
        print(f"{'sluice taildir->memory->null':<30}{wall:>8.3f}{lines / wall:>14,.0f}{size / 1e6 / wall:>9.1f}"
              f"{cpu:>8.3f}{size / 1e9 / cpu:>10.2f}{rss:>13.1f}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""file -> memory -> tcp sink with 200-byte lines to a local receiver that counts bytes, beside
stdin -> memory -> null on the same lines in the same run. Prints lines/s, CPU seconds of sluice,
lines per CPU-second and peak RSS. The agent runs until the receiver counted every byte.
  bench/tcp_bench.py [--lines 2000000] [--framing newline|octet_counting] [--binary ...]
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from stdin_null import make_input, measure  # noqa: E402
from taildir_null import proc_cpu_rss  # noqa: E402


class Receiver:
    """Accepts connections on 127.0.0.1 and counts the bytes read (recv_into releases the GIL)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.bytes = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self.read, args=(c,), daemon=True).start()

    def read(self, c):
        buf = bytearray(1 << 20)
        while True:
            n = c.recv_into(buf)
            if n == 0:
                return
            self.bytes += n


def baseline(args, tmp, data):
    """stdin -> memory -> null over `data`, measured by sluice_measure: (wall, CPU, RSS)."""
    conf = os.path.join(tmp, "base.toml")
    with open(os.path.join(ROOT, "bench/conf/stdin_null.toml")) as f:
        text = f.read().replace("@DATA_DIR@", os.path.join(tmp, "base"))
    with open(conf, "w") as f:
        f.write(text)
    return measure(args.measure, [args.binary, "run", "-c", conf], data, os.path.join(tmp, "base.err"))


def run_agent(binary, conf, tmp, done, timeout=600):
    """Starts sluice, waits until done() holds, returns (wall s, CPU s, peak RSS MB)."""
    err = open(os.path.join(tmp, "sluice.err"), "wb")
    start = time.monotonic()
    proc = subprocess.Popen([binary, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=err)
    while not done():
        if proc.poll() is not None:
            sys.exit("sluice exited early:\n" + open(os.path.join(tmp, "sluice.err")).read())
        if time.monotonic() - start > timeout:
            sys.exit("timed out")
        time.sleep(0.005)
    wall = time.monotonic() - start
    cpu, rss = proc_cpu_rss(proc.pid)
    proc.terminate()
    proc.wait()
    return wall, cpu, rss


def print_header():
    print(f"{'run':<40}{'wall s':>8}{'lines/s':>13}{'CPU s':>8}{'lines/CPU-s':>13}{'peak RSS MB':>13}")


def print_row(name, lines, wall, cpu, rss):
    print(f"{name:<40}{wall:>8.3f}{lines / wall:>13,.0f}{cpu:>8.3f}{lines / cpu if cpu else 0:>13,.0f}{rss:>13.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--framing", default="newline")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--measure", default=os.path.join(ROOT, "build/release/bench/sluice_measure"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-tcp-bench-") as tmp:
        os.makedirs(os.path.join(tmp, "logs"))
        data = os.path.join(tmp, "logs", "big.log")
        make_input(data, args.lines)
        size = os.path.getsize(data)
        # octet counting: "199 " before each 199-byte body instead of its newline
        expect = size if args.framing == "newline" else size + 3 * args.lines
        rx = Receiver()
        conf = os.path.join(tmp, "tcp.toml")
        with open(conf, "w") as f:
            f.write(f"""[agent]
data_dir = "{tmp}/data"
admin = "127.0.0.1:0"
[sources.tail]
type = "taildir"
paths = ["{tmp}/logs/*.log"]
channel = "buf"
[channels.buf]
type = "memory"
[sinks.out]
type = "tcp"
channel = "buf"
address = "{rx.address}"
framing = "{args.framing}"
""")
        print(f"input: {args.lines} lines of 200 bytes, {size / 1e6:.0f} MB; framing {args.framing}")
        print_header()
        wall, cpu, rss = run_agent(args.binary, conf, tmp, lambda: rx.bytes >= expect)
        print_row("sluice taildir->memory->tcp", args.lines, wall, cpu, rss)
        wall, cpu, rss = baseline(args, tmp, data)
        print_row("sluice stdin->memory->null (same file)", args.lines, wall, cpu, rss)


if __name__ == "__main__":
    main()

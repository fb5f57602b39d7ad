#!/usr/bin/python3
"""SQL pipeline cost: JSON game events, taildir -> lmdb -> (pipeline TUMBLE 5 s GROUP BY game_id,
event with COUNT(*), COUNT(DISTINCT uid), AVG(x), APPROX_PERCENTILE(x, 0.99) -> memory -> null)
and the raw events lmdb -> null, beside the same run without the pipeline, on the same input.

Prints events/s, CPU seconds, events per CPU-second and peak RSS for each. A run succeeds only if
the null sink counted every line and the pipeline (when there is one) counted every event. The
"100k keys" input puts 200k events in each 5 s window with 100,000 distinct (game_id, event)
pairs, for the peak-RSS figure. The agent is polled on /metrics until done, then stopped; CPU and
peak RSS come from /proc (utime + stime, VmHWM), as in bench/taildir_null.py. A third line per
input runs the same query with `sluice sql run` over the same file: JSON parsing and the pipeline
alone, without taildir, the lmdb channel (serialize, zstd, fsync, decode) or sinks; its peak RSS
is the child's ru_maxrss (wait4).
`--input-channel memory` puts the raw events in a memory channel instead (the pipeline then
reads it with a cursor of its own and keeps no checkpoints). The memory channels (that input and
the rows channel) have the memory channel's default bounds, 10,000 events and 64 MiB, as an
operator who leaves them alone gets; the output's first line says so. The pipeline's own memory
(max_state_bytes) is the agent's default, 64 MiB, unless --max-state says otherwise.
Usage: bench/sql_pipeline_bench.py [--events N] [--runs R] [--input-channel lmdb|memory]
       [--binary build/release/agent/sluice]
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

EVENTS = ["login", "logout", "chat", "levelup", "pay"]
ROLES = ["warrior", "mage", "none"]
BASE_MS = 1750768200000  # 2025-06-24 20:30:00 UTC


def stamp(ms):
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ms % 1000:03d}"


def make_events(path, n, many_keys):
    """Lines like tests/data/game_events.ndjson plus a number x. Normal: one event per ms (5,000
    per window), 7 games x 5 events, every 50th event up to 3 s late. Many keys: 40 events per ms
    (200k per window), 1,000 games x 100 events = 100k distinct pairs per window."""
    with open(path, "w") as f:
        out = []
        for i in range(n):
            if many_keys:
                ms = BASE_MS + i // 40
                game, event = f"g{i % 1000}", f"e{(i // 1000) % 100}"
            else:
                ms = BASE_MS + i - (3000 if i % 50 == 49 else 0)
                game, event = f"g{i % 7}", EVENTS[(i // 7) % 5]
            out.append(f'{{"create_time": "{stamp(ms)}", "event": "{event}", "game_id": "{game}", '
                       f'"role": "{ROLES[i % 3]}", "server_id": "s{40 + i % 10}", '
                       f'"uid": {148950000 + (i * 7919) % 100000}, "x": {(i * 37) % 1000 / 10 + 0.5}}}\n')
            if len(out) == 10000:
                f.write("".join(out))
                out = []
        f.write("".join(out))


MAX_STATE = None  # --max-state: the pipeline's max_state_bytes (the agent's default: 64 MiB)
INPUT = "lmdb"  # --input-channel
# The memory channels (a memory input, and the rows channel) keep the memory channel's defaults:
# at most 10,000 events (~4.5 MB of these events) and 64 MiB. With max_events = 1000000, as this
# bench had before, the input channel filled up to its 64 MiB whenever the pipeline paused to emit
# a large window's rows: an agent meant to stay within 40 MB cannot give a channel that much.
INPUT_CHANNEL = {"lmdb": 'type = "lmdb"\nmax_bytes = "2GiB"\n', "memory": 'type = "memory"\n'}
ROWS_CHANNEL = 'type = "memory"\n'


def config(tmp, with_pipeline):
    text = f"""[agent]
data_dir = "{tmp}/data"
admin = "127.0.0.1:0"
[sources.game]
type = "taildir"
paths = ["{tmp}/logs/*.log"]
format = "json"
channel = "raw"
[channels.raw]
{INPUT_CHANNEL[INPUT]}[sinks.discard]
type = "null"
channel = "raw"
"""
    if with_pipeline:
        text += """[pipelines.stats]
sql = \"\"\"
INSERT INTO rows
SELECT window_start, game_id, event, COUNT(*) AS n, COUNT(DISTINCT uid) AS users, AVG(x) AS avg_x,
       APPROX_PERCENTILE(x, 0.99) AS p99
FROM game
GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event
\"\"\"
event_time = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", watermark_delay = "5s" }
""" + (f'max_state_bytes = "{MAX_STATE}"\n' if MAX_STATE else "") + """[channels.rows]
""" + ROWS_CHANNEL + """[sinks.rows_out]
type = "null"
channel = "rows"
"""
    return text


QUERY = ("SELECT window_start, game_id, event, COUNT(*) AS n, COUNT(DISTINCT uid) AS users, "
         "AVG(x) AS avg_x, APPROX_PERCENTILE(x, 0.99) AS p99 FROM game "
         "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event")


def run_sql_cli(binary, data):
    """`sluice sql run` over the file: wall seconds, CPU seconds and peak RSS (MB) of the child
    (wait4, so earlier children's peaks do not count)."""
    start = time.monotonic()
    proc = subprocess.Popen([binary, "sql", "run", QUERY, "--input", data,
                             "--event-time", "create_time:%Y-%m-%d %H:%M:%S.%f",
                             "--watermark-delay", "5s", "--output", "ndjson"],
                            stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"sluice sql run exited with {proc.returncode}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def run(binary, tmp, n, with_pipeline):
    data_dir = os.path.join(tmp, "data")
    subprocess.run(["rm", "-rf", data_dir], check=True)
    conf = os.path.join(tmp, "bench.toml")
    with open(conf, "w") as f:
        f.write(config(tmp, with_pipeline))
    err_path = os.path.join(tmp, "sluice.err")
    err = open(err_path, "wb")
    start = time.monotonic()
    proc = subprocess.Popen([binary, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=err)
    addr_file = os.path.join(data_dir, "admin.addr")
    while not (os.path.exists(addr_file) and open(addr_file).read().endswith("\n")):
        if proc.poll() is not None:
            sys.exit("sluice exited early:\n" + open(err_path).read())
        time.sleep(0.005)
    addr = open(addr_file).read().strip()
    sink = 'sluice_sink_events_total{component="discard",type="null",outcome="ok"}'
    pipe = 'sluice_pipeline_events_total{component="stats",type="sql"}'
    while (metric(addr, sink) or 0) < n or (with_pipeline and (metric(addr, pipe) or 0) < n):
        if proc.poll() is not None:
            sys.exit("sluice exited early:\n" + open(err_path).read())
        time.sleep(0.01)
    wall = time.monotonic() - start
    cpu, rss = proc_cpu_rss(proc.pid)
    # Windows closed before their time because the state reached max_state_bytes (64 MiB).
    early = metric(addr, 'sluice_pipeline_windows_closed_early_total{component="stats",type="sql"}')
    proc.terminate()
    proc.wait()
    return wall, cpu, rss, int(early or 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--only", choices=["normal", "many"], help="run one input only")
    ap.add_argument("--max-state", help="the pipeline's max_state_bytes, e.g. 512MiB")
    ap.add_argument("--input-channel", choices=["lmdb", "memory"], default="lmdb",
                    help="the channel the source writes and the pipeline reads")
    args = ap.parse_args()
    global MAX_STATE, INPUT
    MAX_STATE = args.max_state
    INPUT = args.input_channel
    with tempfile.TemporaryDirectory(prefix="sluice-sql-bench-") as tmp:
        os.makedirs(os.path.join(tmp, "logs"))
        data = os.path.join(tmp, "logs", "events.log")
        print(f"input: {args.events} JSON events of ~144 bytes (page cache warm), {INPUT} input "
              f"channel; best of {args.runs} runs (by CPU)")
        print("channels: " + ("raw lmdb max_bytes 2GiB" if INPUT == "lmdb" else
                              "raw memory (defaults: max_events 10000, max_bytes 64MiB)") +
              ", rows memory (defaults: max_events 10000, max_bytes 64MiB); max_state_bytes " +
              (MAX_STATE or "64MiB (default)"))
        print(f"{'run':<40}{'wall s':>8}{'events/s':>13}{'CPU s':>8}{'events/CPU-s':>14}{'RSS MB':>8}")
        inputs = [("35 keys", False), ("100k keys/window", True)]
        if args.only:
            inputs = [inputs[0] if args.only == "normal" else inputs[1]]
        for label, many in inputs:
            make_events(data, args.events, many)
            for with_pipeline in (False, True):
                best = None
                for _ in range(args.runs):
                    result = run(args.binary, tmp, args.events, with_pipeline)
                    if best is None or result[1] < best[1]:
                        best = result
                wall, cpu, rss, early = best
                name = f"{label}: " + ("taildir+pipeline" if with_pipeline else "taildir, no pipeline")
                note = f"   ({early} windows closed early)" if early else ""
                print(f"{name:<40}{wall:>8.3f}{args.events / wall:>13,.0f}{cpu:>8.3f}"
                      f"{args.events / cpu if cpu else float('inf'):>14,.0f}{rss:>8.1f}{note}",
                      flush=True)
            wall, cpu, rss = min((run_sql_cli(args.binary, data) for _ in range(args.runs)),
                                 key=lambda r: r[1])
            name = f"{label}: sql run (no channel)"
            print(f"{name:<40}{wall:>8.3f}{args.events / wall:>13,.0f}{cpu:>8.3f}"
                  f"{args.events / cpu if cpu else float('inf'):>14,.0f}{rss:>8.1f}", flush=True)


if __name__ == "__main__":
    main()

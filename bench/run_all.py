#!/usr/bin/python3
"""Every benchmark scenario in one run, one table: scenario, events/s, MB/s, CPU s, peak RSS, with
the baselines measured in the same run on the same files (`wc -l`, `cat > /dev/null`, a plain
librdkafka producer, and rsyslog and syslog-ng when they can run here). Median of 3 runs with the
range (`--quick`: 1 run and 200,000 lines). Also the idle RSS after 10 s, the RSS with a dead sink
after 60 s (10 s with --quick), the stripped binary size, and bench/lmdb_bench.cc's output (the
lmdb channel alone, with a 10 GB backlog; 256 MB with --quick). Writes bench/RESULTS.md.

    bench/run_all.sh [--quick] [--lines N] [--runs R] [--peers DIR] [--only a,b] [--results FILE]

Each sluice scenario starts the release binary with its configuration, polls /metrics until the
far side counted every event, then reads utime + stime and VmHWM from /proc and stops it (the
same measurement as bench/taildir_null.py). Inputs are the other scripts' generators: 200-byte
lines (bench/stdin_null.py), JSON game events (bench/parse_bench.py, bench/sql_pipeline_bench.py).
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from parse_bench import make_json  # noqa: E402
from sql_pipeline_bench import make_events  # noqa: E402
from stdin_null import make_input  # noqa: E402
from taildir_null import metric, proc_cpu_rss  # noqa: E402
from tcp_bench import Receiver  # noqa: E402

FLOOR = "2M-line targets (issue 16), CPU s"
TARGETS = {"file -> null": 0.25, "file -> tcp": 0.40, "file -> http (NDJSON)": 1.0,
           "json parse -> null": 0.7, "json + 5 s tumble window": 0.9}


class Bench:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.binary = args.binary
        self.build = os.path.dirname(os.path.dirname(args.binary))
        self.n = args.lines
        self.logs = os.path.join(tmp, "logs")
        os.makedirs(self.logs)
        self.plain = os.path.join(self.logs, "plain.log")
        make_input(self.plain, self.n)
        self.json = os.path.join(tmp, "json", "events.log")
        os.makedirs(os.path.dirname(self.json))
        make_json(self.json, self.n)
        self.game = os.path.join(tmp, "game", "events.log")
        os.makedirs(os.path.dirname(self.game))
        make_events(self.game, self.n, False)
        self.runs = 0

    def data_dir(self):
        self.runs += 1
        d = os.path.join(self.tmp, "run%d" % self.runs)
        os.makedirs(d)
        return d

    def agent(self, body, done, stdin=None, timeout=600, rss_now=False):
        """Runs sluice with [agent] + body until done(admin) holds: (wall, CPU s, peak RSS MB)."""
        d = self.data_dir()
        conf = os.path.join(d, "sluice.toml")
        with open(conf, "w") as f:
            f.write('[agent]\ndata_dir = "%s"\nadmin = "127.0.0.1:0"\nshutdown_timeout = "5s"\n%s'
                    % (d, body))
        err = open(os.path.join(d, "stderr"), "wb")
        start = time.monotonic()
        proc = subprocess.Popen([self.binary, "run", "-c", conf], stdout=subprocess.DEVNULL,
                                stderr=err, stdin=stdin)
        addr_file = os.path.join(d, "admin.addr")
        admin = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError("sluice exited early: " + open(err.name).read()[-600:])
            if time.monotonic() - start > timeout:
                proc.kill()
                raise RuntimeError("timed out")
            if admin is None and os.path.exists(addr_file):
                a = open(addr_file).read()
                admin = a.strip() if a.endswith("\n") else None
            if admin is not None and done(admin):
                break
            time.sleep(0.005)
        wall = time.monotonic() - start
        cpu, rss = proc_cpu_rss(proc.pid)
        self.last_rss = vm_rss(proc.pid) if rss_now else rss
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(d, ignore_errors=True)
        return wall, cpu, rss

    def measure(self, argv, stdin_path):
        """A command under bench/sluice_measure (its own wall, CPU and peak RSS)."""
        out = subprocess.run([os.path.join(self.build, "bench", "sluice_measure"), stdin_path,
                              os.path.join(self.tmp, "measure.err")] + argv,
                             check=True, capture_output=True, text=True).stdout.split()
        if out[3] != "0":
            raise RuntimeError("%s exited %s" % (argv[0], out[3]))
        return float(out[0]), float(out[1]), int(out[2]) / 1024.0


def sink_ok(name, kind):
    return 'sluice_sink_events_total{component="%s",type="%s",outcome="ok"}' % (name, kind)


def tail(path, extra=""):
    return ('[sources.tail]\ntype = "taildir"\npaths = ["%s"]\nchannel = "buf"\n%s\n'
            '[channels.buf]\ntype = "memory"\nmax_bytes = "64MiB"\n' % (path, extra))


def counted(series, n):
    return lambda admin: (metric(admin, series) or 0) >= n


# Each scenario: (name, input attribute, function(bench) -> (wall, CPU s, RSS MB), note).


def file_null(b):
    return b.agent(tail(b.plain) + '[sinks.out]\ntype = "null"\nchannel = "buf"\n',
                   counted(sink_ok("out", "null"), b.n))


def file_tcp(b):
    rx = Receiver()
    size = os.path.getsize(b.plain)
    return b.agent(tail(b.plain) + '[sinks.out]\ntype = "tcp"\nchannel = "buf"\naddress = "%s"\n'
                   % rx.address, lambda admin: rx.bytes >= size)


def http_receiver(b):
    d = b.data_dir()
    proc = subprocess.Popen([os.path.join(b.build, "bench", "sluice_http_sink_receiver"),
                             d + "/addr", d + "/stats"])
    while not (os.path.exists(d + "/addr") and open(d + "/addr").read().endswith("\n")):
        time.sleep(0.005)
    return proc, open(d + "/addr").read().strip()


def file_http(b):
    proc, addr = http_receiver(b)
    try:
        return b.agent(
            tail(b.plain, "") + '[sink_groups.up]\nchannel = "buf"\nsinks = ["hook"]\n'
            'max_in_flight = 4\nbatch_events = 1000\n[sinks.hook]\ntype = "http"\n'
            'url = "http://%s/ingest"\nformat = "ndjson"\nmax_in_flight = 4\n' % addr,
            counted(sink_ok("hook", "http"), b.n))
    finally:
        proc.terminate()
        proc.wait(10)


def json_null(b):
    return b.agent(tail(b.json, 'format = "json"\non_parse_error = "drop"') +
                   '[sinks.out]\ntype = "null"\nchannel = "buf"\n',
                   counted(sink_ok("out", "null"), b.n))


WINDOW = '''[pipelines.stats]
sql = """
INSERT INTO rows
SELECT window_start, game_id, event, COUNT(*) AS n, AVG(x) AS avg_x
FROM tail
GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event
"""
event_time = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", watermark_delay = "5s" }
[channels.rows]
type = "memory"
[sinks.rows_out]
type = "null"
channel = "rows"
[sinks.out]
type = "null"
channel = "buf"
'''


def window(b):
    pipe = 'sluice_pipeline_events_total{component="stats",type="sql"}'
    # A pipeline reads its source's events from a durable channel (as bench/sql_pipeline_bench.py).
    body = tail(b.game, 'format = "json"').replace('type = "memory"\nmax_bytes = "64MiB"',
                                                    'type = "lmdb"\nmax_bytes = "4GiB"')
    return b.agent(body + WINDOW,
                   lambda admin: (metric(admin, pipe) or 0) >= b.n and
                   (metric(admin, sink_ok("out", "null")) or 0) >= b.n)


def window_memory(b):
    """The same window run with the raw events in the 64 MiB memory channel: the pipeline reads
    it with a cursor of its own, without checkpoints."""
    pipe = 'sluice_pipeline_events_total{component="stats",type="sql"}'
    return b.agent(tail(b.game, 'format = "json"') + WINDOW,
                   lambda admin: (metric(admin, pipe) or 0) >= b.n and
                   (metric(admin, sink_ok("out", "null")) or 0) >= b.n)


def lmdb_tcp(b):
    rx = Receiver()
    size = os.path.getsize(b.plain)
    body = tail(b.plain).replace('type = "memory"\nmax_bytes = "64MiB"',
                                 'type = "lmdb"\nsync = "full"')
    return b.agent(body + '[sinks.out]\ntype = "tcp"\nchannel = "buf"\naddress = "%s"\n'
                   % rx.address, lambda admin: rx.bytes >= size)


def avro_avro(b):
    """taildir -> memory -> avro sink -> a second sluice (avro source -> memory -> null); the
    collector's CPU is added to the sender's, its RSS reported in the note."""
    d = b.data_dir()
    conf = os.path.join(d, "collector.toml")
    with open(conf, "w") as f:
        f.write('[agent]\ndata_dir = "%s"\nadmin = "127.0.0.1:0"\n[sources.av]\ntype = "avro"\n'
                'listen = "127.0.0.1:0"\nchannel = "buf"\n[channels.buf]\ntype = "memory"\n'
                '[sinks.discard]\ntype = "null"\nchannel = "buf"\n' % d)
    collector = subprocess.Popen([b.binary, "run", "-c", conf], stderr=subprocess.DEVNULL)
    try:
        while not (os.path.exists(d + "/av.addr") and os.path.exists(d + "/admin.addr")):
            time.sleep(0.005)
        time.sleep(0.05)  # both files are written whole before readiness; let them settle
        addr, cadmin = open(d + "/av.addr").read().strip(), open(d + "/admin.addr").read().strip()
        before = proc_cpu_rss(collector.pid)[0]
        wall, cpu, rss = b.agent(
            tail(b.plain) + '[sink_groups.up]\nchannel = "buf"\nsinks = ["up"]\n'
            'max_in_flight = 4\n[sinks.up]\ntype = "avro"\naddress = "%s"\n' % addr,
            lambda admin: (metric(cadmin, sink_ok("discard", "null")) or 0) >= b.n)
        ccpu, crss = proc_cpu_rss(collector.pid)
        b.notes["avro -> avro, the collector's peak RSS"] = "%.1f MB" % crss
        return wall, cpu + ccpu - before, rss
    finally:
        collector.terminate()
        collector.wait(10)


def http_source(b):
    """http source -> memory -> null loaded by bench/sluice_http_load (8 keep-alive connections,
    1,000 lines of 200 bytes a request)."""
    d = b.data_dir()
    conf = os.path.join(d, "http.toml")
    with open(conf, "w") as f:
        f.write('[agent]\ndata_dir = "%s"\nadmin = "127.0.0.1:0"\n[sources.web]\ntype = "http"\n'
                'listen = "127.0.0.1:0"\nchannel = "buf"\n[channels.buf]\ntype = "memory"\n'
                'max_events = 100000\n[sinks.discard]\ntype = "null"\nchannel = "buf"\n' % d)
    agent = subprocess.Popen([b.binary, "run", "-c", conf], stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(d + "/web.addr"):
            time.sleep(0.005)
        time.sleep(0.05)
        addr = open(d + "/web.addr").read().strip()
        before = proc_cpu_rss(agent.pid)[0]
        out = subprocess.run([os.path.join(b.build, "bench", "sluice_http_load"), addr,
                              str(b.n // 1000), "1000", "8"], check=True, capture_output=True,
                             text=True).stdout.split()
        wall, other = float(out[0]), int(out[4])
        if other:
            raise RuntimeError("%d requests not answered 200" % other)
        admin = open(d + "/admin.addr").read().strip()
        t0 = time.monotonic()
        while (metric(admin, sink_ok("discard", "null")) or 0) < b.n:  # the far side has them all
            if time.monotonic() - t0 > 60:
                raise RuntimeError("the null sink did not count every event")
            time.sleep(0.005)
        wall += time.monotonic() - t0  # from the first request until the sink counted the last
        cpu, rss = proc_cpu_rss(agent.pid)
        return wall, cpu - before, rss
    finally:
        agent.terminate()
        agent.wait(10)


def baseline_wc(b):
    return b.measure(["wc", "-l", b.plain], "/dev/null")


def baseline_cat(b):
    return b.measure(["cat"], b.plain)


def kafka(b):
    """bench/kafka_bench.cc: stdin -> memory -> kafka against librdkafka's mock cluster (in the
    bench process), 8 partitions, beside a plain librdkafka producer loop; best of its 3 runs."""
    out = subprocess.run([os.path.join(b.build, "bench", "sluice_kafka_bench"), b.binary,
                          str(b.n), "8"], check=True, capture_output=True, text=True).stdout
    rows = {}
    for l in out.splitlines():
        for key in ("librdkafka producer loop", "sluice stdin->memory->kafka"):
            if key in l:
                rows[key] = l.split(key, 1)[1].split()
    plain = float(rows["librdkafka producer loop"][0])
    s = rows["sluice stdin->memory->kafka"]
    b.extra_rows["baseline: plain librdkafka producer (same settings, mock broker)"] = (
        plain, None, None)
    return float(s[0]), float(s[3]), float(s[4])


# rsyslog and syslog-ng from Debian's packages (unpacked by bench/fetch_peers.sh into --peers, so
# that they do not replace the machine's logger), following the same file into the TCP receiver.


def peer_env(root):
    libs = [os.path.join(root, p) for p in ("usr/lib/x86_64-linux-gnu", "usr/lib/syslog-ng")]
    return dict(os.environ, LD_LIBRARY_PATH=":".join(libs))


def run_peer(b, argv, env, done):
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not done():
            if proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (argv[0], proc.stderr.read()[-400:]))
            if time.monotonic() - start > 120:
                raise RuntimeError("timed out (a peer that drops lines never finishes)")
            time.sleep(0.005)
        wall = time.monotonic() - start
        cpu, rss = proc_cpu_rss(proc.pid)
        return wall, cpu, rss
    finally:
        proc.terminate()
        proc.wait(10)


def rsyslog_tcp(b):
    root = b.args.peers
    rx = Receiver()
    d = b.data_dir()
    conf = os.path.join(d, "rsyslog.conf")
    host, port = rx.address.split(":")
    with open(conf, "w") as f:
        f.write('global(workDirectory="%s" maxMessageSize="8k")\n'
                'module(load="imfile")\n'
                'template(name="raw" type="string" string="%%msg%%\\n")\n'
                'input(type="imfile" file="%s" tag="bench" freshStartTail="off" ruleset="out")\n'
                'ruleset(name="out" queue.type="LinkedList" queue.size="100000") {\n'
                '  action(type="omfwd" target="%s" port="%s" protocol="tcp" template="raw")\n}\n'
                % (d, b.plain, host, port))
    return run_peer(b, [os.path.join(root, "usr/sbin/rsyslogd"), "-n", "-f", conf, "-i",
                        d + "/pid", "-M", os.path.join(root, "usr/lib/x86_64-linux-gnu/rsyslog")],
                    peer_env(root), lambda: rx.bytes >= os.path.getsize(b.plain))


def syslog_ng(b, destination, done):
    root = b.args.peers
    d = b.data_dir()
    conf = os.path.join(d, "syslog-ng.conf")
    with open(conf, "w") as f:
        # flow-control: without it syslog-ng drops what does not fit its destination's queue.
        f.write('@version: 3.38\noptions { stats_freq(0); log_fifo_size(100000); };\n'
                'source s { file("%s" flags(no-parse) follow-freq(1) log-fetch-limit(1000) '
                'log-iw-size(100000)); };\ndestination d { %s };\n'
                'log { source(s); destination(d); flags(flow-control); };\n' %
                (b.plain, destination))
    return run_peer(b, [os.path.join(root, "usr/sbin/syslog-ng"), "-F", "-f", conf,
                        "--persist-file", d + "/persist", "--pidfile", d + "/pid",
                        "--control", d + "/ctl", "--module-path",
                        os.path.join(root, "usr/lib/syslog-ng/3.38")], peer_env(root), done)


def syslog_ng_tcp(b):
    rx = Receiver()
    host, port = rx.address.split(":")
    return syslog_ng(b, 'network("%s" port(%s) transport(tcp) template("$MSG\\n"));' %
                     (host, port), lambda: rx.bytes >= os.path.getsize(b.plain))


def syslog_ng_http(b):
    proc, addr = http_receiver(b)

    def lines():
        try:
            with urllib.request.urlopen("http://%s/stats" % addr, timeout=2) as r:
                return int(r.read().split()[1])
        except OSError:
            return 0

    try:
        return syslog_ng(b, 'http(url("http://%s/ingest") method("POST") body("${MSG}\\n") '
                         'delimiter("") batch-lines(1000) batch-timeout(100) workers(4));' %
                         addr, lambda: lines() >= b.n)
    finally:
        proc.terminate()
        proc.wait(10)


SCENARIOS = [
    ("baseline: wc -l (same file)", "plain", baseline_wc),
    ("baseline: cat > /dev/null (same file)", "plain", baseline_cat),
    ("file -> null", "plain", file_null),
    ("file -> tcp", "plain", file_tcp),
    ("file -> http (NDJSON)", "plain", file_http),
    ("json parse -> null", "json", json_null),
    ("json + 5 s tumble window", "game", window),
    ("json + 5 s tumble window (memory input)", "game", window_memory),
    ("file -> lmdb (sync full) -> tcp", "plain", lmdb_tcp),
    ("stdin -> kafka (mock broker)", "plain", kafka),
    ("avro -> avro", "plain", avro_avro),
    ("http source load -> null", "plain", http_source),
    ("baseline: rsyslog file -> tcp", "plain", rsyslog_tcp),
    ("baseline: syslog-ng file -> tcp", "plain", syslog_ng_tcp),
    ("baseline: syslog-ng file -> http (one line a record, batches of 1,000)", "plain",
     syslog_ng_http),
]
PEERS = [s[0] for s in SCENARIOS if "rsyslog" in s[0] or "syslog-ng" in s[0]]


def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1]) / 1024.0
    return 0.0


def held_rss(b, seconds):
    """VmRSS of an agent with nothing to do (taildir on an empty directory -> memory -> null)
    after 10 s, and of one whose sink is dead (avro to a closed port) behind a file that fills its
    64 MiB memory channel, after `seconds`."""
    empty = os.path.join(b.tmp, "empty")
    os.makedirs(empty, exist_ok=True)
    rows = []
    for label, wait, body in (
            ("idle RSS after 10 s (taildir on an empty directory -> memory -> null)", 10,
             tail(empty + "/*.log") + '[sinks.out]\ntype = "null"\nchannel = "buf"\n'),
            ("RSS with a dead sink after %d s (64 MiB memory channel" % seconds, seconds,
             tail(b.plain).replace('max_bytes', 'max_events = 10000000\nmax_bytes') +
             '[sinks.out]\ntype = "avro"\naddress = "127.0.0.1:9"\n'
             'connect_timeout = "200ms"\nchannel = "buf"\n')):
        t0 = time.monotonic()
        held = []

        def done(admin):
            held[:] = [metric(admin, 'sluice_channel_bytes{component="buf",type="memory"}') or 0]
            return time.monotonic() - t0 >= wait

        b.agent(body, done, rss_now=True)
        if "dead" in label:
            label += " holding %.1f MiB)" % (held[0] / 1048576)
        rows.append((label, "%.1f MB" % b.last_rss))
    return rows


def lmdb_bench(b, backlog_mb):
    """bench/lmdb_bench.cc's output (put/take rates, open with a backlog of backlog_mb MB)."""
    try:
        out = subprocess.run([os.path.join(b.build, "bench", "sluice_lmdb_bench"),
                              str(backlog_mb), b.tmp], check=True, capture_output=True,
                             text=True, timeout=900).stdout
        # The channel's own log lines ("[time] [info] lmdb: ...") are not figures.
        return "".join(l for l in out.splitlines(True) if not l.startswith("[20"))
    except (OSError, subprocess.SubprocessError) as e:
        return "not run: %s" % e


def stripped_size(binary, tmp):
    out = os.path.join(tmp, "sluice.stripped")
    subprocess.run(["strip", "-o", out, binary], check=True)
    return os.path.getsize(out), os.path.getsize(binary)


def fmt_range(values, f="%.0f"):
    if len(values) == 1:
        return f % values[0]
    return (f + " (" + f + "-" + f + ")") % (statistics.median(values), min(values), max(values))


def main():
    ap = argparse.ArgumentParser(description="every sluice benchmark, one table")
    ap.add_argument("--quick", action="store_true", help="1 run of 200,000 lines per scenario")
    ap.add_argument("--lines", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--only", help="scenarios whose name contains one of these (comma-separated)")
    ap.add_argument("--peers", default=os.environ.get("SLUICE_BENCH_PEERS", "/tmp/sluice-peers"),
                    help="rsyslog and syslog-ng unpacked by bench/fetch_peers.sh")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/agent/sluice"))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--dead-sink-seconds", type=int)
    args = ap.parse_args()
    args.lines = args.lines or (200_000 if args.quick else 2_000_000)
    args.runs = args.runs or (1 if args.quick else 3)
    dead_seconds = args.dead_sink_seconds or (10 if args.quick else 60)
    desc = machine(args.binary)
    t_start = time.monotonic()
    rows, failures, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-all-") as tmp:
        b = Bench(args, tmp)
        b.notes, b.extra_rows = {}, {}
        sizes = {"plain": os.path.getsize(b.plain), "json": os.path.getsize(b.json),
                 "game": os.path.getsize(b.game)}
        selected = SCENARIOS
        if args.only:
            keys = args.only.split(",")
            selected = [s for s in SCENARIOS if any(k in s[0] for k in keys)]
        for name, inp, fn in selected:
            if name in PEERS:
                exe = os.path.join(args.peers, "usr/sbin",
                                   "rsyslogd" if "rsyslog" in name else "syslog-ng")
                if not os.path.exists(exe):
                    notes.append("%s: not run, %s missing (bench/fetch_peers.sh %s unpacks "
                                 "Debian's packages there)" % (name, exe, args.peers))
                    continue
            results = []
            runs = 1 if fn is kafka else args.runs  # kafka_bench takes the best of 3 itself
            try:
                for _ in range(runs):
                    results.append(fn(b))
            except Exception as e:  # a scenario that cannot run is reported, never left out
                failures.append("%s: %s" % (name, str(e).replace("\n", " ")[:300]))
                print("FAILED %s: %s" % (name, e), file=sys.stderr, flush=True)
                continue
            rows.append((name, b.n, sizes[inp], results))
            print("%-44s %s" % (name, fmt_range([b.n / r[0] for r in results])), flush=True)
            for extra, r in b.extra_rows.items():
                rows.append((extra, b.n, sizes[inp], [r]))
            b.extra_rows = {}
        held = held_rss(b, dead_seconds)
        stripped, unstripped = stripped_size(args.binary, tmp)
        lmdb_out = lmdb_bench(b, 256 if args.quick else 10240)
    total = time.monotonic() - t_start
    table = ["| scenario | events/s | MB/s | CPU s | CPU s per 2M lines (target) | peak RSS MB |",
             "|---|---|---|---|---|---|"]
    for name, n, size, results in rows:
        walls = [r[0] for r in results]
        cpus = [r[1] for r in results if r[1] is not None]
        rss = [r[2] for r in results if r[2] is not None]
        per2m = ("%.2f" % (statistics.median(cpus) * 2e6 / n)) if cpus else "-"
        if name in TARGETS:
            per2m += " (<= %.2f)" % TARGETS[name]
        table.append("| %s | %s | %s | %s | %s | %s |" % (
            name, fmt_range([n / w for w in walls]), fmt_range([size / 1e6 / w for w in walls]),
            fmt_range(cpus, "%.2f") if cpus else "-", per2m,
            fmt_range(rss, "%.1f") if rss else "-"))
    other = [("stripped binary size", "%.1f MB (%.1f MB unstripped)" %
              (stripped / 1e6, unstripped / 1e6))] + held
    text = ["# sluice benchmark results", "",
            "Written by `bench/run_all.sh%s` (do not edit by hand). %d lines of about 200 bytes "
            "per scenario, %s; %.0f s in all, run on %s UTC." %
            (" --quick" if args.quick else "", args.lines,
             "median of %d runs with the range in brackets" % args.runs if args.runs > 1 else
             "1 run each", total, time.strftime("%Y-%m-%d %H:%M", time.gmtime())), "",
            "| machine | |", "|---|---|"] + ["| %s | %s |" % kv for kv in desc] + [""] + table + [
            "", "| figure | value |", "|---|---|"] + ["| %s | %s |" % kv for kv in other] + [""]
    explain = [
        "Events/s and MB/s: lines of the input over the wall time from the process start until "
        "the far side counted every event (the input is read from its first byte). CPU s: "
        "utime + stime of the sluice process from /proc (`wc`, `cat`: of that command, by "
        "bench/sluice_measure). Peak RSS: VmHWM.",
        "stdin -> kafka: bench/kafka_bench.cc (librdkafka's mock broker runs inside the bench "
        "process, 8 partitions, zstd, idempotent); its figures are the best of its own 3 runs, "
        "and the plain producer has no CPU or RSS of its own (it is the bench process).",
        "http source load: bench/http_load.cc, 8 keep-alive connections, requests of 1,000 lines; "
        "wall time is the load generator's.",
        "json + 5 s tumble window: COUNT(*) and AVG(x) by game_id and event over the JSON game "
        "events of bench/sql_pipeline_bench.py, taildir -> lmdb (a pipeline reads a durable "
        "channel) -> pipeline -> memory -> null; the raw events also go to a null sink.",
        "CPU s is counted in 10 ms ticks: with --quick (200,000 lines) the per-2M column is that "
        "coarse (x10); use the full form for the targets.",
        "rsyslog 8.2302 and syslog-ng 3.38 are Debian 12's packages, unpacked by "
        "bench/fetch_peers.sh (they conflict with each other and would replace the machine's "
        "logger if installed), reading the same file from its start: rsyslog imfile -> omfwd "
        "(TCP, template %msg%\\n, a LinkedList queue of 100,000); syslog-ng file() (no-parse, "
        "log-fetch-limit 1000, log-iw-size 100000) -> network() or http() (batches of 1,000 "
        "lines, 4 workers), flow-control and log_fifo_size 100000 (without flow-control it "
        "drops what does not fit its queue). Debian's rsyslog has no HTTP output (omhttp is not "
        "built), so it has no HTTP row.",
        "avro -> avro: taildir -> memory -> avro sink -> a second sluice (avro source -> memory -> "
        "null); CPU s is the sender's plus the collector's, peak RSS the sender's.",
    ] + ["%s: %s" % kv for kv in b.notes.items()] + notes + [
        "FAILED %s" % f for f in failures]
    text += ["- " + e for e in explain] + [""]
    text += ["## lmdb channel (bench/lmdb_bench.cc)", "",
             "The channel on its own (no agent process): puts with `sync = \"full\"` at several "
             "batch sizes, take + commit, and the start with a backlog (environment open + first "
             "take; the agent opens the same way, but this is not the whole process start-up).",
             "", "```", lmdb_out.rstrip("\n"), "```", ""]
    with open(args.results, "w") as f:
        f.write("\n".join(text))
    print("\n".join(table + [""] + ["| %s | %s |" % kv for kv in other]))
    print(lmdb_out)
    for e in notes + failures:
        print(e)
    return 1 if failures else 0


def machine(binary):
    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"

    model = "?"
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                model = l.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for l in f:
            if l.startswith("MemTotal:"):
                mem = int(l.split()[1])
    debian = open("/etc/debian_version").read().strip() if os.path.exists(
        "/etc/debian_version") else "?"
    rev = cmd("git", "-C", ROOT, "rev-parse", "--short=12", "HEAD")
    # The results file itself does not count (a previous run rewrote it).
    dirty = cmd("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", ".",
                ":!bench/RESULTS.md")
    return [("nproc", str(os.cpu_count())), ("CPU", model), ("RAM", "%.1f GiB" % (mem / 1048576)),
            ("kernel", platform.release()), ("Debian", debian),
            ("sluice git revision", rev + (" (with uncommitted changes)" if dirty else "")),
            ("sluice version", cmd(binary, "version")),
            ("load average at start", "%.2f %.2f %.2f" % os.getloadavg())]


if __name__ == "__main__":
    sys.exit(main())

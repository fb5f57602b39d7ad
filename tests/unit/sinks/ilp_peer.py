#!/usr/bin/python3
"""A line-protocol receiver for the ilp sink's tests (stdlib only), answering as QuestDB or as
InfluxDB 1.x do when a line is bad (PROTOCOLS.md 4.2, 4.4). A line is bad when it contains BAD.

  ilp_peer.py --addr-file FILE --out FILE --mode questdb|influx [--fail N]

POST /write: questdb mode: any bad line -> 400 JSON naming the first bad line (1-based) and
nothing is kept; else every line is kept, 204. influx mode: the good lines are kept; any bad ->
400 {"error": "partial write: unable to parse '<line>': bad dropped=K"}; else 204. --fail N
answers the first N requests 503 with Retry-After: 1 (nothing kept); --status NNN answers every request NNN with
body "no". In influx mode a request without db= answers 400 {"error": "database is required"}. Every kept line is appended to --out; each
request appends "#REQ <status> <lines>" to --out + ".req".
"""
import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ARGS = None
STATE = {"fail": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(204 if self.path == "/ping" else 404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace")
        lines = [l for l in body.split("\n") if l]
        with LOCK:
            status = 204
            keep = []
            reply = b""
            if ARGS.status:
                status = ARGS.status
                reply = b"no"
            elif ARGS.mode == "influx" and "db=" not in self.path:
                status = 400
                reply = b'{"error":"database is required"}'
            elif STATE["fail"] > 0:
                STATE["fail"] -= 1
                status = 503
                reply = b'{"error":"busy"}'
            elif ARGS.mode == "questdb":
                bad = [i for i, l in enumerate(lines) if "BAD" in l]
                if bad:
                    status = 400
                    reply = json.dumps({"code": "invalid",
                                        "message": "failed to parse line protocol:errors encountered on line(s):\nerror in line %d: bad" % (bad[0] + 1),
                                        "line": bad[0] + 1, "errorId": "0123456789ab-1"}).encode()
                else:
                    keep = lines
            else:
                bad = [l for l in lines if "BAD" in l]
                keep = [l for l in lines if "BAD" not in l]
                if bad:
                    status = 400
                    reply = json.dumps({"error": "partial write: unable to parse '%s': bad dropped=%d" % (bad[0], len(bad))}).encode()
            with open(ARGS.out, "a") as f:
                for l in keep:
                    f.write(l + "\n")
            with open(ARGS.out + ".req", "a") as f:
                f.write("#REQ %d %d %s\n" % (status, len(lines), self.path))
        self.answer(status, reply)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", default="questdb")
    ap.add_argument("--fail", type=int, default=0)
    ap.add_argument("--status", type=int, default=0)
    ARGS = ap.parse_args()
    STATE["fail"] = ARGS.fail
    open(ARGS.out, "a").close()
    open(ARGS.out + ".req", "a").close()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = ARGS.addr_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("127.0.0.1:%d\n" % srv.server_address[1])
    os.rename(tmp, ARGS.addr_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()

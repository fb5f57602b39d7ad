#!/usr/bin/python3
"""A small HTTP/1.1 receiver for the HTTP sink tests (stdlib only): records every request, decodes
its body, fails on demand and counts.

  http_peer.py --addr-file FILE --out FILE [--port P] [--script A,B,...] [--health-path /health]
               [--max-body BYTES] [--tls-cert PEM --tls-key KEY [--tls-client-ca PEM]]

Listens on 127.0.0.1:P (0: any free port; SO_REUSEADDR, so a restarted peer can take the same
port), writes "127.0.0.1:PORT\\n" to --addr-file once listening (atomically), and appends one JSON
line per request to --out:
  {"n": seq, "method": "POST", "path": "/in", "headers": {lower-case: value},
   "encoding": "gzip", "raw_bytes": 123, "body": "<decoded text>", "answer": "200"}

A HEAD (any path) or any request to the health path answers 200 ("healthy"), or 503 while down.
Actions, applied to the data requests (not to HEAD, the health path or /_peer/...) in order; when the
script is used up every request answers 200:
  ok            200 with body "ok"
  503[:S]       503 with Retry-After: S (default 1) and body "busy"
  429[:S]       429 with Retry-After: S
  500           500 with body "internal error"
  NNN[:TEXT]    status NNN (400, 404, 413...) with body TEXT (default "bad request: rejected by peer")
  reset         close the connection with a TCP reset, no answer
  slow:MS       wait MS milliseconds, then 200
Control (HTTP on the same port):
  POST /_peer/script   body "a,b,c": replaces the remaining script
  POST /_peer/down     health and data requests answer 503 until /_peer/up
  POST /_peer/up
  GET  /_peer/stats    {"requests": N (data), "health": N, "by_answer": {...},
                        "connections": N (that carried data requests),
                        "events": N (JSON array items or lines decoded)}
With --max-body, a data request whose body (as sent) is larger answers 413 before the script is
consulted, as nginx's client_max_body_size does, and is recorded with "answer": "413".
A body whose Content-Encoding cannot be decoded (gzip via the stdlib, zstd via the `zstd` CLI)
answers 400 and is recorded with "decode_error".
"""
import argparse
import gzip
import json
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {
    "script": [],
    "down": False,
    "requests": 0,
    "health": 0,
    "by_answer": {},
    "connections": 0,
    "events": 0,
    "seq": 0,
}
ARGS = None
OUT = None


def decode(encoding, raw):
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    if encoding == "zstd":
        p = subprocess.run(["zstd", "-d", "-c", "-q"], input=raw, capture_output=True, timeout=30)
        if p.returncode != 0:
            raise ValueError("zstd: " + p.stderr.decode(errors="replace").strip())
        return p.stdout
    raise ValueError("unknown Content-Encoding " + encoding)


def count_events(content_type, body):
    if not body:
        return 0
    if content_type.startswith("application/json"):
        try:
            v = json.loads(body)
            return len(v) if isinstance(v, list) else 1
        except ValueError:
            return 0
    return body.count(b"\n") + (0 if body.endswith(b"\n") else 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reset(self):
        # SO_LINGER with a zero timeout: close() sends a RST instead of a FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def control(self, raw):
        path = self.path
        if path == "/_peer/script":
            with LOCK:
                STATE["script"] = [a for a in raw.decode().split(",") if a]
            return self.answer(200, b"ok")
        if path in ("/_peer/down", "/_peer/up"):
            with LOCK:
                STATE["down"] = path == "/_peer/down"
            return self.answer(200, b"ok")
        if path == "/_peer/stats":
            with LOCK:
                s = {k: STATE[k] for k in ("requests", "health", "by_answer", "connections", "events")}
            return self.answer(200, json.dumps(s).encode(), [("Content-Type", "application/json")])
        return self.answer(404, b"unknown control path")

    def handle_any(self):
        raw = self.read_body()
        if self.path.startswith("/_peer/"):
            return self.control(raw)
        if self.path.split("?")[0] == ARGS.health_path or self.command == "HEAD":
            with LOCK:
                STATE["health"] += 1
                down = STATE["down"]
            return self.answer(503 if down else 200, b"down" if down else b"healthy")
        with LOCK:
            if not getattr(self, "counted", False):
                self.counted = True  # connections that carried data requests
                STATE["connections"] += 1
            STATE["requests"] += 1
            STATE["seq"] += 1
            seq = STATE["seq"]
            if ARGS.max_body and len(raw) > ARGS.max_body:
                action = "413:body larger than %d bytes" % ARGS.max_body
            elif STATE["down"]:
                action = "503:1"
            else:
                action = STATE["script"].pop(0) if STATE["script"] else "ok"
        rec = {
            "n": seq,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "encoding": self.headers.get("Content-Encoding", ""),
            "raw_bytes": len(raw),
        }
        body = b""
        try:
            body = decode(rec["encoding"], raw)
            rec["body"] = body.decode("utf-8", errors="replace")
        except (ValueError, OSError, zlib.error, EOFError) as e:
            rec["decode_error"] = str(e)
            action = "400:cannot decode body: " + str(e)
        name, _, arg = action.partition(":")
        rec["answer"] = name
        if name == "ok" or name == "slow":
            with LOCK:
                STATE["events"] += count_events(self.headers.get("Content-Type", ""), body)
        with LOCK:
            STATE["by_answer"][name] = STATE["by_answer"].get(name, 0) + 1
            OUT.write(json.dumps(rec) + "\n")
            OUT.flush()
        if name == "ok":
            return self.answer(200, b"ok")
        if name == "slow":
            time.sleep(int(arg or "1000") / 1000.0)
            return self.answer(200, b"ok")
        if name in ("503", "429"):
            return self.answer(int(name), b"busy", [("Retry-After", arg or "1")])
        if name == "500":
            return self.answer(500, b"internal error")
        if name.isdigit():
            return self.answer(int(name), (arg or "bad request: rejected by peer").encode())
        if name == "reset":
            return self.reset()
        return self.answer(500, ("unknown action " + action).encode())

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    global ARGS, OUT
    p = argparse.ArgumentParser()
    p.add_argument("--addr-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--script", default="")
    p.add_argument("--health-path", default="/health")
    p.add_argument("--max-body", type=int, default=0, help="answer 413 to larger bodies")
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    p.add_argument("--tls-client-ca", default="", help="require a client certificate from this CA")
    ARGS = p.parse_args()
    STATE["script"] = [a for a in ARGS.script.split(",") if a]
    OUT = open(ARGS.out, "a")
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    if ARGS.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.tls_cert, ARGS.tls_key)
        if ARGS.tls_client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(ARGS.tls_client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = ARGS.addr_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("127.0.0.1:%d\n" % srv.server_address[1])
    os.rename(tmp, ARGS.addr_file)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

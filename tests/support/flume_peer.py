#!/usr/bin/python3
"""An independent Flume Avro RPC peer built on Debian's python3-avro (avro.ipc Requestor and
Responder) with Netty's framing and a stateful handshake, as Flume's NettyTransceiver does.

  client HOST:PORT [--events N] [--batch B] [--first K] [--known-hash] [--retry] [--out FILE]
      Sends events K..K+N-1 (body "event-<i>", headers {"seq": "<i>", "k": "v"}) with appendBatch
      and writes one JSON object with the answers to --out (or stdout):
      {"ok": batches answered OK, "failed": FAILED, "errors": [...], "acked": [seqs answered OK]}.
      --known-hash claims Flume's protocol hash (86aa...), so the first handshake gets BOTH;
      without it the client speaks python-avro's own hash and must send its protocol text.
      --retry resends a batch until OK (reconnecting after errors), for up to 60 s.
  server --addr-file FILE --out FILE [--known-hash] [--fail-first N]
      Listens on 127.0.0.1:0, writes HOST:PORT to --addr-file, appends each received event to
      --out as a JSON line {"headers": {...}, "body": "..."}; answers FAILED to the first N calls.
"""
import argparse
import io
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time

import avro.io
import avro.ipc
import avro.protocol

FLUME_PROTOCOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flume_protocol.json")
FLUME_HASH = bytes.fromhex("86aadae2c45474c0fe93ffd0f2350a65")


def load_protocol(known_hash):
    with open(FLUME_PROTOCOL) as f:
        proto = avro.protocol.parse(f.read())
    if known_hash:
        proto._md5 = FLUME_HASH  # what Java's Protocol.toString() hashes to
    return proto


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed")
        out += chunk
    return out


def read_frame(sock):
    serial, count = struct.unpack("!ii", read_exact(sock, 8))
    payload = b""
    for _ in range(count):
        (n,) = struct.unpack("!i", read_exact(sock, 4))
        payload += read_exact(sock, n)
    return serial, payload


def write_frame(sock, serial, payload):
    sock.sendall(struct.pack("!iii", serial, 1, len(payload)) + payload)


class NettyTransceiver:
    """One TCP connection with Netty framing; serials count from 1 as in Java."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.remote_name = f"{host}:{port}"
        self.serial = 0

    def transceive(self, request):
        self.serial += 1
        write_frame(self.sock, self.serial, request)
        serial, payload = read_frame(self.sock)
        if serial != self.serial:
            raise ConnectionError(f"response serial {serial} for request {self.serial}")
        return payload

    def close(self):
        self.sock.close()


class StatefulRequestor(avro.ipc.Requestor):
    """Sends the handshake only until it succeeds on the connection (Netty's stateful transport)."""

    def __init__(self, proto, transceiver):
        super().__init__(proto, transceiver)
        self.connected = False
        self.sent_handshake = False

    def write_handshake_request(self, encoder):
        self.sent_handshake = not self.connected
        if self.sent_handshake:
            super().write_handshake_request(encoder)

    def read_handshake_response(self, decoder):
        if not self.sent_handshake:
            return True
        ok = super().read_handshake_response(decoder)
        self.connected = ok
        return ok


def run_client(args):
    host, port = args.address.rsplit(":", 1)
    proto = load_protocol(args.known_hash)
    if args.known_hash:
        avro.ipc.REMOTE_HASHES[f"{host}:{port}"] = FLUME_HASH
    result = {"ok": 0, "failed": 0, "errors": [], "acked": [], "handshakes": []}
    conn = None
    requestor = None
    deadline = time.time() + 60
    seq = args.first
    last = args.first + args.events
    while seq < last:
        batch = [{"headers": {"seq": str(i), "k": "v"}, "body": f"event-{i}".encode()}
                 for i in range(seq, min(last, seq + args.batch))]
        try:
            if conn is None:
                conn = NettyTransceiver(host, int(port))
                requestor = StatefulRequestor(proto, conn)
                if args.known_hash:
                    requestor.remote_protocol = proto  # Java's guess: the server speaks ours
            status = requestor.request("appendBatch", {"events": batch})
        except Exception as e:  # noqa: BLE001 - any failure is reported and maybe retried
            result["errors"].append(f"{type(e).__name__}: {e}")
            if conn is not None:
                conn.close()
            conn = None
            if not args.retry or time.time() > deadline:
                break
            time.sleep(0.05)
            continue
        if status == "OK":
            result["ok"] += 1
            result["acked"].extend(range(seq, seq + len(batch)))
            seq += len(batch)
        else:
            result["failed"] += 1
            if not args.retry:
                seq += len(batch)
            elif time.time() > deadline:
                break
            else:
                time.sleep(0.02)
    if conn is not None:
        conn.close()
    text = json.dumps(result)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        os.rename(args.out + ".tmp", args.out)
    else:
        print(text)


class FlumeResponder(avro.ipc.Responder):
    def __init__(self, proto, server):
        super().__init__(proto)
        self.server = server
        self.connected = False
        self.remote = None

    def process_handshake(self, decoder, encoder):
        if self.connected:
            return self.remote
        remote = super().process_handshake(decoder, encoder)
        if remote is not None:
            self.connected = True
            self.remote = remote
        return remote

    def invoke(self, message, request):
        events = request["events"] if message.name == "appendBatch" else [request["event"]]
        with self.server.lock:
            self.server.calls += 1
            if self.server.calls <= self.server.fail_first:
                return "FAILED"
            with open(self.server.out, "a") as f:
                for e in events:
                    f.write(json.dumps({"headers": e["headers"],
                                        "body": e["body"].decode("utf-8", "replace")}) + "\n")
        return "OK"


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        responder = FlumeResponder(self.server.proto, self.server)
        try:
            while True:
                serial, payload = read_frame(self.request)
                write_frame(self.request, serial, responder.respond(payload))
        except (ConnectionError, OSError):
            return


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def run_server(args):
    server = Server(("127.0.0.1", 0), Handler)
    server.proto = load_protocol(args.known_hash)
    server.out = args.out
    server.fail_first = args.fail_first
    server.calls = 0
    server.lock = threading.Lock()
    open(args.out, "a").close()
    host, port = server.server_address
    with open(args.addr_file + ".tmp", "w") as f:
        f.write(f"{host}:{port}\n")
    os.rename(args.addr_file + ".tmp", args.addr_file)
    server.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("address")
    c.add_argument("--events", type=int, default=100)
    c.add_argument("--batch", type=int, default=10)
    c.add_argument("--first", type=int, default=1)
    c.add_argument("--known-hash", action="store_true")
    c.add_argument("--retry", action="store_true")
    c.add_argument("--out")
    s = sub.add_parser("server")
    s.add_argument("--addr-file", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--known-hash", action="store_true")
    s.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    if args.mode == "client":
        run_client(args)
    else:
        run_server(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""A small local DataHub (JSON PutRecords, ../shared/PROTOCOLS.md §3) for tests. stdlib only.

  datahub_peer.py --addr-file FILE [--project P] [--topic T] [--access-id ID] [--access-key KEY]
                  [--shards N] [--record-type blob|tuple] [--schema name:type,...] [--count-only]

Listens on 127.0.0.1:0 (HTTP/1.1, keep-alive) and writes HOST:PORT to --addr-file once ready.
Every request is checked, independently of sluice's code:
  - the signature: Authorization "DATAHUB id:base64(HMAC-SHA1(key, string-to-sign))" recomputed from
    the rules of §3.3 (method, Content-Type, Date, sorted x-datahub-* headers, path); a Date more
    than 15 minutes off; a wrong id or signature answers 401 Unauthorized (counted);
  - Content-Encoding: deflate (a zlib stream) with x-datahub-content-raw-size equal to the
    inflated length;
  - the body: {"Action":"pub","Records":[{"ShardId":"..","Data":..}]} and nothing else; BLOB Data
    is canonical padded base64; TUPLE Data is an array of strings or nulls, one per schema field,
    each in its type's text form (§3.2). A malformed body answers 400 InvalidParameter (counted
    as bad_requests); a record whose values do not fit the schema gets MalformedRecord (counted).
GET /projects/P/topics/T/shards lists the shards ({"Shards":[{ShardId, State, BeginHashKey,
EndHashKey}]}). Records sent to a CLOSED shard fail with InvalidShardOperation.

Control (unsigned, for the test): POST /_control with a JSON object of any of
  {"fail_indices": [i, ...], "fail_times": n, "fail_code": "InternalServerError"}
      the next n PutRecords answers fail those request positions (in FailedRecords);
  {"fail_ratio": r, "fail_code": "LimitExceeded", "seed": s}   each record fails with chance r;
  {"malformed_indices": [i, ...]}                 the next answer says MalformedRecord for those;
  {"split_shards": true}                          closes every shard and opens twice as many
                                                  (so the next put gets InvalidShardOperation);
  {"status_next": [503, 429, ...]}                the next requests answer these statuses with a
                                                  DataHub error body (503 ServiceUnavailable,
                                                  429 LimitExceeded, 401 Unauthorized, 500 ...);
  {"reset_next": n, "reset_after_accept": false}  the next n puts get a connection reset (after
                                                  recording their records if reset_after_accept);
  {"clear": true}                                 drops every pending fault.
GET /_records: [{"shard": id, "data": text}, ...] accepted records in arrival order (BLOB: the
decoded bytes as text; TUPLE: the values array as compact JSON).
GET /_stats: counters (requests, puts, lists, records, failed_records, bad_requests,
signature_failures, malformed, deflate_requests, resets, statuses, shard_ids).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import zlib
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INT_RANGES = {
    "bigint": (-(2 ** 63), 2 ** 63 - 1),
    "timestamp": (-(2 ** 63), 2 ** 63 - 1),
    "integer": (-(2 ** 31), 2 ** 31 - 1),
    "smallint": (-(2 ** 15), 2 ** 15 - 1),
    "tinyint": (-128, 127),
}
NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def value_ok(kind, v):
    if v is None:
        return True
    if not isinstance(v, str):
        return False
    if kind in INT_RANGES:
        if not re.fullmatch(r"-?\d+", v):
            return False
        lo, hi = INT_RANGES[kind]
        return lo <= int(v) <= hi
    if kind in ("double", "float", "decimal"):
        return NUMBER.match(v) is not None
    if kind == "boolean":
        return v in ("true", "false")
    return True  # string, json


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.records = []
        self.stats = {
            "requests": 0, "puts": 0, "lists": 0, "records": 0, "failed_records": 0,
            "bad_requests": 0, "signature_failures": 0, "malformed": 0, "deflate_requests": 0,
            "resets": 0, "statuses": {}, "records_by_shard": {}, "max_records_per_put": 0,
            "bad_request_reasons": [],
        }
        self.schema = []
        if args.schema:
            for item in args.schema.split(","):
                name, _, kind = item.partition(":")
                self.schema.append((name, (kind or "string").lower()))
        self.shards = []
        self.next_shard = 0
        self.open_shards(args.shards)
        self.fail_indices, self.fail_times, self.fail_code = set(), 0, "InternalServerError"
        self.fail_ratio, self.rng = 0.0, random.Random(1)
        self.malformed_indices = set()
        self.status_next = []
        self.reset_next, self.reset_after_accept = 0, False

    def open_shards(self, n):
        span = 2 ** 128
        for i in range(n):
            begin = span * i // n
            end = span * (i + 1) // n if i + 1 < n else span - 1
            self.shards.append({"ShardId": str(self.next_shard), "State": "ACTIVE",
                                "BeginHashKey": "%032X" % begin, "EndHashKey": "%032X" % end})
            self.next_shard += 1

    def control(self, c):
        if c.get("clear"):
            self.fail_indices, self.fail_times, self.fail_ratio = set(), 0, 0.0
            self.malformed_indices, self.status_next, self.reset_next = set(), [], 0
        if "fail_indices" in c:
            self.fail_indices = set(c["fail_indices"])
            self.fail_times = c.get("fail_times", 1)
        if "fail_code" in c:
            self.fail_code = c["fail_code"]
        if "fail_ratio" in c:
            self.fail_ratio = float(c["fail_ratio"])
            self.rng = random.Random(c.get("seed", 1))
        if "malformed_indices" in c:
            self.malformed_indices = set(c["malformed_indices"])
        if c.get("split_shards"):
            n = sum(1 for s in self.shards if s["State"] == "ACTIVE")
            for s in self.shards:
                s["State"] = "CLOSED"
            self.open_shards(max(1, 2 * n))
        if "status_next" in c:
            self.status_next = list(c["status_next"])
        if "reset_next" in c:
            self.reset_next = int(c["reset_next"])
            self.reset_after_accept = bool(c.get("reset_after_accept", False))


ERROR_CODES = {401: "Unauthorized", 403: "NoPermission", 404: "NoSuchTopic", 429: "LimitExceeded",
               500: "InternalServerError", 503: "ServiceUnavailable"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "datahub-peer"

    def log_message(self, fmt, *a):
        pass

    @property
    def st(self):
        return self.server.state

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-datahub-request-id", "req-%d" % self.st.stats["requests"])
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, {"ErrorCode": code, "ErrorMessage": message, "RequestId": "r"})

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""

    def check_signature(self):
        a = self.st.args
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("DATAHUB "):
            return "no DATAHUB Authorization header"
        ident, _, sig = auth[len("DATAHUB "):].partition(":")
        if ident != a.access_id:
            return "unknown access id"
        date = self.headers.get("Date", "")
        try:
            when = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return "bad Date header %r" % date
        if not date.endswith(" GMT") or abs(when - time.time()) > 900:
            return "Date %r is not a current RFC 1123 GMT date" % date
        lines = [self.command, self.headers.get("Content-Type", ""), date]
        dh = sorted((k.lower(), v) for k, v in self.headers.items()
                    if k.lower().startswith("x-datahub-"))
        lines += ["%s:%s" % kv for kv in dh]
        lines.append(self.path)  # PutRecords and ListShards carry no query
        expected = base64.b64encode(hmac.new(a.access_key.encode(), "\n".join(lines).encode(),
                                             hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, sig):
            return "signature mismatch"
        return None

    def resource(self):
        a = self.st.args
        return "/projects/%s/topics/%s/shards" % (a.project, a.topic)

    def bump_status(self, status):
        s = self.st.stats["statuses"]
        s[str(status)] = s.get(str(status), 0) + 1

    def do_GET(self):
        st = self.st
        if self.path == "/_records":
            with st.lock:
                return self.reply(200, st.records)
        if self.path == "/_stats":
            with st.lock:
                return self.reply(200, st.stats)
        with st.lock:
            st.stats["requests"] += 1
            if self.path != self.resource():
                return self.error(404, "NoSuchTopic", "no such resource " + self.path)
            why = self.check_signature()
            if why:
                st.stats["signature_failures"] += 1
                self.bump_status(401)
                return self.error(401, "Unauthorized", why)
            if st.status_next:
                status = st.status_next.pop(0)
                self.bump_status(status)
                return self.error(status, ERROR_CODES.get(status, "InternalServerError"),
                                  "injected")
            st.stats["lists"] += 1
            self.bump_status(200)
            self.reply(200, {"Shards": st.shards, "Protocol": "http1.1", "Interval": 500})

    def reset(self):
        self.st.stats["resets"] += 1
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def do_POST(self):
        st = self.st
        raw = self.body()
        if self.path == "/_control":
            with st.lock:
                st.control(json.loads(raw or b"{}"))
            return self.reply(200, {"ok": True})
        with st.lock:
            st.stats["requests"] += 1
            if self.path != self.resource():
                return self.error(404, "NoSuchTopic", "no such resource " + self.path)
            why = self.check_signature()
            if why:
                st.stats["signature_failures"] += 1
                self.bump_status(401)
                return self.error(401, "Unauthorized", why)
            if st.status_next:
                status = st.status_next.pop(0)
                self.bump_status(status)
                return self.error(status, ERROR_CODES.get(status, "InternalServerError"),
                                  "injected")
            if self.headers.get("Content-Type") != "application/json":
                return self.bad("Content-Type is not application/json")
            enc = self.headers.get("Content-Encoding")
            if enc is not None:
                if enc != "deflate":
                    return self.bad("unexpected Content-Encoding %r" % enc)
                try:
                    raw = zlib.decompress(raw)  # a complete zlib stream, not raw deflate
                except zlib.error as e:
                    return self.bad("not a zlib stream: %s" % e)
                if self.headers.get("x-datahub-content-raw-size") != str(len(raw)):
                    return self.bad("x-datahub-content-raw-size %r != %d" % (
                        self.headers.get("x-datahub-content-raw-size"), len(raw)))
                st.stats["deflate_requests"] += 1
            elif self.headers.get("x-datahub-content-raw-size") is not None:
                return self.bad("x-datahub-content-raw-size without Content-Encoding")
            try:
                req = json.loads(raw)
            except ValueError as e:
                return self.bad("not JSON: %s" % e)
            if not isinstance(req, dict) or set(req) != {"Action", "Records"} or \
                    req["Action"] != "pub" or not isinstance(req["Records"], list):
                return self.bad("not {\"Action\":\"pub\",\"Records\":[...]}")
            records = req["Records"]
            if not records:
                return self.bad("no records")
            shards = {s["ShardId"]: s for s in st.shards}
            decoded = []
            for i, r in enumerate(records):
                if not isinstance(r, dict) or set(r) != {"ShardId", "Data"} or \
                        not isinstance(r["ShardId"], str):
                    return self.bad("record %d is not {ShardId, Data}" % i)
                if r["ShardId"] not in shards:
                    return self.bad("record %d: unknown shard %r" % (i, r["ShardId"]))
                data = r["Data"]
                if st.args.record_type == "blob":
                    if not isinstance(data, str):
                        return self.bad("record %d: BLOB Data is not a string" % i)
                    try:
                        blob = base64.b64decode(data, validate=True)
                    except ValueError:
                        return self.bad("record %d: Data is not base64" % i)
                    if base64.b64encode(blob).decode() != data:
                        return self.bad("record %d: Data is not canonical padded base64" % i)
                    decoded.append(blob.decode("utf-8", "replace"))
                else:
                    if not isinstance(data, list):
                        return self.bad("record %d: TUPLE Data is not an array" % i)
                    decoded.append(json.dumps(data, separators=(",", ":")))
            if st.reset_next > 0:
                st.reset_next -= 1
                if st.reset_after_accept:
                    for r, d in zip(records, decoded):
                        st.records.append({"shard": r["ShardId"], "data": d})
                        st.stats["records"] += 1
                return self.reset()
            st.stats["puts"] += 1
            st.stats["max_records_per_put"] = max(st.stats["max_records_per_put"], len(records))
            failed = []
            fail_now = st.fail_indices if st.fail_times > 0 else set()
            if st.fail_times > 0:
                st.fail_times -= 1
            malformed_now, st.malformed_indices = st.malformed_indices, set()
            for i, (r, d) in enumerate(zip(records, decoded)):
                if shards[r["ShardId"]]["State"] != "ACTIVE":
                    failed.append({"Index": i, "ErrorCode": "InvalidShardOperation",
                                   "ErrorMessage": "The specified shard is not active."})
                    continue
                if st.args.record_type == "tuple":
                    values = r["Data"]
                    if len(values) != len(st.schema) or not all(
                            value_ok(kind, v) for (_, kind), v in zip(st.schema, values)):
                        st.stats["malformed"] += 1
                        failed.append({"Index": i, "ErrorCode": "MalformedRecord",
                                       "ErrorMessage": "Record field size not match"})
                        continue
                if i in malformed_now:
                    failed.append({"Index": i, "ErrorCode": "MalformedRecord",
                                   "ErrorMessage": "injected"})
                    continue
                if i in fail_now or (st.fail_ratio > 0 and st.rng.random() < st.fail_ratio):
                    failed.append({"Index": i, "ErrorCode": st.fail_code,
                                   "ErrorMessage": "injected"})
                    continue
                if not st.args.count_only:
                    st.records.append({"shard": r["ShardId"], "data": d})
                st.stats["records"] += 1
                by = st.stats["records_by_shard"]
                by[r["ShardId"]] = by.get(r["ShardId"], 0) + 1
            st.stats["failed_records"] += len(failed)
            self.bump_status(200)
            self.reply(200, {"FailedRecordCount": len(failed), "FailedRecords": failed})

    def bad(self, why):
        self.st.stats["bad_requests"] += 1
        if len(self.st.stats["bad_request_reasons"]) < 20:
            self.st.stats["bad_request_reasons"].append(why)
        self.bump_status(400)
        self.error(400, "InvalidParameter", why)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr-file", required=True)
    p.add_argument("--project", default="weblogs")
    p.add_argument("--topic", default="events")
    p.add_argument("--access-id", default="test-id")
    p.add_argument("--access-key", default="test-key")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--record-type", choices=["blob", "tuple"], default="blob")
    p.add_argument("--schema", default="")
    p.add_argument("--count-only", action="store_true")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(args)
    host, port = server.server_address[:2]
    tmp = args.addr_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%s:%d\n" % (host, port))
    os.rename(tmp, args.addr_file)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""A merchant's notify endpoint in a dozen lines: hand the raw POST body to
the database and send back what it answers, with HTTP 200.

    /usr/bin/python3 sim/notify_receiver.py --port 8080 --dsn "dbname=postgres"

POST /refund goes to wxpay_handle_refund_notify, anything else to
wxpay_handle_notify.  API v3: POST /v3/notify/<mch_id> (one notify_url per
merchant) goes to wxpay_handle_notify_v3 with the request's headers, and
its HTTP status and body are sent back as they are.  This is demo and
test tooling; a production endpoint does the same in the application's own
web framework.
"""
import argparse
import http.server
import json
import re
import threading

import psycopg2

MAX_BODY = 1024 * 1024


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    local = threading.local()

    def connection_for_thread(self):
        conn = getattr(self.local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg2.connect(self.server.dsn)
            conn.autocommit = True
            self.local.conn = conn
        return conn

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        v3 = re.fullmatch(r"/v3/notify/([0-9]{1,32})", self.path)
        if v3:
            return self.reply_v3(v3.group(1), body)
        handler = "wxpay_handle_refund_notify" if self.path.startswith("/refund") else "wxpay_handle_notify"
        with self.connection_for_thread().cursor() as cur:
            cur.execute("SELECT %s(%%s)" % handler, (body,))
            reply = cur.fetchone()[0].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def reply_v3(self, mch_id, body):
        """The v3 handler decides the status; its body, if any, is JSON."""
        with self.connection_for_thread().cursor() as cur:
            cur.execute("SELECT status, reply FROM wxpay_handle_notify_v3(%s, %s, %s)",
                        (mch_id, json.dumps(dict(self.headers.items())), body))
            status, reply = cur.fetchone()
        self.send_response(status)
        if reply is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.encode())))
        self.end_headers()
        if reply is not None:
            self.wfile.write(reply.encode())

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer((args.host, args.port), Receiver)
    server.dsn = args.dsn
    server.quiet = args.quiet
    server.daemon_threads = True
    print("notify receiver on http://%s:%d" % (args.host, args.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

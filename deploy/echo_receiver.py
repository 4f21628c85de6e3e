#!/usr/bin/env python3
"""A webhook receiver for trying Herald locally: prints each delivery's
headers and body and answers 204. Usage: deploy/echo_receiver.py [port]"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        print(f"--- {self.command} {self.path}")
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "traceparent", "authorization"):
            if self.headers.get(name):
                print(f"{name}: {self.headers[name]}")
        print(body.decode("utf-8", "replace"), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()

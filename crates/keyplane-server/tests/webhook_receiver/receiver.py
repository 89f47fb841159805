"""A webhook receiver for tests/webhooks.rs: an HTTP server on loopback that checks every request
with the Standard Webhooks reference library (PyPI `standardwebhooks`) and the endpoint's secret.

Environment: PORT (to listen on, 127.0.0.1), SECRET (`whsec_…`), OUT (a file: one JSON line per
request, {"id", "verified", "status", "body"}), FAIL_FIRST (answer 503 to this many requests
first: a receiver that fails and recovers). Prints "listening" when ready.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

secret = os.environ["SECRET"]
out_path = os.environ["OUT"]
fail_first = int(os.environ.get("FAIL_FIRST", "0"))
lock = threading.Lock()
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with lock:
            seen += 1
            status = 503 if seen <= fail_first else (204 if verified else 400)
            with open(out_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "id": headers.get("webhook-id"),
                    "verified": verified,
                    "status": status,
                    "signatures": len(headers.get("webhook-signature", "").split()),
                    "body": json.loads(body) if verified else None,
                }) + "\n")
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
print("listening", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)

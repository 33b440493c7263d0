"""Answers every request with the version it was built with (version.txt) and the
instance it runs in; prints one line per request.

MODE=unavailable answers 503 to everything (a release that never becomes healthy);
MODE=silent never listens (a release whose container runs but never answers)."""
import os
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

VERSION = Path(__file__).with_name("version.txt").read_text().strip()
MODE = os.environ.get("MODE", "")


class Probe(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write, as production servers send a small response: a
    # process killed between two writes would truncate an answer already begun, which no
    # proxy can retry (tests kill instances under load and count failed requests).
    wbufsize = 64 * 1024

    def do_GET(self):
        query = parse_qs(urlsplit(self.path).query)
        if "sleep" in query:  # a slow request, to see it finish during a drain
            time.sleep(float(query["sleep"][0]))
        status = 503 if MODE == "unavailable" else 200
        body = f"version={VERSION} host={socket.gethostname()}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    if MODE == "silent":
        while True:
            time.sleep(3600)
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Probe).serve_forever()

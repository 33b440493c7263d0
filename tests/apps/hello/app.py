"""A page that shows what the platform gave this container: its stage, its domain and
the GREETING variable. Listens on $PORT (default 8000)."""
import html
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "1"


class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (
            "<!doctype html><title>hello from regio</title>"
            f"<h1>{html.escape(os.environ.get('GREETING', 'hello'))}</h1>"
            f"<p>version {VERSION}, stage {html.escape(os.environ.get('STAGE', '?'))}, "
            f"domain {html.escape(os.environ.get('DOMAIN', '?'))}</p>\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Page).serve_forever()

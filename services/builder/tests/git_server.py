"""A real git HTTP server on loopback for the builder's tests: git's own http-backend behind
a small threaded WSGI server that asks for HTTP Basic credentials, or redirects elsewhere."""
import base64
import subprocess
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # the test's output stays readable
        pass


class _Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class GitHttpServer:
    """Serves the repositories under ``root`` at http://127.0.0.1:<port>/<name>; with
    ``credentials`` every request must carry them; with ``redirect_to`` every request is
    answered with a redirect there instead."""

    def __init__(self, root: Path, credentials: tuple[str, str] | None = None, redirect_to: str | None = None):
        self.root = root
        self.credentials = credentials
        self.redirect_to = redirect_to
        self.authorizations: list[str | None] = []  # what each request presented
        self.requests = 0
        self._server = make_server("127.0.0.1", 0, self._app, server_class=_Threaded, handler_class=_Quiet)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "GitHttpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ, start_response):
        self.requests += 1
        if self.redirect_to is not None:
            target = self.redirect_to + environ["PATH_INFO"] + (f"?{environ['QUERY_STRING']}"
                                                                if environ.get("QUERY_STRING") else "")
            start_response("302 Found", [("Location", target)])
            return [b""]
        presented = environ.get("HTTP_AUTHORIZATION")
        self.authorizations.append(presented)
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if presented != expected:
                start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
                return [b"credentials required\n"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        cgi = {
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": environ["PATH_INFO"], "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "REQUEST_METHOD": environ["REQUEST_METHOD"], "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""), "PATH": "/usr/bin:/bin",
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=cgi, capture_output=True, check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = [tuple(line.split(": ", 1)) for line in head.decode().split("\r\n") if line]
        status = next((v for k, v in headers if k.lower() == "status"), "200 OK")
        start_response(status, [(k, v) for k, v in headers if k.lower() != "status"])
        return [payload]

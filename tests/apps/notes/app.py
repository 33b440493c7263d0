"""Notes with a database and media storage, as the platform injects them:
POST /notes?text=… writes a row (DEFAULT_DATABASE_DSN) and an object (DEFAULT_STORAGE_DSN);
GET /notes reads both back as JSON. GET /trespass?database=…&bucket=… tries another
environment's database and bucket with this environment's own credentials and says what
the servers answered. GET /reach?port=N says whether a connection to that port of the
services' host opens."""
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native
from s3 import Bucket, Error


def connect(database: str | None = None) -> pg8000.native.Connection:
    dsn = urlsplit(os.environ["DEFAULT_DATABASE_DSN"])
    return pg8000.native.Connection(user=unquote(dsn.username), password=unquote(dsn.password), host=dsn.hostname,
                                    port=dsn.port, database=database or dsn.path.lstrip("/"), timeout=10)


def notes() -> dict:
    db = connect()
    try:
        db.run("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL)")
        rows = [r[0] for r in db.run("SELECT text FROM notes ORDER BY id")]
    finally:
        db.close()
    media = Bucket(os.environ["DEFAULT_STORAGE_DSN"])
    return {"rows": rows, "objects": {key: media.get(key).decode() for key in media.keys()},
            "database_url_is_default": os.environ.get("DATABASE_URL") == os.environ["DEFAULT_DATABASE_DSN"]}


def write(text: str) -> None:
    db = connect()
    try:
        db.run("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL)")
        number = db.run("INSERT INTO notes (text) VALUES (:text) RETURNING id", text=text)[0][0]
    finally:
        db.close()
    Bucket(os.environ["DEFAULT_STORAGE_DSN"]).put(f"notes/{number:04d}.txt", text.encode())


def trespass(database: str, bucket: str) -> dict:
    answers = {}
    try:
        connect(database).close()
        answers["database"] = "connected"
    except Exception as e:  # what the server said is the answer
        answers["database"] = f"refused: {e}"
    for what, attempt in (("list", lambda b: b.keys()), ("read", lambda b: b.get("notes/0001.txt")),
                          ("write", lambda b: b.put("intruder.txt", b"x"))):
        try:
            attempt(Bucket(os.environ["DEFAULT_STORAGE_DSN"], bucket=bucket))
            answers[what] = "allowed"
        except Error as e:
            answers[what] = f"refused: {e.code}"
    return answers


def reach(port: int) -> bool:
    host = urlsplit(os.environ["DEFAULT_DATABASE_DSN"]).hostname
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


class Notes(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/notes":
            self._answer(200, notes())
        elif url.path == "/trespass":
            self._answer(200, trespass(query["database"], query["bucket"]))
        elif url.path == "/reach":  # can this container open a connection to the services' host on ?port=
            self._answer(200, {"reached": reach(int(query["port"]))})
        else:
            self._answer(200, {"host": socket.gethostname()})

    def do_POST(self):
        url = urlsplit(self.path)
        write(parse_qs(url.query)["text"][0])
        self._answer(201, {"written": True})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Notes).serve_forever()

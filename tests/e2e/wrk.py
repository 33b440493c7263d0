"""wrk against the ingress in the background: what a crowd of visitors would have seen."""
import re
import subprocess
import time
from dataclasses import dataclass


@dataclass
class WrkResult:
    requests: int
    non_2xx: int  # wrk counts 3xx as fine; none of these tests expects one
    socket_errors: dict[str, int]  # connect, read, write, timeout
    output: str

    @property
    def failed(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


class Wrk:
    """``with Wrk(url, host) as wrk: …`` then ``wrk.result``. A fresh connection per request
    would measure connection set-up; wrk keeps its connections, as browsers do."""

    def __init__(self, url: str, host: str, seconds: int = 20, connections: int = 8, path: str = "/"):
        self.argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                     "-H", f"Host: {host}", f"{url}{path}"]
        self.seconds = seconds
        self.connections = connections
        self.result: WrkResult | None = None

    def __enter__(self) -> "Wrk":
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1)  # connections up and requests flowing before the test acts
        return self

    def __exit__(self, *exc) -> None:
        output, _ = self.process.communicate(timeout=self.seconds + 30)
        self.result = parse(output)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)


def parse(output: str) -> WrkResult:
    requests = re.search(r"(\d+) requests in", output)
    assert requests, f"wrk printed no summary:\n{output}"
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()))) if errors else {}
    return WrkResult(int(requests.group(1)), int(non_2xx.group(1)) if non_2xx else 0, socket_errors, output)

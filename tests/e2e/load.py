"""A steady client of one site through the ingress, in a thread, recording every answer:
what a visitor of the site would have seen while the platform worked on it."""
import threading
import time
from dataclasses import dataclass

import httpx


@dataclass
class Answer:
    at: float
    status: int | None  # None: no answer (connection refused, reset, timed out)
    body: str


class Load:
    def __init__(self, ingress_url: str, host: str, path: str = "/"):
        self.url = f"{ingress_url}{path}"
        self.host = host
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        # A fresh connection per request: each request is routed by the configuration of its time.
        with httpx.Client(headers={"Host": self.host, "Connection": "close"}, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(self.url)
                    self.answers.append(Answer(time.monotonic(), response.status_code, response.text))
                except httpx.HTTPError as e:
                    self.answers.append(Answer(time.monotonic(), None, f"{type(e).__name__}: {e}"))

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    def versions(self) -> list[str]:
        """The version each answer came from, in order (``version=N`` in the probe app's body)."""
        return [a.body.split()[0].removeprefix("version=") for a in self.answers if a.status == 200]

"""Access lines on their way to the environments' runtime logs.

Lines wait in a bounded buffer and are published every FLUSH_SECONDS, or as soon as a batch is
full, with core NATS: the REGIO_LOGS stream captures them (as it does the runner agents' lines)
without a per-line acknowledgement, which one line per proxied request could not afford. The
receiver only appends to the buffer, so nothing it does waits for NATS.

While NATS is away the buffer keeps the newest MAX_BUFFERED lines and drops the oldest,
counting each in regio_ingress_access_log_dropped_total; the rest follow once it is back.
Lines are not handed to the client while it is disconnected: its own reconnect buffer would
only hold them a second time."""
import asyncio
import logging
from collections import deque

from nats import errors
from nats.aio.client import Client

from .metrics import DROPPED

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
BATCH = 500  # lines that make a flush start before its time; also how many go between two yields
MAX_BUFFERED = 10_000  # about 3 MB of typical lines; lines are at most a few kB (entry.MAX_URI)
STOP_FLUSH_SECONDS = 2.0


class LineShipper:
    def __init__(self, nc: Client, max_buffered: int = MAX_BUFFERED, flush_seconds: float = FLUSH_SECONDS,
                 batch: int = BATCH):
        self.nc = nc
        self.flush_seconds = flush_seconds
        self.batch = batch
        self._lines: deque[tuple[str, bytes]] = deque(maxlen=max_buffered)  # (subject, payload), oldest first
        self._full_batch = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def buffered(self) -> int:
        return len(self._lines)

    def add(self, subject: str, payload: bytes) -> None:
        """Queue one line; never waits. A full buffer drops its oldest line."""
        if len(self._lines) == self._lines.maxlen:
            DROPPED.inc()
        self._lines.append((subject, payload))
        if len(self._lines) >= self.batch and self.nc.is_connected:  # while away, waking would not help
            self._full_batch.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access log shipper")

    async def stop(self) -> None:
        """Publish what is buffered (if NATS is there, for a moment at most), then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.wait_for(self._flush(), STOP_FLUSH_SECONDS)
            if self.nc.is_connected:
                await self.nc.flush(timeout=STOP_FLUSH_SECONDS)
        except Exception as e:  # NATS away or slow: the service stops all the same
            log.warning("could not publish the last access lines: %s", e)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full_batch.wait(), self.flush_seconds)
            except TimeoutError:
                pass
            self._full_batch.clear()
            try:
                await self._flush()
            except Exception:  # never seen; the lines stay buffered for the next round
                log.exception("publishing access lines failed")

    async def _flush(self) -> None:
        sent = 0
        while self._lines and self.nc.is_connected:
            subject, payload = self._lines.popleft()
            try:
                await self.nc.publish(subject, payload)
            except errors.MaxPayloadError:
                DROPPED.inc()  # cannot be published, ever
                continue
            except errors.Error:  # closed, draining, or its buffer full: try again next round
                if len(self._lines) < self._lines.maxlen:
                    self._lines.appendleft((subject, payload))
                else:
                    DROPPED.inc()  # newer lines filled the buffer meanwhile: this one was the oldest
                return
            sent += 1
            if sent % self.batch == 0:
                await asyncio.sleep(0)  # a long backlog after an outage: let the proxy's lookups in

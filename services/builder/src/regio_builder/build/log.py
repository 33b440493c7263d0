"""A build's log on its way to the deployment log: lines are collected as they are
produced and published in batches, a batch at least every ``interval`` seconds, so a
user watches the build live without a message per line. A batch is bounded in bytes as well
as lines: a build printing long lines must not make a message the bus refuses."""
import asyncio
import logging
from collections.abc import Awaitable, Callable

from regio_common.messages import log_batch_length

log = logging.getLogger(__name__)

Publish = Callable[[list[str]], Awaitable[None]]

MAX_LINE = 8_000  # characters; a longer line (a minified file echoed by a build step) is cut
MAX_BATCH = 500  # lines per message (and messages.LOG_BATCH_BYTES at most)


class BuildLog:
    def __init__(self, publish: Publish, interval: float = 0.3):
        self.publish = publish
        self.interval = interval
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None

    def write(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._pending.append(line if len(line) <= MAX_LINE else line[:MAX_LINE] + " [cut]")
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    async def __aenter__(self) -> "BuildLog":
        self._task = asyncio.create_task(self._run(), name="build log")
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        """Publish what is left; raises if that cannot be done."""
        if exc_type is not None and not issubclass(exc_type, Exception):  # cancelled: the service stops
            self._task.cancel()
            return
        self._closing = True
        self._wake.set()
        await self._task

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                await self._flush()  # the last lines must arrive: a failure here is the caller's
                return
            try:
                await self._flush()
            except Exception:
                log.exception("publishing build log lines failed; retrying")

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[:log_batch_length(self._pending, MAX_BATCH)]
            await self.publish(batch)
            del self._pending[: len(batch)]

"""Traffic counted in memory between two additions to the database: the meter's hot path."""
from uuid import UUID

Key = tuple[UUID, int]  # environment, period start (seconds since the epoch)


def period_start(timestamp: float, period_seconds: int) -> int:
    """The start of the metering period ``timestamp`` is in: periods are aligned to the epoch."""
    return int(timestamp // period_seconds) * period_seconds


class TrafficCounts:
    """Requests and response bytes per environment and period. ``add`` runs for every request,
    on the event loop: a dictionary lookup and two additions, no I/O, no clock.

    An entry is counted in its own period (by Caddy's timestamp) unless that period may have
    been sent already (before ``open_from``, which the meter moves before it sends periods): then
    in the oldest period still open, so that a late entry is billed, one period late, rather
    than lost. A timestamp past ``latest`` (a clock ahead of the ingress's) counts there."""

    def __init__(self, period_seconds: int, open_from: int):
        self.period_seconds = period_seconds
        self.open_from = open_from
        self.latest = open_from + period_seconds
        self._counts: dict[Key, list[int]] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, environment_id: UUID, timestamp: float, size: int) -> None:
        start = int(timestamp // self.period_seconds) * self.period_seconds
        if start < self.open_from:
            start = self.open_from
        elif start > self.latest:
            start = self.latest
        counts = self._counts.get((environment_id, start))
        if counts is None:
            self._counts[(environment_id, start)] = [1, size if size > 0 else 0]
        else:
            counts[0] += 1
            counts[1] += size if size > 0 else 0

    def take(self) -> dict[Key, list[int]]:
        """Everything counted so far; counting starts again from nothing."""
        taken, self._counts = self._counts, {}
        return taken

    def put_back(self, taken: dict[Key, list[int]], late: bool = False) -> None:
        """Counts that could not be added go back, to be added with the next ones. ``late``: their
        periods were sent meanwhile, so they go to the oldest open period instead."""
        for (environment_id, start), (requests, size) in taken.items():
            key = (environment_id, max(start, self.open_from) if late else start)
            counts = self._counts.setdefault(key, [0, 0])
            counts[0] += requests
            counts[1] += size

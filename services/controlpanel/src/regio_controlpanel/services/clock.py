"""The time billing reads: when a subscription starts and ends, which month an invoice
closes. One object per control panel (``app.state.clock``), so a test can set the time and
drive a month in seconds; everything else reads the real time."""
from datetime import UTC, datetime, timedelta


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SetClock(Clock):
    """A clock that shows what it was set to (tests): ``set`` moves it, ``advance`` adds."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at

    def advance(self, by: timedelta) -> None:
        self.at += by

"""BoundedSessions: one party's work holds at most its share of the pool."""
import asyncio

from regio_common.db import BoundedSessions


class Factory:
    """Stands in for a sessionmaker (the bound is on how many are open, not on what they do)."""

    def __init__(self):
        self.open = 0
        self.most = 0

    def __call__(self):
        factory = self

        class Session:
            async def __aenter__(self):
                factory.open += 1
                factory.most = max(factory.most, factory.open)
                return self

            async def __aexit__(self, *exc):
                factory.open -= 1

        return Session()


async def test_no_more_sessions_at_once_than_the_bound_and_the_rest_wait_their_turn():
    factory = Factory()
    sessions = BoundedSessions(factory, 3)
    done = []

    async def work(n: int) -> None:
        async with sessions():
            await asyncio.sleep(0.05)
            done.append(n)

    await asyncio.gather(*(work(n) for n in range(10)))
    assert factory.most == 3 and sorted(done) == list(range(10)) and factory.open == 0

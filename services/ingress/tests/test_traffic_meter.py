"""The traffic meter: the requests and response bytes Caddy served each environment, per metering
period, sent once per environment and period as TrafficMetered (what the control panel bills)."""
import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4, uuid5

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from regio_common import db
from regio_common.messages import TrafficMetered, Upstream, decode, subject_for
from regio_common.outbox import Outbox
from regio_ingress.db.models import outbox, traffic_counts
from regio_ingress.metering import TrafficMeter
from regio_ingress.routes import Route
from regio_ingress.settings import Settings

PERIOD = 2  # seconds: a period ends while the test watches


@pytest.fixture
async def metered(nc, region) -> AsyncIterator[list[TrafficMetered]]:
    """Every TrafficMetered the region's ingress publishes, in order."""
    heard: list[TrafficMetered] = []

    async def on_message(msg) -> None:
        heard.append(decode(msg.headers, msg.data))

    sub = await nc.subscribe(subject_for(TrafficMetered, region), cb=on_message)
    yield heard
    await sub.unsubscribe()


def totals(messages: list[TrafficMetered], environment_id: UUID) -> tuple[int, int]:
    mine = [m for m in messages if m.environment_id == environment_id]
    return sum(m.requests for m in mine), sum(m.bytes_served for m in mine)


async def test_requests_served_are_counted_with_their_bytes_and_sent_once_per_period(seed, ingress, instance, caddy,
                                                                                      metered, eventually, region):
    shop, blog, elsewhere = instance("shop"), instance("blog"), instance("the other region's ingress")
    shop_id, blog_id, moved_id = uuid4(), uuid4(), uuid4()
    # A migrated environment's old host in its grace period, sent to its new region's ingress as
    # the controller forwards it: that ingress meters its requests, this one must not as well.
    forward = Upstream(instance_id=uuid5(moved_id, elsewhere.address), address=elsewhere.address)
    await seed(Route(environment_id=shop_id, hosts=["shop.test"], upstreams=[shop.upstream], revision=1),
               Route(environment_id=blog_id, hosts=["blog.test"], upstreams=[blog.upstream], revision=1),
               Route(environment_id=moved_id, hosts=["moved.test"], upstreams=[forward], revision=1))

    async with ingress(node_name="edge-7", meter_period_seconds=PERIOD, meter_flush_seconds=0.2,
                       meter_close_delay_seconds=0.5):
        # The blog's requests say when the table is loaded; the shop's are only those counted below.
        await eventually(lambda: caddy.serves("blog.test", "blog"))

        # Bodies of different sizes (the instance echoes the request's headers), across periods.
        received = 0
        for n in range(12):
            response = await caddy.get("shop.test", f"/{n}", headers={"X-Padding": "x" * 100 * n})
            assert response.status_code == 200
            received += len(response.content)
            await asyncio.sleep(0.25)
        assert (await caddy.get("nobody.test")).status_code == 404  # no environment's
        assert await caddy.answer_from("moved.test") == "the other region's ingress"

        want = (12, received)
        await eventually(lambda: _is(totals(metered, shop_id) == want), timeout=PERIOD * 4 + 10,
                         what="the shop's requests and bytes sent")
        await asyncio.sleep(PERIOD * 2)  # a period sent twice would show now

    assert totals(metered, shop_id) == want
    assert totals(metered, blog_id)[0] >= 1
    # The 404 counts against nobody; the forwarded requests are the other region's to count.
    assert {m.environment_id for m in metered} == {shop_id, blog_id}
    periods = [(m.environment_id, m.period_start) for m in metered]
    assert len(periods) == len(set(periods))  # each environment's period once
    shop_periods = [m for m in metered if m.environment_id == shop_id]
    assert len(shop_periods) >= 2  # three seconds of requests span periods of two
    for message in metered:
        assert message.ingress == f"{region}/edge-7"
        assert message.period_start.timestamp() % PERIOD == 0
        assert message.period_end - message.period_start == timedelta(seconds=PERIOD)
        assert message.period_end <= message.occurred_at  # sent once ended


async def _is(value: bool) -> bool:
    return value


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


HOUR = 3600
T = 1_796_000_400  # an hour's start: 2026-11-29 23:00 UTC


@pytest.fixture
async def sessions(database_url):
    engine = db.make_engine(database_url)
    yield db.make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def meter(sessions, region):
    """A meter of hourly periods on the ingress's database, at a clock the test sets."""
    clock = Clock(T + 600)

    def make() -> TrafficMeter:
        return TrafficMeter(sessions, Outbox(outbox, region), "edge-1", HOUR, close_delay_seconds=5, clock=clock)

    make.clock = clock
    return make


async def sent(sessions) -> list[TrafficMetered]:
    """The TrafficMetered messages in the outbox, oldest first."""
    async with sessions() as session:
        rows = (await session.execute(select(outbox).order_by(outbox.c.created_at))).all()
    return [decode(row.headers, row.payload) for row in rows]


async def test_a_restarted_meter_goes_on_counting_without_counting_twice(meter, sessions):
    shop = uuid4()
    first = meter()
    for size in (100, 200, 300):
        first.count(shop, T + 10, size)
    await first.round()  # added to the database; the period runs on
    first.count(shop, T + 20, 400)
    await first.close()  # the stopping ingress adds what it counted since
    # A new process: what the first added stays, and is not added again.
    second = meter()
    second.count(shop, T + 1800, 1000)
    second.count(shop, T + 1801, 2000)
    await second.round()
    assert await sent(sessions) == []  # the period has not ended

    meter.clock.now = T + HOUR + 6  # ended, and the delay for entries on their way has passed
    await second.round()
    await second.round()
    third = meter()  # and once more after another restart
    await third.round()

    [message] = await sent(sessions)
    assert (message.environment_id, message.requests, message.bytes_served) == (shop, 6, 4000)
    assert (message.period_start, message.period_end) == (datetime.fromtimestamp(T, UTC),
                                                          datetime.fromtimestamp(T + HOUR, UTC))
    assert message.ingress == "edge-1"


async def test_counts_not_added_when_the_process_dies_are_the_only_loss(meter, sessions):
    shop = uuid4()
    dying = meter()
    dying.count(shop, T + 10, 100)
    await dying.round()
    dying.count(shop, T + 11, 50)  # never added: the process is killed here

    meter.clock.now = T + HOUR + 6
    await meter().round()

    [message] = await sent(sessions)
    assert (message.requests, message.bytes_served) == (1, 100)


async def test_an_entry_arriving_after_its_period_was_sent_counts_in_the_open_period(meter, sessions):
    shop = uuid4()
    running = meter()
    running.count(shop, T + 10, 100)
    meter.clock.now = T + HOUR + 6
    await running.round()
    running.count(shop, T + HOUR - 1, 70)  # logged in the sent period, received too late for it
    await running.round()

    meter.clock.now = T + 2 * HOUR + 6
    await running.round()

    first, second = await sent(sessions)
    assert (first.period_start, first.requests, first.bytes_served) == (datetime.fromtimestamp(T, UTC), 1, 100)
    assert (second.period_start, second.requests, second.bytes_served) == (
        datetime.fromtimestamp(T + HOUR, UTC), 1, 70)


async def test_environments_and_periods_are_counted_apart(meter, sessions):
    shop, blog = uuid4(), uuid4()
    running = meter()
    running.count(shop, T + 10, 1)
    running.count(blog, T + 20, 2)
    running.count(shop, T + HOUR + 10, 4)  # a clock a little ahead: the next period
    running.count(blog, T + 10 * HOUR, 8)  # far ahead (a forged timestamp): no far future period
    running.count(shop, T + 30, -5)  # a negative size is none
    meter.clock.now = T + 3 * HOUR
    await running.round()

    counts = defaultdict(list)
    for message in await sent(sessions):
        counts[message.environment_id].append(
            (int(message.period_start.timestamp()) - T, message.requests, message.bytes_served))
    assert counts == {shop: [(0, 2, 1), (HOUR, 1, 4)], blog: [(0, 1, 2), (HOUR, 1, 8)]}
    async with sessions() as session:
        assert (await session.execute(select(traffic_counts.c.sent_at.is_(None)))).scalars().all() == [False] * 4


@pytest.mark.parametrize("seconds", [0, 7, 172800])
def test_a_period_must_divide_a_day(seconds):
    with pytest.raises(ValidationError, match="meter_period_seconds"):
        Settings(meter_period_seconds=seconds)

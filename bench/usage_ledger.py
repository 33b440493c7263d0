"""What the usage ledger's ordering costs: usage events recorded as the control panel
records the meters' messages (services/usage.py: record_usage, one transaction each, under
the ledger's advisory lock so rows commit in id order and a cursor follower misses none),
against the same inserts without the lock (the baseline: faster, but a follower could skip
a row committed late), measured in the same run on the same database with the same writers.

Each writer is one session recording --events events (default 2,000) one transaction at a
time; --writers writers (default 4) run at once, as the control panel's consumers of several
regions do. Printed per round: events per second of each, and the ratio. Three rounds,
interleaved. Then how long a follower takes to read every event back through the cursor
(GET /billing/v3/usage-events/ pages of 1000, in-process). The events are made for an
organisation of its own (random ids) and deleted at the end.

For scale: the meters send about one event per instance, two per environment and one per
database or bucket per hour, so a region of 10,000 instances sends about 10,000 an hour
(3 a second).

    .venv/bin/python bench/usage_ledger.py          # needs ./regio up (its control panel database)
    .venv/bin/python bench/usage_ledger.py --events 5000 --writers 8
"""
import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from regio_cli.region import Region
from regio_common.db import make_engine, make_sessionmaker
from regio_common.layout import Layout, default_state_dir
from regio_controlpanel.db.billing import UsageEvent
from regio_controlpanel.services.usage import record_usage

START = datetime(2020, 1, 1, tzinfo=UTC)


def database_url() -> str:
    region = Region(Layout.load(default_state_dir(Path(__file__).parents[1])), say=print)
    service = next(s for s in region.services() if s.name == "controlpanel")
    return region.service_env(service)["REGIO_CONTROLPANEL_DATABASE_URL"]


def event(organisation: uuid.UUID, writer: int, n: int, tag: str) -> dict:
    return dict(key=f"bench:{tag}:{organisation}:{writer}:{n}", organisation_id=organisation,
                application_id=organisation, environment_id=organisation, service_instance_id=None,
                region_id=organisation, kind="instance", memory_mb=512, quantity=Decimal(3600), unit="seconds",
                period_start=START + timedelta(hours=n), period_end=START + timedelta(hours=n + 1))


async def ledger_writer(sessions, organisation, writer: int, events: int) -> None:
    for n in range(events):
        async with sessions() as session, session.begin():
            await record_usage(session, **event(organisation, writer, n, "ledger"))


async def plain_writer(sessions, organisation, writer: int, events: int) -> None:
    for n in range(events):
        async with sessions() as session, session.begin():
            await session.execute(pg_insert(UsageEvent).values(**event(organisation, writer, n, "plain"))
                                  .on_conflict_do_nothing(index_elements=[UsageEvent.key]))


async def timed(writer, sessions, organisation, writers: int, events: int) -> float:
    began = time.perf_counter()
    await asyncio.gather(*(writer(sessions, organisation, w, events) for w in range(writers)))
    return writers * events / (time.perf_counter() - began)


async def follow(sessions, organisation) -> tuple[int, float]:
    """Every event of the organisation through the cursor, as GET /billing/v3/usage-events/ reads it."""
    began, after, seen = time.perf_counter(), 0, 0
    async with sessions() as session:
        while True:
            page = (await session.execute(select(UsageEvent.id).where(
                UsageEvent.organisation_id == organisation, UsageEvent.id > after)
                .order_by(UsageEvent.id).limit(1000))).scalars().all()
            if not page:
                return seen, time.perf_counter() - began
            seen, after = seen + len(page), page[-1]


async def main(args) -> None:
    engine = make_engine(database_url())  # 15 connections: enough for the writers
    sessions = make_sessionmaker(engine)
    organisation = uuid.uuid4()
    print(f"{args.writers} writers x {args.events} events, one transaction each; 3 rounds interleaved")
    try:
        ratios = []
        for round_ in range(1, 4):
            async with sessions() as session, session.begin():  # each round on an empty slate
                await session.execute(delete(UsageEvent).where(UsageEvent.organisation_id == organisation))
            plain = await timed(plain_writer, sessions, organisation, args.writers, args.events)
            ledger = await timed(ledger_writer, sessions, organisation, args.writers, args.events)
            ratios.append(ledger / plain)
            print(f"round {round_}: without the lock {plain:8.0f} events/s   ledger (locked) {ledger:8.0f} events/s"
                  f"   ratio {ledger / plain:.2f}")
        print(f"ledger / baseline: {min(ratios):.2f} .. {max(ratios):.2f}")
        seen, took = await follow(sessions, organisation)
        print(f"a follower read {seen} events through the cursor in {took * 1000:.0f} ms "
              f"({seen / took:.0f} events/s)")
    finally:
        async with sessions() as session, session.begin():
            await session.execute(delete(UsageEvent).where(UsageEvent.organisation_id == organisation))
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="per writer and round")
    parser.add_argument("--writers", type=int, default=4)
    asyncio.run(main(parser.parse_args()))

"""One outbox, a relay per region (the control panel's): each publishes only its region's
rows, so a region whose link is cut holds up only its own messages; a relay or a consumer whose
region's server is down says so once and carries on when it is back."""
import asyncio
import dataclasses
import logging
import uuid

import nats
from sqlalchemy import select, text

from regio_common import bus
from regio_common.dead_letters import DeadLetters
from regio_common.messages import BuildStarted
from regio_common.outbox import Outbox, OutboxRelay
from regio_common.processes import free_port, wait_for_port
from regio_common.servers import nats_process, nats_store_dir
from regio_common.subscriber import Subscriber


async def unpublished(factory, table) -> list[str]:
    async with factory() as session:
        return list(await session.scalars(select(table.c.subject).where(table.c.published_at.is_(None))
                                          .order_by(table.c.subject)))


async def test_a_regions_relay_publishes_its_regions_rows_only(sessions, js):
    factory, table, _ = sessions
    tag = uuid.uuid4().hex[:6]
    # "t_x" must not match "tax": LIKE's wildcards in a prefix are literal
    north, south, lookalike = f"n{tag}-t_x", f"s{tag}", f"n{tag}-tax"
    outbox = Outbox(table, north)
    async with factory() as session, session.begin():
        for region in (north, south, lookalike, north):
            await outbox.add(session, BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4()), region)

    relay = OutboxRelay(outbox, factory, js, DeadLetters(js, "test"), subject_prefix=f"region.{north}.")
    assert await relay.publish_pending() == 2
    assert await relay.publish_pending() == 0
    assert await unpublished(factory, table) == [f"region.{lookalike}.events.builds.started",
                                                 f"region.{south}.events.builds.started"]


async def test_a_relay_clearing_its_wake_up_hides_no_commit_from_another(sessions):
    """Each relay waits on a wake-up of its own. With one shared, a relay that woke and cleared
    it before another looked (the other busy publishing) made the other sleep a whole poll."""
    factory, table, _ = sessions
    outbox = Outbox(table, "north")
    busy, idle = outbox.waiter(), outbox.waiter()
    async with factory() as session, session.begin():
        await outbox.add(session, BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4()), "north")
    await Outbox.wait(idle, timeout=1)  # the first relay woke, and cleared its wake-up
    assert busy.is_set()  # the busy one still finds its own set when it next waits
    await asyncio.wait_for(Outbox.wait(busy, timeout=30), 1)


async def test_a_regions_relay_still_finds_the_unpublished_rows_through_their_index(sessions, js):
    """Its prefix filters beside the partial index of unpublished rows, in their order; a plan
    without it would read the whole outbox (a day of published rows) at every poll."""
    factory, table, _ = sessions
    relay = OutboxRelay(Outbox(table, "north"), factory, js, DeadLetters(js, "test"), subject_prefix="region.north.")
    t = table
    query = relay._mine(select(t.c.id).where(t.c.published_at.is_(None))).order_by(t.c.created_at).limit(100)
    async with factory() as session, session.begin():
        await session.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table: as a big one is read
        compiled = query.compile(dialect=session.bind.dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in await session.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_outbox_unpublished" in plan, plan
    assert "Sort" not in plan, plan  # in the index's order, not sorted afterwards


async def test_a_relay_whose_region_is_down_says_so_once_and_publishes_when_it_is_back(sessions, tmp_path, caplog):
    """No stream answers while the region's server (or its link) is down: one warning, not a
    traceback at every poll for hours, and the rows wait until it answers again."""
    factory, table, _ = sessions
    process = nats_process(tmp_path, free_port())  # a server with no streams yet: nobody stores north's
    process.start()
    try:
        wait_for_port(process.port, 30, process=process)
        nc = await nats.connect(f"nats://127.0.0.1:{process.port}")
        js = nc.jetstream(timeout=2)
        outbox = Outbox(table, "north")
        async with factory() as session, session.begin():
            await outbox.add(session, BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4()))
        relay = OutboxRelay(outbox, factory, js, DeadLetters(js, "test"), poll_seconds=0.05,
                            subject_prefix="region.north.")
        caplog.set_level(logging.INFO, logger="regio_common.outbox")
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.sleep(0.6)  # about ten tries
            assert await unpublished(factory, table) == ["region.north.events.builds.started"]
            said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "regio_common.outbox"]
            assert said == [(logging.WARNING, "outbox relay of region.north.*: no stream answers (its server or "
                                              "the link to it is down); the messages wait")]

            await bus.ensure_streams(js, regions=["north"])  # back
            for _ in range(50):
                if not await unpublished(factory, table):
                    break
                await asyncio.sleep(0.1)
            assert await unpublished(factory, table) == []
            assert "the stream answers again" in caplog.records[-1].getMessage()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await nc.close()
    finally:
        process.stop()


async def test_a_consumer_whose_region_is_down_says_so_once_and_handles_its_messages_when_it_is_back(
        sessions, tmp_path, caplog):
    """The region's server answers no JetStream request (played by this server restarted
    without JetStream): one warning, not a traceback every second for as long as it lasts."""
    factory, _, inbox = sessions
    process = nats_process(tmp_path, free_port())
    store = str(nats_store_dir(tmp_path))
    without_jetstream = dataclasses.replace(process, argv=[a for a in process.argv if a not in ("-js", "-sd", store)])
    process.start()
    try:
        wait_for_port(process.port, 30, process=process)
        nc = await bus.connect(f"nats://127.0.0.1:{process.port}", "test-consumer")
        js = nc.jetstream(timeout=2)
        await bus.ensure_streams(js, regions=["north"])
        handled: list[uuid.UUID] = []

        async def handler(_session, message) -> None:
            handled.append(message.id)

        subscriber = Subscriber(js, factory, inbox, stream=bus.EVENTS.name, durable="test-north",
                                subject="region.north.events.builds.started", handler=handler)
        caplog.set_level(logging.INFO, logger="regio_common.subscriber")
        task = asyncio.create_task(subscriber.run())
        try:
            await asyncio.sleep(0.3)
            process.stop()
            without_jetstream.start()
            wait_for_port(process.port, 30, process=without_jetstream)
            await asyncio.sleep(8)  # the pull under way times out (5 s), then a few refused ones
            said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "regio_common.subscriber"]
            assert said == [(logging.WARNING, "test-north: no JetStream answers (its server or the link to it is "
                                              "down); fetching again until it does")]

            without_jetstream.stop()
            process.start()  # back, with its stream and the consumer's durable
            wait_for_port(process.port, 30, process=process)
            message = BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4())
            for _ in range(100):
                try:
                    await js.publish(message.subject("north"), message.model_dump_json().encode(),
                                     headers=message.headers())
                    break
                except Exception:  # reconnecting
                    await asyncio.sleep(0.1)
            for _ in range(100):
                if handled:
                    break
                await asyncio.sleep(0.1)
            assert handled == [message.id]
            assert "test-north: JetStream answers again" in [r.getMessage() for r in caplog.records]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await nc.close()
    finally:
        without_jetstream.stop()
        process.stop()

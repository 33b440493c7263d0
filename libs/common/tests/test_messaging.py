"""The outbox and the subscriber against a real Postgres and a real NATS server:
what is committed is published, what is rolled back is not, a failing handler gets
the message again, and a duplicate is handled once."""
import asyncio
import uuid

import pytest
from sqlalchemy import MetaData, text

from regio_common import bus
from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import BuildFinished, BuildStarted, decode, subject_for
from regio_common.outbox import Outbox, OutboxRelay
from regio_common.runtime import messaging_tables
from regio_common.subscriber import Subscriber


@pytest.fixture
async def sessions(postgres_cluster):
    schema = f"t_{uuid.uuid4().hex[:8]}"
    metadata = MetaData(schema=schema)
    outbox, inbox = messaging_tables(metadata)
    engine = make_engine(postgres_cluster.url(driver="postgresql+asyncpg"))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield make_sessionmaker(engine), outbox, inbox
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture
async def js(nats_url):
    nc = await bus.connect(nats_url, "test-common")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    yield js
    await nc.close()


def region() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def test_committed_messages_are_published_and_rolled_back_ones_are_not(sessions, js):
    factory, outbox_table, _ = sessions
    r = region()
    outbox = Outbox(outbox_table, r)
    kept, dropped = BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4()), BuildStarted(
        deployment_id=uuid.uuid4(), build_id=uuid.uuid4())
    async with factory() as session, session.begin():
        await outbox.add(session, kept)
    with pytest.raises(RuntimeError):
        async with factory() as session, session.begin():
            await outbox.add(session, dropped)
            raise RuntimeError("the change failed")
    relay = OutboxRelay(outbox, factory, js)
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0  # published rows are not sent again

    sub = await js.pull_subscribe(subject_for(BuildStarted, r), durable=None, stream=bus.EVENTS.name)
    msgs = await sub.fetch(5, timeout=2)
    assert [decode(m.headers, m.data).id for m in msgs] == [kept.id]


async def test_a_republished_message_is_dropped_by_jetstream(sessions, js):
    r = region()
    message = BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4())
    first = await js.publish(message.subject(r), message.model_dump_json().encode(), headers=message.headers())
    again = await js.publish(message.subject(r), message.model_dump_json().encode(), headers=message.headers())
    assert again.duplicate and again.seq == first.seq


async def test_a_failing_handler_gets_the_message_again_and_duplicates_run_once(sessions, js):
    factory, _, inbox = sessions
    r = region()
    calls: list[uuid.UUID] = []
    done = asyncio.Event()

    async def handler(session, message):
        calls.append(message.id)
        if len(calls) == 1:
            raise RuntimeError("transient failure")
        done.set()

    subscriber = Subscriber(js, factory, inbox, stream=bus.EVENTS.name, durable=f"{r}_test",
                            subject=subject_for(BuildStarted, r), handler=handler)
    task = asyncio.create_task(subscriber.run())
    try:
        message = BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4())
        await js.publish(message.subject(r), message.model_dump_json().encode(), headers=message.headers())
        await asyncio.wait_for(done.wait(), 10)
        # The same message once more (a redelivery after a lost ack): the inbox skips it.
        copy = message.model_dump_json().encode()
        await js.publish(message.subject(r), copy, headers={**message.headers(), "Nats-Msg-Id": str(uuid.uuid4())})
        await asyncio.sleep(1)
        assert calls == [message.id, message.id]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await js.delete_consumer(bus.EVENTS.name, f"{r}_test")


async def test_a_message_that_failed_once_is_not_overtaken_by_later_ones(sessions, js):
    factory, _, inbox = sessions
    r = region()
    handled: list[uuid.UUID] = []
    failed_once = False
    done = asyncio.Event()

    async def handler(session, message):
        nonlocal failed_once
        if not failed_once:
            failed_once = True
            raise RuntimeError("transient failure")
        handled.append(message.deployment_id)
        if len(handled) == 3:
            done.set()

    subscriber = Subscriber(js, factory, inbox, stream=bus.EVENTS.name, durable=f"{r}_test",
                            subject=subject_for(BuildStarted, r), handler=handler)
    published = [BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4()) for _ in range(3)]
    for message in published:
        await js.publish(message.subject(r), message.model_dump_json().encode(), headers=message.headers())
    task = asyncio.create_task(subscriber.run())
    try:
        await asyncio.wait_for(done.wait(), 10)
        assert handled == [m.deployment_id for m in published]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await js.delete_consumer(bus.EVENTS.name, f"{r}_test")


async def test_messages_of_other_lanes_pass_a_slow_one_and_each_lane_keeps_its_order(sessions, js):
    """A consumer ordered per environment: one environment's slow command holds up only that
    environment's later commands, not every other environment's."""
    factory, _, inbox = sessions
    r = region()
    slow, other = uuid.uuid4(), uuid.uuid4()
    handled: list[tuple[uuid.UUID, int]] = []
    release_slow = asyncio.Event()
    other_done = asyncio.Event()
    all_done = asyncio.Event()

    async def handler(session, message):
        lane, n = message.deployment_id, int(message.image.removeprefix("step-"))
        if (lane, n) == (slow, 0):
            await release_slow.wait()
        handled.append((lane, n))
        if sum(1 for h in handled if h[0] == other) == 3:
            other_done.set()
        if len(handled) == 6:
            all_done.set()

    subscriber = Subscriber(js, factory, inbox, stream=bus.EVENTS.name, durable=f"{r}_test",
                            subject=subject_for(BuildFinished, r), handler=handler,
                            lane=lambda message: message.deployment_id)
    for n in range(3):
        for lane in (slow, other):
            message = BuildFinished(deployment_id=lane, build_id=uuid.uuid4(), success=True, image=f"step-{n}")
            await js.publish(message.subject(r), message.model_dump_json().encode(), headers=message.headers())
    task = asyncio.create_task(subscriber.run())
    try:
        await asyncio.wait_for(other_done.wait(), 10)
        assert handled == [(other, 0), (other, 1), (other, 2)]  # the slow lane's first is still in its handler
        release_slow.set()
        await asyncio.wait_for(all_done.wait(), 10)
        assert [n for lane, n in handled if lane == slow] == [0, 1, 2]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await js.delete_consumer(bus.EVENTS.name, f"{r}_test")

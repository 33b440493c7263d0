"""The outbox and the subscriber against a real Postgres and a real NATS server:
what is committed is published, what is rolled back is not, a failing handler gets
the message again, and a duplicate is handled once."""
import asyncio
import uuid

import pytest

from regio_common import bus
from regio_common.dead_letters import DeadLetters, listed
from regio_common.messages import (
    LOG_BATCH_BYTES,
    MAX_PAYLOAD_BYTES,
    BuildFinished,
    BuildStarted,
    DeploymentLogAppended,
    MessageTooLarge,
    decode,
    log_batch_length,
    subject_for,
)
from regio_common.outbox import Outbox, OutboxRelay
from regio_common.subscriber import Subscriber


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
    relay = OutboxRelay(outbox, factory, js, DeadLetters(js, "test"))
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


async def test_a_message_too_big_for_the_bus_is_refused_where_it_is_made(sessions, js):
    factory, outbox_table, _ = sessions
    outbox = Outbox(outbox_table, region())
    deployment_id = uuid.uuid4()
    huge = DeploymentLogAppended(deployment_id=deployment_id, lines=["x" * 1000] * 1100)
    async with factory() as session, session.begin():
        with pytest.raises(MessageTooLarge) as refused:
            await outbox.add(session, huge)
        assert await session.scalar(outbox_table.select().with_only_columns(outbox_table.c.id)) is None
    assert refused.value.size > refused.value.limit == MAX_PAYLOAD_BYTES
    assert f"over the message limit of {MAX_PAYLOAD_BYTES} bytes" in str(refused.value)


async def test_a_message_over_the_servers_limit_is_set_aside_and_the_next_one_is_published(sessions, js):
    """An outbox row the server cannot take (written before the check existed, or by a service
    whose server has a smaller limit) no longer holds up every message behind it."""
    factory, outbox_table, _ = sessions
    r = region()
    outbox = Outbox(outbox_table, r)
    stuck = DeploymentLogAppended(deployment_id=uuid.uuid4(), lines=["x" * 1000] * 1100)
    behind = BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4())
    async with factory() as session, session.begin():
        await session.execute(outbox_table.insert().values(  # as an outbox without the check wrote it
            id=stuck.id, subject=stuck.subject(r), headers=stuck.headers(), payload=stuck.model_dump_json().encode()))
    async with factory() as session, session.begin():
        await outbox.add(session, behind)
    relay = OutboxRelay(outbox, factory, js, DeadLetters(js, "builder"))

    assert await relay.publish_pending() == 2
    assert await relay.publish_pending() == 0  # set aside once, not tried again

    sub = await js.pull_subscribe(subject_for(BuildStarted, r), durable=None, stream=bus.EVENTS.name)
    assert [decode(m.headers, m.data).id for m in await sub.fetch(5, timeout=2)] == [behind.id]
    [record] = await listed(js, r)
    assert record.service == "builder" and record.consumer is None
    assert record.message_kind == "deployment.log" and record.message_id == str(stuck.id)
    assert record.deployment_id == stuck.deployment_id and record.size_bytes > MAX_PAYLOAD_BYTES
    assert f"over the server's message limit of {MAX_PAYLOAD_BYTES} bytes" in record.reason


async def test_a_message_at_its_delivery_limit_is_set_aside_and_the_next_one_is_handled(sessions, js):
    factory, _, inbox = sessions
    r = region()
    poisoned, healthy = (BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4()) for _ in range(2))
    handled = asyncio.Event()

    async def handler(session, message):
        if message.id == poisoned.id:
            raise RuntimeError("the deployment's row is locked by a broken migration")
        handled.set()

    subscriber = Subscriber(js, factory, inbox, stream=bus.EVENTS.name, durable=f"{r}_test",
                            subject=subject_for(BuildStarted, r), handler=handler, max_deliver=2,
                            dead_letters=DeadLetters(js, "controlpanel"))
    for message in (poisoned, healthy):
        await js.publish(message.subject(r), message.model_dump_json().encode(), headers=message.headers())
    task = asyncio.create_task(subscriber.run())
    try:
        await asyncio.wait_for(handled.wait(), 10)
        [record] = await listed(js, r)
        assert record.consumer == f"{r}_test" and record.service == "controlpanel"
        assert record.deployment_id == poisoned.deployment_id and record.message_kind == "build.started"
        assert "failed 2 times" in record.reason and "broken migration" in record.reason
        assert record.stream_sequence is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await js.delete_consumer(bus.EVENTS.name, f"{r}_test")



async def test_a_message_on_another_kinds_subject_is_set_aside_unhandled(sessions, js):
    """A runner may publish only on the deployment log's subject: a build.finished it sends
    there (its kind is a header it chose) releases nothing, and the real one still is."""
    factory, _, inbox = sessions
    r = region()
    forged = BuildFinished(deployment_id=uuid.uuid4(), build_id=uuid.uuid4(), success=True, image="sha256:evil")
    genuine = BuildStarted(deployment_id=uuid.uuid4(), build_id=uuid.uuid4())
    handled: list = []
    done = asyncio.Event()

    async def handler(session, message):
        handled.append(message)
        done.set()

    subscriber = Subscriber(js, factory, inbox, stream=bus.EVENTS.name, durable=f"{r}_test",
                            subject=f"region.{r}.events.>", handler=handler,
                            dead_letters=DeadLetters(js, "controlpanel"))
    await js.publish(subject_for(DeploymentLogAppended, r), forged.model_dump_json().encode(),
                     headers=forged.headers())
    await js.publish(genuine.subject(r), genuine.model_dump_json().encode(), headers=genuine.headers())
    task = asyncio.create_task(subscriber.run())
    try:
        await asyncio.wait_for(done.wait(), 10)
        assert [m.id for m in handled] == [genuine.id]
        [record] = await listed(js, r)
        assert record.message_kind == "build.finished" and record.message_subject.endswith(".events.deployments.log")
        assert "does not travel on" in record.reason
        assert record.deployment_id is None  # what a forged message names is not believed: nothing fails
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await js.delete_consumer(bus.EVENTS.name, f"{r}_test")


def test_a_log_batch_is_bounded_by_its_bytes_as_well_as_its_lines():
    assert log_batch_length(["short"] * 900, 500) == 500
    assert log_batch_length([], 500) == 0
    control = "\x01" * 8000  # six bytes a character as JSON
    n = log_batch_length([control] * 100, 500)
    assert 1 <= n < 100
    DeploymentLogAppended(deployment_id=uuid.uuid4(), lines=[control] * n).encode()
    assert len(DeploymentLogAppended(deployment_id=uuid.uuid4(), lines=[control] * n).model_dump_json()) \
        <= LOG_BATCH_BYTES + 200
    assert log_batch_length(["x" * (2 * LOG_BATCH_BYTES)], 500) == 1  # one line always goes

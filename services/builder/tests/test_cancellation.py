"""Cancelling a deployment during its Build step: DeploymentCancelled in, the build stopped
or never started, and BuildFinished (failed, "cancelled: …") out, exactly once."""
import asyncio
from uuid import uuid4

from regio_builder.messaging.subscribers import CANCELLATIONS_CONSUMER, CONSUMER
from regio_common import bus
from regio_common.messages import BuildFinished, BuildStarted, DeploymentCancelled, DeploymentLogAppended

REASON = "cancelled by ada@example.test"


async def _everything_announced(publish, build_request, events) -> None:
    """Sends a build that fails at once and waits for its end: what the builder announced
    before it has arrived by then (the outbox publishes in order)."""
    marker = build_request(None, url="nowhere")
    await publish(marker)
    await events.finished(marker.deployment_id)


async def _wait_for_line(events, deployment_id, line: str) -> None:
    async with asyncio.timeout(60):
        while line not in events.log(deployment_id):
            await asyncio.sleep(0.05)


async def test_a_running_build_is_stopped_and_ends_failed(builder, publish, build_request, events, make_repository,
                                                          app_files, base_image, docker_api, application_id,
                                                          handled):
    marker = uuid4().hex[:8]
    repository = make_repository(app_files(f"FROM {base_image}\nRUN echo {marker} && sleep 30\n"))
    request = build_request(repository)
    await publish(request)
    await _wait_for_line(events, request.deployment_id, marker)  # the build is in its sleeping step

    cancel = DeploymentCancelled(deployment_id=request.deployment_id, reason=REASON)
    await publish(cancel)
    # Well before the step's 30 seconds are up: the build was stopped, not waited for.
    finished = await events.finished(request.deployment_id, timeout=20)

    assert (finished.success, finished.error, finished.image) == (False, f"cancelled: {REASON}", None)
    log = events.log(request.deployment_id)
    assert f"Build cancelled: {REASON}" in log
    last_log = events.of(DeploymentLogAppended, request.deployment_id)[-1]
    assert events.sequence(last_log) < events.sequence(finished)
    record = (await builder.build_record(request.deployment_id)).json()
    assert (record["state"], record["error"]) == ("failed", f"cancelled: {REASON}")
    assert docker_api.images(name=f"regio-app/{application_id}") == []
    # The Engine stopped the step: its container does not keep sleeping.
    async with asyncio.timeout(30):
        while [c for c in docker_api.containers(all=True) if marker in c["Command"]]:
            await asyncio.sleep(0.5)

    # The same cancel redelivered, and sent again under a new id: nothing more happens.
    await publish(cancel, dedup=False)
    await publish(cancel.model_copy(update={"id": uuid4()}))
    await handled(bus.EVENTS.name, CANCELLATIONS_CONSUMER)
    await _everything_announced(publish, build_request, events)
    assert len(events.of(BuildFinished, request.deployment_id)) == 1
    assert len(events.of(BuildStarted, request.deployment_id)) == 1


async def test_a_queued_build_ends_failed_without_starting(builder, publish, build_request, events, make_repository,
                                                           app_files, base_image, handled):
    marker = uuid4().hex[:8]
    busy = build_request(make_repository(app_files(f"FROM {base_image}\nRUN echo {marker} && sleep 30\n")))
    await publish(busy)
    await _wait_for_line(events, busy.deployment_id, marker)  # the worker is busy: the next build waits
    queued = build_request(make_repository())
    await publish(queued)
    await handled(bus.COMMANDS.name, CONSUMER)

    await publish(DeploymentCancelled(deployment_id=queued.deployment_id, reason=REASON))
    finished = await events.finished(queued.deployment_id)

    assert (finished.success, finished.error) == (False, f"cancelled: {REASON}")
    assert events.of(BuildStarted, queued.deployment_id) == []
    assert f"Build cancelled before it started: {REASON}" in events.log(queued.deployment_id)
    assert not events.of(BuildFinished, busy.deployment_id)  # the other build goes on
    record = (await builder.build_record(queued.deployment_id)).json()
    assert (record["state"], record["started_at"]) == ("failed", None)

    await publish(DeploymentCancelled(deployment_id=busy.deployment_id, reason=REASON))
    assert (await events.finished(busy.deployment_id, timeout=20)).error == f"cancelled: {REASON}"


async def test_a_cancel_that_arrives_before_the_request_drops_the_build(builder, publish, build_request, events,
                                                                        make_repository, handled):
    request = build_request(make_repository())
    await publish(DeploymentCancelled(deployment_id=request.deployment_id, reason=REASON))
    await handled(bus.EVENTS.name, CANCELLATIONS_CONSUMER)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert (finished.success, finished.error) == (False, f"cancelled: {REASON}")
    assert events.of(BuildStarted, request.deployment_id) == []
    record = (await builder.build_record(request.deployment_id)).json()
    assert (record["state"], record["error"]) == ("failed", f"cancelled: {REASON}")

    # The request sent again under a new id ends nothing twice.
    await publish(request.model_copy(update={"id": uuid4()}))
    await _everything_announced(publish, build_request, events)
    assert len(events.of(BuildFinished, request.deployment_id)) == 1


async def test_a_cancel_after_the_build_ended_changes_nothing(builder, publish, build_request, events,
                                                             make_repository, handled):
    request = build_request(make_repository())
    await publish(request)
    built = await events.finished(request.deployment_id)
    assert built.success, events.log(request.deployment_id)

    await publish(DeploymentCancelled(deployment_id=request.deployment_id, reason=REASON))
    await handled(bus.EVENTS.name, CANCELLATIONS_CONSUMER)
    await _everything_announced(publish, build_request, events)

    assert events.of(BuildFinished, request.deployment_id) == [built]
    record = (await builder.build_record(request.deployment_id)).json()
    assert (record["state"], record["image"], record["error"]) == ("succeeded", built.image, None)

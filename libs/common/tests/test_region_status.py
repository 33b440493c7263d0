"""A region service's heartbeat: made small or refused, published every status_seconds on its
region's status subject with what its readiness checks say, and believed only on its own subject."""
import asyncio
import json
import uuid

import nats
import pytest
from pydantic import ValidationError
from sqlalchemy import MetaData

from regio_common import bus
from regio_common.region_status import MAX_STATUS_BYTES, ComponentStatus, received
from regio_common.runtime import Runtime, messaging_tables
from regio_common.settings import ServiceSettings


def test_a_status_over_4_kib_is_refused_where_it_is_made():
    ComponentStatus(region="local", component="controller", ready=True, details={"runners": 3})
    with pytest.raises(ValidationError, match="over the limit of 4096 bytes"):
        ComponentStatus(region="local", component="controller", ready=True, details={"x": "a" * MAX_STATUS_BYTES})


def test_a_status_is_believed_only_on_its_own_regions_and_components_subject():
    status = ComponentStatus(region="local-2", component="ingress", ready=True)

    assert received("region.local-2.status.ingress", status.encode()) == status
    # another region's link (or service) saying it speaks for local-2, or for another component
    assert received("region.local-3.status.ingress", status.encode()) is None
    assert received("region.local-2.status.builder", status.encode()) is None
    assert received("region.local-2.status.ingress", b"not json") is None
    too_big = json.dumps({**json.loads(status.encode()), "details": {"x": "a" * MAX_STATUS_BYTES}}).encode()
    assert received("region.local-2.status.ingress", too_big) is None
    with pytest.raises(ValidationError):  # a subject token it could not be published under
        ComponentStatus(region="local.*", component="ingress", ready=True)


@pytest.fixture
async def runtime(postgres_cluster, session_nats, nats_credentials):
    region = f"s{uuid.uuid4().hex[:8]}"
    user, password = (await nats_credentials(region, []))["builder"]
    settings = ServiceSettings(region=region, database_url=postgres_cluster.url(driver="postgresql+asyncpg"),
                               nats_url=session_nats.url, nats_user=user, nats_password=password,
                               status_seconds=0.2)
    outbox, inbox = messaging_tables(MetaData(schema=f"t_{uuid.uuid4().hex[:8]}"))
    # no relay: this schema has no outbox table, and the heartbeat needs none
    runtime = Runtime("builder", settings, outbox, inbox, relay=False)
    await runtime.start()
    yield runtime
    await runtime.stop()


async def heard(nats_url: str, region: str, count: int) -> list[tuple[str, ComponentStatus]]:
    nc = await nats.connect(nats_url)
    got: list[tuple[str, ComponentStatus]] = []
    done = asyncio.Event()

    async def on_status(msg) -> None:
        got.append((msg.subject, ComponentStatus.model_validate_json(msg.data)))
        if len(got) >= count:
            done.set()

    await nc.subscribe(bus.status_subject(region, ">"), cb=on_status)
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await nc.close()
    return got


async def test_a_service_reports_its_status_every_status_seconds(runtime, nats_url):
    async def details() -> dict:
        return {"queued": 2}

    runtime.report_status(details)
    got = await heard(nats_url, runtime.settings.region, 3)

    assert {subject for subject, _ in got} == {f"region.{runtime.settings.region}.status.builder"}
    assert all(s.ready and s.details == {"queued": 2} and s.component == "builder" for _, s in got)
    # one every 0.2 s: three in about 0.4 s, not at once
    assert 0.25 < (got[2][1].sent_at - got[0][1].sent_at).total_seconds() < 2


async def test_a_failing_readiness_check_or_details_make_it_not_ready(runtime, nats_url):
    async def docker() -> None:
        raise RuntimeError("docker is not answering")

    async def details() -> dict:
        return {"x": "a" * MAX_STATUS_BYTES}

    runtime.report_status(details, checks={**runtime.readiness_checks(), "docker": docker})
    [(_, status)] = await heard(nats_url, runtime.settings.region, 1)

    assert not status.ready
    assert status.details == {"error": "details over the size limit", "failed": ["docker"]}  # heard all the same

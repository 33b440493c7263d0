"""An environment's events, as the controller publishes them (a restart, a lost runner, a
scale …): kept once each, listed newest first in pages, seen only by who sees the
environment, and gone with it."""
import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from regio_common import bus
from regio_common.db import make_engine
from regio_common.messages import ID_HEADER, EnvironmentEvent

from .test_deployments import publish


@pytest.fixture(scope="module")
async def js(settings):
    nc = await bus.connect(settings.nats_url, "test-environment-events")
    yield nc.jetstream()
    await nc.close()


async def listed(api, env_id: str, message: str, at_least: int = 1, timeout=10.0) -> dict:
    """The first page once the event saying ``message`` and ``at_least`` events in all are stored."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        page = (await api.get(f"/apps/v3/environments/{env_id}/events/")).json()
        if page["count"] >= at_least and any(e["message"] == message for e in page["results"]):
            return page
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no event {message!r} in {page}")
        await asyncio.sleep(0.05)


async def test_events_are_listed_newest_first_in_pages(api, js, settings, application):
    env_id = application["test_status"]["uuid"]
    instance = uuid.uuid4()
    at = datetime.now(UTC)
    restarted = EnvironmentEvent(environment_id=env_id, instance_id=instance, reason="restarted",
                                 message="Instance exited with code 137 (out of memory) and was restarted",
                                 occurred_at=at)
    lost = EnvironmentEvent(environment_id=env_id, instance_id=instance, reason="replaced",
                            message="Runner runner-2 stopped answering; its instance is replaced",
                            occurred_at=at + timedelta(seconds=1))
    scaled = EnvironmentEvent(environment_id=env_id, reason="scaled", message="3 instances run",
                              occurred_at=at + timedelta(seconds=2))
    # An event of an environment deleted since is dropped, and holds up nothing after it.
    await publish(js, settings, EnvironmentEvent(environment_id=uuid.uuid4(), reason="restarted", message="gone"))
    for event in (lost, scaled, restarted):  # in another order than they happened
        await publish(js, settings, event)
    # The same event again, past JetStream's duplicate window (another message id header): kept once.
    await js.publish(lost.subject(settings.region), lost.model_dump_json().encode(),
                     headers={**lost.headers(), ID_HEADER: str(uuid.uuid4())})
    await publish(js, settings, EnvironmentEvent(environment_id=env_id, reason="moved", message="marker",
                                                 occurred_at=at - timedelta(seconds=1)))

    assert (await listed(api, env_id, "marker", at_least=4))["count"] == 4
    page = (await api.get(f"/apps/v3/environments/{env_id}/events/", params={"page_size": 2})).json()
    assert [e["reason"] for e in page["results"]] == ["scaled", "replaced"] and page["previous"] is None
    assert page["results"][0] == {"uuid": str(scaled.id), "environment": env_id, "instance": None, "reason": "scaled",
                                  "message": "3 instances run", "timestamp": page["results"][0]["timestamp"]}
    assert datetime.fromisoformat(page["results"][0]["timestamp"]) == scaled.occurred_at
    assert page["results"][1]["instance"] == str(instance)
    rest = (await api.get(page["next"])).json()
    assert [e["reason"] for e in rest["results"]] == ["restarted", "moved"] and rest["next"] is None
    assert rest["previous"] is not None
    live = (await api.get(f"/apps/v3/environments/{application['live_status']['uuid']}/events/")).json()
    assert live["count"] == 0 and live["results"] == []


async def test_only_who_sees_the_environment_reads_its_events(api, member, stranger, application):
    test_env, live_env = application["test_status"]["uuid"], application["live_status"]["uuid"]
    assert (await api.get(f"/apps/v3/environments/{test_env}/events/")).status_code == 200
    assert (await stranger.get(f"/apps/v3/environments/{test_env}/events/")).status_code == 404
    assert (await api.get(f"/apps/v3/environments/{uuid.uuid4()}/events/")).status_code == 404
    scoped = await member("member", environments=[live_env])
    assert (await scoped.get(f"/apps/v3/environments/{live_env}/events/")).status_code == 200
    assert (await scoped.get(f"/apps/v3/environments/{test_env}/events/")).status_code == 404
    billing = await member("billing")
    assert (await billing.get(f"/apps/v3/environments/{test_env}/events/")).status_code == 404
    response = await api.get(f"/apps/v3/environments/{test_env}/events/", params={"page_size": 0})
    assert response.status_code == 400 and "page_size" in response.json()


async def test_events_go_with_their_environment(api, js, settings, application):
    env = (await api.post("/apps/v3/environments/", json={"application": application["uuid"], "slug": "short"})).json()
    await publish(js, settings, EnvironmentEvent(environment_id=env["uuid"], reason="unplaceable",
                                                 message="No runner has 512 MB free"))
    await listed(api, env["uuid"], "No runner has 512 MB free")
    assert (await api.delete(f"/apps/v3/environments/{env['uuid']}/")).status_code == 204
    engine = make_engine(settings.database_url)
    async with engine.connect() as conn:
        left = (await conn.execute(text("select count(*) from controlpanel.environment_events "
                                        "where environment_id = :e"), {"e": env["uuid"]})).scalar()
    await engine.dispose()
    assert left == 0

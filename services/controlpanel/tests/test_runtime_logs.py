"""An environment's runtime logs through the API, as the runner agents leave them in the
REGIO_LOGS stream: the newest lines first, then following ``next``."""
import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from regio_common import bus, runtime_logs
from regio_common.runtime_logs import ACCESS, PLATFORM, WEB, LogLine


@pytest.fixture
async def js(settings):
    nc = await bus.connect(settings.nats_url, "runtime-logs-test")
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def environment(api, application) -> str:
    envs = (await api.get("/apps/v3/environments/", params={"application": application["uuid"], "slug": "test"})).json()
    return envs["results"][0]["uuid"]


async def write(js, settings, environment: str, *messages: str, service: str = WEB) -> None:
    """Lines as a runner agent (or for ACCESS, the ingress) writes them (acknowledged here, so
    they are stored before reading)."""
    env_id = uuid.UUID(environment)
    if service == ACCESS:
        subject, instance = runtime_logs.access_subject(settings.region, env_id), None
    else:
        subject, instance = runtime_logs.subject(settings.region, env_id), uuid.UUID(int=1)
    for message in messages:
        line = LogLine(timestamp=datetime.now(UTC), service=service, instance=instance, message=message)
        await js.publish(subject, line.model_dump_json().encode(), stream=bus.LOGS.name)


def after_in(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["after"][0])


async def test_the_newest_lines_oldest_first_then_what_follows(api, js, settings, environment):
    await write(js, settings, environment, *(f"line {i}" for i in range(1005)))
    await write(js, settings, environment, "instance 00000000 exited with code 1", service=PLATFORM)

    page = (await api.get(f"/apps/v3/environments/{environment}/logs/")).json()
    assert page["count"] == 1000 and page["previous"] is None
    assert [r["message"] for r in page["results"]] == [f"line {i}" for i in range(6, 1005)] + [
        "instance 00000000 exited with code 1"]
    first = page["results"][0]
    assert first["service"] == "web" and first["instance"] == str(uuid.UUID(int=1))
    assert abs(datetime.fromisoformat(first["timestamp"]) - datetime.now(UTC)) < timedelta(minutes=5)
    assert page["results"][-1]["service"] == "platform"

    newest = (await api.get(f"/apps/v3/environments/{environment}/logs", params={"limit": 2})).json()
    assert [r["message"] for r in newest["results"]] == ["line 1004", "instance 00000000 exited with code 1"]

    # Following: `next` is absolute, says where this page ended, and is there even when nothing is new.
    assert page["next"].startswith("http://cp.test/apps/v3/environments/")
    quiet = (await api.get(page["next"])).json()
    assert quiet["results"] == [] and quiet["count"] == 0 and quiet["next"] == page["next"]

    await write(js, settings, environment, "a request", "another")
    more = (await api.get(quiet["next"])).json()
    assert [r["message"] for r in more["results"]] == ["a request", "another"]
    assert after_in(more["next"]) > after_in(page["next"])
    assert (await api.get(more["next"])).json()["results"] == []


async def test_requests_are_interleaved_with_the_output_and_cannot_push_it_out(api, js, settings, environment):
    await write(js, settings, environment, "application started")
    await write(js, settings, environment, "GET / 200 1.2ms 5B client=127.0.0.1 request=r1", service=ACCESS)
    await write(js, settings, environment, "served /")

    page = (await api.get(f"/apps/v3/environments/{environment}/logs/")).json()
    assert [(r["service"], r["message"][:5]) for r in page["results"]] == [
        ("web", "appli"), ("ingress", "GET /"), ("web", "serve")]

    # One kind of line at a time; following one kind passes the others.
    requests = (await api.get(f"/apps/v3/environments/{environment}/logs/", params={"service": "ingress"})).json()
    assert [r["message"][:5] for r in requests["results"]] == ["GET /"]
    web = (await api.get(f"/apps/v3/environments/{environment}/logs/", params={"service": "web"})).json()
    assert [r["message"] for r in web["results"]] == ["application started", "served /"]
    await write(js, settings, environment, "GET /again 200", service=ACCESS)
    await write(js, settings, environment, "served /again")
    followed = (await api.get(web["next"])).json()
    assert [r["message"] for r in followed["results"]] == ["served /again"]
    assert (await api.get(followed["next"])).json()["results"] == []
    bad = await api.get(f"/apps/v3/environments/{environment}/logs/", params={"service": "db"})
    assert bad.status_code == 400 and "service" in bad.json()

    # A busy site: more requests than the stream keeps of one subject.
    await asyncio.gather(*(write(js, settings, environment, *(f"GET /{n}-{i} 200" for i in range(500)),
                                 service=ACCESS) for n in range(11)))
    everything = await runtime_logs.read(js, runtime_logs.subjects(settings.region, uuid.UUID(environment)))
    assert [line.message for _, line in everything if line.service == WEB] == [
        "application started", "served /", "served /again"]


async def test_following_in_pages_of_limit_lines(api, js, settings, environment):
    start = (await api.get(f"/apps/v3/environments/{environment}/logs/")).json()
    assert start["results"] == [] and after_in(start["next"]) == 0

    await write(js, settings, environment, "one", "two", "three")
    url, seen = start["next"] + "&limit=2", []
    for _ in range(3):
        page = (await api.get(url)).json()
        seen += [r["message"] for r in page["results"]]
        url = page["next"]
    assert seen == ["one", "two", "three"]


async def test_only_members_read_an_environments_logs(api, stranger, js, settings, environment):
    await write(js, settings, environment, "private")
    assert (await stranger.get(f"/apps/v3/environments/{environment}/logs/")).status_code == 404
    assert (await api.get(f"/apps/v3/environments/{uuid.uuid4()}/logs/")).status_code == 404
    assert (await api.get(f"/apps/v3/environments/{environment}/logs/", params={"limit": 5001})).status_code == 400

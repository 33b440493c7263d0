"""Attacks on custom domains: routing a domain one does not control, keeping its owner from
it, and stalling the control panel through the DNS look-up. The region's resolver is a DNS
server of the test's own on loopback (conftest.py's dns_zone), as a region's would be."""
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from dnslib import DNSRecord
from sqlalchemy import text

from regio_common.db import make_engine
from regio_common.messages import EnvironmentHostsChanged
from regio_common.sealing import open_sealed
from regio_common.testing.dns import silent_resolver
from regio_controlpanel.region_services import dns
from regio_controlpanel.region_settings import configure
from regio_controlpanel.services.domain_rechecks import DomainRechecks
from regio_controlpanel.services.tokens import hash_token

from .test_deployments import build_succeeds, deploy, js  # noqa: F401 (js: a fixture)
from .test_resources import commands  # noqa: F401 (a fixture)
from .web_client import Browser, new_user


@pytest.fixture
async def application(paid_application):
    """Custom domains take a plan that allows them (the free plan allows none)."""
    return paid_application


def new_domain() -> str:
    return f"www.{uuid.uuid4().hex[:10]}.example.com"


async def add(client, env_id: str, name: str, kind: str = "ALIAS"):
    return await client.post("/apps/v3/domains/", json={"environment": env_id, "domain": name, "kind": kind})


async def test_a_domain_without_its_txt_record_is_neither_routed_nor_told_to_the_release(
        api, js, settings, application, dns_zone, commands):  # noqa: F811
    env_id = application["test_status"]["uuid"]
    name = new_domain()
    added = await add(api, env_id, name, "PRIMARY")
    assert added.status_code == 201, added.text
    verification = added.json()["verification"]
    assert verification["status"] == "pending" and verification["record_type"] == "TXT"
    assert verification["record_name"] == f"_regio-challenge.{name}"
    assert verification["last_error"] == f"No TXT record found at _regio-challenge.{name}."
    dep_id = uuid.UUID((await deploy(api, application))["uuid"])
    rollout = await build_succeeds(js, settings, dep_id)
    assert name not in rollout.hosts and name not in rollout.redirect_hosts
    released = open_sealed(settings.region_key, rollout.sealed_env)
    assert released["DOMAIN"] == f"{application['slug']}-stage.{settings.region_domain}"
    assert name not in released["DOMAIN_ALIASES"]

    dns_zone.publish(verification["record_name"], verification["record_value"])
    verified = await api.post(f"/apps/v3/domains/{added.json()['uuid']}/verify/")
    assert verified.status_code == 200 and verified.json()["verification"]["status"] == "verified"
    assert verified.json()["verification"]["last_error"] is None
    routed = await commands(EnvironmentHostsChanged, env_id)
    assert routed.hosts[0] == name


async def test_the_record_must_hold_this_organisations_value_for_this_domain(api, rival, application, dns_zone):
    """An attacker cannot reuse a value: it is derived from the organisation and the domain,
    under a key only the control panel holds."""
    env_id = application["test_status"]["uuid"]
    victim, other = new_domain(), new_domain()
    mine = (await add(api, env_id, victim)).json()
    groups = (await rival.get("/billing/v3/application-plan-groups/")).json()["results"]
    their_app = (await rival.post("/apps/v3/applications/", json={
        "name": "Squat", "slug": f"squat-{uuid.uuid4().hex[:6]}", "organisation": rival.organisation,
        "plan_group": next(g["uuid"] for g in groups if g["name"] == "Business")})).json()
    theirs = await add(rival, their_app["live_status"]["uuid"], victim)
    # A name waiting for verification does not keep anyone from adding it.
    assert theirs.status_code == 201, theirs.text
    values = {mine["verification"]["record_value"], theirs.json()["verification"]["record_value"],
              (await add(api, env_id, other)).json()["verification"]["record_value"]}
    assert len(values) == 3 and all(len(v) >= 32 for v in values)
    assert (await api.get(f"/apps/v3/domains/{mine['uuid']}/")).json()["verification"]["record_value"] == \
        mine["verification"]["record_value"]  # stable

    # The owner publishes their value: the squatter's check fails, the owner's succeeds.
    dns_zone.publish(mine["verification"]["record_name"], "something-else", mine["verification"]["record_value"])
    squatted = (await rival.post(f"/apps/v3/domains/{theirs.json()['uuid']}/verify/")).json()["verification"]
    assert squatted["status"] == "failed"
    assert squatted["last_error"] == f"The TXT records at _regio-challenge.{victim} do not hold the expected value."
    assert "something-else" not in squatted["last_error"]
    owned = (await api.post(f"/apps/v3/domains/{mine['uuid']}/verify/")).json()["verification"]
    assert owned["status"] == "verified"

    # Even with both values published, the host is the first verified one's.
    dns_zone.publish(mine["verification"]["record_name"], theirs.json()["verification"]["record_value"])
    late = (await rival.post(f"/apps/v3/domains/{theirs.json()['uuid']}/verify/")).json()["verification"]
    assert late["status"] == "failed" and late["last_error"] == "Another environment already serves this domain."
    again = await add(rival, their_app["test_status"]["uuid"], victim)
    assert again.status_code == 409 and again.json() == {
        "domain": [f"The host {victim} already belongs to another environment."]}


async def test_a_record_published_before_the_domain_is_added_verifies_it_at_once(api, application, dns_zone):
    env_id = application["test_status"]["uuid"]
    name = new_domain()
    first = (await add(api, env_id, name)).json()
    assert (await api.delete(f"/apps/v3/domains/{first['uuid']}/")).status_code == 204
    dns_zone.publish(first["verification"]["record_name"], first["verification"]["record_value"])
    again = await add(api, env_id, name)
    assert again.status_code == 201 and again.json()["verification"]["status"] == "verified"


@pytest.fixture
async def region_resolver(settings, seeded, dns_zone):
    """``await point(address)``: the seeded region's resolver, for one test; put back after."""
    engine = make_engine(settings.database_url)

    async def point(address: str) -> None:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE controlpanel.regions SET dns_resolver = :a WHERE id = :id"),
                                     {"a": address, "id": seeded["region"]})

    yield point
    await point(dns_zone.address)
    await engine.dispose()


async def test_a_resolver_that_never_answers_does_not_hold_the_request(api, application, region_resolver):
    env_id = application["test_status"]["uuid"]
    with silent_resolver() as address:
        await region_resolver(address)
        started = time.monotonic()
        added = await add(api, env_id, new_domain())
        took = time.monotonic() - started
    assert added.status_code == 201 and took < 6, took
    verification = added.json()["verification"]
    assert verification["status"] == "failed"
    assert verification["last_error"] == "The DNS resolver did not answer within 3 seconds."


@contextmanager
def asked_resolver() -> Iterator[tuple[str, list[str]]]:
    """A resolver that never answers, and the names it has been asked (read by a thread)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    asked: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            asked.append(str(DNSRecord.parse(data).q.qname).rstrip("."))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}", asked
    finally:
        stop.set()
        reader.join()
        sock.close()


async def token_last_used_long_ago(settings, token: str) -> None:
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE controlpanel.api_tokens SET last_used_at = now() - interval '1 hour' "
                                          "WHERE token_hash = :hash"), {"hash": hash_token(token)})
    finally:
        await engine.dispose()


async def test_checks_against_a_silent_resolver_leave_the_other_tenants_answered(api, application, settings, seeded,
                                                                                 region_resolver, monkeypatch):
    """The attack: more checks at once than the database pool's 15 connections, through a
    resolver that never answers. Each holds its request's connection while it looks up, so
    only a few may look up at once; the others are told so at once, and another request is
    answered while the look-ups still wait. A check told so is not made: its domain keeps the
    state it had (a busy moment says nothing about the domain)."""
    # What is asserted is an order (the other request answered while the look-ups wait), not
    # a time; a longer bound than the region's 3 s keeps that order on a loaded machine.
    monkeypatch.setattr(dns, "LOOKUP_SECONDS", 10.0)
    env_id = application["test_status"]["uuid"]
    names = [new_domain() for _ in range(16)]
    ids = {name: (await add(api, env_id, name)).json()["uuid"] for name in names}
    before = {name: (await api.get(f"/apps/v3/domains/{ids[name]}/")).json()["verification"] for name in names}
    loop = asyncio.get_running_loop()
    answered_at: dict[str, float] = {}

    async def check(name: str):
        answer = await api.post(f"/apps/v3/domains/{ids[name]}/verify/")
        answered_at[name] = loop.time()
        return answer

    # Every check is due to record the token's use, as when its minute is up: each would lock
    # the token's row for as long as its request lasts (services/tokens.py).
    await token_last_used_long_ago(settings, seeded["token"])
    with asked_resolver() as (address, asked):
        await region_resolver(address)
        checks = {name: asyncio.create_task(check(name)) for name in names}

        def looking() -> list[str]:
            return [name for name in names if f"_regio-challenge.{name}" in list(asked)]

        async with asyncio.timeout(30):  # every check has answered, or holds its connection in DNS
            while sum(check.done() for check in checks.values()) + len(looking()) < len(names):
                await asyncio.sleep(0.05)
        other = await api.get(f"/apps/v3/applications/{application['uuid']}/")
        other_answered_at = loop.time()
        assert other.status_code == 200
        answers = {name: await check for name, check in checks.items()}
        assert looking() and all(answered_at[name] > other_answered_at for name in looking())
    for name, answer in answers.items():
        if name in looking():
            assert answer.status_code == 200, answer.text
            assert answer.json()["verification"]["status"] == "failed"
            assert answer.json()["verification"]["last_error"] == "The DNS resolver did not answer within 10 seconds."
        else:
            assert answer.status_code == 503, answer.text
            assert answer.json() == {
                "non_field_errors": ["Too many DNS look-ups are under way; check again in a few seconds."]}
            assert (await api.get(f"/apps/v3/domains/{ids[name]}/")).json()["verification"] == before[name]
            assert before[name]["status"] == "pending"
    assert 0 < len(looking()) <= 4


async def test_huge_and_many_records_are_read_safely(api, application, dns_zone):
    env_id = application["test_status"]["uuid"]
    many, huge = new_domain(), new_domain()
    many_added = (await add(api, env_id, many)).json()
    # 250 records of 200 characters (50 KB: only TCP carries it), the right one last.
    dns_zone.publish(many_added["verification"]["record_name"],
                     *[f"noise-{n:03d}-" + "x" * 190 for n in range(250)], many_added["verification"]["record_value"])
    huge_added = (await add(api, env_id, huge)).json()
    dns_zone.publish(huge_added["verification"]["record_name"], "y" * 60_000)
    many_verified = await api.post(f"/apps/v3/domains/{many_added['uuid']}/verify/")
    assert many_verified.json()["verification"]["status"] == "verified", many_verified.text
    huge_checked = (await api.post(f"/apps/v3/domains/{huge_added['uuid']}/verify/")).json()["verification"]
    assert huge_checked["status"] == "failed" and "y" * 20 not in huge_checked["last_error"]


async def test_a_domain_that_does_not_exist_stays_pending(api, application, dns_zone):
    env_id = application["test_status"]["uuid"]
    added = (await add(api, env_id, new_domain())).json()
    checked = (await api.post(f"/apps/v3/domains/{added['uuid']}/verify/")).json()["verification"]
    assert checked["status"] == "pending" and checked["checked_at"] is not None


async def test_two_checks_of_one_domain_at_once_leave_it_verified(api, application, dns_zone):
    """A double click, or a check that overlaps the periodic one: the second must not find the
    host claimed by the first and write "failed" over its "verified"."""
    env_id = application["test_status"]["uuid"]
    for _ in range(5):
        added = (await add(api, env_id, new_domain())).json()
        dns_zone.publish(added["verification"]["record_name"], added["verification"]["record_value"])
        url = f"/apps/v3/domains/{added['uuid']}/verify/"
        for checked in await asyncio.gather(api.post(url), api.post(url)):
            # The second, while the first holds the domain, is told so at once rather than wait.
            assert (checked.status_code == 200 and checked.json()["verification"]["status"] == "verified") or (
                checked.status_code == 409 and checked.json() == {
                    "non_field_errors": ["This domain is being checked right now; see its state in a few seconds."]}
            ), checked.text
        assert (await api.get(f"/apps/v3/domains/{added['uuid']}/")).json()["verification"]["status"] == "verified"
        again = await api.post(url)
        assert again.status_code == 200 and again.json()["verification"]["status"] == "verified"


async def test_a_check_of_a_domain_being_checked_does_not_wait_for_it(api, application, settings, dns_zone):
    """Waiting for the other check's lock would hold the request's connection for as long as
    that check's look-up lasts: the stall the bound on look-ups closes."""
    added = (await add(api, application["test_status"]["uuid"], new_domain())).json()
    dns_zone.publish(added["verification"]["record_name"], added["verification"]["record_value"])
    url = f"/apps/v3/domains/{added['uuid']}/verify/"
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:  # a check under way (the periodic one's lock)
            await connection.execute(text("SELECT 1 FROM controlpanel.domains WHERE id = :id FOR UPDATE"),
                                     {"id": added["uuid"]})
            async with asyncio.timeout(20):  # without the fix the request waits for this lock for ever
                busy = await api.post(url)
            assert busy.status_code == 409, busy.text
    finally:
        await engine.dispose()
    assert (await api.post(url)).json()["verification"]["status"] == "verified"


def name_of_length(length: int) -> str:
    tail = f"{uuid.uuid4().hex[:10]}.example.com"
    labels, left = [], length - len(tail)
    while left:
        size = min(63, left - 1) if left - 1 != 64 else 62  # each label and its dot; never leave a lone dot
        labels.append("a" * size)
        left -= size + 1
    return ".".join([*labels, tail])


async def test_a_name_too_long_for_its_challenge_record_is_refused(api, application):
    """``_regio-challenge.`` and the name must fit in DNS's 253 characters, else the domain
    could never be verified."""
    env_id = application["test_status"]["uuid"]
    for length in (237, 253):
        refused = await add(api, env_id, name_of_length(length))
        assert refused.status_code == 400 and refused.json() == {"domain": [
            "A domain has at most 236 characters here: its TXT record's name, _regio-challenge.<domain>, "
            "must fit in DNS's 253."]}, refused.text
    longest = await add(api, env_id, name_of_length(236))
    assert longest.status_code == 201 and longest.json()["verification"]["status"] == "pending", longest.text


async def test_another_organisation_cannot_verify_or_see_a_domain(api, rival, application, dns_zone):
    added = (await add(api, application["test_status"]["uuid"], new_domain())).json()
    assert (await rival.post(f"/apps/v3/domains/{added['uuid']}/verify/")).status_code == 404


async def test_an_operator_sets_the_resolver_and_the_trust_of_a_region(settings, trusting_region):
    """What `regio region set` runs: a resolver must be an address (it cannot itself need one)."""
    with pytest.raises(ValueError, match="not an IP address"):
        await configure(settings, trusting_region.slug, dns_resolver="dns.example.com:53")
    shown = await configure(settings, trusting_region.slug, dns_resolver="[::1]:5353", trust_region_domain=False)
    assert shown["dns_resolver"] == "[::1]:5353" and shown["trust_region_domain"] is False
    assert (await configure(settings, trusting_region.slug, dns_resolver=""))["dns_resolver"] is None
    with pytest.raises(LookupError):
        await configure(settings, "no-such-region")


async def test_the_page_shows_the_record_to_create_and_checks_again(app, settings, application, dns_zone):
    """The web Control Panel's domains: a pending one says what TXT record to create, and
    "Check again" verifies it once the record is there."""
    await new_user(settings, "admin@example.test")
    env_id = application["test_status"]["uuid"]
    page = f"/web/environments/{env_id}"
    name = new_domain()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        browser = Browser(client)
        assert (await browser.sign_in("admin@example.test")).status_code == 303
        assert (await browser.submit(page, f"{page}/domains", {"domain": name, "kind": "ALIAS"})).status_code == 303
        shown = (await browser.get(page)).text
        row = shown[shown.index(f'data-domain="{name}"'):]
        row = row[:row.index("</tr>")]
        assert 'data-verification="pending"' in row and f"_regio-challenge.{name}" in row
        value = re.search(r"with the value <code>([0-9a-f]{64})</code>", row).group(1)
        domain_id = re.search(r'action="/web/domains/([0-9a-f-]{36})/verify"', row).group(1)
        dns_zone.publish(f"_regio-challenge.{name}", value)
        checked = await browser.submit(page, f"/web/domains/{domain_id}/verify", {})
        assert checked.status_code == 303
        shown = (await browser.get(page)).text
        row = shown[shown.index(f'data-domain="{name}"'):]
        assert 'data-verification="verified"' in row[:row.index("</tr>")]
        assert name in shown[shown.index("Served:"):][:500]



async def test_a_primary_waiting_for_verification_leaves_the_served_one_in_place(
        api, application, dns_zone, verified_domain, commands):  # noqa: F811
    env_id = application["test_status"]["uuid"]
    served, waiting = new_domain(), new_domain()
    first = await verified_domain(env_id, served, "PRIMARY")
    assert (await commands(EnvironmentHostsChanged, env_id)).hosts[0] == served
    added = (await add(api, env_id, waiting, "PRIMARY")).json()
    assert added["kind"] == "PRIMARY" and not added["is_primary"]
    still = (await api.get(f"/apps/v3/domains/{first['uuid']}/")).json()
    assert still["kind"] == "PRIMARY" and still["is_primary"]
    # Once proven, it takes over; the former primary is served as an alias.
    dns_zone.publish(added["verification"]["record_name"], added["verification"]["record_value"])
    took_over = (await api.post(f"/apps/v3/domains/{added['uuid']}/verify/")).json()
    assert took_over["is_primary"]
    assert (await api.get(f"/apps/v3/domains/{first['uuid']}/")).json()["kind"] == "ALIAS"
    assert (await commands(EnvironmentHostsChanged, env_id)).hosts[:2] == [waiting, served]


async def test_a_waiting_domain_is_checked_again_by_itself(app, api, settings, application, dns_zone,
                                                           commands):  # noqa: F811
    """The owner creates the record after adding the domain and does nothing more."""
    env_id = application["test_status"]["uuid"]
    name = new_domain()
    added = (await add(api, env_id, name)).json()
    dns_zone.publish(added["verification"]["record_name"], added["verification"]["record_value"])
    rechecks = DomainRechecks(app.state.runtime.sessions, app.state.runtime.outbox, app.state.vault, 60)
    assert (await rechecks.recheck_due()) == 0  # checked a moment ago: not due yet
    engine = make_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE controlpanel.domains SET verification_checked_at = now() - "
                                      "interval '6 minutes' WHERE id = :id"), {"id": added["uuid"]})
    await engine.dispose()
    assert (await rechecks.recheck_due()) >= 1
    assert (await api.get(f"/apps/v3/domains/{added['uuid']}/")).json()["verification"]["status"] == "verified"
    assert name in (await commands(EnvironmentHostsChanged, env_id)).hosts


def test_regio_region_set_runs_the_settings_module(settings, seeded, trusting_region):
    """`regio region set` runs this module with the control panel's environment."""
    env = {**os.environ, "REGIO_CONTROLPANEL_DATABASE_URL": settings.database_url}

    def region_set(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "regio_controlpanel.region_settings", *args],
                              env=env, capture_output=True, text=True, timeout=60)

    shown = region_set(trusting_region.slug, "--dns-resolver", "127.0.0.1:5353", "--trust-region-domain", "off")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout).items() >= {"region": trusting_region.slug, "domain": trusting_region.domain,
                                                "dns_resolver": "127.0.0.1:5353", "trust_region_domain": False}.items()
    refused = region_set(trusting_region.slug, "--dns-resolver", "resolver.example.com")
    assert refused.returncode == 2 and "not an IP address" in refused.stderr


async def test_a_busy_moment_leaves_a_domain_as_it_was(app, api, application, dns_zone, monkeypatch, caplog):
    """No look-up slot free (other tenants' checks hold them all): adding still adds the domain,
    pending and unchecked; a check asked for is refused with the reason and changes nothing; the
    periodic re-check skips the domain quietly, to check it on its next round."""
    monkeypatch.setattr(dns, "MAX_UNDER_WAY", 0)
    env_id = application["test_status"]["uuid"]
    added = await add(api, env_id, new_domain())
    assert added.status_code == 201, added.text
    unchecked = added.json()["verification"]
    assert unchecked["status"] == "pending" and unchecked["checked_at"] is None and unchecked["last_error"] is None
    refused = await api.post(f"/apps/v3/domains/{added.json()['uuid']}/verify/")
    assert refused.status_code == 503
    assert refused.json() == {"non_field_errors": [dns.BUSY]}
    rechecks = DomainRechecks(app.state.runtime.sessions, app.state.runtime.outbox, app.state.vault, 60)
    assert (await rechecks.recheck_due()) == 0
    assert "re-checking domain" not in caplog.text
    assert (await api.get(f"/apps/v3/domains/{added.json()['uuid']}/")).json()["verification"] == unchecked

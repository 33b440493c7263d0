"""The operator's regions (`python -m regio_controlpanel.regions`, which `regio region add`
runs): as a process, with the control panel's environment, JSON out, refusals on stderr
with exit status 2 and nothing changed."""
import json
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import func, update

from regio_common.db import make_engine, make_sessionmaker
from regio_controlpanel.db.models import Application, Region


def operator(settings, module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REGIO_CONTROLPANEL_DATABASE_URL": settings.database_url,
           "REGIO_CONTROLPANEL_SECRETS_KEY": settings.secrets_key, "REGIO_CONTROLPANEL_REGION_KEY": settings.region_key}
    return subprocess.run([sys.executable, "-m", f"regio_controlpanel.{module}", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def regions(settings, *args: str):
    done = operator(settings, "regions", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def refused(settings, *args: str) -> str:
    done = operator(settings, "regions", *args)
    assert done.returncode == 2 and not done.stdout, (done.returncode, done.stdout)
    return done.stderr


def adding(slug: str, *more: str) -> list[str]:
    return ["add", slug, "--name", f"Region {slug}", "--domain", f"{slug}.regio.example", "--vendor", "exoscale",
            "--location", "Zurich", *more]


@pytest.fixture
async def slug(settings):
    """A new region's slug; retired after the test (other tests' lists stay as they were)."""
    made = f"r{uuid.uuid4().hex[:8]}"
    yield made
    engine = make_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(update(Region).where(Region.slug.in_([made, f"{made}b"])).values(retired_at=func.now()))
    await engine.dispose()


def test_a_region_is_added_again_unchanged_listed_and_retired(settings, seeded, slug):
    added = regions(settings, *adding(slug, "--free", "--jetstream-domain", slug, "--site-port", "8080",
                                      "--ingress-address", "ingress.zurich.example:8080"))

    assert added == {"slug": slug, "name": f"Region {slug}", "domain": f"{slug}.regio.example", "vendor": "exoscale",
                     "location": "Zurich", "physical_region": "exoscale Zurich", "dedicated_to": None,
                     "free_plan": True, "jetstream_domain": slug, "site_port": 8080,
                     "ingress_address": "ingress.zurich.example:8080", "retired": False}
    listed = regions(settings, "list")
    # Added again without it, the ingress address stays (as the JetStream domain would).
    assert regions(settings, *adding(slug, "--free", "--jetstream-domain", slug, "--site-port", "8080")) == added
    assert regions(settings, "list") == listed and [r for r in listed if r["slug"] == slug] == [added]

    retired = regions(settings, "retire", slug)
    assert retired == {**added, "retired": True}
    assert [r["retired"] for r in regions(settings, "list") if r["slug"] == slug] == [True]
    assert regions(settings, *adding(slug))["retired"] is False  # added again: back in service


@pytest.mark.parametrize("args, said", [
    (["Upper"], "slug"), (["1st"], "slug"), (["a" * 32], "slug"), (["eu.west"], "slug"), (["eu>"], "slug"),
    (["x", "--site-port", "70000"], "site port"), (["x", "--jetstream-domain", "a.b"], "JetStream domain"),
    (["x", "--name", "n" * 201], "name"), (["x", "--location", " "], "location"),
    (["x", "--ingress-address", "ingress.example"], "ingress address"),
    (["x", "--ingress-address", "{http.request.host}:80"], "ingress address"),
])
def test_what_cannot_be_a_region_is_refused(settings, seeded, args, said):
    slug, *more = args
    stderr = refused(settings, *adding(slug, *more))
    assert said in stderr
    assert slug not in [r["slug"] for r in regions(settings, "list")]


def test_a_region_needs_a_known_vendor_and_a_host_name(settings, seeded, slug):
    assert "invalid choice" in refused(settings, "add", slug, "--name", "N", "--domain", f"{slug}.example",
                                       "--vendor", "ibm", "--location", "L")
    assert "domain" in refused(settings, "add", slug, "--name", "N", "--domain", "not a host",
                               "--vendor", "aws", "--location", "L")
    assert slug not in [r["slug"] for r in regions(settings, "list")]


def test_a_region_is_dedicated_only_to_an_existing_organisation(settings, seeded, slug):
    nobody = str(uuid.uuid4())
    assert f"no organisation {nobody}" in refused(settings, *adding(slug, "--dedicated-to", nobody))
    assert "dedicated-to" in refused(settings, *adding(slug, "--dedicated-to", "not-a-uuid"))
    dedicated = regions(settings, *adding(slug, "--dedicated-to", seeded["organisation"]))
    assert dedicated["dedicated_to"] == seeded["organisation"]


async def test_a_region_with_applications_keeps_its_organisation(settings, seeded, application, stranger, slug):
    dedicated = regions(settings, *adding(slug, "--dedicated-to", seeded["organisation"]))
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        region_id = (await session.execute(Region.__table__.select().where(Region.slug == slug))).one().id
        await session.execute(update(Application).where(Application.id == uuid.UUID(application["uuid"]))
                              .values(region_id=region_id))
    try:
        # Its applications would be in another organisation's region, or in a public one.
        assert "stays dedicated" in refused(settings, *adding(slug, "--dedicated-to", stranger.organisation))
        assert "stays dedicated" in refused(settings, *adding(slug))
        assert regions(settings, *adding(slug, "--dedicated-to", seeded["organisation"])) == dedicated
    finally:
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.execute(update(Application).where(Application.id == uuid.UUID(application["uuid"]))
                                  .values(region_id=uuid.UUID(seeded["region"])))
        await engine.dispose()


def test_the_default_region_and_an_unknown_one_are_not_retired(settings, seeded):
    assert "default region" in refused(settings, "retire", settings.region)
    assert "no region" in refused(settings, "retire", "nowhere-at-all")
    assert [r["retired"] for r in regions(settings, "list") if r["slug"] == settings.region] == [False]


def test_a_physical_region_keeps_its_vendor_and_location(settings, seeded, slug):
    regions(settings, *adding(slug, "--physical-region", f"dc-{slug}"))
    other = f"{slug}b"
    stderr = refused(settings, "add", other, "--name", "N", "--domain", f"{other}.example", "--vendor", "aws",
                     "--location", "Dublin", "--physical-region", f"dc-{slug}")
    assert "exoscale Zurich" in stderr


def test_the_operator_marks_the_regions_the_free_plan_may_use(settings, seeded, slug):
    regions(settings, *adding(slug))
    done = operator(settings, "region_settings", slug, "--free", "on")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["free_plan"] is True
    assert [r["free_plan"] for r in regions(settings, "list") if r["slug"] == slug] == [True]
    # Adding it again (as every `regio up` does) without saying leaves it as the operator set it.
    assert regions(settings, *adding(slug))["free_plan"] is True
    assert json.loads(operator(settings, "region_settings", slug, "--free", "off").stdout)["free_plan"] is False
    assert regions(settings, *adding(slug))["free_plan"] is False
    assert regions(settings, *adding(slug, "--free"))["free_plan"] is True


def test_a_region_updated_without_its_jetstream_domain_keeps_it(settings, seeded, slug):
    """Forgetting --jetstream-domain when updating a region behind a leaf must not move it onto
    the control panel's own server, where none of its messages are."""
    assert regions(settings, *adding(slug, "--jetstream-domain", slug))["jetstream_domain"] == slug
    assert regions(settings, *adding(slug))["jetstream_domain"] == slug

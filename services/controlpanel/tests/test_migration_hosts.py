"""Migration 20261207_1000 on a database made before it: every environment's default host and
every domain is claimed (where two environments already shared a host, the older keeps it),
existing domains stay routed but for one that is another environment's default host, and the
migration goes down and up again."""
import asyncio
import os
import subprocess
import sys
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from .conftest import ALEMBIC_INI

BEFORE = "20261129_1100"


def alembic(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), *args], check=True,
                          capture_output=True, text=True, env={**os.environ, "REGIO_CONTROLPANEL_DATABASE_URL": url})


async def execute(url: str, *statements: tuple[str, dict]) -> list:
    engine = create_async_engine(url)
    rows = []
    try:
        async with engine.begin() as connection:
            for sql, params in statements:
                result = await connection.execute(text(sql), params)
                rows = result.all() if result.returns_rows else rows
    finally:
        await engine.dispose()
    return rows


def test_existing_hosts_are_claimed_and_existing_domains_stay_routed(postgres_cluster):
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres_cluster.psql(f'CREATE DATABASE "{name}"', check=True)
    url = postgres_cluster.url(name, driver="postgresql+asyncpg")
    try:
        alembic(url, "upgrade", BEFORE)
        ids = {key: uuid.uuid4() for key in ("physical", "region", "org", "shop", "squat", "shop_test", "shop_live",
                                             "squat_test", "squat_live", "domain", "squatted")}
        envs = [("shop_test", "shop", "test"), ("shop_live", "shop", "live"),
                ("squat_test", "squat", "test"), ("squat_live", "squat", "live")]  # in the order they were made
        asyncio.run(execute(url, *[
            ("INSERT INTO controlpanel.physical_regions (id, name, vendor, location) VALUES (:physical, 'p', 'v', 'l')",
             ids),
            ("INSERT INTO controlpanel.regions (id, slug, name, domain, physical_region_id, is_default) "
             "VALUES (:region, 'r', 'R', 'r.test', :physical, true)", ids),
            ("INSERT INTO controlpanel.organisations (id, name) VALUES (:org, 'o')", ids),
            *[("INSERT INTO controlpanel.applications (id, organisation_id, name, slug, region_id, release_commands) "
               "VALUES (:id, :org, :slug, :slug, :region, '[]')", {**ids, "id": ids[app], "slug": slug})
              for app, slug in (("shop", "shop"), ("squat", "shop-stage"))],
            *[("INSERT INTO controlpanel.environments (id, application_id, slug, branch, instances, memory_mb, "
               "health_check_path, secret_key_encrypted, created_at) "
               "VALUES (:id, :app, :slug, 'main', 1, 512, '/', 'x', now() + :n * interval '1 second')",
               {"id": ids[env], "app": ids[app], "slug": slug, "n": n}) for n, (env, app, slug) in enumerate(envs)],
            ("INSERT INTO controlpanel.domains (id, environment_id, domain, kind) "
             "VALUES (:domain, :shop_test, 'www.shop.example', 'PRIMARY')", ids),
            # shop's live host, added as a domain by the other application: served by both.
            ("INSERT INTO controlpanel.domains (id, environment_id, domain, kind) "
             "VALUES (:squatted, :squat_live, 'shop.r.test', 'ALIAS')", ids),
        ]))
        upgraded = alembic(url, "upgrade", "20261207_1000")
        claims = dict(asyncio.run(execute(url, ("SELECT host, environment_id FROM controlpanel.claimed_hosts", {}))))
        assert claims == {"shop.r.test": ids["shop_live"], "shop-stage.r.test": ids["shop_test"],
                          "shop-stage-stage.r.test": ids["squat_test"], "www.shop.example": ids["shop_test"]}
        assert f"environment {ids['squat_live']} shares its default host shop-stage.r.test" in upgraded.stderr
        domains = asyncio.run(execute(url, ("SELECT domain, verification_status, verification_error, "
                                            "verified_at IS NOT NULL, kind FROM controlpanel.domains", {})))
        assert sorted(domains) == [
            ("shop.r.test", "failed", "Another environment already serves this domain.", False, "ALIAS"),
            ("www.shop.example", "verified", None, True, "PRIMARY")]
        assert (f"environment {ids['squat_live']}'s domain shop.r.test is environment {ids['shop_live']}'s "
                "default host") in upgraded.stderr
        alembic(url, "downgrade", BEFORE)
        alembic(url, "upgrade", "head")
    finally:
        postgres_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

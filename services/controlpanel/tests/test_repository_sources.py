"""Repositories as a tenant gives them: a region configured as a production one refuses
sources that reach the builder host's files or private networks, and a token given in a URL
is kept encrypted, never shown, logged, audited or sent in clear."""
import json
import os
import subprocess
import sys
import uuid

import pytest
from cryptography.fernet import InvalidToken

from regio_common.db import make_engine
from regio_common.messages import BuildRequested
from regio_common.sealing import build_key, decrypt_value, new_key, open_sealed
from regio_controlpanel.region_settings import configure

from .conftest import ALEMBIC_INI
from .test_deployments import js, take  # noqa: F401 (js is a fixture)
from .test_web import browser  # noqa: F401 (a fixture)

TOKEN = "ghp_rEgIoS3cretT0kenValue"


async def _set_region(settings, allowed: bool) -> None:
    """As the operator does with `regio region set --[no-]local-repositories --[no-]private-repository-hosts`."""
    await configure(settings, settings.region, allow_local_repositories=allowed,
                    allow_private_repository_hosts=allowed)


@pytest.fixture
async def production(settings, seeded):
    """The seeded region configured as a production one for the length of a test."""
    await _set_region(settings, False)
    yield
    await _set_region(settings, True)


async def _repository(api, seeded, url):
    return await api.post("/apps/v3/repositories/", json={"organisation": seeded["organisation"], "url": url})


@pytest.mark.parametrize("url, reason", [
    ("file:///srv/git/other-tenant.git", "local repositories"),
    ("https://127.0.0.1/app.git", "loopback, link-local or private"),
    ("http://localhost:8080/app.git", "loopback, link-local or private"),
    ("http://169.254.169.254/latest/meta-data", "loopback, link-local or private"),
    ("https://10.1.2.3/app.git", "loopback, link-local or private"),
    ("git://[::1]/app.git", "loopback, link-local or private"),
    ("ssh://git@192.168.1.10/app.git", "loopback, link-local or private"),
    # IPv6 wrappers of IPv4 addresses: NAT64 to the metadata service, 6to4 and IPv4-compatible loopback.
    ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "loopback, link-local or private"),
    ("https://[2002:7f00:1::]/app.git", "loopback, link-local or private"),
    ("git://[::7f00:1]/app.git", "loopback, link-local or private"),
    ("ext::sh -c touch% /tmp/pwned", "must start with"),
    ("--upload-pack=touch /tmp/pwned", "cannot start with '-'"),
    ("ssh://-oProxyCommand=calc@host/app.git", "cannot be empty or start with '-'"),
    ("ssh://git@-oProxyCommand=calc/app.git", "is not a host name"),
])
async def test_a_production_region_refuses_sources_that_reach_the_builder_host(api, seeded, production,
                                                                               url, reason):
    response = await _repository(api, seeded, url)

    assert response.status_code == 400, response.text
    assert reason in response.json()["url"][0].lower()


async def test_a_local_region_accepts_local_repositories(api, seeded):
    response = await _repository(api, seeded, "file:///srv/git/hello.git")
    assert response.status_code == 201, response.text


async def test_an_application_in_a_production_region_cannot_take_a_local_repository(api, seeded, settings,
                                                                                     application):
    local = (await _repository(api, seeded, "file:///srv/git/elsewhere.git")).json()  # made while allowed
    await _set_region(settings, False)
    try:
        created = await api.post("/apps/v3/applications/", json={
            "name": "Sneaky", "slug": f"app-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
            "region": seeded["region"], "repository": local["uuid"]})
        changed = await api.patch(f"/apps/v3/applications/{application['uuid']}/", json={"repository": local["uuid"]})
    finally:
        await _set_region(settings, True)

    assert created.status_code == 400 and "local repositories" in created.json()["repository"][0].lower()
    assert changed.status_code == 400 and "local repositories" in changed.json()["repository"][0].lower()


@pytest.mark.parametrize("branch", ["--upload-pack=touch /tmp/pwned", "-b", "a..b", "with space"])
async def test_a_branch_that_git_would_read_as_an_option_is_refused(api, seeded, application, branch):
    created = await api.post("/apps/v3/applications/", json={
        "name": "Opt", "slug": f"app-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
        "region": seeded["region"], "branch": branch})
    changed = await api.patch(f"/apps/v3/environments/{application['test_status']['uuid']}/",
                              json={"branch": branch})

    assert created.status_code == 400 and "branch" in created.json()
    assert changed.status_code == 400 and "branch" in changed.json()


async def test_a_token_in_a_url_is_kept_encrypted_and_never_shown(api, seeded, settings):
    response = await _repository(api, seeded, f"https://deploy:{TOKEN}@git.example.test/org/app.git")

    assert response.status_code == 201, response.text
    repo = response.json()
    assert repo["url"] == "https://git.example.test/org/app.git"
    assert repo["credentials_set"] is True and repo["deploy_key"] is None
    shown = [(await api.get(f"/apps/v3/repositories/{repo['uuid']}/")).text,
             (await api.get("/apps/v3/repositories/", params={"page_size": 100})).text,
             (await api.get("/iam/v3/audit-events/", params={"target": repo["uuid"]})).text]
    assert all(TOKEN not in text for text in shown)
    assert "git.example.test" in shown[2]  # the audit record is there, without the secret
    engine = make_engine(settings.database_url)
    async with engine.connect() as connection:
        stored = (await connection.exec_driver_sql(
            "SELECT url, credentials_encrypted FROM controlpanel.repositories WHERE id = $1",
            (uuid.UUID(repo["uuid"]),))).one()
    await engine.dispose()
    assert TOKEN not in stored.url and TOKEN not in stored.credentials_encrypted


async def test_the_builder_gets_the_token_sealed_and_the_log_never_shows_it(api, js, seeded, settings):  # noqa: F811
    repo = (await _repository(api, seeded, f"https://deploy:{TOKEN}@git.example.test/org/app.git")).json()
    app = (await api.post("/apps/v3/applications/", json={
        "name": "Private", "slug": f"app-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
        "region": seeded["region"], "repository": repo["uuid"]})).json()

    deployment = (await api.post("/apps/v3/deployments/", json={"environment": app["test_status"]["uuid"]})).json()
    build = await take(js, BuildRequested, settings.region, uuid.UUID(deployment["uuid"]))

    assert build.repository_url == "https://git.example.test/org/app.git"
    assert TOKEN not in build.model_dump_json()  # what went over the bus
    # Sealed with the key of the region's builder: another region's builder cannot open it.
    assert open_sealed(build_key(settings.build_key, settings.region), build.repository_access_sealed) == {
        "username": "deploy", "password": TOKEN}
    for other in (settings.build_key, build_key(settings.build_key, "another-region")):
        with pytest.raises(InvalidToken):
            open_sealed(other, build.repository_access_sealed)
    log = (await api.get(f"/apps/v3/deployments/{deployment['uuid']}/logs")).text
    assert "git.example.test" in log and TOKEN not in log


async def test_an_ssh_repository_gets_a_deploy_key_the_builder_receives_sealed(api, js, seeded, settings):  # noqa: F811
    response = await _repository(api, seeded, "git@git.example.test:org/app.git")

    assert response.status_code == 201, response.text
    repo = response.json()
    assert repo["url"] == "ssh://git@git.example.test/org/app.git"
    assert repo["deploy_key"].startswith("ssh-ed25519 ") and repo["credentials_set"] is False
    app = (await api.post("/apps/v3/applications/", json={
        "name": "Ssh", "slug": f"app-{uuid.uuid4().hex[:8]}", "organisation": seeded["organisation"],
        "region": seeded["region"], "repository": repo["uuid"]})).json()
    deployment = (await api.post("/apps/v3/deployments/", json={"environment": app["test_status"]["uuid"]})).json()
    build = await take(js, BuildRequested, settings.region, uuid.UUID(deployment["uuid"]))

    private = open_sealed(build_key(settings.build_key, settings.region),
                          build.repository_access_sealed)["ssh_private_key"]
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert private not in build.model_dump_json() and "PRIVATE KEY" not in json.dumps(repo)


async def _upgrade_from_before(postgres_cluster, key: str | None):
    """A region upgraded from before: its repositories' URLs held their tokens in clear, and so
    did the deployment log and the audit trail. Returns the repository, audit and log rows after."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres_cluster.psql(f'CREATE DATABASE "{name}"', check=True)
    url = postgres_cluster.url(name, driver="postgresql+asyncpg")
    env = {**os.environ, "REGIO_CONTROLPANEL_DATABASE_URL": url}
    env.pop("REGIO_CONTROLPANEL_SECRETS_KEY", None)
    if key:
        env["REGIO_CONTROLPANEL_SECRETS_KEY"] = key

    def alembic(revision: str) -> None:
        subprocess.run([sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "upgrade", revision],
                       check=True, env=env, capture_output=True)

    engine = make_engine(url)
    try:
        alembic("20261207_1000")
        ids = {k: uuid.uuid4() for k in ("org", "repo", "physical", "region", "app", "env", "deployment")}
        old_url = f"https://deploy:{TOKEN}@git.example.test/org/app.git"
        async with engine.begin() as connection:
            for sql, params in (
                ("INSERT INTO controlpanel.organisations (id, name, created_at) VALUES ($1, 'Old', now())",
                 (ids["org"],)),
                ("INSERT INTO controlpanel.repositories (id, organisation_id, url, created_at) "
                 "VALUES ($1, $2, $3, now())", (ids["repo"], ids["org"], old_url)),
                ("INSERT INTO controlpanel.audit_events (organisation_id, actor_email, action, target_type, "  # as the API recorded it then
                 "target_id, summary, changes, created_at) VALUES ($1, 'a@example.test', 'repository.create', "
                 "'repository', $2, $3, $4, now())",
                 (ids["org"], ids["repo"], f"Repository {old_url} added", json.dumps({"url": old_url}))),
                ("INSERT INTO controlpanel.physical_regions (id, name, vendor, location) VALUES ($1, 'p', 'v', 'l')",
                 (ids["physical"],)),
                ("INSERT INTO controlpanel.regions (id, slug, name, domain, physical_region_id, is_default) "
                 "VALUES ($1, 'r', 'R', 'r.test', $2, true)", (ids["region"], ids["physical"])),
                ("INSERT INTO controlpanel.applications (id, organisation_id, name, slug, region_id, repository_id, "
                 "release_commands) VALUES ($1, $2, 'app', 'app', $3, $4, '[]')",
                 (ids["app"], ids["org"], ids["region"], ids["repo"])),
                ("INSERT INTO controlpanel.environments (id, application_id, slug, branch, instances, memory_mb, "
                 "health_check_path, secret_key_encrypted, created_at) "
                 "VALUES ($1, $2, 'live', 'main', 1, 512, '/', 'x', now())", (ids["env"], ids["app"])),
                ("INSERT INTO controlpanel.deployments (id, environment_id, build_mode, status, percent, steps, "
                 "created_at) VALUES ($1, $2, 'AUTO', 'SUCCEEDED', 100, '[]', now())", (ids["deployment"], ids["env"])),
                ("INSERT INTO controlpanel.deployment_log_chunks (deployment_id, text, created_at) "  # as logged then
                 "VALUES ($1, $2, now())", (ids["deployment"], f"Deployment queued: branch main of {old_url}\n")),
            ):
                await connection.exec_driver_sql(sql, params)
        alembic("head")
        async with engine.connect() as connection:
            row = (await connection.exec_driver_sql(
                "SELECT url, credentials_encrypted FROM controlpanel.repositories WHERE id = $1", (ids["repo"],))).one()
            audit = (await connection.exec_driver_sql(
                "SELECT summary, CAST(changes AS text) FROM controlpanel.audit_events WHERE target_id = $1",
                (ids["repo"],))).one()
            log = (await connection.exec_driver_sql(
                "SELECT text FROM controlpanel.deployment_log_chunks WHERE deployment_id = $1",
                (ids["deployment"],))).scalar_one()
    finally:
        await engine.dispose()
        postgres_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return row, audit, log


async def test_the_migration_takes_tokens_out_of_existing_urls(postgres_cluster):
    key = new_key()
    row, audit, log = await _upgrade_from_before(postgres_cluster, key)
    assert row.url == "https://git.example.test/org/app.git"
    assert json.loads(decrypt_value(key, row.credentials_encrypted)) == {"username": "deploy", "password": TOKEN}
    assert TOKEN not in audit[0] and TOKEN not in audit[1] and "git.example.test/org/app.git" in audit[0]
    assert log == "Deployment queued: branch main of https://git.example.test/org/app.git\n"


async def test_the_migration_without_the_key_still_takes_tokens_out_of_logs_and_audit(postgres_cluster):
    """An operator running alembic by hand, without the control panel's key."""
    row, audit, log = await _upgrade_from_before(postgres_cluster, None)
    # Nothing to seal the token with: the URL keeps it, so builds still reach the repository.
    assert row.url == f"https://deploy:{TOKEN}@git.example.test/org/app.git" and row.credentials_encrypted is None
    assert TOKEN not in audit[0] and TOKEN not in audit[1] and "git.example.test/org/app.git" in audit[0]
    assert log == "Deployment queued: branch main of https://git.example.test/org/app.git\n"


async def test_the_web_page_shows_the_repository_without_its_token_and_an_ssh_ones_deploy_key(browser, api,  # noqa: F811
                                                                                         seeded):
    created = await browser.submit("/web/applications/new", "/web/applications", {
        "organisation": seeded["organisation"], "name": "Web Token", "slug": f"app-{uuid.uuid4().hex[:8]}",
        "branch": "main", "repository_url": f"https://deploy:{TOKEN}@git.example.test/org/web.git",
        "region": seeded["region"], "plan_group": ""})
    assert created.status_code == 303, created.text
    page = (await browser.get(created.headers["location"])).text
    assert "https://git.example.test/org/web.git" in page and "token set" in page and TOKEN not in page

    created = await browser.submit("/web/applications/new", "/web/applications", {
        "organisation": seeded["organisation"], "name": "Web Ssh", "slug": f"app-{uuid.uuid4().hex[:8]}",
        "branch": "main", "repository_url": "git@git.example.test:org/web.git",
        "region": seeded["region"], "plan_group": ""})
    app = (await api.get(f"/apps/v3/applications/{created.headers['location'].rsplit('/', 1)[1]}/")).json()
    repo = (await api.get(f"/apps/v3/repositories/{app['repository']}/")).json()
    page = (await browser.get(created.headers["location"])).text
    assert repo["deploy_key"] in page and "PRIVATE KEY" not in page

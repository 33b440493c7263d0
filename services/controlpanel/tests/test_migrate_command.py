"""`regio migrate`'s client (regio_cli.migrate) against this session's control panel, served
over HTTP on a loopback port: it resolves the application's slug and the region's, starts the
migration, follows the log to its end and reports success; a refusal is told with its field.

The migration is of a fresh application (nothing deployed, no service) to a region without
servers: the session's runner carries it to its end in a second or so without reaching any
server. tests/cli/test_migrate.py runs the command itself against the running region."""
import asyncio
import socket

import pytest
import uvicorn

from regio_cli import migrate

from . import test_migration_requests as requests_api
from .test_migration_requests import add_target

reachable_source = requests_api.reachable_source


@pytest.fixture
async def served(app):
    """The session's app on a free loopback port, for a blocking client run in a thread."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The app's lifespan already runs (the session's): the server must not run it again.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_the_command_starts_a_migration_and_follows_it_to_its_end(served, seeded, application, settings,
                                                                        reachable_source):
    target = await add_target(settings)
    printed, said = [], []
    succeeded = await asyncio.to_thread(migrate.migrate, served, seeded["token"], application["slug"],
                                        target["slug"], printed.append, said.append)
    assert succeeded is True, said
    log = "\n".join(printed)
    assert log.startswith(f"[regio] Migration of {application['slug']} from ")
    assert f"Migration succeeded: {application['slug']} runs in {target['slug']}" in log
    assert log.count("requested by") == 1  # each line once: the offsets were followed
    assert said[0].startswith("migration ") and said[1].endswith(": success")
    assert not any(seeded["token"] in line for line in printed + said)


async def test_a_refusal_is_told_with_its_field(served, seeded, application, settings, reachable_source):
    unreachable = await add_target(settings, ingress_address=None)
    with pytest.raises(migrate.MigrateError) as refused:
        await asyncio.to_thread(migrate.migrate, served, seeded["token"], application["uuid"], unreachable["slug"],
                                print, print)
    assert str(refused.value).startswith("the control panel refused the migration: region: ")
    assert "cannot take migrations" in str(refused.value)
    with pytest.raises(migrate.MigrateError, match="no region 'nowhere'"):
        await asyncio.to_thread(migrate.migrate, served, seeded["token"], application["uuid"], "nowhere", print, print)

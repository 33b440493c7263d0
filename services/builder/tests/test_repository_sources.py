"""What a tenant's repository URL can make the builder do. A production region's builder
(local repositories and private hosts off) refuses to read its own files or reach its own
networks; credentials reach git from a private file, never its command line or the log."""
import asyncio
import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from regio_common import repository_sources
from regio_common.db import make_engine
from regio_common.sealing import new_key, seal

from .git_server import GitHttpServer
from .ssh_server import SshServer

PRODUCTION = {"allow_local_repositories": False, "allow_private_repository_hosts": False}
TOKEN = "glpat-s3cr3t-t0ken-value"


async def _refused(start_builder, publish, events, request, **settings) -> str:
    async with start_builder(**{**PRODUCTION, **settings}):
        await publish(request)
        finished = await events.finished(request.deployment_id)
    assert not finished.success
    assert finished.commit is None
    log = events.log(request.deployment_id)
    assert f"Build failed: {finished.error}" in log  # the reason is in the deployment's log
    return finished.error


async def test_a_production_builder_refuses_a_local_repository(start_builder, publish, build_request, events,
                                                               make_repository):
    # Another tenant's checkout, or any repository the builder's user can read.
    repository = make_repository()

    error = await _refused(start_builder, publish, events, build_request(repository))

    assert "local repositories (file://) are not allowed in this region" in error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254", "10.0.0.1", "[::1]",
                                  "[::ffff:127.0.0.1]", "100.64.0.1",
                                  # IPv6 addresses that lead to an IPv4 one: NAT64 to the metadata
                                  # service, 6to4 and IPv4-compatible to loopback, local-use NAT64,
                                  # a Teredo client of 127.0.0.1 (its address is stored inverted).
                                  "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::]", "[::7f00:1]",
                                  "[64:ff9b:1::7f00:1]", "[2001:0:4136:e378:8000:63bf:80ff:fffe]"])
async def test_a_production_builder_refuses_loopback_link_local_and_private_hosts(
        start_builder, publish, build_request, events, make_repository, host):
    repository = make_repository()
    with GitHttpServer(repository.path.parent) as server:
        url = f"http://{host}:{server.port}/{repository.path.name}"
        error = await _refused(start_builder, publish, events, build_request(None, url=url))
    assert "is a loopback, link-local or private address" in error
    assert server.requests == 0


async def test_a_branch_that_would_be_an_option_is_refused(start_builder, publish, build_request, events,
                                                           make_repository, tmp_path):
    repository = make_repository()
    marker = tmp_path / "pwned"
    request = build_request(repository, branch=f"--upload-pack=touch {marker}")

    error = await _refused(start_builder, publish, events, request, allow_local_repositories=True)

    assert "not a valid branch name" in error
    assert not marker.exists()


async def test_a_redirect_to_another_host_is_not_followed(start_builder, publish, build_request, events,
                                                          make_repository):
    repository = make_repository()
    with GitHttpServer(repository.path.parent) as target, \
            GitHttpServer(repository.path.parent, redirect_to=f"http://127.0.0.1:{target.port}") as redirecting:
        url = f"http://127.0.0.1:{redirecting.port}/{repository.path.name}"
        error = await _refused(start_builder, publish, events, build_request(None, url=url),
                               allow_private_repository_hosts=True)
    assert "git clone failed" in error
    assert redirecting.requests >= 1 and target.requests == 0


async def test_git_connects_to_the_address_that_was_checked(start_builder, publish, build_request, events,
                                                            make_repository, monkeypatch):
    """A name is resolved once, checked, and git connects there: were it to ask DNS again
    (rebinding), this name, which DNS does not know, would not resolve at all."""
    repository = make_repository()
    checked = repository_sources.resolve

    async def resolve(host, port):
        return ["127.0.0.1"] if host == "repo.regio-pinned.invalid" else await checked(host, port)

    monkeypatch.setattr(repository_sources, "resolve", resolve)
    with GitHttpServer(repository.path.parent) as server:
        url = f"http://repo.regio-pinned.invalid:{server.port}/{repository.path.name}"
        request = build_request(None, url=url)
        async with start_builder(allow_local_repositories=False, allow_private_repository_hosts=True):
            await publish(request)
            finished = await events.finished(request.deployment_id)
    assert finished.success, events.log(request.deployment_id)
    assert server.requests >= 1


async def _command_lines_while(task: asyncio.Task) -> list[str]:
    """Every process's command line, sampled until ``task`` ends."""
    seen: set[str] = set()
    while not task.done():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    seen.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
        await asyncio.sleep(0.005)
    return sorted(seen)


async def test_a_token_reaches_git_but_no_command_line_or_log(start_builder, publish, build_request, events,
                                                              make_repository):
    key = new_key()
    repository = make_repository()
    with GitHttpServer(repository.path.parent, credentials=("deploy", TOKEN)) as server:
        url = f"http://127.0.0.1:{server.port}/{repository.path.name}"
        request = build_request(None, url=url).model_copy(update={
            "repository_access_sealed": seal(key, {"username": "deploy", "password": TOKEN})})
        async with start_builder(allow_private_repository_hosts=True, build_key=key) as builder:
            await publish(request)
            finished_task = asyncio.create_task(events.finished(request.deployment_id))
            command_lines = await _command_lines_while(finished_task)
            finished = finished_task.result()
            record = (await builder.build_record(request.deployment_id)).text

    assert finished.success, events.log(request.deployment_id)
    assert any(a and a.startswith("Basic ") for a in server.authorizations)  # the token was used
    assert any("git" in line and "clone" in line for line in command_lines)  # git was seen running
    assert not [line for line in command_lines if TOKEN in line]
    assert not [line for line in events.log(request.deployment_id) if TOKEN in line]
    assert TOKEN not in finished.model_dump_json() and TOKEN not in record
    assert TOKEN not in request.model_dump_json()  # sealed on the bus


async def test_without_the_token_the_clone_fails(start_builder, publish, build_request, events, make_repository):
    repository = make_repository()
    with GitHttpServer(repository.path.parent, credentials=("deploy", TOKEN)) as server:
        url = f"http://127.0.0.1:{server.port}/{repository.path.name}"
        error = await _refused(start_builder, publish, events, build_request(None, url=url),
                               allow_private_repository_hosts=True)
    assert "git clone failed" in error


def _deploy_key() -> tuple[str, str]:
    """An ed25519 pair as the control panel makes for an SSH repository: (public, private)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode(), private


async def test_a_deploy_key_reaches_ssh_from_a_private_file_at_the_checked_address(
        start_builder, publish, build_request, events, make_repository, tmp_path, monkeypatch):
    public, private = _deploy_key()
    repository = make_repository()
    checked = repository_sources.resolve

    async def resolve(host, port):  # DNS does not know this name: ssh must connect where it was checked
        return ["127.0.0.1"] if host == "ssh.regio-pinned.invalid" else await checked(host, port)

    monkeypatch.setattr(repository_sources, "resolve", resolve)
    key = new_key()
    server = SshServer(tmp_path / "sshd", public)
    try:
        request = build_request(None, url=f"ssh://root@ssh.regio-pinned.invalid:{server.port}{repository.path}")
        request = request.model_copy(update={"repository_access_sealed": seal(key, {"ssh_private_key": private})})
        async with start_builder(allow_local_repositories=False, allow_private_repository_hosts=True,
                                 build_key=key) as builder:
            await publish(request)
            finished_task = asyncio.create_task(events.finished(request.deployment_id))
            command_lines = await _command_lines_while(finished_task)
            finished = finished_task.result()
            work_dir = builder.settings.work_dir
    finally:
        server.close()

    assert finished.success, events.log(request.deployment_id)
    assert server.accepted_publickey()
    assert any(line.startswith("ssh ") for line in command_lines)  # ssh was seen running
    secret_line = private.splitlines()[1]
    assert not [line for line in command_lines if secret_line in line]
    assert not [line for line in events.log(request.deployment_id) if secret_line in line]
    # Nothing of the key is left on the builder once the build is done.
    leftovers = [p for p in work_dir.rglob("*") if p.is_file() and secret_line in p.read_text(errors="ignore")]
    assert not leftovers


@contextmanager
def _default_identity(private: str) -> Iterator[None]:
    """``private`` as the builder user's default ssh key for a while; skipped if that user has one."""
    ssh_dir = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"  # where ssh looks, whatever HOME says
    identity = ssh_dir / "id_ed25519"
    if identity.exists() or identity.is_symlink():
        pytest.skip(f"{identity} exists: the test does not replace the user's own key")
    made_dir = not ssh_dir.exists()
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(private)
        yield
    finally:
        identity.unlink(missing_ok=True)
        if made_dir:
            ssh_dir.rmdir()


async def test_without_the_deploy_key_ssh_is_refused(start_builder, publish, build_request, events,
                                                      make_repository, tmp_path):
    # The server authorises the key the builder's Unix user would offer by default.
    public, private = _deploy_key()
    repository = make_repository()
    server = SshServer(tmp_path / "sshd", public)
    try:
        with _default_identity(private):
            url = f"ssh://root@127.0.0.1:{server.port}{repository.path}"
            # Not the builder's own keys, nor its agent: a repository gets in with its deploy key or not at all.
            error = await _refused(start_builder, publish, events, build_request(None, url=url),
                                   allow_private_repository_hosts=True)
    finally:
        server.close()
    assert "git clone failed" in error
    assert not server.accepted_publickey()


async def _stored_url(settings, deployment_id) -> str:
    """The build's repository_url as its row holds it (the API does not show it)."""
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return (await connection.exec_driver_sql(
                "SELECT repository_url FROM builder.builds WHERE deployment_id = $1", (deployment_id,))).scalar_one()
    finally:
        await engine.dispose()


async def test_a_token_still_in_an_older_requests_url_is_used_but_never_shown(start_builder, publish, build_request,
                                                                              events, make_repository, settings):
    """A build the control panel asked for before tokens were sealed apart (queued across the upgrade)."""
    repository = make_repository()
    with GitHttpServer(repository.path.parent, credentials=("deploy", TOKEN)) as server:
        url = f"http://deploy:{TOKEN}@127.0.0.1:{server.port}/{repository.path.name}"
        request = build_request(None, url=url)
        async with start_builder(allow_private_repository_hosts=True):
            await publish(request)
            finished_task = asyncio.create_task(events.finished(request.deployment_id))
            command_lines = await _command_lines_while(finished_task)
            finished = finished_task.result()

    assert finished.success, events.log(request.deployment_id)
    assert not [line for line in command_lines if TOKEN in line]
    assert not [line for line in events.log(request.deployment_id) if TOKEN in line]
    # Nor kept once the build has ended (the builder's migration scrubs only builds ended before it).
    assert await _stored_url(settings, request.deployment_id) == f"http://127.0.0.1:{server.port}/{repository.path.name}"


@pytest.mark.parametrize("url", [f"ssh://deploy:{TOKEN}@git.example.test/app.git",
                                 f"https://deploy:{TOKEN}@git.example.test/app.git?x=1"])
async def test_a_refused_url_loses_its_token_when_the_build_ends(start_builder, publish, build_request, events,
                                                                 settings, url):
    request = build_request(None, url=url)
    await _refused(start_builder, publish, events, request)
    assert TOKEN not in await _stored_url(settings, request.deployment_id)

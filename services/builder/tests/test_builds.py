"""A deployment's Build step as the control panel sees it: BuildRequested in,
BuildStarted, the build log and BuildFinished out."""
import asyncio
import socket
from uuid import uuid4

import pytest

from regio_builder.db import repository as builds_table
from regio_builder.domain.states import BuildState
from regio_builder.services import builds
from regio_common.db import make_engine, make_sessionmaker
from regio_common.messages import BuildFinished, BuildStarted, DeploymentLogAppended


async def test_a_build_streams_its_log_and_announces_the_image(builder, publish, build_request, app_files, events,
                                                               make_repository, docker_api, application_id):
    repository = make_repository()
    commit = repository.commit(app_files(), "second")
    request = build_request(repository)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert finished.success, events.log(request.deployment_id)
    assert finished.commit == commit
    assert finished.image.startswith("sha256:")
    assert finished.exposed_port == 8000
    assert finished.reused is False
    started = events.of(BuildStarted, request.deployment_id)
    assert [s.build_id for s in started] == [finished.build_id]

    log = events.log(request.deployment_id)
    assert any(line.startswith("Step 1/") and "FROM scratch" in line for line in log)
    assert any("COPY hello.txt" in line for line in log)
    assert f"Commit {commit}" in log
    # The whole log was published before the result, so a finished deployment has its full log.
    last_log = events.of(DeploymentLogAppended, request.deployment_id)[-1]
    assert events.sequence(last_log) < events.sequence(finished)
    # The image is in the Engine, tagged with what it was built from.
    image = docker_api.inspect_image(finished.image)
    assert f"regio-app/{application_id}:{commit[:12]}" in image["RepoTags"]

    record = (await builder.build_record(request.deployment_id)).json()
    assert record["state"] == "succeeded"
    assert record["commit"] == commit
    assert record["image"] == finished.image
    assert record["exposed_port"] == 8000
    assert record["error"] is None


async def test_auto_reuses_the_image_of_the_same_commit_and_force_rebuilds(builder, publish, build_request,
                                                                           app_files, events, make_repository):
    repository = make_repository()
    first = build_request(repository, "AUTO")
    await publish(first)
    built = await events.finished(first.deployment_id)
    assert built.success and not built.reused

    again = build_request(repository, "AUTO")
    await publish(again)
    reused = await events.finished(again.deployment_id)
    assert reused.success and reused.reused
    assert (reused.image, reused.commit, reused.exposed_port) == (built.image, built.commit, 8000)
    reuse_log = events.log(again.deployment_id)
    assert any(line.startswith("Reusing image") for line in reuse_log)
    assert not any(line.startswith("Step 1/") for line in reuse_log)

    forced = build_request(repository, "FORCE")
    await publish(forced)
    rebuilt = await events.finished(forced.deployment_id)
    assert rebuilt.success and not rebuilt.reused
    assert rebuilt.commit == built.commit
    assert any(line.startswith("Step 1/") for line in events.log(forced.deployment_id))

    # A new commit is built even in AUTO mode.
    new_commit = repository.commit(app_files(), "change")
    changed = build_request(repository, "AUTO")
    await publish(changed)
    fresh = await events.finished(changed.deployment_id)
    assert fresh.success and not fresh.reused
    assert fresh.commit == new_commit
    assert fresh.image != built.image


async def test_auto_builds_again_when_the_earlier_image_is_gone(builder, publish, build_request, events,
                                                                make_repository, docker_api):
    repository = make_repository()
    first = build_request(repository)
    await publish(first)
    built = await events.finished(first.deployment_id)
    docker_api.remove_image(built.image, force=True)

    again = build_request(repository)
    await publish(again)
    rebuilt = await events.finished(again.deployment_id)

    assert rebuilt.success and not rebuilt.reused
    assert any("is gone; building it again" in line for line in events.log(again.deployment_id))
    assert docker_api.inspect_image(rebuilt.image)


async def test_a_branch_that_does_not_exist_fails_with_gits_reason(publish, build_request, events,
                                                                   make_repository, builder):
    repository = make_repository()
    request = build_request(repository, branch="no-such-branch")

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert finished.image is None
    assert "Remote branch no-such-branch not found" in finished.error
    assert any("Remote branch no-such-branch not found" in line for line in events.log(request.deployment_id))
    record = (await builder.build_record(request.deployment_id)).json()
    assert record["state"] == "failed"
    assert "no-such-branch" in record["error"]


async def test_a_repository_that_cannot_be_cloned_fails(builder, publish, build_request, events, tmp_path):
    request = build_request(None, url=(tmp_path / "nothing-here").as_uri())

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert "git clone failed" in finished.error
    assert any("does not appear to be a git repository" in line for line in events.log(request.deployment_id))


@pytest.mark.parametrize("url", ["ext::sh -c touch% /tmp/regio-pwned", "/etc", "fd::17"])
async def test_only_url_repositories_are_cloned(builder, publish, build_request, events, url):
    request = build_request(None, url=url)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert "the repository URL must start with" in finished.error


async def test_a_clone_that_hangs_times_out(start_builder, publish, build_request, events):
    # A git server that accepts the connection and never answers.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    request = build_request(None, url=f"http://127.0.0.1:{port}/app.git")
    try:
        async with start_builder(clone_timeout_seconds=1):
            await publish(request)
            finished = await events.finished(request.deployment_id)
    finally:
        server.close()

    assert not finished.success
    assert finished.error == "git clone did not finish within 1 seconds"


async def test_a_repository_without_dockerfile_fails(builder, publish, build_request, events, make_repository):
    repository = make_repository({"README": "no Dockerfile here\n"})
    request = build_request(repository)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert "no Dockerfile at the root of the repository" in finished.error
    assert finished.commit is not None
    assert any("no Dockerfile" in line for line in events.log(request.deployment_id))


async def test_a_dockerfile_that_does_not_build_fails_with_dockers_error(builder, publish, build_request,
                                                                         app_files, events, make_repository):
    repository = make_repository(app_files("FROM scratch\nCOPY missing.txt /\n"))
    request = build_request(repository)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert "missing.txt" in finished.error
    log = events.log(request.deployment_id)
    assert any("COPY missing.txt" in line for line in log)
    assert any(line.startswith("Build failed:") and "missing.txt" in line for line in log)


async def test_a_redelivered_request_does_not_build_twice(builder, publish, build_request, events, make_repository,
                                                          js, region):
    repository = make_repository()
    request = build_request(repository, "FORCE")
    # The same message twice (a redelivery), and a copy under a new message id (a re-sent command).
    copy = request.model_copy(update={"id": uuid4()})

    await publish(request, dedup=False)
    await publish(request, dedup=False)
    await publish(copy)
    finished = await events.finished(request.deployment_id)
    await asyncio.sleep(2)  # time for a second build to show up, if there were one

    assert finished.success
    assert len(events.of(BuildStarted, request.deployment_id)) == 1
    assert len(events.of(BuildFinished, request.deployment_id)) == 1
    assert sum(line.startswith("Step 1/") for line in events.log(request.deployment_id)) == 1
    # Every copy was acknowledged: nothing is left on the work queue.
    info = await js.consumer_info("REGIO_COMMANDS", f"builder-{region}")
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_build_interrupted_by_a_stopped_builder_runs_again(start_builder, build_request, events,
                                                                   make_repository, settings):
    repository = make_repository()
    request = build_request(repository)
    # The state a builder killed mid-build leaves behind: the build recorded and running.
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as session, session.begin():
        build = await builds.record_requested(session, request)
        await builds_table.move(session, build.id, BuildState.RUNNING)
    await engine.dispose()

    async with start_builder():
        finished = await events.finished(request.deployment_id)

    assert finished.success
    assert finished.build_id == build.id
    assert "The builder stopped during this build; it will run again." in events.log(request.deployment_id)


async def test_requests_queued_while_the_builder_is_down_are_built_when_it_starts(start_builder, publish,
                                                                                  build_request, events,
                                                                                  make_repository):
    repository = make_repository()
    async with start_builder():
        pass  # creates the durable consumer, as a builder that ran before
    request = build_request(repository)
    await publish(request)

    async with start_builder():
        finished = await events.finished(request.deployment_id)

    assert finished.success

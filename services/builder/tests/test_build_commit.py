"""A build of one commit of a branch (BuildRequested.commit), as a migration asks the target
region's builder for the commit that serves in the source: exactly that commit is built, a
commit the branch does not contain is refused, and AUTO reuses what was built from it."""
import subprocess
from pathlib import Path
from uuid import uuid4

import pytest

from regio_builder.build import git as builder_git
from regio_builder.domain.errors import CommitNotOnBranch, InvalidCommit
from regio_common.messages import BuildStarted

from .conftest import Repository, git
from .git_server import GitHttpServer

LOCAL = builder_git.SourcePolicy(allow_local=True, allow_private_hosts=True)
TOKEN = "glpat-c0mm1t-t0ken-value"


def _version(name: str) -> dict[str, str]:
    """An application whose image says which version it was built from (a label)."""
    return {"hello.txt": f"hello {name} {uuid4()}\n",
            "Dockerfile": f"FROM scratch\nCOPY hello.txt /\nLABEL regio.test.version={name}\nEXPOSE 8000\n"}


def _label(docker_api, image: str) -> str:
    return docker_api.inspect_image(image)["Config"]["Labels"]["regio.test.version"]


async def test_a_build_of_an_older_commit_builds_that_commit_not_the_head(builder, publish, build_request, events,
                                                                          make_repository, docker_api,
                                                                          application_id):
    repository = make_repository(_version("one"))
    wanted = repository.commit(_version("two"), "two")
    head = repository.commit(_version("three"), "three")
    # The control panel may spell it in capitals; git's spelling is lowercase.
    request = build_request(repository, commit=wanted.upper())

    await publish(request)
    finished = await events.finished(request.deployment_id)

    log = events.log(request.deployment_id)
    assert finished.success, log
    assert finished.commit == wanted != head
    assert _label(docker_api, finished.image) == "two"
    assert f"regio-app/{application_id}:{wanted[:12]}" in docker_api.inspect_image(finished.image)["RepoTags"]
    assert f"Cloning commit {wanted} of branch main of {repository.url}" in log
    assert f"Fetching 100 more commits of branch main to find commit {wanted}" in log
    assert f"Commit {wanted}" in log
    record = (await builder.build_record(request.deployment_id)).json()
    assert (record["requested_commit"], record["commit"]) == (wanted, wanted)


async def test_the_head_of_the_branch_asked_for_by_its_commit_needs_no_more_history(builder, publish, build_request,
                                                                                    events, make_repository):
    repository = make_repository(_version("one"))
    head = repository.commit(_version("two"), "two")
    request = build_request(repository, commit=head)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert finished.success and finished.commit == head
    log = events.log(request.deployment_id)
    assert f"Cloning commit {head} of branch main of {repository.url}" in log
    assert not any(line.startswith("Fetching") for line in log)
    record = (await builder.build_record(request.deployment_id)).json()
    assert record["requested_commit"] == head


async def test_auto_reuses_the_image_of_the_commit_asked_for_and_force_rebuilds_it(builder, publish, build_request,
                                                                                   events, make_repository,
                                                                                   docker_api):
    repository = make_repository(_version("one"))
    first = build_request(repository)  # the head, as an ordinary deployment builds it
    await publish(first)
    built = await events.finished(first.deployment_id)
    assert built.success and not built.reused
    repository.commit(_version("two"), "two")  # the branch moves on

    again = build_request(repository, "AUTO", commit=built.commit)
    await publish(again)
    reused = await events.finished(again.deployment_id)
    assert reused.success and reused.reused, events.log(again.deployment_id)
    assert (reused.image, reused.commit, reused.exposed_port) == (built.image, built.commit, 8000)
    assert f"Reusing image {built.image} already built from commit {built.commit[:12]} (build mode AUTO)" in \
        events.log(again.deployment_id)

    forced = build_request(repository, "FORCE", commit=built.commit)
    await publish(forced)
    rebuilt = await events.finished(forced.deployment_id)
    assert rebuilt.success and not rebuilt.reused
    assert rebuilt.commit == built.commit
    assert _label(docker_api, rebuilt.image) == "one"
    assert any(line.startswith("Step 1/") for line in events.log(forced.deployment_id))


async def test_another_applications_image_of_the_same_commit_is_not_reused(builder, publish, build_request, events,
                                                                           make_repository, docker_api):
    repository = make_repository(_version("one"))
    first = build_request(repository)
    await publish(first)
    built = await events.finished(first.deployment_id)
    assert built.success
    repository.commit(_version("two"), "two")  # the branch moves on

    other_application = uuid4()
    request = build_request(repository, "AUTO", commit=built.commit).model_copy(
        update={"application_id": other_application})
    try:
        await publish(request)
        finished = await events.finished(request.deployment_id)
        assert finished.success and not finished.reused
        assert finished.commit == built.commit  # (the same image id may come out of Docker's layer cache)
        assert _label(docker_api, finished.image) == "one"
        assert any(line.startswith("Step 1/") for line in events.log(request.deployment_id))
    finally:
        for image in docker_api.images(name=f"regio-app/{other_application}"):
            docker_api.remove_image(image["Id"], force=True)


def _commit_of_another_branch(repository: Repository) -> str:
    git(repository.path, "checkout", "-q", "-b", "unreviewed")
    commit = repository.commit(_version("unreviewed"), "not on main")
    git(repository.path, "checkout", "-q", "main")
    return commit


@pytest.mark.parametrize("which", ["another branch's", "an unknown"])
async def test_a_commit_the_branch_does_not_contain_fails_the_build(builder, publish, build_request, events,
                                                                    make_repository, which):
    repository = make_repository(_version("one"))
    repository.commit(_version("two"), "two")
    commit = _commit_of_another_branch(repository) if which == "another branch's" else uuid4().hex + "0" * 8
    request = build_request(repository, commit=commit)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert finished.image is None
    assert finished.error == f"branch main does not contain commit {commit}"
    log = events.log(request.deployment_id)
    assert f"Build failed: branch main does not contain commit {commit}" in log
    assert not any(line.startswith("Step 1/") for line in log)
    record = (await builder.build_record(request.deployment_id)).json()
    assert record["state"] == "failed"


@pytest.mark.parametrize("commit", ["", "abc1234", "main", "HEAD~1", "--upload-pack=touch /tmp/regio-pwned",
                                    "g" * 40, "a" * 39, "a" * 41, "a" * 40 + "\n", "a" * 100_000])
async def test_a_commit_that_is_not_a_commit_id_fails_without_running(builder, publish, build_request, events,
                                                                      make_repository, commit):
    repository = make_repository()
    request = build_request(repository, commit=commit)

    await publish(request)
    finished = await events.finished(request.deployment_id)

    assert not finished.success
    assert finished.error.startswith("the commit to build must be a full commit id (40 or 64 hexadecimal digits), "
                                     "not ")
    assert len(finished.error) < 200  # whatever the size of what was asked for
    assert f"Build failed: {finished.error}" in events.log(request.deployment_id)
    # Not cloned, nor the branch's head built in its place.
    assert finished.commit is None
    assert events.of(BuildStarted, request.deployment_id) == []
    record = (await builder.build_record(request.deployment_id)).json()
    assert (record["state"], record["requested_commit"]) == ("failed", None)


# --- git alone (no Docker): the history fetched, other transports, other object formats ---


async def _clone(url: str, into: Path, commit: str, access: builder_git.Access | None = None) -> tuple[str, list[str]]:
    lines: list[str] = []
    cloned = await builder_git.clone(url, "main", into, 30, lines.append, policy=LOCAL, access=access,
                                     known_hosts=into.parent / "known_hosts", commit=commit)
    return cloned, lines


async def test_a_commit_deeper_than_the_first_fetch_is_found_in_the_whole_history(make_repository, tmp_path):
    repository = make_repository(_version("one"))
    wanted = git(repository.path, "rev-parse", "HEAD")
    for n in range(builder_git.FIRST_DEEPEN + 20):
        git(repository.path, "commit", "-q", "--allow-empty", "-m", f"later {n}")

    cloned, lines = await _clone(repository.url, tmp_path / "src", wanted)

    assert cloned == wanted
    assert "regio.test.version=one" in (tmp_path / "src" / "Dockerfile").read_text()
    assert f"Fetching 100 more commits of branch main to find commit {wanted}" in lines
    assert f"Fetching the whole history of branch main to find commit {wanted}" in lines


async def test_a_commit_of_another_branch_is_not_found_even_in_the_whole_history(make_repository, tmp_path):
    repository = make_repository(_version("one"))
    other = _commit_of_another_branch(repository)
    for n in range(builder_git.FIRST_DEEPEN + 20):
        git(repository.path, "commit", "-q", "--allow-empty", "-m", f"later {n}")

    with pytest.raises(CommitNotOnBranch, match=f"^branch main does not contain commit {other}$"):
        await _clone(repository.url, tmp_path / "src", other)


async def test_a_private_repository_gets_its_credentials_for_the_history_too(make_repository, tmp_path):
    repository = make_repository(_version("one"))
    wanted = git(repository.path, "rev-parse", "HEAD")
    repository.commit(_version("two"), "two")
    with GitHttpServer(repository.path.parent, credentials=("deploy", TOKEN)) as server:
        url = f"http://127.0.0.1:{server.port}/{repository.path.name}"
        cloned, lines = await _clone(url, tmp_path / "src", wanted, builder_git.Access("deploy", TOKEN))

    assert cloned == wanted
    assert sum(line.startswith("Fetching") for line in lines) == 1  # the fetch got in, as the clone did
    assert not [line for line in lines if TOKEN in line]
    # The credentials file is gone once git is done.
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN in p.read_text(errors="ignore")]


async def test_a_repository_of_sha256_commits(make_repository, tmp_path):
    path = tmp_path / "sha256"
    path.mkdir()
    try:
        git(path, "init", "-q", "-b", "main", "--object-format=sha256")
    except subprocess.CalledProcessError:
        pytest.skip("this git does not make SHA-256 repositories")
    repository = Repository(path)
    wanted = repository.commit(_version("one"), "one")
    repository.commit(_version("two"), "two")
    assert len(wanted) == 64

    cloned, _lines = await _clone(repository.url, tmp_path / "src", wanted)

    assert cloned == wanted
    assert "regio.test.version=one" in (tmp_path / "src" / "Dockerfile").read_text()


def test_only_a_full_commit_id_is_accepted():
    assert builder_git.commit_id("A" * 40) == "a" * 40
    assert builder_git.commit_id("0" * 64) == "0" * 64
    with pytest.raises(InvalidCommit) as refused:
        builder_git.commit_id("x" * 10_000)
    assert refused.value.reason.endswith("'" + "x" * 80 + "…'")

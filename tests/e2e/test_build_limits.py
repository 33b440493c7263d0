"""A build that takes more memory than the region lets a build step have fails, saying so in the
deployment's log, and the release already deployed keeps serving."""
from regio_builder.settings import Settings
from tests.e2e.test_walking_skeleton import create_application, deploy, get_page, log_of

MEMORY_MB = Settings.model_fields["build_memory_mb"].default  # what `regio up` leaves the builder


def test_a_build_over_its_memory_limit_fails_and_the_running_release_keeps_serving(region, git_repo):
    repo = git_repo("hello")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        env_id = app["test_status"]["uuid"]
        host = f"{app['slug']}-stage.{region.domain}"
        first = deploy(client, env_id)
        assert first["success"], log_of(client, first)

        # A string 256 MB larger than a build step may have, every byte of it written. (Not dd's
        # one big block: a read() stops at 2 GiB - 4 KiB, just under the default limit.)
        dockerfile = repo.path / "Dockerfile"
        hog_step = f"RUN python3 -c \"b'x' * ({MEMORY_MB + 256} * 1024 * 1024)\""
        dockerfile.write_text(dockerfile.read_text().replace("COPY app.py", f"{hog_step}\nCOPY app.py"))
        repo.commit("a build step that takes too much memory")
        hog = deploy(client, env_id)
        log = log_of(client, hog)
        page = get_page(region, host)

    assert hog["success"] is False
    assert f"ran out of memory (a build step may use at most {MEMORY_MB} MB)" in log
    assert page.status_code == 200

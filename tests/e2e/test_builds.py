"""Builds as a user sees them in the deployment log: promoting test's commit to live
reuses its image (build mode AUTO), FORCE builds again, and no environment variable
reaches the build."""
from tests.e2e.test_walking_skeleton import create_application, deploy, get_page, log_of


def test_live_reuses_the_image_built_for_test_unless_forced(region, git_repo):
    repo = git_repo("hello")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        tested = deploy(client, app["test_status"]["uuid"])
        assert tested["success"], log_of(client, tested)
        promoted = deploy(client, app["live_status"]["uuid"])
        assert promoted["success"], log_of(client, promoted)
        log = log_of(client, promoted)
        assert "Reusing image" in log
        assert "already built from commit" in log and promoted["commit"] == tested["commit"]
        forced = deploy(client, app["live_status"]["uuid"], build_mode="FORCE")
        assert forced["success"] and "Reusing image" not in log_of(client, forced)
    assert get_page(region, f"{app['slug']}.{region.domain}").status_code == 200


def test_no_environment_variable_reaches_the_build(region, git_repo):
    repo = git_repo("hello")
    dockerfile = repo.path / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "COPY app.py", 'RUN test -z "$GREETING$SECRET_KEY$DOMAIN" && echo "the build sees no variables"\nCOPY app.py'))
    repo.commit("check the build's environment")
    with region.client() as client:
        app = create_application(client, region, repo.url)
        env_id = app["test_status"]["uuid"]
        client.post("/apps/v3/environment-variables/", json={"environment": env_id, "name": "GREETING", "value": "hi"})
        deployment = deploy(client, env_id)
        log = log_of(client, deployment)
    assert deployment["success"], log
    assert "the build sees no variables" in log

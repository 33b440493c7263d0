"""Two regions on this machine under one control panel: the first region `regio up` starts,
and a second one dedicated to an organisation (`regio region add … --dedicated-to`), with a
data plane of its own. Each serves its applications through its own ingress at its own
domain; the other organisation can neither see nor use the dedicated one; a region whose
controller or NATS link is down holds up nothing in the other, and its queued work finishes
when it comes back."""
import os
import shutil
import signal
import time
import uuid

import httpx
import pytest

from tests.conftest import APPS, GitRepo, regio
from tests.divio_cli.test_official_client import divio_with
from tests.e2e.test_runners import running_containers
from tests.e2e.test_walking_skeleton import create_application, deploy, log_of, wait_for_deployment

STATUS_SECONDS = 5  # the services' heartbeat interval (ServiceSettings.status_seconds)


def region_state(client: httpx.Client, region_id: str) -> dict:
    response = client.get(f"/apps/v3/regions/{region_id}/")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_state(client: httpx.Client, region_id: str, state: str, timeout: float = 6 * STATUS_SECONDS) -> dict:
    deadline = time.monotonic() + timeout
    while (found := region_state(client, region_id))["state"] != state:
        assert time.monotonic() < deadline, f"region still {found['state']}, not {state}, after {timeout}s: {found}"
        time.sleep(1)
    return found


def kill(second_region, process: str) -> None:
    os.kill(int((second_region.state_dir / "run" / f"{process}.pid").read_text()), signal.SIGKILL)


def plan_group_allowing(client: httpx.Client, region_id: str) -> str:
    """A plan group that may put applications in the region (the free one may not: it is not
    marked for the free plan)."""
    groups = client.get("/billing/v3/application-plan-groups/").json()["results"]
    return next(g["uuid"] for g in groups if region_id in g["regions"])


@pytest.fixture(scope="module")
def hello_repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("regions") / "hello"
    shutil.copytree(APPS / "hello", work)
    repo = GitRepo(work)
    repo.git("init", "-q", "-b", "main")
    repo.commit("first version")
    return repo


@pytest.fixture(scope="module")
def one_in_each(region, second_region, hello_repo):
    """An application deployed in each region: the first region's by the admin's organisation,
    the dedicated region's by its own organisation."""
    with region.client() as client:
        first = create_application(client, region, hello_repo.url)
        deployed = deploy(client, first["test_status"]["uuid"])
        assert deployed["success"], log_of(client, deployed)
    with second_region.owner.client() as client:
        repo = client.post("/apps/v3/repositories/", json={"organisation": second_region.owner.organisation,
                                                           "url": hello_repo.url})
        assert repo.status_code == 201, repo.text
        created = client.post("/apps/v3/applications/", json={
            "name": "Dedicated hello", "slug": f"dedicated-{uuid.uuid4().hex[:6]}",
            "organisation": second_region.owner.organisation, "region": second_region.uuid,
            "plan_group": plan_group_allowing(client, second_region.uuid),
            "repository": repo.json()["uuid"], "branch": "main"})
        assert created.status_code == 201, created.text
        second = created.json()
        second_region.applications.append(second["uuid"])
        deployed = deploy(client, second["test_status"]["uuid"])
        assert deployed["success"], log_of(client, deployed)
    return first, second


def test_each_region_serves_its_applications_through_its_own_ingress(region, second_region, one_in_each):
    first, second = one_in_each
    first_host = f"{first['slug']}-stage.{region.domain}"
    second_host = f"{second['slug']}-stage.{second_region.domain}"
    assert second_region.domain != region.domain and second_region.ingress_url != region.ingress_url

    assert httpx.get(region.ingress_url, headers={"Host": first_host}, timeout=10).status_code == 200
    served = httpx.get(second_region.ingress_url, headers={"Host": second_host}, timeout=10)
    assert served.status_code == 200 and "hello from regio" in served.text
    # Neither ingress knows the other region's hosts.
    assert httpx.get(region.ingress_url, headers={"Host": second_host}, timeout=10).status_code != 200
    assert httpx.get(second_region.ingress_url, headers={"Host": first_host}, timeout=10).status_code != 200
    # The API shows the site where it is served.
    assert second["test_status"]["site_url"].startswith(f"http://{second_host}:{second_region.ingress_url.rsplit(':', 1)[1]}")


def test_a_dedicated_regions_instances_run_only_on_its_own_runners(region, second_region, one_in_each):
    first, second = one_in_each
    theirs = running_containers(second["test_status"]["uuid"])
    ours = running_containers(first["test_status"]["uuid"])
    assert theirs and ours
    # Runner agents of each region label what they start with their region's scope, and put it
    # on their region's own applications network.
    their_scopes = {c["Labels"]["regio.scope"] for c in theirs}
    our_scopes = {c["Labels"]["regio.scope"] for c in ours}
    assert len(their_scopes) == 1 and their_scopes.pop().endswith(f"-{second_region.slug}")
    assert not any(scope.endswith(f"-{second_region.slug}") for scope in our_scopes)
    assert all(set(c["NetworkSettings"]["Networks"]) == {f"regio-apps-{second_region.slug}"} for c in theirs)
    assert all(f"regio-apps-{second_region.slug}" not in c["NetworkSettings"]["Networks"] for c in ours)


def test_another_organisation_can_neither_see_nor_use_a_dedicated_region(region, second_region, hello_repo):
    with region.client() as client:  # the admin: a member of the default organisation, not of the dedicated one
        listed = [r["uuid"] for r in client.get("/apps/v3/regions/").json()["results"]]
        assert region.region in listed and second_region.uuid not in listed
        assert client.get(f"/apps/v3/regions/{second_region.uuid}/").status_code == 404
        for group in client.get("/billing/v3/application-plan-groups/").json()["results"]:
            assert second_region.uuid not in group["regions"]
        repo = client.post("/apps/v3/repositories/", json={"organisation": region.organisation, "url": hello_repo.url})
        refused = client.post("/apps/v3/applications/", json={
            "name": "Trespasser", "slug": f"trespass-{uuid.uuid4().hex[:6]}", "organisation": region.organisation,
            "region": second_region.uuid, "repository": repo.json()["uuid"], "branch": "main"})
        assert refused.status_code == 400 and "region" in refused.text, refused.text
    with second_region.owner.client() as client:  # its owner sees both, with where and what they are
        listed = {r["uuid"]: r for r in client.get("/apps/v3/regions/").json()["results"]}
        assert {region.region, second_region.uuid} <= set(listed)
        dedicated = listed[second_region.uuid]
        assert dedicated["is_dedicated"] and dedicated["vendor"] == "self-hosted"
        assert dedicated["location"] == "this machine"


def test_a_region_with_its_controller_down_stops_nothing_elsewhere_and_finishes_its_queue_on_return(
        region, second_region, one_in_each, hello_repo):
    first, second = one_in_each
    owner = second_region.owner.client()
    with region.client() as admin, owner:
        assert wait_for_state(owner, second_region.uuid, "online")["runners_ready"] >= 1
        started = time.monotonic()
        before = deploy(admin, first["test_status"]["uuid"])
        usual = time.monotonic() - started
        assert before["success"], log_of(admin, before)

        kill(second_region, "controller")
        try:
            assert wait_for_state(owner, second_region.uuid, "degraded")
            assert wait_for_state(admin, region.region, "online")

            # The first region deploys as usual while the second's controller is down.
            started = time.monotonic()
            during = deploy(admin, first["test_status"]["uuid"])
            took = time.monotonic() - started
            assert during["success"], log_of(admin, during)
            print(f"deployment in the first region: {usual:.1f}s before, {took:.1f}s with the second's controller down")

            # A deployment of the second region waits for its controller...
            (hello_repo.path / "app.py").write_text((hello_repo.path / "app.py").read_text().replace(
                'VERSION = "1"', 'VERSION = "2"'))
            hello_repo.commit("second version")
            queued = owner.post("/apps/v3/deployments/", json={"environment": second["test_status"]["uuid"]})
            assert queued.status_code == 201, queued.text
            time.sleep(3 * STATUS_SECONDS)
            assert owner.get(f"/apps/v3/deployments/{queued.json()['uuid']}/").json()["ended_at"] is None
        finally:
            regio("up")  # starts what is down, the second region's controller with it

        # ...and finishes when it is back, serving the new version.
        finished = wait_for_deployment(owner, queued.json()["uuid"])
        assert finished["success"], log_of(owner, finished)
        host = f"{second['slug']}-stage.{second_region.domain}"
        assert "version 2," in httpx.get(second_region.ingress_url, headers={"Host": host}, timeout=10).text


def test_a_region_cut_off_from_the_control_panel_is_offline_and_keeps_serving(region, second_region, one_in_each):
    first, second = one_in_each
    host = f"{second['slug']}-stage.{second_region.domain}"
    with region.client() as admin, second_region.owner.client() as owner:
        kill(second_region, "nats")  # its NATS, the leaf node that links it to the control panel
        try:
            assert wait_for_state(owner, second_region.uuid, "offline")
            # Its routes and instances are its own: it goes on serving.
            assert httpx.get(second_region.ingress_url, headers={"Host": host}, timeout=10).status_code == 200
            during = deploy(admin, first["test_status"]["uuid"])
            assert during["success"], log_of(admin, during)
        finally:
            regio("up")
        assert wait_for_state(owner, second_region.uuid, "online")
        again = deploy(owner, second["test_status"]["uuid"])
        assert again["success"], log_of(owner, again)


def test_lists_both_regions_then_creates_and_deploys_an_application_in_the_second(
        second_region, region, tmp_path_factory):
    pytest.importorskip("divio_cli")
    """As the owner of the organisation a second region is dedicated to: `divio regions list`
    shows both regions, and `divio app create -r <second>` makes an application there, which
    deploys and is served by the second region's ingress."""
    owner = second_region.owner
    divio = divio_with(owner.token, owner.api_url, tmp_path_factory.mktemp("divio-owner"))
    with owner.client() as client:
        names = {r["uuid"]: r["name"] for r in client.get("/apps/v3/regions/").json()["results"]}
        group = plan_group_allowing(client, second_region.uuid)
    listed = divio("regions", "list").stdout
    assert names[region.region] in listed and names[second_region.uuid] in listed

    slug = f"divio-{uuid.uuid4().hex[:6]}"
    divio("app", "create", "--non-interactive", "-n", "Made by divio", "-s", slug, "-o", owner.organisation,
          "-p", group, "-r", second_region.uuid)
    with owner.client() as client:
        [app] = [a for a in client.get("/apps/v3/applications/").json()["results"] if a["slug"] == slug]
        second_region.applications.append(app["uuid"])
        assert app["region"] == second_region.uuid and app["plan_group"] == group
        # On the plan group's first plan from its creation: what its invoice will bill.
        [subscription] = client.get("/billing/v3/subscriptions/", params={"application": app["uuid"]}).json()["results"]
        first_plan = client.get(f"/billing/v3/application-plan-groups/{group}/").json()["plans"][0]
        assert (subscription["plan"], subscription["ended_at"]) == (first_plan["uuid"], None)

        work = tmp_path_factory.mktemp("divio-repo") / "hello"
        shutil.copytree(APPS / "hello", work)
        repo = GitRepo(work)
        repo.git("init", "-q", "-b", "main")
        repo.commit("first version")
        made = client.post("/apps/v3/repositories/", json={"organisation": owner.organisation, "url": repo.url})
        assert made.status_code == 201, made.text
        linked = client.patch(f"/apps/v3/applications/{app['uuid']}/", json={"repository": made.json()["uuid"]})
        assert linked.status_code == 200, linked.text

    assert "Deploying test environment" in divio("app", "deploy", "test", "--remote-id", app["uuid"]).stdout
    host = f"{slug}-stage.{second_region.domain}"
    served = httpx.get(second_region.ingress_url, headers={"Host": host}, timeout=10)
    assert served.status_code == 200 and "hello from regio" in served.text


def test_the_operator_marks_the_free_plans_regions(region, hello_repo):
    """`regio region set NAME --no-free` takes a region away from the free plan group (and from
    applications on no plan): its new applications there are refused, naming `region`."""
    with region.client() as client:
        developer = next(g for g in client.get("/billing/v3/application-plan-groups/").json()["results"]
                         if g["name"] == "Developer")
        assert region.region in developer["regions"]
        repo = client.post("/apps/v3/repositories/", json={"organisation": region.organisation,
                                                           "url": hello_repo.url}).json()
        regio("region", "set", "local", "--no-free")
        try:
            developer = client.get(f"/billing/v3/application-plan-groups/{developer['uuid']}/").json()
            assert region.region not in developer["regions"]
            refused = client.post("/apps/v3/applications/", json={
                "name": "Free", "slug": f"free-{uuid.uuid4().hex[:6]}", "organisation": region.organisation,
                "region": region.region, "plan_group": developer["uuid"], "repository": repo["uuid"]})
            assert refused.status_code == 400 and "Developer plan" in refused.json()["region"][0], refused.text
        finally:
            regio("region", "set", "local", "--free")
        assert region.region in client.get(f"/billing/v3/application-plan-groups/{developer['uuid']}/").json()["regions"]

"""Fixtures for tests that cross services: a whole running region.

A region already up in the checkout's state directory is reused; otherwise one is
started here exactly as `regio up` starts it, and stopped at the end."""
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from regio_cli import prerequisites
from regio_cli.region import CHECKOUT, Region
from regio_common.layout import Layout, default_state_dir
from regio_common.testing.dns import Zone, dns_server
from tests.tenants import Tenant, new_tenant

APPS = Path(__file__).parent / "apps"


@dataclass
class RunningRegion:
    api_url: str
    token: str
    ingress_url: str
    domain: str
    organisation: str
    region: str
    applications: list[str] = field(default_factory=list)  # made by tests, deleted at the end

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Token {self.token}"}, timeout=30)

    def delete_applications(self) -> None:
        """Deleting an application stops its containers and routes: the region is left as found."""
        with self.client() as client:
            while self.applications:
                response = client.delete(f"/apps/v3/applications/{self.applications.pop()}/")
                assert response.status_code in (204, 404), response.text


_shared_regions: list[RunningRegion] = []  # the session's `region`, once a test asked for it


@pytest.fixture(autouse=True, scope="module")
def _applications_deleted_after_each_module():
    """A module's applications are deleted when it ends, not with the session: until then the
    runners hold their instances, and a later module needs the room (the lost-runner test
    moves every instance of one runner onto the other)."""
    yield
    for region in [*_shared_regions, *_second_regions]:
        region.delete_applications()


@pytest.fixture(scope="session")
def region() -> RunningRegion:
    state = default_state_dir(CHECKOUT)
    layout = Layout.load(state) or Layout(state_dir=state)
    reg = Region(layout, say=lambda m: print(f"regio: {m}"))
    started_here = not all(state == "running" for _, state, _, _ in reg.status())
    if started_here:
        prerequisites.ensure(layout.state_dir, print)
        prerequisites.build_base_images(CHECKOUT, print)
        reg.up()
    env = dict(line.removeprefix("export ").split("=", 1) for line in reg.env_lines())
    with httpx.Client(base_url=env["REGIO_API_URL"], headers={"Authorization": f"Token {env['REGIO_TOKEN']}"}) as c:
        # The one `regio up` seeded: tests (and the fuzzer) make others with their own traits.
        org = c.get("/iam/v3/organisations/", params={"name": "Default organisation"}).json()["results"][0]["uuid"]
        region_id = c.get("/apps/v3/regions/").json()["results"][0]["uuid"]
    running = RunningRegion(env["REGIO_API_URL"], env["REGIO_TOKEN"], env["REGIO_INGRESS_URL"],
                            env["REGIO_REGION_DOMAIN"], org, region_id)
    _shared_regions.append(running)
    yield running
    _shared_regions.remove(running)
    running.delete_applications()
    if started_here:
        reg.down()


@pytest.fixture(scope="session")
def challenge_dns(region):
    """The DNS that custom domains' owners publish their TXT challenges in: a server of the
    session's own on loopback, which the region's resolver points at while the session runs
    (`regio region set`), put back as it was at the end."""
    layout = Layout.load(default_state_dir(CHECKOUT))
    reg = Region(layout, say=lambda m: print(f"regio: {m}"))
    with dns_server() as zone:
        before = reg.configure(layout.region, dns_resolver=zone.address)
        try:
            yield zone
        finally:
            reg.configure(layout.region, dns_resolver=before["dns_resolver"] or "")


SECOND_REGION = "e2e-dedicated"  # its data plane's state: .regio/regions/e2e-dedicated/
REGIO = str(CHECKOUT / "regio")


@dataclass
class SecondRegion:
    slug: str
    uuid: str
    ingress_url: str
    domain: str
    state_dir: Path
    owner: Tenant  # the organisation it is dedicated to
    applications: list[str] = field(default_factory=list)  # its owner's, deleted after each module

    def delete_applications(self) -> None:
        with self.owner.client() as client:
            while self.applications:
                response = client.delete(f"/apps/v3/applications/{self.applications.pop()}/")
                assert response.status_code in (204, 404), response.text


def regio(*args: str, timeout: float = 600) -> str:
    result = subprocess.run([REGIO, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"regio {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def second_region(region) -> SecondRegion:
    """A second region on this machine, dedicated to an organisation of its own, started by the
    operator's CLI for the module that needs it (it costs CPU the others would feel) and removed
    at its end. Its data plane is its own: builder, controller, runner agent, ingress with its
    own ports and domain, NATS (a leaf of the control panel's), database server and storage."""
    layout = Layout.load(default_state_dir(CHECKOUT))
    owner = new_tenant(Region(layout, say=lambda m: print(f"regio: {m}")), "Dedicated")
    regio("region", "add", SECOND_REGION, "--name", "E2E dedicated", "--domain", f"{SECOND_REGION}.regio.localhost",
          "--vendor", "self-hosted", "--location", "this machine", "--dedicated-to", owner.organisation,
          "--runners", "1")
    env = dict(line.removeprefix("export ").split("=", 1)
               for line in regio("env", "--region", SECOND_REGION).splitlines() if line.startswith("export "))
    with owner.client() as client:
        listed = client.get("/apps/v3/regions/").json()["results"]
    second = SecondRegion(SECOND_REGION, next(r["uuid"] for r in listed if r["slug"] == SECOND_REGION),
                          env["REGIO_INGRESS_URL"], env["REGIO_REGION_DOMAIN"],
                          layout.state_dir / "regions" / SECOND_REGION, owner)
    _second_regions.append(second)
    yield second
    _second_regions.remove(second)
    second.delete_applications()
    # `down --region` stops its data plane alone; `region remove` deletes it and retires it.
    regio("down", "--region", SECOND_REGION)
    assert not any((second.state_dir / "run").glob("*.pid")), "its processes outlived `down --region`"
    regio("status")  # exits non-zero if anything of the first region stopped
    regio("region", "remove", SECOND_REGION)
    assert not second.state_dir.exists()
    listed = [line.split() for line in regio("region", "list").splitlines()[1:]]
    assert [row[4] for row in listed if row[0] == SECOND_REGION] == ["yes"], listed  # RETIRED
    with owner.client() as client:
        assert client.get(f"/apps/v3/regions/{second.uuid}/").status_code == 404


_second_regions: list[SecondRegion] = []


def add_verified_domain(client: httpx.Client, dns: Zone, env_id: str, domain: str, kind: str) -> dict:
    """A custom domain added as its owner adds one: added (pending), its challenge published, checked."""
    added = client.post("/apps/v3/domains/", json={"environment": env_id, "domain": domain, "kind": kind})
    assert added.status_code == 201, added.text
    challenge = added.json()["verification"]
    dns.publish(challenge["record_name"], challenge["record_value"])
    verified = client.post(f"/apps/v3/domains/{added.json()['uuid']}/verify/")
    assert verified.status_code == 200 and verified.json()["verification"]["status"] == "verified", verified.text
    return verified.json()


@pytest.fixture
def git_repo(tmp_path):
    """Factory: a local git repository holding a copy of a sample app, served as file://."""

    def make(app: str, branch: str = "main") -> "GitRepo":
        work = tmp_path / f"{app}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(APPS / app, work)
        repo = GitRepo(work)
        repo.git("init", "-q", "-b", branch)
        repo.commit("first version")
        return repo

    return make


class GitRepo:
    def __init__(self, path: Path):
        self.path = path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True,
                              env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test",
                                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test",
                                   "HOME": str(self.path.parent), "PATH": "/usr/bin:/bin"}).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-qm", message)

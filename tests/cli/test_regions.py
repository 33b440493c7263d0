"""`regio region add|remove`, `--region`: a further region's data plane as the CLI makes it,
without starting it (its servers and services are the e2e tests' to run)."""
import json

import pytest
from typer.testing import CliRunner

from regio_cli.extra_region import ExtraRegion, RegionError, Registration, new_region
from regio_cli.main import app
from regio_cli.region import Region
from regio_common import nats_auth, sealing
from regio_common.layout import Layout


@pytest.fixture
def first(tmp_path) -> Region:
    return Region(Layout(state_dir=tmp_path / "state"), say=lambda m: None)


@pytest.fixture
def second(first) -> ExtraRegion:
    return new_region(first, "local-2", Registration(name="Local 2", domain="local-2.regio.localhost"), None,
                      say=lambda m: None)


def env_of(region: Region, name: str) -> dict[str, str]:
    service = next(s for s in region.services() if s.name == name)
    return region.service_env(service)


def test_a_further_regions_services_have_their_own_database_nats_token_and_ports(first, second):
    builder = env_of(second, "builder")
    assert "@127.0.0.1:8732/regio_local_2" in builder["REGIO_BUILDER_DATABASE_URL"]  # the first's Postgres
    assert builder["REGIO_BUILDER_DATABASE_URL"].startswith("postgresql+asyncpg://regio_local_2_builder:")
    assert builder["REGIO_BUILDER_NATS_URL"] == "nats://127.0.0.1:8822"  # its own server, the leaf
    assert builder["REGIO_BUILDER_REGION"] == "local-2"
    assert builder["REGIO_BUILDER_SERVICE_TOKEN"] != env_of(first, "builder")["REGIO_BUILDER_SERVICE_TOKEN"]
    assert env_of(second, "ingress")["REGIO_INGRESS_CONTROLLER_URL"] == "http://127.0.0.1:8802"
    assert json.loads(env_of(second, "controller")["REGIO_CONTROLLER_INGRESS_URLS"]) == ["http://127.0.0.1:8803"]
    runner = env_of(second, "runner-agent-1")
    assert runner["REGIO_RUNNER_SCOPE"] == f"{first.secrets['installation']}-local-2"
    assert runner["REGIO_RUNNER_NETWORK"] == "regio-apps-local-2"
    assert [s.name for s in second.services()] == ["builder", "controller", "ingress", "runner-agent-1"]
    assert "postgres" not in [p.name for p in second.servers()]  # `down --region` never stops the platform's


def test_a_further_region_holds_keys_derived_for_it_never_the_masters(first, second):
    masters = {first.secrets["region_key"], first.secrets["build_key"], first.secrets["controlpanel_key"]}
    assert env_of(second, "builder")["REGIO_BUILDER_BUILD_KEY"] == sealing.build_key(first.secrets["build_key"],
                                                                                     "local-2")
    assert env_of(second, "runner-agent-1")["REGIO_RUNNER_REGION_KEY"] == sealing.region_key(
        first.secrets["region_key"], "local-2")
    second.write_nats_users()
    for path in second.state_dir.rglob("*"):
        if path.is_file():
            assert not any(master in path.read_text() for master in masters), path
    every_env = [value for s in second.services() for value in second.service_env(s).values()]
    assert not masters & set(every_env)
    # The first region's builder opens credentials with its own derived key too, not the master.
    assert env_of(first, "builder")["REGIO_BUILDER_BUILD_KEY"] == sealing.build_key(first.secrets["build_key"],
                                                                                    "local")


def test_the_hub_lets_in_each_further_regions_link_and_the_leaf_joins_it_as_that_user(first, second):
    hub = json.loads(first.nats_config())
    assert hub["leafnodes"] == {"listen": "127.0.0.1:8723"}
    link = next(u for u in hub["authorization"]["users"] if u["user"] == nats_auth.link_user_name("local-2"))
    leaf = json.loads(second.nats_config())
    assert leaf["jetstream"]["domain"] == "local-2"
    assert leaf["leafnodes"]["remotes"][0]["url"].endswith(f":{link['password']}@127.0.0.1:8723")
    assert "-sd" not in second.nats.argv  # its store is in its configuration


def test_a_region_is_recorded_once_and_keeps_its_ports_and_secrets(first, second):
    again = new_region(first, "local-2", Registration(name="Local two", domain="local-2.regio.localhost"), 2,
                       say=lambda m: None)
    assert again.layout.ports == second.layout.ports and again.secrets == second.secrets
    assert again.layout.runners == 2 and again.registration().name == "Local two"
    assert Layout.load(first.state_dir).extra_regions == {"local-2": 1}


runner = CliRunner()


@pytest.mark.parametrize("args, told", [
    (["status", "--region", "nowhere"], "no region 'nowhere'"),
    (["logs", "builder", "--region", "nowhere"], "no region 'nowhere'"),
    (["down", "--region", "local"], "holds the platform"),
    (["region", "remove", "local"], "cannot be removed"),
    (["region", "add", "Bad_Slug", "--name", "x", "--domain", "x.test", "--vendor", "aws", "--location", "y"],
     "region slug 'Bad_Slug'"),
    (["region", "add", "eu-1", "--name", "x", "--domain", "x.test", "--vendor", "hetzner", "--location", "y"],
     "vendor 'hetzner'"),
    (["region", "add", "eu-1", "--name", "x", "--domain", "x.test", "--vendor", "aws", "--location", "y",
      "--dedicated-to", "acme"], "not an organisation's uuid"),
    (["region", "add", "eu-1", "--name", "x" * 101, "--domain", "x.test", "--vendor", "aws", "--location", "y"],
     "--name must have 1 to 100"),
])
def test_bad_input_is_told_and_exits_2(tmp_path, args, told):
    result = runner.invoke(app, [*args, "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    assert told in result.output
    assert "eu-1" not in (Layout.load(tmp_path / "state") or Layout(state_dir=tmp_path)).extra_regions


def test_the_launcher_starts_only_the_regions_services_and_only_for_its_owner(tmp_path):
    """Its socket takes an environment (secrets) and starts a process: only its owner may
    connect, and it starts nothing but the four services' packages."""
    import os
    import socket
    import stat

    from regio_cli.launcher import launcher_process, socket_path
    from regio_cli.region import CHECKOUT

    launcher = launcher_process(tmp_path, CHECKOUT)
    launcher.start()
    try:
        launcher.wait_listening(60)
        assert stat.S_IMODE(os.stat(socket_path(tmp_path)).st_mode) == 0o600
        for package in ("os", "regio_controlpanel", "regio_cli.launcher", None):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(socket_path(tmp_path)))
                s.sendall(json.dumps({"package": package, "env": {}, "log": str(tmp_path / "x.log"),
                                      "cwd": str(tmp_path)}).encode() + b"\n")
                reply = json.loads(s.makefile("rb").readline())
            assert "pid" not in reply and "not a service it starts" in reply["error"]
        assert not (tmp_path / "x.log").exists()
    finally:
        launcher.stop()


def test_a_dedicated_regions_runners_are_labelled_with_its_organisation(first, second):
    """The controller places a dedicated region's instances only on runners with its
    organisation's label: without it, nothing of the region's owner can run."""
    owner = "6c8b4d28-761a-41c4-b00f-33c7e8513ed2"
    assert "REGIO_RUNNER_LABELS" not in env_of(second, "runner-agent-1")  # public
    dedicated = new_region(first, "dedicated", Registration(name="D", domain="d.regio.localhost",
                                                            dedicated_to=owner), None, say=lambda m: None)
    assert json.loads(env_of(dedicated, "runner-agent-1")["REGIO_RUNNER_LABELS"]) == {"organisation": owner}


def test_a_further_regions_env_holds_no_secret_of_the_control_panels(first, second):
    """A region's state may be handed to whoever runs its machines: `regio env --region` gives
    its addresses, never the admin's token or password file."""
    (first.state_dir / "secrets").mkdir(parents=True, exist_ok=True)
    (first.state_dir / "secrets" / "admin-token").write_text("regio_admin-token-of-the-control-panel\n")
    assert any("regio_admin-token" in line for line in first.env_lines())
    lines = second.env_lines()
    assert not any("regio_admin-token" in line or "ADMIN_PASSWORD" in line for line in lines)
    assert "export REGIO_REGION_DOMAIN=local-2.regio.localhost" in lines


def test_an_installation_sealing_every_region_with_one_key_gets_no_further_region(first):
    first.secrets["per_region_sealing"] = False
    with pytest.raises(RegionError, match="one key"):
        new_region(first, "local-3", Registration(name="Local 3", domain="local-3.regio.localhost"), None,
                   say=lambda m: None)
    assert "local-3" not in first.layout.extra_regions

"""On the region's own apps and builds networks, with the firewall `regio up` puts in force: an
application reaches its database cluster and object storage on the gateway, and the internet;
not the cloud's instance metadata, the host's private networks, the host itself, nor the
storage's ports that are not its S3 API. A build step reaches the internet alone."""
import json
import secrets
from uuid import uuid4

import docker
import pytest

from regio_cli import apps_network
from regio_cli.region import CHECKOUT
from regio_common.layout import Layout, default_state_dir
from regio_common.runners import DesiredJob
from regio_common.testing.networks import NEIGHBOUR_PORT, PROBE, host_private_address, listening, neighbourhood
from regio_runner.docker_engine import DockerEngine


@pytest.fixture
def application_container():
    """A container on the apps network, started the way a runner agent starts a release's
    one-off command (its confinement, its network), under a runner name no agent has."""
    name = f"egress-test-{secrets.token_hex(4)}"
    engine = DockerEngine(runner=name, address="127.0.0.1", network=apps_network.NAME, scope=name)
    job = DesiredJob(job_id=uuid4(), deployment_id=uuid4(), environment_id=uuid4(), release_id=uuid4(),
                     label="probe", image="regio/python:3.11", command="sleep 120", sealed_env="", memory_mb=64)
    container_id = engine.run_job(job, env={})
    try:
        yield engine.client.containers.get(container_id)
    finally:
        engine.remove(container_id)
        engine.close()


def test_an_application_reaches_its_services_and_the_internet_but_not_the_hosts_networks(region,
                                                                                         application_container):
    ports = Layout.load(default_state_dir(CHECKOUT)).ports
    gateway = apps_network.ensure_gateway()
    a, b = secrets.randbelow(250) + 2, secrets.randbelow(250) + 2
    internet, metadata, private_neighbour = f"198.51.100.{a}", "169.254.169.254", f"10.{a}.{b}.7"
    host_private = f"192.168.{a}.{b}"
    with (neighbourhood([internet, metadata, private_neighbour]),
          host_private_address(host_private) as host_private_port,
          listening(gateway) as not_a_service):
        targets = [(internet, NEIGHBOUR_PORT), (gateway, ports.apps_postgres), (gateway, ports.storage_s3),
                   (metadata, NEIGHBOUR_PORT), (private_neighbour, NEIGHBOUR_PORT), (host_private, host_private_port),
                   (gateway, not_a_service), (gateway, ports.storage_s3 + 10000)]  # the S3 server's gRPC
        code, output = application_container.exec_run(["python3", "-c", PROBE, json.dumps(targets)])
    assert code == 0, output
    assert json.loads(output) == {
        f"{internet}:{NEIGHBOUR_PORT}": True,
        f"{gateway}:{ports.apps_postgres}": True,
        f"{gateway}:{ports.storage_s3}": True,
        f"{metadata}:{NEIGHBOUR_PORT}": False,
        f"{private_neighbour}:{NEIGHBOUR_PORT}": False,
        f"{host_private}:{host_private_port}": False,
        f"{gateway}:{not_a_service}": False,
        f"{gateway}:{ports.storage_s3 + 10000}": False,
    }


def test_a_build_step_reaches_the_internet_but_not_the_hosts_networks_nor_the_apps_services(region):
    """The builder runs RUN steps on the builds network: a container there, as the Engine's
    classic builder starts one."""
    ports = Layout.load(default_state_dir(CHECKOUT)).ports
    services = apps_network.ensure_gateway()
    engine = docker.from_env()
    step = engine.containers.run("regio/python:3.11", ["sleep", "120"], detach=True,
                                 network=apps_network.BUILDS_NAME, labels={"regio.test": "builds-egress"})
    try:
        a, b = secrets.randbelow(250) + 2, secrets.randbelow(250) + 2
        internet, metadata, private_neighbour = f"198.51.100.{a}", "169.254.169.254", f"10.{a}.{b}.7"
        with neighbourhood([internet, metadata, private_neighbour]):
            targets = [(internet, NEIGHBOUR_PORT), (metadata, NEIGHBOUR_PORT), (private_neighbour, NEIGHBOUR_PORT),
                       (services, ports.apps_postgres), (services, ports.storage_s3)]
            code, output = step.exec_run(["python3", "-c", PROBE, json.dumps(targets)])
    finally:
        step.remove(force=True)
        engine.close()
    assert code == 0, output
    assert json.loads(output) == {
        f"{internet}:{NEIGHBOUR_PORT}": True,
        f"{metadata}:{NEIGHBOUR_PORT}": False,
        f"{private_neighbour}:{NEIGHBOUR_PORT}": False,
        f"{services}:{ports.apps_postgres}": False,  # a build has no business with the apps' databases
        f"{services}:{ports.storage_s3}": False,
    }

"""A build's steps run the repository's code on a network of their own, whose firewall lets them
fetch from the internet but keeps them off the cloud's instance metadata, the host's private
networks and the host itself."""
import secrets

import pytest

from regio_common import egress
from regio_common.testing.networks import NEIGHBOUR_PORT, host_private_address, neighbourhood


@pytest.fixture
def builds_network(docker_api):
    """A network of the test's own, with the firewall `regio up` puts on the region's builds network."""
    network = docker_api.create_network(f"regio-test-builds-{secrets.token_hex(4)}", driver="bridge",
                                        options={"com.docker.network.bridge.enable_icc": "false"})
    attrs = docker_api.inspect_network(network["Id"])
    policy = egress.EgressPolicy(bridge=egress.bridge_of(attrs), gateway=attrs["IPAM"]["Config"][0]["Gateway"],
                                 service_ports=(), resolvers=egress.host_resolvers())
    egress.apply(policy)
    try:
        yield attrs["Name"]
    finally:
        egress.remove(policy)
        docker_api.remove_network(network["Id"])


async def test_a_build_step_fetches_from_the_internet_but_reaches_nothing_of_the_hosts_networks(
        start_builder, publish, build_request, app_files, events, make_repository, base_image, builds_network):
    a, b = secrets.randbelow(250) + 2, secrets.randbelow(250) + 2
    internet, metadata, private_neighbour = f"198.51.100.{a}", "169.254.169.254", f"10.{a}.{b}.7"
    host_private = f"192.168.{a}.{b}"
    with neighbourhood([internet, metadata, private_neighbour]), host_private_address(host_private) as host_port:
        targets = [f"{internet}/{NEIGHBOUR_PORT}", f"{metadata}/{NEIGHBOUR_PORT}",
                   f"{private_neighbour}/{NEIGHBOUR_PORT}", f"{host_private}/{host_port}"]
        # bash's /dev/tcp: the base image has no curl. Each target is tried and the answer printed.
        probe = "; ".join(f"(timeout 5 bash -c 'echo > /dev/tcp/{target}' 2>/dev/null && echo 'reached {target}' "
                          f"|| echo 'refused {target}')" for target in targets)
        repository = make_repository(app_files(f'FROM {base_image}\nRUN bash -c "{probe}"\n'))
        request = build_request(repository, "FORCE")
        async with start_builder(build_network=builds_network):
            await publish(request)
            finished = await events.finished(request.deployment_id)

    assert finished.success, events.log(request.deployment_id)
    answers = [line for line in events.log(request.deployment_id) if line.startswith(("reached ", "refused "))]
    assert answers == [f"reached {internet}/{NEIGHBOUR_PORT}", f"refused {metadata}/{NEIGHBOUR_PORT}",
                       f"refused {private_neighbour}/{NEIGHBOUR_PORT}", f"refused {host_private}/{host_port}"]

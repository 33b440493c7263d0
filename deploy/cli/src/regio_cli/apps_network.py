"""The Docker network the applications' containers join, and the address on it where the
region's services (its application database cluster and object storage) wait for them.

The runner agents create the same network on first use; `regio up` creates it before the
services start, because they listen on its gateway address. Platform servers listen on
127.0.0.1 only, which the gateway does not forward to: containers reach the services and
nothing else of the host's platform."""
import docker
from docker.errors import APIError, DockerException

from regio_common import egress

NAME = "regio-apps"
# Where builds' RUN steps run: behind the same firewall, with no service on its gateway.
BUILDS_NAME = "regio-builds"
ROLES = {NAME: "apps", BUILDS_NAME: "builds"}  # a further region's apps network: "apps"
ICC_OPTION = "com.docker.network.bridge.enable_icc"  # off: containers cannot talk to each other


def ensure_gateway(name: str = NAME) -> str:
    """The network's gateway address (created with the network when missing)."""
    client = docker.from_env()
    try:
        network = next((n for n in client.networks.list(names=[name]) if n.name == name), None)
        if network is None:
            try:
                network = client.networks.create(name, driver="bridge", labels={"regio.network": ROLES.get(name, "apps")},
                                                 options={ICC_OPTION: "false"})
            except APIError as e:
                if e.status_code != 409:  # a runner agent made it a moment ago
                    raise
                network = next(n for n in client.networks.list(names=[name]) if n.name == name)
        network.reload()
        return network.attrs["IPAM"]["Config"][0]["Gateway"]
    finally:
        client.close()


def bridge(name: str = NAME) -> str:
    """The network's interface on the host, which its firewall rules match."""
    client = docker.from_env()
    try:
        return egress.bridge_of(client.networks.get(name).attrs)
    finally:
        client.close()


def region_network(region: str) -> str:
    """The apps network of a further region on this machine: its containers apart from the first's."""
    return f"{NAME}-{region}"


def gateway_or_none(name: str = NAME) -> str | None:
    """The gateway if the network exists and the engine answers (for status and down)."""
    try:
        client = docker.from_env()
    except DockerException:
        return None
    try:
        network = next((n for n in client.networks.list(names=[name]) if n.name == name), None)
        return network.attrs["IPAM"]["Config"][0]["Gateway"] if network else None
    except (DockerException, KeyError, IndexError):
        return None
    finally:
        client.close()

"""What an application's container may do on its runner, against the real Docker Engine: the
plan's limits, no privileges beyond what a web application needs to start, no way to the
Docker Engine, and no way to the platform's services or to its neighbours."""
import json
import socket
from contextlib import contextmanager

from regio_runner.docker_engine import CAPABILITIES, PIDS_LIMIT

from .test_agent import _running

# Linux capability numbers (linux/capability.h) of what an instance keeps.
CAPABILITY_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7,
                   "NET_BIND_SERVICE": 10}
PLATFORM_PORTS = (8700, 8701, 8702, 8703, 8710, 8719, 8722, 8732, 8780)

# Run inside the instance's container: which of the given (host, port) accept a connection.
# The first target is the instance's own application, which the runner reports running as
# soon as its process starts, before it listens: it is waited for, then every target tried.
PROBE = """
import json, socket, sys, time
targets = json.loads(sys.argv[1])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        socket.create_connection(tuple(targets[0]), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
reached = {}
for host, port in targets:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        reached[f"{host}:{port}"] = True
    except OSError:
        reached[f"{host}:{port}"] = False
    finally:
        s.close()
print(json.dumps(reached))
"""

# Needs CAP_NET_ADMIN: take the container's loopback interface down (SIOCSIFFLAGS).
NET_ADMIN = """
import fcntl, socket, struct
fcntl.ioctl(socket.socket(), 0x8914, struct.pack("16sH14x", b"lo", 0))
"""
# Needs CAP_NET_RAW: a raw socket, to forge packets to the neighbours.
NET_RAW = "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)"


@contextmanager
def host_listener():
    """A listener of the test's own on the host's 127.0.0.1, where the platform's services listen."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def status_of(container, pid: str = "1") -> dict[str, str]:
    code, output = container.exec_run(["cat", f"/proc/{pid}/status"])
    assert code == 0, output
    return dict(line.split(":\t", 1) for line in output.decode().splitlines() if ":\t" in line)


def fails(container, *command: str) -> bool:
    code, _ = container.exec_run(list(command))
    return code != 0


async def test_an_instance_runs_with_its_limits_and_without_privileges(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    instance = region.instance(app_image)
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        container = docker_client.containers.get(seen.container_id)

        host_config = container.attrs["HostConfig"]
        assert host_config["Memory"] == 64 * 1024 * 1024
        assert host_config["NanoCpus"] == 250_000_000
        assert host_config["PidsLimit"] == PIDS_LIMIT
        assert host_config["Privileged"] is False
        assert host_config["CapDrop"] == ["ALL"]
        assert sorted(host_config["CapAdd"]) == sorted(CAPABILITIES)
        assert "no-new-privileges:true" in host_config["SecurityOpt"]

        # The application's process has only the capabilities given back, and can gain none.
        status = status_of(container)
        expected = sum(1 << CAPABILITY_BITS[name] for name in CAPABILITIES)
        assert int(status["CapEff"], 16) == expected
        assert int(status["CapBnd"], 16) == expected
        assert status["NoNewPrivs"] == "1"
        assert fails(container, "mount", "-t", "tmpfs", "none", "/mnt")  # CAP_SYS_ADMIN
        assert fails(container, "python3", "-c", NET_ADMIN)
        assert fails(container, "python3", "-c", NET_RAW)
        # The check itself works: what the container may do, it does.
        assert not fails(container, "chown", "nobody", "/tmp")

        # Nothing of the host is mounted: no Docker socket.
        assert not host_config.get("Binds") and container.attrs["Mounts"] == []
        assert fails(container, "test", "-e", "/var/run/docker.sock")
        assert fails(container, "test", "-e", "/run/docker.sock")


async def test_an_instance_reaches_neither_the_platforms_services_nor_its_neighbours(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    instance, neighbour = region.instance(app_image), region.instance(app_image)
    with host_listener() as listener_port:
        # The listener does take connections on the host.
        socket.create_connection(("127.0.0.1", listener_port), timeout=5).close()
        async with start_agent(runner_name) as agent:
            await region.put_desired(runner_name, 1, [instance, neighbour])
            seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
            other = await eventually(lambda: _running(region, runner_name, neighbour.instance_id))
            container = docker_client.containers.get(seen.container_id)
            network = container.attrs["NetworkSettings"]["Networks"][agent.settings.network]
            gateway = network["Gateway"]
            neighbour_ip = docker_client.containers.get(other.container_id).attrs[
                "NetworkSettings"]["Networks"][agent.settings.network]["IPAddress"]

            own_port = ("127.0.0.1", 8000)  # the instance's own application: the probe does connect
            targets = [own_port, (gateway, listener_port), *((gateway, port) for port in PLATFORM_PORTS),
                       ("127.0.0.1", listener_port), (neighbour_ip, 8000)]
            code, output = container.exec_run(["python3", "-c", PROBE, json.dumps(targets)])
            assert code == 0, output
            reached = json.loads(output)

    assert reached.pop("127.0.0.1:8000") is True
    assert reached == dict.fromkeys(reached, False)
    assert f"{gateway}:{listener_port}" in reached and f"{neighbour_ip}:8000" in reached

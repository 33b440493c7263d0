"""What a region needs from the host besides the virtualenv: a Docker Engine and mmdebstrap
(and, helpful, the tools the tests and benchmarks drive).

On Debian as root they are installed with apt and dockerd is started when no engine
answers; elsewhere the operator is told exactly what to install."""
import os
import shutil
import subprocess
import time
from pathlib import Path


class MissingPrerequisite(Exception):
    pass


def _is_debian() -> bool:
    return Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def _apt_install(packages: list[str], say) -> None:
    say(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


REQUIRED = (("dockerd", "docker.io"), ("mmdebstrap", "mmdebstrap"), ("git", "git"))
# jq: the README's curl walkthrough; curl and wrk: the ingress's tests and benchmark;
# chromium: the web Control Panel's browser tests (Playwright drives it, downloading no browser).
# docker-compose: the containerised region (docker-compose.yml) and its test.
# ip: the host-loopback test re-routes a container's network with it.
# sshd: the builder's tests clone over SSH with a repository's deploy key.
HELPFUL = (("jq", "jq"), ("curl", "curl"), ("wrk", "wrk"), ("chromium", "chromium"),
           ("docker-compose", "docker-compose"), ("ip", "iproute2"), ("sshd", "openssh-server"))


def ensure(state_dir: Path, say) -> None:
    root = os.geteuid() == 0
    missing = [pkg for cmd, pkg in REQUIRED if shutil.which(cmd) is None]
    if root and _is_debian():
        wanted = missing + [pkg for cmd, pkg in HELPFUL if shutil.which(cmd) is None]
        if wanted:
            _apt_install(wanted, say)
    elif missing and not (missing == ["docker.io"] and docker_answers()):
        raise MissingPrerequisite(
            f"missing: {', '.join(missing)}. Install them (Debian/Ubuntu: sudo apt-get install {' '.join(missing)})"
            " and run `regio up` again.")
    if not docker_answers():
        if not root:
            raise MissingPrerequisite(
                "no Docker Engine answers: start dockerd (or set DOCKER_HOST) and run `regio up` again")
        _start_dockerd(state_dir, say)
    if root:
        guard_loopback()


# Without the userland proxy the engine publishes ports on 127.0.0.1 by NAT, and for that lets
# its bridges route 127.0.0.0/8 (route_localnet). A packet a container addressed to 127.0.0.1
# would then reach the host's loopback services: the region's Postgres, NATS and APIs. Only
# replies and the engine's own NAT may arrive there from another interface (the rule
# Kubernetes adds for CVE-2020-8558). Containers lack the capabilities to forge such packets;
# this is the second wall.
LOOPBACK_GUARD = ["INPUT", "-d", "127.0.0.0/8", "!", "-i", "lo", "-m", "conntrack",
                  "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"]


def guard_loopback() -> None:
    if subprocess.run(["iptables", "-C", *LOOPBACK_GUARD], capture_output=True).returncode != 0:
        subprocess.run(["iptables", "-I", *LOOPBACK_GUARD], check=True, capture_output=True)


def _start_dockerd(state_dir: Path, say) -> None:
    say("starting dockerd")
    log = state_dir / "logs" / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # Published ports by the kernel's NAT, not the userland proxy: that proxy copied every
        # byte of every request through one more process (35-90 µs of CPU per small request,
        # bench/ingress.py), and accepted connections for an app not yet listening only to
        # close them, which a proxy in front must treat as a failed request, not a refused dial.
        subprocess.Popen(["dockerd", "--userland-proxy=false"], stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(0.5)
    raise MissingPrerequisite(f"dockerd did not start within 60 s; see {log}")


def base_images_present() -> bool:
    return all(subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0
               for tag in ("regio/debian:bookworm", "regio/python:3.11"))


def build_base_images(checkout: Path, say, force: bool = False) -> None:
    if not force and base_images_present():
        return
    say("building base images (mmdebstrap + docker import, about a minute)")
    subprocess.run([str(checkout / "deploy" / "base-images" / "build.sh"), *(["--force"] if force else [])],
                   check=True)

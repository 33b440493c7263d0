"""The process limit on the region's builds: a cgroup the builder places build steps under
(regio_common.cgroups), limited to REGIO_BUILDER_BUILD_PIDS_LIMIT processes."""
import os

import docker
from docker.errors import DockerException

from regio_common import cgroups

PARENT = "/regio-builds"
PIDS_SETTING = "REGIO_BUILDER_BUILD_PIDS_LIMIT"
DEFAULT_PIDS = 1024  # as for an application's instance


def pids_limit() -> int:
    value = os.environ.get(PIDS_SETTING, str(DEFAULT_PIDS))
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise RuntimeError(f"{PIDS_SETTING}: {value!r} is not a whole number of processes above 0")
    return limit


def engine_cgroup_driver() -> str | None:
    try:
        client = docker.from_env()
    except DockerException:
        return None
    try:
        return client.info().get("CgroupDriver")
    finally:
        client.close()


def prepare(say) -> str | None:
    """The cgroup parent for the builder, limited; None where it cannot be (not root, or an
    Engine whose cgroup parents are systemd slices), and the operator is told."""
    limit = pids_limit()
    if os.geteuid() != 0:
        say("not root: builds run without a process limit")
        return None
    driver = engine_cgroup_driver()
    if driver != "cgroupfs":
        say(f"the Docker Engine's cgroup driver is {driver}, not cgroupfs: builds run without a process limit")
        return None
    try:
        cgroups.limit_pids(PARENT, limit)
    except OSError as e:
        say(f"builds run without a process limit: {e}")
        return None
    return PARENT

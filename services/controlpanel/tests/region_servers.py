"""The real servers a region runs applications' data on, started for a test module: an
application database cluster (a PostgreSQL of its own, never the platform's) and
SeaweedFS's S3 gateway, one of each per test module that asks (conftest.py offers them).
"""
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from regio_common.processes import ManagedProcess
from regio_common.servers import (
    PostgresCluster,
    seaweedfs_admin_credentials,
    seaweedfs_process,
    wait_seaweedfs_ready,
)
from regio_common.testing.plugin import free_port, own_postgres
from regio_controlpanel.region_services.storage import Credentials


@pytest.fixture(scope="module")
def apps_cluster() -> Iterator[PostgresCluster]:
    with own_postgres("apps-postgres-test") as cluster:
        yield cluster


@dataclass
class Storage:
    state_dir: Path
    process: ManagedProcess
    s3_port: int
    master_port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def admin_credentials(self) -> Credentials:
        return Credentials(*seaweedfs_admin_credentials(self.state_dir))


@contextmanager
def running_storage(state: Path) -> Iterator[Storage]:
    ports: list[int] = []
    while len(ports) < 8:  # S3, master, volume, filer, then their gRPC ports
        port = free_port()
        if port not in ports:
            ports.append(port)
    s3, master, volume, filer = ports[:4]
    process = seaweedfs_process(state, s3, master, volume, filer, master_grpc_port=ports[5],
                                volume_grpc_port=ports[6], filer_grpc_port=ports[7], s3_grpc_port=ports[4])
    process.start()
    try:
        wait_seaweedfs_ready(s3, master, process=process)
        yield Storage(state, process, s3, master)
    finally:
        # Its data is thrown away: no need to wait the ~15 s the filer gives its gRPC streams,
        # but then the Unix sockets SeaweedFS keeps in /tmp are left for us to remove.
        process.stop(timeout=1)
        for port in ports:
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Iterator[Storage]:
    with running_storage(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="module")
def other_storage(tmp_path_factory) -> Iterator[Storage]:
    """A second SeaweedFS, another region's (copies between regions)."""
    with running_storage(tmp_path_factory.mktemp("seaweedfs-other")) as server:
        yield server

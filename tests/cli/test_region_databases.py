"""A further region's services keep their schemas in a database of their own on the first
region's PostgreSQL, as roles of their own: neither region's roles get into the other's."""
import os
import subprocess

import pytest

from regio_cli import database
from regio_common.servers import client_command
from regio_common.testing import plugin

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another account")


@pytest.fixture(scope="module")
def cluster():
    with plugin.own_postgres("postgres") as cluster:
        yield cluster


def connects(cluster, role: str, password: str, dbname: str) -> subprocess.CompletedProcess:
    argv, env = client_command("psql", "127.0.0.1", cluster.port, role, password, f"--dbname={dbname}",
                               "--tuples-only", "--command=SELECT current_schema()")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def test_each_regions_roles_reach_only_their_own_database(cluster):
    first = {"builder": "first-secret-1", "controller": "first-secret-2"}
    second = {"builder": "second-secret-1", "controller": "second-secret-2"}
    database.provision(cluster, first)
    region_db = database.region_database("local-2")
    database.provision(cluster, second, region_db, region_db + "_")
    assert region_db == "regio_local_2"

    ours = connects(cluster, "regio_local_2_builder", second["builder"], region_db)
    assert ours.returncode == 0 and ours.stdout.strip() == "builder", ours.stderr
    # The first region's builder cannot connect to the second's database, nor the second's to the first's.
    into_second = connects(cluster, "regio_builder", first["builder"], region_db)
    assert into_second.returncode != 0 and "permission denied" in into_second.stderr
    into_first = connects(cluster, "regio_local_2_builder", second["builder"], database.DATABASE)
    assert into_first.returncode != 0 and "permission denied" in into_first.stderr
    # Provisioning again changes nothing (every `regio up` does it).
    database.provision(cluster, second, region_db, region_db + "_")
    assert connects(cluster, "regio_local_2_controller", second["controller"], region_db).returncode == 0

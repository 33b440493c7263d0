"""The platform database: one database, one schema and one role per service.

A service's role owns its schema and nothing else, so a service cannot read
another's tables even by mistake. A further region on the same machine has a database
of its own on the same server (``region_database``), with roles of its own."""
from regio_common.scram import scram_verifier
from regio_common.servers import PostgresCluster

DATABASE = "regio"
ROLE_PREFIX = "regio_"


def region_database(region: str) -> str:
    """A further region's database (and its roles' prefix, with ``_``): its slug's ``-`` become ``_``."""
    return f"regio_{region.replace('-', '_')}"


def _psql(cluster: PostgresCluster, sql: str, database: str = "postgres") -> str:
    return cluster.psql(sql, database).stdout.strip()


def role_name(schema: str, prefix: str = ROLE_PREFIX) -> str:
    return f"{prefix}{schema}"


def provision(cluster: PostgresCluster, passwords: dict[str, str], database: str = DATABASE,
              role_prefix: str = ROLE_PREFIX) -> None:
    """``database`` with a schema and a role (``role_prefix`` + schema) per entry of ``passwords``;
    no other role may connect to it."""
    if not _psql(cluster, f"SELECT 1 FROM pg_database WHERE datname = '{database}'"):
        _psql(cluster, f'CREATE DATABASE "{database}"')
    statements = [
        f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC',
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
    ]
    for schema, password in passwords.items():
        role = role_name(schema, role_prefix)
        statements += [
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {role} LOGIN; END IF; END $$",
            # The verifier, not the password: a failed statement is written to the server's log.
            f"ALTER ROLE {role} WITH LOGIN PASSWORD '{scram_verifier(password)}'",
            f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
            f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION {role}',
            f'ALTER ROLE {role} SET search_path = "{schema}"',
        ]
    _psql(cluster, "; ".join(statements), database)


def service_url(cluster: PostgresCluster, schema: str, password: str, database: str = DATABASE,
                role_prefix: str = ROLE_PREFIX) -> str:
    return cluster.url(database, user=role_name(schema, role_prefix), password=password, driver="postgresql+asyncpg")

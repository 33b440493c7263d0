"""The platform database: one database, one schema and one role per service.

A service's role owns its schema and nothing else, so a service cannot read
another's tables even by mistake."""
from regio_common.scram import scram_verifier
from regio_common.servers import PostgresCluster

DATABASE = "regio"


def _psql(cluster: PostgresCluster, sql: str, database: str = "postgres") -> str:
    return cluster.psql(sql, database).stdout.strip()


def role_name(schema: str) -> str:
    return f"regio_{schema}"


def provision(cluster: PostgresCluster, passwords: dict[str, str]) -> None:
    if not _psql(cluster, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"):
        _psql(cluster, f'CREATE DATABASE "{DATABASE}"')
    statements = [
        f'REVOKE ALL ON DATABASE "{DATABASE}" FROM PUBLIC',
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
    ]
    for schema, password in passwords.items():
        role = role_name(schema)
        statements += [
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {role} LOGIN; END IF; END $$",
            # The verifier, not the password: a failed statement is written to the server's log.
            f"ALTER ROLE {role} WITH LOGIN PASSWORD '{scram_verifier(password)}'",
            f'GRANT CONNECT ON DATABASE "{DATABASE}" TO {role}',
            f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION {role}',
            f'ALTER ROLE {role} SET search_path = "{schema}"',
        ]
    _psql(cluster, "; ".join(statements), DATABASE)


def service_url(cluster: PostgresCluster, schema: str, password: str) -> str:
    return cluster.url(DATABASE, user=role_name(schema), password=password, driver="postgresql+asyncpg")

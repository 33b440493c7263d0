"""The hand-written migrations create exactly the schema the models describe."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from regio_controlpanel.db.models import SCHEMA, metadata

from .conftest import ALEMBIC_INI


async def test_migrations_match_the_models(migrated_database):
    engine = create_async_engine(migrated_database(ALEMBIC_INI, "REGIO_CONTROLPANEL_"))

    def differences(connection):
        context = MigrationContext.configure(connection, opts={
            "include_schemas": True,
            "version_table_schema": SCHEMA,
            "include_name": lambda name, type_, parents: type_ != "schema" or name == SCHEMA,
        })
        return compare_metadata(context, metadata)

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()

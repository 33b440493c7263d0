"""The hand-written migration creates exactly the schema the models describe."""
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from regio_builder.db.models import SCHEMA, metadata

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"


async def test_migration_matches_the_models(migrated_database):
    engine = create_async_engine(migrated_database(ALEMBIC_INI, "REGIO_BUILDER_"))

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

"""Alembic environment shared by every service: one history per schema, the version
table inside that schema, and only that schema's objects compared."""
import asyncio

from alembic import context
from sqlalchemy import MetaData, pool, text
from sqlalchemy.ext.asyncio import create_async_engine


def run(metadata: MetaData, schema: str) -> None:
    config = context.config
    url = config.get_main_option("sqlalchemy.url")

    def include_name(name, type_, parent_names):
        if type_ == "schema":
            return name == schema
        return True

    def do_run(connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=include_name,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def online() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            # The schema exists already (created with the role); be explicit for a bare database.
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.commit()
            await conn.run_sync(do_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table_schema=schema, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(online())

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
            # `regio up` creates the schema with the role that owns it; a bare test database
            # needs it made here. Asking first: CREATE needs a privilege service roles lack.
            exists = await conn.scalar(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema})
            if not exists:
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.commit()  # else alembic runs inside this transaction and nothing commits it
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table_schema=schema, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(online())

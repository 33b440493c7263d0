"""Fixtures of the libs' own tests: a schema of messaging tables of a test's own, and the
session's NATS with the platform's streams."""
import uuid

import pytest
from sqlalchemy import MetaData, text

from regio_common import bus
from regio_common.db import make_engine, make_sessionmaker
from regio_common.runtime import messaging_tables


@pytest.fixture
async def sessions(postgres_cluster):
    schema = f"t_{uuid.uuid4().hex[:8]}"
    metadata = MetaData(schema=schema)
    outbox, inbox = messaging_tables(metadata)
    engine = make_engine(postgres_cluster.url(driver="postgresql+asyncpg"))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield make_sessionmaker(engine), outbox, inbox
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture
async def js(nats_url):
    nc = await bus.connect(nats_url, "test-libs")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    yield js
    await nc.close()

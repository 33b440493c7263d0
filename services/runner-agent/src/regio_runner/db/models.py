"""The runner schema: the containers this agent manages on its host, and its outbox and inbox."""
from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime, Integer, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from regio_common.runtime import messaging_tables

SCHEMA = "runner"

metadata = MetaData(schema=SCHEMA)


class Base(DeclarativeBase):
    metadata = metadata


class ManagedContainer(Base):
    """One instance's container as the agent last observed it. Restart counts live here
    so that a restarted agent keeps counting where it left off."""

    __tablename__ = "containers"

    instance_id: Mapped[UUID] = mapped_column(primary_key=True)
    container_id: Mapped[str] = mapped_column(String(64))
    environment_id: Mapped[UUID]
    release_id: Mapped[UUID]
    state: Mapped[str] = mapped_column(String(16))
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


outbox, inbox = messaging_tables(metadata)

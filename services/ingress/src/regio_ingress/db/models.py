"""The ingress schema: the route table Caddy is configured from, the configs loaded
into Caddy, the traffic counted per environment and metering period, and the messaging tables."""
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from regio_common.runtime import messaging_tables

SCHEMA = "ingress"

metadata = MetaData(schema=SCHEMA)

routes = Table(
    "routes",
    metadata,
    Column("environment_id", Uuid, primary_key=True),
    Column("hosts", JSONB, nullable=False),  # lowercased host names
    Column("upstreams", JSONB, nullable=False),  # [{instance_id, address}]; empty answers 503
    Column("revision", Integer, nullable=False),
    Column("redirect_hosts", JSONB, nullable=False, server_default="[]"),  # answer 301 to hosts[0]
    Column("https_redirect", Boolean, nullable=False, server_default="false"),
    # Requests wait (Caddy's dial retries against the hold address) instead of going to `upstreams`.
    Column("held", Boolean, nullable=False, server_default="false"),
    # The revision Caddy last accepted and RoutesApplied announced; behind `revision` while a load is pending.
    Column("applied_revision", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()),
)

applied_configs = Table(
    "applied_configs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("config_hash", String(64), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What Caddy served each environment in one metering period (metering/): added to every few
# seconds while the period runs, and sent once (TrafficMetered) after it has ended.
traffic_counts = Table(
    "traffic_counts",
    metadata,
    Column("environment_id", Uuid, primary_key=True),
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("bytes_served", BigInteger, nullable=False),  # response bodies' bytes
    # When its TrafficMetered went into the outbox; nothing is added to it afterwards.
    Column("sent_at", DateTime(timezone=True)),
    Index("ix_traffic_counts_unsent", "period_start", postgresql_where="sent_at IS NULL"),
)

outbox, inbox = messaging_tables(metadata)

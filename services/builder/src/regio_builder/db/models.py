"""The builder schema: one row per deployment's build, with its log and image, the
deployments cancelled, and the messaging tables."""
from sqlalchemy import (
                        Boolean,
                        Column,
                        DateTime,
                        Index,
                        Integer,
                        MetaData,
                        String,
                        Table,
                        Text,
                        Uuid,
                        false,
                        func,
                        text,
)

from regio_common.runtime import messaging_tables

SCHEMA = "builder"

metadata = MetaData(schema=SCHEMA)

builds = Table(
    "builds",
    metadata,
    Column("id", Uuid, primary_key=True),
    # One build per deployment: a redelivered BuildRequested finds its row and does nothing.
    Column("deployment_id", Uuid, nullable=False, unique=True),
    Column("application_id", Uuid, nullable=False),
    Column("repository_url", Text, nullable=False),
    Column("branch", String(255), nullable=False),
    # Sealed with the build key; cleared when the build ends.
    Column("repository_access_sealed", Text),
    Column("build_mode", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # domain.states.BuildState
    # The commit of the branch the request asked for (None: the branch's head), a full commit id.
    Column("requested_commit", String(64)),
    Column("commit", String(64)),
    Column("image", String(255)),  # image id, sha256:…
    Column("image_tag", String(255)),  # regio-app/<application>:<commit[:12]>
    Column("exposed_port", Integer),
    Column("reused", Boolean, nullable=False, server_default=false()),
    Column("error", Text),
    Column("log", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # The worker takes the oldest queued build.
    Index("ix_builds_queued", "created_at", postgresql_where=text("state = 'queued'")),
    # AUTO looks for an image already built from the same commit.
    Index("ix_builds_reusable", "application_id", "commit", postgresql_where=text("state = 'succeeded'")),
)

# Every deployment the control panel cancelled. A cancel may arrive before the BuildRequested
# it cancels (they travel on different streams): that request finds its deployment here.
cancelled_deployments = Table(
    "cancelled_deployments",
    metadata,
    Column("deployment_id", Uuid, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("cancelled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

outbox, inbox = messaging_tables(metadata)

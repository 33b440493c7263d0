"""Repository credentials encrypted at rest, deploy keys, and which repository sources a
region allows. A repository URL held its token in clear (https://user:token@...), and any
organisation could build file:// paths and private hosts of the builder's machine.

Regions allow neither local repositories nor private hosts unless set; the seed of a local
region (`regio up`) turns both on. The copies of URLs with a secret in them in deployment logs
and audit records always lose the secret (that needs no key). The URLs themselves have it moved
into ``credentials_encrypted`` when the control panel's key is in the environment (as when
`regio up` migrates); without the key they keep it, so that builds still reach the repository,
and the control panel still never shows, logs or sends the secret (services/repositories.py
reads it out of the URL).

Revision ID: 20261207_1100
Revises: 20261207_1000
Create Date: 2026-12-07 11:00:00
"""
import json
import os

import sqlalchemy as sa
from alembic import op

from regio_common import repository_sources
from regio_common.sealing import encrypt_value

revision = "20261207_1100"
down_revision = "20261207_1000"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"


def upgrade() -> None:
    for column in ("allow_local_repositories", "allow_private_repository_hosts"):
        op.add_column("regions", sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.false()),
                      schema=SCHEMA)
    for column in ("credentials_encrypted", "deploy_key", "deploy_key_private_encrypted"):
        op.add_column("repositories", sa.Column(column, sa.Text(), nullable=True), schema=SCHEMA)
    _move_secrets_out_of_urls()


def _move_secrets_out_of_urls() -> None:
    key = os.environ.get("REGIO_CONTROLPANEL_SECRETS_KEY")
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT id, url FROM {SCHEMA}.repositories WHERE url LIKE '%@%'")).all()
    for id_, url in rows:
        try:
            source = repository_sources.parse(url)
        except repository_sources.SourceRefused:
            continue
        if source.credentials is None:
            continue
        # The logs and the audit trail never need the secret: scrubbed with or without the key,
        # else a region migrated by hand (alembic without the key) keeps them there for good.
        _scrub(bind, url, source.url)
        if not key:
            # The secret cannot be sealed, so the URL keeps it: the builder still needs it.
            continue
        username, password = source.credentials
        bind.execute(sa.text(f"UPDATE {SCHEMA}.repositories SET url = :url, credentials_encrypted = :secret "
                             "WHERE id = :id"),
                     {"id": id_, "url": source.url,
                      "secret": encrypt_value(key, json.dumps({"username": username, "password": password}))})


def _scrub(bind, secret_url: str, shown_url: str) -> None:
    """The URL was written as it was into deployment logs ("Deployment queued: branch main of
    ...") and the audit trail ("Repository ... added"): those copies lose the secret too."""
    replaced = {"old": secret_url, "new": shown_url}
    bind.execute(sa.text(f"UPDATE {SCHEMA}.deployment_log_chunks SET text = replace(text, :old, :new) "
                         "WHERE strpos(text, :old) > 0"), replaced)
    bind.execute(sa.text(f"UPDATE {SCHEMA}.audit_events SET summary = replace(summary, :old, :new), "
                         "changes = CAST(replace(CAST(changes AS text), :old, :new) AS json) "
                         "WHERE strpos(summary, :old) > 0 OR strpos(CAST(changes AS text), :old) > 0"), replaced)


def downgrade() -> None:
    for column in ("credentials_encrypted", "deploy_key", "deploy_key_private_encrypted"):
        op.drop_column("repositories", column, schema=SCHEMA)
    for column in ("allow_local_repositories", "allow_private_repository_hosts"):
        op.drop_column("regions", column, schema=SCHEMA)

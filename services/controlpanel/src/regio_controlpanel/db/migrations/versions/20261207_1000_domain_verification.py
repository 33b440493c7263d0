"""Custom domains are routed only once their owner proves control (a DNS TXT record),
and no two environments share a host.

Why: an application ``shop-stage`` was given the host of application ``shop``'s test
environment, and whoever added a domain first took it. Now every host an environment is
given, default or custom, is a row of ``claimed_hosts`` (its primary key is the rule, also
under concurrent requests); a custom domain takes its host when verified, so a name waiting
for verification no longer keeps its owner from adding it. Regions say which resolver
answers the challenges and whether names under their own domain are trusted.

Existing domains are marked verified: they were routed before this change, and taking them
off the air at an upgrade would break sites that worked. Existing hosts are claimed in the
order their environments were made; where two already clashed, the older keeps the claim.
Default hosts are claimed before domains: a domain that is another environment's default
host is marked failed (and said), so that only one environment is routed for it.

Revision ID: 20261207_1000
Revises: 20261129_1100
Create Date: 2026-12-07 10:00:00
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = "20261207_1000"
down_revision = "20261129_1100"
branch_labels = None
depends_on = None

SCHEMA = "controlpanel"
# An environment's default host, as domain/environments.py::default_domain makes it.
DEFAULT_HOST = """CASE e.slug WHEN 'live' THEN a.slug || '.' || r.domain
                              WHEN 'test' THEN a.slug || '-stage.' || r.domain
                              ELSE a.slug || '-' || e.slug || '.' || r.domain END"""
log = logging.getLogger("regio_controlpanel.migrations")


def upgrade() -> None:
    op.add_column("regions", sa.Column("dns_resolver", sa.String(length=64), nullable=True), schema=SCHEMA)
    op.add_column("regions", sa.Column("trust_region_domain", sa.Boolean(), server_default="false", nullable=False),
                  schema=SCHEMA)

    op.add_column("domains", sa.Column("verification_status", sa.String(length=16), server_default="pending",
                                       nullable=False), schema=SCHEMA)
    op.add_column("domains", sa.Column("verification_error", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column("domains", sa.Column("verification_checked_at", sa.DateTime(timezone=True), nullable=True),
                  schema=SCHEMA)
    op.add_column("domains", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.domains SET verification_status = 'verified', verified_at = now()")
    # One name may now wait for verification in several environments; the host is claimed once.
    op.drop_constraint("domains_domain_key", "domains", schema=SCHEMA, type_="unique")
    op.create_unique_constraint(None, "domains", ["environment_id", "domain"], schema=SCHEMA)
    op.create_index(op.f("ix_controlpanel_domains_domain"), "domains", ["domain"], unique=False, schema=SCHEMA)
    # A primary waiting for verification leaves the verified one serving until it takes over.
    op.drop_index("one_primary_domain", table_name="domains", schema=SCHEMA)
    op.create_index("one_primary_domain", "domains", ["environment_id"], unique=True, schema=SCHEMA,
                    postgresql_where=sa.text("kind = 'PRIMARY' AND verification_status = 'verified'"))

    op.create_table(
        "claimed_hosts",
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("domain_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["domain_id"], [f"{SCHEMA}.domains.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["environment_id"], [f"{SCHEMA}.environments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host"),
        sa.UniqueConstraint("domain_id"),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_controlpanel_claimed_hosts_environment_id"), "claimed_hosts", ["environment_id"],
                    unique=False, schema=SCHEMA)
    # The default hosts, the oldest environment's first.
    op.execute(f"""
        INSERT INTO {SCHEMA}.claimed_hosts (host, environment_id, domain_id)
        SELECT {DEFAULT_HOST}, e.id, NULL
        FROM {SCHEMA}.environments e
        JOIN {SCHEMA}.applications a ON a.id = e.application_id
        JOIN {SCHEMA}.regions r ON r.id = a.region_id
        ORDER BY e.created_at, e.id
        ON CONFLICT (host) DO NOTHING
    """)
    op.execute(f"""
        INSERT INTO {SCHEMA}.claimed_hosts (host, environment_id, domain_id)
        SELECT d.domain, d.environment_id, d.id FROM {SCHEMA}.domains d
        ORDER BY d.created_at, d.id
        ON CONFLICT (host) DO NOTHING
    """)
    # Hosts two environments already shared: said, so the operator can settle them.
    for host, environment_id in op.get_bind().execute(sa.text(f"""
        SELECT {DEFAULT_HOST}, e.id FROM {SCHEMA}.environments e
        JOIN {SCHEMA}.applications a ON a.id = e.application_id
        JOIN {SCHEMA}.regions r ON r.id = a.region_id
        WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.claimed_hosts c WHERE c.environment_id = e.id AND c.domain_id IS NULL)
    """)):
        log.warning("environment %s shares its default host %s with an older environment, which keeps it",
                    environment_id, host)
    # A domain whose host another environment already holds (its default host: two domains could
    # not share a name before) is not claimed; left verified, it would stay routed beside it.
    for domain, environment_id, holder in op.get_bind().execute(sa.text(f"""
        UPDATE {SCHEMA}.domains d
        SET verification_status = 'failed', verified_at = NULL,
            verification_error = 'Another environment already serves this domain.'
        FROM {SCHEMA}.claimed_hosts c
        WHERE c.host = d.domain AND c.environment_id <> d.environment_id
        RETURNING d.domain, d.environment_id, c.environment_id
    """)):
        log.warning("environment %s's domain %s is environment %s's default host, which keeps it: marked failed",
                    environment_id, domain, holder)


def downgrade() -> None:
    op.drop_index(op.f("ix_controlpanel_claimed_hosts_environment_id"), table_name="claimed_hosts", schema=SCHEMA)
    op.drop_table("claimed_hosts", schema=SCHEMA)
    # Names that wait in several environments cannot all stay under the old rule: keep the verified.
    op.execute(f"""
        DELETE FROM {SCHEMA}.domains d USING {SCHEMA}.domains o
        WHERE d.domain = o.domain AND d.id <> o.id
          AND (d.verification_status <> 'verified') AND (o.verification_status = 'verified' OR o.created_at < d.created_at)
    """)
    op.execute(f"""
        UPDATE {SCHEMA}.domains SET kind = 'ALIAS'
        WHERE kind = 'PRIMARY' AND verification_status <> 'verified'
    """)
    op.drop_index("one_primary_domain", table_name="domains", schema=SCHEMA)
    op.create_index("one_primary_domain", "domains", ["environment_id"], unique=True, schema=SCHEMA,
                    postgresql_where=sa.text("kind = 'PRIMARY'"))
    op.drop_index(op.f("ix_controlpanel_domains_domain"), table_name="domains", schema=SCHEMA)
    op.drop_constraint("domains_environment_id_domain_key", "domains", schema=SCHEMA, type_="unique")
    op.create_unique_constraint("domains_domain_key", "domains", ["domain"], schema=SCHEMA)
    for column in ("verified_at", "verification_checked_at", "verification_error", "verification_status"):
        op.drop_column("domains", column, schema=SCHEMA)
    op.drop_column("regions", "trust_region_domain", schema=SCHEMA)
    op.drop_column("regions", "dns_resolver", schema=SCHEMA)

"""The control panel's schema: tenants, applications and their deployments."""
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from regio_common.runtime import messaging_tables

SCHEMA = "controlpanel"
metadata = MetaData(schema=SCHEMA)


class Base(DeclarativeBase):
    metadata = metadata


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = _id()
    email: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(150), default="")
    last_name: Mapped[str] = mapped_column(String(150), default="")
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))  # for the web frontend; API callers use tokens
    created_at: Mapped[datetime] = _created()


class Organisation(Base):
    __tablename__ = "organisations"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("organisation_id", "user_id"),)
    id: Mapped[uuid.UUID] = _id()
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))  # owner, admin, member, billing
    created_at: Mapped[datetime] = _created()


class MembershipScope(Base):
    """Narrows a membership to one application (all its environments) or one environment.
    A membership with no scopes covers the whole organisation."""

    __tablename__ = "membership_scopes"
    __table_args__ = (CheckConstraint("(application_id IS NULL) <> (environment_id IS NULL)", name="one_target"),)
    id: Mapped[uuid.UUID] = _id()
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    environment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex; the token is shown once
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PhysicalRegion(Base):
    __tablename__ = "physical_regions"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    vendor: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(200))


class Region(Base):
    """A logical region: public, or dedicated to one organisation."""

    __tablename__ = "regions"
    id: Mapped[uuid.UUID] = _id()
    slug: Mapped[str] = mapped_column(String(63), unique=True)  # used in NATS subjects
    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(253))
    physical_region_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physical_regions.id"))
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisations.id"))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # Off but in a local region: file:// reads the builder host's files, a private host
    # reaches the builder's networks. The builder enforces the same with its own settings.
    allow_local_repositories: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    allow_private_repository_hosts: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Where custom domains' TXT challenges are looked up ("host:port"); null: the system's resolver.
    dns_resolver: Mapped[str | None] = mapped_column(String(64))
    # The operator controls the region's own domain: custom domains under it need no TXT proof.
    trust_region_domain: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Where the region's JetStream lives, as the control panel's NATS reaches it: null, on the
    # control panel's own server (the region `regio up` starts first); else the JetStream domain
    # of the region's own server, a leaf node of the control panel's (see messaging/region_links.py).
    jetstream_domain: Mapped[str | None] = mapped_column(String(63))
    # The port its ingress serves HTTP on, in site URLs; null: 80 (a local region's is a loopback port).
    site_port: Mapped[int | None] = mapped_column(Integer)
    # The free plan group's applications may be put here (Divio's: its default public region).
    free_plan: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Taken out of service by its operator: not listed, not usable, its consumers stopped.
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where other regions' ingresses reach this one's HTTP ("host:port"): a migrated
    # environment's old region forwards its hosts here. Null: not reachable, no migration to it.
    ingress_address: Mapped[str | None] = mapped_column(String(261))


class PlanGroup(Base):
    """Public (organisation_id None: every organisation may use it) or dedicated to one
    organisation, as regions are. Its plans (db/billing.py) hold the limits and prices."""

    __tablename__ = "plan_groups"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    # The free plan group (Divio's Developer): its applications go only to regions marked free_plan.
    is_free: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Repository(Base):
    __tablename__ = "repositories"
    id: Mapped[uuid.UUID] = _id()
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)  # never with a secret in it (services/repositories.py)
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)  # {"username", "password"}, with the Vault
    deploy_key: Mapped[str | None] = mapped_column(Text)  # the public half, OpenSSH format, shown to the user
    deploy_key_private_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class Application(Base):
    __tablename__ = "applications"
    id: Mapped[uuid.UUID] = _id()
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)  # part of every default domain
    region_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("regions.id"))
    repository_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("repositories.id", ondelete="SET NULL"))
    plan_group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plan_groups.id"))
    release_commands: Mapped[list] = mapped_column(JSON, default=list)  # [{"label", "command"}], run in order
    created_at: Mapped[datetime] = _created()


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("application_id", "slug"),)
    id: Mapped[uuid.UUID] = _id()
    application_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(63))
    branch: Mapped[str] = mapped_column(String(255))
    instances: Mapped[int] = mapped_column(Integer, default=1)
    memory_mb: Mapped[int] = mapped_column(Integer, default=512)
    port: Mapped[int | None] = mapped_column(Integer)  # else the image's EXPOSE, else 80
    health_check_path: Mapped[str] = mapped_column(String(255), default="/")
    sanity_timeout_seconds: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    # Plain HTTP on the served domains answers a redirect to HTTPS (at the ingress, at once).
    https_redirect: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    secret_key_encrypted: Mapped[str] = mapped_column(Text)  # SECRET_KEY: per environment, stable
    created_at: Mapped[datetime] = _created()


class EnvironmentVariable(Base):
    __tablename__ = "environment_variables"
    __table_args__ = (UniqueConstraint("environment_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str | None] = mapped_column(Text)  # plain, for variables that are not sensitive
    value_encrypted: Mapped[str | None] = mapped_column(Text)  # for sensitive ones
    is_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()


class Release(Base):
    """Immutable: an image and the full environment it runs with."""

    __tablename__ = "releases"
    id: Mapped[uuid.UUID] = _id()
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    image: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str | None] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    env_encrypted: Mapped[str] = mapped_column(Text)
    env_names: Mapped[list] = mapped_column(JSON)
    sensitive_names: Mapped[list] = mapped_column(JSON, default=list)  # masked when read back
    created_at: Mapped[datetime] = _created()


class Deployment(Base):
    __tablename__ = "deployments"
    id: Mapped[uuid.UUID] = _id()
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    build_mode: Mapped[str] = mapped_column(String(10), default="AUTO")
    status: Mapped[str] = mapped_column(String(32))
    percent: Mapped[int] = mapped_column(Integer, default=0)
    success: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    commit: Mapped[str | None] = mapped_column(String(64))
    release_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("releases.id"))
    # Set when this deployment redeploys (rolls back to) an earlier one's release.
    source_deployment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deployments.id", ondelete="SET NULL"))
    # The region it runs in when that is not the application's: a migration's deployment in
    # the region the application moves to (null: the application's region).
    region_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("regions.id"))
    steps: Mapped[list] = mapped_column(JSON, default=list)  # [{"step", "at"}]: when each step started
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeploymentLogChunk(Base):
    """The deployment log, appended as lines arrive; read back in id order."""

    __tablename__ = "deployment_log_chunks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    deployment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class EnvironmentEvent(Base):
    """What the platform did to or saw of an environment's instances outside a deployment
    (a restart, a lost runner, a replacement, a scale), as the controller reported it.
    The id is the event's message id; the rows go with their environment."""

    __tablename__ = "environment_events"
    __table_args__ = (Index("ix_environment_events_environment", "environment_id", "occurred_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    instance_id: Mapped[uuid.UUID | None]
    reason: Mapped[str] = mapped_column(Text)  # one word: restarted, scaled, replaced, moved, unplaceable, …
    message: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Domain(Base):
    """A custom domain of an environment. Routed only once verified (a DNS TXT record proves its
    owner's control); several environments may ask for one name, only one gets its host (ClaimedHost)."""

    __tablename__ = "domains"
    # One primary served; one waiting for verification takes over when verified.
    __table_args__ = (Index("one_primary_domain", "environment_id", unique=True,
                            postgresql_where=text("kind = 'PRIMARY' AND verification_status = 'verified'")),
                      UniqueConstraint("environment_id", "domain"))
    id: Mapped[uuid.UUID] = _id()
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(253), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # PRIMARY, ALIAS, REDIRECT
    verification_status: Mapped[str] = mapped_column(String(16), default="pending",
                                                     server_default="pending")  # pending, verified, failed
    verification_error: Mapped[str | None] = mapped_column(Text)  # why the last check did not verify it
    verification_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()


class ClaimedHost(Base):
    """Every host an environment is given, default or custom: the primary key is the rule that
    no two environments ever share one, concurrent requests included (services/hosts.py)."""

    __tablename__ = "claimed_hosts"
    host: Mapped[str] = mapped_column(String(253), primary_key=True)
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    # Null for the environment's default host; else the verified custom domain that holds it.
    domain_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = _created()


class Service(Base):
    """A service a region offers (or a dedicated one an organisation owns there)."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("region_id", "identifier"),)
    id: Mapped[uuid.UUID] = _id()
    region_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # DATABASE, STORAGE
    identifier: Mapped[str] = mapped_column(String(100))  # e.g. postgres-18, s3
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[str] = mapped_column(String(32), default="")
    # Where its server is and how to administer it (JSON, encrypted): see services/provisioning.py.
    connection_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class ServiceInstance(Base):
    __tablename__ = "service_instances"
    # DEFAULT database and DEFAULT storage side by side: the prefix is unique per type.
    __table_args__ = (UniqueConstraint("environment_id", "type", "prefix"),)
    id: Mapped[uuid.UUID] = _id()
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id"))
    type: Mapped[str] = mapped_column(String(16))  # the service's, kept here for the uniqueness rule
    prefix: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))  # NEW, PROVISIONING, PROVISIONED, ATTACHED, DETACHED, REMOVED
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)  # filled when provisioned
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Migration(Base):
    """An application moving, with every environment and service, to another region
    (services/migrations.py). Steps as a deployment's: [{"step", "at"}]."""
    __tablename__ = "application_migrations"
    id: Mapped[uuid.UUID] = _id()
    application_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    source_region_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("regions.id"))
    target_region_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("regions.id"))
    status: Mapped[str] = mapped_column(String(32))
    steps: Mapped[list] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(254))  # the caller's email, for the log and audit
    cancel_requested: Mapped[str | None] = mapped_column(Text)  # the reason; honoured before the cut-over
    # The longest time any environment's writes were paused at the cut-over, in milliseconds.
    write_pause_ms: Mapped[int | None] = mapped_column(Integer)
    held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the cut-over's hold asked for
    cut_over_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The source keeps forwarding the old hosts, and keeps its detached data, until then.
    grace_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Only one control panel process works on a migration at once (services/migration_runner.py).
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MigrationLogChunk(Base):
    __tablename__ = "migration_log_chunks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    migration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("application_migrations.id", ondelete="CASCADE"),
                                                    index=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class MigrationEnvironment(Base):
    """One environment's part of a migration: its deployment in the target region and its cut-over."""
    __tablename__ = "migration_environments"
    __table_args__ = (UniqueConstraint("migration_id", "environment_id"),)
    id: Mapped[uuid.UUID] = _id()
    migration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("application_migrations.id", ondelete="CASCADE"),
                                                    index=True)
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    # The release serving in the source when the migration started (null: nothing serves).
    release_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("releases.id", ondelete="SET NULL"))
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deployments.id", ondelete="SET NULL"))
    old_hosts: Mapped[list] = mapped_column(JSON, default=list)  # forwarded by the source, served by the target
    # The last traffic change asked of the source's controller, and what it answered.
    traffic_change_id: Mapped[uuid.UUID | None] = mapped_column()
    traffic_mode: Mapped[str | None] = mapped_column(String(16))
    traffic_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    traffic_error: Mapped[str | None] = mapped_column(Text)
    # When the source's ingress began holding its requests, and began forwarding them.
    held_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    forwarded_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    write_pause_ms: Mapped[int | None] = mapped_column(Integer)


class MigrationServiceCopy(Base):
    """A service instance's database or bucket copied to the target region. At the cut-over
    the instance takes the target's service and credentials; the source's are kept here until
    they are deleted after the grace period."""
    __tablename__ = "migration_service_copies"
    __table_args__ = (UniqueConstraint("migration_id", "service_instance_id"),)
    id: Mapped[uuid.UUID] = _id()
    migration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("application_migrations.id", ondelete="CASCADE"),
                                                    index=True)
    service_instance_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_instances.id", ondelete="CASCADE"))
    source_service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id"))
    target_service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id"))
    target_credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    source_credentials_encrypted: Mapped[str | None] = mapped_column(Text)  # after the swap, until deleted
    state: Mapped[str] = mapped_column(String(16))  # NEW, PROVISIONED, COPYING, SWAPPED, DROPPED
    source_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Backup(Base):
    """A backup of some of an environment's service instances (Divio's fields). Its files are
    in the region's object storage; see services/backups.py."""

    __tablename__ = "backups"
    __table_args__ = (Index("ix_backups_environment", "environment_id", "created_at"),)
    id: Mapped[uuid.UUID] = _id()
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))  # PENDING, WORKING, COMPLETED
    success: Mapped[str | None] = mapped_column(String(16))  # SUCCESS, FAILURE once COMPLETED
    trigger: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str] = mapped_column(Text, default="")
    # As the divio client asks for it; recorded, nothing deletes backups yet.
    scheduled_for_deletion_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ServiceInstanceBackup(Base):
    """One service instance's part of a backup: a pg_dump file, or a copy of a bucket's objects,
    in the backup bucket of ``storage_service``. Its type and prefix are kept so it can be
    restored after the instance is gone, into another environment's of the same kind."""

    __tablename__ = "service_instance_backups"
    id: Mapped[uuid.UUID] = _id()
    backup_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    service_instance_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("service_instances.id", ondelete="SET NULL"))
    storage_service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id"))
    type: Mapped[str] = mapped_column(String(16))  # DATABASE, STORAGE
    prefix: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    success: Mapped[str | None] = mapped_column(String(16))
    size: Mapped[int | None] = mapped_column(BigInteger)  # bytes kept
    error: Mapped[str | None] = mapped_column(Text)  # for a person; never credentials
    created_at: Mapped[datetime] = _created()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BackupRestore(Base):
    """A backup's service-instance backups put back into an environment's instances (its own
    or another's), replacing their data."""

    __tablename__ = "backup_restores"
    id: Mapped[uuid.UUID] = _id()
    backup_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    success: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BackupRestoreItem(Base):
    """One service-instance backup of a restore and the instance it goes into."""

    __tablename__ = "backup_restore_items"
    id: Mapped[uuid.UUID] = _id()
    restore_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backup_restores.id", ondelete="CASCADE"), index=True)
    service_instance_backup_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("service_instance_backups.id", ondelete="CASCADE"))
    service_instance_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("service_instances.id", ondelete="SET NULL"))
    success: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class BackupDownload(Base):
    """A time-limited URL that downloads some of a backup without credentials. The token is
    found by its hash; it is also kept encrypted so the API can show the URL again to those
    who may operate the environment, as Divio's client reads it from a GET."""

    __tablename__ = "backup_downloads"
    id: Mapped[uuid.UUID] = _id()
    backup_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    service_instance_backup_ids: Mapped[list] = mapped_column(JSON)  # in the order asked
    trigger: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    token_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BackupDownloadPart(Base):
    """One service-instance backup of a download link, with an id of its own: what Divio calls a
    backup download service instance, which its client polls for the part's URL."""

    __tablename__ = "backup_download_parts"
    id: Mapped[uuid.UUID] = _id()
    download_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backup_downloads.id", ondelete="CASCADE"), index=True)
    service_instance_backup_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("service_instance_backups.id", ondelete="CASCADE"))


class AuditEvent(Base):
    """Who changed what, when. Kept when the object, the user or the organisation is gone,
    so it holds ids and the actor's email rather than foreign keys."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_organisation", "organisation_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    organisation_id: Mapped[uuid.UUID | None]
    actor_id: Mapped[uuid.UUID | None]
    actor_email: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))  # e.g. application.create
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[uuid.UUID | None]
    summary: Mapped[str] = mapped_column(Text)
    changes: Mapped[dict] = mapped_column(JSON, default=dict)  # field → new value; secrets never
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()


outbox, inbox = messaging_tables(metadata)


class WebSession(Base):
    """A browser signed in to the web Control Panel. Kept server-side (not in a signed cookie)
    so signing out, or an operator deleting a user's rows, ends a session at once."""

    __tablename__ = "web_sessions"
    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the cookie's value
    csrf_token: Mapped[str] = mapped_column(String(64))  # every form of the session carries it
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInFailure(Base):
    """A failed web sign-in, by the email tried: too many in a while and that email is refused
    for a while (web/throttle.py). Kept only as long as they count."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_email", "email", "created_at"),)
    id: Mapped[uuid.UUID] = _id()
    email: Mapped[str] = mapped_column(String(254))  # lowercased, as tried: maybe no user's
    created_at: Mapped[datetime] = _created()

"""Request and response bodies of the public API, with Divio's field names."""
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from regio_common.plans import MEMORY_SIZES_MB


class Input(BaseModel):
    """A request body: a field we do not know is an error naming it, never silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Update(Input):
    """A PATCH body: only the fields sent change. A field that cannot be empty is typed
    without null and defaults to an unvalidated None, so an explicit null is a 400."""

    def sent(self) -> dict:
        return self.model_dump(exclude_unset=True)


Role = Literal["owner", "admin", "member", "billing"]


class Me(BaseModel):
    uuid: UUID
    email: str
    first_name: str
    last_name: str


class OrganisationIn(Input):
    name: str = Field(min_length=1, max_length=200)


class OrganisationUpdate(Update):
    name: str = Field(None, min_length=1, max_length=200)


class OrganisationOut(BaseModel):
    uuid: UUID
    name: str
    created_at: datetime
    role: str | None = Field(None, description="The caller's role in the organisation.")


class Scopes(BaseModel):
    """Narrows a membership to these applications (all their environments) and environments.
    Both empty: the whole organisation."""

    applications: list[UUID] = Field(default_factory=list)
    environments: list[UUID] = Field(default_factory=list)


class MembershipIn(Input):
    organisation: UUID
    email: str = Field(min_length=3, max_length=254)
    role: Role = "member"
    scopes: Scopes = Field(default_factory=Scopes)


class MembershipUpdate(Update):
    role: Role = None
    scopes: Scopes = None


class MembershipOut(BaseModel):
    uuid: UUID
    organisation: UUID
    user: UUID
    email: str
    role: str
    scopes: Scopes
    created_at: datetime


class AuditEventOut(BaseModel):
    id: int
    organisation: UUID | None
    actor: UUID | None
    actor_email: str
    action: str
    target_type: str
    target: UUID | None
    summary: str
    changes: dict
    request_id: str | None
    created_at: datetime


RegionState = Literal["online", "degraded", "offline"]


class RegionOut(BaseModel):
    uuid: UUID
    name: str
    slug: str
    domain: str
    vendor: str = Field(description="Of its physical region: aws, azure, gcp, exoscale, other or self-hosted.")
    location: str
    is_dedicated: bool = Field(description="Dedicated to one organisation (the caller's): only it sees and uses it.")
    free_plan: bool = Field(description="Applications on the free plan group may be put here.")
    state: RegionState = Field(description="From its components' heartbeats: online (builder, controller and "
                                           "ingress heard lately, all ready, a runner ready), offline (none "
                                           "heard lately), else degraded.")
    runners: int = Field(description="Runners its controller knows.")
    runners_ready: int = Field(description="Runners ready to take instances.")
    memory_mb_free: int = Field(description="Memory (MB) its ready runners can still give instances.")


class RepositoryIn(Input):
    organisation: UUID
    url: str = Field(min_length=1, max_length=2000)


class RepositoryOut(BaseModel):
    uuid: UUID
    organisation: UUID
    url: str = Field(description="Without credentials: a token given in the URL is kept encrypted apart.")
    credentials_set: bool = Field(description="The repository has a token (HTTPS) the builder uses.")
    deploy_key: str | None = Field(description="SSH repositories: the public key to add to the repository "
                                               "as a read-only deploy key.")
    created_at: datetime


class EnvironmentStatus(BaseModel):
    uuid: UUID
    slug: str
    branch: str
    site_url: str
    deployed: bool


class ReleaseCommand(Input):
    """Run in order in a one-off container of each new release, before traffic moves."""

    label: str = Field(min_length=1, max_length=200)
    command: str = Field(min_length=1, max_length=4000)


class ApplicationIn(Input):
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(min_length=1, max_length=63)
    organisation: UUID
    region: UUID | None = None
    repository: UUID | None = None
    branch: str = Field("main", min_length=1, max_length=255)
    plan_group: UUID | None = Field(None, description="null: the free plan group")
    plan: UUID | None = Field(None, description="one of the plan group's plans; null: its first")
    # `divio app create` sends null for none.
    release_commands: list[ReleaseCommand] | None = Field(default_factory=list, description="null: none")
    # The divio client sends this; templates are not offered, so it is accepted and ignored.
    app_template: str | None = None


class ApplicationUpdate(Update):
    name: str = Field(None, min_length=1, max_length=200)
    repository: UUID | None = Field(None, description="null: no repository")
    plan_group: UUID | None = Field(None, description="null: the free plan group; its first plan from now on")
    release_commands: list[ReleaseCommand] = None


class ApplicationOut(BaseModel):
    # Also ``<env slug>_status`` for each environment, as the divio client reads it.
    model_config = ConfigDict(extra="allow")

    uuid: UUID
    name: str
    slug: str
    organisation: UUID
    region: UUID
    repository: UUID | None
    plan_group: UUID | None
    release_commands: list[ReleaseCommand]
    created_at: datetime
    environments: list[EnvironmentStatus]


class DeploymentRef(BaseModel):
    uuid: UUID
    status: str
    success: bool | None
    ended_at: datetime | None


class EnvironmentOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # plus ``<slug>_status``

    uuid: UUID
    application: UUID
    slug: str
    branch: str
    instances: int
    memory_mb: int
    cpus: float = Field(description="CPUs of each instance, set by its memory (memory_mb).")
    port: int | None
    health_check_path: str
    sanity_timeout_seconds: int
    https_redirect: bool = Field(description="Plain HTTP on the served domains is redirected to HTTPS.")
    sleeps_when_idle: bool = Field(description="The application's plan puts an idle environment to sleep.")
    sleep_after_seconds: int | None = Field(description="Idle for this long, it sleeps (null: never).")
    site_url: str
    last_finished_deployment: DeploymentRef | None
    deployment_in_progress: DeploymentRef | None = Field(
        description="The newest deployment not ended yet, e.g. the redeploy a change of memory_mb started.")
    ssh_endpoint: dict | None = None
    created_at: datetime


class EnvironmentIn(Input):
    """A custom environment, copied from ``copy_from`` (default: the application's test)."""

    application: UUID
    slug: str = Field(min_length=1, max_length=63)
    branch: str | None = Field(None, min_length=1, max_length=255)
    copy_from: UUID | None = None


class EnvironmentUpdate(Update):
    """Branch, port, health check and sanity timeout take effect at the next deployment.
    ``instances`` and ``memory_mb`` scale the environment now, within its plan;
    ``https_redirect`` is routed at once."""

    instances: int = Field(None, ge=1, description="Instances to run; at most the plan's max_instances. "
                                                   "The controller adds or removes instances at once.")
    memory_mb: int = Field(None, description="Memory of each instance (MB), one of the plan's sizes; CPUs follow. "
                                             "A serving release is redeployed at the new size (no build).",
                           json_schema_extra={"enum": list(MEMORY_SIZES_MB)})
    branch: str = Field(None, min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535, description="null: the image's EXPOSEd port, else 80")
    health_check_path: str = Field(None, min_length=1, max_length=255, pattern=r"^/")
    sanity_timeout_seconds: int = Field(None, ge=5, le=600, description="How long new instances get to answer.")
    https_redirect: bool = Field(None, description="Redirect plain HTTP on the served domains to HTTPS; "
                                                   "the ingress follows at once, without a deployment.")


class EnvironmentEventOut(BaseModel):
    """Something the platform did to or saw of the environment's instances outside a deployment."""

    uuid: UUID
    environment: UUID
    instance: UUID | None
    reason: str = Field(description="One word, e.g. restarted, scaled, replaced, moved, unplaceable, unhealthy, "
                                    "healthy, stopped.")
    message: str
    timestamp: datetime


class EnvironmentVariableIn(Input):
    environment: UUID
    name: str = Field(min_length=1, max_length=255)
    value: str = Field(max_length=64 * 1024)
    is_sensitive: bool = False


class EnvironmentVariableUpdate(Update):
    value: str = Field(None, max_length=64 * 1024)
    is_sensitive: bool = None


class EnvironmentVariableOut(BaseModel):
    uuid: UUID
    environment: UUID
    name: str
    value: str | None  # null for sensitive variables: never sent back
    is_sensitive: bool
    created_at: datetime


DomainKind = Literal["PRIMARY", "ALIAS", "REDIRECT"]


class DomainIn(Input):
    environment: UUID
    domain: str = Field(min_length=1, max_length=253)
    kind: DomainKind = "ALIAS"


class DomainUpdate(Update):
    kind: DomainKind = None


class DomainVerificationOut(BaseModel):
    status: Literal["pending", "verified", "failed"] = Field(
        description="Only a verified domain is routed (and gets a certificate).")
    record_type: Literal["TXT"] = "TXT"
    record_name: str = Field(description="The DNS name of the TXT record that proves control of the domain.")
    record_value: str = Field(description="What that TXT record must hold.")
    last_error: str | None = Field(description="Why the last check did not verify the domain.")
    checked_at: datetime | None
    verified_at: datetime | None


class DomainOut(BaseModel):
    uuid: UUID
    environment: UUID
    domain: str
    kind: str
    is_primary: bool
    verification: DomainVerificationOut
    created_at: datetime


class DeploymentIn(Input):
    environment: UUID
    build_mode: str = "AUTO"
    redeploy: UUID | None = Field(None, description="An earlier deployment of this environment: its release "
                                                    "(image and variables as they were) is deployed again, "
                                                    "without a build. A rollback.")


class DeploymentCancel(Input):
    reason: str = Field("", max_length=500)


class DeploymentStep(BaseModel):
    name: str
    started_at: datetime
    ended_at: datetime | None


class DeploymentOut(BaseModel):
    uuid: UUID
    environment: UUID
    application: UUID
    build_mode: str
    status: str
    percent: int
    success: bool | None
    error: str | None
    commit: str | None
    release: UUID | None
    redeploy_of: UUID | None
    environment_variables: list[str]
    steps: list[DeploymentStep]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class DeploymentLog(BaseModel):
    uuid: UUID
    logs: str
    next_offset: int = Field(description="Pass as ?offset= to read only what was appended since.")
    next: str = Field(description="This log from next_offset on: poll it to follow the log as it grows.")
    ended: bool


class DeploymentEnvironmentVariables(BaseModel):
    environment: UUID
    environment_variables: dict[str, str]


class TokenIn(Input):
    name: str = Field("", max_length=200)


class TokenOut(BaseModel):
    uuid: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(TokenOut):
    token: str = Field(description="The token itself: shown once, never again.")

"""Backups of an environment's service instances, their restores and downloads, in Divio's
words: a backup and each of its service-instance backups go PENDING → WORKING → COMPLETED,
and ``success`` says how it ended (SUCCESS or FAILURE; null until then). A restore
follows the same lifecycle.

Where a backup's files are kept in the region's object storage is decided here, from ids
alone, so a retried backup overwrites its own earlier attempt and nothing else."""
import re
from enum import StrEnum
from uuid import UUID

from .service_instances import ServiceType, State


class Progress(StrEnum):
    PENDING = "PENDING"
    WORKING = "WORKING"
    COMPLETED = "COMPLETED"


class Outcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


DEFAULT_TRIGGER = "MANUAL"
# Divio's client sends MANUAL; others (a schedule, a copy) are recorded as given, not acted on.
TRIGGER = re.compile(r"^[A-Z][A-Z_]{0,31}$")
DOWNLOAD_SECONDS = 3600  # how long a download URL works


def backup_folder(backup_id: UUID) -> str:
    """In the backup bucket: the prefix of all of a backup's files (with a trailing slash, so no
    other backup's keys start with it)."""
    return f"backups/{backup_id}/"


def backup_location(backup_id: UUID, instance_backup_id: UUID, service_type: str) -> str:
    """In the backup bucket: a database's pg_dump file, or the prefix a bucket's objects were
    copied under (with a trailing slash, so no other backup's keys start with it)."""
    base = f"{backup_folder(backup_id)}{instance_backup_id}"
    return f"{base}.dump" if service_type == ServiceType.DATABASE else f"{base}/"


def is_provisioned(state: str, has_credentials: bool) -> bool:
    """An instance with a database or bucket to back up or restore into: created by a
    deployment, and not removed since (a detached one keeps its data)."""
    return has_credentials and State(state) in (State.PROVISIONED, State.ATTACHED, State.DETACHED)


def overall(outcomes: list[str | None]) -> Outcome:
    """A backup or restore succeeds when every part of it did."""
    return Outcome.SUCCESS if outcomes and all(o == Outcome.SUCCESS for o in outcomes) else Outcome.FAILURE


class NotRestorable(Exception):
    pass


def check_usable(state: str, parts_succeeded: list[bool], chosen_succeeded: list[bool]) -> None:
    """What a restore or a download may take from a backup: only a COMPLETED one, and only
    its service-instance backups that succeeded (a backup that failed in part still gives
    back the parts it holds)."""
    if state != Progress.COMPLETED:
        raise NotRestorable(f"The backup is {state}: use it once it has COMPLETED.")
    if not any(parts_succeeded):
        raise NotRestorable("The backup failed: it holds nothing to use.")
    if not all(chosen_succeeded):
        raise NotRestorable("Only service instance backups that succeeded can be used.")

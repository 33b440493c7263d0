"""Service instances: the kinds a region offers, their lifecycle, and the rules on
prefixes and removal. Divio's lifecycle is NEW → PROVISIONING → PROVISIONED/ATTACHED →
DETACHED → REMOVED; removing an instance deletes its data and needs detaching first."""
import re
from enum import StrEnum


class ServiceType(StrEnum):
    DATABASE = "DATABASE"
    STORAGE = "STORAGE"


class State(StrEnum):
    NEW = "NEW"
    PROVISIONING = "PROVISIONING"
    PROVISIONED = "PROVISIONED"
    ATTACHED = "ATTACHED"
    DETACHED = "DETACHED"
    REMOVED = "REMOVED"


DEFAULT_PREFIX = "DEFAULT"
# The prefix names the variables a release gets (<PREFIX>_DATABASE_DSN), so it must be
# a valid, conventional environment variable name.
PREFIX = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")


class RemovalRefused(Exception):
    pass


def check_removable(state: str) -> None:
    """A NEW instance holds no data yet (nor does a REMOVED one any more), so it may simply go.
    Any other has, or is getting, a database or bucket: it is detached first, and removing a
    detached one deletes its data."""
    state = State(state)
    if state in (State.NEW, State.REMOVED, State.DETACHED):
        return
    raise RemovalRefused(f"The service instance is {state}: detach it from the environment before removing it.")

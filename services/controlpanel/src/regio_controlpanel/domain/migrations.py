"""A migration's lifecycle: its steps in order. The cut-over is the point of no return:
before it, a failure or a cancel leaves the source exactly as it was; after it, the target
serves and a failure says so without going back."""
from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    PROVISIONING = "provisioning"  # the target's databases and buckets
    COPYING = "copying"  # databases replicated, buckets synced, while the source serves
    DEPLOYING = "deploying"  # the serving commit built and sanity-tested in the target
    CUTTING_OVER = "cutting over"  # requests held, writes paused, copies caught up, routes switched
    FINISHING = "finishing"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"


ORDER = (Status.QUEUED, Status.PROVISIONING, Status.COPYING, Status.DEPLOYING, Status.CUTTING_OVER,
         Status.FINISHING, Status.SUCCESS)
FINAL = {Status.SUCCESS, Status.FAILURE, Status.CANCELLED}
# Before the cut-over's commit: cancelling is still possible, and a failure rolls back.
CANCELLABLE = {Status.QUEUED, Status.PROVISIONING, Status.COPYING, Status.DEPLOYING}


class CopyState(StrEnum):
    NEW = "NEW"  # recorded; nothing made in the target yet
    PROVISIONED = "PROVISIONED"  # the target's database or bucket exists
    COPYING = "COPYING"  # replication started / first sync done
    SWAPPED = "SWAPPED"  # the instance uses the target's; the source's is detached
    DROPPED = "DROPPED"  # rolled back: the target's copy deleted
